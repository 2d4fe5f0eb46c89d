// CSV imports into the registry (docs/insurance.md "Imports"): units, people (enrolment) and
// wages (a new declared wage base). A file is validated row by row — every bad row is reported
// with its line and field — and applied in ONE transaction only when no row is bad: a file with
// any bad row changes nothing.
//
// The CSV is RFC 4180: comma-separated, fields in double quotes may hold commas, line breaks and
// doubled quotes (""), CRLF or LF line ends, UTF-8 text (a UTF-8 byte-order mark is skipped;
// invalid UTF-8 is refused). The first record is the header naming the columns, in any order:
//   units:  code,name,bank_account,area
//   people: ssn,name,unit_code,wage_base,category,effective   (wage_base in yuan, "8000.00")
//   wages:  ssn,wage_base,effective
// Blank lines are skipped. Lines are counted from 1 (the header) in the file as written, so a
// quoted field with a line break moves the following rows' numbers on.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::insurance {

enum class ImportKind { kUnits, kPeople, kWages };
std::string_view ToString(ImportKind kind);  // "units" / "people" / "wages"
std::optional<ImportKind> ParseImportKind(std::string_view text);

inline constexpr std::size_t kMaxImportRows = 2'000'000;

struct CsvRecord {
  std::int64_t line = 0;  // the line the record starts on
  std::vector<std::string> fields;
};
// The records of a CSV text, blank lines skipped. An error names the line ("line 7: ...").
Result<std::vector<CsvRecord>> ParseCsv(std::string_view text);

struct ImportProblem {
  std::int64_t line = 0;
  std::string field;  // the column ("" for the row or the file as a whole)
  std::string message;
  bool operator==(const ImportProblem&) const = default;
};

struct ImportReport {
  ImportKind kind = ImportKind::kUnits;
  std::int64_t rows = 0;                // data rows in the file
  bool applied = false;                 // true only when there was no problem
  std::vector<ImportProblem> problems;  // by line
};

// What the file itself says is wrong (CSV, header, each row's fields), without a database: the
// rows that pass may still be refused by Import (an unknown unit, a person enrolled before).
ImportReport CheckImportFile(ImportKind kind, std::string_view csv_text);

// Validates every row (the file, then against the registry, each row seeing the rows above it)
// and, when no row is bad, applies them all in one transaction. A report with problems is not an
// error: the ServiceResult fails only when the database does (kInternal, nothing applied).
ServiceResult<ImportReport> Import(store::Connection& connection, ImportKind kind,
                                   std::string_view csv_text,
                                   std::function<std::int64_t()> clock_us = {});

// "line 3, wage_base: ..." one problem a line, for people and logs.
std::string FormatProblems(const ImportReport& report);

}  // namespace medcard::insurance
