// Fuzzes the agency's CSV imports (docs/insurance.md "Imports"): insurance::ParseCsv and the
// row-by-row checks of units, people and wages files (insurance::CheckImportFile). Whatever the
// bytes, every problem names a line within the file and says what is wrong; a file without
// problems has a record per data row with exactly the header's fields, and every field is UTF-8
// (the parser refuses anything else).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "insurance/imports.h"

namespace {

using namespace medcard::insurance;  // NOLINT(google-build-using-namespace)

void Check(bool condition) {
  if (!condition) std::abort();
}

std::int64_t LineCount(std::string_view text) {
  std::int64_t lines = 1;
  for (char c : text) lines += c == '\n' ? 1 : 0;
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::int64_t lines = LineCount(text);
  auto records = ParseCsv(text);
  if (records.ok()) {
    std::int64_t previous = 0;
    for (const auto& record : *records) {
      Check(record.line > previous && record.line <= lines);
      Check(!record.fields.empty());
      previous = record.line;
    }
  } else {
    Check(records.error().message.rfind("line ", 0) == 0);
  }
  for (auto kind : {ImportKind::kUnits, ImportKind::kPeople, ImportKind::kWages}) {
    const auto report = CheckImportFile(kind, text);
    Check(!report.applied);
    Check(report.rows >= 0);
    for (const auto& problem : report.problems) {
      Check(problem.line >= 1 && problem.line <= lines);
      Check(!problem.message.empty());
    }
    if (!records.ok()) Check(!report.problems.empty());
    if (report.problems.empty()) {
      Check(records.ok() && static_cast<std::int64_t>(records->size()) == report.rows + 1);
    }
  }
  return 0;
}
