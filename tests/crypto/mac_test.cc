#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "crypto/crypto.h"

namespace medcard::crypto {
namespace {

Bytes Ascii(std::string_view text) { return Bytes(text.begin(), text.end()); }

MacKey MakeMacKey(const Bytes& key) {
  auto mac_key = MacKey::Create(key);
  EXPECT_TRUE(mac_key.ok());
  return std::move(mac_key).value();
}

// ISO 9797-1 MAC algorithm 3 written out literally from the spec sentence: pad; CBC single DES
// with K_L over every block; then decrypt the last block with K_R and encrypt it with K_L.
Bytes ReferenceRetailMac(const Bytes& key, const Bytes& data, const Bytes& iv) {
  auto k_left = BlockCipher::Des(Bytes(key.begin(), key.begin() + 8));
  auto k_right = BlockCipher::Des(Bytes(key.begin() + 8, key.end()));
  const Bytes cbc = k_left->EncryptCbc(PadIso9797M2(data), iv);
  Bytes last(cbc.end() - 8, cbc.end());
  k_right->DecryptBlock(last.data(), last.data());
  k_left->EncryptBlock(last.data(), last.data());
  return last;
}

// --- padding -----------------------------------------------------------------------------------

TEST(PadIso9797M2, EmptyInputBecomesOneWholePaddingBlock) {
  EXPECT_EQ(ToHex(PadIso9797M2({})), "8000000000000000");
}

TEST(PadIso9797M2, SevenBytesGetOnlyThe80) {
  EXPECT_EQ(ToHex(PadIso9797M2(HexToBytes("01020304050607"))), "0102030405060780");
}

TEST(PadIso9797M2, AlignedInputGetsAWholeExtraBlock) {
  EXPECT_EQ(ToHex(PadIso9797M2(HexToBytes("0102030405060708"))),
            "01020304050607088000000000000000");
}

TEST(PadIso9797M2, NineBytesArePaddedToSixteen) {
  EXPECT_EQ(ToHex(PadIso9797M2(HexToBytes("010203040506070809"))),
            "01020304050607080980000000000000");
}

TEST(PadIso9797M2, SixteenByteBlocksForSm4) {
  EXPECT_EQ(ToHex(PadIso9797M2(HexToBytes("0102"), 16)), "01028000000000000000000000000000");
  EXPECT_EQ(PadIso9797M2(Bytes(16, 0xAB), 16).size(), 32u);
}

// --- 8-byte key: algorithm 1 -------------------------------------------------------------------

TEST(PbocMac8, MatchesTheFips113ChainWithPbocPadding) {
  // FIPS 113 / ANSI X9.9 example: key 0123456789ABCDEF, "7654321 Now is the time for ".
  // With zero padding the published DAA is F1D30F68; PBOC pads 80 00 00 00 instead, which only
  // changes the last block (value from `openssl enc -des-ede3-cbc` with K||K||K).
  const Bytes key = HexToBytes("0123456789ABCDEF");
  const Bytes data = Ascii("7654321 Now is the time for ");
  auto des = BlockCipher::Des(key);
  Bytes zero_padded = data;
  zero_padded.resize(32, 0);
  const Bytes daa = des->EncryptCbc(zero_padded, Bytes(8, 0));
  EXPECT_EQ(ToHex(Bytes(daa.end() - 8, daa.end() - 4)), "F1D30F68");

  auto mac = PbocMac(key, data);
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(ToHex(*mac), "D0163999");
  EXPECT_EQ(ToHex(MakeMacKey(key).Full(data)), "D0163999B2406DED");
}

TEST(PbocMac8, EqualsTheSixteenByteMacWithEqualHalves) {
  const Bytes key = HexToBytes("1122334455667788");
  const Bytes doubled = Concat({key, key});
  const Bytes iv = HexToBytes("0102030405060708");
  for (std::size_t len : {0u, 1u, 7u, 8u, 9u, 27u, 64u}) {
    const Bytes data(len, 0x3C);
    EXPECT_EQ(*PbocMac(key, data, iv), *PbocMac(doubled, data, iv)) << len;
  }
}

// --- 16-byte key: algorithm 3 ------------------------------------------------------------------

TEST(PbocMac16, EqualsTheLiteralAlgorithm3ForPaddingEdgeLengths) {
  const Bytes key = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  const Bytes iv = HexToBytes("1FB1F7C000000000");
  for (std::size_t len : {0u, 7u, 8u, 9u, 15u, 16u, 17u, 300u}) {
    Bytes data(len);
    for (std::size_t i = 0; i < len; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 1);
    const auto full = MakeMacKey(key).Full(data, iv);
    EXPECT_EQ(ToHex(full), ToHex(ReferenceRetailMac(key, data, iv))) << len;
    EXPECT_EQ(ToHex(*PbocMac(key, data, iv)), ToHex(full).substr(0, 8)) << len;
  }
}

TEST(PbocMac16, EmptyIvMeansZeroIv) {
  const Bytes key = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  const Bytes data = HexToBytes("000010000100112233445520111221214822");
  EXPECT_EQ(*PbocMac(key, data), *PbocMac(key, data, Bytes(8, 0)));
}

TEST(PbocMac16, DependsOnTheRightHalfOfTheKey) {
  const Bytes data = HexToBytes("0000100001");
  EXPECT_NE(*PbocMac(HexToBytes("0123456789ABCDEFFEDCBA9876543210"), data),
            *PbocMac(HexToBytes("0123456789ABCDEF0000000000000000"), data));
}

TEST(PbocMac16, PaddingIsNotAmbiguous) {
  // "01" and "01 80" must not collide: padding method 2 always appends the 80.
  const Bytes key = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  EXPECT_NE(*PbocMac(key, HexToBytes("01")), *PbocMac(key, HexToBytes("0180")));
  EXPECT_NE(*PbocMac(key, HexToBytes("0102030405060708")),
            *PbocMac(key, HexToBytes("01020304050607088000000000000000")));
}

TEST(MacKeyReuse, GivesTheOneShotAnswerAcrossManyCallsWithDifferentIvs) {
  std::mt19937 rng(20240601);  // fixed seed: a failure reproduces
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> length(0, 80);
  for (const char* key_hex : {"0123456789ABCDEFFEDCBA9876543210", "0123456789ABCDEF"}) {
    const Bytes key = HexToBytes(key_hex);
    const MacKey mac_key = MakeMacKey(key);
    for (int call = 0; call < 500; ++call) {
      Bytes data(length(rng));
      for (auto& b : data) b = static_cast<std::uint8_t>(byte(rng));
      Bytes iv;
      if (call % 5 != 0) {  // every fifth call: empty IV
        iv.resize(8);
        for (auto& b : iv) b = static_cast<std::uint8_t>(byte(rng));
      }
      const auto reused = mac_key.Mac4(data, iv);
      const auto one_shot = PbocMac(key, data, iv);
      ASSERT_TRUE(one_shot.ok());
      ASSERT_EQ(Bytes(reused.begin(), reused.end()), *one_shot)
          << "key " << key.size() << " bytes, call " << call << ", data " << ToHex(data);
    }
  }
}

TEST(MacKeyReuse, MovedKeyKeepsWorking) {
  const Bytes key = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  MacKey first = MakeMacKey(key);
  const auto before = first.Mac4(HexToBytes("AABBCC"));
  MacKey second(std::move(first));
  EXPECT_EQ(second.Mac4(HexToBytes("AABBCC")), before);
  MacKey third = MakeMacKey(HexToBytes("0123456789ABCDEF"));
  third = std::move(second);
  EXPECT_EQ(third.Mac4(HexToBytes("AABBCC")), before);
}

// --- errors ------------------------------------------------------------------------------------

TEST(PbocMacErrors, KeyMustBe8Or16Bytes) {
  for (std::size_t len : {0u, 7u, 9u, 15u, 17u, 24u}) {
    EXPECT_FALSE(MacKey::Create(Bytes(len, 1)).ok()) << len;
    auto mac = PbocMac(Bytes(len, 1), HexToBytes("00"));
    ASSERT_FALSE(mac.ok()) << len;
    EXPECT_NE(mac.error().message.find("8 or 16"), std::string::npos);
  }
}

TEST(PbocMacErrors, IvMustBe8BytesOrEmpty) {
  const Bytes key(16, 1);
  for (std::size_t len : {1u, 4u, 7u, 9u, 16u}) {
    EXPECT_FALSE(PbocMac(key, HexToBytes("00"), Bytes(len, 0)).ok()) << len;
  }
}

TEST(PbocMacDeathTest, PreparedKeyStopsOnAWrongIvLength) {
  const MacKey mac_key = MakeMacKey(Bytes(16, 1));
  EXPECT_DEATH(mac_key.Mac4(HexToBytes("00"), Bytes(4, 0)), "IV must be 8 bytes");
}

}  // namespace
}  // namespace medcard::crypto
