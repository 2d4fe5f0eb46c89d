// The same transactions through real pcscd + vpcd: the card and the PSAM sit in "Virtual PCD
// 00 00" and "00 01" through the vpcd bridge, and the terminal talks PC/SC. PC/SC clients that
// nobody here wrote (opensc-tool, scriptor) read the card too, and the `medcard` CLI attaches
// an image and talks to it.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "issuance/test_issuer.h"
#include "pcscd_fixture.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

static auto* const kPcscd = test_support::RegisterPcscdEnvironment();

using terminal::Wallet;
using namespace std::chrono_literals;

// Runs a shell command, returns its stdout (and exit status).
std::pair<std::string, int> Shell(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return {"popen failed", -1};
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// An Icc served into a vpcd slot on a thread. Removal is complete only when pcscd has seen the
// reader empty: the next test's card must not be taken for this one.
class Slot {
 public:
  Slot(std::shared_ptr<iso7816::Icc> icc, unsigned slot)
      : slot_(slot), bridge_(std::move(icc), slot), thread_([this] { result_ = bridge_.Run(); }) {}
  ~Slot() {
    bridge_.Stop();
    thread_.join();
    if (auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot_)); r.ok()) {
      (void)(*r)->WaitForRemoval(5s);
    }
  }

 private:
  unsigned slot_;
  reader::VpcdBridge bridge_;
  Status result_;
  std::thread thread_;
};

class PcscTransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = issuance::IssueTestCard(keys_, std::make_unique<nvm::FaultInjectionMedium>(),
                                     issuance::TestHolder(asn_, "123456"));
    ASSERT_TRUE(c.ok()) << c.error().message;
    card_ = std::move(c).value();
    auto p = issuance::IssueTestPsam(keys_, std::make_unique<nvm::FaultInjectionMedium>(),
                                     HexToBytes("50000000000000000201"), terminal_number_);
    ASSERT_TRUE(p.ok()) << p.error().message;
    psam_ = std::move(p).value();
  }

  std::unique_ptr<reader::PcscReader> Connect(unsigned slot) {
    auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot));
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return nullptr;
    auto present = (*r)->WaitForCard(5s);
    EXPECT_TRUE(present.ok() && *present) << "no card in " << reader::VpcdReaderName(slot);
    auto atr = (*r)->Connect();
    EXPECT_TRUE(atr.ok()) << atr.error().message;
    return std::move(r).value();
  }

  const issuance::TestKeySet& keys_ = issuance::TestKeySet::Embedded();
  issuance::TestIssuerHost issuer_{keys_};
  Bytes asn_ = HexToBytes("11000000000000000201");
  Bytes terminal_number_ = HexToBytes("000000000201");
  Date date_{2026, 11, 25};
  TimeOfDay time_{9, 15, 0};
  std::shared_ptr<card::Card> card_;
  std::shared_ptr<psam::Psam> psam_;
};

TEST_F(PcscTransactionTest, LoadAndPurchasesThroughPcscdAndVpcd) {
  Slot card_slot(card_, 0);
  Slot psam_slot(psam_, 1);
  auto card_reader = Connect(0);
  auto psam_reader = Connect(1);
  ASSERT_TRUE(card_reader && psam_reader);

  auto app = terminal::SelectMedicalApplication(*card_reader);
  ASSERT_TRUE(app.ok()) << app.error().message;
  EXPECT_EQ(app->asn, asn_);
  ASSERT_TRUE(terminal::VerifyPin(*card_reader, "123456").ok());
  auto load = terminal::Load(*card_reader, issuer_, *app,
                             {Wallet::kEd, 20000, terminal_number_, date_, time_});
  ASSERT_TRUE(load.ok()) << load.error().message;
  EXPECT_EQ(load->balance_after, 20000u);
  ASSERT_TRUE(terminal::Load(*card_reader, issuer_, *app,
                             {Wallet::kEp, 1000, terminal_number_, date_, time_})
                  .ok());

  auto ed = terminal::Purchase(*card_reader, *psam_reader, *app, {Wallet::kEd, 1250, date_, time_});
  ASSERT_TRUE(ed.ok()) << ed.error().message;
  EXPECT_TRUE(issuer_.VerifyPurchaseTac(*ed).ok());
  auto ep = terminal::Purchase(*card_reader, *psam_reader, *app, {Wallet::kEp, 380, date_, time_});
  ASSERT_TRUE(ep.ok()) << ep.error().message;
  EXPECT_TRUE(issuer_.VerifyPurchaseTac(*ep).ok());

  EXPECT_EQ(*terminal::GetBalance(*card_reader, Wallet::kEd), 18750u);
  EXPECT_EQ(*terminal::GetBalance(*card_reader, Wallet::kEp), 620u);
  EXPECT_EQ(psam_->Inspect().totals.count, 2u);
  EXPECT_EQ(psam_->Inspect().totals.amount, 1630u);
}

TEST_F(PcscTransactionTest, CardPulledOutAndReinsertedKeepsItsBalance) {
  Slot psam_slot(psam_, 1);
  {
    Slot card_slot(card_, 0);
    auto card_reader = Connect(0);
    ASSERT_TRUE(card_reader);
    auto app = terminal::SelectMedicalApplication(*card_reader);
    ASSERT_TRUE(app.ok());
    ASSERT_TRUE(terminal::VerifyPin(*card_reader, "123456").ok());
    ASSERT_TRUE(terminal::Load(*card_reader, issuer_, *app,
                               {Wallet::kEp, 999, terminal_number_, date_, time_})
                    .ok());
  }  // the bridge closes: the card leaves the reader
  auto r = reader::PcscReader::Open(reader::VpcdReaderName(0));
  ASSERT_TRUE(r.ok());
  auto removed = (*r)->WaitForRemoval(5s);
  ASSERT_TRUE(removed.ok() && *removed);

  Slot card_slot(card_, 0);
  auto card_reader = Connect(0);
  ASSERT_TRUE(card_reader);
  auto app = terminal::SelectMedicalApplication(*card_reader);
  ASSERT_TRUE(app.ok());
  EXPECT_EQ(*terminal::GetBalance(*card_reader, Wallet::kEp), 999u);
}

TEST_F(PcscTransactionTest, OpenscToolReadsTheCardsApplicationDataAndPurseBalance) {
  ASSERT_EQ(Shell("command -v opensc-tool").second, 0) << "apt-get install opensc";
  {  // put 7.77 on the purse first
    Slot card_slot(card_, 0);
    auto card_reader = Connect(0);
    ASSERT_TRUE(card_reader);
    auto app = terminal::SelectMedicalApplication(*card_reader);
    ASSERT_TRUE(app.ok());
    ASSERT_TRUE(terminal::VerifyPin(*card_reader, "123456").ok());
    ASSERT_TRUE(terminal::Load(*card_reader, issuer_, *app,
                               {Wallet::kEp, 777, terminal_number_, date_, time_})
                    .ok());
  }
  Slot card_slot(card_, 0);
  auto card_reader = Connect(0);  // waits until pcscd sees the card
  ASSERT_TRUE(card_reader);
  ASSERT_TRUE(card_reader->Disconnect().ok());
  auto [out, rc] =
      Shell("opensc-tool --reader 0 -s 00A4040006D1560000050300 -s 00B095001E -s 805C000204");
  ASSERT_EQ(rc, 0) << out;
  // SFI 15: issuer id "MEDCARD1", then the ASN ...0201 and the start date 20260101 (opensc-tool
  // dumps 16 bytes a line); the EP balance is 777 fen = 00 00 03 09.
  EXPECT_NE(out.find("MEDCARD1"), std::string::npos) << out;
  EXPECT_NE(out.find("00 00 02 01 20 26 01 01"), std::string::npos) << out;
  EXPECT_NE(out.find("00 00 03 09"), std::string::npos) << out;
  EXPECT_NE(out.find("SW1=0x90, SW2=0x00"), std::string::npos) << out;
}

TEST_F(PcscTransactionTest, ScriptorGetsTheRightStatusWordsFromTheCard) {
  ASSERT_EQ(Shell("command -v scriptor").second, 0) << "apt-get install pcsc-tools";
  Slot card_slot(card_, 0);
  auto card_reader = Connect(0);
  ASSERT_TRUE(card_reader);
  ASSERT_TRUE(card_reader->Disconnect().ok());
  // SELECT the ADF, then GET BALANCE of the ED without a PIN: 6982.
  auto [out, rc] = Shell("printf '00A4040006D1560000050300\\n805C000104\\n' | scriptor -r '" +
                         reader::VpcdReaderName(0) + "'");
  EXPECT_NE(out.find("69 82"), std::string::npos) << out;
  EXPECT_NE(out.find("90 00"), std::string::npos) << out;
}

TEST_F(PcscTransactionTest, CliAttachesACardImageThatReaderApduTalksTo) {
  auto dir = std::filesystem::temp_directory_path() / ("medcard-cli-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string image = (dir / "card.img").string();
  std::string cli = MEDCARD_CLI;
  auto [made, made_rc] =
      Shell(cli + " card new " + image + " --asn 11000000000000000777 --pin 246810");
  ASSERT_EQ(made_rc, 0) << made;
  EXPECT_NE(made.find("TEST card 11000000000000000777"), std::string::npos) << made;

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(cli.c_str(), cli.c_str(), "card", "attach", image.c_str(), "--slot", "0",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  auto r = reader::PcscReader::Open(reader::VpcdReaderName(0));
  ASSERT_TRUE(r.ok());
  auto present = (*r)->WaitForCard(10s);
  EXPECT_TRUE(present.ok() && *present);
  auto [out, rc] = Shell(cli + " reader apdu --reader '" + reader::VpcdReaderName(0) +
                         "' 00A4040006D1560000050300 00B095001E");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("11000000000000000777"), std::string::npos) << out;
  EXPECT_NE(out.find("9000"), std::string::npos) << out;

  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto removed = (*r)->WaitForRemoval(5s);
  EXPECT_TRUE(removed.ok() && *removed);

  auto [shown, shown_rc] = Shell(cli + " card show " + image);
  EXPECT_EQ(shown_rc, 0) << shown;
  EXPECT_NE(shown.find("11000000000000000777"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("246810"), std::string::npos) << "the PIN must never be shown";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace medcard
