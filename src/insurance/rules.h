// Monthly contributions and personal-account allocation (docs/insurance.md, "Contributions and
// allocation"). Pure integer computation on a Policy; no database.
//
// Rounding: every bp product is rounded half up to the fen (ApplyBp). The pooled-fund part is
// what is left, so for every person and month, to the fen:
//   employer_fen + employee_fen == personal_account_fen + pooled_fund_fen.
#pragma once

#include <optional>

#include "common/bcd.h"
#include "common/result.h"
#include "insurance/policy.h"

namespace medcard::insurance {

struct YearMonth {
  int year = 0;
  int month = 0;  // 1..12
  bool operator==(const YearMonth&) const = default;
  auto operator<=>(const YearMonth&) const = default;
  Date FirstDay() const { return Date{year, month, 1}; }
};

// Age in completed years on `on` (a birthday counts from its day; 29 February birthdays count
// from 1 March in common years). Negative if `on` is before the birth date.
int AgeOn(const Date& birth_date, const Date& on);
// Age at a month: the age on the first day of the month.
int AgeAtMonth(const Date& birth_date, const YearMonth& month);

struct ContributingPerson {
  PersonCategory category = PersonCategory::kEmployee;
  Date birth_date;
  Fen monthly_wage_fen = 0;  // declared wage (ignored for retirees)
};

enum class BaseClamp { kNone, kRaisedToFloor, kLoweredToCap };

struct MonthlyContribution {
  int age = 0;
  Fen base_fen = 0;  // the contribution base after clamping (0 for retirees)
  BaseClamp clamp = BaseClamp::kNone;
  // Parts of the contribution. For flexible workers the person pays both.
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  // Personal account allocation for the month and where it comes from.
  Fen personal_account_fen = 0;
  Fen from_employee_part_fen = 0;  // = employee_fen for employees / flexible
  Fen from_employer_part_fen = 0;  // employer_share_of_base(age) × base, capped at employer_fen
  Fen retiree_allowance_fen = 0;   // retirees: retiree_share(age) × average monthly wage
  // employer + employee − personal account. Negative for a retiree: the retiree's allocation
  // is financed from the month's pooled employer contributions before the rest is pooled.
  Fen pooled_fund_fen = 0;
};

// The contribution base for a declared monthly wage: clamped to the policy's floor/cap of the
// average monthly wage. A negative wage is treated as 0 (raised to the floor).
Fen ContributionBaseFen(const Policy& policy, Fen monthly_wage_fen, BaseClamp* clamp = nullptr);

// The month's contribution and allocation. Errors: birth date invalid or after the month.
Result<MonthlyContribution> ComputeMonthlyContribution(const Policy& policy,
                                                       const ContributingPerson& person,
                                                       const YearMonth& month);

}  // namespace medcard::insurance
