// `medcard si policy ...` and `medcard si claim adjudicate` through the real binary, as an
// insurance officer runs them on the shipped example policy (docs/insurance.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_run.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using test_support::ReadText;
using ::testing::HasSubstr;

const fs::path kExamplePolicy =
    fs::path(MEDCARD_SOURCE_DIR) / "config" / "policy" / "beijing-example.json";

// A retiree aged 72, first admission, grade 3, in Beijing-like terms (worked in the test).
constexpr char kClaim[] = R"({
  "claim_id": "BJ-2025-000123",
  "person_id": "110101195301010011",
  "category": "retiree",
  "age": 72,
  "facility_grade": 3,
  "admission": "2025-03-02",
  "discharge": "2025-03-20",
  "diagnosis_icd10": "I21.0",
  "lines": [
    {"code": "250101001", "description": "ward and nursing", "category": "covered",
     "amount_fen": 1000000},
    {"code": "330000001", "description": "stent", "category": "partly_covered",
     "self_pay_bp": 1000, "amount_fen": 2000000},
    {"code": "Z-ROOM", "description": "single room", "category": "not_covered",
     "amount_fen": 50000}
  ],
  "year_so_far": {"eligible_on_service_date": true, "admissions_adjudicated": 0,
                  "pooled_fund_paid_fen": 0, "personal_account_balance_fen": 100000}
})";

class SiPolicyCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-si-policy-cli");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args) {
    return test_support::RunCli(
        {.binary = MEDCARD_CLI, .environment = "", .args = args, .input = std::nullopt}, dir_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  fs::path dir_;
};

TEST_F(SiPolicyCliTest, CheckAcceptsTheExampleAndSummarisesIt) {
  CliRun run = Medcard("si policy check " + kExamplePolicy.string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("ok: Beijing-like example policy"));
  EXPECT_THAT(run.out, HasSubstr("area 110000, effective from 2024-07-01"));
  EXPECT_THAT(run.out, HasSubstr("141132.00 a year, 11761.00 a month"));
  EXPECT_THAT(run.out, HasSubstr("deductible          first admission 1298.41, later 649.21"));
  EXPECT_THAT(run.out, HasSubstr("co-pay grade 3      15.00% up to 30000.00, 10.00% up to "
                                 "40000.00, 5.00% above"));
}

TEST_F(SiPolicyCliTest, CheckRefusesABadFieldNamingItWithExitOne) {
  auto policy = nlohmann::json::parse(ReadText(kExamplePolicy));
  policy["benefits"]["copay"]["grade3"][1]["upto_fen"] = 1000;
  CliRun run = Medcard("si policy check " + Write("bad.json", policy.dump()));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err,
              HasSubstr("bad.json: benefits.copay.grade3[1].upto_fen: must be greater than the "
                        "previous band"));
  EXPECT_EQ(run.out, "");
}

TEST_F(SiPolicyCliTest, ShowPrintsTheNormalisedPolicy) {
  CliRun run = Medcard("si policy show " + kExamplePolicy.string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto shown = nlohmann::json::parse(run.out);
  EXPECT_EQ(shown["average_annual_wage_fen"], 14'113'200);
  EXPECT_EQ(shown["benefits"]["copay"]["grade1"][0]["personal_bp"], 1000);
}

// Example policy: deductible (first) 129,841; grade 3 band 1 at 15%, retiree factor 60%.
// Line 0 covered 1,000,000: deductible 129,841; 870,159 × 15% = 130,523.85 → 130,524 × 60% =
//   78,314.4 → 78,314; pooled 791,845.
// Line 1 partly covered 2,000,000 at 10%: 200,000 self-pay first; 1,800,000 eligible: position
//   1,000,000 → 2,800,000, all band 1: 270,000 × 60% = 162,000; pooled 1,638,000.
// Line 2 not covered 50,000: self-pay.
// Pooled 2,429,845. Person: 129,841 + 78,314 + 200,000 + 162,000 + 50,000 = 620,155; the
// account's 100,000 pays the deductible first; self-pay 520,155. Total 3,050,000.
TEST_F(SiPolicyCliTest, AdjudicateExplainsAndSplitsTheClaim) {
  const std::string claim = Write("claim.json", kClaim);
  CliRun run = Medcard("si claim adjudicate --policy " + kExamplePolicy.string() + " " + claim);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("state: approved"));
  EXPECT_THAT(run.out, HasSubstr("deductible"));
  EXPECT_THAT(run.out, HasSubstr("retiree pays 60% of that"));
  EXPECT_THAT(run.out, HasSubstr("total billed 30500.00 = pooled fund 24298.45 + personal account "
                                 "1000.00 + self-pay 5201.55"));

  CliRun json =
      Medcard("si claim adjudicate --json --policy " + kExamplePolicy.string() + " " + claim);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto result = nlohmann::json::parse(json.out);
  EXPECT_EQ(result["state"], "approved");
  EXPECT_EQ(result["pooled_fund_fen"], 2'429'845);
  EXPECT_EQ(result["personal_account_fen"], 100'000);
  EXPECT_EQ(result["self_pay_fen"], 520'155);
  EXPECT_EQ(result["copay_fen"], 240'314);
}

TEST_F(SiPolicyCliTest, AdjudicateShowsARejectionWithItsReason) {
  auto claim = nlohmann::json::parse(kClaim);
  claim["year_so_far"]["eligible_on_service_date"] = false;
  claim["year_so_far"]["ineligible_reason"] = "enrolment suspended 2025-02-01";
  CliRun run = Medcard("si claim adjudicate --policy " + kExamplePolicy.string() + " " +
                       Write("claim.json", claim.dump()));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("state: rejected"));
  EXPECT_THAT(run.out, HasSubstr("enrolment suspended 2025-02-01"));
  EXPECT_THAT(run.out, HasSubstr("pooled fund 0.00 + personal account 0.00 + self-pay 30500.00"));
}

TEST_F(SiPolicyCliTest, AdjudicateRefusesABadClaimFileNamingTheField) {
  auto claim = nlohmann::json::parse(kClaim);
  claim["diagnosis_icd10"] = "MI";
  CliRun run = Medcard("si claim adjudicate --policy " + kExamplePolicy.string() + " " +
                       Write("claim.json", claim.dump()));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("claim.json: diagnosis_icd10: \"MI\" is not an ICD-10 code"));

  claim = nlohmann::json::parse(kClaim);
  claim["admission"] = "2020-01-01";
  run = Medcard("si claim adjudicate --policy " + kExamplePolicy.string() + " " +
                Write("old.json", claim.dump()));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("the policy takes effect 2024-07-01, after the admission"));
}

}  // namespace
}  // namespace medcard
