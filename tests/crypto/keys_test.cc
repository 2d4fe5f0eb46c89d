#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "crypto/crypto.h"

namespace medcard::crypto {
namespace {

const Bytes kMasterKey = HexToBytes("0123456789ABCDEFFEDCBA9876543210");

Bytes Encrypt3Des(const Bytes& key, const Bytes& block) {
  return BlockCipher::Des(key)->EncryptEcb(block);
}

bool MentionsLength(const Error& error, std::string_view what) {
  return error.message.find(what) != std::string::npos;
}

// --- diversification ---------------------------------------------------------------------------

TEST(Diversify, LeftHalfEncryptsTheFactorAndRightHalfItsComplement) {
  const Bytes factor = HexToBytes("4100000089999985");
  auto derived = Diversify(kMasterKey, factor);
  ASSERT_TRUE(derived.ok());
  ASSERT_EQ(derived->size(), 16u);
  EXPECT_EQ(Bytes(derived->begin(), derived->begin() + 8), Encrypt3Des(kMasterKey, factor));
  EXPECT_EQ(Bytes(derived->begin() + 8, derived->end()),
            Encrypt3Des(kMasterKey, HexToBytes("BEFFFFFF7666667A")));
}

TEST(Diversify, DifferentCardsGetDifferentKeys) {
  EXPECT_NE(*Diversify(kMasterKey, HexToBytes("0000000000000001")),
            *Diversify(kMasterKey, HexToBytes("0000000000000002")));
}

TEST(Diversify, RejectsWrongMasterKeyAndFactorLengths) {
  for (std::size_t len : {0u, 8u, 15u, 17u, 24u}) {
    auto r = Diversify(Bytes(len, 1), Bytes(8, 2));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_TRUE(MentionsLength(r.error(), "master key"));
  }
  for (std::size_t len : {0u, 7u, 9u, 10u, 16u}) {
    auto r = Diversify(kMasterKey, Bytes(len, 2));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_TRUE(MentionsLength(r.error(), "factor"));
  }
}

TEST(DiversifyChain, AppliesTheFactorsInTheGivenOrder) {
  const std::vector<Bytes> factors = {HexToBytes("1111111111111111"),
                                      HexToBytes("2222222222222222"),
                                      HexToBytes("4100000089999985")};
  const Bytes level1 = *Diversify(kMasterKey, factors[0]);
  const Bytes level2 = *Diversify(level1, factors[1]);
  const Bytes level3 = *Diversify(level2, factors[2]);
  EXPECT_EQ(*DiversifyChain(kMasterKey, std::span(factors).first(1)), level1);
  EXPECT_EQ(*DiversifyChain(kMasterKey, std::span(factors).first(2)), level2);
  EXPECT_EQ(*DiversifyChain(kMasterKey, factors), level3);
  const std::vector<Bytes> reversed = {factors[1], factors[0]};
  EXPECT_NE(*DiversifyChain(kMasterKey, reversed), level2);
}

TEST(DiversifyChain, TakesOneToThreeFactors) {
  EXPECT_FALSE(DiversifyChain(kMasterKey, {}).ok());
  const std::vector<Bytes> four(4, Bytes(8, 1));
  EXPECT_FALSE(DiversifyChain(kMasterKey, four).ok());
}

TEST(DiversifyChain, RejectsABadFactorAtAnyLevel) {
  const std::vector<Bytes> factors = {Bytes(8, 1), Bytes(7, 2)};
  auto r = DiversifyChain(kMasterKey, factors);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(MentionsLength(r.error(), "factor"));
  EXPECT_FALSE(DiversifyChain(Bytes(8, 1), std::span(factors).first(1)).ok());
}

TEST(AsnFactor, IsTheRightmostEightBytesOfTheAsn) {
  EXPECT_EQ(ToHex(AsnFactor(HexToBytes("03104100000089999985"))), "4100000089999985");
}

TEST(AsnFactorDeathTest, StopsOnAnAsnShorterThanEightBytes) {
  EXPECT_DEATH(AsnFactor(HexToBytes("01020304050607")), "ASN");
}

// --- session and TAC keys ----------------------------------------------------------------------

TEST(LoadSessionKey, EncryptsRandomSerialAnd8000) {
  const Bytes dlk = HexToBytes("11223344556677888877665544332211");
  auto seslk = LoadSessionKey(dlk, HexToBytes("CAFEBABE"), HexToBytes("0102"));
  ASSERT_TRUE(seslk.ok());
  EXPECT_EQ(*seslk, Encrypt3Des(dlk, HexToBytes("CAFEBABE01028000")));
}

TEST(LoadSessionKey, RejectsWrongLengths) {
  const Bytes key(16, 1), random(4, 2), serial(2, 3);
  EXPECT_FALSE(LoadSessionKey(Bytes(8, 1), random, serial).ok());
  EXPECT_FALSE(LoadSessionKey(key, Bytes(8, 2), serial).ok());
  EXPECT_FALSE(LoadSessionKey(key, Bytes(3, 2), serial).ok());
  EXPECT_FALSE(LoadSessionKey(key, random, Bytes(4, 3)).ok());
  EXPECT_TRUE(LoadSessionKey(key, random, serial).ok());
}

TEST(PurchaseSessionKey, UsesOnlyTheLastTwoBytesOfTheTerminalSerial) {
  const Bytes dpk = HexToBytes("11223344556677888877665544332211");
  auto sespk =
      PurchaseSessionKey(dpk, HexToBytes("CAFEBABE"), HexToBytes("0102"), HexToBytes("AABB0304"));
  ASSERT_TRUE(sespk.ok());
  EXPECT_EQ(*sespk, Encrypt3Des(dpk, HexToBytes("CAFEBABE01020304")));
  EXPECT_EQ(*sespk, *PurchaseSessionKey(dpk, HexToBytes("CAFEBABE"), HexToBytes("0102"),
                                        HexToBytes("00000304")));
}

TEST(PurchaseSessionKey, RejectsWrongLengths) {
  const Bytes key(16, 1), random(4, 2), serial(2, 3), term(4, 4);
  EXPECT_FALSE(PurchaseSessionKey(Bytes(24, 1), random, serial, term).ok());
  EXPECT_FALSE(PurchaseSessionKey(key, Bytes(5, 2), serial, term).ok());
  EXPECT_FALSE(PurchaseSessionKey(key, random, Bytes(1, 3), term).ok());
  EXPECT_FALSE(PurchaseSessionKey(key, random, serial, Bytes(2, 4)).ok());
  EXPECT_TRUE(PurchaseSessionKey(key, random, serial, term).ok());
}

TEST(TacKey, XorsTheTwoHalves) {
  auto key = TacKey(HexToBytes("0F0F0F0F0F0F0F0FFF00FF00FF00FF00"));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(ToHex(*key), "F00FF00FF00FF00F");
  EXPECT_FALSE(TacKey(Bytes(8, 1)).ok());
  EXPECT_FALSE(TacKey(Bytes(24, 1)).ok());
}

// --- key check values --------------------------------------------------------------------------

TEST(Kcv, OfTheStandardDoubleLengthTestKey) {
  auto kcv = Kcv(HexToBytes("0123456789ABCDEFFEDCBA9876543210"));
  ASSERT_TRUE(kcv.ok());
  EXPECT_EQ(ToHex(*kcv), "08D7B4");
}

TEST(Kcv, OfSingleAndTripleLengthKeys) {
  const Bytes single = HexToBytes("0123456789ABCDEF");
  EXPECT_EQ(ToHex(*Kcv(single)), ToHex(Encrypt3Des(single, Bytes(8, 0))).substr(0, 6));
  EXPECT_EQ(ToHex(*Kcv(single)), "D5D44F");
  const Bytes triple = HexToBytes("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF");
  EXPECT_EQ(*Kcv(triple), *Kcv(HexToBytes("0123456789ABCDEFFEDCBA9876543210")));
}

TEST(Kcv, OfAnSm4KeyUsesASixteenByteZeroBlock) {
  const Bytes key = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  auto kcv = Kcv(key, CipherKind::kSm4);
  ASSERT_TRUE(kcv.ok());
  const Bytes zero_block_encrypted = BlockCipher::Sm4(key)->EncryptEcb(Bytes(16, 0));
  EXPECT_EQ(*kcv, Bytes(zero_block_encrypted.begin(), zero_block_encrypted.begin() + 3));
  EXPECT_NE(*kcv, *Kcv(key));  // the same bytes as a 3DES key check differently
}

TEST(Kcv, RejectsBadKeyLengths) {
  EXPECT_FALSE(Kcv(Bytes(12, 1)).ok());
  EXPECT_FALSE(Kcv(Bytes(8, 1), CipherKind::kSm4).ok());
}

// --- key transport -----------------------------------------------------------------------------

const Bytes kTransportKey = HexToBytes("00112233445566778899AABBCCDDEEFF");

TEST(KeyTransport, RoundTripsEveryKeyLength) {
  for (std::size_t len : {8u, 16u, 24u}) {
    Bytes key(len);
    for (std::size_t i = 0; i < len; ++i) key[i] = static_cast<std::uint8_t>(0xA0 + i);
    auto cryptogram = EncryptKeyForTransport(kTransportKey, key);
    ASSERT_TRUE(cryptogram.ok()) << len;
    EXPECT_EQ(cryptogram->size(), len);
    EXPECT_NE(*cryptogram, key);
    auto back = DecryptKeyFromTransport(kTransportKey, *cryptogram);
    ASSERT_TRUE(back.ok()) << len << ": " << back.error().message;
    EXPECT_EQ(*back, key);
  }
}

// The PKCS#11 C_WrapKey(CKM_DES3_ECB) format, so an HSM can produce it.
TEST(KeyTransport, CryptogramIs3DesEcbOfTheKey) {
  const Bytes key = HexToBytes("0102030405060708090A0B0C0D0E0F10");
  EXPECT_EQ(*EncryptKeyForTransport(kTransportKey, key), Encrypt3Des(kTransportKey, key));
}

TEST(KeyTransport, EncryptRejectsBadLengths) {
  EXPECT_FALSE(EncryptKeyForTransport(Bytes(8, 1), Bytes(16, 2)).ok());
  EXPECT_FALSE(EncryptKeyForTransport(Bytes(24, 1), Bytes(16, 2)).ok());
  for (std::size_t len : {0u, 7u, 12u, 32u}) {
    EXPECT_FALSE(EncryptKeyForTransport(kTransportKey, Bytes(len, 2)).ok()) << len;
  }
}

TEST(KeyTransport, DecryptRejectsACryptogramOfAnotherLength) {
  for (std::size_t len : {0u, 7u, 15u, 17u, 32u}) {
    auto r = DecryptKeyFromTransport(kTransportKey, Bytes(len, 0x55));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_TRUE(MentionsLength(r.error(), "8, 16 or 24"));
  }
}

TEST(KeyTransport, DecryptUnderTheWrongTransportKeyGivesAnotherKey) {
  auto cryptogram = EncryptKeyForTransport(kTransportKey, Bytes(16, 0x42));
  const Bytes wrong = HexToBytes("FFEEDDCCBBAA99887766554433221100");
  EXPECT_NE(*DecryptKeyFromTransport(wrong, *cryptogram), Bytes(16, 0x42));
  EXPECT_FALSE(DecryptKeyFromTransport(Bytes(8, 1), *cryptogram).ok());
}

// --- randomness --------------------------------------------------------------------------------

TEST(RandomBytes, GivesTheLengthAskedAndDifferentValuesEachCall) {
  EXPECT_TRUE(RandomBytes(0).empty());
  EXPECT_EQ(RandomBytes(33).size(), 33u);
  std::set<Bytes> seen;
  for (int i = 0; i < 100; ++i) seen.insert(RandomBytes(8));
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace medcard::crypto
