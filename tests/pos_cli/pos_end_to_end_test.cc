// Issue 5's required end-to-end test: everything a terminal and the bank do in a day, through
// the real programs. The card (a TEST card, issued with the published test key set into an
// image) is served by `medcard card attach` in vpcd slot 0 and the PSAM by `medcard psam attach`
// in slot 1, through a real pcscd; the bank is a real `medcard host run` process on SQLite with
// the card imported and the terminal registered. `medcard pos` then installs the terminal (TMK
// delivery, sign-on), loads the ED and the EP through the host, sells from the ED (PIN) and the
// EP, has the card pulled in the middle of purchases (its attach process SIGKILLed: the vpcd
// socket closes, pcscd sees the card removed — a power cut for the card), recovers the torn
// purchase once the card is back, and settles at day end. The host's books must then match the
// card's balances and the terminal's journal exactly, to the fen.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_run.h"
#include "crypto/crypto.h"
#include "host/host.h"
#include "host_directory.h"
#include "keys/key_store.h"
#include "medcard_processes.h"
#include "pcscd_fixture.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "pos_bank.h"
#include "reader/reader.h"
#include "store/store.h"
#include "test_database.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;

[[maybe_unused]] auto* const kPcscd = test_support::RegisterPcscdEnvironment();

constexpr char kPassphrase[] = "pos end to end passphrase";
constexpr char kMerchant[] = "123456789012345";
constexpr char kTerminalId[] = "T0000103";
constexpr char kTerminalNumber[] = "000000000103";
constexpr char kPsamSerial[] = "50000000000000000103";
constexpr char kAsn[] = "11000000000000000044";
constexpr char kPin[] = "123456";
constexpr char kPerson[] = "110101199001011234";
constexpr std::int64_t kCredit = 1'000'000;  // fen in the cardholder's medical account
constexpr const char* kTkekComponent1 = test_support::kTestTkekComponent1;
constexpr const char* kTkekComponent2 = test_support::kTestTkekComponent2;
constexpr int kMaxTornRounds = 60;

class PosEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Inherited by every medcard process the test starts (the host's and the terminal's key
    // stores are opened with it; the KDF is the fast test one).
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);
    dir_ = test_support::NewTempDir("medcard-pos-e2e");
    host_dir_ = dir_ + "/host";
    fs::create_directories(dir_ + "/run");
  }
  void TearDown() override {
    card_.reset();
    psam_.reset();
    host_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  test_support::CliRun Run(const std::string& args, std::optional<std::string> input = {}) {
    return test_support::RunCli({MEDCARD_CLI, "", args, std::move(input)}, dir_ + "/run");
  }
  test_support::CliRun Pos(const std::string& args, std::optional<std::string> input = {}) {
    return Run("pos " + args + " --config " + Path("pos.json"), std::move(input));
  }
  json PosJson(const std::string& args, std::optional<std::string> input = {}) {
    auto run = Pos(args + " --json", std::move(input));
    EXPECT_EQ(run.exit_code, 0) << args << ": " << run.out << run.err;
    return json::parse(run.out, nullptr, false);
  }

  // The bank before it opens: test keys, the merchant and the terminal (its TMK), the tkek
  // ceremony, the cardholder's card and medical account.
  void PrepareBank() {
    test_support::HostDirectorySpec spec;
    spec.data_dir = host_dir_;
    spec.passphrase = kPassphrase;
    spec.merchant_id = kMerchant;
    spec.merchant_name = "City Hospital";
    spec.terminal_id = kTerminalId;
    spec.terminal_number = HexToBytes(kTerminalNumber);
    spec.psam_serial = HexToBytes(kPsamSerial);
    spec.tmk = crypto::RandomBytes(16);
    Status bank = test_support::PrepareBankForPos(spec, HexToBytes(kAsn), kPerson, kCredit);
    ASSERT_TRUE(bank.ok()) << bank.error().message;
  }

  void WriteConfig() {
    const json config = {{"card_reader", reader::VpcdReaderName(0)},
                         {"psam_reader", reader::VpcdReaderName(1)},
                         {"host", "127.0.0.1:" + std::to_string(port_)},
                         {"merchant_id", kMerchant},
                         {"terminal_id", kTerminalId},
                         {"merchant_name", "City Hospital"},
                         {"journal", "pos-journal.db"},
                         {"key_store", "terminal-keys"},
                         {"test_mode", true},
                         {"host_timeout_seconds", 10},
                         {"max_retries", 1}};
    std::ofstream(Path("pos.json")) << config.dump(2);
  }

  void AttachCard() {
    card_ = std::make_unique<test_support::AttachedImage>("card", Path("card.img"), 0, dir_);
    ASSERT_TRUE(card_->WaitInserted()) << "the card never appeared in slot 0";
  }

  std::vector<pos::PurchaseRecord> JournalPurchases(pos::PurchaseState state) {
    auto journal = pos::Journal::Open(Path("pos-journal.db"));
    EXPECT_TRUE(journal.ok()) << journal.error().message;
    if (!journal.ok()) return {};
    auto purchases = (*journal)->Purchases(state);
    EXPECT_TRUE(purchases.ok());
    return purchases.ok() ? *purchases : std::vector<pos::PurchaseRecord>{};
  }

  std::string dir_, host_dir_;
  std::unique_ptr<test_support::HostProcess> host_;
  std::unique_ptr<test_support::AttachedImage> card_, psam_;
  int port_ = 0;
};

TEST_F(PosEndToEndTest, IssueLoadPurchaseTearRecoverSettleAndTheHostMatchesTheCard) {
  // ---- Issuance: the card and the PSAM as images; the bank's books; the terminal's key store.
  ASSERT_NO_FATAL_FAILURE(PrepareBank());
  auto issued = Run("card new " + Path("card.img") + " --asn " + kAsn + " --pin " + kPin);
  ASSERT_EQ(issued.exit_code, 0) << issued.err;
  EXPECT_THAT(issued.out, HasSubstr(kAsn));
  auto psam_issued = Run("psam new " + Path("psam.img") + " --terminal-no " + kTerminalNumber +
                         " --serial " + kPsamSerial);
  ASSERT_EQ(psam_issued.exit_code, 0) << psam_issued.err;
  ASSERT_EQ(Run("keys init --test-only --store " + Path("terminal-keys")).exit_code, 0);
  auto ceremony =
      Run("keys ceremony --store " + Path("terminal-keys") + " --role tkek --components 2",
          std::string(kTkekComponent1) + "\n" + kTkekComponent2 + "\n");
  ASSERT_EQ(ceremony.exit_code, 0) << ceremony.err;
  // The TMK delivery is written while the host is down (its key store is locked while it runs).
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;

  // ---- The bank opens; the card goes into slot 0 and the PSAM into slot 1.
  host_ = std::make_unique<test_support::HostProcess>(host_dir_, dir_);
  port_ = host_->Port();
  ASSERT_NE(port_, 0) << host_->err();
  psam_ = std::make_unique<test_support::AttachedImage>("psam", Path("psam.img"), 1, dir_);
  ASSERT_TRUE(psam_->WaitInserted()) << "the PSAM never appeared in slot 1";
  ASSERT_NO_FATAL_FAILURE(AttachCard());
  WriteConfig();

  // ---- Installation: the TMK imported from the delivery, the PSAM's terminal number, sign-on.
  auto init = Pos("init --tmk " + Path("tmk.json"));
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  EXPECT_THAT(init.out, HasSubstr("imported"));
  EXPECT_THAT(init.out, HasSubstr("signed on"));

  // ---- Online loads through the host: the ED from the medical account, then the EP.
  const std::string pin_line = std::string(kPin) + "\n";
  json load_ed = PosJson("load --amount 100.00 --pin-stdin", pin_line);
  EXPECT_EQ(load_ed["balance_after_fen"], 10000);
  json load_ep = PosJson("load --ep --amount 20 --pin-stdin", pin_line);
  EXPECT_EQ(load_ep["balance_after_fen"], 2000);

  // ---- Offline purchases: the ED with the PIN, the EP without.
  json ed_sale = PosJson("purchase --amount 12.50 --pin-stdin", pin_line);
  EXPECT_EQ(ed_sale["wallet"], "ED");
  EXPECT_EQ(ed_sale["amount"], 1250);
  EXPECT_EQ(ed_sale["balance_after"], 8750);
  EXPECT_EQ(ed_sale["card_number"], "110000**********0044");
  json ep_sale = PosJson("purchase --ep --amount 0.05");
  EXPECT_EQ(ep_sale["wallet"], "EP");
  EXPECT_EQ(ep_sale["amount"], 5);
  EXPECT_EQ(ep_sale["balance_after"], 1995);
  std::uint32_t ed_spent = 1250, ep_spent = 5;
  std::uint32_t purchases_done = 2;

  // ---- Torn purchases: an EP sale of 0.01 runs; once it is journalled as pending (just before
  // DEBIT) the card is pulled a few hundred microseconds on. Where the pull lands decides what
  // the cashier sees: the receipt (the DEBIT answer came back first), torn_purchase (DEBIT was
  // sent, no answer), or no_card / reader_error (before DEBIT). The card goes back in and
  // `pos recover` settles a torn sale: completed if the card did debit, voided if not. The
  // rounds go on until a torn sale was settled by the recovery (most often completed: the pull
  // lands between DEBIT and its answer more often than just before DEBIT).
  auto watcher = pos::Journal::Open(Path("pos-journal.db"));
  ASSERT_TRUE(watcher.ok()) << watcher.error().message;
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> delay_us(0, 600);
  std::map<int, int> exits;
  std::map<std::string, int> outcomes;
  int torn_recovered = 0, rounds = 0;
  for (; rounds < kMaxTornRounds && torn_recovered == 0; ++rounds) {
    const fs::path out = Path("purchase.out"), err = Path("purchase.err");
    const pid_t purchase =
        test_support::SpawnMedcard({"medcard", "pos", "purchase", "--ep", "--amount", "0.01",
                                    "--json", "--config", Path("pos.json")},
                                   out, err);
    bool pending_seen = false;
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!pending_seen && std::chrono::steady_clock::now() < give_up &&
           ::waitpid(purchase, nullptr, WNOHANG) == 0) {
      auto pending = (*watcher)->Purchases(pos::PurchaseState::kPending);
      pending_seen = pending.ok() && !pending->empty();
    }
    if (pending_seen) std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
    card_->Stop(SIGKILL);
    int status = 0;
    ::waitpid(purchase, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "round " << rounds;
    const int exit_code = WEXITSTATUS(status);
    ++exits[exit_code];
    const std::string said = test_support::ReadText(out);
    const json answer = json::parse(said, nullptr, false);
    ASSERT_TRUE(answer.is_object())
        << "round " << rounds << ": " << said << test_support::ReadText(err);
    if (exit_code == 0) {
      // The answer came back before the pull: a normal sale with its receipt.
      EXPECT_EQ(answer["amount"], 1);
      EXPECT_EQ(answer["balance_after"], 2000 - ep_spent - 1);
      ++ep_spent;
      ++purchases_done;
    } else if (exit_code == pos::ExitCode(pos::ErrorKind::kTornPurchase)) {
      EXPECT_EQ(answer["error"], "torn_purchase");
      EXPECT_EQ(JournalPurchases(pos::PurchaseState::kPending).size(), 1u);
    } else {
      // Pulled before DEBIT: no money moved, nothing pending.
      EXPECT_TRUE(exit_code == pos::ExitCode(pos::ErrorKind::kNoCard) ||
                  exit_code == pos::ExitCode(pos::ErrorKind::kReaderError))
          << "round " << rounds << ": exit " << exit_code << " " << said;
      EXPECT_TRUE(JournalPurchases(pos::PurchaseState::kPending).empty());
    }

    // The card is back: the torn sale, if any, is settled now, once.
    ASSERT_NO_FATAL_FAILURE(AttachCard());
    json recovered = PosJson("recover");
    ASSERT_TRUE(recovered.is_object());
    ASSERT_EQ(recovered["purchases"].size(),
              exit_code == pos::ExitCode(pos::ErrorKind::kTornPurchase) ? 1u : 0u)
        << "round " << rounds << ": " << recovered.dump();
    for (const json& p : recovered["purchases"]) {
      const std::string outcome = p["outcome"];
      ++outcomes[outcome];
      ++torn_recovered;
      EXPECT_EQ(p["amount_fen"], 1);
      EXPECT_EQ(p["card"], "110000**********0044");
      if (outcome == "completed") {
        ++ep_spent;
        ++purchases_done;
      } else {
        EXPECT_EQ(outcome, "voided") << "round " << rounds;
      }
    }
    ASSERT_TRUE(JournalPurchases(pos::PurchaseState::kPending).empty()) << "round " << rounds;
  }
  std::printf(
      "%d rounds: %d receipts, %d torn (%d completed, %d voided by recovery), %d before DEBIT\n",
      rounds, exits[0], exits[pos::ExitCode(pos::ErrorKind::kTornPurchase)], outcomes["completed"],
      outcomes["voided"],
      exits[pos::ExitCode(pos::ErrorKind::kNoCard)] +
          exits[pos::ExitCode(pos::ErrorKind::kReaderError)]);
  EXPECT_EQ(torn_recovered, 1) << "no pull landed after DEBIT was sent in " << rounds << " rounds";
  json again = PosJson("recover");
  EXPECT_EQ(again["purchases"].size(), 0u);

  // ---- What the card says: every sale the cashier saw or the recovery completed, no other.
  json balances = PosJson("balance --pin-stdin", pin_line);
  EXPECT_EQ(balances["ed_fen"], 10000 - ed_spent);
  EXPECT_EQ(balances["ep_fen"], 2000 - ep_spent);
  const auto completed = JournalPurchases(pos::PurchaseState::kCompleted);
  EXPECT_EQ(completed.size(), purchases_done);
  std::uint32_t journalled = 0;
  for (const pos::PurchaseRecord& p : completed) {
    journalled += p.amount;
    EXPECT_TRUE(p.psam_credited) << "purchase " << p.id;
  }
  EXPECT_EQ(journalled, ed_spent + ep_spent);

  // ---- Day end: every completed purchase uploaded, settled with the PSAM's signed totals.
  json day_end = PosJson("settle");
  EXPECT_EQ(day_end["purchases_uploaded"], purchases_done);
  EXPECT_EQ(day_end["purchase_count"], purchases_done);
  EXPECT_EQ(day_end["purchase_amount_fen"], ed_spent + ep_spent);
  EXPECT_EQ(day_end["psam_cleared"], true);
  EXPECT_EQ(day_end["still_pending"], 0);
  json settled_again = PosJson("settle");
  EXPECT_EQ(settled_again["purchases_uploaded"], 0);
  card_.reset();
  psam_.reset();
  EXPECT_EQ(host_->Stop(), 0) << host_->err();

  // ---- The bank's view: its invariants hold, the merchant's settlement report counts what the
  // journal completed, and the card float it holds per wallet is what the card holds.
  auto check = Run("host check --data " + host_dir_);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("ledger consistent"));
  auto report =
      Run("host report settlement --data " + host_dir_ + " --csv " + Path("settlement.csv"));
  ASSERT_EQ(report.exit_code, 0) << report.err;
  EXPECT_THAT(report.out, HasSubstr(kMerchant));
  std::int64_t accepted_count = 0, accepted_fen = 0, suspense_count = 0;
  std::istringstream csv(test_support::ReadText(Path("settlement.csv")));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line,
            "merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen,"
            "paid_on_review_count,paid_on_review_fen");
  while (std::getline(csv, line)) {
    std::vector<std::string> fields;
    std::istringstream row(line);
    for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
    ASSERT_EQ(fields.size(), 8u) << line;
    EXPECT_EQ(fields[0], kMerchant);
    accepted_count += std::stoll(fields[2]);
    accepted_fen += std::stoll(fields[3]);
    suspense_count += std::stoll(fields[4]);
  }
  EXPECT_EQ(accepted_count, purchases_done);
  EXPECT_EQ(accepted_fen, ed_spent + ep_spent);
  EXPECT_EQ(suspense_count, 0);

  auto database = store::Database::Open(store::SqliteUrlForDataDir(host_dir_));
  ASSERT_TRUE(database.ok()) << database.error().message;
  auto connection = (*database)->Connect();
  ASSERT_TRUE(connection.ok()) << connection.error().message;
  auto host_keys = keys::OpenSoftwareKeyStore(host_dir_ + "/keys", kPassphrase);
  ASSERT_TRUE(host_keys.ok()) << host_keys.error().message;
  host::Host host(**connection, **host_keys);
  auto books = host.BalanceInquiry(HexToBytes(kAsn));
  ASSERT_TRUE(books.ok()) << books.error().message;
  EXPECT_EQ(books->card_ed, balances["ed_fen"].get<std::int64_t>());
  EXPECT_EQ(books->card_ep, balances["ep_fen"].get<std::int64_t>());
  EXPECT_EQ(books->medical_account, kCredit - 10000 - 2000);
}

}  // namespace
}  // namespace medcard
