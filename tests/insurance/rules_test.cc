// Monthly contributions and personal-account allocation on the shipped example policy, worked
// by hand: average monthly wage 11,761.00 yuan (1,176,100 fen), employer 6%, employee 2%,
// base 60%..300% of the average (705,660..3,528,300 fen), employer share to the account 0.8% /
// 1% / 2% of the base from 35 / 45, retirees 4.3% / 4.8% of the average wage from 70.
#include "insurance/rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

namespace medcard::insurance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Policy Example() {
  auto policy =
      LoadPolicyFile(fs::path(MEDCARD_SOURCE_DIR) / "config" / "policy" / "beijing-example.json");
  EXPECT_TRUE(policy.ok()) << policy.error().message;
  return *policy;
}

struct MonthCase {
  std::string name;
  ContributingPerson person;
  YearMonth month;
  MonthlyContribution expected;
};

class MonthlyContributionCase : public ::testing::TestWithParam<MonthCase> {};

TEST_P(MonthlyContributionCase, MatchesTheWorkedExample) {
  const auto& c = GetParam();
  auto got = ComputeMonthlyContribution(Example(), c.person, c.month);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->age, c.expected.age);
  EXPECT_EQ(got->base_fen, c.expected.base_fen);
  EXPECT_EQ(got->clamp, c.expected.clamp);
  EXPECT_EQ(got->employer_fen, c.expected.employer_fen);
  EXPECT_EQ(got->employee_fen, c.expected.employee_fen);
  EXPECT_EQ(got->from_employee_part_fen, c.expected.from_employee_part_fen);
  EXPECT_EQ(got->from_employer_part_fen, c.expected.from_employer_part_fen);
  EXPECT_EQ(got->retiree_allowance_fen, c.expected.retiree_allowance_fen);
  EXPECT_EQ(got->personal_account_fen, c.expected.personal_account_fen);
  EXPECT_EQ(got->pooled_fund_fen, c.expected.pooled_fund_fen);
}

MonthlyContribution Expect(int age, Fen base, BaseClamp clamp, Fen employer, Fen employee,
                           Fen from_employer, Fen allowance, Fen account, Fen pooled) {
  MonthlyContribution m;
  m.age = age;
  m.base_fen = base;
  m.clamp = clamp;
  m.employer_fen = employer;
  m.employee_fen = employee;
  m.from_employee_part_fen = employee;
  m.from_employer_part_fen = from_employer;
  m.retiree_allowance_fen = allowance;
  m.personal_account_fen = account;
  m.pooled_fund_fen = pooled;
  return m;
}

INSTANTIATE_TEST_SUITE_P(
    WorkedExamples, MonthlyContributionCase,
    ::testing::Values(
        // Wage 10,000.00 inside the limits. Employer 6% = 600.00, employee 2% = 200.00;
        // account 200.00 + 0.8% × 10,000 = 80.00 → 280.00; pooled 800.00 − 280.00 = 520.00.
        MonthCase{
            "EmployeeUnder35",
            {PersonCategory::kEmployee, {1995, 6, 10}, 1'000'000},
            {2025, 3},
            Expect(29, 1'000'000, BaseClamp::kNone, 60'000, 20'000, 8'000, 0, 28'000, 52'000)},
        // Wage 5,000.00 is below the floor 7,056.60: base 705,660. Employer 6% = 42,339.6 →
        // 42,340 (half up); employee 2% = 14,113.2 → 14,113; age 50: 2% of base = 14,113;
        // account 28,226; pooled 42,340 + 14,113 − 28,226 = 28,227.
        MonthCase{"EmployeeBelowFloorAged50",
                  {PersonCategory::kEmployee, {1975, 1, 1}, 500'000},
                  {2025, 3},
                  Expect(50, 705'660, BaseClamp::kRaisedToFloor, 42'340, 14'113, 14'113, 0, 28'226,
                         28'227)},
        // Wage 50,000.00 above the cap 35,283.00: base 3,528,300. Employer 211,698; employee
        // 70,566; age 40: 1% = 35,283; account 105,849; pooled 282,264 − 105,849 = 176,415.
        MonthCase{"EmployeeAboveCapAged40",
                  {PersonCategory::kEmployee, {1985, 1, 1}, 5'000'000},
                  {2025, 3},
                  Expect(40, 3'528'300, BaseClamp::kLoweredToCap, 211'698, 70'566, 35'283, 0,
                         105'849, 176'415)},
        // Born 1990-03-15: 34 on 2025-03-01 (0.8%), 35 on 2025-04-01 (1%).
        MonthCase{
            "BirthdayMonthStillYoungerBand",
            {PersonCategory::kEmployee, {1990, 3, 15}, 1'000'000},
            {2025, 3},
            Expect(34, 1'000'000, BaseClamp::kNone, 60'000, 20'000, 8'000, 0, 28'000, 52'000)},
        MonthCase{
            "MonthAfterBirthdayOlderBand",
            {PersonCategory::kEmployee, {1990, 3, 15}, 1'000'000},
            {2025, 4},
            Expect(35, 1'000'000, BaseClamp::kNone, 60'000, 20'000, 10'000, 0, 30'000, 50'000)},
        // Flexible worker: pays both parts himself; the split is the employee's.
        MonthCase{
            "FlexibleWorker",
            {PersonCategory::kFlexible, {1995, 6, 10}, 1'000'000},
            {2025, 3},
            Expect(29, 1'000'000, BaseClamp::kNone, 60'000, 20'000, 8'000, 0, 28'000, 52'000)},
        // Retiree aged 68 pays nothing; account 4.3% × 1,176,100 = 50,572.3 → 50,572, financed
        // from the pool: pooled −50,572.
        MonthCase{"RetireeUnder70",
                  {PersonCategory::kRetiree, {1957, 1, 1}, 999'999},
                  {2025, 3},
                  Expect(68, 0, BaseClamp::kNone, 0, 0, 0, 50'572, 50'572, -50'572)},
        // Retiree aged 75: 4.8% × 1,176,100 = 56,452.8 → 56,453.
        MonthCase{"Retiree70AndOver",
                  {PersonCategory::kRetiree, {1950, 1, 1}, 0},
                  {2025, 3},
                  Expect(75, 0, BaseClamp::kNone, 0, 0, 0, 56'453, 56'453, -56'453)}),
    [](const auto& param_info) { return param_info.param.name; });

TEST(Age, CountsCompletedYearsAndLeapDayBirthdaysFromMarchFirst) {
  EXPECT_EQ(AgeOn({2000, 2, 29}, {2025, 2, 28}), 24);
  EXPECT_EQ(AgeOn({2000, 2, 29}, {2025, 3, 1}), 25);
  EXPECT_EQ(AgeOn({2000, 2, 29}, {2024, 2, 29}), 24);
  EXPECT_EQ(AgeOn({1990, 12, 31}, {2025, 12, 30}), 34);
  EXPECT_EQ(AgeOn({1990, 12, 31}, {2025, 12, 31}), 35);
  EXPECT_EQ(AgeAtMonth({1990, 1, 1}, {2025, 1}), 35);
  EXPECT_EQ(AgeAtMonth({1990, 1, 2}, {2025, 1}), 34);
}

TEST(MonthlyContribution, RefusesABirthDateAfterTheMonthOrNotADate) {
  const auto policy = Example();
  auto future = ComputeMonthlyContribution(
      policy, {PersonCategory::kEmployee, {2025, 4, 2}, 1'000'000}, {2025, 3});
  ASSERT_FALSE(future.ok());
  EXPECT_THAT(future.error().message, HasSubstr("birth_date: 2025-04-02 is after the month"));
  auto not_a_date = ComputeMonthlyContribution(
      policy, {PersonCategory::kEmployee, {1990, 2, 30}, 1'000'000}, {2025, 3});
  ASSERT_FALSE(not_a_date.ok());
  EXPECT_THAT(not_a_date.error().message, HasSubstr("birth_date"));
  auto bad_month = ComputeMonthlyContribution(
      policy, {PersonCategory::kEmployee, {1990, 2, 1}, 1'000'000}, {2025, 13});
  ASSERT_FALSE(bad_month.ok());
}

TEST(MonthlyContribution, ContributionBaseClampsToFloorAndCap) {
  const auto policy = Example();
  BaseClamp clamp = BaseClamp::kNone;
  EXPECT_EQ(ContributionBaseFen(policy, -5, &clamp), 705'660);
  EXPECT_EQ(clamp, BaseClamp::kRaisedToFloor);
  EXPECT_EQ(ContributionBaseFen(policy, 705'660, &clamp), 705'660);
  EXPECT_EQ(clamp, BaseClamp::kNone);
  EXPECT_EQ(ContributionBaseFen(policy, 3'528'300, &clamp), 3'528'300);
  EXPECT_EQ(clamp, BaseClamp::kNone);
  EXPECT_EQ(ContributionBaseFen(policy, 3'528'301, &clamp), 3'528'300);
  EXPECT_EQ(clamp, BaseClamp::kLoweredToCap);
}

// The invariant: employer + employee = personal account + pooled fund, to the fen, for any
// person, wage, age and policy rates — including odd rates that force rounding every time.
TEST(MonthlyContribution, PartsAlwaysAddUpToTheFen) {
  std::mt19937_64 random(20251126);
  auto policy = Example();
  for (int i = 0; i < 20'000; ++i) {
    policy.average_annual_wage_fen = std::uniform_int_distribution<Fen>(1, 100'000'000)(random);
    policy.contributions.employer_rate_bp =
        std::uniform_int_distribution<BasisPoints>(0, 1500)(random);
    policy.contributions.employee_rate_bp =
        std::uniform_int_distribution<BasisPoints>(0, 1000)(random);
    policy.allocation.employer_share_of_base = {
        {0, std::uniform_int_distribution<BasisPoints>(
                0, policy.contributions.employer_rate_bp)(random)},
        {45, policy.contributions.employer_rate_bp}};
    policy.allocation.retiree_share_of_average_wage = {
        {0, std::uniform_int_distribution<BasisPoints>(0, 1000)(random)}};
    ASSERT_TRUE(ValidatePolicy(policy).ok()) << ValidatePolicy(policy).error().message;
    const auto category = static_cast<PersonCategory>(i % 3);
    const ContributingPerson person{category,
                                    {std::uniform_int_distribution<int>(1930, 2005)(random),
                                     std::uniform_int_distribution<int>(1, 12)(random),
                                     std::uniform_int_distribution<int>(1, 28)(random)},
                                    std::uniform_int_distribution<Fen>(0, 20'000'000)(random)};
    auto month = ComputeMonthlyContribution(policy, person, {2025, 6});
    ASSERT_TRUE(month.ok()) << month.error().message;
    ASSERT_EQ(month->employer_fen + month->employee_fen,
              month->personal_account_fen + month->pooled_fund_fen)
        << "seed 20251126, iteration " << i;
    ASSERT_GE(month->personal_account_fen, 0);
    if (category != PersonCategory::kRetiree) {
      ASSERT_GE(month->pooled_fund_fen, 0) << "iteration " << i;
      ASSERT_LE(month->from_employer_part_fen, month->employer_fen);
    }
  }
}

}  // namespace
}  // namespace medcard::insurance
