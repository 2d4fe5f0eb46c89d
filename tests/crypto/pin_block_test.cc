#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/bytes.h"
#include "crypto/crypto.h"

namespace medcard::crypto {
namespace {

constexpr std::string_view kPan = "43219876543210987";

TEST(PinBlockFormat0, MatchesThePublishedExample) {
  // ISO 9564-1 format 0 example: PIN 1234, PAN 43219876543210987.
  auto block = MakePinBlock(PinBlockFormat::kFormat0, "1234", kPan);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(ToHex(*block), "0412AC89ABCDEF67");
  auto pin = ParsePinBlock(PinBlockFormat::kFormat0, *block, kPan);
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(*pin, "1234");
}

TEST(PinBlockFormat0, PadsAShortPanWithZerosOnTheLeft) {
  // PAN 12345678: without the check digit 8 it is 7 digits, so the PAN field is 0000000001234567.
  auto block = MakePinBlock(PinBlockFormat::kFormat0, "1234", "12345678");
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(ToHex(*block), "041234FFFEDCBA98");
}

TEST(PinBlockFormat0, IsDeterministic) {
  EXPECT_EQ(*MakePinBlock(PinBlockFormat::kFormat0, "123456", kPan),
            *MakePinBlock(PinBlockFormat::kFormat0, "123456", kPan));
}

TEST(PinBlock, RoundTripsEveryFormatAndLength) {
  for (auto format :
       {PinBlockFormat::kFormat0, PinBlockFormat::kFormat1, PinBlockFormat::kFormat3}) {
    for (std::string pin : {"0000", "1234", "987654", "12345678901", "999999999999"}) {
      auto block = MakePinBlock(format, pin, kPan);
      ASSERT_TRUE(block.ok()) << static_cast<int>(format) << " " << pin.size();
      ASSERT_EQ(block->size(), 8u);
      auto back = ParsePinBlock(format, *block, kPan);
      ASSERT_TRUE(back.ok()) << static_cast<int>(format) << ": " << back.error().message;
      EXPECT_EQ(*back, pin);
    }
  }
}

TEST(PinBlockFormat1, StartsWithControlAndLengthAndNeedsNoPan) {
  auto block = MakePinBlock(PinBlockFormat::kFormat1, "123456");
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(ToHex(*block).substr(0, 8), "16123456");
  EXPECT_EQ(*ParsePinBlock(PinBlockFormat::kFormat1, *block), "123456");
}

TEST(PinBlockFormat1, FillIsRandom) {
  std::set<Bytes> blocks;
  for (int i = 0; i < 20; ++i) blocks.insert(*MakePinBlock(PinBlockFormat::kFormat1, "1234"));
  EXPECT_GT(blocks.size(), 1u);
}

TEST(PinBlockFormat3, FillIsRandomAndOnlyAToF) {
  std::set<Bytes> blocks;
  for (int i = 0; i < 50; ++i) {
    auto block = MakePinBlock(PinBlockFormat::kFormat3, "1234", kPan);
    ASSERT_TRUE(block.ok());
    blocks.insert(*block);
    // Undo the PAN field (0000987654321098) to see the clear PIN field.
    const Bytes pan_field = HexToBytes("0000987654321098");
    Bytes pin_field(8);
    for (std::size_t b = 0; b < 8; ++b) {
      pin_field[b] = static_cast<std::uint8_t>((*block)[b] ^ pan_field[b]);
    }
    const std::string hex = ToHex(pin_field);
    EXPECT_EQ(hex.substr(0, 6), "341234");
    for (char fill : hex.substr(6)) EXPECT_TRUE(fill >= 'A' && fill <= 'F') << hex;
  }
  EXPECT_GT(blocks.size(), 1u);
}

TEST(PinBlock, ParseUnderTheWrongPanFailsOrGivesAnotherPin) {
  auto block = MakePinBlock(PinBlockFormat::kFormat0, "1234", kPan);
  auto other = ParsePinBlock(PinBlockFormat::kFormat0, *block, "5555555555554444");
  EXPECT_TRUE(!other.ok() || *other != "1234");
}

// --- errors ------------------------------------------------------------------------------------

TEST(PinBlockErrors, MakeRejectsBadPinDigitsAndLengths) {
  for (std::string_view pin : {"", "123", "1234567890123", "12a4", "12 34", "-123"}) {
    auto r = MakePinBlock(PinBlockFormat::kFormat0, pin, kPan);
    ASSERT_FALSE(r.ok()) << pin;
    EXPECT_NE(r.error().message.find("4 to 12 decimal digits"), std::string::npos);
  }
}

TEST(PinBlockErrors, MakeRejectsAMissingOrMalformedPanForFormats0And3) {
  for (auto format : {PinBlockFormat::kFormat0, PinBlockFormat::kFormat3}) {
    for (std::string_view pan : {"", "1234567", "12345678901234567890", "4321987654321098X"}) {
      auto r = MakePinBlock(format, "1234", pan);
      ASSERT_FALSE(r.ok()) << pan;
      EXPECT_NE(r.error().message.find("PAN"), std::string::npos);
      EXPECT_FALSE(ParsePinBlock(format, Bytes(8, 0), pan).ok());
    }
  }
}

TEST(PinBlockErrors, UnknownFormatIsRejected) {
  EXPECT_FALSE(MakePinBlock(static_cast<PinBlockFormat>(2), "1234", kPan).ok());
  EXPECT_FALSE(ParsePinBlock(static_cast<PinBlockFormat>(4), Bytes(8, 0), kPan).ok());
}

TEST(PinBlockErrors, ParseRejectsABlockNotEightBytes) {
  EXPECT_FALSE(ParsePinBlock(PinBlockFormat::kFormat1, Bytes(7, 0x14)).ok());
  EXPECT_FALSE(ParsePinBlock(PinBlockFormat::kFormat1, Bytes(9, 0x14)).ok());
}

TEST(PinBlockErrors, ParseRejectsMalformedClearBlocks) {
  struct Case {
    PinBlockFormat format;
    const char* block;
    const char* why;
  };
  const Case cases[] = {
      {PinBlockFormat::kFormat1, "041234FFFFFFFFFF", "control field"},  // format 0 given to 1
      {PinBlockFormat::kFormat1, "131234FFFFFFFFFF", "PIN length"},     // 3 digits
      {PinBlockFormat::kFormat1, "1D1234567890123F", "PIN length"},     // 13 digits
      {PinBlockFormat::kFormat1, "14123AFFFFFFFFFF", "non-decimal"},    // digit A
      {PinBlockFormat::kFormat0, "041234FFFFFFFFFE", "fill"},           // fill must be F
      {PinBlockFormat::kFormat3, "3412349ABCDEFABC", "fill"},           // fill must be A..F
  };
  for (const Case& c : cases) {
    Bytes block = HexToBytes(c.block);
    if (c.format != PinBlockFormat::kFormat1) {  // the test cases give the clear PIN field
      const Bytes pan_field = HexToBytes("0000987654321098");
      for (std::size_t b = 0; b < 8; ++b) block[b] ^= pan_field[b];
    }
    auto r = ParsePinBlock(c.format, block, kPan);
    ASSERT_FALSE(r.ok()) << c.block;
    EXPECT_NE(r.error().message.find(c.why), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace medcard::crypto
