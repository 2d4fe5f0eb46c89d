// Forecast of the pooled fund and the personal accounts 1–5 years ahead (docs/insurance.md
// "Forecast"), from the real registry: everyone active on the start date with their birth date,
// sex (from the social-security number), category, wage base and pooling area, under the
// policies in force, with scenario parameters. Integer fen throughout and deterministic.
//
// Each projected year is 12 months from the start month. Per person and month: the age, a
// retirement when an employee or flexible worker reaches the retirement age of their sex (they
// pay nothing from then on and receive the retirees' allowance), the contribution and allocation
// by rules.h on the wage base grown by the wage growth (the area's average wage grows alike).
// New entrants join on the first month of each year. Pooled-fund spending is the scenario's
// admissions per 1,000 people of an age band × the pooled fund's share of one average admission,
// adjudicated by the policy (claims.h: deductible, co-payment bands, cap, retiree factor), the
// admission cost growing by the utilisation trend; personal accounts spend the scenario's share
// of what they receive.
//
// What-if: the same projection with a proposed policy in place of the current one for its area.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "insurance/rules.h"
#include "store/store.h"

namespace medcard::insurance {

// Claims of one age band (from_age inclusive up to the next band's from_age).
struct ClaimBand {
  int from_age = 0;
  std::int64_t admissions_per_1000 = 0;  // inpatient admissions per 1,000 people a year
  Fen average_admission_fen = 0;         // eligible cost of one admission in year 1
};

struct Scenario {
  BasisPoints wage_growth_bp = 0;        // a year, applied from year 2 on (wages, average wage)
  BasisPoints utilisation_trend_bp = 0;  // a year, on the admission cost, from year 2 on
  int retirement_age_male = 60;
  int retirement_age_female = 55;
  std::int64_t new_entrants_per_year = 0;
  int new_entrant_age = 25;      // in completed years when they join
  Fen new_entrant_wage_fen = 0;  // monthly, year 1 (grows with wages)
  std::string new_entrant_area;  // empty: the first area of the policy book
  FacilityGrade admission_grade = FacilityGrade::kGrade3;
  std::vector<ClaimBand> claims;               // by age, ascending from 0
  BasisPoints personal_account_spend_bp = 0;   // of each year's allocation spent that year
  std::optional<Fen> opening_pooled_fund_fen;  // default: the books' pooled_fund balance
  Fen opening_personal_accounts_fen = 0;       // the accounts are kept by the bank
};

// The scenario file (JSON, strict like the policy file: unknown keys are errors, each error
// starts with the field path). Every key is optional; see docs/insurance.md "Scenario file".
Result<Scenario> ParseScenarioJson(std::string_view json_text);
Status ValidateScenario(const Scenario& scenario);

// A person as the forecast sees them.
struct ForecastPerson {
  std::string ssn;
  Date birth_date;
  bool male = true;  // GB 11643: the 17th character odd for men
  PersonCategory category = PersonCategory::kEmployee;
  Fen wage_base_fen = 0;
  std::string area;
};
// Everyone active on `date` with their state then, by ssn.
ServiceResult<std::vector<ForecastPerson>> RegistrySnapshot(store::Connection& connection,
                                                            const Date& date);

struct ForecastYear {
  int year = 0;  // 1..N
  YearMonth first_month;
  std::int64_t contributors = 0;  // paying in the year's last month
  std::int64_t retirees = 0;      // retirees in the year's last month
  std::int64_t retirements = 0;   // people who retired during the year
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  Fen personal_account_fen = 0;  // allocated, including the retirees' allowance
  Fen retiree_allowance_fen = 0;
  Fen pooled_income_fen = 0;    // contributions − allocation
  std::int64_t admissions = 0;  // expected admissions (rounded per band)
  Fen claims_fen = 0;           // paid by the pooled fund
  Fen pooled_fund_closing_fen = 0;
  Fen personal_accounts_spent_fen = 0;
  Fen personal_accounts_closing_fen = 0;
};

struct Forecast {
  Fen opening_pooled_fund_fen = 0;
  Fen opening_personal_accounts_fen = 0;
  std::vector<ForecastYear> years;
};

// The projection of `people` from `start` for `years` (1..5) under `policies` (the policy in
// force in each person's area on the first day of each month) or, for the people of its area,
// `proposed` (validated; its average wage grows with wages like the others').
Result<Forecast> Project(const std::vector<ForecastPerson>& people, const PolicyBook& policies,
                         const Scenario& scenario, const YearMonth& start, int years,
                         Fen opening_pooled_fund_fen, const Policy* proposed = nullptr);

struct WhatIf {
  Forecast current;
  Forecast proposed;
  // proposed − current pooled-fund balance at the end of each year.
  std::vector<Fen> pooled_fund_change_fen;
};
// Reads the registry on start's first day and the opening balance from the books (unless the
// scenario gives it), projects under the current policies and, when `proposed` is set, under
// the proposed one too.
ServiceResult<WhatIf> ForecastFromRegistry(store::Connection& connection,
                                           const PolicyBook& policies, const Scenario& scenario,
                                           const YearMonth& start, int years,
                                           const std::optional<Policy>& proposed);

// CSV: one line per year (and, for a what-if, the proposed figures and the change).
std::string ForecastCsv(const WhatIf& what_if, bool with_proposed);

}  // namespace medcard::insurance
