// File system: SELECT, READ/UPDATE BINARY, READ/UPDATE/APPEND RECORD, access conditions and
// secure messaging (docs/card-commands.md, "File system").
#include <gtest/gtest.h>

#include <algorithm>

#include "card_test_util.h"
#include "crypto/crypto.h"
#include "iso7816/tlv.h"

namespace medcard::card_test {
namespace {

using card::AccessCondition;
using card::FileType;
using card::KeyUsage;

class CardFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
    ASSERT_TRUE(c_.card);
  }
  card::Card& card() { return *c_.card; }
  std::string Sw(std::string_view apdu) { return SwHex(Send(card(), apdu).sw); }
  Bytes Data(std::string_view apdu) {
    const Answer a = Send(card(), apdu);
    EXPECT_EQ(SwHex(a.sw), "9000") << apdu;
    return a.data;
  }
  // An SM command to `key` after a fresh challenge; answers the SW.
  std::string SmSw(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                   const Bytes& data, const std::string& key) {
    return SwHex(Send(card(), SmCommand(card(), cla, ins, p1, p2, data, View(CardKey(key)))).sw);
  }
  TestCard c_;
};

// ---- SELECT ---------------------------------------------------------------------------------

TEST_F(CardFsTest, Select_mfByFid_answersFciWithItsFid) {
  EXPECT_EQ(ToHex(View(Data("00A40000023F00"))), "6F0483023F00");
}

TEST_F(CardFsTest, Select_pseByName_answersFciWithSfiOfItsDir) {
  const Bytes fci = Data("00A404000E315041592E5359532E4444463031");
  EXPECT_EQ(ToHex(View(fci)), "6F15840E315041592E5359532E4444463031A503880101");
}

TEST_F(CardFsTest, Select_adfByAid_answersFciWithVersionAndBasicData) {
  const Bytes fci = Data("00A4040006D15600000503");
  const Bytes basic = Data("00B0950000");
  ASSERT_EQ(basic.size(), 30u);
  auto parsed = iso7816::ParseBerTlv(View(fci));
  ASSERT_TRUE(parsed.ok());
  const iso7816::Tlv* name = iso7816::FindTag(*parsed, 0x84);
  const iso7816::Tlv* version = iso7816::FindTag(*parsed, 0x9F08);
  const iso7816::Tlv* copy = iso7816::FindTag(*parsed, 0x9F0C);
  ASSERT_TRUE(name && version && copy);
  EXPECT_EQ(ToHex(View(name->value)), "D15600000503");
  EXPECT_EQ(ToHex(View(version->value)), "02");
  EXPECT_EQ(ToHex(View(copy->value)), ToHex(View(basic)));
}

TEST_F(CardFsTest, Select_ssseByName_answersFciWithItsName) {
  const Bytes fci = Data("00A404000F7378312E73682EC9E7BBE1B1A3D5CF");
  EXPECT_EQ(ToHex(View(fci)), "6F11840F7378312E73682EC9E7BBE1B1A3D5CF");
}

TEST_F(CardFsTest, Select_byPartialName_findsTheApplication) {
  const Bytes partial = Data("00A4040005D156000005");
  EXPECT_EQ(ToHex(View(partial)), ToHex(View(Data("00A4040006D15600000503"))));
}

TEST_F(CardFsTest, Select_nextOccurrence_findsTheNextDfWithThatNamePrefix) {
  card::CardLayout layout;
  for (std::uint16_t i = 1; i <= 2; ++i) {
    card::DfLayout df;
    df.file.type = FileType::kDf;
    df.file.fid = static_cast<std::uint16_t>(0xA000 + i);
    df.file.df_name = {0xA0, 0x00, 0x00, 0x00, 0x99, static_cast<std::uint8_t>(i)};
    layout.mf.dfs.push_back(df);
  }
  auto keys = TestWrapper();
  TestCard c = MakeCardWithLayout(layout, keys);
  EXPECT_EQ(ToHex(View(Send(*c.card, "00A4040005A000000099").data)), "6F088406A00000009901");
  EXPECT_EQ(ToHex(View(Send(*c.card, "00A4040205A000000099").data)), "6F088406A00000009902");
  EXPECT_EQ(SwHex(Send(*c.card, "00A4040205A000000099").sw), "6A82");
}

TEST_F(CardFsTest, Select_efByFid_answersItsFcp) {
  Data("00A4040006D15600000503");
  const Bytes fcp = Data("00A40000020018");
  card::FileSpec expected =
      EfSpec(FileType::kCyclic, 0x0018, 0x18, AccessCondition::Free(), AccessCondition::Never());
  expected.record_length = 23;
  expected.record_count = 10;
  EXPECT_EQ(ToHex(View(fcp)), ToHex(View(card::EncodeFcp(expected))));
}

TEST_F(CardFsTest, Select_withP2NoAnswer_answers9000WithoutData) {
  const Answer a = Send(card(), "00A4000C021001");
  EXPECT_EQ(SwHex(a.sw), "9000");
  EXPECT_TRUE(a.data.empty());
}

TEST_F(CardFsTest, Select_unknownFid_answers6A82AndKeepsTheCurrentDf) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00A40000021234"), "6A82");
  EXPECT_EQ(Data("00B0950000").size(), 30u);  // SFI 15 still resolves in the ADF
}

TEST_F(CardFsTest, Select_unknownName_answers6A82) {
  EXPECT_EQ(Sw("00A4040005A000000003"), "6A82");
}

TEST_F(CardFsTest, Select_siblingDfByFid_isFoundFromInsideAnotherDf) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00A4000C02DDF1"), "9000");
  EXPECT_EQ(Sw("00A4000C021001"), "9000");
}

TEST_F(CardFsTest, Select_wrongP1_answers6A86) { EXPECT_EQ(Sw("00A40200023F00"), "6A86"); }

TEST_F(CardFsTest, Select_wrongP2_answers6A86) {
  EXPECT_EQ(Sw("00A40004023F00"), "6A86");
  EXPECT_EQ(Sw("00A4040C06D15600000503"), "6A86");
}

TEST_F(CardFsTest, Select_fidOfOneByte_answers6700) { EXPECT_EQ(Sw("00A40000013F"), "6700"); }

TEST_F(CardFsTest, Select_nameLongerThan16_answers6700) {
  EXPECT_EQ(Sw("00A4040011D15600000503000000000000000000000000"), "6700");
}

TEST_F(CardFsTest, Select_withoutData_answers6700) { EXPECT_EQ(Sw("00A4040000"), "6700"); }

TEST_F(CardFsTest, Select_withShortLe_answers6CWithTheFciLength) {
  EXPECT_EQ(Sw("00A40000023F0002"), "6C06");
  EXPECT_EQ(Sw("00A40000023F0006"), "9000");
  EXPECT_EQ(Sw("00A40000023F0000"), "9000");
}

TEST_F(CardFsTest, Select_ofTheAdfAgain_clearsThePinVerification) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805C000104"), "9000");
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("805C000104"), "6982");
}

// ---- READ BINARY ----------------------------------------------------------------------------

TEST_F(CardFsTest, ReadBinary_bySfi_answersTheWholeFile) {
  Data("00A4040006D15600000503");
  const Bytes basic = Data("00B0950000");
  EXPECT_EQ(ToHex(View(basic)),
            "3141000000000001"
            "03"
            "02"
            "31410000000000000123"
            "20240101"
            "20341231"
            "0000");
}

TEST_F(CardFsTest, ReadBinary_withOffsetAndLe_answersThoseBytes) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(ToHex(View(Data("00B095080C"))), "030231410000000000000123");
}

TEST_F(CardFsTest, ReadBinary_leLargerThanTheRest_answersTheRest) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Data("00B0951A10").size(), 4u);
}

TEST_F(CardFsTest, ReadBinary_ofCurrentEf_afterSelectByFid) {
  Data("00A4040006D15600000503");
  Data("00A40000020016");
  const Bytes holder = Data("00B0000000");
  ASSERT_EQ(holder.size(), 55u);
  EXPECT_EQ(ToHex(View(holder)).substr(0, 12), "0000D5C5C8FD");
}

TEST_F(CardFsTest, ReadBinary_bySfi_makesThatEfCurrent) {
  Data("00A4040006D15600000503");
  Data("00B0960001");
  EXPECT_EQ(Data("00B0000037").size(), 55u);
}

TEST_F(CardFsTest, ReadBinary_offsetAtOrPastTheEnd_answers6B00) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B0951E01"), "6B00");
  EXPECT_EQ(Sw("00B0001E01"), "6B00");  // SFI 15 is now the current EF
}

TEST_F(CardFsTest, ReadBinary_withoutCurrentEf_answers6986) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B0000000"), "6986");
}

TEST_F(CardFsTest, ReadBinary_unknownSfi_answers6A82) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B0870000"), "6A82");
}

TEST_F(CardFsTest, ReadBinary_ofRecordFile_answers6981) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B0980000"), "6981");
}

TEST_F(CardFsTest, ReadBinary_withoutLe_answers6700) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B09500"), "6700");
}

TEST_F(CardFsTest, ReadBinary_withRfuBitsInP1_answers6A86) {
  EXPECT_EQ(Sw("00B0C50000"), "6A86");
  EXPECT_EQ(Sw("00B0800000"), "6A86");  // SFI 0
}

TEST_F(CardFsTest, ReadBinary_plainWithData_answers6700) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00B095000101"), "6700");
}

// ---- UPDATE BINARY --------------------------------------------------------------------------

TEST_F(CardFsTest, UpdateBinary_withSmUnderTheMaintenanceKey_writesTheFile) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(SmSw(0x04, 0xD6, 0x96, 0x02, HexToBytes("C1C2"), "maintenance"), "9000");
  EXPECT_EQ(ToHex(View(Data("00B0960004"))), "0000C1C2");
}

TEST_F(CardFsTest, UpdateBinary_ofSfi15_showsInTheAdfFci) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(SmSw(0x04, 0xD6, 0x95, 0x09, HexToBytes("07"), "maintenance"), "9000");
  auto parsed = iso7816::ParseBerTlv(View(Data("00A4040006D15600000503")));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(ToHex(View(iso7816::FindTag(*parsed, 0x9F08)->value)), "07");
}

TEST_F(CardFsTest, UpdateBinary_plainOnSmFile_answers6987AndChangesNothing) {
  Data("00A4040006D15600000503");
  const std::string before = StateJson(card());
  EXPECT_EQ(Sw("00D6960002C1C2"), "6987");
  EXPECT_EQ(StateJson(card()), before);
}

TEST_F(CardFsTest, UpdateBinary_withWrongMac_answers6988AndOnlyCountsTheFailure) {
  Data("00A4040006D15600000503");
  Bytes apdu =
      SmCommand(card(), 0x04, 0xD6, 0x96, 0x02, HexToBytes("C1C2"), View(CardKey("maintenance")));
  apdu.back() ^= 0x01;
  EXPECT_EQ(SwHex(Send(card(), apdu).sw), "6988");
  EXPECT_EQ(ToHex(View(Data("00B0960004"))), "0000D5C5");
  const card::CardSummary summary = card().Inspect();
  const auto adf = std::find_if(summary.files.begin(), summary.files.end(),
                                [](const card::FileSummary& f) { return f.path == "3F00/1001"; });
  ASSERT_NE(adf, summary.files.end());
  for (const card::KeySummary& k : adf->keys) {
    EXPECT_EQ(k.error_count, k.usage == KeyUsage::kMaintenance ? 1 : 0);
  }
}

TEST_F(CardFsTest, UpdateBinary_withSmWithoutChallenge_answers6984) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("04D6960006C1C200000000"), "6984");
}

TEST_F(CardFsTest, UpdateBinary_challengeIsSingleUse_secondCommandAnswers6984) {
  Data("00A4040006D15600000503");
  const Bytes apdu =
      SmCommand(card(), 0x04, 0xD6, 0x96, 0x02, HexToBytes("C1C2"), View(CardKey("maintenance")));
  EXPECT_EQ(SwHex(Send(card(), apdu).sw), "9000");
  EXPECT_EQ(SwHex(Send(card(), apdu).sw), "6984");
}

TEST_F(CardFsTest, UpdateBinary_withSmShorterThanAMac_answers6987) {
  Data("00A4040006D15600000503");
  Data("0084000004");
  EXPECT_EQ(Sw("04D6960003C1C2C3"), "6987");
}

TEST_F(CardFsTest, UpdateBinary_withSmOnAFreeFile_answers6982) {
  card::CardLayout layout;
  card::EfLayout ef;
  ef.file = EfSpec(FileType::kTransparent, 0x0101, 0x01, AccessCondition::Free(),
                   AccessCondition::Free());
  ef.file.size = 8;
  layout.mf.efs.push_back(ef);
  layout.mf.keys.push_back(card::KeySpec{"maintenance", KeyUsage::kMaintenance, 1, 1, 3});
  auto keys = TestWrapper();
  TestCard c = MakeCardWithLayout(layout, keys);
  const Bytes apdu =
      SmCommand(*c.card, 0x04, 0xD6, 0x81, 0x00, HexToBytes("01"), View(CardKey("maintenance")));
  EXPECT_EQ(SwHex(Send(*c.card, apdu).sw), "6982");
  EXPECT_EQ(SwHex(Send(*c.card, "00D681000101").sw), "9000");
}

TEST_F(CardFsTest, UpdateBinary_pastTheEnd_answers6700AndOffsetBeyond6B00) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(SmSw(0x04, 0xD6, 0x96, 0x36, HexToBytes("C1C2"), "maintenance"), "6700");
  EXPECT_EQ(SmSw(0x04, 0xD6, 0x96, 0x37, HexToBytes("C1"), "maintenance"), "6B00");
}

TEST_F(CardFsTest, UpdateBinary_withoutData_answers6700) {
  Data("00A4040006D15600000503");
  EXPECT_EQ(Sw("00D69600"), "6700");
}

TEST_F(CardFsTest, UpdateBinary_ofNeverWritableFile_answers6982) {
  card::CardLayout layout;
  card::EfLayout ef;
  ef.file = EfSpec(FileType::kTransparent, 0x0101, 0x01, AccessCondition::Free(),
                   AccessCondition::Never());
  ef.file.size = 8;
  layout.mf.efs.push_back(ef);
  auto keys = TestWrapper();
  TestCard c = MakeCardWithLayout(layout, keys);
  EXPECT_EQ(SwHex(Send(*c.card, "00D681000101").sw), "6982");
}

// ---- Access conditions: PIN, external authentication, SM read --------------------------------

class CardAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    card::CardLayout layout;
    card::DfLayout df;
    df.file.type = FileType::kDf;
    df.file.fid = 0x2001;
    df.file.df_name = HexToBytes("A000000099AA");
    df.pin = card::PinSpec{"123456", 3};
    df.keys = {card::KeySpec{"maintenance", KeyUsage::kMaintenance, 1, 1, 3},
               card::KeySpec{"ext", KeyUsage::kExternalAuth, 5, 1, 3}};
    card::EfLayout by_pin;
    by_pin.file = EfSpec(FileType::kTransparent, 0x0001, 0x01, AccessCondition::Pin(),
                         AccessCondition::Pin());
    by_pin.file.size = 4;
    by_pin.content = HexToBytes("11223344");
    card::EfLayout by_auth;
    by_auth.file = EfSpec(FileType::kTransparent, 0x0002, 0x02, AccessCondition::ExternalAuth(5),
                          AccessCondition::Never());
    by_auth.file.size = 4;
    by_auth.content = HexToBytes("55667788");
    card::EfLayout by_sm;
    by_sm.file = EfSpec(FileType::kTransparent, 0x0003, 0x03,
                        AccessCondition::Sm(KeyUsage::kMaintenance), AccessCondition::Never());
    by_sm.file.size = 4;
    by_sm.content = HexToBytes("99AABBCC");
    df.efs = {by_pin, by_auth, by_sm};
    layout.mf.dfs.push_back(df);
    auto wrapper = card::ClearKeyWrapper(
        TestTransportKey(), {{"maintenance", CardKey("maintenance")}, {"ext", ext_key_}});
    c_ = MakeCardWithLayout(layout, wrapper, card::CardOptions{CountingRandom()});
    ASSERT_EQ(SwHex(Send(*c_.card, "00A4040006A000000099AA").sw), "9000");
  }
  std::string Sw(std::string_view apdu) { return SwHex(Send(*c_.card, apdu).sw); }
  Bytes ext_key_ = HexToBytes("00112233445566778899AABBCCDDEEFF");
  TestCard c_;
};

TEST_F(CardAccessTest, PinProtectedFile_beforeVerify_answers6982) {
  EXPECT_EQ(Sw("00B0810004"), "6982");
  EXPECT_EQ(Sw("00D6810001FF"), "6982");
}

TEST_F(CardAccessTest, PinProtectedFile_afterVerify_isReadAndWritten) {
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  EXPECT_EQ(Sw("00D6810001FF"), "9000");
  EXPECT_EQ(ToHex(View(Send(*c_.card, "00B0810004").data)), "FF223344");
}

TEST_F(CardAccessTest, PinProtectedFile_afterReset_answers6982Again) {
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  c_.card->PowerOn();
  EXPECT_EQ(Sw("00A4040006A000000099AA"), "9000");
  EXPECT_EQ(Sw("00B0810004"), "6982");
}

TEST_F(CardAccessTest, ExternalAuthFile_afterExternalAuthenticate_isReadable) {
  EXPECT_EQ(Sw("00B0820004"), "6982");
  const Answer challenge = Send(*c_.card, "0084000004");
  Bytes block = challenge.data;
  block.resize(8, 0);
  auto cipher = crypto::BlockCipher::Des(View(ext_key_));
  const Bytes cryptogram = cipher->EncryptEcb(View(block));
  EXPECT_EQ(SwHex(Send(*c_.card, Concat({View(HexToBytes("0082000508")), View(cryptogram)})).sw),
            "9000");
  EXPECT_EQ(ToHex(View(Send(*c_.card, "00B0820004").data)), "55667788");
}

TEST_F(CardAccessTest, SmReadFile_plain_answers6987) { EXPECT_EQ(Sw("00B0830004"), "6987"); }

TEST_F(CardAccessTest, SmReadFile_withMac_answersTheContent) {
  const Bytes apdu = SmCommand(*c_.card, 0x04, 0xB0, 0x83, 0x00, {}, View(CardKey("maintenance")));
  Bytes with_le = apdu;
  with_le.push_back(0x04);
  const Answer a = Send(*c_.card, with_le);
  EXPECT_EQ(SwHex(a.sw), "9000");
  EXPECT_EQ(ToHex(View(a.data)), "99AABBCC");
}

// ---- Records --------------------------------------------------------------------------------

TEST_F(CardFsTest, ReadRecord_efDirRecord1_listsTheMedicalAccountApplication) {
  const Bytes record = Data("00B2010C00");
  auto parsed = iso7816::ParseBerTlv(View(record));
  ASSERT_TRUE(parsed.ok());
  ASSERT_FALSE(parsed->empty());
  EXPECT_EQ((*parsed)[0].tag, 0x70u);
  EXPECT_EQ(ToHex(View(iso7816::FindTag(*parsed, 0x4F)->value)), "D15600000503");
  EXPECT_EQ(std::string(iso7816::FindTag(*parsed, 0x50)->value.begin(),
                        iso7816::FindTag(*parsed, 0x50)->value.end()),
            "MEDICAL ACCOUNT");
}

TEST_F(CardFsTest, ReadRecord_efDirRecord2_listsTheSsse) {
  auto parsed = iso7816::ParseBerTlv(View(Data("00B2020C00")));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(ToHex(View(iso7816::FindTag(*parsed, 0x4F)->value)), "7378312E73682EC9E7BBE1B1A3D5CF");
}

TEST_F(CardFsTest, ReadRecord_pseDirAfterSelectingThePse_listsTheApplication) {
  Data("00A404000E315041592E5359532E4444463031");
  auto parsed = iso7816::ParseBerTlv(View(Data("00B2010C00")));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(ToHex(View(iso7816::FindTag(*parsed, 0x4F)->value)), "D15600000503");
  EXPECT_EQ(Sw("00B2020C00"), "6A83");
}

TEST_F(CardFsTest, ReadRecord_emptyLog_answers6A83) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B201C417"), "6A83");
}

TEST_F(CardFsTest, ReadRecord_log_newestTransactionIsRecord1) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 5000).sw), "9000");
  ASSERT_EQ(SwHex(Purchase(card(), true, 1234).sw), "9000");
  const Bytes newest = Data("00B201C417");
  const Bytes older = Data("00B202C417");
  const std::string where = ToHex(View(kTerminal)) + ToHex(View(kDate)) + ToHex(View(kTime));
  // serial(2) ‖ overdrawLimit(3) ‖ amount(4) ‖ type(1) ‖ termNo ‖ date ‖ time
  EXPECT_EQ(ToHex(View(newest)),
            "0000"
            "000000"
            "000004D2"
            "05" +
                where);
  EXPECT_EQ(ToHex(View(older)),
            "0000"
            "000000"
            "00001388"
            "01" +
                where);
  EXPECT_EQ(Sw("00B203C417"), "6A83");
}

TEST_F(CardFsTest, ReadRecord_withShortLe_answers6C17) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 5000).sw), "9000");
  EXPECT_EQ(Sw("00B201C410"), "6C17");
}

TEST_F(CardFsTest, ReadRecord_tlvByTag_answersTagLengthValue) {
  SelectSsse(card());
  Data("00A4000002EF05");
  EXPECT_EQ(ToHex(View(Data("00B207000B"))), "0709413030303030303031");
}

TEST_F(CardFsTest, ReadRecord_tlvByTagThroughSfi_answersTagLengthValue) {
  SelectSsse(card());
  EXPECT_EQ(ToHex(View(Data("00B20A3403"))), "0A0131");
  EXPECT_EQ(ToHex(View(Data("00B2233C08"))), "2306333130313030");
}

TEST_F(CardFsTest, ReadRecord_tlvMissingTag_answers6A83) {
  SelectSsse(card());
  EXPECT_EQ(Sw("00B2022C00"), "6A83");
}

TEST_F(CardFsTest, ReadRecord_recordZero_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B200C417"), "6A86");
}

TEST_F(CardFsTest, ReadRecord_unsupportedMode_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B201C517"), "6A86");
  EXPECT_EQ(Sw("00B201C017"), "6A86");  // by identifier on a cyclic file
}

TEST_F(CardFsTest, ReadRecord_ofTransparentFile_answers6981) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B201AC00"), "6981");
}

TEST_F(CardFsTest, ReadRecord_withoutLe_answers6700) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B201C4"), "6700");
}

TEST_F(CardFsTest, ReadRecord_unknownSfi_answers6A82) {
  SelectAdf(card());
  EXPECT_EQ(Sw("00B201FC00"), "6A82");
}

TEST_F(CardFsTest, UpdateRecord_ef07WithSsseMaintenanceKey_replacesTheRecord) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x22, 0x3C, HexToBytes("220102"), "ssse_maintenance"), "9000");
  EXPECT_EQ(ToHex(View(Data("00B2223C03"))), "220102");
}

TEST_F(CardFsTest, UpdateRecord_ef07NewTag_addsTheRecord) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x26, 0x3C, HexToBytes("2602ABCD"), "ssse_maintenance"), "9000");
  EXPECT_EQ(ToHex(View(Data("00B2263C04"))), "2602ABCD");
}

TEST_F(CardFsTest, UpdateRecord_ef07WithTheApplicationsKey_answers6988) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x22, 0x3C, HexToBytes("220102"), "maintenance"), "6988");
  EXPECT_EQ(ToHex(View(Data("00B2223C03"))), "220101");
}

TEST_F(CardFsTest, UpdateRecord_ef07Plain_answers6987) {
  SelectSsse(card());
  EXPECT_EQ(Sw("00DC223C03220102"), "6987");
}

TEST_F(CardFsTest, UpdateRecord_tlvWhoseTagIsNotP1_answers6A80) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x22, 0x3C, HexToBytes("230102"), "ssse_maintenance"), "6A80");
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x22, 0x3C, HexToBytes("220201"), "ssse_maintenance"), "6A80");
}

TEST_F(CardFsTest, UpdateRecord_tlvBeyondCapacity_answers6A84) {
  SelectSsse(card());
  Bytes big = {0x27, 0xC8};
  big.resize(2 + 0xC8, 0x41);
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x27, 0x3C, big, "ssse_maintenance"), "6A84");
  EXPECT_EQ(Sw("00B2273C00"), "6A83");
}

TEST_F(CardFsTest, UpdateRecord_ef05NeverWritable_answers6982) {
  SelectSsse(card());
  EXPECT_EQ(Sw("00DC072C0B0709413030303030303032"), "6982");
}

class CardLinearFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    card::CardLayout layout;
    card::EfLayout ef;
    ef.file = EfSpec(FileType::kLinearFixed, 0x0101, 0x01, AccessCondition::Free(),
                     AccessCondition::Free());
    ef.file.record_length = 4;
    ef.file.record_count = 3;
    ef.records = {HexToBytes("01010101"), HexToBytes("02020202")};
    layout.mf.efs.push_back(ef);
    auto keys = TestWrapper();
    c_ = MakeCardWithLayout(layout, keys);
  }
  std::string Sw(std::string_view apdu) { return SwHex(Send(*c_.card, apdu).sw); }
  TestCard c_;
};

TEST_F(CardLinearFileTest, ReadRecord_unwrittenRecordIsZeros) {
  EXPECT_EQ(ToHex(View(Send(*c_.card, "00B2030C00").data)), "00000000");
  EXPECT_EQ(Sw("00B2040C00"), "6A83");
}

TEST_F(CardLinearFileTest, UpdateRecord_replacesThatRecordOnly) {
  EXPECT_EQ(Sw("00DC020C04AABBCCDD"), "9000");
  EXPECT_EQ(ToHex(View(Send(*c_.card, "00B2020C00").data)), "AABBCCDD");
  EXPECT_EQ(ToHex(View(Send(*c_.card, "00B2010C00").data)), "01010101");
}

TEST_F(CardLinearFileTest, UpdateRecord_wrongLength_answers6700) {
  EXPECT_EQ(Sw("00DC020C03AABBCC"), "6700");
}

TEST_F(CardLinearFileTest, UpdateRecord_beyondTheLastRecord_answers6A83) {
  EXPECT_EQ(Sw("00DC040C04AABBCCDD"), "6A83");
}

TEST_F(CardLinearFileTest, AppendRecord_onLinearFile_answers6981) {
  EXPECT_EQ(Sw("00E2000804AABBCCDD"), "6981");
}

TEST_F(CardFsTest, AppendRecord_visitWithTheVisitKey_becomesRecord1) {
  SelectSsse(card());
  Bytes visit = HexToBytes(
      "20240315"
      "101500");
  Append(visit, View(Bytes(10, '7')));
  visit.push_back(0x01);
  Append(visit, View(Bytes{'J', '0', '6', '.', '9', ' ', ' ', ' '}));
  Append(visit, View(HexToBytes("00002710"
                                "00001F40"
                                "000007D0")));
  ASSERT_EQ(visit.size(), 38u);
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x40, visit, "visit_record"), "9000");
  EXPECT_EQ(ToHex(View(Data("00B2014426"))), ToHex(View(visit)));
  Bytes second = visit;
  second[3] = 0x16;
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x40, second, "visit_record"), "9000");
  EXPECT_EQ(ToHex(View(Data("00B2014426"))), ToHex(View(second)));
  EXPECT_EQ(ToHex(View(Data("00B2024426"))), ToHex(View(visit)));
}

TEST_F(CardFsTest, AppendRecord_elevenVisits_keepTheNewestTen) {
  SelectSsse(card());
  for (std::uint8_t i = 1; i <= 11; ++i) {
    Bytes visit(38, i);
    ASSERT_EQ(SmSw(0x04, 0xE2, 0x00, 0x40, visit, "visit_record"), "9000");
  }
  EXPECT_EQ(Data("00B2014426")[0], 11);
  EXPECT_EQ(Data("00B20A4426")[0], 2);
  EXPECT_EQ(Sw("00B20B4426"), "6A83");
}

TEST_F(CardFsTest, AppendRecord_visitWithTheMaintenanceKey_answers6988) {
  // The hospital's visit key writes visits; no other key does, and the visit key can't do
  // anything else.
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x40, Bytes(38, 1), "ssse_maintenance"), "6988");
  EXPECT_EQ(Sw("00B2014426"), "6A83");
  EXPECT_EQ(SmSw(0x04, 0xDC, 0x22, 0x3C, HexToBytes("220102"), "visit_record"), "6988");
}

TEST_F(CardFsTest, AppendRecord_plain_answers6987) {
  SelectSsse(card());
  Bytes apdu = HexToBytes("00E2004026");
  Append(apdu, View(Bytes(38, 1)));
  EXPECT_EQ(SwHex(Send(card(), apdu).sw), "6987");
}

TEST_F(CardFsTest, AppendRecord_wrongLength_answers6700) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x40, Bytes(37, 1), "visit_record"), "6700");
}

TEST_F(CardFsTest, AppendRecord_nonZeroP1OrMode_answers6A86) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x01, 0x40, Bytes(38, 1), "visit_record"), "6A86");
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x44, Bytes(38, 1), "visit_record"), "6A86");
}

TEST_F(CardFsTest, AppendRecord_onTlvFile_answers6981) {
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x04, 0xE2, 0x00, 0x38, HexToBytes("220102"), "ssse_maintenance"), "6981");
}

}  // namespace
}  // namespace medcard::card_test
