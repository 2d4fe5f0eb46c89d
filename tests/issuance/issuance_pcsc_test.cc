// End to end through pcscd + vpcd, as a personalisation station and a POS see it: master keys
// from a key ceremony in a key store (software, then PKCS#11 on SoftHSM2), a blank card and PSAM
// from the chip factory (`medcard card|psam blank`) put into "Virtual PCD 00 0N" (`medcard
// card|psam attach`), personalised with `medcard issue card|psam --reader`, then an online load and
// an offline purchase through PC/SC whose TAC the issuer verifies through the same store, and
// `medcard card show` showing the holder it was given.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "card/card.h"
#include "issuance/issuer.h"
#include "issuance_test_support.h"
#include "pcscd_fixture.h"
#include "psam/psam.h"
#include "reader/reader.h"
#include "softhsm_token.h"
#include "terminal/purse.h"

namespace medcard::issuance {
namespace {

static auto* const kPcscd = test_support::RegisterPcscdEnvironment();

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using terminal::Wallet;
using testing::CliRun;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::TempDir;

const Date kToday = Today();
const TimeOfDay kNoon{12, 0, 0};

std::string Quoted(const std::string& s) { return "'" + s + "'"; }

// `medcard card|psam attach IMAGE --slot N` in a child process: the image is in the reader
// until destruction (SIGTERM = removed).
class Attached {
 public:
  Attached(const std::string& kind, const std::string& image, unsigned slot) : slot_(slot) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string slot_text = std::to_string(slot);
      ::execl(MEDCARD_CLI, MEDCARD_CLI, kind.c_str(), "attach", image.c_str(), "--slot",
              slot_text.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot_));
    if (r.ok()) {
      auto present = (*r)->WaitForCard(10s);
      inserted_ = present.ok() && *present;
    }
  }
  ~Attached() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot_));
    if (r.ok()) (void)(*r)->WaitForRemoval(5s);
  }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;
  bool inserted() const { return inserted_; }

 private:
  unsigned slot_;
  pid_t pid_ = -1;
  bool inserted_ = false;
};

// An Icc served into a vpcd slot from this process.
class Bridged {
 public:
  Bridged(std::shared_ptr<iso7816::Icc> icc, unsigned slot)
      : bridge_(std::move(icc), slot), thread_([this] { (void)bridge_.Run(); }) {}
  ~Bridged() {
    bridge_.Stop();
    thread_.join();
  }

 private:
  reader::VpcdBridge bridge_;
  std::thread thread_;
};

std::unique_ptr<reader::PcscReader> ConnectedReader(unsigned slot) {
  auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot));
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return nullptr;
  auto present = (*r)->WaitForCard(10s);
  EXPECT_TRUE(present.ok() && *present) << "no card in " << reader::VpcdReaderName(slot);
  auto atr = (*r)->Connect();
  EXPECT_TRUE(atr.ok()) << atr.error().message;
  return atr.ok() ? std::move(r).value() : nullptr;
}

std::string PinFromMailer(const std::string& path) {
  const std::string letter = ReadFile(path);
  std::smatch match;
  if (!std::regex_search(letter, match, std::regex("PIN: +([0-9]{6})"))) return "";
  return match[1];
}

class IssuancePcscTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::UseFastKdf();
    std::ofstream(holder_) << testing::SampleHolderJson();
  }

  CliRun Medcard(const std::string& args) {
    return testing::RunMedcard(MEDCARD_CLI, args, environment_);
  }

  // card blank → attach → issue card --reader; returns the PIN from the mailer.
  std::string IssueCardThroughPcsc(const std::string& store, const std::string& image,
                                   const std::string& extra) {
    CliRun blank = Medcard("card blank " + image + " --store " + store + " " + store_options_);
    EXPECT_EQ(blank.exit_code, 0) << blank.err;
    Attached attached("card", image, 0);
    EXPECT_TRUE(attached.inserted());
    const std::string mailer = dir_ / (fs::path(image).stem().string() + "-mailer.txt");
    CliRun issued =
        Medcard("issue card --store " + store + " " + store_options_ + " " + log_option_ +
                " --holder " + holder_ + " --reader " + Quoted(reader::VpcdReaderName(0)) +
                " --asn-prefix 1100 --mailer " + mailer + " " + extra);
    EXPECT_EQ(issued.exit_code, 0) << issued.err;
    EXPECT_THAT(issued.out, HasSubstr("card 11000000000000000001 issued for 张三 into " +
                                      reader::VpcdReaderName(0)));
    return PinFromMailer(mailer);
  }

  // Loads the card and pays at the PSAM's terminal, all through PC/SC; the issuer's side
  // (MAC2, load TAC, purchase TAC) through `store`.
  void LoadAndPay(keys::KeyStore& store, const std::string& card_image,
                  const std::string& psam_image, const std::string& pin) {
    std::shared_ptr<card::Card> card =
        std::move(card::Card::Open(std::move(nvm::OpenFileMedium(card_image)).value())).value();
    std::shared_ptr<psam::Psam> psam =
        std::move(psam::Psam::Open(std::move(nvm::OpenFileMedium(psam_image)).value())).value();
    Bridged card_slot(card, 0), psam_slot(psam, 1);
    auto card_reader = ConnectedReader(0);
    auto psam_reader = ConnectedReader(1);
    ASSERT_TRUE(card_reader && psam_reader);
    auto app = terminal::SelectMedicalApplication(*card_reader);
    ASSERT_TRUE(app.ok()) << app.error().message;
    EXPECT_EQ(app->asn, HexToBytes("11000000000000000001"));
    EXPECT_FALSE(app->test_card);
    ASSERT_TRUE(terminal::VerifyPin(*card_reader, pin).ok());
    KeyStoreIssuerHost host(store);
    auto terminal_number = terminal::ReadTerminalNumber(*psam_reader);
    ASSERT_TRUE(terminal_number.ok());
    auto load = terminal::Load(*card_reader, host, *app,
                               {Wallet::kEd, 30000, *terminal_number, kToday, kNoon});
    ASSERT_TRUE(load.ok()) << load.error().message;
    EXPECT_EQ(load->balance_after, 30000u);
    auto purchase =
        terminal::Purchase(*card_reader, *psam_reader, *app, {Wallet::kEd, 2575, kToday, kNoon});
    ASSERT_TRUE(purchase.ok()) << purchase.error().message;
    EXPECT_EQ(purchase->balance_after, 27425u);
    EXPECT_TRUE(host.VerifyPurchaseTac(*purchase, 1).ok());
    EXPECT_EQ(psam->Inspect().totals.amount, 2575u);
  }

  void ExpectCardShowsTheHolder(const std::string& image) {
    CliRun shown = Medcard("card show " + image);
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_THAT(shown.out, HasSubstr("lifecycle     operational"));
    EXPECT_THAT(shown.out, HasSubstr("cardholder    张三"));
    EXPECT_THAT(shown.out, HasSubstr("SSN           11010519491231002X"));
    EXPECT_THAT(shown.out, HasSubstr("274.25"));  // the ED balance after the load and purchase
  }

  TempDir dir_;
  const std::string holder_ = dir_ / "holder.json";
  std::string environment_;
  std::string store_options_;  // --pkcs11-module for a token
  std::string log_option_;     // --log for a token (it has no directory)
};

TEST_F(IssuancePcscTest, SoftwareStoreCardAndPsamIssuedThroughPcscLoadPayAndVerify) {
  const std::string store_dir = dir_ / "store";
  ASSERT_NE(testing::CeremonyKeyStore(store_dir, 3), nullptr);  // closed again at once
  const std::string card_image = dir_ / "card.img", psam_image = dir_ / "psam.img";
  const std::string pin = IssueCardThroughPcsc(store_dir, card_image, "--operator dana");
  ASSERT_EQ(pin.size(), 6u);

  CliRun blank = Medcard("psam blank " + psam_image + " --store " + store_dir +
                         " --chip-serial 8877665544332211");
  ASSERT_EQ(blank.exit_code, 0) << blank.err;
  {
    Attached attached("psam", psam_image, 1);
    ASSERT_TRUE(attached.inserted());
    // The PSAM reports its chip serial (GET DATA 80 CA 00 01 08); a wrong one given is refused.
    CliRun wrong_chip = Medcard("issue psam --store " + store_dir + " --terminal-no 000000000301 " +
                                "--reader " + Quoted(reader::VpcdReaderName(1)) +
                                " --serial-prefix 5000 --chip-serial 0102030405060708");
    EXPECT_EQ(wrong_chip.exit_code, 1);
    EXPECT_THAT(wrong_chip.err, HasSubstr("chip serial is 8877665544332211"));
    CliRun issued =
        Medcard("issue psam --store " + store_dir + " --terminal-no 000000000301 " + "--reader " +
                Quoted(reader::VpcdReaderName(1)) + " --serial-prefix 5000");
    ASSERT_EQ(issued.exit_code, 0) << issued.err;
    EXPECT_THAT(issued.out,
                HasSubstr("PSAM 50000000000000000001 issued for terminal 000000000301"));
  }

  auto store = keys::OpenSoftwareKeyStore(store_dir, testing::kPassphrase);
  ASSERT_TRUE(store.ok()) << store.error().message;
  LoadAndPay(**store, card_image, psam_image, pin);
  store->reset();
  ExpectCardShowsTheHolder(card_image);
  const std::string log = ReadFile(store_dir + "/issuance-log.jsonl");
  EXPECT_THAT(log, HasSubstr("\"operator\":\"dana\""));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(pin)));
}

TEST_F(IssuancePcscTest, AHalfPersonalisedCardInAReaderIsRefusedAndShowsItsLifecycle) {
  const std::string store_dir = dir_ / "store", image = dir_ / "half.img";
  {
    auto store = testing::CeremonyKeyStore(store_dir, 4);
    ASSERT_NE(store, nullptr);
    auto log = IssuanceLog::Open(dir_ / "inprocess-log");
    ASSERT_TRUE(log.ok());
    IssuanceConfig config;
    config.asn_prefix = "1900";
    Issuer issuer(*store, **log, config, "test");
    std::shared_ptr<card::Card> card =
        std::move(ManufactureBlankCard(*store, std::move(nvm::OpenFileMedium(image)).value(),
                                       HexToBytes("0102030405060708")))
            .value();
    reader::InProcessReader inner("station", card);
    testing::PullingReader pulling(inner, 30);  // in the middle of the script
    CardIssueRequest request;
    request.holder = testing::SampleHolder();
    request.pin = "135790";
    ASSERT_FALSE(issuer.IssueCard(pulling, request).ok());
  }
  Attached attached("card", image, 0);
  ASSERT_TRUE(attached.inserted());
  CliRun refused = Medcard("issue card --store " + store_dir + " --holder " + holder_ +
                           " --reader " + Quoted(reader::VpcdReaderName(0)) + " --asn-prefix 1100");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("card is half-personalised (lifecycle personalisation"));
  CliRun shown = Medcard("card show " + image);
  EXPECT_THAT(shown.out, HasSubstr("lifecycle     personalisation"));
}

// ---- The same with the PKCS#11 store (SoftHSM2) --------------------------------------------

TEST_F(IssuancePcscTest, Pkcs11StoreIssuesACardThatLoadsAndPaysWithTacsVerifiedOnTheToken) {
  const std::string module = test_support::SoftHsmModule();
  ASSERT_FALSE(module.empty()) << "SoftHSM2 is not installed: apt-get install softhsm2";
  const std::string conf = test_support::NewSoftHsmToken(dir_.path(), "medcard-issuance", "1234");
  ASSERT_FALSE(conf.empty()) << "softhsm2-util --init-token failed";
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  const keys::Pkcs11Config token{module, "medcard-issuance", "1234", false};
  {
    auto store = keys::OpenPkcs11KeyStore(token);
    ASSERT_TRUE(store.ok()) << store.error().message;
    ASSERT_TRUE(testing::ImportCeremony(**store, 5).ok());  // the ceremony, on the token
  }
  environment_ = "SOFTHSM2_CONF=" + conf + " MEDCARD_PKCS11_PIN=1234";
  store_options_ = "--pkcs11-module " + module;
  log_option_ = "--log " + (dir_ / "log");
  const std::string card_image = dir_ / "card.img";
  const std::string pin = IssueCardThroughPcsc("pkcs11:medcard-issuance", card_image, "");
  ASSERT_EQ(pin.size(), 6u);

  // The token never lets a stored master key out, not even wrapped (docs/keys-pkcs11.md): a
  // PSAM, which holds the purchase master key, cannot be issued from it — and says so before
  // a serial is spent.
  CliRun from_token = Medcard("issue psam --store pkcs11:medcard-issuance " + store_options_ + " " +
                              log_option_ + " --terminal-no 000000000302 --out " +
                              (dir_ / "psam-hsm.img") + " --serial-prefix 5000");
  EXPECT_EQ(from_token.exit_code, 1);
  EXPECT_THAT(from_token.err, HasSubstr("never leaves the token"));
  EXPECT_FALSE(fs::exists(dir_ / "psam-hsm.img"));
  // The PSAM comes from a software store holding the same ceremony's masters.
  const std::string psam_store = dir_ / "psam-store", psam_image = dir_ / "psam.img";
  ASSERT_NE(testing::CeremonyKeyStore(psam_store, 5), nullptr);
  CliRun psam = testing::RunMedcard(MEDCARD_CLI, "issue psam --store " + psam_store +
                                                     " --terminal-no 000000000302 --out " +
                                                     psam_image + " --serial-prefix 5000");
  ASSERT_EQ(psam.exit_code, 0) << psam.err;

  auto store = keys::OpenPkcs11KeyStore(token);
  ASSERT_TRUE(store.ok()) << store.error().message;
  LoadAndPay(**store, card_image, psam_image, pin);
  store->reset();
  ExpectCardShowsTheHolder(card_image);
}

}  // namespace
}  // namespace medcard::issuance
