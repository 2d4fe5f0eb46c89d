// The policy file as an operator writes it: the shipped example loads, every kind of mistake is
// refused with a message that starts with the bad field's path, and the book picks the version
// in force on a date.
#include "insurance/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

namespace medcard::insurance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

fs::path ExamplePolicyPath() {
  return fs::path(MEDCARD_SOURCE_DIR) / "config" / "policy" / "beijing-example.json";
}

nlohmann::json ExampleJson() {
  std::ifstream in(ExamplePolicyPath());
  return nlohmann::json::parse(in);
}

std::string LoadError(const nlohmann::json& document) {
  auto policy = ParsePolicyJson(document.dump());
  if (policy.ok()) return "(loaded)";
  return policy.error().message;
}

TEST(PolicyLoad, ShippedBeijingExampleLoadsWithItsFigures) {
  auto policy = LoadPolicyFile(ExamplePolicyPath());
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  EXPECT_EQ(policy->area_code, "110000");
  EXPECT_EQ(policy->effective_from, (Date{2024, 7, 1}));
  // 141,132.00 yuan a year = 11,761.00 a month.
  EXPECT_EQ(policy->AverageMonthlyWageFen(), 1'176'100);
  // 0.92% and 0.46% of the average wage: 1,298.41 and 649.21 yuan (half up from .72).
  EXPECT_EQ(policy->DeductibleFen(true), 129'841);
  EXPECT_EQ(policy->DeductibleFen(false), 64'921);
  EXPECT_EQ(policy->AnnualCapFen(), 56'452'800);
  EXPECT_EQ(policy->CopayBands(FacilityGrade::kGrade3).size(), 3u);
  EXPECT_EQ(policy->CopayBands(FacilityGrade::kGrade3)[0].personal_bp, 1500);
  EXPECT_FALSE(policy->CopayBands(FacilityGrade::kGrade1).back().upto_fen.has_value());
  EXPECT_THAT(policy->notes, HasSubstr("Example"));
}

TEST(PolicyLoad, WrittenBackAsJsonItLoadsToTheSamePolicy) {
  auto policy = LoadPolicyFile(ExamplePolicyPath());
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  auto again = ParsePolicyJson(PolicyToJson(*policy));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(PolicyToJson(*again), PolicyToJson(*policy));
  EXPECT_EQ(again->benefits.copay[1][1].upto_fen, 4'000'000);
}

struct BadField {
  std::string name;
  std::function<void(nlohmann::json&)> mutate;
  std::string expected_prefix;
};

class PolicyBadField : public ::testing::TestWithParam<BadField> {};

TEST_P(PolicyBadField, IsRefusedNamingTheField) {
  auto document = ExampleJson();
  GetParam().mutate(document);
  EXPECT_THAT(LoadError(document), StartsWith(GetParam().expected_prefix));
}

INSTANTIATE_TEST_SUITE_P(
    EachKindOfMistake, PolicyBadField,
    ::testing::Values(
        BadField{"UnknownTopLevelKey", [](auto& j) { j["colour"] = "blue"; },
                 "colour: unknown field"},
        BadField{"UnknownNestedKey",
                 [](auto& j) { j["benefits"]["copay"]["grade4"] = nlohmann::json::array(); },
                 "benefits.copay.grade4: unknown field"},
        BadField{"UnknownKeyInBand",
                 [](auto& j) { j["benefits"]["copay"]["grade2"][0]["upto"] = 1; },
                 "benefits.copay.grade2[0].upto: unknown field"},
        BadField{"MissingField", [](auto& j) { j["benefits"].erase("annual_cap_bp"); },
                 "benefits.annual_cap_bp: is required"},
        BadField{"StringForNumber", [](auto& j) { j["contributions"]["employer_rate_bp"] = "6%"; },
                 "contributions.employer_rate_bp: must be an integer"},
        BadField{"DecimalMoney", [](auto& j) { j["average_annual_wage_fen"] = 141132.5; },
                 "average_annual_wage_fen: must be a whole number"},
        BadField{"RateAbove100Percent",
                 [](auto& j) { j["contributions"]["employee_rate_bp"] = 12000; },
                 "contributions.employee_rate_bp: must be between 0 and 10000 bp"},
        BadField{"NegativeRate",
                 [](auto& j) { j["benefits"]["deductible_later_admission_bp"] = -1; },
                 "benefits.deductible_later_admission_bp: must be between 0 and 10000 bp"},
        BadField{"RatesTogetherAbove100Percent",
                 [](auto& j) {
                   j["contributions"]["employer_rate_bp"] = 9000;
                   j["contributions"]["employee_rate_bp"] = 2000;
                 },
                 "contributions.employee_rate_bp: employer and employee rates together"},
        BadField{"BandsNotAscending",
                 [](auto& j) { j["benefits"]["copay"]["grade3"][1]["upto_fen"] = 2'000'000; },
                 "benefits.copay.grade3[1].upto_fen: must be greater than the previous band"},
        BadField{"LastBandClosed",
                 [](auto& j) { j["benefits"]["copay"]["grade2"][2]["upto_fen"] = 9'000'000; },
                 "benefits.copay.grade2[2].upto_fen: the last band must be open-ended"},
        BadField{"MiddleBandOpen",
                 [](auto& j) { j["benefits"]["copay"]["grade1"][0].erase("upto_fen"); },
                 "benefits.copay.grade1[0].upto_fen: is required on every band but the last"},
        BadField{"NoBands",
                 [](auto& j) { j["benefits"]["copay"]["grade1"] = nlohmann::json::array(); },
                 "benefits.copay.grade1: must have at least one band"},
        BadField{"BandIsNotAnObject", [](auto& j) { j["benefits"]["copay"]["grade1"][1] = 5; },
                 "benefits.copay.grade1[1]: must be an object"},
        BadField{"AgeBandsNotFromZero",
                 [](auto& j) { j["allocation"]["employer_share_of_base"][0]["from_age"] = 18; },
                 "allocation.employer_share_of_base[0].from_age: the first band must start at "
                 "age 0"},
        BadField{"AgeBandsNotAscending",
                 [](auto& j) { j["allocation"]["employer_share_of_base"][2]["from_age"] = 35; },
                 "allocation.employer_share_of_base[2].from_age: must be greater than the "
                 "previous band"},
        BadField{"AllocationAboveEmployerRate",
                 [](auto& j) { j["allocation"]["employer_share_of_base"][2]["rate_bp"] = 700; },
                 "allocation.employer_share_of_base[2].rate_bp: must not exceed "
                 "contributions.employer_rate_bp"},
        BadField{"FloorAboveCap", [](auto& j) { j["contributions"]["base_floor_bp"] = 40000; },
                 "contributions.base_cap_bp: must not be below contributions.base_floor_bp"},
        BadField{"NotACalendarDate", [](auto& j) { j["effective_from"] = "2024-02-30"; },
                 "effective_from: is not a calendar date"},
        BadField{"DateInAnotherFormat", [](auto& j) { j["effective_from"] = "2024/07/01"; },
                 "effective_from: must be a date \"YYYY-MM-DD\""},
        BadField{"AreaCodeShape", [](auto& j) { j["area_code"] = "BJ"; },
                 "area_code: must be a 6-digit administrative division code"},
        BadField{"WageZero", [](auto& j) { j["average_annual_wage_fen"] = 0; },
                 "average_annual_wage_fen: must be between 1 and"},
        BadField{"BoolAsString",
                 [](auto& j) { j["benefits"]["personal_account_pays"]["copay"] = "yes"; },
                 "benefits.personal_account_pays.copay: must be true or false"},
        BadField{"SectionNotAnObject", [](auto& j) { j["contributions"] = 6; },
                 "contributions: must be an object"},
        BadField{"DocumentNotAnObject", [](auto& j) { j = nlohmann::json::array(); },
                 "(document): must be an object"}),
    [](const auto& param_info) { return param_info.param.name; });

TEST(PolicyLoad, NotJsonIsRefused) {
  auto policy = ParsePolicyJson("{\"area_code\": ");
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.error().message, "(document): not valid JSON");
}

TEST(PolicyLoad, MissingFileNamesThePath) {
  auto policy = LoadPolicyFile("/nonexistent/policy.json");
  ASSERT_FALSE(policy.ok());
  EXPECT_THAT(policy.error().message, HasSubstr("/nonexistent/policy.json: cannot open"));
}

TEST(PolicyArithmetic, ApplyBpRoundsHalfUpToTheFen) {
  EXPECT_EQ(ApplyBp(5, 1000), 1);    // 0.5 fen → 1
  EXPECT_EQ(ApplyBp(4, 1000), 0);    // 0.4 fen → 0
  EXPECT_EQ(ApplyBp(15, 1000), 2);   // 1.5 → 2
  EXPECT_EQ(ApplyBp(-5, 1000), -1);  // half away from zero
  EXPECT_EQ(ApplyBp(1'000'000, 10000), 1'000'000);
  EXPECT_EQ(ApplyBp(900'000'000'000'000, 10000), 900'000'000'000'000);
}

TEST(PolicyArithmetic, RateForAgePicksTheBandTheAgeFallsIn) {
  const std::vector<AgeBandRate> bands = {{0, 80}, {35, 100}, {45, 200}};
  EXPECT_EQ(RateForAge(bands, 0), 80);
  EXPECT_EQ(RateForAge(bands, 34), 80);
  EXPECT_EQ(RateForAge(bands, 35), 100);
  EXPECT_EQ(RateForAge(bands, 44), 100);
  EXPECT_EQ(RateForAge(bands, 45), 200);
  EXPECT_EQ(RateForAge(bands, 99), 200);
}

Policy ExamplePolicyFrom(const Date& from, Fen wage) {
  auto policy = LoadPolicyFile(ExamplePolicyPath());
  EXPECT_TRUE(policy.ok());
  policy->effective_from = from;
  policy->average_annual_wage_fen = wage;
  return *policy;
}

TEST(PolicyBook, PicksTheVersionInForceOnTheDate) {
  PolicyBook book;
  ASSERT_TRUE(book.Add(ExamplePolicyFrom({2024, 7, 1}, 14'113'200)).ok());
  ASSERT_TRUE(book.Add(ExamplePolicyFrom({2025, 7, 1}, 14'600'000)).ok());
  auto before = book.For("110000", {2024, 6, 30});
  ASSERT_FALSE(before.ok());
  EXPECT_THAT(before.error().message, HasSubstr("no policy in force in area 110000 on 2024-06-30"));
  auto first_day = book.For("110000", {2024, 7, 1});
  ASSERT_TRUE(first_day.ok());
  EXPECT_EQ((*first_day)->average_annual_wage_fen, 14'113'200);
  auto last_day = book.For("110000", {2025, 6, 30});
  ASSERT_TRUE(last_day.ok());
  EXPECT_EQ((*last_day)->average_annual_wage_fen, 14'113'200);
  auto later = book.For("110000", {2030, 1, 1});
  ASSERT_TRUE(later.ok());
  EXPECT_EQ((*later)->average_annual_wage_fen, 14'600'000);
  auto other_area = book.For("310000", {2025, 1, 1});
  ASSERT_FALSE(other_area.ok());
  EXPECT_THAT(other_area.error().message, HasSubstr("no policy for area 310000"));
  EXPECT_EQ(book.Areas(), std::vector<std::string>{"110000"});
}

TEST(PolicyBook, RefusesASecondVersionFromTheSameDateAndAnInvalidPolicy) {
  PolicyBook book;
  ASSERT_TRUE(book.Add(ExamplePolicyFrom({2024, 7, 1}, 14'113'200)).ok());
  auto duplicate = book.Add(ExamplePolicyFrom({2024, 7, 1}, 15'000'000));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.error().message,
              HasSubstr("already has a policy effective from 2024-07-01"));
  auto invalid = ExamplePolicyFrom({2026, 1, 1}, 14'113'200);
  invalid.benefits.copay[2][1].upto_fen = 100;
  auto refused = book.Add(invalid);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message,
              StartsWith("benefits.copay.grade3[1].upto_fen: must be greater than the previous"));
  EXPECT_TRUE(book.For("110000", {2026, 6, 1}).ok());
  EXPECT_EQ((*book.For("110000", {2026, 6, 1}))->effective_from, (Date{2024, 7, 1}));
}

TEST(PolicyBook, LoadsADirectoryAndNamesTheBadFile) {
  const fs::path dir =
      fs::temp_directory_path() / ("medcard-policy-book-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
  };
  write("2024.json", PolicyToJson(ExamplePolicyFrom({2024, 7, 1}, 14'113'200)));
  write("2025.json", PolicyToJson(ExamplePolicyFrom({2025, 7, 1}, 14'600'000)));
  write("README.txt", "not a policy");
  auto book = PolicyBook::LoadDirectory(dir);
  ASSERT_TRUE(book.ok()) << book.error().message;
  EXPECT_EQ((*book->For("110000", {2025, 8, 1}))->average_annual_wage_fen, 14'600'000);

  auto bad = ExampleJson();
  bad["benefits"]["annual_cap_bp"] = "4x";
  write("2026.json", bad.dump());
  auto refused = PolicyBook::LoadDirectory(dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message,
              HasSubstr("2026.json: benefits.annual_cap_bp: must be an integer"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medcard::insurance
