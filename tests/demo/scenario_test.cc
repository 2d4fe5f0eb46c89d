// The demo's whole day (src/demo/scenario.h) on SQLite and PostgreSQL: the agency's allocation
// reaches the cards and the merchants to the fen, and each of the day's exceptions happened as
// the cardholder and the cashier would see it.
#include "demo/scenario.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "common/money.h"
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
  // The wrong PIN and the purchase over the balance were refused; every other attempt paid.
  EXPECT_EQ(r.purchases_refused, 2);
  EXPECT_EQ(r.ed_purchases + r.ep_purchases, r.purchase_attempts - 2);
  EXPECT_FALSE(r.city_scale);
  EXPECT_EQ(r.workers, 1);
}

TEST_P(DemoScenarioTest, TheInpatientClaimIsPaidItsPersonalShareByCardAtTheHospitalsPos) {
  const ScenarioOptions options = Options(8);
  auto run = RunScenario(options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  for (const auto& p : r.problems) ADD_FAILURE() << p;
  EXPECT_EQ(r.claim_state, "paid");
  EXPECT_EQ(r.claim_billed_fen, 590000);
  EXPECT_GT(r.claim_pooled_fund_fen, 0);
  EXPECT_GE(r.claim_self_pay_fen, 30000);  // the single room is not covered
  EXPECT_EQ(r.claim_pooled_fund_fen + r.claim_personal_account_fen + r.claim_self_pay_fen,
            r.claim_billed_fen);

  // Settled at discharge, before the day end: the hospital's POS read the card's passbook, the
  // personal account paid no more than that, and the card paid exactly the share (ED, PIN).
  std::vector<std::string> phases;
  for (const PhaseTiming& p : r.phases) phases.push_back(p.name);
  EXPECT_THAT(phases,
              ::testing::ElementsAre("setup", "agency month", "bank import", "issuance", "sign-on",
                                     "loads", "purchases", "discharge", "day end", "host check",
                                     "consumption", "reconciliation"));
  EXPECT_GT(r.claim_personal_account_fen, 0);
  EXPECT_LE(r.claim_personal_account_fen, r.claim_card_balance_fen);
  EXPECT_THAT(r.claim_card, ::testing::MatchesRegex("[0-9]{20}"));
  EXPECT_EQ(r.claim_card_paid_fen, r.claim_personal_account_fen);
  EXPECT_FALSE(r.claim_terminal.empty());
  EXPECT_FALSE(r.claim_hospital.empty());
  const std::string payment = FormatFen(r.claim_personal_account_fen) + " paid by card " +
                              r.claim_card + " at " + r.claim_hospital + " terminal " +
                              r.claim_terminal + ", card serial " +
                              std::to_string(r.claim_card_serial);
  EXPECT_THAT(lines_, ::testing::Contains(HasSubstr("personal account share " + payment)));
  EXPECT_THAT(lines_, ::testing::Contains(HasSubstr("discharge: " + r.claim_person + " leaves ")));

  // Uploaded and cleared at day end like every purchase: once, for exactly the share, in the
  // agency's consumption detail under the card's ED reference, at the hospital.
  EXPECT_EQ(r.claim_card_reference,
            r.claim_card + "/ED/" + std::to_string(r.claim_card_serial));  // on the claim
  EXPECT_EQ(r.claim_card_cleared, 1);
  EXPECT_EQ(r.claim_card_cleared_fen, r.claim_personal_account_fen);
  std::istringstream detail(
      ReadText(fs::path(options.data_dir) / "agency" / ("consumption-" + r.day + ".jsonl")));
  const std::string reference =
      R"("reference":")" + r.claim_card + "/ED/" + std::to_string(r.claim_card_serial) + "\"";
  int found = 0;
  for (std::string line; std::getline(detail, line);) {
    if (line.find(reference) == std::string::npos) continue;
    ++found;
    EXPECT_THAT(line,
                HasSubstr(R"("amount_fen":)" + std::to_string(r.claim_personal_account_fen) + ","));
    EXPECT_THAT(line, HasSubstr(R"("person_id":")" + r.claim_person + "\""));
  }
  EXPECT_EQ(found, 1);
  // Every fen still reconciles: the card payment is with the hospital, counted as a purchase.
  EXPECT_EQ(r.merchant_fen, r.ed_fen + r.ep_fen);
  EXPECT_EQ(r.consumption_fen, r.merchant_fen);
  EXPECT_EQ(r.medical_fen + r.card_float_fen + r.merchant_fen + r.suspense_fen, r.allocated_fen);
  EXPECT_EQ(r.on_cards_fen, r.card_float_fen);
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
              StartsWith("merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen,"
                         "paid_on_review_count,paid_on_review_fen\n"));
  const std::string terminals = ReadText(run->terminal_settlement_csv);
  EXPECT_THAT(terminals, StartsWith("terminal,day,"));
  EXPECT_EQ(std::count(terminals.begin(), terminals.end(), '\n'), 5);  // header + 4 terminals
  EXPECT_THAT(terminals, HasSubstr(",acknowledged\n"));
  EXPECT_EQ(fs::path(run->merchant_settlement_csv).parent_path(), fs::path(options.data_dir));

  // A card paid from its passbook and its purse on the same day, and the agency took both
  // purchases: the consumption detail's references name the wallet (<ASN>/<ED|EP>/<serial>).
  std::map<std::string, std::set<std::string>> wallets;  // ASN → wallets it paid from
  std::istringstream detail(
      ReadText(fs::path(options.data_dir) / "agency" / ("consumption-" + run->day + ".jsonl")));
  for (std::string line; std::getline(detail, line);) {
    const auto at = line.find(R"("reference":")");
    if (at == std::string::npos) continue;
    const std::string reference = line.substr(at + 13, line.find('"', at + 13) - at - 13);
    wallets[reference.substr(0, 20)].insert(reference.substr(21, 2));
  }
  EXPECT_THAT(wallets, ::testing::Contains(
                           ::testing::Pair(::testing::_, std::set<std::string>{"ED", "EP"})));

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

// City scale (ScenarioOptions::purchases, docs/demo.md "City scale") on SQLite, small enough for
// CI: 300 cards, 3,000 purchase attempts, 20 terminals, two POS driver threads.
TEST(DemoScaleTest, ACityScaleDayReconcilesAndMeasuresEveryPhase) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  ScenarioOptions options;
  options.data_dir = test_support::NewTempDir("medcard-demo-scale");
  options.city = {.seed = 6, .units = 6, .people = 304, .cards = 300};
  SetTerminals(options.city, 20);
  options.purchases = 3000;
  options.workers = 2;
  std::mutex mutex;
  std::map<std::string, std::vector<StepProgress>> progress;
  options.step_progress = [&](const StepProgress& p) {
    std::lock_guard lock(mutex);
    progress[p.step].push_back(p);
  };
  auto run = RunScenario(options);
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  for (const auto& p : r.problems) ADD_FAILURE() << p;
  EXPECT_TRUE(r.clean());

  EXPECT_TRUE(r.city_scale);
  EXPECT_EQ(r.workers, 2);
  EXPECT_EQ(r.cards, 300);
  EXPECT_EQ(r.branch_cards, 12);  // the rest by the card bureau's issuance log
  EXPECT_EQ(r.bureau_cards, 288);
  EXPECT_EQ(r.terminals, 20);
  EXPECT_EQ(r.merchants, 20);
  EXPECT_EQ(r.sign_ons, 20);
  EXPECT_EQ(r.loads, 600);
  // 3,000 attempts: 2,997 by the cardholders, the wrong PIN, the purchase over the balance (both
  // refused) and the torn purchase (recovered); and the discharge's card payment on top: 3,001
  // attempts, 2,999 made, uploaded, cleared, sent to the agency.
  EXPECT_EQ(r.purchase_attempts, 3001);
  EXPECT_EQ(r.purchases_refused, 2);
  EXPECT_EQ(r.ed_purchases + r.ep_purchases, 2999);
  EXPECT_GT(r.ep_purchases, 500);
  EXPECT_EQ(r.purchases_uploaded, 2999);
  EXPECT_EQ(r.consumption_lines, 2999);
  EXPECT_TRUE(r.wrong_pin_refused);
  EXPECT_TRUE(r.insufficient_balance_refused);
  EXPECT_TRUE(r.lost_card_refused);
  EXPECT_EQ(r.torn_recoveries, 1);
  EXPECT_EQ(r.torn_uploaded, 1);
  EXPECT_EQ(r.terminals_settled, 20);
  EXPECT_EQ(r.settlement_exceptions, 0);
  EXPECT_EQ(r.suspense_items, 0);
  EXPECT_TRUE(r.host_check_problems.empty());
  EXPECT_EQ(r.medical_fen + r.card_float_fen + r.merchant_fen + r.suspense_fen, r.allocated_fen);
  EXPECT_EQ(r.merchant_fen, r.ed_fen + r.ep_fen);
  EXPECT_EQ(r.on_cards_fen, r.card_float_fen);

  // The discharge, as in the scripted day: the claim's personal-account share paid by the
  // patient's card (neither the lost nor the torn-purchase card) at a grade-3 hospital's terminal
  // of the card's own worker (card c and terminal t: c mod 2 = t mod 2), cleared once at day end.
  EXPECT_EQ(r.claim_state, "paid");
  EXPECT_GT(r.claim_personal_account_fen, 0);
  EXPECT_LE(r.claim_personal_account_fen, r.claim_card_balance_fen);
  EXPECT_THAT(r.claim_card, ::testing::MatchesRegex("1100000000000[0-9]{7}"));
  EXPECT_NE(r.claim_card, r.lost_card);
  EXPECT_NE(r.claim_card, r.torn_card);
  EXPECT_THAT(r.claim_hospital, HasSubstr("Hospital"));
  ASSERT_THAT(r.claim_terminal, ::testing::MatchesRegex("POS[0-9]{5}"));
  const int card_index = std::stoi(r.claim_card.substr(14)) - 10001;
  const int terminal_index = std::stoi(r.claim_terminal.substr(3)) - 1;
  EXPECT_EQ(card_index % 2, terminal_index % 2);
  EXPECT_EQ(r.claim_card_paid_fen, r.claim_personal_account_fen);
  EXPECT_EQ(r.claim_card_reference, r.claim_card + "/ED/" + std::to_string(r.claim_card_serial));
  EXPECT_EQ(r.claim_card_cleared, 1);
  EXPECT_EQ(r.claim_card_cleared_fen, r.claim_personal_account_fen);

  // The latencies: one sample per load, per cardholder purchase (not the exceptions', but the
  // discharge's), per terminal's day end.
  EXPECT_EQ(r.load_latency.count, 600);
  EXPECT_EQ(r.purchase_latency.count, 2998);
  EXPECT_EQ(r.day_end_latency.count, 20);
  for (const LatencySummary& s : {r.load_latency, r.purchase_latency, r.day_end_latency}) {
    EXPECT_GT(s.p50_us, 0);
    EXPECT_LE(s.p50_us, s.p95_us);
    EXPECT_LE(s.p95_us, s.p99_us);
    EXPECT_LE(s.p99_us, s.max_us);
    EXPECT_LE(s.max_us, s.total_us);
  }
  // Every phase, in the day's order, with its wall time; the items of the busy ones.
  std::vector<std::string> names;
  std::int64_t phases_us = 0;
  std::map<std::string, PhaseTiming> by_name;
  for (const PhaseTiming& p : r.phases) {
    names.push_back(p.name);
    phases_us += p.wall_us;
    by_name[p.name] = p;
    EXPECT_GT(p.wall_us, 0) << p.name;
  }
  EXPECT_THAT(names,  // the scripted day's
              ::testing::ElementsAre("setup", "agency month", "bank import", "issuance", "sign-on",
                                     "loads", "purchases", "discharge", "day end", "host check",
                                     "consumption", "reconciliation"));
  EXPECT_LE(phases_us, r.total_wall_us);
  EXPECT_EQ(by_name["agency month"].items, 304);
  EXPECT_EQ(by_name["issuance"].items, 300);
  EXPECT_EQ(by_name["loads"].items, 600);
  EXPECT_EQ(by_name["purchases"].items, 3000);
  EXPECT_EQ(by_name["day end"].items, 2999);
  EXPECT_GT(by_name["loads"].host_wall_us, 0);  // the host's handler answered the loads
  EXPECT_GT(by_name["day end"].host_wall_us, 0);
  EXPECT_GT(r.cleared_per_second, 0.0);
  // Cleared per second of the day end's uploads, at least the phase's rate (which also counts
  // reading back the settlements).
  EXPECT_GE(r.cleared_per_second * 1.0001, by_name["day end"].per_second());

  // Progress for each long step, ending at its total.
  for (const auto& [step, total] :
       std::map<std::string, std::int64_t>{{"issuing cards", 288},
                                           {"online loads", 300},
                                           {"purchases", 2997},
                                           {"day end", 20},
                                           {"reading the cards", 300}}) {
    ASSERT_TRUE(progress.contains(step)) << step;
    EXPECT_EQ(progress[step].front().done, 0) << step;
    EXPECT_EQ(progress[step].back().done, total) << step;
    EXPECT_EQ(progress[step].back().total, total) << step;
  }

  // The card bureau's issuance log (mode 0600; no PIN field), and image files only for the
  // branch's cards: the bureau's are in memory.
  const fs::path log = fs::path(options.data_dir) / "cards" / "issuance-log.jsonl";
  const std::string text = ReadText(log);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 288);
  EXPECT_THAT(text, HasSubstr(R"("event":"issued","format":1,"holder":")"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr(R"("pin")")));
  struct stat st {};
  ASSERT_EQ(::stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int images = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(options.data_dir) / "cards")) {
    images += entry.path().extension() == ".img" ? 1 : 0;
  }
  EXPECT_EQ(images, 12);
  // Each worker's POS key store.
  EXPECT_TRUE(fs::exists(fs::path(options.data_dir) / "pos" / "keys-0"));
  EXPECT_TRUE(fs::exists(fs::path(options.data_dir) / "pos" / "keys-1"));
}

// The same load test against PostgreSQL (`medcard demo --db`): the bank's and the agency's
// databases on the throwaway server, the bureau's cards, terminals driven by two threads.
TEST(DemoScaleTest, OnPostgreSqlACityScaleDayReconcilesToo) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  ScenarioOptions options;
  options.data_dir = test_support::NewTempDir("medcard-demo-scale-pg");
  auto bank = test_support::NewTestDatabaseUrl(store::Engine::kPostgres);
  auto agency = test_support::NewTestDatabaseUrl(store::Engine::kPostgres);
  ASSERT_TRUE(bank.ok() && agency.ok());
  options.bank_database_url = *bank;
  options.agency_database_url = *agency;
  options.city = {.seed = 8, .units = 3, .people = 44, .cards = 40};
  SetTerminals(options.city, 6);
  options.purchases = 400;
  options.workers = 2;
  auto run = RunScenario(options);
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  ASSERT_TRUE(run.ok()) << run.error().message;
  const ScenarioReport& r = *run;
  for (const auto& p : r.problems) ADD_FAILURE() << p;
  EXPECT_TRUE(r.clean());
  EXPECT_TRUE(r.city_scale);
  EXPECT_EQ(r.bureau_cards, 28);
  EXPECT_EQ(r.terminals_settled, 6);
  EXPECT_EQ(r.purchase_attempts, 401);  // 400 and the discharge's card payment
  EXPECT_EQ(r.purchases_refused, 2);
  EXPECT_EQ(r.purchases_uploaded, 399);
  EXPECT_EQ(r.consumption_lines, 399);
  EXPECT_EQ(r.claim_state, "paid");
  EXPECT_FALSE(r.claim_card.empty());
  EXPECT_GT(r.claim_card_paid_fen, 0);
  EXPECT_EQ(r.claim_card_paid_fen, r.claim_personal_account_fen);
  EXPECT_EQ(r.claim_card_cleared, 1);
  EXPECT_EQ(r.claim_card_cleared_fen, r.claim_personal_account_fen);
  EXPECT_EQ(r.torn_recoveries, 1);
  EXPECT_TRUE(r.lost_card_refused);
  EXPECT_EQ(r.suspense_items, 0);
  EXPECT_TRUE(r.host_check_problems.empty());
  EXPECT_EQ(r.medical_fen + r.card_float_fen + r.merchant_fen + r.suspense_fen, r.allocated_fen);
  EXPECT_EQ(r.merchant_fen, r.ed_fen + r.ep_fen);
  EXPECT_EQ(r.on_cards_fen, r.card_float_fen);
}

TEST(DemoScaleTest, PurchaseCountsTheDayCannotMakeAreRefusedBeforeAnythingIsTouched) {
  const fs::path dir = fs::path(test_support::NewTempDir("medcard-demo-scale-refused")) / "d";
  for (std::int64_t purchases : {std::int64_t{2}, std::int64_t{121}}) {  // 6 cards: at most 120
    ScenarioOptions options;
    options.data_dir = dir.string();
    options.city = {.seed = 1, .units = 2, .people = 8, .cards = 6};
    options.purchases = purchases;
    auto run = RunScenario(options);
    ASSERT_FALSE(run.ok()) << purchases;
    EXPECT_THAT(run.error().message, HasSubstr("city scale: from 3 purchases to 20 per card"));
    EXPECT_FALSE(fs::exists(dir));
  }
}

}  // namespace
}  // namespace medcard::demo
