// The agency's registry (docs/insurance.md "Registry and the monthly run"): employer units and
// insured people, on the agency's own database (SQLite or PostgreSQL, migration set
// "insurance"). A person's history is a list of effective-dated events, each recording the
// person's whole state from its date on; nothing is ever overwritten, so the state on any date
// is answerable (PersonOn). Every operation is one database transaction — or joins the one
// already open on the connection, so a caller's audit entry commits with the change: a refused
// request changes nothing, and its error names the request field at fault.
//
//   store::Migrate(connection, insurance::Migrations());
//   insurance::Registry registry(connection);
//   registry.AddUnit({"U001", "Capital Steel", "6222020200112233", "110000"});
//   registry.Enrol({.ssn = "11010519491231002X", ...});
//   auto state = registry.PersonOn("11010519491231002X", Date{2026, 11, 1});
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "access/service_error.h"
#include "common/bcd.h"
#include "insurance/policy.h"
#include "insurance/rules.h"
#include "store/store.h"

namespace medcard::insurance {

template <typename T>
using ServiceResult = access::ServiceResult<T>;

// The agency's tables (registry, monthly runs, bills, payments, books, allocation batches).
const store::MigrationSet& Migrations();

// ---- Text forms ---------------------------------------------------------------------------------

// "YYYY-MM-DD" → a real calendar date, else nullopt.
std::optional<Date> ParseIsoDate(std::string_view text);
// "YYYY-MM" (month 01..12) → the month, else nullopt.
std::optional<YearMonth> ParseMonthText(std::string_view text);
std::string MonthText(const YearMonth& month);  // "2026-11"

// An 18-character PRC resident identity number (GB 11643): 6-digit area, 8-digit birth date,
// 3-digit sequence, check character (ISO 7064 MOD 11-2, '0'-'9' or 'X'). The agency's
// social-security number is this number.
bool IsValidSocialSecurityNumber(std::string_view ssn);
// The birth date the number carries. REQUIRES: IsValidSocialSecurityNumber(ssn).
Date BirthDateOfSsn(std::string_view ssn);

// ---- Units and people ---------------------------------------------------------------------------

struct Unit {
  std::string code;          // 1..20 letters, digits or '-', e.g. "U0001"
  std::string name;          // 1..200 characters
  std::string bank_account;  // 8..32 digits: where the unit pays from
  std::string area;          // pooling area: 6-digit administrative code, e.g. "110000"
  bool operator==(const Unit&) const = default;
};

enum class PersonStatus { kActive, kSuspended, kClosed };
std::string_view ToString(PersonStatus status);  // "active" / "suspended" / "closed"

// A person's state as one event left it, from `effective` on.
struct PersonState {
  std::string ssn;
  std::string name;
  Date birth_date;
  std::string unit_code;
  Fen wage_base_fen = 0;  // the declared monthly wage
  PersonCategory category = PersonCategory::kEmployee;
  PersonStatus status = PersonStatus::kActive;
  Date effective;     // the date of the event that made this state
  std::string event;  // "enrol", "transfer", "wage", "suspend", "resume", "retire", "close"
  std::string note;   // the close reason ("death", ...), else empty
  bool operator==(const PersonState&) const = default;
};

struct Enrolment {
  std::string ssn;
  std::string name;
  Date birth_date;  // must be the date the ssn carries
  std::string unit_code;
  Fen wage_base_fen = 0;  // 0 .. 100,000,000 fen a month; retirees: ignored by the rules
  PersonCategory category = PersonCategory::kEmployee;
  Date effective;  // the first day the person is insured
};

// The largest declared monthly wage accepted (one million yuan).
inline constexpr Fen kMaxWageBaseFen = 100'000'000;

class Registry {
 public:
  struct Options {
    std::function<std::int64_t()> clock_us;  // default: the system clock
  };
  // REQUIRES: connection migrated with insurance::Migrations().
  explicit Registry(store::Connection& connection, Options options = {});

  // A new unit. The same code again: kConflict (units are registered once).
  ServiceResult<store::Done> AddUnit(const Unit& unit);
  ServiceResult<Unit> FindUnit(std::string_view code);
  ServiceResult<std::vector<Unit>> Units();  // by code

  // Events. Each is refused (kUnprocessable) when the person's state does not allow it, or when
  // its effective date is before the person's latest event (history is appended, never
  // rewritten); kNotFound for an unknown person or unit. Each returns the new state.
  ServiceResult<PersonState> Enrol(const Enrolment& enrolment);
  ServiceResult<PersonState> Transfer(std::string_view ssn, std::string_view unit_code,
                                      const Date& effective);
  ServiceResult<PersonState> ChangeWageBase(std::string_view ssn, Fen wage_base_fen,
                                            const Date& effective);
  ServiceResult<PersonState> Suspend(std::string_view ssn, const Date& effective);
  ServiceResult<PersonState> Resume(std::string_view ssn, const Date& effective);
  // An employee or flexible worker becomes a retiree (pays nothing from then on).
  ServiceResult<PersonState> Retire(std::string_view ssn, const Date& effective);
  // Death or leaving the scheme: nothing follows a close. reason: "death", "emigration", ...
  ServiceResult<PersonState> Close(std::string_view ssn, const Date& effective,
                                   std::string_view reason);

  // The state in force on `date` (the latest event effective on or before it); nullopt when the
  // person was not enrolled yet on that date. kNotFound for an unknown person.
  ServiceResult<std::optional<PersonState>> PersonOn(std::string_view ssn, const Date& date);
  // Every event of the person, oldest first.
  ServiceResult<std::vector<PersonState>> History(std::string_view ssn);

 private:
  ServiceResult<PersonState> Append(
      std::string_view ssn, const Date& effective, std::string_view event,
      const std::function<ServiceResult<store::Done>(PersonState&)>& change);
  std::int64_t Now() const;

  store::Connection& connection_;
  Options options_;
};

// A store failure as the service error people see (kInternal; nothing was changed).
access::ServiceError StoreError(const store::DbError& error);

}  // namespace medcard::insurance
