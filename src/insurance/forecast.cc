#include "insurance/forecast.h"

#include <map>
#include <tuple>

#include "common/money.h"
#include "insurance/claims.h"
#include "insurance/json_fields.h"
#include "insurance/monthly_run.h"

namespace medcard::insurance {
namespace {

using access::ErrorCode;
using access::MakeServiceError;

Fen Grow(Fen amount_fen, BasisPoints bp, int years) {
  for (int i = 0; i < years; ++i) amount_fen += ApplyBp(amount_fen, bp);
  return amount_fen;
}

YearMonth AddMonths(const YearMonth& m, int months) {
  const int index = m.year * 12 + (m.month - 1) + months;
  return {index / 12, index % 12 + 1};
}

// amount / 1000 rounded half up (amount ≥ 0).
std::int64_t PerMille(std::int64_t amount) { return (amount + 500) / 1000; }

struct Simulated {
  Date birth_date;
  bool male = true;
  PersonCategory category = PersonCategory::kEmployee;
  Fen wage_fen = 0;
  std::string area;
};

}  // namespace

Status ValidateScenario(const Scenario& s) {
  const auto bad = [](const std::string& field, const std::string& what) {
    return Status(MakeError(field + ": " + what));
  };
  if (s.wage_growth_bp < -5000 || s.wage_growth_bp > 5000) {
    return bad("wage_growth_bp", "must be between -5000 and 5000");
  }
  if (s.utilisation_trend_bp < -5000 || s.utilisation_trend_bp > 5000) {
    return bad("utilisation_trend_bp", "must be between -5000 and 5000");
  }
  if (s.retirement_age_male < 40 || s.retirement_age_male > 80) {
    return bad("retirement_age_male", "must be between 40 and 80");
  }
  if (s.retirement_age_female < 40 || s.retirement_age_female > 80) {
    return bad("retirement_age_female", "must be between 40 and 80");
  }
  if (s.new_entrants_per_year < 0 || s.new_entrants_per_year > 1'000'000) {
    return bad("new_entrants_per_year", "must be between 0 and 1000000");
  }
  if (s.new_entrant_age < 16 || s.new_entrant_age > 70) {
    return bad("new_entrant_age", "must be between 16 and 70");
  }
  if (s.new_entrant_wage_fen < 0 || s.new_entrant_wage_fen > kMaxWageBaseFen) {
    return bad("new_entrant_wage_fen", "must be between 0 and " + std::to_string(kMaxWageBaseFen));
  }
  for (std::size_t i = 0; i < s.claims.size(); ++i) {
    const auto& band = s.claims[i];
    const std::string path = "claims[" + std::to_string(i) + "]";
    if (i == 0 && band.from_age != 0) return bad(path + ".from_age", "the first band starts at 0");
    if (i > 0 && band.from_age <= s.claims[i - 1].from_age) {
      return bad(path + ".from_age", "must be greater than the previous band's");
    }
    if (band.admissions_per_1000 < 0 || band.admissions_per_1000 > 1000) {
      return bad(path + ".admissions_per_1000", "must be between 0 and 1000");
    }
    if (band.average_admission_fen < 0 || band.average_admission_fen > 100'000'000) {
      return bad(path + ".average_admission_fen", "must be between 0 and 100000000");
    }
  }
  if (s.personal_account_spend_bp < 0 || s.personal_account_spend_bp > kWholeBp) {
    return bad("personal_account_spend_bp", "must be between 0 and 10000");
  }
  return Status();
}

Result<Scenario> ParseScenarioJson(std::string_view json_text) {
  const auto json = nlohmann::json::parse(json_text, nullptr, false);
  if (json.is_discarded()) return MakeError("(document): not valid JSON");
  json_fields::Errors errors;
  json_fields::Object o(json, "", &errors);
  Scenario s;
  constexpr std::int64_t kBig = 1'000'000'000'000'000;
  if (auto v = o.OptionalInt("wage_growth_bp", -5000, 5000))
    s.wage_growth_bp = static_cast<BasisPoints>(*v);
  if (auto v = o.OptionalInt("utilisation_trend_bp", -5000, 5000)) {
    s.utilisation_trend_bp = static_cast<BasisPoints>(*v);
  }
  if (auto v = o.OptionalInt("retirement_age_male", 40, 80))
    s.retirement_age_male = static_cast<int>(*v);
  if (auto v = o.OptionalInt("retirement_age_female", 40, 80)) {
    s.retirement_age_female = static_cast<int>(*v);
  }
  if (auto v = o.OptionalInt("new_entrants_per_year", 0, 1'000'000)) s.new_entrants_per_year = *v;
  if (auto v = o.OptionalInt("new_entrant_age", 16, 70)) s.new_entrant_age = static_cast<int>(*v);
  if (auto v = o.OptionalInt("new_entrant_wage_fen", 0, kMaxWageBaseFen))
    s.new_entrant_wage_fen = *v;
  if (o.Find("new_entrant_area") != nullptr)
    s.new_entrant_area = o.String("new_entrant_area").value_or("");
  if (auto v = o.OptionalInt("admission_grade", 1, 3))
    s.admission_grade = static_cast<FacilityGrade>(*v);
  if (o.Find("claims") != nullptr) {
    if (const auto* claims = o.Array("claims")) {
      for (std::size_t i = 0; i < claims->size(); ++i) {
        json_fields::Object band((*claims)[i], json_fields::Index("claims", i), &errors);
        ClaimBand b;
        b.from_age = static_cast<int>(band.Int("from_age", 0, 150).value_or(0));
        b.admissions_per_1000 = band.Int("admissions_per_1000", 0, 1000).value_or(0);
        b.average_admission_fen = band.Int("average_admission_fen", 0, 100'000'000).value_or(0);
        band.Finish();
        s.claims.push_back(b);
      }
    }
  }
  if (auto v = o.OptionalInt("personal_account_spend_bp", 0, kWholeBp)) {
    s.personal_account_spend_bp = static_cast<BasisPoints>(*v);
  }
  if (auto v = o.OptionalInt("opening_pooled_fund_fen", -kBig, kBig))
    s.opening_pooled_fund_fen = *v;
  if (auto v = o.OptionalInt("opening_personal_accounts_fen", 0, kBig)) {
    s.opening_personal_accounts_fen = *v;
  }
  o.Finish();
  if (!errors.ok()) return MakeError(errors.message());
  if (auto status = ValidateScenario(s); !status.ok()) return status.error();
  return s;
}

ServiceResult<std::vector<ForecastPerson>> RegistrySnapshot(store::Connection& connection,
                                                            const Date& date) {
  if (!IsValidDate(date)) return MakeServiceError(ErrorCode::kInvalid, "date: not a date", "date");
  // Events are appended in date order, so a person's latest event on or before the date is the
  // one with the highest id among them.
  auto rows = connection.Query(
      "SELECT e.ssn, p.birth_date, e.category, e.wage_base, u.area FROM si_person_events e"
      " JOIN si_people p ON p.ssn = e.ssn JOIN si_units u ON u.code = e.unit_code"
      " WHERE e.id = (SELECT MAX(x.id) FROM si_person_events x WHERE x.ssn = e.ssn"
      " AND x.effective <= ?) AND e.status = 'active' ORDER BY e.ssn",
      {date.ToString()});
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<ForecastPerson> people;
  people.reserve(rows->size());
  for (const auto& r : *rows) {
    ForecastPerson p;
    p.ssn = r.Text(0);
    p.birth_date = ParseIsoDate(r.Text(1)).value_or(Date{});
    p.male = p.ssn.size() == 18 && (p.ssn[16] - '0') % 2 == 1;
    p.category = ParsePersonCategory(r.Text(2)).value_or(PersonCategory::kEmployee);
    p.wage_base_fen = r.Int(3);
    p.area = r.Text(4);
    people.push_back(std::move(p));
  }
  return people;
}

Result<Forecast> Project(const std::vector<ForecastPerson>& people, const PolicyBook& policies,
                         const Scenario& scenario, const YearMonth& start, int years,
                         Fen opening_pooled_fund_fen, const Policy* proposed) {
  if (years < 1 || years > 5) return MakeError("years: must be between 1 and 5");
  if (auto status = ValidateScenario(scenario); !status.ok()) return status.error();
  if (proposed != nullptr) {
    if (auto status = ValidatePolicy(*proposed); !status.ok()) return status.error();
  }
  std::vector<Simulated> simulated;
  simulated.reserve(people.size());
  for (const auto& p : people) {
    simulated.push_back({p.birth_date, p.male, p.category, p.wage_base_fen, p.area});
  }
  std::string entrant_area = scenario.new_entrant_area;
  if (entrant_area.empty() && !policies.Areas().empty()) entrant_area = policies.Areas().front();

  Forecast forecast;
  forecast.opening_pooled_fund_fen = opening_pooled_fund_fen;
  forecast.opening_personal_accounts_fen = scenario.opening_personal_accounts_fen;
  Fen pooled = opening_pooled_fund_fen;
  Fen accounts = scenario.opening_personal_accounts_fen;

  for (int y = 1; y <= years; ++y) {
    ForecastYear year;
    year.year = y;
    year.first_month = AddMonths(start, 12 * (y - 1));
    if (y > 1) {
      for (auto& s : simulated) s.wage_fen = Grow(s.wage_fen, scenario.wage_growth_bp, 1);
    }
    for (std::int64_t i = 0; i < scenario.new_entrants_per_year; ++i) {
      const Date first = year.first_month.FirstDay();
      simulated.push_back({Date{first.year - scenario.new_entrant_age, first.month, 1}, i % 2 == 0,
                           PersonCategory::kEmployee,
                           Grow(scenario.new_entrant_wage_fen, scenario.wage_growth_bp, y - 1),
                           entrant_area});
    }
    // The policy each area has in a month, its average wage grown to the projected year.
    std::map<std::string, Policy, std::less<>> month_policies;
    const auto policy_for = [&](const std::string& area,
                                const YearMonth& month) -> Result<const Policy*> {
      auto it = month_policies.find(area);
      if (it == month_policies.end()) {
        Policy policy;
        if (proposed != nullptr && proposed->area_code == area) {
          policy = *proposed;
        } else {
          auto found = policies.For(area, month.FirstDay());
          if (!found.ok()) return found.error();
          policy = **found;
        }
        policy.average_annual_wage_fen =
            Grow(policy.average_annual_wage_fen, scenario.wage_growth_bp, y - 1);
        it = month_policies.emplace(area, std::move(policy)).first;
      }
      return &it->second;
    };
    // Who is in which claims group at the start of the year: (area, retiree, age) → people.
    std::map<std::tuple<std::string, bool, int>, std::int64_t> groups;
    for (int m = 0; m < 12; ++m) {
      const YearMonth month = AddMonths(year.first_month, m);
      month_policies.clear();
      const bool last = m == 11;
      for (auto& s : simulated) {
        const int age = AgeAtMonth(s.birth_date, month);
        if (s.category != PersonCategory::kRetiree &&
            age >= (s.male ? scenario.retirement_age_male : scenario.retirement_age_female)) {
          s.category = PersonCategory::kRetiree;
          ++year.retirements;
        }
        if (m == 0) ++groups[{s.area, s.category == PersonCategory::kRetiree, age}];
        auto policy = policy_for(s.area, month);
        if (!policy.ok()) return policy.error();
        auto c =
            ComputeMonthlyContribution(**policy, {s.category, s.birth_date, s.wage_fen}, month);
        if (!c.ok()) return c.error();
        year.employer_fen += c->employer_fen;
        year.employee_fen += c->employee_fen;
        year.personal_account_fen += c->personal_account_fen;
        year.retiree_allowance_fen += c->retiree_allowance_fen;
        year.pooled_income_fen += c->pooled_fund_fen;
        if (last) {
          if (s.category == PersonCategory::kRetiree) {
            ++year.retirees;
          } else {
            ++year.contributors;
          }
        }
      }
    }
    // Claims: each expected admission is one admission of the band's average cost (grown by the
    // utilisation trend), adjudicated as the person's first of the year.
    month_policies.clear();
    std::int64_t admissions_milli = 0;
    std::int64_t claims_milli_fen = 0;
    for (const auto& [key, count] : groups) {
      const auto& [area, retiree, age] = key;
      const ClaimBand* band = nullptr;
      for (const auto& b : scenario.claims) {
        if (b.from_age <= age) band = &b;
      }
      if (band == nullptr || band->admissions_per_1000 == 0) continue;
      auto policy = policy_for(area, year.first_month);
      if (!policy.ok()) return policy.error();
      Claim claim;
      claim.claim_id = "forecast";
      claim.person_id = "forecast";
      claim.category = retiree ? PersonCategory::kRetiree : PersonCategory::kEmployee;
      claim.age = age;
      claim.grade = scenario.admission_grade;
      claim.kind = ClaimKind::kInpatient;
      claim.admission = year.first_month.FirstDay();
      claim.discharge = claim.admission;
      claim.diagnosis_icd10 = "Z00";
      claim.lines.push_back(
          {"forecast", "average admission", CatalogueCategory::kCovered, 0,
           Grow(band->average_admission_fen, scenario.utilisation_trend_bp, y - 1)});
      const Adjudication adjudication = Adjudicate(**policy, claim, YearSoFar{});
      if (adjudication.state == ClaimState::kRejected) {
        return MakeError("claims: the average admission was rejected: " +
                         (adjudication.reasons.empty() ? std::string() : adjudication.reasons[0]));
      }
      admissions_milli += count * band->admissions_per_1000;
      claims_milli_fen += count * band->admissions_per_1000 * adjudication.pooled_fund_fen;
    }
    year.admissions = PerMille(admissions_milli);
    year.claims_fen = PerMille(claims_milli_fen);
    pooled += year.pooled_income_fen - year.claims_fen;
    year.pooled_fund_closing_fen = pooled;
    year.personal_accounts_spent_fen =
        ApplyBp(year.personal_account_fen, scenario.personal_account_spend_bp);
    accounts += year.personal_account_fen - year.personal_accounts_spent_fen;
    year.personal_accounts_closing_fen = accounts;
    forecast.years.push_back(year);
  }
  return forecast;
}

ServiceResult<WhatIf> ForecastFromRegistry(store::Connection& connection,
                                           const PolicyBook& policies, const Scenario& scenario,
                                           const YearMonth& start, int years,
                                           const std::optional<Policy>& proposed) {
  if (proposed) {
    const auto areas = policies.Areas();
    if (std::find(areas.begin(), areas.end(), proposed->area_code) == areas.end()) {
      return MakeServiceError(ErrorCode::kUnprocessable,
                              "policy.area_code: no current policy for area " + proposed->area_code,
                              "policy");
    }
  }
  auto people = RegistrySnapshot(connection, start.FirstDay());
  if (!people.ok()) return people.error();
  Fen opening = 0;
  if (scenario.opening_pooled_fund_fen) {
    opening = *scenario.opening_pooled_fund_fen;
  } else {
    auto books = BookBalances(connection);
    if (!books.ok()) return books.error();
    for (const auto& b : *books) {
      if (b.account == "pooled_fund") opening = b.balance_fen;
    }
  }
  WhatIf result;
  auto current = Project(*people, policies, scenario, start, years, opening);
  if (!current.ok()) {
    return MakeServiceError(ErrorCode::kUnprocessable, current.error().message);
  }
  result.current = std::move(*current);
  if (proposed) {
    auto changed = Project(*people, policies, scenario, start, years, opening, &*proposed);
    if (!changed.ok()) {
      return MakeServiceError(ErrorCode::kUnprocessable, changed.error().message);
    }
    result.proposed = std::move(*changed);
    for (std::size_t i = 0; i < result.current.years.size(); ++i) {
      result.pooled_fund_change_fen.push_back(result.proposed.years[i].pooled_fund_closing_fen -
                                              result.current.years[i].pooled_fund_closing_fen);
    }
  }
  return result;
}

std::string ForecastCsv(const WhatIf& what_if, bool with_proposed) {
  std::string csv =
      "year,from,contributors,retirees,retirements,employer,employee,personal_account_allocation,"
      "retiree_allowance,pooled_income,admissions,claims,pooled_fund_closing,"
      "personal_accounts_spent,personal_accounts_closing";
  if (with_proposed)
    csv += ",proposed_pooled_income,proposed_claims,proposed_pooled_fund_closing,change";
  csv += "\n";
  for (std::size_t i = 0; i < what_if.current.years.size(); ++i) {
    const auto& y = what_if.current.years[i];
    csv += std::to_string(y.year) + "," + MonthText(y.first_month) + "," +
           std::to_string(y.contributors) + "," + std::to_string(y.retirees) + "," +
           std::to_string(y.retirements) + "," + FormatFen(y.employer_fen) + "," +
           FormatFen(y.employee_fen) + "," + FormatFen(y.personal_account_fen) + "," +
           FormatFen(y.retiree_allowance_fen) + "," + FormatFen(y.pooled_income_fen) + "," +
           std::to_string(y.admissions) + "," + FormatFen(y.claims_fen) + "," +
           FormatFen(y.pooled_fund_closing_fen) + "," + FormatFen(y.personal_accounts_spent_fen) +
           "," + FormatFen(y.personal_accounts_closing_fen);
    if (with_proposed && i < what_if.proposed.years.size()) {
      const auto& p = what_if.proposed.years[i];
      csv += "," + FormatFen(p.pooled_income_fen) + "," + FormatFen(p.claims_fen) + "," +
             FormatFen(p.pooled_fund_closing_fen) + "," +
             FormatFen(what_if.pooled_fund_change_fen[i]);
    }
    csv += "\n";
  }
  return csv;
}

}  // namespace medcard::insurance
