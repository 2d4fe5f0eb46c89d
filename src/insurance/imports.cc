// CSV imports into the registry (imports.h).
#include "insurance/imports.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include "common/money.h"

namespace medcard::insurance {

using store::Done;

namespace {

// Length of the UTF-8 sequence at text[i], or 0 when it is not valid UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF refused).
std::size_t Utf8SequenceLength(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) low = 0xA0;
    if (b0 == 0xED) high = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) low = 0x90;
    if (b0 == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (std::size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

std::string LineError(std::int64_t line, std::string_view what) {
  return "line " + std::to_string(line) + ": " + std::string(what);
}

bool AllDigits(std::string_view text) {
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return !text.empty();
}

bool IsCode(std::string_view code) {
  if (code.empty() || code.size() > 20) return false;
  for (char c : code) {
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsPrintable(std::string_view text, std::size_t max_bytes) {
  if (text.empty() || text.size() > max_bytes) return false;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

const std::vector<std::string>& ColumnsOf(ImportKind kind) {
  static const std::vector<std::string> units{"code", "name", "bank_account", "area"};
  static const std::vector<std::string> people{"ssn",       "name",     "unit_code",
                                               "wage_base", "category", "effective"};
  static const std::vector<std::string> wages{"ssn", "wage_base", "effective"};
  switch (kind) {
    case ImportKind::kUnits:
      return units;
    case ImportKind::kPeople:
      return people;
    case ImportKind::kWages:
      return wages;
  }
  return units;
}

struct UnitRow {
  std::int64_t line = 0;
  Unit unit;
};
struct PersonRow {
  std::int64_t line = 0;
  Enrolment enrolment;
};
struct WageRow {
  std::int64_t line = 0;
  std::string ssn;
  Fen wage_base_fen = 0;
  Date effective;
};

// The file's rows, each checked on its own; problems appended to the report.
struct CheckedFile {
  ImportReport report;
  std::vector<UnitRow> units;
  std::vector<PersonRow> people;
  std::vector<WageRow> wages;
};

class RowReader {
 public:
  RowReader(const std::map<std::string, std::size_t>& index, const CsvRecord& record,
            std::vector<ImportProblem>* problems)
      : index_(index), record_(record), problems_(problems) {}

  const std::string& Field(const std::string& column) const {
    return record_.fields[index_.at(column)];
  }
  void Problem(const std::string& column, std::string message) {
    problems_->push_back({record_.line, column, column + ": " + std::move(message)});
    ok_ = false;
  }
  bool ok() const { return ok_; }

  std::optional<Fen> Wage(const std::string& column) {
    auto fen = ParseYuan(Field(column));
    if (!fen.ok()) {
      Problem(column, "not an amount in yuan like 8000.00 (" + fen.error().message + ")");
      return std::nullopt;
    }
    if (*fen > kMaxWageBaseFen) {
      Problem(column, "0 to 1000000.00 yuan a month");
      return std::nullopt;
    }
    return *fen;
  }
  std::optional<Date> IsoDate(const std::string& column) {
    auto date = ParseIsoDate(Field(column));
    if (!date) Problem(column, "not a date YYYY-MM-DD");
    return date;
  }
  bool Ssn(const std::string& column) {
    if (IsValidSocialSecurityNumber(Field(column))) return true;
    Problem(column, "not an 18-character resident identity number with a valid check character");
    return false;
  }

 private:
  const std::map<std::string, std::size_t>& index_;
  const CsvRecord& record_;
  std::vector<ImportProblem>* problems_;
  bool ok_ = true;
};

CheckedFile CheckFile(ImportKind kind, std::string_view text) {
  CheckedFile checked;
  auto& report = checked.report;
  report.kind = kind;
  auto records = ParseCsv(text);
  if (!records.ok()) {
    // "line N: ..." from the parser: keep the line apart.
    const std::string& message = records.error().message;
    std::int64_t line = 0;
    if (message.rfind("line ", 0) == 0) line = std::atoll(message.c_str() + 5);
    report.problems.push_back({line, "", message});
    return checked;
  }
  if (records->empty()) {
    report.problems.push_back({1, "", "line 1: the file is empty (a header row is required)"});
    return checked;
  }
  const auto& columns = ColumnsOf(kind);
  const CsvRecord& header = records->front();
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < header.fields.size(); ++i) {
    const std::string& name = header.fields[i];
    if (std::find(columns.begin(), columns.end(), name) == columns.end()) {
      report.problems.push_back({header.line, name, "header: unknown column \"" + name + "\""});
    } else if (!index.emplace(name, i).second) {
      report.problems.push_back({header.line, name, "header: column " + name + " twice"});
    }
  }
  for (const auto& column : columns) {
    if (!index.contains(column)) {
      report.problems.push_back({header.line, column, "header: missing column " + column});
    }
  }
  report.rows = static_cast<std::int64_t>(records->size()) - 1;
  if (!report.problems.empty()) return checked;
  if (records->size() - 1 > kMaxImportRows) {
    report.problems.push_back(
        {header.line, "", "the file has more than " + std::to_string(kMaxImportRows) + " rows"});
    return checked;
  }

  for (std::size_t r = 1; r < records->size(); ++r) {
    const CsvRecord& record = (*records)[r];
    if (record.fields.size() != header.fields.size()) {
      report.problems.push_back(
          {record.line, "",
           "line " + std::to_string(record.line) + ": " + std::to_string(record.fields.size()) +
               " fields, the header has " + std::to_string(header.fields.size())});
      continue;
    }
    RowReader row(index, record, &report.problems);
    switch (kind) {
      case ImportKind::kUnits: {
        Unit unit{row.Field("code"), row.Field("name"), row.Field("bank_account"),
                  row.Field("area")};
        if (!IsCode(unit.code)) row.Problem("code", "1 to 20 letters, digits or '-'");
        if (!IsPrintable(unit.name, 200)) row.Problem("name", "1 to 200 characters");
        if (unit.bank_account.size() < 8 || unit.bank_account.size() > 32 ||
            !AllDigits(unit.bank_account)) {
          row.Problem("bank_account", "8 to 32 digits");
        }
        if (unit.area.size() != 6 || !AllDigits(unit.area)) {
          row.Problem("area", "a 6-digit area code, e.g. 110000");
        }
        if (row.ok()) checked.units.push_back({record.line, std::move(unit)});
        break;
      }
      case ImportKind::kPeople: {
        Enrolment e;
        e.ssn = row.Field("ssn");
        e.name = row.Field("name");
        e.unit_code = row.Field("unit_code");
        const bool ssn_ok = row.Ssn("ssn");
        if (ssn_ok) e.birth_date = BirthDateOfSsn(e.ssn);
        if (!IsPrintable(e.name, 100)) row.Problem("name", "1 to 100 characters");
        if (!IsCode(e.unit_code)) row.Problem("unit_code", "1 to 20 letters, digits or '-'");
        if (auto wage = row.Wage("wage_base")) e.wage_base_fen = *wage;
        if (auto category = ParsePersonCategory(row.Field("category"))) {
          e.category = *category;
        } else {
          row.Problem("category", "employee, retiree or flexible");
        }
        if (auto effective = row.IsoDate("effective")) {
          e.effective = *effective;
          if (ssn_ok && e.effective < e.birth_date) {
            row.Problem("effective", "before the birth date " + e.birth_date.ToString());
          }
        }
        if (row.ok()) checked.people.push_back({record.line, std::move(e)});
        break;
      }
      case ImportKind::kWages: {
        WageRow w;
        w.line = record.line;
        w.ssn = row.Field("ssn");
        row.Ssn("ssn");
        if (auto wage = row.Wage("wage_base")) w.wage_base_fen = *wage;
        if (auto effective = row.IsoDate("effective")) w.effective = *effective;
        if (row.ok()) checked.wages.push_back(std::move(w));
        break;
      }
    }
  }
  return checked;
}

std::int64_t NowUs(const std::function<std::int64_t()>& clock_us) {
  if (clock_us) return clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void AddProblem(ImportReport& report, std::int64_t line, const std::string& field,
                std::string message) {
  report.problems.push_back({line, field, field + ": " + std::move(message)});
}

// The person's latest event: unit, wage, status, effective date.
struct Latest {
  std::string unit_code;
  Fen wage_base_fen = 0;
  std::string category;
  std::string status;
  std::string note;
  std::string effective;
};

store::DbResult<std::optional<Latest>> LatestOf(store::Connection& c, const std::string& ssn) {
  auto rows = c.Query(
      "SELECT unit_code, wage_base, category, status, note, effective FROM si_person_events"
      " WHERE ssn = ? ORDER BY id DESC LIMIT 1",
      {ssn});
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<Latest>{};
  const auto& r = (*rows)[0];
  return std::optional<Latest>(
      Latest{r.Text(0), r.Int(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5)});
}

}  // namespace

std::string_view ToString(ImportKind kind) {
  switch (kind) {
    case ImportKind::kUnits:
      return "units";
    case ImportKind::kPeople:
      return "people";
    case ImportKind::kWages:
      return "wages";
  }
  return "units";
}

std::optional<ImportKind> ParseImportKind(std::string_view text) {
  for (auto kind : {ImportKind::kUnits, ImportKind::kPeople, ImportKind::kWages}) {
    if (ToString(kind) == text) return kind;
  }
  return std::nullopt;
}

Result<std::vector<CsvRecord>> ParseCsv(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<CsvRecord> records;
  std::int64_t line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    CsvRecord record;
    record.line = line;
    std::string field;
    bool record_done = false;
    bool any_content = false;  // a blank line is no record
    while (!record_done) {
      field.clear();
      if (i < text.size() && text[i] == '"') {
        any_content = true;
        ++i;
        const std::int64_t quote_line = line;
        while (true) {
          if (i >= text.size()) {
            return MakeError(LineError(quote_line, "a quoted field is not closed"));
          }
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          const std::size_t n = Utf8SequenceLength(text, i);
          if (n == 0) return MakeError(LineError(line, "not UTF-8 text"));
          if (c == '\n') ++line;
          field.append(text.substr(i, n));
          i += n;
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          return MakeError(LineError(line, "text after a closing quote (write \"\" for a quote)"));
        }
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"') {
            return MakeError(LineError(line, "a quote inside an unquoted field"));
          }
          const std::size_t n = Utf8SequenceLength(text, i);
          if (n == 0) return MakeError(LineError(line, "not UTF-8 text"));
          field.append(text.substr(i, n));
          i += n;
        }
        if (!field.empty()) any_content = true;
      }
      record.fields.push_back(field);
      if (i >= text.size()) {
        record_done = true;
      } else if (text[i] == ',') {
        any_content = true;
        ++i;
      } else {
        if (text[i] == '\r') {
          ++i;
          if (i < text.size() && text[i] != '\n') {
            return MakeError(LineError(line, "a carriage return without a line feed"));
          }
        }
        if (i < text.size()) ++i;  // the '\n'
        ++line;
        record_done = true;
      }
    }
    if (any_content) records.push_back(std::move(record));
    if (records.size() > kMaxImportRows + 1) {
      return MakeError(LineError(line, "more than " + std::to_string(kMaxImportRows) + " rows"));
    }
  }
  return records;
}

ImportReport CheckImportFile(ImportKind kind, std::string_view csv_text) {
  return CheckFile(kind, csv_text).report;
}

ServiceResult<ImportReport> Import(store::Connection& connection, ImportKind kind,
                                   std::string_view csv_text,
                                   std::function<std::int64_t()> clock_us) {
  CheckedFile checked = CheckFile(kind, csv_text);
  const bool file_ok = checked.report.problems.empty();
  ImportReport report;
  const std::int64_t now = NowUs(clock_us);
  // Rows valid on their own still get their registry checks, so one run reports all problems.
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        report = checked.report;
        // Pass 1: every row against the registry and the rows above it.
        switch (kind) {
          case ImportKind::kUnits: {
            std::map<std::string, std::int64_t> in_file;
            for (const auto& row : checked.units) {
              auto existing = c.Query("SELECT code FROM si_units WHERE code = ?", {row.unit.code});
              if (!existing.ok()) return existing.error();
              if (!existing->empty()) {
                AddProblem(report, row.line, "code", "unit " + row.unit.code + " exists");
              } else if (auto [it, fresh] = in_file.emplace(row.unit.code, row.line); !fresh) {
                AddProblem(report, row.line, "code",
                           "unit " + row.unit.code + " is on line " + std::to_string(it->second));
              }
            }
            break;
          }
          case ImportKind::kPeople: {
            std::map<std::string, std::int64_t> in_file;
            std::set<std::string> units_known;
            for (const auto& row : checked.people) {
              const auto& e = row.enrolment;
              if (!units_known.contains(e.unit_code)) {
                auto unit = c.Query("SELECT code FROM si_units WHERE code = ?", {e.unit_code});
                if (!unit.ok()) return unit.error();
                if (unit->empty()) {
                  AddProblem(report, row.line, "unit_code", "no unit " + e.unit_code);
                } else {
                  units_known.insert(e.unit_code);
                }
              }
              auto existing = c.Query("SELECT ssn FROM si_people WHERE ssn = ?", {e.ssn});
              if (!existing.ok()) return existing.error();
              if (!existing->empty()) {
                AddProblem(report, row.line, "ssn", e.ssn + " is enrolled");
              } else if (auto [it, fresh] = in_file.emplace(e.ssn, row.line); !fresh) {
                AddProblem(report, row.line, "ssn",
                           e.ssn + " is on line " + std::to_string(it->second));
              }
            }
            break;
          }
          case ImportKind::kWages: {
            std::map<std::string, Latest> latest;  // as the rows above leave it
            for (const auto& row : checked.wages) {
              auto it = latest.find(row.ssn);
              if (it == latest.end()) {
                auto found = LatestOf(c, row.ssn);
                if (!found.ok()) return found.error();
                if (!found->has_value()) {
                  AddProblem(report, row.line, "ssn", "no insured person " + row.ssn);
                  continue;
                }
                it = latest.emplace(row.ssn, **found).first;
              }
              Latest& state = it->second;
              if (state.status == "closed") {
                AddProblem(report, row.line, "ssn",
                           "the person's registration is closed (" + state.note + ")");
              } else if (row.effective.ToString() < state.effective) {
                AddProblem(report, row.line, "effective",
                           "before the person's latest event (" + state.effective +
                               "); history is appended, never rewritten");
              } else if (row.wage_base_fen == state.wage_base_fen) {
                AddProblem(report, row.line, "wage_base", "unchanged");
              } else {
                state.wage_base_fen = row.wage_base_fen;
                state.effective = row.effective.ToString();
              }
            }
            break;
          }
        }
        if (!file_ok || !report.problems.empty()) return Done{};  // nothing applied

        // Pass 2: all rows, in this one transaction.
        for (const auto& row : checked.units) {
          auto inserted = c.Execute(
              "INSERT INTO si_units (code, name, bank_account, area, created_at_us)"
              " VALUES (?, ?, ?, ?, ?)",
              {row.unit.code, row.unit.name, row.unit.bank_account, row.unit.area, now});
          if (!inserted.ok()) return inserted.error();
        }
        for (const auto& row : checked.people) {
          const auto& e = row.enrolment;
          auto person = c.Execute(
              "INSERT INTO si_people (ssn, name, birth_date, created_at_us) VALUES (?, ?, ?, ?)",
              {e.ssn, e.name, e.birth_date.ToString(), now});
          if (!person.ok()) return person.error();
          auto event = c.Execute(
              "INSERT INTO si_person_events (ssn, event, effective, unit_code, wage_base,"
              " category, status, note, recorded_at_us)"
              " VALUES (?, 'enrol', ?, ?, ?, ?, 'active', '', ?)",
              {e.ssn, e.effective.ToString(), e.unit_code, e.wage_base_fen,
               std::string(ToString(e.category)), now});
          if (!event.ok()) return event.error();
        }
        for (const auto& row : checked.wages) {
          // The new event carries the person's whole state with the new wage (registry.h).
          auto inserted = c.Execute(
              "INSERT INTO si_person_events (ssn, event, effective, unit_code, wage_base,"
              " category, status, note, recorded_at_us)"
              " SELECT ssn, 'wage', ?, unit_code, ?, category, status, note, ?"
              " FROM si_person_events WHERE ssn = ? ORDER BY id DESC LIMIT 1",
              {row.effective.ToString(), row.wage_base_fen, now, row.ssn});
          if (!inserted.ok()) return inserted.error();
        }
        report.applied = true;
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  std::stable_sort(report.problems.begin(), report.problems.end(),
                   [](const ImportProblem& a, const ImportProblem& b) { return a.line < b.line; });
  return report;
}

std::string FormatProblems(const ImportReport& report) {
  std::string text;
  for (const auto& p : report.problems) {
    std::string message = p.message;
    // Messages from the file's parser already start with "line N: ".
    if (message.rfind("line ", 0) != 0) message = "line " + std::to_string(p.line) + ", " + message;
    text += message + "\n";
  }
  return text;
}

}  // namespace medcard::insurance
