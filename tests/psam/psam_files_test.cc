// ATR, power, APDU parsing, SELECT, READ BINARY, GET CHALLENGE.
#include <gtest/gtest.h>

#include <string>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

TEST(PsamAtr, isT1AndNamesAMedcardPsam) {
  TestPsam t = PersonalisedPsam();
  const Bytes atr = t->PowerOn();
  ASSERT_GE(atr.size(), 4u);
  EXPECT_EQ(atr, t->Atr());
  EXPECT_EQ(atr[0], 0x3B);
  const std::string text(atr.begin(), atr.end());
  EXPECT_NE(text.find("MEDCARD-PSAM"), std::string::npos);
  // TD1 names T=1, so the ATR carries TCK: T0..TCK XOR to zero.
  EXPECT_EQ(atr[3] & 0x0F, 0x01);
  std::uint8_t x = 0;
  for (std::size_t i = 1; i < atr.size(); ++i) x ^= atr[i];
  EXPECT_EQ(x, 0);
  // Historical byte count in T0 matches.
  EXPECT_EQ(atr[1] & 0x0F, 14);
}

TEST(PsamPower, unpoweredPsam_answers6F00) {
  TestPsam t = PersonalisedPsam();
  t->PowerOff();
  EXPECT_EQ(SendHex(*t, "00B0960006").sw, 0x6F00);
}

TEST(PsamFiles, readTerminalNumberBySfi) {
  TestPsam t = PersonalisedPsam();
  const Rsp r = SendHex(*t, "00B0960006");
  EXPECT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data, kTerminalNumber);
}

TEST(PsamGetData, chipSerial_answersTheManufacturedSerialInEveryLifecycle) {
  TestPsam t = PersonalisedPsam();
  const Rsp r = SendHex(*t, "80CA000108");
  EXPECT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data, kChipSerial);
  EXPECT_EQ(SendHex(*t, "80CA000208").sw, 0x6A88);
  EXPECT_EQ(SendHex(*t, "80CA0001").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "80CA000104").sw, 0x6C08);
  EXPECT_EQ(SendHex(*t, "00CA000108").sw, 0x6E00);
}

TEST(PsamFiles, readEf15AndEf17) {
  TestPsam t = PersonalisedPsam();
  const Rsp ef15 = SendHex(*t, "00B0950000");
  EXPECT_EQ(ef15.sw, 0x9000);
  EXPECT_EQ(ef15.data, Concat({View(kPsamSerial), View(HexToBytes("02")), View(HexToBytes("01")),
                               View(HexToBytes("5301"))}));
  const Rsp ef17 = SendHex(*t, "00B0970000");
  EXPECT_EQ(ef17.sw, 0x9000);
  EXPECT_EQ(ef17.data, Concat({View(HexToBytes("01")), View(EncodeBcdDate(kValidFrom)),
                               View(EncodeBcdDate(kValidTo))}));
}

TEST(PsamFiles, readWithoutLe_givesTheWholeRest) {
  TestPsam t = PersonalisedPsam();
  const Rsp r = SendHex(*t, "00B0960002");
  EXPECT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data, Bytes(kTerminalNumber.begin(), kTerminalNumber.begin() + 2));
  const Rsp rest = SendHex(*t, "00B09602");
  EXPECT_EQ(rest.sw, 0x9000);
  EXPECT_EQ(rest.data, Bytes(kTerminalNumber.begin() + 2, kTerminalNumber.end()));
}

TEST(PsamFiles, leBeyondTheEnd_answers6CWithWhatIsLeft) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "00B0960008").sw, 0x6C06);
  EXPECT_EQ(SendHex(*t, "00B0960408").sw, 0x6C02);
}

TEST(PsamFiles, readBinaryErrors) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "00B0960606").sw, 0x6B00);    // offset at the end
  EXPECT_EQ(SendHex(*t, "00B0980006").sw, 0x6A82);    // no EF with SFI 18
  EXPECT_EQ(SendHex(*t, "00B0000006").sw, 0x6986);    // no current EF
  EXPECT_EQ(SendHex(*t, "00B0C60006").sw, 0x6A86);    // RFU bits in P1
  EXPECT_EQ(SendHex(*t, "00B096000101").sw, 0x6700);  // data in a case-2 command
  EXPECT_EQ(SendHex(*t, "80B0960006").sw, 0x6E00);    // proprietary class
}

TEST(PsamFiles, selectEfByFid_thenReadCurrentEf) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "00A4000C020016").sw, 0x9000);
  const Rsp r = SendHex(*t, "00B0000000");
  EXPECT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data, kTerminalNumber);
  // Reading by SFI makes that EF current.
  EXPECT_EQ(SendHex(*t, "00B0970001").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "00B0000001").data, HexToBytes("01"));
}

TEST(PsamFiles, selectPurchaseDfByAid_answersFci) {
  TestPsam t = PersonalisedPsam();
  const Bytes aid(kPurchaseDfAid.begin(), kPurchaseDfAid.end());
  const Rsp r = Send(*t, Apdu(0x00, 0xA4, 0x04, 0x00, aid, 256));
  EXPECT_EQ(r.sw, 0x9000);
  ASSERT_GE(r.data.size(), 2 + 2 + aid.size());
  EXPECT_EQ(r.data[0], 0x6F);
  EXPECT_EQ(r.data[2], 0x84);
  EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.begin() + 4 + static_cast<long>(aid.size())), aid);
  // Too small an Le names the FCI length.
  const Rsp small = Send(*t, Apdu(0x00, 0xA4, 0x04, 0x00, aid, 4));
  EXPECT_EQ(small.sw, 0x6C00 | r.data.size());
}

TEST(PsamFiles, selectErrors) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xA4, 0x04, 0x00, HexToBytes("D15600000503"))).sw, 0x6A82);
  EXPECT_EQ(SendHex(*t, "00A40000021234").sw, 0x6A82);
  EXPECT_EQ(SendHex(*t, "00A400000100").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "00A40200023F00").sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "00A40004023F00").sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "00A4000C023F00").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "00A4000C021001").sw, 0x9000);
}

TEST(PsamChallenge, answersFourOrEightFreshBytes) {
  TestPsam t = PersonalisedPsam();
  const Rsp a = SendHex(*t, "0084000004");
  const Rsp b = SendHex(*t, "0084000008");
  EXPECT_EQ(a.sw, 0x9000);
  EXPECT_EQ(a.data.size(), 4u);
  EXPECT_EQ(b.sw, 0x9000);
  EXPECT_EQ(b.data.size(), 8u);
  EXPECT_NE(SendHex(*t, "0084000008").data, b.data);
}

TEST(PsamChallenge, errors) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "0084000005").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "00840000").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "0084010004").sw, 0x6A86);
}

TEST(PsamApdu, malformedApdus_answerPreciseStatusAndChangeNothing) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  const Inspection before = t->Inspect();
  EXPECT_EQ(SendHex(*t, "80").sw, 0x6700);                        // no header
  EXPECT_EQ(SendHex(*t, "807000").sw, 0x6700);                    // 3 bytes
  EXPECT_EQ(SendHex(*t, "80720000050102030405FF11").sw, 0x6700);  // Lc disagrees with body
  EXPECT_EQ(SendHex(*t, "807200000401").sw, 0x6700);              // body shorter than Lc
  EXPECT_EQ(SendHex(*t, "8072000000000401020304").sw, 0x6700);    // extended: not supported
  EXPECT_EQ(SendHex(*t, "80C0000000").sw, 0x6D00);                // unknown INS
  EXPECT_EQ(SendHex(*t, "A0B0960006").sw, 0x6E00);                // unknown CLA
  EXPECT_EQ(SendHex(*t, "00700000").sw, 0x6E00);                  // known INS, wrong CLA
  EXPECT_EQ(SendHex(*t, "0CB0960006").sw, 0x6E00);                // secure messaging CLA
  EXPECT_EQ(t->Inspect(), before);
}

}  // namespace
}  // namespace medcard::psam::testing
