// `medcard host check` through the real binary, on both engines: what an operator sees for a
// consistent ledger, a damaged one, and a database that is not there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace medcard::ledger::testing {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

CliRun Medcard(const std::string& args) {
  const std::filesystem::path dir = test_support::NewTempDir("medcard-host-cli");
  const auto out = dir / "stdout", err = dir / "stderr";
  const std::string command = std::string(MEDCARD_CLI) + " " + args + " >" + out.string() + " 2>" +
                              err.string() + " </dev/null";
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadText(out), ReadText(err)};
}

class HostCheckCliTest : public LedgerTest {
 protected:
  // --data DIR for the SQLite database, --db URL for PostgreSQL: as the host itself is started.
  std::string Where() const {
    if (GetParam() == store::Engine::kPostgres) return "--db '" + url_ + "'";
    const std::string path = url_.substr(std::string("sqlite:").size());
    return "--data " + std::filesystem::path(path).parent_path().string();
  }

  void Business() {
    ASSERT_EQ(MustPost(Allocation("allocation/P1", "P1", 5'000)), Outcome::kPosted);
    Transfer load{.id = "load/1",
                  .debit = AccountId::Medical("P1"),
                  .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                  .amount = 2'000,
                  .cause = {cause::kLoad, std::string(kAsn) + "/1"},
                  .card_state = CardState{kAsn, Wallet::kEp, 2'000, 1, std::nullopt}};
    ASSERT_EQ(MustPost(load), Outcome::kPosted);
  }
};

INSTANTIATE_TEST_SUITE_P(Engines, HostCheckCliTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(HostCheckCliTest, ConsistentLedger_SaysSoAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(Business());
  const CliRun run = Medcard("host check " + Where());
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "ledger consistent: 3 accounts, 4 postings, 0 problems\n");
  EXPECT_EQ(run.err, "");
}

TEST_P(HostCheckCliTest, DamagedLedger_PrintsEveryProblemAndExitsOne) {
  ASSERT_NO_FATAL_FAILURE(Business());
  ASSERT_TRUE(
      conn_->Execute("UPDATE ledger_accounts SET balance = 1999 WHERE kind = 'card_float'").ok());
  const CliRun run = Medcard("host check " + Where());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.out, HasSubstr("the balances of all accounts sum to -1 fen, not 0\n"));
  EXPECT_THAT(run.out, HasSubstr("account card_float/" + std::string(kAsn) +
                                 "/EP: balance 1999 fen but its postings sum to 2000\n"));
  EXPECT_THAT(run.out,
              HasSubstr("card " + std::string(kAsn) +
                        " EP: float 1999 fen but the card's last known balance is 2000\n"));
  EXPECT_THAT(run.out, HasSubstr("ledger INCONSISTENT: 3 accounts, 4 postings, 3 problems\n"));
  EXPECT_THAT(run.err, HasSubstr("found 3 problem(s)"));
}

TEST_P(HostCheckCliTest, DatabaseWithoutALedger_IsAnError) {
  ASSERT_TRUE(conn_->ExecuteScript("DELETE FROM schema_migrations").ok());
  const CliRun run = Medcard("host check " + Where());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("no ledger in"));
}

TEST_P(HostCheckCliTest, LedgerOlderThanTheProgram_AsksForAMigrationFirst) {
  ASSERT_TRUE(conn_
                  ->ExecuteScript(
                      "DELETE FROM schema_migrations WHERE component = 'ledger' AND version > 1")
                  .ok());
  const CliRun run = Medcard("host check " + Where());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("has schema version 1, older than this program's " +
                                 std::to_string(ledger::Migrations().migrations.back().version)));
}

TEST(HostCheckCliUsageTest, MissingDataDirectory_IsAnErrorAndCreatesNothing) {
  const std::string dir = test_support::NewTempDir("medcard-host-cli") + "/nothing-here";
  const CliRun run = Medcard("host check --data " + dir);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("no database file"));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(HostCheckCliUsageTest, WithoutALocation_IsAUsageError) {
  const CliRun run = Medcard("host check");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--data DIR or --db URL"));
  EXPECT_EQ(Medcard("host check --data a --db sqlite:b").exit_code, 2);
}

}  // namespace
}  // namespace medcard::ledger::testing
