// DELIVERY KEY and DES CRYPT: working keys for the terminal's secure messaging with cards
// (application maintenance, SSSE EF08 visit history).
#include <gtest/gtest.h>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

const Bytes kAsn = HexToBytes("3100000000004321");
const Bytes kCity = HexToBytes("0000000000005301");
const Bytes kProvince = HexToBytes("0000000000000053");

// P1: levels in bits 8..6, key type in bits 5..1.
Bytes DeliveryKeyApdu(int levels, KeyUsage usage, std::uint8_t version, const Bytes& factors) {
  const auto p1 = static_cast<std::uint8_t>((levels << 5) | static_cast<int>(usage));
  return Apdu(0x80, 0x1A, p1, version, factors);
}

Bytes Encrypt3desEcb(const Bytes& key, const Bytes& data) {
  auto cipher = crypto::BlockCipher::Des(View(key));
  EXPECT_TRUE(cipher.ok());
  return cipher->EncryptEcb(View(data));
}

TEST(PsamDeliveryKey, visitRecordOneLevel_encryptsUnderTheDiversifiedKey) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x9000);
  const Bytes data = HexToBytes("00112233445566778899AABBCCDDEEFF");
  const Rsp r = Send(*t, Apdu(0x80, 0xFA, 0x00, 0x00, data, 16));
  ASSERT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data,
            Encrypt3desEcb(*crypto::Diversify(View(kVisitRecordMasterKey), View(kAsn)), data));
}

TEST(PsamDeliveryKey, twoAndThreeLevels_deriveFromTheTopLevelDown) {
  TestPsam t = PersonalisedPsam();
  const Bytes block = HexToBytes("0102030405060708");
  ASSERT_EQ(
      Send(*t, DeliveryKeyApdu(2, KeyUsage::kMaintenance, 1, Concat({View(kAsn), View(kCity)}))).sw,
      0x9000);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xFA, 0x00, 0x00, block)).data,
            Encrypt3desEcb(DpkByHand(kMaintenanceMasterKey, {kAsn, kCity}), block));
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(3, KeyUsage::kMaintenance, 1,
                                     Concat({View(kAsn), View(kCity), View(kProvince)})))
                .sw,
            0x9000);
  const Bytes by_hand = *crypto::Diversify(
      View(*crypto::Diversify(
          View(*crypto::Diversify(View(kMaintenanceMasterKey), View(kProvince))), View(kCity))),
      View(kAsn));
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xFA, 0x00, 0x00, block)).data, Encrypt3desEcb(by_hand, block));
}

TEST(PsamDesCrypt, macWithIv_isTheCardSecureMessagingMac) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x9000);
  // UPDATE RECORD EF08 with SM: IV = card challenge(4) ‖ 00000000, MAC over header ‖ data.
  const Bytes iv = HexToBytes("1FB1F7C000000000");
  const Bytes message = HexToBytes("04DC01441F2024031510153000000000000000000001");
  const Rsp r = Send(*t, Apdu(0x80, 0xFA, 0x05, 0x00, Concat({View(iv), View(message)}), 4));
  ASSERT_EQ(r.sw, 0x9000);
  const Bytes key = *crypto::Diversify(View(kVisitRecordMasterKey), View(kAsn));
  EXPECT_EQ(r.data, Mac(key, message, iv));
}

TEST(PsamDesCrypt, chainedMac_equalsTheOneShotMac) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kMaintenance, 1, kAsn)).sw, 0x9000);
  const Bytes key = *crypto::Diversify(View(kMaintenanceMasterKey), View(kAsn));
  const Bytes iv = HexToBytes("A1B2C3D400000000");
  Bytes message;
  for (int i = 0; i < 45; ++i) message.push_back(static_cast<std::uint8_t>(i * 7));
  const auto part = [&](std::size_t from, std::size_t n) {
    return Bytes(message.begin() + static_cast<long>(from),
                 message.begin() + static_cast<long>(from + n));
  };
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xFA, 0x07, 0x00, Concat({View(iv), View(part(0, 16))}))).sw,
            0x9000);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xFA, 0x03, 0x00, part(16, 24))).sw, 0x9000);
  const Rsp last = Send(*t, Apdu(0x80, 0xFA, 0x01, 0x00, part(40, 5), 4));
  ASSERT_EQ(last.sw, 0x9000);
  EXPECT_EQ(last.data, Mac(key, message, iv));
  // Block-aligned message: the last APDU carries no data and the padding is a whole block.
  const Bytes aligned = part(0, 16);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xFA, 0x07, 0x00, Concat({View(iv), View(aligned)}))).sw, 0x9000);
  const Rsp end = SendHex(*t, "80FA010004");
  ASSERT_EQ(end.sw, 0x9000);
  EXPECT_EQ(end.data, Mac(key, aligned, iv));
}

TEST(PsamDesCrypt, continuationWithoutFirstBlock_answers6985) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kMaintenance, 1, kAsn)).sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "80FA0300080102030405060708").sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "80FA01000101").sw, 0x6985);
  // Another command between the blocks breaks the chain.
  EXPECT_EQ(SendHex(*t, "80FA0700080000000000000000").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "00B0960006").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "80FA01000101").sw, 0x6985);
  // The chain ends with its last block.
  EXPECT_EQ(SendHex(*t, "80FA0700080000000000000000").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "80FA01000101").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "80FA01000101").sw, 0x6985);
}

TEST(PsamDesCrypt, withoutDeliveredKey_answers6985) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x6985);
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x9000);
  t->PowerOff();
  t->PowerOn();
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x6985);
}

TEST(PsamDesCrypt, malformed_answersPreciseStatus) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "80FA00000701020304050607").sw, 0x6700);  // not whole blocks
  EXPECT_EQ(SendHex(*t, "80FA000008").sw, 0x6700);                // no data
  EXPECT_EQ(SendHex(*t, "80FA05000401020304").sw, 0x6700);        // shorter than the IV
  EXPECT_EQ(SendHex(*t, "80FA07000C010203040506070809101112").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "80FA0200080102030405060708").sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "80FA0001080102030405060708").sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "80FA000008010203040506070804").sw, 0x6C08);  // Le too small
  // The delivered key survives the errors.
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x9000);
}

TEST(PsamDeliveryKey, purchaseAndSettlementKeys_areNeverDelivered) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kPurchase, 1, kAsn)).sw, 0x6985);
  EXPECT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kSettlement, 1, kAsn)).sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x6985);
}

TEST(PsamDeliveryKey, errors_answerPreciseStatusAndLeaveNoKey) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x9000);
  EXPECT_EQ(Send(*t, DeliveryKeyApdu(1, KeyUsage::kVisitRecord, 9, kAsn)).sw, 0x6A88);
  // The failed DELIVERY KEY dropped the earlier key.
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x6985);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x1A, 0x3F, 0x01, kAsn)).sw, 0x6A86);  // key type 1F
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x1A, 0x04, 0x01, kAsn)).sw, 0x6A86);  // 0 levels
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x1A, 0x84, 0x01, kAsn)).sw, 0x6A86);  // 4 levels
  EXPECT_EQ(Send(*t, DeliveryKeyApdu(2, KeyUsage::kVisitRecord, 1, kAsn)).sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "801A240100").sw, 0x6700);
}

}  // namespace
}  // namespace medcard::psam::testing
