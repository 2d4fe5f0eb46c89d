#include "common/bcd.h"

#include <gtest/gtest.h>

namespace medcard {
namespace {

TEST(BcdDate, EncodesAsYyyymmdd) { EXPECT_EQ(ToHex(EncodeBcdDate(Date{2012, 2, 29})), "20120229"); }

TEST(BcdDate, DecodesValidDates) {
  auto d = DecodeBcdDate(HexToBytes("20111221"));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, (Date{2011, 12, 21}));
  EXPECT_EQ(d->ToString(), "2011-12-21");
}

TEST(BcdDate, RejectsImpossibleDatesAndBadNibbles) {
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("20110229")).has_value());  // not a leap year
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("19000229")).has_value());  // century rule
  EXPECT_TRUE(DecodeBcdDate(HexToBytes("20000229")).has_value());   // 400-year rule
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("20121301")).has_value());
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("20120100")).has_value());
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("2012010A")).has_value());
  EXPECT_FALSE(DecodeBcdDate(HexToBytes("201201")).has_value());
}

TEST(BcdTime, RoundTripsAndRejectsOutOfRange) {
  auto t = DecodeBcdTime(HexToBytes("214822"));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t, (TimeOfDay{21, 48, 22}));
  EXPECT_EQ(ToHex(EncodeBcdTime(*t)), "214822");
  EXPECT_FALSE(DecodeBcdTime(HexToBytes("240000")).has_value());
  EXPECT_FALSE(DecodeBcdTime(HexToBytes("236000")).has_value());
  EXPECT_FALSE(DecodeBcdTime(HexToBytes("2300")).has_value());
}

TEST(FPaddedDigits, PacksPinsAsThePbocVerifyCommandExpects) {
  EXPECT_EQ(ToHex(*PackDigitsFPadded("123456")), "123456");
  EXPECT_EQ(ToHex(*PackDigitsFPadded("12345")), "12345F");
  EXPECT_FALSE(PackDigitsFPadded("12a4").has_value());
  EXPECT_EQ(*UnpackDigitsFPadded(HexToBytes("12345F")), "12345");
  EXPECT_FALSE(UnpackDigitsFPadded(HexToBytes("1F23")).has_value());  // digit after padding
  EXPECT_FALSE(UnpackDigitsFPadded(HexToBytes("1A")).has_value());
}

}  // namespace
}  // namespace medcard
