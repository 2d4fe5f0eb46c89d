// CHANGE PIN and the PIN state on a real test card, issued in process with the test key set.
#include "terminal/pin.h"

#include <gtest/gtest.h>

#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "terminal/purse.h"

namespace medcard::terminal {
namespace {

const Bytes kAsn = HexToBytes("11000000000000000051");
const std::string kPin = "123456";

// Counts the commands that reach the card.
class CountingCard final : public iso7816::Icc {
 public:
  explicit CountingCard(std::shared_ptr<iso7816::Icc> card) : card_(std::move(card)) {}
  Bytes PowerOn() override { return card_->PowerOn(); }
  void PowerOff() override { card_->PowerOff(); }
  Bytes Atr() const override { return card_->Atr(); }
  Bytes Transmit(ByteView command) override {
    ++commands;
    return card_->Transmit(command);
  }
  int commands = 0;

 private:
  std::shared_ptr<iso7816::Icc> card_;
};

class PinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto card = issuance::IssueTestCard(issuance::TestKeySet::Embedded(),
                                        std::make_unique<nvm::FaultInjectionMedium>(),
                                        issuance::TestHolder(kAsn, kPin));
    ASSERT_TRUE(card.ok()) << card.error().message;
    counting_ = std::make_shared<CountingCard>(std::move(card).value());
    reader_ = std::make_unique<reader::InProcessReader>("card", counting_);
    ASSERT_TRUE(reader_->Connect().ok());
    ASSERT_TRUE(SelectMedicalApplication(*reader_).ok());
  }
  // The PIN as the card sees it after a fresh selection.
  Status Verify(const std::string& pin) {
    if (auto app = SelectMedicalApplication(*reader_); !app.ok()) return app.error();
    return VerifyPin(*reader_, pin);
  }

  std::shared_ptr<CountingCard> counting_;
  std::unique_ptr<reader::Reader> reader_;
};

TEST(CheckPinFormat, FourToTwelveDigits) {
  EXPECT_TRUE(CheckPinFormat("1234").ok());
  EXPECT_TRUE(CheckPinFormat("123456789012").ok());
  EXPECT_EQ(CheckPinFormat("123").error().message, "a PIN is 4 to 12 digits");
  EXPECT_EQ(CheckPinFormat("1234567890123").error().message, "a PIN is 4 to 12 digits");
  EXPECT_EQ(CheckPinFormat("12a456").error().message, "a PIN is digits only");
  EXPECT_EQ(CheckPinFormat("12 456").error().message, "a PIN is digits only");
  EXPECT_FALSE(CheckPinFormat("").ok());
}

TEST_F(PinTest, ChangePin_succeeds_newPinVerifiesAndOldDoesNot) {
  const PinOutcome changed = ChangePin(*reader_, kPin, "654321");
  ASSERT_TRUE(changed.ok()) << changed.message;
  EXPECT_TRUE(changed.message.empty());
  // CHANGE PIN leaves the new PIN verified: the ED balance reads at once.
  EXPECT_TRUE(GetBalance(*reader_, Wallet::kEd).ok());
  EXPECT_TRUE(Verify("654321").ok());
  EXPECT_FALSE(Verify(kPin).ok());
}

TEST_F(PinTest, ChangePin_badFormat_sendsNothing) {
  const int before = counting_->commands;
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"12345", "123", "new PIN: a PIN is 4 to 12 digits"},
      {"12a456", "654321", "old PIN: a PIN is digits only"},
      {kPin, "1234567890123", "new PIN: a PIN is 4 to 12 digits"},
      {kPin, kPin, "the new PIN is the same as the old one"},
  };
  for (const auto& [old_pin, new_pin, message] : cases) {
    const PinOutcome o = ChangePin(*reader_, old_pin, new_pin);
    EXPECT_EQ(o.failure, PinFailure::kFormat);
    EXPECT_EQ(o.message, message);
  }
  EXPECT_EQ(counting_->commands, before);
  EXPECT_TRUE(Verify(kPin).ok());
}

TEST_F(PinTest, ChangePin_newPinTheCardDoesNotTake_keepsTheOldPin) {
  const PinOutcome o = ChangePin(*reader_, kPin, "4321");  // the card sets 6 digits only
  EXPECT_EQ(o.failure, PinFailure::kFormat);
  EXPECT_EQ(o.message, "the card does not take that new PIN (it sets 6 digits)");
  EXPECT_TRUE(Verify(kPin).ok());
}

TEST_F(PinTest, ChangePin_wrongOldPin_reportsTriesLeftThenBlocked) {
  PinOutcome o = ChangePin(*reader_, "000000", "654321");
  EXPECT_EQ(o.failure, PinFailure::kWrongPin);
  EXPECT_EQ(o.tries_left, 2);
  EXPECT_EQ(o.message, "wrong PIN, 2 tries left");
  EXPECT_EQ(o.ToStatus().error().message, "wrong PIN, 2 tries left");

  o = ChangePin(*reader_, "000000", "654321");
  EXPECT_EQ(o.tries_left, 1);
  EXPECT_EQ(o.message, "wrong PIN, 1 try left");
  o = ChangePin(*reader_, "000000", "654321");
  EXPECT_EQ(o.failure, PinFailure::kWrongPin);
  EXPECT_EQ(o.tries_left, 0);
  EXPECT_EQ(o.message, "wrong PIN, the PIN is now blocked");

  // Blocked: even the right PIN is refused, and the state query says so.
  o = ChangePin(*reader_, kPin, "654321");
  EXPECT_EQ(o.failure, PinFailure::kBlocked);
  EXPECT_EQ(o.message, "the PIN is blocked: the card issuer must unblock it (6983)");
  const auto state = QueryPinState(*reader_);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_TRUE(state->blocked);
  EXPECT_EQ(state->tries_left, 0);
  EXPECT_FALSE(Verify(kPin).ok());
}

TEST_F(PinTest, ChangePin_rightOldPinAfterAWrongOne_resetsTheTries) {
  EXPECT_EQ(ChangePin(*reader_, "000000", "654321").tries_left, 2);
  ASSERT_TRUE(ChangePin(*reader_, kPin, "654321").ok());
  ASSERT_TRUE(SelectMedicalApplication(*reader_).ok());
  const auto state = QueryPinState(*reader_);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_FALSE(state->verified);
  EXPECT_EQ(state->tries_left, 3);
}

TEST_F(PinTest, QueryPinState_notVerifiedThenVerified_countsNothing) {
  auto state = QueryPinState(*reader_);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_FALSE(state->verified);
  EXPECT_FALSE(state->blocked);
  EXPECT_EQ(state->tries_left, 3);
  state = QueryPinState(*reader_);
  EXPECT_EQ(state->tries_left, 3);  // a query is not a try
  ASSERT_TRUE(VerifyPin(*reader_, kPin).ok());
  state = QueryPinState(*reader_);
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->verified);
  // After a wrong PIN the query reports the tries that remain.
  ASSERT_FALSE(VerifyPin(*reader_, "000000").ok());
  state = QueryPinState(*reader_);
  EXPECT_FALSE(state->verified);
  EXPECT_EQ(state->tries_left, 2);
}

TEST_F(PinTest, Messages_neverContainThePins) {
  for (const PinOutcome& o :
       {ChangePin(*reader_, "987654", "135791"), ChangePin(*reader_, "98765x", "135791"),
        ChangePin(*reader_, kPin, "1357")}) {
    EXPECT_EQ(o.message.find("987654"), std::string::npos);
    EXPECT_EQ(o.message.find("135791"), std::string::npos);
    EXPECT_EQ(o.message.find("1357"), std::string::npos);
    EXPECT_EQ(o.message.find(kPin), std::string::npos);
  }
}

}  // namespace
}  // namespace medcard::terminal
