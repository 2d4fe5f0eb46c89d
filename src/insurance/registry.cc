// The registry: units, people and their effective-dated events (registry.h).
#include "insurance/registry.h"

#include <chrono>
#include <cstdio>

namespace medcard::insurance {

using access::ErrorCode;
using access::MakeServiceError;
using store::Done;

namespace {

// A change joins the caller's open transaction, so that the caller's own record of it (the
// agency API's audit entry, src/api/si_routes.cc) commits or rolls back with it; otherwise the
// change is a transaction of its own.
store::DbStatus RunWrite(store::Connection& connection,
                         const std::function<store::DbStatus(store::Connection&)>& body) {
  if (connection.InTransaction()) return body(connection);
  return store::RunTransaction(connection, store::TransactionMode::kWrite, body);
}

bool AllDigits(std::string_view text) {
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int Digits(std::string_view text) {
  int value = 0;
  for (char c : text) value = value * 10 + (c - '0');
  return value;
}

std::optional<PersonStatus> ParseStatus(std::string_view text) {
  if (text == "active") return PersonStatus::kActive;
  if (text == "suspended") return PersonStatus::kSuspended;
  if (text == "closed") return PersonStatus::kClosed;
  return std::nullopt;
}

bool IsUnitCode(std::string_view code) {
  if (code.empty() || code.size() > 20) return false;
  for (char c : code) {
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsPrintableName(std::string_view name, std::size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) return false;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7F) return false;  // no control characters; UTF-8 bytes pass
  }
  return true;
}

template <typename T>
ServiceResult<T> Invalid(std::string field, std::string message) {
  return MakeServiceError(ErrorCode::kInvalid, field + ": " + message, field);
}

PersonState StateFromRow(const store::Row& row) {
  PersonState s;
  s.ssn = row.Text("ssn");
  s.name = row.Text("name");
  s.birth_date = ParseIsoDate(row.Text("birth_date")).value_or(Date{});
  s.unit_code = row.Text("unit_code");
  s.wage_base_fen = row.Int("wage_base");
  s.category = ParsePersonCategory(row.Text("category")).value_or(PersonCategory::kEmployee);
  s.status = ParseStatus(row.Text("status")).value_or(PersonStatus::kClosed);
  s.effective = ParseIsoDate(row.Text("effective")).value_or(Date{});
  s.event = row.Text("event");
  s.note = row.Text("note");
  return s;
}

constexpr char kStateColumns[] =
    "SELECT e.ssn, p.name, p.birth_date, e.unit_code, e.wage_base, e.category, e.status,"
    " e.effective, e.event, e.note FROM si_person_events e JOIN si_people p ON p.ssn = e.ssn ";

}  // namespace

access::ServiceError StoreError(const store::DbError& error) {
  return MakeServiceError(ErrorCode::kInternal, "database: " + error.message);
}

// ---- Text forms ---------------------------------------------------------------------------------

std::optional<Date> ParseIsoDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  const auto y = text.substr(0, 4), m = text.substr(5, 2), d = text.substr(8, 2);
  if (!AllDigits(y) || !AllDigits(m) || !AllDigits(d)) return std::nullopt;
  Date date{Digits(y), Digits(m), Digits(d)};
  if (!IsValidDate(date)) return std::nullopt;
  return date;
}

std::optional<YearMonth> ParseMonthText(std::string_view text) {
  if (text.size() != 7 || text[4] != '-') return std::nullopt;
  const auto y = text.substr(0, 4), m = text.substr(5, 2);
  if (!AllDigits(y) || !AllDigits(m)) return std::nullopt;
  YearMonth month{Digits(y), Digits(m)};
  if (month.year < 1 || month.month < 1 || month.month > 12) return std::nullopt;
  return month;
}

std::string MonthText(const YearMonth& month) {
  char text[16];
  std::snprintf(text, sizeof text, "%04d-%02d", month.year, month.month);
  return text;
}

bool IsValidSocialSecurityNumber(std::string_view ssn) {
  if (ssn.size() != 18 || !AllDigits(ssn.substr(0, 17))) return false;
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static constexpr char kCheck[] = "10X98765432";
  int sum = 0;
  for (int i = 0; i < 17; ++i) sum += (ssn[static_cast<std::size_t>(i)] - '0') * kWeights[i];
  if (ssn[17] != kCheck[sum % 11]) return false;
  const Date birth{Digits(ssn.substr(6, 4)), Digits(ssn.substr(10, 2)), Digits(ssn.substr(12, 2))};
  return birth.year >= 1900 && IsValidDate(birth);
}

Date BirthDateOfSsn(std::string_view ssn) {
  return {Digits(ssn.substr(6, 4)), Digits(ssn.substr(10, 2)), Digits(ssn.substr(12, 2))};
}

std::string_view ToString(PersonStatus status) {
  switch (status) {
    case PersonStatus::kActive:
      return "active";
    case PersonStatus::kSuspended:
      return "suspended";
    case PersonStatus::kClosed:
      return "closed";
  }
  return "closed";
}

// ---- Registry -----------------------------------------------------------------------------------

Registry::Registry(store::Connection& connection, Options options)
    : connection_(connection), options_(std::move(options)) {}

std::int64_t Registry::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ServiceResult<Done> Registry::AddUnit(const Unit& unit) {
  if (!IsUnitCode(unit.code)) {
    return Invalid<Done>("code", "1 to 20 letters, digits or '-'");
  }
  if (!IsPrintableName(unit.name, 200)) return Invalid<Done>("name", "1 to 200 characters");
  if (unit.bank_account.size() < 8 || unit.bank_account.size() > 32 ||
      !AllDigits(unit.bank_account)) {
    return Invalid<Done>("bank_account", "8 to 32 digits");
  }
  if (unit.area.size() != 6 || !AllDigits(unit.area)) {
    return Invalid<Done>("area", "a 6-digit area code, e.g. 110000");
  }
  std::optional<access::ServiceError> refused;
  auto status = RunWrite(connection_, [&](store::Connection& c) -> store::DbStatus {
    refused.reset();
    auto existing = c.Query("SELECT code FROM si_units WHERE code = ?", {unit.code});
    if (!existing.ok()) return existing.error();
    if (!existing->empty()) {
      refused =
          MakeServiceError(ErrorCode::kConflict, "code: unit " + unit.code + " exists", "code");
      return Done{};
    }
    auto inserted = c.Execute(
        "INSERT INTO si_units (code, name, bank_account, area, created_at_us)"
        " VALUES (?, ?, ?, ?, ?)",
        {unit.code, unit.name, unit.bank_account, unit.area, Now()});
    if (!inserted.ok()) return inserted.error();
    return Done{};
  });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Done{};
}

ServiceResult<Unit> Registry::FindUnit(std::string_view code) {
  auto rows = connection_.Query(
      "SELECT code, name, bank_account, area FROM si_units WHERE code = ?", {code});
  if (!rows.ok()) return StoreError(rows.error());
  if (rows->empty()) {
    return MakeServiceError(ErrorCode::kNotFound, "no unit " + std::string(code), "unit");
  }
  const auto& r = (*rows)[0];
  return Unit{r.Text(0), r.Text(1), r.Text(2), r.Text(3)};
}

ServiceResult<std::vector<Unit>> Registry::Units() {
  auto rows =
      connection_.Query("SELECT code, name, bank_account, area FROM si_units ORDER BY code");
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<Unit> units;
  for (const auto& r : *rows) units.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3)});
  return units;
}

namespace {

// The person's latest state (by event id), or nullopt when unknown.
store::DbResult<std::optional<PersonState>> LatestState(store::Connection& c,
                                                        std::string_view ssn) {
  auto rows =
      c.Query(std::string(kStateColumns) + "WHERE e.ssn = ? ORDER BY e.id DESC LIMIT 1", {ssn});
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<PersonState>{};
  return std::optional<PersonState>(StateFromRow((*rows)[0]));
}

store::DbResult<bool> UnitExists(store::Connection& c, std::string_view code) {
  auto rows = c.Query("SELECT code FROM si_units WHERE code = ?", {code});
  if (!rows.ok()) return rows.error();
  return !rows->empty();
}

store::DbStatus InsertEvent(store::Connection& c, const PersonState& s, std::int64_t now) {
  auto inserted = c.Execute(
      "INSERT INTO si_person_events (ssn, event, effective, unit_code, wage_base, category,"
      " status, note, recorded_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {s.ssn, s.event, s.effective.ToString(), s.unit_code, s.wage_base_fen,
       std::string(ToString(s.category)), std::string(ToString(s.status)), s.note, now});
  if (!inserted.ok()) return inserted.error();
  return Done{};
}

}  // namespace

ServiceResult<PersonState> Registry::Enrol(const Enrolment& e) {
  if (!IsValidSocialSecurityNumber(e.ssn)) {
    return Invalid<PersonState>(
        "ssn", "not an 18-character resident identity number with a valid check character");
  }
  if (!IsPrintableName(e.name, 100)) return Invalid<PersonState>("name", "1 to 100 characters");
  if (e.birth_date != BirthDateOfSsn(e.ssn)) {
    return Invalid<PersonState>("birth_date", "differs from the date in the ssn (" +
                                                  BirthDateOfSsn(e.ssn).ToString() + ")");
  }
  if (!IsValidDate(e.effective)) return Invalid<PersonState>("effective", "not a date");
  if (e.effective < e.birth_date) {
    return Invalid<PersonState>("effective", "before the birth date");
  }
  if (e.wage_base_fen < 0 || e.wage_base_fen > kMaxWageBaseFen) {
    return Invalid<PersonState>("wage_base", "0 to 1,000,000.00 yuan a month");
  }
  PersonState state{.ssn = e.ssn,
                    .name = e.name,
                    .birth_date = e.birth_date,
                    .unit_code = e.unit_code,
                    .wage_base_fen = e.wage_base_fen,
                    .category = e.category,
                    .status = PersonStatus::kActive,
                    .effective = e.effective,
                    .event = "enrol",
                    .note = {}};
  std::optional<access::ServiceError> refused;
  auto status = RunWrite(connection_, [&](store::Connection& c) -> store::DbStatus {
    refused.reset();
    auto unit = UnitExists(c, e.unit_code);
    if (!unit.ok()) return unit.error();
    if (!*unit) {
      refused = MakeServiceError(ErrorCode::kNotFound, "unit: no unit " + e.unit_code, "unit");
      return Done{};
    }
    auto existing = LatestState(c, e.ssn);
    if (!existing.ok()) return existing.error();
    if (existing->has_value()) {
      refused = MakeServiceError(ErrorCode::kConflict, "ssn: " + e.ssn + " is enrolled", "ssn");
      return Done{};
    }
    auto person = c.Execute(
        "INSERT INTO si_people (ssn, name, birth_date, created_at_us) VALUES (?, ?, ?, ?)",
        {e.ssn, e.name, e.birth_date.ToString(), Now()});
    if (!person.ok()) return person.error();
    return InsertEvent(c, state, Now());
  });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return state;
}

ServiceResult<PersonState> Registry::Append(
    std::string_view ssn, const Date& effective, std::string_view event,
    const std::function<ServiceResult<Done>(PersonState&)>& change) {
  if (!IsValidDate(effective)) return Invalid<PersonState>("effective", "not a date");
  std::optional<access::ServiceError> refused;
  PersonState state;
  auto status = RunWrite(connection_, [&](store::Connection& c) -> store::DbStatus {
    refused.reset();
    auto latest = LatestState(c, ssn);
    if (!latest.ok()) return latest.error();
    if (!latest->has_value()) {
      refused = MakeServiceError(ErrorCode::kNotFound, "ssn: no insured person " + std::string(ssn),
                                 "ssn");
      return Done{};
    }
    state = **latest;
    if (effective < state.effective) {
      refused = MakeServiceError(ErrorCode::kUnprocessable,
                                 "effective: before the person's latest event (" +
                                     state.effective.ToString() +
                                     "); history is appended, never rewritten",
                                 "effective");
      return Done{};
    }
    if (state.status == PersonStatus::kClosed) {
      refused =
          MakeServiceError(ErrorCode::kUnprocessable,
                           "ssn: the person's registration is closed (" + state.note + ")", "ssn");
      return Done{};
    }
    auto changed = change(state);
    if (!changed.ok()) {
      refused = changed.error();
      return Done{};
    }
    if (state.unit_code != latest->value().unit_code) {
      auto unit = UnitExists(c, state.unit_code);
      if (!unit.ok()) return unit.error();
      if (!*unit) {
        refused =
            MakeServiceError(ErrorCode::kNotFound, "unit: no unit " + state.unit_code, "unit");
        return Done{};
      }
    }
    state.effective = effective;
    state.event = std::string(event);
    return InsertEvent(c, state, Now());
  });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return state;
}

namespace {

ServiceResult<Done> Unprocessable(std::string field, std::string message) {
  return MakeServiceError(ErrorCode::kUnprocessable, field + ": " + message, field);
}

}  // namespace

ServiceResult<PersonState> Registry::Transfer(std::string_view ssn, std::string_view unit_code,
                                              const Date& effective) {
  if (!IsUnitCode(unit_code)) return Invalid<PersonState>("unit", "not a unit code");
  return Append(ssn, effective, "transfer", [&](PersonState& s) -> ServiceResult<Done> {
    if (s.status != PersonStatus::kActive) {
      return Unprocessable("ssn", "only an active person transfers (this one is " +
                                      std::string(ToString(s.status)) + ")");
    }
    if (s.unit_code == unit_code) return Unprocessable("unit", "the person is already in it");
    s.unit_code = std::string(unit_code);
    return Done{};
  });
}

ServiceResult<PersonState> Registry::ChangeWageBase(std::string_view ssn, Fen wage_base_fen,
                                                    const Date& effective) {
  if (wage_base_fen < 0 || wage_base_fen > kMaxWageBaseFen) {
    return Invalid<PersonState>("wage_base", "0 to 1,000,000.00 yuan a month");
  }
  return Append(ssn, effective, "wage", [&](PersonState& s) -> ServiceResult<Done> {
    if (s.wage_base_fen == wage_base_fen) return Unprocessable("wage_base", "unchanged");
    s.wage_base_fen = wage_base_fen;
    return Done{};
  });
}

ServiceResult<PersonState> Registry::Suspend(std::string_view ssn, const Date& effective) {
  return Append(ssn, effective, "suspend", [&](PersonState& s) -> ServiceResult<Done> {
    if (s.status != PersonStatus::kActive) return Unprocessable("ssn", "not active");
    s.status = PersonStatus::kSuspended;
    return Done{};
  });
}

ServiceResult<PersonState> Registry::Resume(std::string_view ssn, const Date& effective) {
  return Append(ssn, effective, "resume", [&](PersonState& s) -> ServiceResult<Done> {
    if (s.status != PersonStatus::kSuspended) return Unprocessable("ssn", "not suspended");
    s.status = PersonStatus::kActive;
    return Done{};
  });
}

ServiceResult<PersonState> Registry::Retire(std::string_view ssn, const Date& effective) {
  return Append(ssn, effective, "retire", [&](PersonState& s) -> ServiceResult<Done> {
    if (s.category == PersonCategory::kRetiree) return Unprocessable("ssn", "already retired");
    if (s.status != PersonStatus::kActive) return Unprocessable("ssn", "not active");
    s.category = PersonCategory::kRetiree;
    return Done{};
  });
}

ServiceResult<PersonState> Registry::Close(std::string_view ssn, const Date& effective,
                                           std::string_view reason) {
  if (!IsPrintableName(reason, 100)) {
    return Invalid<PersonState>("reason", "1 to 100 characters, e.g. death");
  }
  return Append(ssn, effective, "close", [&](PersonState& s) -> ServiceResult<Done> {
    s.status = PersonStatus::kClosed;
    s.note = std::string(reason);
    return Done{};
  });
}

ServiceResult<std::optional<PersonState>> Registry::PersonOn(std::string_view ssn,
                                                             const Date& date) {
  auto known = connection_.Query("SELECT ssn FROM si_people WHERE ssn = ?", {ssn});
  if (!known.ok()) return StoreError(known.error());
  if (known->empty()) {
    return MakeServiceError(ErrorCode::kNotFound, "ssn: no insured person " + std::string(ssn),
                            "ssn");
  }
  auto rows = connection_.Query(std::string(kStateColumns) +
                                    "WHERE e.ssn = ? AND e.effective <= ? ORDER BY e.id DESC"
                                    " LIMIT 1",
                                {ssn, date.ToString()});
  if (!rows.ok()) return StoreError(rows.error());
  if (rows->empty()) return std::optional<PersonState>{};
  return std::optional<PersonState>(StateFromRow((*rows)[0]));
}

ServiceResult<std::vector<PersonState>> Registry::History(std::string_view ssn) {
  auto rows =
      connection_.Query(std::string(kStateColumns) + "WHERE e.ssn = ? ORDER BY e.id", {ssn});
  if (!rows.ok()) return StoreError(rows.error());
  if (rows->empty()) {
    return MakeServiceError(ErrorCode::kNotFound, "ssn: no insured person " + std::string(ssn),
                            "ssn");
  }
  std::vector<PersonState> history;
  for (const auto& r : *rows) history.push_back(StateFromRow(r));
  return history;
}

}  // namespace medcard::insurance
