#include "common/bytes.h"

#include <gtest/gtest.h>

namespace medcard {
namespace {

TEST(Hex, RoundTripsEveryByteValue) {
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  auto back = FromHex(ToHex(all));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
}

TEST(Hex, AcceptsLowerCaseAndSpaces) {
  EXPECT_EQ(FromHex("80 5c 00 02 04"), (Bytes{0x80, 0x5C, 0x00, 0x02, 0x04}));
}

TEST(Hex, RejectsOddLengthAndNonHex) {
  EXPECT_FALSE(FromHex("ABC").has_value());
  EXPECT_FALSE(FromHex("GG").has_value());
  EXPECT_FALSE(FromHex("0x12").has_value());
}

TEST(BigEndian, WritesAndReadsEveryWidth) {
  Bytes b;
  AppendU16(b, 0x1234);
  AppendU24(b, 0x56789A);
  AppendU32(b, 0xBCDEF012);
  AppendU48(b, 0x3456789ABCDEULL);
  AppendU64(b, 0x0102030405060708ULL);
  EXPECT_EQ(ToHex(b),
            "123456789ABCDEF012345678"
            "9ABCDE0102030405060708");
  EXPECT_EQ(ReadU16(b, 0), 0x1234);
  EXPECT_EQ(ReadU24(b, 2), 0x56789Au);
  EXPECT_EQ(ReadU32(b, 5), 0xBCDEF012u);
  EXPECT_EQ(ReadU48(b, 9), 0x3456789ABCDEULL);
  EXPECT_EQ(ReadU64(b, 15), 0x0102030405060708ULL);
}

TEST(Concat, JoinsInOrder) {
  Bytes a{1, 2}, b{}, c{3};
  EXPECT_EQ(Concat({a, b, c}), (Bytes{1, 2, 3}));
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEqual(Bytes{1, 2, 3}, Bytes{1, 2, 3}));
  EXPECT_FALSE(ConstantTimeEqual(Bytes{1, 2, 3}, Bytes{1, 2, 4}));
  EXPECT_FALSE(ConstantTimeEqual(Bytes{1, 2, 3}, Bytes{1, 2}));
  EXPECT_TRUE(ConstantTimeEqual(Bytes{}, Bytes{}));
}

TEST(SecureWipe, EmptiesTheBuffer) {
  Bytes key{0x11, 0x22, 0x33};
  SecureWipe(key);
  EXPECT_TRUE(key.empty());
}

}  // namespace
}  // namespace medcard
