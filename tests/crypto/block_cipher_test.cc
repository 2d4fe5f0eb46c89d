#include <gtest/gtest.h>

#include <string>

#include "common/bytes.h"
#include "crypto/crypto.h"

namespace medcard::crypto {
namespace {

BlockCipher Des(std::string_view key_hex) {
  auto cipher = BlockCipher::Des(HexToBytes(key_hex));
  EXPECT_TRUE(cipher.ok());
  return std::move(cipher).value();
}

BlockCipher Sm4(std::string_view key_hex) {
  auto cipher = BlockCipher::Sm4(HexToBytes(key_hex));
  EXPECT_TRUE(cipher.ok());
  return std::move(cipher).value();
}

std::string EncryptEcbHex(const BlockCipher& cipher, std::string_view plain_hex) {
  return ToHex(cipher.EncryptEcb(HexToBytes(plain_hex)));
}

// --- published known answers -------------------------------------------------------------------

TEST(BlockCipherDes, EncryptsTheClassicNowIsTExample) {
  // FIPS 81 / "Now is t" with key 0123456789ABCDEF.
  auto des = Des("0123456789ABCDEF");
  EXPECT_EQ(des.kind(), CipherKind::kDes);
  EXPECT_EQ(des.block_size(), 8u);
  EXPECT_EQ(EncryptEcbHex(des, "4E6F772069732074"), "3FA40E8A984D4815");
  EXPECT_EQ(ToHex(des.DecryptEcb(HexToBytes("3FA40E8A984D4815"))), "4E6F772069732074");
}

TEST(BlockCipherDes, EncryptsTheTextbookWorkedExample) {
  auto des = Des("133457799BBCDFF1");
  EXPECT_EQ(EncryptEcbHex(des, "0123456789ABCDEF"), "85E813540F0AB405");
}

TEST(BlockCipherTdes3, EncryptsTheSp80067Example) {
  // NIST SP 800-67 example: "The qufck brown fox jump" under three keys.
  auto tdes = Des("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123");
  EXPECT_EQ(tdes.kind(), CipherKind::kTdes3);
  const std::string_view text = "The qufck brown fox jump";
  const Bytes plain(text.begin(), text.end());
  const Bytes cipher_text = tdes.EncryptEcb(plain);
  EXPECT_EQ(ToHex(cipher_text), "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900");
  EXPECT_EQ(tdes.DecryptEcb(cipher_text), plain);
}

TEST(BlockCipherTdes2, IsThreeKeyTdesWithTheFirstKeyRepeated) {
  auto two_key = Des("0123456789ABCDEFFEDCBA9876543210");
  auto three_key = Des("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF");
  EXPECT_EQ(two_key.kind(), CipherKind::kTdes2);
  const Bytes plain = HexToBytes("00112233445566778899AABBCCDDEEFF");
  EXPECT_EQ(two_key.EncryptEcb(plain), three_key.EncryptEcb(plain));
  EXPECT_EQ(ToHex(two_key.EncryptEcb(Bytes(8, 0))), "08D7B4FB629D0885");
}

TEST(BlockCipherTdes2, WithEqualHalvesIsSingleDes) {
  auto tdes = Des("0123456789ABCDEF0123456789ABCDEF");
  EXPECT_EQ(EncryptEcbHex(tdes, "4E6F772069732074"), "3FA40E8A984D4815");
}

TEST(BlockCipherSm4, EncryptsGbt32907ExampleOne) {
  auto sm4 = Sm4("0123456789ABCDEFFEDCBA9876543210");
  EXPECT_EQ(sm4.kind(), CipherKind::kSm4);
  EXPECT_EQ(sm4.block_size(), 16u);
  EXPECT_EQ(EncryptEcbHex(sm4, "0123456789ABCDEFFEDCBA9876543210"),
            "681EDF34D206965E86B3E94F536E4246");
  EXPECT_EQ(ToHex(sm4.DecryptEcb(HexToBytes("681EDF34D206965E86B3E94F536E4246"))),
            "0123456789ABCDEFFEDCBA9876543210");
}

// --- modes -------------------------------------------------------------------------------------

TEST(BlockCipherModes, EcbRepeatsEqualBlocksAndCbcDoesNot) {
  auto tdes = Des("0123456789ABCDEFFEDCBA9876543210");
  const Bytes plain = HexToBytes("11111111111111111111111111111111");
  const Bytes ecb = tdes.EncryptEcb(plain);
  const Bytes cbc = tdes.EncryptCbc(plain, Bytes(8, 0));
  EXPECT_EQ(Bytes(ecb.begin(), ecb.begin() + 8), Bytes(ecb.begin() + 8, ecb.end()));
  EXPECT_NE(Bytes(cbc.begin(), cbc.begin() + 8), Bytes(cbc.begin() + 8, cbc.end()));
  // With a zero IV the first CBC block is the ECB block.
  EXPECT_EQ(Bytes(cbc.begin(), cbc.begin() + 8), Bytes(ecb.begin(), ecb.begin() + 8));
}

TEST(BlockCipherModes, CbcChainsEachBlockIntoTheNext) {
  auto tdes = Des("0123456789ABCDEFFEDCBA9876543210");
  const Bytes iv = HexToBytes("A1A2A3A4A5A6A7A8");
  const Bytes plain = HexToBytes("000102030405060708090A0B0C0D0E0F1011121314151617");
  Bytes chain = iv;
  Bytes expected;
  for (std::size_t off = 0; off < plain.size(); off += 8) {
    Bytes block(plain.begin() + static_cast<std::ptrdiff_t>(off),
                plain.begin() + static_cast<std::ptrdiff_t>(off + 8));
    for (std::size_t i = 0; i < 8; ++i) block[i] ^= chain[i];
    chain = tdes.EncryptEcb(block);
    Append(expected, chain);
  }
  EXPECT_EQ(tdes.EncryptCbc(plain, iv), expected);
  EXPECT_EQ(tdes.DecryptCbc(expected, iv), plain);
}

TEST(BlockCipherModes, EachCbcCallStartsFromItsOwnIv) {
  auto tdes = Des("0123456789ABCDEFFEDCBA9876543210");
  const Bytes plain = HexToBytes("00112233445566778899AABBCCDDEEFF");
  const Bytes iv1 = HexToBytes("0000000000000001");
  const Bytes iv2 = HexToBytes("0000000000000002");
  const Bytes first = tdes.EncryptCbc(plain, iv1);
  const Bytes other = tdes.EncryptCbc(plain, iv2);
  EXPECT_NE(first, other);
  EXPECT_EQ(tdes.EncryptCbc(plain, iv1), first);  // no chaining left over from earlier calls
  EXPECT_EQ(tdes.DecryptCbc(other, iv2), plain);
  EXPECT_EQ(tdes.DecryptCbc(first, iv1), plain);
}

TEST(BlockCipherModes, Sm4CbcRoundTripsAndDiffersFromEcb) {
  auto sm4 = Sm4("0123456789ABCDEFFEDCBA9876543210");
  const Bytes plain(48, 0x5A);
  const Bytes iv = HexToBytes("000102030405060708090A0B0C0D0E0F");
  const Bytes cbc = sm4.EncryptCbc(plain, iv);
  EXPECT_NE(cbc, sm4.EncryptEcb(plain));
  EXPECT_EQ(sm4.DecryptCbc(cbc, iv), plain);
  EXPECT_EQ(sm4.DecryptEcb(sm4.EncryptEcb(plain)), plain);
}

TEST(BlockCipherModes, EmptyInputGivesEmptyOutput) {
  auto tdes = Des("0123456789ABCDEF");
  EXPECT_TRUE(tdes.EncryptEcb({}).empty());
  EXPECT_TRUE(tdes.EncryptCbc({}, Bytes(8, 0)).empty());
}

TEST(BlockCipherBlock, EncryptsInPlaceAndMatchesEcb) {
  auto sm4 = Sm4("0123456789ABCDEFFEDCBA9876543210");
  Bytes block = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  sm4.EncryptBlock(block.data(), block.data());
  EXPECT_EQ(ToHex(block), "681EDF34D206965E86B3E94F536E4246");
  sm4.DecryptBlock(block.data(), block.data());
  EXPECT_EQ(ToHex(block), "0123456789ABCDEFFEDCBA9876543210");

  auto des = Des("0123456789ABCDEF");
  Bytes out(8);
  const Bytes in = HexToBytes("4E6F772069732074");
  des.EncryptBlock(in.data(), out.data());
  EXPECT_EQ(ToHex(out), "3FA40E8A984D4815");
}

TEST(BlockCipherLifetime, MovedCipherKeepsWorking) {
  auto source = Des("0123456789ABCDEF");
  BlockCipher moved(std::move(source));
  EXPECT_EQ(EncryptEcbHex(moved, "4E6F772069732074"), "3FA40E8A984D4815");
  auto other = Sm4("0123456789ABCDEFFEDCBA9876543210");
  other = std::move(moved);
  EXPECT_EQ(other.kind(), CipherKind::kDes);
  EXPECT_EQ(EncryptEcbHex(other, "4E6F772069732074"), "3FA40E8A984D4815");
}

// --- errors ------------------------------------------------------------------------------------

TEST(BlockCipherErrors, DesRejectsKeyLengthsOtherThan8_16_24) {
  for (std::size_t len : {0u, 7u, 9u, 15u, 17u, 23u, 25u, 32u}) {
    auto cipher = BlockCipher::Des(Bytes(len, 0x11));
    ASSERT_FALSE(cipher.ok()) << len;
    EXPECT_NE(cipher.error().message.find("8, 16 or 24"), std::string::npos);
  }
}

TEST(BlockCipherErrors, Sm4RejectsKeyLengthsOtherThan16) {
  for (std::size_t len : {0u, 8u, 15u, 17u, 24u, 32u}) {
    EXPECT_FALSE(BlockCipher::Sm4(Bytes(len, 0x11)).ok()) << len;
  }
}

TEST(BlockCipherDeathTest, PartialBlockBreaksThePreconditionAndStops) {
  auto des = Des("0123456789ABCDEF");
  EXPECT_DEATH(des.EncryptEcb(Bytes(7, 0)), "whole number of blocks");
  EXPECT_DEATH(des.DecryptCbc(Bytes(9, 0), Bytes(8, 0)), "whole number of blocks");
  auto sm4 = Sm4("0123456789ABCDEFFEDCBA9876543210");
  EXPECT_DEATH(sm4.EncryptEcb(Bytes(8, 0)), "whole number of blocks");
}

TEST(BlockCipherDeathTest, WrongIvLengthBreaksThePreconditionAndStops) {
  auto des = Des("0123456789ABCDEF");
  EXPECT_DEATH(des.EncryptCbc(Bytes(8, 0), Bytes(7, 0)), "IV is not one block");
  auto sm4 = Sm4("0123456789ABCDEFFEDCBA9876543210");
  EXPECT_DEATH(sm4.EncryptCbc(Bytes(16, 0), Bytes(8, 0)), "IV is not one block");
}

}  // namespace
}  // namespace medcard::crypto
