// The agency's rules (docs/insurance.md): claims adjudicated per second (20 items each, with the
// step-by-step explanation), monthly contributions computed per second, and the claim file
// parsed per second. Baseline in the same run: summing the claim's items (the least any
// adjudication must do), so the ratio says what the rules and explanation cost on top.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "insurance/claims.h"
#include "insurance/rules.h"
#include "rate_reporter.h"

namespace {

using namespace medcard::insurance;  // NOLINT(google-build-using-namespace)

Policy BeijingLike() {
  Policy p;
  p.area_code = "110000";
  p.name = "bench";
  p.effective_from = {2024, 7, 1};
  p.average_annual_wage_fen = 14'113'200;
  p.contributions = {600, 200, 6000, 30000};
  p.allocation.employer_share_of_base = {{0, 80}, {35, 100}, {45, 200}};
  p.allocation.retiree_share_of_average_wage = {{0, 430}, {70, 480}};
  p.benefits.deductible_first_admission_bp = 92;
  p.benefits.deductible_later_admission_bp = 46;
  p.benefits.annual_cap_bp = 40000;
  p.benefits.copay[0] = {{3'000'000, 1000}, {4'000'000, 700}, {std::nullopt, 300}};
  p.benefits.copay[1] = {{3'000'000, 1200}, {4'000'000, 800}, {std::nullopt, 400}};
  p.benefits.copay[2] = {{3'000'000, 1500}, {4'000'000, 1000}, {std::nullopt, 500}};
  p.benefits.retiree_copay_factor = {{0, 6000}};
  return p;
}

std::vector<Claim> Claims(std::size_t count) {
  std::mt19937_64 random(7);
  std::vector<Claim> claims;
  for (std::size_t i = 0; i < count; ++i) {
    Claim c;
    c.claim_id = "BJ-" + std::to_string(i);
    c.person_id = "110101197501010011";
    c.category = static_cast<PersonCategory>(i % 3);
    c.age = static_cast<int>(30 + i % 60);
    c.grade = static_cast<FacilityGrade>(1 + i % 3);
    c.admission = {2025, 3, 1};
    c.discharge = {2025, 3, 9};
    c.diagnosis_icd10 = "I21.0";
    for (int line = 0; line < 20; ++line) {
      const auto category = static_cast<CatalogueCategory>(line % 3);
      c.lines.push_back({"250101001", "item", category,
                         category == CatalogueCategory::kPartlyCovered ? 1000 : 0,
                         static_cast<Fen>(random() % 400'000)});
    }
    claims.push_back(std::move(c));
  }
  return claims;
}

void BM_SumClaimItems(benchmark::State& state) {
  const auto claims = Claims(1000);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(claims[i++ % claims.size()].TotalBilledFen());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SumClaimItems);

void BM_AdjudicateClaim(benchmark::State& state) {
  const auto policy = BeijingLike();
  const auto claims = Claims(1000);
  YearSoFar year;
  year.personal_account_balance_fen = 200'000;
  std::size_t i = 0;
  for (auto _ : state) {
    auto adjudication = Adjudicate(policy, claims[i++ % claims.size()], year);
    benchmark::DoNotOptimize(adjudication);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AdjudicateClaim);

void BM_MonthlyContribution(benchmark::State& state) {
  const auto policy = BeijingLike();
  ContributingPerson person{PersonCategory::kEmployee, {1980, 5, 5}, 0};
  Fen wage = 0;
  for (auto _ : state) {
    person.monthly_wage_fen = wage++ % 5'000'000;
    auto month = ComputeMonthlyContribution(policy, person, {2025, 6});
    benchmark::DoNotOptimize(month);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MonthlyContribution);

void BM_ParseClaimFile(benchmark::State& state) {
  std::string text = R"({"claim_id": "BJ-1", "person_id": "110101197501010011",
    "category": "employee", "age": 50, "facility_grade": 3, "admission": "2025-03-02",
    "discharge": "2025-03-20", "diagnosis_icd10": "I21.0", "year_so_far": {
    "eligible_on_service_date": true, "admissions_adjudicated": 0, "pooled_fund_paid_fen": 0,
    "personal_account_balance_fen": 100000}, "lines": [)";
  for (int line = 0; line < 20; ++line) {
    text +=
        std::string(line ? "," : "") +
        R"({"code": "250101001", "description": "ward", "category": "covered", "amount_fen": )" +
        std::to_string(10'000 + line) + "}";
  }
  text += "]}";
  for (auto _ : state) {
    auto file = ParseClaimJson(text);
    if (!file.ok()) {
      state.SkipWithError(file.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(file);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseClaimFile);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  reporter.PrintRatio("adjudicate_per_s / sum_items_per_s", "BM_AdjudicateClaim",
                      "BM_SumClaimItems");
  reporter.PrintRatio("parse_claim_file_per_s / sum_items_per_s", "BM_ParseClaimFile",
                      "BM_SumClaimItems");
  return 0;
}
