// Full PBOC transactions in process: a card issued through its personalisation commands, a
// PSAM, the terminal's purse flows and the issuer verifying MAC1/TAC and the PSAM's totals.
#include <gtest/gtest.h>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

using terminal::Wallet;

class TransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = issuance::IssueTestCard(keys_, std::make_unique<nvm::FaultInjectionMedium>(),
                                     issuance::TestHolder(asn_, "123456"));
    ASSERT_TRUE(c.ok()) << c.error().message;
    card_ = std::move(c).value();
    auto p = issuance::IssueTestPsam(keys_, std::make_unique<nvm::FaultInjectionMedium>(),
                                     psam_serial_, terminal_number_);
    ASSERT_TRUE(p.ok()) << p.error().message;
    psam_ = std::move(p).value();
    card_reader_ = std::make_unique<reader::InProcessReader>("card", card_);
    psam_reader_ = std::make_unique<reader::InProcessReader>("psam", psam_);
    ASSERT_TRUE(card_reader_->Connect().ok());
    ASSERT_TRUE(psam_reader_->Connect().ok());
    auto app = terminal::SelectMedicalApplication(*card_reader_);
    ASSERT_TRUE(app.ok()) << app.error().message;
    app_ = *app;
  }

  terminal::LoadResult LoadOk(Wallet w, std::uint32_t amount) {
    auto r =
        terminal::Load(*card_reader_, issuer_, app_, {w, amount, terminal_number_, date_, time_});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : terminal::LoadResult{};
  }

  const issuance::TestKeySet& keys_ = issuance::TestKeySet::Embedded();
  issuance::TestIssuerHost issuer_{keys_};
  Bytes asn_ = HexToBytes("11000000000000000101");
  Bytes psam_serial_ = HexToBytes("50000000000000000101");
  Bytes terminal_number_ = HexToBytes("000000000101");
  Date date_{2026, 11, 25};
  TimeOfDay time_{10, 30, 0};
  std::shared_ptr<card::Card> card_;
  std::shared_ptr<psam::Psam> psam_;
  std::unique_ptr<reader::Reader> card_reader_, psam_reader_;
  terminal::ApplicationData app_;
};

TEST_F(TransactionTest, SelectReadsTheIssuedApplicationDataAndTestMarker) {
  EXPECT_EQ(app_.asn, asn_);
  EXPECT_TRUE(app_.test_card);
  EXPECT_EQ(app_.app_type, 0x03);
}

TEST_F(TransactionTest, EdLoadNeedsThePinThenCreditsAndTheIssuerVerifiesTheTac) {
  auto refused = terminal::Load(*card_reader_, issuer_, app_,
                                {Wallet::kEd, 10000, terminal_number_, date_, time_});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("6982"), std::string::npos) << refused.error().message;
  ASSERT_TRUE(terminal::VerifyPin(*card_reader_, "123456").ok());
  auto r = LoadOk(Wallet::kEd, 10000);
  EXPECT_EQ(r.balance_after, 10000u);
  EXPECT_EQ(r.online_serial, 0u);
  auto second = LoadOk(Wallet::kEd, 2345);
  EXPECT_EQ(second.balance_after, 12345u);
  EXPECT_EQ(second.online_serial, 1u);
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, Wallet::kEd), 12345u);
}

TEST_F(TransactionTest, EdAndEpPurchasesDebitTheCardCountInThePsamAndCarryValidTacs) {
  ASSERT_TRUE(terminal::VerifyPin(*card_reader_, "123456").ok());
  LoadOk(Wallet::kEd, 50000);
  LoadOk(Wallet::kEp, 3000);
  std::uint32_t ed = 50000, ep = 3000;
  std::uint64_t total = 0;
  const std::pair<Wallet, std::uint32_t> purchases[] = {
      {Wallet::kEd, 1250}, {Wallet::kEp, 380}, {Wallet::kEd, 8630}, {Wallet::kEp, 1}};
  std::uint32_t expected_terminal_serial = 1;
  for (auto [wallet, amount] : purchases) {
    auto r = terminal::Purchase(*card_reader_, *psam_reader_, app_, {wallet, amount, date_, time_});
    ASSERT_TRUE(r.ok()) << r.error().message;
    std::uint32_t& balance = wallet == Wallet::kEd ? ed : ep;
    EXPECT_EQ(r->balance_before, balance);
    balance -= amount;
    EXPECT_EQ(r->balance_after, balance);
    EXPECT_EQ(r->terminal_serial, expected_terminal_serial++);
    EXPECT_EQ(r->terminal_number, terminal_number_);
    EXPECT_TRUE(issuer_.VerifyPurchaseTac(*r).ok());
    total += amount;
    // A TAC from another amount does not verify: the host would catch a forged upload.
    auto forged = *r;
    forged.amount += 1;
    EXPECT_FALSE(issuer_.VerifyPurchaseTac(forged).ok());
  }
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, Wallet::kEd), ed);
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, Wallet::kEp), ep);
  auto inspection = psam_->Inspect();
  EXPECT_EQ(inspection.totals.count, 4u);
  EXPECT_EQ(inspection.totals.amount, total);

  auto log = terminal::ReadTransactionLog(*card_reader_);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 6u);  // 2 loads + 4 purchases, newest first
  EXPECT_EQ((*log)[0].type, 0x06);
  EXPECT_EQ((*log)[0].amount, 1u);
  EXPECT_EQ((*log)[5].type, 0x01);
  EXPECT_EQ((*log)[5].amount, 50000u);
}

TEST_F(TransactionTest, InsufficientBalanceIsRefusedAndNothingMoves) {
  ASSERT_TRUE(terminal::VerifyPin(*card_reader_, "123456").ok());  // EP load needs the PIN
  LoadOk(Wallet::kEp, 500);
  auto r = terminal::Purchase(*card_reader_, *psam_reader_, app_, {Wallet::kEp, 501, date_, time_});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("insufficient"), std::string::npos) << r.error().message;
  EXPECT_EQ(*terminal::GetBalance(*card_reader_, Wallet::kEp), 500u);
  EXPECT_EQ(psam_->Inspect().totals.count, 0u);
}

TEST_F(TransactionTest, WrongPinCountsDownAndBlocksAfterThree) {
  auto first = terminal::VerifyPin(*card_reader_, "000000");
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().message.find("2 tries left"), std::string::npos) << first.error().message;
  EXPECT_FALSE(terminal::VerifyPin(*card_reader_, "000000").ok());
  auto third = terminal::VerifyPin(*card_reader_, "000000");
  EXPECT_NE(third.error().message.find("blocked"), std::string::npos) << third.error().message;
  auto right = terminal::VerifyPin(*card_reader_, "123456");
  ASSERT_FALSE(right.ok());
  EXPECT_NE(right.error().message.find("6983"), std::string::npos) << right.error().message;
}

TEST_F(TransactionTest, SamTotalsAreSignedAndOnlyTheIssuersAcknowledgementClearsThem) {
  ASSERT_TRUE(terminal::VerifyPin(*card_reader_, "123456").ok());
  LoadOk(Wallet::kEd, 10000);
  ASSERT_TRUE(
      terminal::Purchase(*card_reader_, *psam_reader_, app_, {Wallet::kEd, 700, date_, time_})
          .ok());
  Bytes challenge = crypto::RandomBytes(8);
  auto totals = reader::Send(*psam_reader_,
                             iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge, 22));
  ASSERT_TRUE(totals.ok() && totals->ok());
  EXPECT_EQ(ReadU32(totals->data, 0), 1u);
  EXPECT_EQ(ReadU48(totals->data, 4), 700u);
  auto ack = issuer_.AcknowledgeSamTotals(psam_serial_, challenge, totals->data);
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  // The PSAM's own signature is not an acknowledgement.
  Bytes replay(totals->data.end() - 4, totals->data.end());
  auto refused = reader::Send(*psam_reader_, iso7816::CommandApdu::Case3(0x80, 0x7C, 0, 0, replay));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->sw, iso7816::sw::kMacInvalid);
  EXPECT_EQ(psam_->Inspect().totals.count, 1u);
  auto cleared = reader::Send(*psam_reader_, iso7816::CommandApdu::Case3(0x80, 0x7C, 0, 0, *ack));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok()) << cleared->sw.ToString();
  EXPECT_EQ(psam_->Inspect().totals.count, 0u);
  EXPECT_EQ(psam_->Inspect().terminal_transaction_serial, 1u);  // the serial keeps counting
}

}  // namespace
}  // namespace medcard
