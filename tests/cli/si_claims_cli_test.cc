// `medcard si import | claim | consumption` through the real binary, as the agency's officer runs
// them: units and people imported from CSV (a bad wages file refused whole with line and field),
// a facility's claim submitted and adjudicated against the registry, approved, paid twice and
// booked once, listed; a consumption file that does not authenticate refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "cli_run.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKey[] = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

constexpr char kClaim[] = R"({
  "claim_id": "BJ-2026-0001",
  "person_id": "110101199001011237",
  "category": "employee",
  "age": 36,
  "facility_grade": 3,
  "admission": "2026-03-02",
  "discharge": "2026-03-09",
  "diagnosis_icd10": "I21.0",
  "lines": [
    {"code": "250101001", "description": "ward and nursing", "category": "covered",
     "amount_fen": 1000000}
  ],
  "year_so_far": {"eligible_on_service_date": true, "admissions_adjudicated": 0,
                  "pooled_fund_paid_fen": 0, "personal_account_balance_fen": 0}
})";

class SiClaimsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-si-claims-cli");
    ASSERT_FALSE(dir_.empty());
    si_ = (dir_ / "si").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args) {
    return test_support::RunCli({.binary = MEDCARD_CLI,
                                 .environment = std::string("MEDCARD_ALLOCATION_KEY=") + kKey + " ",
                                 .args = args,
                                 .input = std::nullopt},
                                dir_);
  }
  CliRun Si(const std::string& command) { return Medcard("si " + command + " --data " + si_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  fs::path dir_;
  std::string si_;
};

TEST_F(SiClaimsCliTest, ImportSubmitApprovePayOnce) {
  CliRun init = Medcard("si init --data " + si_ + " --policy " + MEDCARD_SOURCE_DIR +
                        "/config/policy/beijing-example.json");
  ASSERT_EQ(init.exit_code, 0) << init.err;

  CliRun units =
      Si("import units " + Write("units.csv",
                                 "code,name,bank_account,area\n"
                                 "U001,\"Capital Steel, Ltd.\",62220202001122,110000\n"));
  ASSERT_EQ(units.exit_code, 0) << units.err;
  EXPECT_THAT(units.out, HasSubstr("imported 1 units"));
  CliRun people =
      Si("import people " + Write("people.csv",
                                  "ssn,name,unit_code,wage_base,category,effective\n"
                                  "110101199001011237,Li Lei,U001,8000.00,employee,2026-01-01\n"));
  ASSERT_EQ(people.exit_code, 0) << people.err;

  CliRun wages = Si("import wages " + Write("wages.csv",
                                            "ssn,wage_base,effective\n"
                                            "110101199001011237,9000.00,2026-07-01\n"
                                            "110101199001011237,9000.00,2026-08-01\n"));
  EXPECT_EQ(wages.exit_code, 2);
  EXPECT_THAT(wages.err, HasSubstr("line 3, wage_base: unchanged"));
  EXPECT_THAT(wages.err, HasSubstr("nothing was imported"));
  CliRun history = Si("person show --ssn 110101199001011237");
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, Not(HasSubstr("9000.00")));

  const std::string claim = Write("claim.json", kClaim);
  CliRun submitted = Si("claim submit --facility H0001 " + claim);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  EXPECT_THAT(submitted.out, HasSubstr("claim 1  adjudicated  facility H0001 no. BJ-2026-0001"));
  CliRun duplicate = Si("claim submit --facility H0001 " + claim);
  EXPECT_EQ(duplicate.exit_code, 1);
  EXPECT_THAT(duplicate.err, HasSubstr("submitted claim BJ-2026-0001 before"));

  CliRun early = Si("claim pay 1");
  EXPECT_EQ(early.exit_code, 1);
  EXPECT_THAT(early.err, HasSubstr("is adjudicated; it cannot be paid"));
  ASSERT_EQ(Si("claim approve 1 --officer officer-li").exit_code, 0);
  CliRun paid = Si("claim pay 1");
  ASSERT_EQ(paid.exit_code, 0) << paid.err;
  EXPECT_THAT(paid.out, HasSubstr("claim 1  paid"));
  CliRun again = Si("claim pay 1");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, paid.out);

  CliRun show = Si("claim show 1 --json");
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("\"state\": \"paid\""));
  EXPECT_THAT(show.out, HasSubstr("\"rule\": \"deductible\""));
  CliRun list = Si("claim list --state paid");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("BJ-2026-0001"));
  EXPECT_EQ(Si("claim list --state adjudicated").out, "");

  CliRun consumption = Si("consumption import " + Write("day.jsonl", "{}\n{}\n"));
  EXPECT_EQ(consumption.exit_code, 2);
  EXPECT_THAT(consumption.err, HasSubstr("file:"));
}

}  // namespace
}  // namespace medcard
