// The forecast: a one-year projection of a tiny registry checked by hand, the what-if of a
// policy change, retirements, new entrants, the scenario file, and the projection from the real
// registry on SQLite and PostgreSQL.
#include "insurance/forecast.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "insurance/monthly_run.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

Policy TestPolicy() {
  auto policy = LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                               "/../../config/policy/beijing-example.json");
  EXPECT_TRUE(policy.ok());
  policy->effective_from = {2026, 1, 1};
  policy->average_annual_wage_fen = 12'000'000;  // 10,000.00 a month
  return *policy;
}

PolicyBook Book(const Policy& policy) {
  PolicyBook book;
  EXPECT_TRUE(book.Add(policy).ok());
  return book;
}

// P: employee, man, 37 in 2027, wage 8,000.00 → a month er 480.00, ee 160.00, account 160.00 +
//    1% × 8,000.00 = 240.00, pooled 400.00.
// R: retiree, 76: account 4.8% × 10,000.00 = 480.00 a month, all from the pooled fund.
// M: employee, man born 1967-06-15, wage 6,000.00 (the floor): 59 until June (er 360.00, ee
//    120.00, account 120.00 + 2% × 6,000.00 = 240.00, pooled 240.00), 60 on 1 July: retires,
//    then 4.3% × 10,000.00 = 430.00 a month from the pooled fund.
std::vector<ForecastPerson> TinyRegistry() {
  return {{"P", {1990, 1, 1}, true, PersonCategory::kEmployee, 800'000, "110000"},
          {"R", {1950, 3, 10}, true, PersonCategory::kRetiree, 0, "110000"},
          {"M", {1967, 6, 15}, true, PersonCategory::kEmployee, 600'000, "110000"}};
}

// One admission of 10,000.00 at a grade-3 hospital per 10 people a year. First admission:
// deductible 0.92% × 120,000.00 = 1,104.00; the rest 8,896.00 in the first band, 15% co-payment
// (1,334.40) → the pooled fund pays 7,561.60; a retiree's co-payment is 60% of that (800.64) →
// 8,095.36.
Scenario TinyScenario() {
  Scenario s;
  s.claims = {{0, 100, 1'000'000}};
  s.personal_account_spend_bp = 5000;
  return s;
}

constexpr YearMonth kStart{2027, 1};

TEST(ForecastTest, OneYearMatchesTheHandComputation) {
  const Policy policy = TestPolicy();
  auto forecast = Project(TinyRegistry(), Book(policy), TinyScenario(), kStart, 1, 1'000'000);
  ASSERT_TRUE(forecast.ok()) << forecast.error().message;
  ASSERT_EQ(forecast->years.size(), 1u);
  const ForecastYear& y = forecast->years[0];
  EXPECT_EQ(y.first_month, kStart);
  EXPECT_EQ(y.employer_fen, 12 * 48'000 + 6 * 36'000);
  EXPECT_EQ(y.employee_fen, 12 * 16'000 + 6 * 12'000);
  EXPECT_EQ(y.retiree_allowance_fen, 12 * 48'000 + 6 * 43'000);
  EXPECT_EQ(y.personal_account_fen, 12 * 24'000 + 12 * 48'000 + 6 * 24'000 + 6 * 43'000);
  EXPECT_EQ(y.pooled_income_fen, 12 * 40'000 - 12 * 48'000 + 6 * 24'000 - 6 * 43'000);
  // 3 people × 100 ‰ = 0.3 admissions; pooled fund 0.1 × (7,561.60 × 2 + 8,095.36).
  EXPECT_EQ(y.admissions, 0);
  EXPECT_EQ(y.claims_fen, 232'186);
  EXPECT_EQ(y.pooled_fund_closing_fen, 1'000'000 - 210'000 - 232'186);
  EXPECT_EQ(y.personal_accounts_spent_fen, 633'000);
  EXPECT_EQ(y.personal_accounts_closing_fen, 633'000);
}

TEST(ForecastTest, RetirementsMovePeopleFromPayingToReceiving) {
  auto forecast = Project(TinyRegistry(), Book(TestPolicy()), TinyScenario(), kStart, 2, 0);
  ASSERT_TRUE(forecast.ok()) << forecast.error().message;
  EXPECT_EQ(forecast->years[0].retirements, 1);
  EXPECT_EQ(forecast->years[0].contributors, 1);
  EXPECT_EQ(forecast->years[0].retirees, 2);
  // Year 2: M pays nothing and draws the allowance all year.
  EXPECT_EQ(forecast->years[1].retirements, 0);
  EXPECT_EQ(forecast->years[1].employer_fen, 12 * 48'000);
  EXPECT_EQ(forecast->years[1].retiree_allowance_fen, 12 * 48'000 + 12 * 43'000);

  // A later retirement age keeps M paying all of year 1.
  Scenario later = TinyScenario();
  later.retirement_age_male = 65;
  auto kept = Project(TinyRegistry(), Book(TestPolicy()), later, kStart, 1, 0);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->years[0].retirements, 0);
  EXPECT_EQ(kept->years[0].employer_fen, 12 * 48'000 + 12 * 36'000);
}

TEST(ForecastTest, RaisingTheEmployerRateRaisesTheBalanceByExactlyTheExtraContributions) {
  const Policy current = TestPolicy();
  Policy proposed = current;
  proposed.contributions.employer_rate_bp = 700;
  const auto people = TinyRegistry();
  auto before = Project(people, Book(current), TinyScenario(), kStart, 3, 0);
  auto after = Project(people, Book(current), TinyScenario(), kStart, 3, 0, &proposed);
  ASSERT_TRUE(before.ok() && after.ok());
  Fen extra = 0;
  for (int i = 0; i < 3; ++i) {
    extra += after->years[i].employer_fen - before->years[i].employer_fen;
    EXPECT_EQ(after->years[i].pooled_fund_closing_fen - before->years[i].pooled_fund_closing_fen,
              extra);
  }
  // Year 1: P 80.00 × 12, M 60.00 × 6; then P alone.
  EXPECT_EQ(after->years[0].employer_fen - before->years[0].employer_fen, 96'000 + 36'000);
  EXPECT_EQ(extra, 132'000 + 2 * 96'000);
}

TEST(ForecastTest, AHigherDeductibleLowersClaimsAndRaisesTheBalance) {
  const Policy current = TestPolicy();
  Policy proposed = current;
  proposed.benefits.deductible_first_admission_bp = 200;  // 2,400.00
  auto before = Project(TinyRegistry(), Book(current), TinyScenario(), kStart, 1, 0);
  auto after = Project(TinyRegistry(), Book(current), TinyScenario(), kStart, 1, 0, &proposed);
  ASSERT_TRUE(before.ok() && after.ok());
  // 1,296.00 more deductible per admission, less its co-payment: employee 1,101.60, retiree
  // 1,179.36 → 0.1 × (2 × 1,101.60 + 1,179.36) = 338.256 yuan.
  EXPECT_EQ(before->years[0].claims_fen - after->years[0].claims_fen, 33'826);
  EXPECT_EQ(after->years[0].pooled_fund_closing_fen - before->years[0].pooled_fund_closing_fen,
            33'826);
}

TEST(ForecastTest, WageGrowthAndNewEntrants) {
  Scenario s = TinyScenario();
  s.wage_growth_bp = 500;
  s.new_entrants_per_year = 2;
  s.new_entrant_wage_fen = 900'000;
  auto forecast = Project({TinyRegistry()[0]}, Book(TestPolicy()), s, kStart, 2, 0);
  ASSERT_TRUE(forecast.ok()) << forecast.error().message;
  EXPECT_EQ(forecast->years[0].contributors, 3);
  EXPECT_EQ(forecast->years[1].contributors, 5);
  // Year 1: P 480.00 + two entrants at 540.00 a month. Year 2: wages +5% (P 8,400.00 → 504.00;
  // the entrants 9,450.00 → 567.00 each, the new two as well).
  EXPECT_EQ(forecast->years[0].employer_fen, 12 * (48'000 + 2 * 54'000));
  EXPECT_EQ(forecast->years[1].employer_fen, 12 * (50'400 + 4 * 56'700));
}

TEST(ForecastTest, RefusesBadInput) {
  EXPECT_FALSE(Project(TinyRegistry(), Book(TestPolicy()), TinyScenario(), kStart, 6, 0).ok());
  auto scenario = ParseScenarioJson(R"({"wage_growth_bp": 300, "claims": [{"from_age": 10,
      "admissions_per_1000": 5, "average_admission_fen": 100}]})");
  ASSERT_FALSE(scenario.ok());
  EXPECT_THAT(scenario.error().message, HasSubstr("claims[0].from_age"));
  auto unknown = ParseScenarioJson(R"({"wage_grwth_bp": 300})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("wage_grwth_bp: unknown field"));
  auto good = ParseScenarioJson(
      R"({"wage_growth_bp": 300, "retirement_age_female": 50, "admission_grade": 2,
          "claims": [{"from_age": 0, "admissions_per_1000": 50, "average_admission_fen": 900000},
                     {"from_age": 60, "admissions_per_1000": 200, "average_admission_fen": 1500000}],
          "opening_pooled_fund_fen": 123})");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->wage_growth_bp, 300);
  EXPECT_EQ(good->retirement_age_female, 50);
  EXPECT_EQ(good->admission_grade, FacilityGrade::kGrade2);
  EXPECT_EQ(good->claims[1].admissions_per_1000, 200);
  EXPECT_EQ(good->opening_pooled_fund_fen, 123);
}

class ForecastRegistryTest : public ::testing::TestWithParam<store::Engine> {};

TEST_P(ForecastRegistryTest, ProjectsTheRealRegistryFromTheBooks) {
  auto url = test_support::NewTestDatabaseUrl(GetParam());
  ASSERT_TRUE(url.ok()) << url.error().message;
  auto db = store::Database::Open(*url);
  ASSERT_TRUE(db.ok()) << db.error().message;
  auto conn = (*db)->Connect();
  ASSERT_TRUE(conn.ok());
  store::Connection& c = **conn;
  ASSERT_TRUE(store::Migrate(c, Migrations()).ok());
  const Policy policy = TestPolicy();
  const PolicyBook book = Book(policy);
  Registry registry(c);
  ASSERT_TRUE(registry.AddUnit({"U001", "Capital Steel", "62220202001122", "110000"}).ok());
  const auto enrol = [&](const char* ssn, Fen wage, PersonCategory category) {
    auto r = registry.Enrol({.ssn = ssn,
                             .name = "Person",
                             .birth_date = BirthDateOfSsn(ssn),
                             .unit_code = "U001",
                             .wage_base_fen = wage,
                             .category = category,
                             .effective = {2026, 1, 1}});
    ASSERT_TRUE(r.ok()) << r.error().message;
  };
  enrol("110101199001011237", 800'000, PersonCategory::kEmployee);  // P (a man: 3 is odd)
  enrol("110101195003103452", 0, PersonCategory::kRetiree);         // R
  enrol("110101198008085672", 700'000, PersonCategory::kEmployee);  // suspended below
  ASSERT_TRUE(registry.Suspend("110101198008085672", {2026, 10, 1}).ok());
  // One month run: the pooled fund's book holds 400.00 − 480.00 = −80.00.
  ASSERT_TRUE(RunMonth(c, book, {2026, 11}).ok());

  auto snapshot = RegistrySnapshot(c, {2027, 1, 1});
  ASSERT_TRUE(snapshot.ok());
  ASSERT_EQ(snapshot->size(), 2u);
  // By ssn: R (born 1950) first, then P; the suspended one is left out.
  EXPECT_EQ((*snapshot)[0].category, PersonCategory::kRetiree);
  EXPECT_TRUE((*snapshot)[1].male);
  EXPECT_EQ((*snapshot)[1].wage_base_fen, 800'000);
  EXPECT_EQ((*snapshot)[1].area, "110000");

  Scenario scenario = TinyScenario();
  Policy proposed = policy;
  proposed.contributions.employer_rate_bp = 700;
  auto what_if = ForecastFromRegistry(c, book, scenario, kStart, 2, proposed);
  ASSERT_TRUE(what_if.ok()) << what_if.error().message;
  EXPECT_EQ(what_if->current.opening_pooled_fund_fen, -8'000);
  EXPECT_EQ(what_if->current.years[0].employer_fen, 12 * 48'000);
  ASSERT_EQ(what_if->pooled_fund_change_fen.size(), 2u);
  EXPECT_EQ(what_if->pooled_fund_change_fen[0], 96'000);
  EXPECT_EQ(what_if->pooled_fund_change_fen[1], 192'000);
  const std::string csv = ForecastCsv(*what_if, true);
  EXPECT_THAT(csv, HasSubstr(",change\n1,2027-01,1,1,0,5760.00,"));
  EXPECT_THAT(csv, HasSubstr(",960.00\n2,2028-01,"));

  Policy elsewhere = policy;
  elsewhere.area_code = "310000";
  auto refused = ForecastFromRegistry(c, book, scenario, kStart, 1, elsewhere);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().field, "policy");
}

INSTANTIATE_TEST_SUITE_P(Engines, ForecastRegistryTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
