// `medcard si report ...` and `medcard si forecast` through the real binary, as the agency's
// officer runs them: after a month's run and a payment, the fund and arrears reports (CSV to
// standard output and to a file, an SVG chart), the balances distribution, and a forecast with a
// proposed policy saying how much it moves the pooled fund — and bad input refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "cli_run.h"
#include "insurance/consumption.h"
#include "store/store.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using test_support::ReadText;
using ::testing::HasSubstr;

class SiReportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-si-report-cli");
    ASSERT_FALSE(dir_.empty());
    si_ = (dir_ / "si").string();
    const std::string policy =
        std::string(MEDCARD_SOURCE_DIR) + "/config/policy/beijing-example.json";
    ASSERT_EQ(Medcard("si init --data " + si_ + " --policy " + policy).exit_code, 0);
    CliRun unit =
        Si("unit add --code U001 --name 'Capital Steel' --bank-account 62220202001122"
           " --area 110000");
    ASSERT_EQ(unit.exit_code, 0) << unit.err;
    Enrol("110101199001011237", "1990-01-01", "8000.00", "employee");
    Enrol("110101195003103452", "1950-03-10", "0", "retiree");
    Enrol("110101197506204561", "1975-06-20", "50000.00", "employee");
    CliRun run = Si("month run 2026-11");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    CliRun paid = Si("payment add --unit U001 --month 2026-11 --amount 100.00 --date 2026-11-20");
    ASSERT_EQ(paid.exit_code, 0) << paid.err;
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args) {
    return test_support::RunCli(
        {.binary = MEDCARD_CLI, .environment = "", .args = args, .input = std::nullopt}, dir_);
  }
  CliRun Si(const std::string& command) { return Medcard("si " + command + " --data " + si_); }
  void Enrol(const std::string& ssn, const std::string& birth, const std::string& wage,
             const std::string& category) {
    CliRun r =
        Si("person enrol --ssn " + ssn + " --name Person --birth-date " + birth +
           " --unit U001 --wage " + wage + " --category " + category + " --effective 2026-01-01");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  fs::path dir_;
  std::string si_;
};

// The example policy: average wage 11,761.00 a month. A (8,000.00): er 480.00, ee 160.00,
// account 240.00. C (retiree, 76): 4.8% → 564.53. D (50,000.00 → cap 35,283.00): er 2,116.98,
// ee 705.66, account 1,411.32.
TEST_F(SiReportCliTest, FundAndArrearsReportsWithACsvFileAndAChart) {
  CliRun fund = Si("report fund --from 2026-10 --to 2026-12");
  ASSERT_EQ(fund.exit_code, 0) << fund.err;
  EXPECT_EQ(fund.out,
            "month,people,employer,employee,billed,collected,arrears,personal_account_allocation,"
            "retiree_allowance,pooled_fund_income\n"
            "2026-11,3,2596.98,865.66,3462.64,100.00,3362.64,2215.85,564.53,1246.79\n");

  const std::string csv = (dir_ / "arrears.csv").string();
  const std::string svg = (dir_ / "arrears.svg").string();
  CliRun arrears = Si("report arrears --from 2026-11 --to 2026-11 --csv " + csv + " --svg " + svg);
  ASSERT_EQ(arrears.exit_code, 0) << arrears.err;
  EXPECT_EQ(ReadText(csv),
            "unit,name,months,billed,paid,arrears\nU001,Capital Steel,1,3462.64,100.00,3362.64\n");
  const std::string chart = ReadText(svg);
  EXPECT_TRUE(chart.starts_with("<?xml"));
  EXPECT_THAT(chart, HasSubstr("<title>U001: 3362.64</title>"));
  EXPECT_TRUE(chart.ends_with("</svg>\n"));

  CliRun balances =
      Si("report balances --from 2026-11 --to 2026-11 --svg " + (dir_ / "balances.svg").string());
  ASSERT_EQ(balances.exit_code, 0) << balances.err;
  EXPECT_THAT(balances.out, HasSubstr("0.00-500.00,0.00,500.00,1,240.00\n"));
  EXPECT_THAT(balances.out, HasSubstr("500.00-1000.00,500.00,1000.00,1,564.53\n"));
  EXPECT_THAT(balances.out, HasSubstr("1000.00-2000.00,1000.00,2000.00,1,1411.32\n"));
  EXPECT_THAT(ReadText(dir_ / "balances.svg"), HasSubstr("class=\"bar\""));
}

TEST_F(SiReportCliTest, ForecastWithAProposedPolicySaysHowTheFundMoves) {
  // The same policy with the employer rate at 7%: in 2027, 1% more of A's 8,000.00 and of D's
  // 35,283.00 base, twelve months: 960.00 + 4,233.96.
  std::string proposed =
      ReadText(std::string(MEDCARD_SOURCE_DIR) + "/config/policy/beijing-example.json");
  const auto at = proposed.find("\"employer_rate_bp\": 600");
  ASSERT_NE(at, std::string::npos);
  proposed.replace(at, 23, "\"employer_rate_bp\": 700");
  std::ofstream(dir_ / "proposed.json") << proposed;
  std::ofstream(dir_ / "scenario.json")
      << R"({"claims": [{"from_age": 0, "admissions_per_1000": 100, "average_admission_fen": 1000000}]})";

  CliRun forecast =
      Si("forecast --years 2 --start 2027-01 --scenario " + (dir_ / "scenario.json").string() +
         " --policy " + (dir_ / "proposed.json").string() + " --svg " +
         (dir_ / "forecast.svg").string());
  ASSERT_EQ(forecast.exit_code, 0) << forecast.err;
  EXPECT_THAT(forecast.out, HasSubstr("\n1,2027-01,2,1,0,"));
  EXPECT_THAT(forecast.out, HasSubstr(",5193.96\n2,2028-01,"));
  EXPECT_THAT(forecast.out,
              HasSubstr("moves the pooled fund's balance at the end of year 2 by 10387.92 yuan"));
  EXPECT_THAT(ReadText(dir_ / "forecast.svg"), HasSubstr("class=\"series\""));
}

// Spending: A's claim at H0001 (grade 3, I21.0, 10,000.00 covered) submitted, adjudicated and
// approved; the bank's detail for 2 November: A 25.00 at the pharmacy P002, G (not in the
// registry) 12.34 there. A's split on the example policy with 240.00 in the account: deductible
// 1,298.41 (240.00 from the account, 1,058.41 self-pay), co-pay 15% of 8,701.59 = 1,305.24,
// the pooled fund 7,396.35.
TEST_F(SiReportCliTest, SpendingByFacilityDiagnosisAndTopConsumers) {
  std::ofstream(dir_ / "claim.json") << R"({"claim_id": "H1-0001",
    "person_id": "110101199001011237", "category": "employee", "age": 36, "facility_grade": 3,
    "admission": "2026-11-05", "discharge": "2026-11-10", "diagnosis_icd10": "I21.0",
    "lines": [{"code": "250101001", "description": "ward", "category": "covered",
               "amount_fen": 1000000}],
    "year_so_far": {"eligible_on_service_date": true, "admissions_adjudicated": 0,
                    "pooled_fund_paid_fen": 0, "personal_account_balance_fen": 0}})";
  CliRun submitted = Si("claim submit --facility H0001 " + (dir_ / "claim.json").string());
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  CliRun approved = Si("claim approve 1 --officer officer-li");
  ASSERT_EQ(approved.exit_code, 0) << approved.err;

  const std::string key(64, '6');
  const auto batch_key = *insurance::BatchKey::FromHex(key);
  insurance::ConsumptionDetail detail{
      {2026, 11, 2},
      {{1, "1000000000000001/7", "110101199001011237", "P002", 2'500, "2026-11-02T09:15:00"},
       {2, "1000000000000002/3", "110101198202029999", "P002", 1'234, "2026-11-02T10:00:00"}}};
  std::ofstream(dir_ / "detail.jsonl") << insurance::WriteConsumptionDetail(detail, batch_key);
  CliRun imported = test_support::RunCli(
      {.binary = MEDCARD_CLI,
       .environment = "MEDCARD_ALLOCATION_KEY=" + key + " ",
       .args = "si consumption import --data " + si_ + " " + (dir_ / "detail.jsonl").string(),
       .input = std::nullopt},
      dir_);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;

  CliRun facility = Si("report facility --from 2026-11 --to 2026-11");
  ASSERT_EQ(facility.exit_code, 0) << facility.err;
  EXPECT_EQ(facility.out,
            "facility,grade,claims,billed,pooled_fund,personal_account,self_pay,card_purchases,"
            "card_spent\n"
            "H0001,3,1,10000.00,7396.35,240.00,2363.65,0,0.00\n"
            "P002,,0,0.00,0.00,0.00,0.00,2,37.34\n"
            "total,,1,10000.00,7396.35,240.00,2363.65,2,37.34\n");

  CliRun diagnosis = Si("report diagnosis --from 2026-11-01 --to 2026-11-30 --level category");
  ASSERT_EQ(diagnosis.exit_code, 0) << diagnosis.err;
  EXPECT_EQ(diagnosis.out,
            "diagnosis,title,claims,people,billed,pooled_fund,personal_account,self_pay\n"
            "I21,,1,1,10000.00,7396.35,240.00,2363.65\n"
            "total,,1,1,10000.00,7396.35,240.00,2363.65\n");
  CliRun chapters = Si("report diagnosis --from 2026-11 --to 2026-11");
  ASSERT_EQ(chapters.exit_code, 0) << chapters.err;
  EXPECT_THAT(chapters.out, HasSubstr("\nIX,Diseases of the circulatory system,1,1,10000.00,"));

  const std::string svg = (dir_ / "top.svg").string();
  CliRun top = Si("report top-consumers --from 2026-11 --to 2026-11 --limit 1 --svg " + svg);
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_EQ(top.out,
            "rank,person,name,claims,billed,pooled_fund,claims_personal_account,self_pay,"
            "card_purchases,card_spent,total\n"
            "1,110101199001011237,Person,1,10000.00,7396.35,240.00,2363.65,1,25.00,7421.35\n"
            "total,,2 people,1,10000.00,7396.35,240.00,2363.65,2,37.34,7433.69\n");
  EXPECT_THAT(ReadText(svg), HasSubstr("<title>110101199001011237: 7421.35</title>"));

  // Balances on 30 November: A 240.00 − 25.00, C 564.53, D 1,411.32; G overdrawn by 12.34.
  CliRun balances = Si("report account-balances --as-of 2026-11-30");
  ASSERT_EQ(balances.exit_code, 0) << balances.err;
  EXPECT_THAT(balances.out,
              HasSubstr("overdrawn,,0.00,1,-12.34\n0.00-500.00,0.00,500.00,1,215.00\n"));
  EXPECT_THAT(balances.out, HasSubstr("\ntotal,,,4,2178.51\n"));

  CliRun level = Si("report diagnosis --from 2026-11 --to 2026-11 --level block");
  EXPECT_EQ(level.exit_code, 2);
  EXPECT_THAT(level.err, HasSubstr("--level: chapter or category"));
  CliRun day = Si("report facility --from 2026-11-31 --to 2026-12");
  EXPECT_EQ(day.exit_code, 2);
  EXPECT_THAT(day.err, HasSubstr("--from: expected YYYY-MM-DD or YYYY-MM, got '2026-11-31'"));
  CliRun limit = Si("report top-consumers --from 2026-11 --to 2026-11 --limit 0");
  EXPECT_NE(limit.exit_code, 0);
}

// Every `si` command that changes something leaves an entry in the agency's audit log, as the
// operating-system user ("cli:<login>") from "cli", in the API's action names; reports and
// a month already run leave none; the chain verifies.
TEST_F(SiReportCliTest, ChangesAreAuditedAsTheCommandLineUser) {
  ASSERT_EQ(Si("month run 2026-11").exit_code, 0);  // already run: nothing changed
  ASSERT_EQ(Si("report fund --from 2026-11 --to 2026-11").exit_code, 0);
  CliRun suspended = Si("person suspend --ssn 110101197506204561 --effective 2026-12-01");
  ASSERT_EQ(suspended.exit_code, 0) << suspended.err;

  auto database = store::Database::Open(store::SqliteUrlForDataDir(si_));
  ASSERT_TRUE(database.ok()) << database.error().message;
  auto connection = (*database)->Connect();
  ASSERT_TRUE(connection.ok());
  auto records = audit::Read(**connection, {});
  ASSERT_TRUE(records.ok()) << records.error().message;
  std::vector<std::string> actions;
  for (const auto& r : *records) {
    actions.push_back(r.entry.action + " " + r.entry.target);
    EXPECT_TRUE(r.entry.actor.starts_with("cli:")) << r.entry.actor;
    EXPECT_EQ(r.entry.from, "cli");
  }
  EXPECT_THAT(actions,
              ::testing::ElementsAre(
                  "si.unit.add unit:U001", "si.person.enrol person:110101199001011237",
                  "si.person.enrol person:110101195003103452",
                  "si.person.enrol person:110101197506204561", "si.month.run month:2026-11",
                  "si.payment.add unit:U001", "si.person.suspend person:110101197506204561"));
  EXPECT_THAT(records->back().entry.details, HasSubstr("\"effective\":\"2026-12-01\""));
  auto verified = audit::Verify(**connection);
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->intact) << verified->explanation;
}

TEST_F(SiReportCliTest, BadInputIsRefusedClearly) {
  CliRun month = Si("report fund --from 2026-13 --to 2026-12");
  EXPECT_EQ(month.exit_code, 2);
  EXPECT_THAT(month.err, HasSubstr("--from: expected YYYY-MM, got '2026-13'"));
  CliRun backwards = Si("report arrears --from 2026-12 --to 2026-11");
  EXPECT_EQ(backwards.exit_code, 2);
  EXPECT_THAT(backwards.err, HasSubstr("to: before from"));
  CliRun years = Si("forecast --years 6");
  EXPECT_NE(years.exit_code, 0);
  std::ofstream(dir_ / "bad.json") << R"({"wage_growth": 300})";
  CliRun scenario = Si("forecast --years 1 --scenario " + (dir_ / "bad.json").string());
  EXPECT_EQ(scenario.exit_code, 1);
  EXPECT_THAT(scenario.err, HasSubstr("wage_growth: unknown field"));
}

}  // namespace
}  // namespace medcard
