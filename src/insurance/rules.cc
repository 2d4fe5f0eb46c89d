#include "insurance/rules.h"

#include <algorithm>

namespace medcard::insurance {

int AgeOn(const Date& birth_date, const Date& on) {
  int age = on.year - birth_date.year;
  // Not yet had this year's birthday. A 29 February birthday compares after 28 February, so in
  // common years it counts from 1 March.
  if (std::pair(on.month, on.day) < std::pair(birth_date.month, birth_date.day)) --age;
  return age;
}

int AgeAtMonth(const Date& birth_date, const YearMonth& month) {
  return AgeOn(birth_date, month.FirstDay());
}

Fen ContributionBaseFen(const Policy& policy, Fen monthly_wage_fen, BaseClamp* clamp) {
  const Fen average = policy.AverageMonthlyWageFen();
  const Fen floor = ApplyBp(average, policy.contributions.base_floor_bp);
  const Fen cap = ApplyBp(average, policy.contributions.base_cap_bp);
  BaseClamp applied = BaseClamp::kNone;
  Fen base = monthly_wage_fen;
  if (base < floor) {
    base = floor;
    applied = BaseClamp::kRaisedToFloor;
  } else if (base > cap) {
    base = cap;
    applied = BaseClamp::kLoweredToCap;
  }
  if (clamp != nullptr) *clamp = applied;
  return base;
}

Result<MonthlyContribution> ComputeMonthlyContribution(const Policy& policy,
                                                       const ContributingPerson& person,
                                                       const YearMonth& month) {
  if (month.month < 1 || month.month > 12 || !IsValidDate(month.FirstDay())) {
    return MakeError("month: not a calendar month");
  }
  if (!IsValidDate(person.birth_date)) return MakeError("birth_date: not a calendar date");
  MonthlyContribution result;
  result.age = AgeAtMonth(person.birth_date, month);
  if (result.age < 0) {
    return MakeError("birth_date: " + person.birth_date.ToString() + " is after the month " +
                     month.FirstDay().ToString());
  }
  if (person.category == PersonCategory::kRetiree) {
    // Retirees pay nothing; their account is credited a share of the average monthly wage.
    result.retiree_allowance_fen =
        ApplyBp(policy.AverageMonthlyWageFen(),
                RateForAge(policy.allocation.retiree_share_of_average_wage, result.age));
    result.personal_account_fen = result.retiree_allowance_fen;
    result.pooled_fund_fen = -result.personal_account_fen;
    return result;
  }
  result.base_fen = ContributionBaseFen(policy, person.monthly_wage_fen, &result.clamp);
  result.employer_fen = ApplyBp(result.base_fen, policy.contributions.employer_rate_bp);
  result.employee_fen = ApplyBp(result.base_fen, policy.contributions.employee_rate_bp);
  result.from_employee_part_fen = result.employee_fen;
  // Validation keeps the band rate ≤ the employer rate; min() keeps it so after rounding too.
  result.from_employer_part_fen = std::min(
      result.employer_fen,
      ApplyBp(result.base_fen, RateForAge(policy.allocation.employer_share_of_base, result.age)));
  result.personal_account_fen = result.from_employee_part_fen + result.from_employer_part_fen;
  result.pooled_fund_fen = result.employer_fen + result.employee_fen - result.personal_account_fen;
  return result;
}

}  // namespace medcard::insurance
