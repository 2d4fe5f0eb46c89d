// Strict input: every malformed APDU answers a precise status word and changes nothing (not a
// byte of the image, not a single sector write).
#include <gtest/gtest.h>

#include <cctype>

#include "card_test_util.h"

namespace medcard::card_test {
namespace {

enum class Where { kMf, kAdf, kAdfWithPin, kSsse };

struct Case {
  const char* what;
  Where where;
  const char* apdu;
  const char* sw;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.what; }

class CardMalformedTest : public ::testing::TestWithParam<Case> {};

TEST_P(CardMalformedTest, AnswersTheRightStatusWordAndChangesNothing) {
  const Case& c = GetParam();
  TestCard card = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
  switch (c.where) {
    case Where::kMf:
      break;
    case Where::kAdf:
      SelectAdf(*card.card, false);
      break;
    case Where::kAdfWithPin:
      SelectAdf(*card.card, true);
      break;
    case Where::kSsse:
      SelectSsse(*card.card);
      break;
  }
  const Bytes before = card.medium->SurvivingContent();
  const int writes = card.medium->sector_writes();
  auto apdu = FromHex(c.apdu);
  ASSERT_TRUE(apdu.has_value()) << c.apdu;
  const Bytes answer = card.card->Transmit(View(*apdu));
  ASSERT_EQ(answer.size(), 2u) << "an error carries no data";
  EXPECT_EQ(ToHex(View(answer)), c.sw);
  EXPECT_EQ(card.medium->sector_writes(), writes);
  EXPECT_TRUE(card.medium->SurvivingContent() == before);
  EXPECT_FALSE(card.card->dead());
}

const Case kCases[] = {
    // Transport-level
    {"header only 3 bytes", Where::kMf, "00A400", "6700"},
    {"one byte", Where::kMf, "00", "6700"},
    {"empty", Where::kMf, "", "6700"},
    {"Lc larger than the body", Where::kMf, "00A40000033F00", "6700"},
    {"Lc smaller than the body", Where::kMf, "00A40000013F0000", "6700"},
    {"extended length", Where::kAdf, "00B0950000001E", "6700"},
    {"extended Lc", Where::kMf,
     "00A40000000002"
     "3F00",
     "6700"},
    // CLA
    {"unknown CLA 10", Where::kMf, "10A40000023F00", "6E00"},
    {"unknown CLA A0", Where::kMf, "A0A40000023F00", "6E00"},
    {"logical channel CLA 01", Where::kMf, "01A40000023F00", "6E00"},
    {"CLA FF", Where::kMf, "FFA40000023F00", "6E00"},
    {"SELECT with CLA 80", Where::kMf, "80A40000023F00", "6E00"},
    {"SELECT with CLA 04", Where::kMf, "04A40000023F00", "6E00"},
    {"GET CHALLENGE with CLA 80", Where::kMf, "8084000004", "6E00"},
    {"INITIALIZE with CLA 00", Where::kAdfWithPin, "005000020B0100000064001122334455", "6E00"},
    {"DEBIT with CLA 84", Where::kAdfWithPin, "845401000F00000001202403151020300102030408", "6E00"},
    {"READ BINARY with CLA 84", Where::kAdf, "84B0950000", "6E00"},
    {"VERIFY with CLA 80", Where::kAdf, "8020000003123456", "6E00"},
    {"APPLICATION BLOCK with CLA 80", Where::kAdf, "801E00000401020304", "6E00"},
    {"CREATE FILE with CLA 00", Where::kMf,
     "00E0000004620283"
     "01",
     "6E00"},
    // INS
    {"GET DATA with CLA 00 (medcard GET DATA is CLA 80)", Where::kMf, "00CA9F7F00", "6E00"},
    {"unknown proprietary INS", Where::kAdf, "80FF000000", "6D00"},
    {"GET RESPONSE is not supported (T=1)", Where::kMf, "00C0000010", "6D00"},
    {"ERASE BINARY is not supported", Where::kAdf, "000E000000", "6D00"},
    // SELECT
    {"SELECT P1 01", Where::kMf, "00A40100023F00", "6A86"},
    {"SELECT P2 04", Where::kMf, "00A40004023F00", "6A86"},
    {"SELECT FID of 3 bytes", Where::kMf, "00A40000033F0000", "6700"},
    {"SELECT by name 17 bytes", Where::kMf, "00A4040011D156000005030000000000000000000000", "6700"},
    {"SELECT by name without data", Where::kMf, "00A40400", "6700"},
    // READ / UPDATE BINARY
    {"READ BINARY RFU P1", Where::kAdf, "00B0A50000", "6A86"},
    {"READ BINARY SFI 31", Where::kAdf, "00B09F0000", "6A86"},
    {"READ BINARY without Le", Where::kAdf, "00B09500", "6700"},
    {"READ BINARY with data", Where::kAdf, "00B095000100", "6700"},
    {"READ BINARY SM without MAC", Where::kAdf, "04B0950002010200", "6987"},
    {"READ BINARY past the end", Where::kAdf, "00B0951F00", "6B00"},
    {"READ BINARY no current EF", Where::kAdf, "00B0000000", "6986"},
    {"READ BINARY record EF", Where::kAdf, "00B0980000", "6981"},
    {"UPDATE BINARY without data", Where::kAdf, "00D69500", "6700"},
    {"UPDATE BINARY plain on an SM file", Where::kAdf, "00D6950001FF", "6987"},
    {"UPDATE BINARY SM without challenge", Where::kAdf, "04D6950005FF01020304", "6984"},
    {"UPDATE BINARY SM shorter than a MAC", Where::kAdf, "04D6950003010203", "6987"},
    {"UPDATE BINARY unknown SFI", Where::kAdf, "00D6870001FF", "6A82"},
    // Records
    {"READ RECORD P1 00", Where::kAdf, "00B200C400", "6A86"},
    {"READ RECORD mode 101", Where::kAdf, "00B201C500", "6A86"},
    {"READ RECORD mode 000 on a cyclic EF", Where::kAdf, "00B201C000", "6A86"},
    {"READ RECORD without Le", Where::kAdf, "00B201C4", "6700"},
    {"READ RECORD empty log", Where::kAdf, "00B201C417", "6A83"},
    {"READ RECORD transparent EF", Where::kAdf, "00B201AC00", "6981"},
    {"READ RECORD unknown tag", Where::kSsse, "00B2992C00", "6A83"},
    {"UPDATE RECORD EF.DIR is never writable", Where::kMf,
     "00DC010C1D0000000000000000000000000000000000000000000000000000000000", "6982"},
    {"UPDATE RECORD of an empty cyclic EF", Where::kAdf,
     "00DC01C4170000000000000000000000000000000000000000000000", "6A83"},
    {"UPDATE RECORD P1 00", Where::kSsse, "00DC003C03220102", "6A86"},
    {"UPDATE RECORD without data", Where::kSsse, "00DC223C", "6700"},
    {"APPEND RECORD P1 01", Where::kSsse, "00E2014003010203", "6A86"},
    {"APPEND RECORD mode 100", Where::kSsse, "00E2004403010203", "6A86"},
    {"APPEND RECORD without data", Where::kSsse, "00E20040", "6700"},
    {"APPEND RECORD on a TLV EF", Where::kSsse, "00E2003803220102", "6981"},
    // Security
    {"GET CHALLENGE Le 5", Where::kMf, "0084000005", "6700"},
    {"GET CHALLENGE P2 01", Where::kMf, "0084000104", "6A86"},
    {"GET CHALLENGE with data", Where::kMf, "008400000101", "6700"},
    {"EXTERNAL AUTHENTICATE without key", Where::kMf, "00820001080102030405060708", "6A88"},
    {"EXTERNAL AUTHENTICATE Lc 7", Where::kMf, "008200010701020304050607", "6700"},
    {"EXTERNAL AUTHENTICATE P1 01", Where::kMf, "00820101080102030405060708", "6A86"},
    {"INTERNAL AUTHENTICATE without key", Where::kMf, "00880001080102030405060708", "6A88"},
    {"INTERNAL AUTHENTICATE P1 01", Where::kMf, "00880101080102030405060708", "6A86"},
    {"VERIFY Lc 7", Where::kAdf, "00200000071234561234561F", "6700"},
    {"VERIFY Lc 1", Where::kAdf, "002000000112", "6700"},
    {"VERIFY P2 01", Where::kAdf, "0020000103123456", "6A86"},
    {"VERIFY not BCD", Where::kAdf, "00200000031234A6", "6A80"},
    {"VERIFY digit after padding", Where::kAdf, "0020000003F12345", "6A80"},
    {"VERIFY where there is no PIN", Where::kMf, "0020000003123456", "6A88"},
    {"CHANGE PIN Lc 4", Where::kAdf, "805E0100041234FF56", "6700"},
    {"CHANGE PIN P2 01", Where::kAdf, "805E010107123456FF654321", "6A86"},
    {"CHANGE PIN P1 02", Where::kAdf, "805E020007123456FF654321", "6A86"},
    {"CHANGE PIN without separator", Where::kAdf, "805E010006123456654321", "6A80"},
    {"RELOAD PIN Lc 5", Where::kAdf, "805E00000501020304", "6700"},
    {"PIN UNBLOCK Lc 4", Where::kAdf, "842400000401020304", "6700"},
    {"PIN UNBLOCK P1 01", Where::kAdf, "842401000C000000000000000000000000", "6A86"},
    {"PIN UNBLOCK without challenge", Where::kAdf, "842400000C000000000000000000000000", "6984"},
    {"APPLICATION BLOCK P2 02", Where::kAdf, "841E00020401020304", "6A86"},
    {"APPLICATION BLOCK Lc 3", Where::kAdf, "841E000003010203", "6700"},
    {"APPLICATION BLOCK without challenge", Where::kAdf, "841E00000401020304", "6984"},
    {"APPLICATION UNBLOCK P1 01", Where::kAdf, "841801000401020304", "6A86"},
    {"APPLICATION UNBLOCK without challenge", Where::kAdf, "841800000401020304", "6984"},
    {"CARD BLOCK Lc 5", Where::kAdf, "84160000050102030405", "6700"},
    {"CARD BLOCK without challenge", Where::kAdf, "841600000401020304", "6984"},
    // Purse
    {"INITIALIZE P1 03", Where::kAdfWithPin,
     "805003010B0100000064001122334455"
     "10",
     "6A86"},
    {"INITIALIZE FOR LOAD P2 00", Where::kAdfWithPin,
     "805000000B0100000064001122334455"
     "10",
     "6A86"},
    {"INITIALIZE FOR LOAD Lc 0A", Where::kAdfWithPin,
     "805000010A01000000640011223344"
     "10",
     "6700"},
    {"INITIALIZE FOR LOAD short Le", Where::kAdfWithPin,
     "805000010B0100000064001122334455"
     "08",
     "6C10"},
    {"INITIALIZE FOR PURCHASE short Le", Where::kAdfWithPin,
     "805001010B0100000064001122334455"
     "01",
     "6C0F"},
    {"INITIALIZE FOR LOAD amount 0", Where::kAdfWithPin,
     "805000010B0100000000001122334455"
     "10",
     "6A80"},
    {"INITIALIZE FOR LOAD key index 02", Where::kAdfWithPin,
     "805000010B0200000064001122334455"
     "10",
     "9403"},
    {"INITIALIZE FOR LOAD without PIN", Where::kAdf,
     "805000010B0100000064001122334455"
     "10",
     "6982"},
    {"INITIALIZE FOR PURCHASE no funds", Where::kAdfWithPin,
     "805001010B0100000064001122334455"
     "0F",
     "9401"},
    {"INITIALIZE in the MF", Where::kMf,
     "805000010B0100000064001122334455"
     "10",
     "6985"},
    {"INITIALIZE FOR CASH on the EP", Where::kAdfWithPin,
     "805002020B0100000064001122334455"
     "0F",
     "6A86"},
    {"INITIALIZE FOR UNLOAD on the EP", Where::kAdfWithPin,
     "805005020B0100000064001122334455"
     "10",
     "6A86"},
    {"CREDIT FOR LOAD without INITIALIZE", Where::kAdfWithPin,
     "805200000B2024031510203001020304"
     "04",
     "6985"},
    {"CREDIT FOR LOAD P1 01", Where::kAdfWithPin,
     "805201000B2024031510203001020304"
     "04",
     "6A86"},
    {"CREDIT FOR LOAD Lc 0C", Where::kAdfWithPin,
     "805200000C202403151020300102030405"
     "04",
     "6700"},
    {"CREDIT FOR LOAD short Le", Where::kAdfWithPin,
     "805200000B2024031510203001020304"
     "02",
     "6C04"},
    {"DEBIT P1 02", Where::kAdfWithPin, "805402000F00000001202403151020300102030408", "6A86"},
    {"DEBIT P2 01", Where::kAdfWithPin, "805401010F00000001202403151020300102030408", "6A86"},
    {"DEBIT Lc 0E", Where::kAdfWithPin, "805401000E000000012024031510203001020308", "6700"},
    {"DEBIT short Le", Where::kAdfWithPin, "805401000F00000001202403151020300102030404", "6C08"},
    {"DEBIT without INITIALIZE", Where::kAdfWithPin, "805401000F00000001202403151020300102030408",
     "6985"},
    {"DEBIT FOR UNLOAD without INITIALIZE", Where::kAdfWithPin,
     "805403000B2024031510203001020304"
     "04",
     "6985"},
    {"UPDATE OVERDRAW LIMIT without INITIALIZE", Where::kAdfWithPin,
     "805800000E0013882024031510203001020304"
     "04",
     "6985"},
    {"UPDATE OVERDRAW LIMIT Lc 0D", Where::kAdfWithPin,
     "805800000D00138820240315102030010203"
     "04",
     "6700"},
    {"GET BALANCE P2 03", Where::kAdfWithPin, "805C000304", "6A86"},
    {"GET BALANCE P1 01", Where::kAdfWithPin, "805C010104", "6A86"},
    {"GET BALANCE with data", Where::kAdfWithPin, "805C00010100", "6700"},
    {"GET BALANCE short Le", Where::kAdfWithPin, "805C000103", "6C04"},
    {"GET BALANCE ED without PIN", Where::kAdf, "805C000104", "6982"},
    {"GET BALANCE in the SSSE", Where::kSsse, "805C000204", "6985"},
    {"GET TRANSACTION PROVE type 08", Where::kAdf, "805A000802000008", "6A86"},
    {"GET TRANSACTION PROVE P1 01", Where::kAdf, "805A010602000008", "6A86"},
    {"GET TRANSACTION PROVE Lc 3", Where::kAdf, "805A00060300000008", "6700"},
    {"GET TRANSACTION PROVE unknown serial", Where::kAdf, "805A000602000008", "9406"},
    // Personalisation commands on an issued card
    {"CREATE FILE after personalisation", Where::kMf,
     "80E0000004620283"
     "01",
     "6985"},
    {"WRITE KEY after personalisation", Where::kMf,
     "84D4000021080101000300000000000000000000000000000000000000000000000000000000", "6985"},
    {"SET PIN after personalisation", Where::kMf, "84D800000D03000000000000000000000000", "6985"},
    {"END PERSONALISATION after personalisation", Where::kMf, "84EE00000401020304", "6985"},
};

INSTANTIATE_TEST_SUITE_P(Apdus, CardMalformedTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           std::string name;
                           for (const char* p = param.param.what; *p; ++p) {
                             name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           }
                           return name + "_" + std::to_string(param.index);
                         });

}  // namespace
}  // namespace medcard::card_test
