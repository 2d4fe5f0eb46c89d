// `medcard pos ...` as a cashier's script runs it: the real binary against a real `medcard host
// run` process on SQLite, with the card and the PSAM as image files (config "image:PATH"), and
// the TMK delivered as docs/pos.md describes (tkek ceremony on both sides, export-tmk, pos init).
// Also the pieces under it: the configuration file, amounts, the TMK delivery file.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli/pos_config.h"
#include "cli/pos_tmk.h"
#include "cli_run.h"
#include "crypto/crypto.h"
#include "host/host.h"
#include "host_directory.h"
#include "keys/key_store.h"
#include "medcard_processes.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "pos_bank.h"
#include "test_database.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr char kPassphrase[] = "pos cli test passphrase";
constexpr char kMerchant[] = "123456789012345";
constexpr char kTerminalId[] = "T0000101";
constexpr char kTerminalNumber[] = "000000000101";
constexpr char kPsamSerial[] = "50000000000000000101";
constexpr char kAsn[] = "11000000000000000042";
constexpr char kPerson[] = "110101199001011234";
constexpr std::int64_t kCredit = 1'000'000;  // fen in the cardholder's medical account
// The two custodians' tkek components: the same at the bank and at the terminal.
constexpr const char* kTkekComponent1 = test_support::kTestTkekComponent1;
constexpr const char* kTkekComponent2 = test_support::kTestTkekComponent2;

// ---- Configuration, amounts, the delivery file -----------------------------------------------

constexpr char kMinimalConfig[] =
    R"({"merchant_id": "123456789012345", "terminal_id": "T0000101"})";

TEST(PosConfig, DefaultsAndPathsRelativeToTheFile) {
  auto config = cli::ParsePosConfig(
      R"({"merchant_id": "123456789012345", "terminal_id": "T0000101",
          "card_reader": "image:card.img", "host": "bank.example:8583",
          "terminal_number": "000000000101"})",
      "/etc/medcard/pos.json");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->card_reader, "image:/etc/medcard/card.img");
  EXPECT_EQ(config->psam_reader, "1");
  EXPECT_EQ(config->journal, "/etc/medcard/pos-journal.db");
  EXPECT_EQ(config->key_store, "/etc/medcard/keys");
  EXPECT_EQ(config->terminal_number, HexToBytes("000000000101"));
  ASSERT_TRUE(config->host_port().has_value());
  EXPECT_EQ(config->host_port()->host, "bank.example");
  EXPECT_EQ(config->host_port()->port, 8583);
  auto offline = cli::ParsePosConfig(kMinimalConfig, "pos.json");
  ASSERT_TRUE(offline.ok()) << offline.error().message;
  EXPECT_FALSE(offline->host_port().has_value());
}

TEST(PosConfig, BadFieldsAreRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"merchant_id": "123", "terminal_id": "T0000101"})", "merchant_id"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T1"})", "terminal_id"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101", "host": "bank"})", "host"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101", "host": "b:0"})", "host"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101",
           "terminal_number": "0101"})",
       "terminal_number"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101", "pin": "123456"})", "pin"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101", "test_mode": "yes"})",
       "test_mode"},
      {R"({"merchant_id": "123456789012345", "terminal_id": "T0000101", "max_retries": 99})",
       "max_retries"},
      {"[1, 2]", "JSON object"},
      {"{", "not valid JSON"},
  };
  for (const auto& [text, field] : cases) {
    auto config = cli::ParsePosConfig(text, "pos.json");
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_THAT(config.error().message, HasSubstr(field)) << text;
  }
}

TEST(PosAmount, YuanToFenStrictly) {
  EXPECT_EQ(*cli::ParseAmount("12.50"), 1250u);
  EXPECT_EQ(*cli::ParseAmount("12.5"), 1250u);
  EXPECT_EQ(*cli::ParseAmount("12"), 1200u);
  EXPECT_EQ(*cli::ParseAmount("0.01"), 1u);
  EXPECT_EQ(*cli::ParseAmount("42949672.95"), 4294967295u);
  for (const char* bad :
       {"12.5.0", "-1", "1.234", "0", "0.00", "", "12,50", " 1", "1e3", "42949672.96", ".5"}) {
    auto amount = cli::ParseAmount(bad);
    ASSERT_FALSE(amount.ok()) << bad;
    EXPECT_THAT(amount.error().message, HasSubstr(std::string("\"") + bad + "\"")) << bad;
  }
}

// docs/pos.md's exit code table is what the binary returns: every kind, its name and its code.
TEST(PosExitCodes, AreTheDocumentedOnes) {
  const std::string doc = test_support::ReadText(fs::path(MEDCARD_SOURCE_DIR) / "docs/pos.md");
  std::map<std::string, int> documented;
  const std::regex row("\\| ([0-9]+) \\| `([a-z_]+)` \\|");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), row); it != std::sregex_iterator();
       ++it) {
    documented[(*it)[2]] = std::stoi((*it)[1]);
  }
  for (int k = static_cast<int>(pos::ErrorKind::kBadAmount);
       k <= static_cast<int>(pos::ErrorKind::kJournalError); ++k) {
    const auto kind = static_cast<pos::ErrorKind>(k);
    const std::string name = pos::ErrorKindName(kind);
    ASSERT_TRUE(documented.contains(name)) << name << " is not in docs/pos.md";
    EXPECT_EQ(documented[name], pos::ExitCode(kind)) << name;
  }
  EXPECT_EQ(documented.size(), static_cast<std::size_t>(pos::ErrorKind::kJournalError) + 1);
}

class TmkDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-tmk-delivery");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<keys::KeyStore> Store(const std::string& name, bool test_only,
                                        bool with_tkek = true,
                                        const char* second = kTkekComponent2) {
    auto store = keys::CreateSoftwareKeyStore(dir_ + "/" + name, kPassphrase, test_only);
    EXPECT_TRUE(store.ok()) << store.error().message;
    if (with_tkek) {
      const std::vector<Bytes> components = {HexToBytes(kTkekComponent1), HexToBytes(second)};
      EXPECT_TRUE((*store)->ImportComponents("tkek", components).ok());
    }
    return std::move(store).value();
  }

  std::string dir_;
};

TEST_F(TmkDeliveryTest, ExportedFileImportsTheSameKeyAtTheTerminal) {
  auto bank = Store("bank", true);
  const Bytes number = HexToBytes(kTerminalNumber);
  ASSERT_TRUE(bank->Generate("tmk/000000000101").ok());
  auto delivery = cli::ExportTmk(*bank, number);
  ASSERT_TRUE(delivery.ok()) << delivery.error().message;
  EXPECT_TRUE(delivery->test_keys);
  EXPECT_EQ(delivery->tmk_version, 1);
  // The file says which key and which tkek, and holds no key in clear.
  auto parsed = cli::TmkDelivery::Parse(delivery->ToJson());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->cryptogram, delivery->cryptogram);
  EXPECT_EQ(parsed->tmk_kcv, delivery->tmk_kcv);
  EXPECT_EQ(parsed->tkek_kcv, delivery->tkek_kcv);
  EXPECT_EQ(parsed->terminal_number, number);

  auto terminal = Store("terminal", true);
  auto version = cli::ImportTmk(*terminal, *parsed);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, 1);
  // Run again (init repeated): nothing new.
  EXPECT_EQ(*cli::ImportTmk(*terminal, *parsed), 1);
  auto bank_tmk = bank->Find("tmk/000000000101");
  auto terminal_tmk = terminal->Find("tmk/000000000101");
  ASSERT_TRUE(bank_tmk.ok() && terminal_tmk.ok());
  // Both sides hold the same key: a working key wrapped by one unwraps to the same KCV.
  const Bytes random = crypto::RandomBytes(16);
  auto at_bank = bank->Unwrap(*bank_tmk, random);
  auto at_terminal = terminal->Unwrap(*terminal_tmk, random);
  ASSERT_TRUE(at_bank.ok() && at_terminal.ok());
  EXPECT_EQ(*bank->Kcv(*at_bank), *terminal->Kcv(*at_terminal));
}

// A terminal installed (or reinstalled with an empty store) after the bank rotated its TMK gets
// the bank's v2 as v2: its sign-on then names the key the host holds, not the bank's old v1.
TEST_F(TmkDeliveryTest, AfterARotationTheTerminalKeepsTheBanksVersion) {
  auto bank = Store("bank", true);
  const Bytes number = HexToBytes(kTerminalNumber);
  ASSERT_TRUE(bank->Generate("tmk/000000000101").ok());
  auto first = cli::ExportTmk(*bank, number);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(bank->Generate("tmk/000000000101").ok());  // the rotation
  auto current = cli::ExportTmk(*bank, number);
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current->tmk_version, 2);

  auto terminal = Store("terminal", true);
  auto version = cli::ImportTmk(*terminal, *current);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(*version, 2);
  auto bank_v2 = bank->Find("tmk/000000000101", 2);
  auto terminal_v2 = terminal->Find("tmk/000000000101", 2);
  ASSERT_TRUE(bank_v2.ok() && terminal_v2.ok());
  EXPECT_EQ(*bank->Kcv(*bank_v2), *terminal->Kcv(*terminal_v2));
  // The old delivery, found in a drawer, is refused and changes nothing.
  auto stale = cli::ImportTmk(*terminal, *first);
  ASSERT_FALSE(stale.ok());
  EXPECT_THAT(stale.error().message, HasSubstr("already holds version 2"));
  EXPECT_EQ(terminal->List()->size(), 2u);  // tkek and tmk v2
}

TEST_F(TmkDeliveryTest, WrongTkekTestKeysIntoARealStoreAndNoTkekAreRefused) {
  auto bank = Store("bank", true);
  ASSERT_TRUE(bank->Generate("tmk/000000000101").ok());
  auto delivery = cli::ExportTmk(*bank, HexToBytes(kTerminalNumber));
  ASSERT_TRUE(delivery.ok()) << delivery.error().message;

  auto other_ceremony = Store("other", true, true, "0123456789ABCDEF1032547698BADCFE");
  auto wrong = cli::ImportTmk(*other_ceremony, *delivery);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message, HasSubstr("tkek"));

  auto real = Store("real", false);
  auto test_into_real = cli::ImportTmk(*real, *delivery);
  ASSERT_FALSE(test_into_real.ok());
  EXPECT_THAT(test_into_real.error().message, HasSubstr("TEST"));

  auto no_tkek = Store("bare", true, false);
  auto none = cli::ImportTmk(*no_tkek, *delivery);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.error().message, HasSubstr("ceremony"));
  for (auto* store : {other_ceremony.get(), real.get(), no_tkek.get()}) {
    EXPECT_FALSE(store->Find("tmk/000000000101").ok());
  }

  auto bank_without_tkek = Store("bank2", true, false);
  ASSERT_TRUE(bank_without_tkek->Generate("tmk/000000000101").ok());
  EXPECT_FALSE(cli::ExportTmk(*bank_without_tkek, HexToBytes(kTerminalNumber)).ok());
  EXPECT_FALSE(cli::ExportTmk(*bank, HexToBytes("000000000999")).ok());

  // A field of the wrong JSON type is a refusal, not an exception (found by fuzz/pos_tmk_fuzz).
  auto wrong_type = json::parse(delivery->ToJson());
  wrong_type["wrapping_key"] = 1;
  EXPECT_FALSE(cli::TmkDelivery::Parse(wrong_type.dump()).ok());
  for (const char* bad : {"{}", R"({"medcard_tmk_delivery": 2})", "not json"}) {
    EXPECT_FALSE(cli::TmkDelivery::Parse(bad).ok()) << bad;
  }
}

// ---- The binary against a real host -------------------------------------------------------------

class PosCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);  // for the host process
    dir_ = test_support::NewTempDir("medcard-pos-cli");
    host_dir_ = dir_ + "/host";
    spec_.data_dir = host_dir_;
    spec_.passphrase = kPassphrase;
    spec_.merchant_id = kMerchant;
    spec_.merchant_name = "City Hospital";
    spec_.terminal_id = kTerminalId;
    spec_.terminal_number = HexToBytes(kTerminalNumber);
    spec_.psam_serial = HexToBytes(kPsamSerial);
    spec_.tmk = crypto::RandomBytes(16);
    // The bank: test keys, the terminal registered (its TMK), the tkek ceremony, the
    // cardholder's card and medical account.
    Status bank = test_support::PrepareBankForPos(spec_, HexToBytes(kAsn), kPerson, kCredit);
    ASSERT_TRUE(bank.ok()) << bank.error().message;
    ASSERT_EQ(Run("card new " + Path("card.img") + " --asn " + kAsn + " --pin 123456").exit_code,
              0);
    ASSERT_EQ(Run("psam new " + Path("psam.img") + " --terminal-no " + kTerminalNumber +
                  " --serial " + kPsamSerial)
                  .exit_code,
              0);
    // The terminal's installation: its own test key store and the same tkek ceremony.
    ASSERT_EQ(Run("keys init --test-only --store " + Path("terminal-keys")).exit_code, 0);
    auto ceremony =
        Run("keys ceremony --store " + Path("terminal-keys") + " --role tkek --components 2",
            std::string(kTkekComponent1) + "\n" + kTkekComponent2 + "\n");
    ASSERT_EQ(ceremony.exit_code, 0) << ceremony.err;
  }

  void TearDown() override {
    host_.reset();
    fs::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  test_support::CliRun Run(const std::string& args, std::optional<std::string> input = {}) {
    const fs::path run_dir = dir_ + "/run";
    fs::create_directories(run_dir);
    return test_support::RunCli({MEDCARD_CLI,
                                 std::string("MEDCARD_KEYSTORE_PASSPHRASE='") + kPassphrase +
                                     "' MEDCARD_KEYSTORE_TEST_KDF=fast ",
                                 args, std::move(input)},
                                run_dir);
  }

  // pos.json for the images, the host (when running) and the terminal's key store.
  void WriteConfig(const std::string& name, json more = json::object()) {
    json config = {{"card_reader", "image:card.img"},
                   {"psam_reader", "image:psam.img"},
                   {"merchant_id", kMerchant},
                   {"terminal_id", kTerminalId},
                   {"merchant_name", "City Hospital"},
                   {"facility_code", "H110100001"},
                   {"journal", "pos-journal.db"},
                   {"key_store", "terminal-keys"},
                   {"test_mode", true},
                   {"host_timeout_seconds", 5},
                   {"max_retries", 0}};
    if (port_ != 0) config["host"] = "127.0.0.1:" + std::to_string(port_);
    for (const auto& [key, value] : more.items()) config[key] = value;
    std::ofstream(Path(name)) << config.dump(2);
  }

  void StartHost() {
    host_ = std::make_unique<test_support::HostProcess>(host_dir_, dir_);
    port_ = host_->Port();
    ASSERT_NE(port_, 0) << host_->err();
  }

  std::string Pos(const std::string& args) const {
    return "pos " + args + " --config " + Path("pos.json");
  }

  json Balances() {
    auto run = Run(Pos("balance --pin-stdin --json"), "123456\n");
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return json::parse(run.out, nullptr, false);
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
  test_support::HostDirectorySpec spec_;
  std::unique_ptr<test_support::HostProcess> host_;
  int port_ = 0;
};

TEST_F(PosCliTest, InitLoadPurchasesSettleAndTheHostAgreesToTheFen) {
  // The bank's TMK delivery, written by the bank's CLI (before the host runs; it works while it
  // runs too: TheBankRegistersAndBlocksTerminalsWhileTheHostRuns).
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_THAT(exported.out, HasSubstr("tmk/000000000101"));
  const std::string delivery = test_support::ReadText(Path("tmk.json"));
  EXPECT_THAT(delivery, Not(HasSubstr(ToHex(spec_.tmk))));  // never in clear

  ASSERT_NO_FATAL_FAILURE(StartHost());
  WriteConfig("pos.json");
  auto init = Run(Pos("init --tmk " + Path("tmk.json")));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("imported"));
  EXPECT_THAT(init.out, HasSubstr("signed on"));

  auto load = Run(Pos("load --amount 100.00 --pin-stdin --json"), "123456\n");
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_EQ(json::parse(load.out)["balance_after_fen"], 10000);
  auto load_ep = Run(Pos("load --ep --amount 20 --pin-stdin --json"), "123456\n");
  ASSERT_EQ(load_ep.exit_code, 0) << load_ep.err;

  // A hospital sale: the visit goes to the card's EF08 with the purchase.
  auto ed = Run(Pos("purchase --amount 12.50 --pin-stdin --visit-type 1 --diagnosis J06.9 "
                    "--visit-total 30.00 --paid-by-pool 17.50"),
                "123456\n");
  ASSERT_EQ(ed.exit_code, 0) << ed.err;
  EXPECT_THAT(ed.out, HasSubstr("VISIT RECORDED"));
  EXPECT_THAT(ed.out, HasSubstr("12.50"));
  EXPECT_THAT(ed.out, HasSubstr("87.50"));
  EXPECT_THAT(ed.out, HasSubstr("110000**********0042"));
  EXPECT_THAT(ed.out + ed.err, Not(HasSubstr("123456\n")));
  auto ep = Run(Pos("purchase --ep --amount 0.05 --json"));
  ASSERT_EQ(ep.exit_code, 0) << ep.err;
  const json receipt = json::parse(ep.out, nullptr, false);
  ASSERT_TRUE(receipt.is_object()) << ep.out;
  EXPECT_EQ(receipt["amount"], 5);
  EXPECT_EQ(receipt["balance_after"], 1995);

  json balances = Balances();
  EXPECT_EQ(balances["ed_fen"], 8750);
  EXPECT_EQ(balances["ep_fen"], 1995);
  auto history = Run(Pos("history --json"));
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_EQ(json::parse(history.out).size(), 4u);

  auto settle = Run(Pos("settle --json"));
  ASSERT_EQ(settle.exit_code, 0) << settle.err;
  const json day_end = json::parse(settle.out);
  EXPECT_EQ(day_end["purchases_uploaded"], 2);
  EXPECT_EQ(day_end["purchase_count"], 2);
  EXPECT_EQ(day_end["purchase_amount_fen"], 1255);
  EXPECT_EQ(day_end["psam_cleared"], true);
  host_->Stop();

  // The host's books: the card float it holds is what the card holds, to the fen.
  auto database = store::Database::Open(store::SqliteUrlForDataDir(host_dir_));
  ASSERT_TRUE(database.ok()) << database.error().message;
  auto connection = (*database)->Connect();
  ASSERT_TRUE(connection.ok()) << connection.error().message;
  auto host_keys = keys::OpenSoftwareKeyStore(host_dir_ + "/keys", kPassphrase);
  ASSERT_TRUE(host_keys.ok()) << host_keys.error().message;
  host::Host host(**connection, **host_keys);
  auto books = host.BalanceInquiry(HexToBytes(kAsn));
  ASSERT_TRUE(books.ok()) << books.error().message;
  EXPECT_EQ(books->card_ed, 8750);
  EXPECT_EQ(books->card_ep, 1995);
  EXPECT_EQ(books->medical_account, kCredit - 12000);
}

// The bank's operators work on a running host (docs/operations.md "The key store"): a new
// terminal registered while it runs signs on at once, a stolen one is refused from the moment
// it is blocked, and the blacklist and reports answer, all without stopping the service.
TEST_F(PosCliTest, TheBankRegistersAndBlocksTerminalsWhileTheHostRuns) {
  ASSERT_NO_FATAL_FAILURE(StartHost());
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  WriteConfig("pos.json");
  ASSERT_EQ(Run(Pos("init --tmk " + Path("tmk.json"))).exit_code, 0);

  // A second terminal of the same hospital, registered and delivered while the host runs.
  auto added = Run("host terminals add --data " + host_dir_ + " --merchant " + kMerchant +
                   " --merchant-name 'City Hospital' --grade hospital-3A --terminal-no "
                   "000000000102 --psam-serial 50000000000000000102");
  ASSERT_EQ(added.exit_code, 0) << added.err;
  auto second_tmk = Run("host terminals export-tmk --data " + host_dir_ +
                        " --terminal-no 000000000102 --out " + Path("tmk2.json"));
  ASSERT_EQ(second_tmk.exit_code, 0) << second_tmk.err;
  ASSERT_EQ(Run("psam new " + Path("psam2.img") +
                " --terminal-no 000000000102 --serial 50000000000000000102")
                .exit_code,
            0);
  ASSERT_EQ(Run("keys init --test-only --store " + Path("terminal2-keys")).exit_code, 0);
  ASSERT_EQ(Run("keys ceremony --store " + Path("terminal2-keys") + " --role tkek --components 2",
                std::string(kTkekComponent1) + "\n" + kTkekComponent2 + "\n")
                .exit_code,
            0);
  WriteConfig("pos2.json", {{"psam_reader", "image:psam2.img"},
                            {"terminal_id", "00000102"},
                            {"key_store", "terminal2-keys"},
                            {"journal", "pos2-journal.db"}});
  auto second_init = Run("pos init --tmk " + Path("tmk2.json") + " --config " + Path("pos2.json"));
  ASSERT_EQ(second_init.exit_code, 0) << second_init.out << second_init.err;
  EXPECT_THAT(second_init.out, HasSubstr("signed on"));
  auto second_load =
      Run("pos load --amount 10.00 --pin-stdin --json --config " + Path("pos2.json"), "123456\n");
  ASSERT_EQ(second_load.exit_code, 0) << second_load.err;
  EXPECT_EQ(json::parse(second_load.out)["balance_after_fen"], 1000);

  // The first terminal is stolen: blocked while the host runs, refused from then on.
  auto blocked =
      Run("host terminals block " + std::string(kTerminalNumber) + " --data " + host_dir_);
  ASSERT_EQ(blocked.exit_code, 0) << blocked.err;
  auto refused = Run(Pos("load --amount 10.00 --pin-stdin --json"), "123456\n");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.out + refused.err, HasSubstr("refusal 97"));  // unauthenticated: protocol 9.6
  auto listed = Run("host terminals list --data " + host_dir_);
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("blocked"));

  auto blacklisted = Run("host blacklist add " + std::string(kAsn) + " --data " + host_dir_);
  ASSERT_EQ(blacklisted.exit_code, 0) << blacklisted.err;
  auto blacklist = Run("host blacklist list --data " + host_dir_);
  ASSERT_EQ(blacklist.exit_code, 0) << blacklist.err;
  EXPECT_THAT(blacklist.out, HasSubstr(kAsn));
  auto report = Run("host report settlement --data " + host_dir_);
  EXPECT_EQ(report.exit_code, 0) << report.err;
  host_->Stop();
}

TEST_F(PosCliTest, BadInputIsAClearErrorWithItsExitCodeAndChangesNothing) {
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  WriteConfig("pos.json");  // no host: offline
  auto init = Run(Pos("init --tmk " + Path("tmk.json")));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  const std::string card_before = test_support::ReadText(Path("card.img"));

  const int bad_amount = pos::ExitCode(pos::ErrorKind::kBadAmount);
  auto bad_visit =
      Run(Pos("purchase --ep --amount 1.00 --visit-type 1 --diagnosis J06.9 "
              "--visit-total 0.50"));
  EXPECT_EQ(bad_visit.exit_code, bad_amount) << bad_visit.err;
  EXPECT_THAT(bad_visit.err, HasSubstr("visit record"));
  for (const char* amount : {"12.5.0", "-3", "1.234", "0", "abc"}) {
    auto run = Run(Pos(std::string("purchase --ep --amount ") + amount));
    EXPECT_EQ(run.exit_code, bad_amount) << amount << ": " << run.err;
    EXPECT_THAT(run.err, HasSubstr(std::string("amount \"") + amount + "\"")) << amount;
    EXPECT_EQ(run.out, "") << amount;
  }
  auto as_json = Run(Pos("purchase --ep --amount 12.5.0 --json"));
  EXPECT_EQ(as_json.exit_code, bad_amount);
  EXPECT_EQ(json::parse(as_json.out, nullptr, false)["error"], "bad_amount");

  // Nothing on the card: insufficient balance, refused by the card before any debit.
  auto poor = Run(Pos("purchase --ep --amount 1.00 --json"));
  EXPECT_EQ(poor.exit_code, pos::ExitCode(pos::ErrorKind::kInsufficientBalance)) << poor.err;
  EXPECT_EQ(json::parse(poor.out, nullptr, false)["error"], "insufficient_balance");

  auto wrong_pin = Run(Pos("purchase --amount 1.00 --pin-stdin"), "654321\n");
  EXPECT_EQ(wrong_pin.exit_code, pos::ExitCode(pos::ErrorKind::kWrongPin)) << wrong_pin.err;
  EXPECT_THAT(wrong_pin.err, HasSubstr("2 tries left"));
  EXPECT_THAT(wrong_pin.err, Not(HasSubstr("654321")));
  auto no_pin = Run(Pos("purchase --amount 1.00"));
  EXPECT_EQ(no_pin.exit_code, pos::ExitCode(pos::ErrorKind::kPinRequired)) << no_pin.err;

  WriteConfig("pos.json", {{"card_reader", "No Such Reader 99"}});
  auto unknown_reader = Run(Pos("purchase --ep --amount 1.00"));
  EXPECT_EQ(unknown_reader.exit_code, pos::ExitCode(pos::ErrorKind::kReaderError));
  EXPECT_THAT(unknown_reader.err, HasSubstr("card reader"));
  WriteConfig("pos.json", {{"card_reader", "image:no-such-card.img"}});
  auto no_card = Run(Pos("balance"));
  EXPECT_EQ(no_card.exit_code, pos::ExitCode(pos::ErrorKind::kNoCard)) << no_card.err;
  WriteConfig("pos.json", {{"terminal_id", "T1"}});
  auto bad_config = Run(Pos("balance"));
  EXPECT_EQ(bad_config.exit_code, pos::ExitCode(pos::ErrorKind::kConfigError));
  EXPECT_THAT(bad_config.err, HasSubstr("terminal_id"));
  WriteConfig("pos.json");
  auto settle_offline = Run(Pos("settle"));
  EXPECT_EQ(settle_offline.exit_code, pos::ExitCode(pos::ErrorKind::kConfigError));
  EXPECT_THAT(settle_offline.err, HasSubstr("host"));
  // A host that does not answer: unreachable, nothing settled.
  port_ = 1;
  WriteConfig("pos.json");
  auto unreachable = Run(Pos("settle"));
  EXPECT_EQ(unreachable.exit_code, pos::ExitCode(pos::ErrorKind::kHostUnreachable))
      << unreachable.err;
  auto usage = Run("pos purchase --config " + Path("pos.json"));
  EXPECT_EQ(usage.exit_code, 2);

  // The card image is byte for byte what it was apart from the PIN try counter, which the one
  // wrong PIN spent: balances, serials and the log are unchanged; the journal is empty.
  port_ = 0;
  WriteConfig("pos.json");
  json balances = Balances();
  EXPECT_EQ(balances["ed_fen"], 0);
  EXPECT_EQ(balances["ep_fen"], 0);
  auto history = Run(Pos("history --json"));
  EXPECT_EQ(json::parse(history.out).size(), 0u);
  for (auto state : {pos::PurchaseState::kPending, pos::PurchaseState::kCompleted,
                     pos::PurchaseState::kVoided}) {
    EXPECT_TRUE(JournalPurchases(state).empty());
  }
  EXPECT_FALSE(card_before.empty());
}

TEST_F(PosCliTest, CardholderIsMaskedByDefaultAndThePinChangesOnlyWithTheRightOne) {
  WriteConfig("pos.json");
  auto masked = Run(Pos("cardholder"));
  ASSERT_EQ(masked.exit_code, 0) << masked.err;
  EXPECT_THAT(masked.out, HasSubstr("110101********1234"));
  EXPECT_THAT(masked.out, Not(HasSubstr(kPerson)));
  auto unmasked = Run(Pos("cardholder --unmask --json"));
  ASSERT_EQ(unmasked.exit_code, 0) << unmasked.err;
  EXPECT_THAT(unmasked.out, HasSubstr(kPerson));

  auto wrong = Run(Pos("change-pin --pin-stdin"), "111111\n654321\n");
  EXPECT_EQ(wrong.exit_code, pos::ExitCode(pos::ErrorKind::kWrongPin)) << wrong.err;
  EXPECT_THAT(wrong.err, Not(HasSubstr("654321")));
  auto changed = Run(Pos("change-pin --pin-stdin"), "123456\n654321\n");
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_THAT(changed.out, HasSubstr("PIN changed"));
  auto old_pin = Run(Pos("balance --pin-stdin"), "123456\n");
  EXPECT_EQ(old_pin.exit_code, pos::ExitCode(pos::ErrorKind::kWrongPin)) << old_pin.err;
  auto new_pin = Run(Pos("balance --pin-stdin --json"), "654321\n");
  ASSERT_EQ(new_pin.exit_code, 0) << new_pin.err;
  EXPECT_EQ(json::parse(new_pin.out)["ed_fen"], 0);
}

// The cashier's loop with its prompts on stderr: a declined ED sale (wrong PIN, its tries left),
// then an EP sale the card cannot pay, then the end (empty amount).
TEST_F(PosCliTest, InteractiveSalesShowReceiptsOrWhyTheyWereDeclined) {
  WriteConfig("pos.json");
  auto run = Run(Pos("interactive"), "1.00\n\n000000\n0.50\nep\n12.5.0\n\n");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("amount (yuan): "));
  EXPECT_THAT(run.err, HasSubstr("DECLINED (wrong_pin)"));
  EXPECT_THAT(run.err, HasSubstr("2 tries left"));
  EXPECT_THAT(run.err, HasSubstr("DECLINED (insufficient_balance)"));
  EXPECT_THAT(run.err, HasSubstr("amount \"12.5.0\""));
  EXPECT_THAT(run.out + run.err, Not(HasSubstr("000000\n")));
  EXPECT_TRUE(JournalPurchases(pos::PurchaseState::kCompleted).empty());
}

TEST_F(PosCliTest, InitRefusesAnotherTerminalsPsamAndADeliveryForAnotherTerminal) {
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  ASSERT_EQ(Run("psam new " + Path("other-psam.img") +
                " --terminal-no 000000000202 --serial 50000000000000000202")
                .exit_code,
            0);
  WriteConfig("pos.json", {{"psam_reader", "image:other-psam.img"}});
  auto wrong_psam = Run(Pos("init --tmk " + Path("tmk.json")));
  EXPECT_EQ(wrong_psam.exit_code, pos::ExitCode(pos::ErrorKind::kWrongPsam)) << wrong_psam.err;
  EXPECT_THAT(wrong_psam.err, HasSubstr("000000000202"));
  // This terminal's number, but not the PSAM the bank registered (its serial differs): a wrong
  // registration or a PSAM swapped between identical terminals shows here, not at day end (97).
  ASSERT_EQ(Run("psam new " + Path("twin-psam.img") + " --terminal-no " + kTerminalNumber +
                " --serial 50000000000000000999")
                .exit_code,
            0);
  WriteConfig("pos.json", {{"psam_reader", "image:twin-psam.img"}});
  auto twin = Run(Pos("init --tmk " + Path("tmk.json")));
  EXPECT_EQ(twin.exit_code, pos::ExitCode(pos::ErrorKind::kWrongPsam)) << twin.err;
  EXPECT_THAT(twin.err, HasSubstr("has serial 50000000000000000999; the bank registered " +
                                  std::string(kPsamSerial)));
  EXPECT_THAT(test_support::ReadText(Path("tmk.json")),
              HasSubstr(std::string("\"psam_serial\": \"") + kPsamSerial + "\""));
  WriteConfig("pos.json", {{"terminal_number", "000000000303"}});
  auto other_terminal = Run(Pos("init --tmk " + Path("tmk.json")));
  EXPECT_EQ(other_terminal.exit_code, pos::ExitCode(pos::ErrorKind::kConfigError));
  auto listed = Run("keys list --store " + Path("terminal-keys"));
  EXPECT_THAT(listed.out, Not(HasSubstr("tmk/")));
}

// The issue's process-kill test, with the card and the PSAM as image files (their state is
// written through to the file, so it survives the process as a card survives a terminal):
// `medcard pos purchase` is SIGKILLed at random moments; `pos recover` then completes or voids
// each torn purchase exactly once, and at day end the card's balance, the journal and what the
// host clears agree to the fen.
TEST_F(PosCliTest, PurchaseKilledAtRandomMomentsIsRecoveredExactlyOnce) {
  auto exported = Run("host terminals export-tmk --data " + host_dir_ + " --terminal-no " +
                      kTerminalNumber + " --out " + Path("tmk.json"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  ASSERT_NO_FATAL_FAILURE(StartHost());
  WriteConfig("pos.json");
  ASSERT_EQ(Run(Pos("init --tmk " + Path("tmk.json"))).exit_code, 0);
  auto load = Run(Pos("load --ep --amount 10.00 --pin-stdin"), "123456\n");
  ASSERT_EQ(load.exit_code, 0) << load.err;
  constexpr std::uint32_t kLoaded = 1000;

  // The config without the host: purchases are offline.
  const int port = port_;
  port_ = 0;
  WriteConfig("pos.json");
  // How long one purchase takes here, start to exit: the kills fall across it, most of them
  // past the process start-up, where the card commands are.
  const auto started = std::chrono::steady_clock::now();
  auto first = Run(Pos("purchase --ep --amount 0.01"));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count();
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<std::int64_t> delay_us(whole / 5, whole + whole / 10);
  int killed = 0;
  std::map<std::string, int> outcomes;
  constexpr int kRounds = 40;
  // The test's own reader of the journal (WAL: it reads while the terminal writes).
  auto watcher = pos::Journal::Open(Path("pos-journal.db"));
  ASSERT_TRUE(watcher.ok()) << watcher.error().message;
  int rounds = 0, pending_seen = 0;
  for (; rounds < kRounds; ++rounds) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      const std::string config = Path("pos.json");
      ::execl(MEDCARD_CLI, "medcard", "pos", "purchase", "--ep", "--amount", "0.01", "--config",
              config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (rounds % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
    } else {
      // Into the torn window: once the purchase is journalled as pending (before DEBIT), then
      // 0..200 µs on — before DEBIT, after it, or after the completion.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (std::chrono::steady_clock::now() < give_up && ::waitpid(pid, nullptr, WNOHANG) == 0) {
        auto pending = (*watcher)->Purchases(pos::PurchaseState::kPending);
        if (pending.ok() && !pending->empty()) {
          ++pending_seen;
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random) % 200));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) ++killed;
    // The next start-up: whatever was torn is settled now, once.
    auto recovered = Run(Pos("recover --json"));
    ASSERT_EQ(recovered.exit_code, 0) << recovered.err;
    const json report = json::parse(recovered.out);
    for (const json& p : report["purchases"]) {
      ++outcomes[p["outcome"].get<std::string>()];
    }
    ASSERT_TRUE(JournalPurchases(pos::PurchaseState::kPending).empty())
        << "round " << rounds << ": " << recovered.out << recovered.err;
  }
  EXPECT_GT(killed, 0);
  std::printf("%d of %d purchases killed (%d seen pending); recovery completed %d, voided %d\n",
              killed, rounds, pending_seen, outcomes["completed"], outcomes["voided"]);
  // Recovering again changes nothing.
  auto again = Run(Pos("recover --json"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(json::parse(again.out)["purchases"].size(), 0u);

  const auto completed = JournalPurchases(pos::PurchaseState::kCompleted);
  std::uint32_t spent = 0;
  for (const pos::PurchaseRecord& p : completed) spent += p.amount;
  json balances = Balances();
  EXPECT_EQ(balances["ep_fen"], kLoaded - spent) << completed.size() << " completed";
  auto history = Run(Pos("history --json"));
  ASSERT_EQ(history.exit_code, 0) << history.err;

  port_ = port;
  WriteConfig("pos.json");
  auto settle = Run(Pos("settle --json"));
  ASSERT_EQ(settle.exit_code, 0) << settle.err;
  const json day_end = json::parse(settle.out);
  EXPECT_EQ(day_end["purchase_count"], completed.size());
  EXPECT_EQ(day_end["purchase_amount_fen"], spent);
  EXPECT_EQ(day_end["psam_cleared"], true);
  host_->Stop();
  auto database = store::Database::Open(store::SqliteUrlForDataDir(host_dir_));
  ASSERT_TRUE(database.ok()) << database.error().message;
  auto connection = (*database)->Connect();
  ASSERT_TRUE(connection.ok()) << connection.error().message;
  auto host_keys = keys::OpenSoftwareKeyStore(host_dir_ + "/keys", kPassphrase);
  ASSERT_TRUE(host_keys.ok()) << host_keys.error().message;
  host::Host host(**connection, **host_keys);
  auto books = host.BalanceInquiry(HexToBytes(kAsn));
  ASSERT_TRUE(books.ok()) << books.error().message;
  EXPECT_EQ(books->card_ep, static_cast<std::int64_t>(kLoaded - spent));
}

}  // namespace
}  // namespace medcard
