#include "terminal/purse.h"

#include <gtest/gtest.h>

namespace medcard::terminal {
namespace {

TEST(ApplicationData, ParsesSfi15AndRecognisesTestCards) {
  // issuerId(8) ‖ appType ‖ appVersion ‖ ASN(10) ‖ start ‖ expiry ‖ issuerData "TE"
  Bytes sfi15 = HexToBytes(
      "4D45444341524431"
      "03"
      "02"
      "11000000000000000001"
      "20260101"
      "20361231"
      "5445");
  auto app = ApplicationData::Parse(sfi15);
  ASSERT_TRUE(app.ok()) << app.error().message;
  EXPECT_EQ(ToHex(app->asn), "11000000000000000001");
  EXPECT_EQ(app->app_type, 0x03);
  EXPECT_EQ(app->start_date, (Date{2026, 1, 1}));
  EXPECT_EQ(app->expiry_date, (Date{2036, 12, 31}));
  EXPECT_TRUE(app->test_card);
}

TEST(ApplicationData, RejectsWrongLengthAndBadDates) {
  EXPECT_FALSE(ApplicationData::Parse(Bytes(29, 0)).ok());
  Bytes bad_date = HexToBytes(
      "4D45444341524431"
      "03"
      "02"
      "11000000000000000001"
      "20261301"
      "20361231"
      "0000");
  EXPECT_FALSE(ApplicationData::Parse(bad_date).ok());
}

TEST(CardError, NamesTheCommandTheMeaningAndTheStatusWord) {
  EXPECT_EQ(CardError("VERIFY", iso7816::sw::PinWrong(2)).message,
            "VERIFY: wrong PIN, 2 tries left (63C2)");
  EXPECT_EQ(CardError("VERIFY", iso7816::sw::PinWrong(1)).message,
            "VERIFY: wrong PIN, 1 try left (63C1)");
  EXPECT_EQ(CardError("VERIFY", iso7816::sw::PinWrong(0)).message,
            "VERIFY: wrong PIN, PIN now blocked (63C0)");
  EXPECT_EQ(CardError("INITIALIZE FOR PURCHASE", iso7816::sw::kInsufficientFunds).message,
            "INITIALIZE FOR PURCHASE: insufficient balance (9401)");
  EXPECT_EQ(CardError("SELECT", iso7816::sw::kFunctionNotSupported).message,
            "SELECT: application blocked (6A81)");
}

}  // namespace
}  // namespace medcard::terminal
