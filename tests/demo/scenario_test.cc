// The demo's whole day (src/demo/scenario.h) on SQLite and PostgreSQL: the agency's allocation
// reaches the cards and the merchants to the fen, and each of the day's exceptions happened as
// the cardholder and the cashier would see it.
#include "demo/scenario.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "test_database.h"

namespace medcard::demo {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class DemoScenarioTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override { ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1); }
  void TearDown() override { ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF"); }

  // shared_database: the bank's and the agency's tables in one database (`medcard demo --db`).
  ScenarioOptions Options(std::uint64_t seed, bool shared_database = false) {
    ScenarioOptions options;
    options.data_dir = test_support::NewTempDir("medcard-demo-scenario");
    if (GetParam() != store::Engine::kSqlite) {
      auto bank = test_support::NewTestDatabaseUrl(GetParam());
      auto agency = shared_database ? bank : test_support::NewTestDatabaseUrl(GetParam());
      EXPECT_TRUE(bank.ok() && agency.ok());
      if (bank.ok()) options.bank_database_url = *bank;
      if (agency.ok()) options.agency_database_url = *agency;
    }
    options.city = {
        .seed = seed, .units = 2, .people = 10, .cards = 6, .hospitals = 3, .pharmacies = 1};
    options.progress = [this](const std::string& line) { lines_.push_back(line); };
    return options;
  }
  std::vector<std::string> lines_;
};

TEST_P(DemoScenarioTest, EveryAllocatedFenIsOnACardInAMedicalAccountOrWithAMerchant) {
  const ScenarioOptions options = Options(11, /*shared_database=*/true);
  auto run = RunScenario(options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  for (const auto& p : r.problems) ADD_FAILURE() << p;
  EXPECT_TRUE(r.clean());

  EXPECT_EQ(r.people, 10);
  EXPECT_EQ(r.units, 2);
  EXPECT_EQ(r.retirees, 1);
  EXPECT_GT(r.allocated_fen, 0);
  EXPECT_EQ(r.batch_lines, 10);
  EXPECT_EQ(r.credited_fen, r.allocated_fen);
  EXPECT_EQ(r.cards, 6);
  EXPECT_EQ(r.terminals, 4);
  EXPECT_EQ(r.sign_ons, 4);
  EXPECT_EQ(r.loads, 12);  // ED and EP for every card
  EXPECT_GT(r.ed_purchases, 0);
  EXPECT_GT(r.ep_purchases, 0);
  // To the fen: the allocation is in the medical accounts, on the cards, or with the merchants.
  EXPECT_EQ(r.medical_fen + r.card_float_fen + r.merchant_fen + r.suspense_fen, r.allocated_fen);
  EXPECT_EQ(r.medical_fen, r.allocated_fen - r.loaded_fen);
  EXPECT_EQ(r.on_cards_fen, r.loaded_fen - r.ed_fen - r.ep_fen);
  EXPECT_EQ(r.merchant_fen, r.ed_fen + r.ep_fen);
  EXPECT_EQ(r.psam_signed_fen, r.merchant_fen);
  EXPECT_EQ(r.consumption_fen, r.merchant_fen);
  EXPECT_EQ(r.consumption_lines, r.ed_purchases + r.ep_purchases);
  EXPECT_EQ(r.terminals_settled, 4);
  EXPECT_EQ(r.settlement_exceptions, 0);
  EXPECT_TRUE(r.host_check_problems.empty());
}

TEST_P(DemoScenarioTest, TheAgencyAdjudicatesAndPaysAnInpatientClaimToTheFen) {
  auto run = RunScenario(Options(8));
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  EXPECT_EQ(r.claim_state, "paid");
  EXPECT_EQ(r.claim_billed_fen, 590000);
  EXPECT_GT(r.claim_pooled_fund_fen, 0);
  EXPECT_GE(r.claim_self_pay_fen, 30000);  // the single room is not covered
  EXPECT_EQ(r.claim_pooled_fund_fen + r.claim_personal_account_fen + r.claim_self_pay_fen,
            r.claim_billed_fen);
  EXPECT_THAT(lines_, ::testing::Contains(HasSubstr("inpatient claim of " + r.claim_person)));
  EXPECT_TRUE(r.clean());
}

TEST_P(DemoScenarioTest, TheDaysExceptionsAreRefusedOrRecoveredExactlyOnce) {
  auto run = RunScenario(Options(5));
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  EXPECT_TRUE(r.wrong_pin_refused);
  EXPECT_TRUE(r.insufficient_balance_refused);
  EXPECT_FALSE(r.lost_card.empty());
  EXPECT_TRUE(r.lost_card_refused);  // after the day end's blacklist download
  EXPECT_EQ(r.suspense_items, 0);    // the finder's attempt moved nothing
  EXPECT_FALSE(r.torn_card.empty());
  EXPECT_GT(r.torn_amount_fen, 0);
  EXPECT_EQ(r.torn_recoveries, 1);  // a second recovery found nothing to do
  EXPECT_EQ(r.torn_uploaded, 1);    // cleared and sent to the agency once
  EXPECT_TRUE(r.clean());
  EXPECT_THAT(lines_, ::testing::Contains(HasSubstr("reported lost")));
}

TEST_P(DemoScenarioTest, TheSettlementCsvsAreWrittenInTheDataDirectory) {
  const ScenarioOptions options = Options(3);
  auto run = RunScenario(options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  const std::string merchants = ReadText(run->merchant_settlement_csv);
  EXPECT_THAT(merchants,
              StartsWith("merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen\n"));
  const std::string terminals = ReadText(run->terminal_settlement_csv);
  EXPECT_THAT(terminals, StartsWith("terminal,day,"));
  EXPECT_EQ(std::count(terminals.begin(), terminals.end(), '\n'), 5);  // header + 4 terminals
  EXPECT_THAT(terminals, HasSubstr(",acknowledged\n"));
  EXPECT_EQ(fs::path(run->merchant_settlement_csv).parent_path(), fs::path(options.data_dir));

  // Run again in the same directory (SQLite: the databases are in it): a fresh day, the same
  // figures (the seed's city).
  if (GetParam() == store::Engine::kSqlite) {
    auto again = RunScenario(options);
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_TRUE(again->clean());
    EXPECT_EQ(again->allocated_fen, run->allocated_fen);
    EXPECT_EQ(again->merchant_fen, run->merchant_fen);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, DemoScenarioTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::demo
