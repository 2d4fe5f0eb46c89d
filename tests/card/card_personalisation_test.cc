// Manufacture, the personalisation commands (CREATE FILE, WRITE KEY, SET PIN, END
// PERSONALISATION), the standard profile, and the script builder and runner.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "card_test_util.h"
#include "crypto/crypto.h"

namespace medcard::card_test {
namespace {

using card::AccessCondition;
using card::FileType;
using card::KeyUsage;

class CardPersoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = MakeBlankCard(card::CardOptions{CountingRandom()});
    ASSERT_TRUE(c_.card);
  }
  card::Card& card() { return *c_.card; }
  std::string Sw(std::string_view apdu) { return SwHex(Send(card(), apdu).sw); }
  std::string Sw(const Bytes& apdu) { return SwHex(Send(card(), apdu).sw); }
  // A transport-key-MACed command after a fresh challenge.
  Bytes Secured(std::uint8_t ins, const Bytes& data, std::uint8_t p1 = 0, std::uint8_t p2 = 0) {
    return SmCommand(card(), 0x84, ins, p1, p2, data, View(TestTransportKey()));
  }
  Bytes WriteKeyData(KeyUsage usage, std::uint8_t index, const Bytes& key, std::uint8_t limit = 3) {
    Bytes data{static_cast<std::uint8_t>(usage), index, 0x01, card::kAlgTdes, limit};
    Append(data, View(crypto::EncryptKeyForTransport(View(TestTransportKey()), View(key)).value()));
    return data;
  }
  Bytes SetPinData(const std::string& pin_hex, std::uint8_t limit = 3) {
    Bytes block{static_cast<std::uint8_t>(pin_hex.size() / 2)};
    Append(block, View(HexToBytes(pin_hex)));
    block.push_back(0x80);
    block.resize(8, 0);
    Bytes data{limit};
    Append(data, View(crypto::BlockCipher::Des(View(TestTransportKey()))->EncryptEcb(View(block))));
    return data;
  }
  std::string CreateFile(const card::FileSpec& spec) {
    const Bytes fcp = card::EncodeFcp(spec);
    Bytes apdu{0x80, 0xE0, 0x00, 0x00, static_cast<std::uint8_t>(fcp.size())};
    Append(apdu, View(fcp));
    return Sw(apdu);
  }
  card::FileSpec Transparent(std::uint16_t fid, std::uint8_t sfi, std::uint16_t size = 8) {
    card::FileSpec spec =
        EfSpec(FileType::kTransparent, fid, sfi, AccessCondition::Free(), AccessCondition::Free());
    spec.size = size;
    return spec;
  }
  card::FileSpec DfSpec(std::uint16_t fid, Bytes name, bool purse = false) {
    card::FileSpec spec;
    spec.type = FileType::kDf;
    spec.fid = fid;
    spec.df_name = std::move(name);
    if (purse) spec.purse = card::PurseParameters{};
    return spec;
  }
  TestCard c_;
};

// ---- Manufacture and Open ---------------------------------------------------------------------

TEST_F(CardPersoTest, Manufacture_blankCard_hasOnlyTheMfAndTheTransportKey) {
  const card::CardSummary s = card().Inspect();
  EXPECT_EQ(s.lifecycle, card::Lifecycle::kPersonalisation);
  EXPECT_TRUE(s.transport_key_present);
  EXPECT_EQ(ToHex(View(s.chip_serial)), ToHex(View(TestChipSerial())));
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.files[0].path, "3F00");
  EXPECT_TRUE(s.files[0].keys.empty());
  EXPECT_TRUE(s.purses.empty());
}

TEST(CardManufactureTest, Manufacture_onANonEmptyMedium_isAnError) {
  auto made =
      card::Card::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(PersonalisedImage()),
                              card::ManufactureInfo{TestChipSerial(), TestTransportKey()});
  EXPECT_FALSE(made.ok());
}

TEST(CardManufactureTest, Manufacture_badSerialOrTransportKeyLength_isAnError) {
  EXPECT_FALSE(card::Card::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(),
                                       card::ManufactureInfo{Bytes(7, 1), TestTransportKey()})
                   .ok());
  EXPECT_FALSE(card::Card::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(),
                                       card::ManufactureInfo{TestChipSerial(), Bytes(8, 1)})
                   .ok());
}

TEST(CardManufactureTest, Open_emptyMedium_isAnError) {
  auto opened = card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>());
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("no card image"), std::string::npos);
}

TEST_F(CardPersoTest, BlankCard_refusesEveryPurseAndPinCommandWith6985) {
  for (const char* apdu : {"805000010B0100000064001122334455"
                           "10",
                           "805C000204", "805200000B2024031510203001020304", "805A000602000008",
                           "805E010007123456FF654321", "841800000401020304"}) {
    EXPECT_EQ(Sw(apdu), "6985") << apdu;
  }
}

// ---- CREATE FILE ------------------------------------------------------------------------------

TEST_F(CardPersoTest, CreateFile_ef_createsItAndMakesItCurrent) {
  EXPECT_EQ(CreateFile(Transparent(0x0101, 0x01, 4)), "9000");
  EXPECT_EQ(Sw("00D6000002ABCD"), "9000");
  EXPECT_EQ(ToHex(View(Send(card(), "00B0810000").data)), "ABCD0000");
}

TEST_F(CardPersoTest, CreateFile_df_createsItAndMakesItTheCurrentDf) {
  EXPECT_EQ(CreateFile(DfSpec(0x2001, HexToBytes("A000000099"))), "9000");
  EXPECT_EQ(CreateFile(Transparent(0x0101, 0x01)), "9000");
  EXPECT_EQ(card().Inspect().files.at(2).path, "3F00/2001/0101");
  EXPECT_EQ(ToHex(View(Send(card(), "00A4040005A000000099").data)), "6F078405A000000099");
}

TEST_F(CardPersoTest, CreateFile_duplicateFid_answers6A89) {
  EXPECT_EQ(CreateFile(Transparent(0x0101, 0x01)), "9000");
  EXPECT_EQ(CreateFile(Transparent(0x0101, 0x02)), "6A89");
}

TEST_F(CardPersoTest, CreateFile_duplicateSfi_answers6A89) {
  EXPECT_EQ(CreateFile(Transparent(0x0101, 0x01)), "9000");
  EXPECT_EQ(CreateFile(Transparent(0x0102, 0x01)), "6A89");
}

TEST_F(CardPersoTest, CreateFile_duplicateDfName_answers6A89) {
  EXPECT_EQ(CreateFile(DfSpec(0x2001, HexToBytes("A000000099"))), "9000");
  EXPECT_EQ(CreateFile(DfSpec(0x2002, HexToBytes("A000000099"))), "6A89");
}

TEST_F(CardPersoTest, CreateFile_malformedTemplate_answers6A80) {
  EXPECT_EQ(Sw("80E0000004620283"
               "01"),
            "6A80");                                      // truncated TLV
  EXPECT_EQ(Sw("80E00000056F03830101"), "6A80");          // not tag 62
  EXPECT_EQ(Sw("80E000000762058201018301"), "6A80");      // bad FID length
  EXPECT_EQ(Sw("80E0000009620782010183020101"), "6A80");  // EF without access conditions
}

TEST_F(CardPersoTest, CreateFile_invalidValues_answer6A80) {
  card::FileSpec zero = Transparent(0x0101, 0x01, 0);
  EXPECT_EQ(CreateFile(zero), "6A80");
  card::FileSpec big = Transparent(0x0101, 0x01, 4097);
  EXPECT_EQ(CreateFile(big), "6A80");
  EXPECT_EQ(CreateFile(Transparent(0x3F00, 0x01)), "6A80");
  card::FileSpec no_records =
      EfSpec(FileType::kCyclic, 0x0102, 0x02, AccessCondition::Free(), AccessCondition::Free());
  EXPECT_EQ(CreateFile(no_records), "6A80");
  card::FileSpec bad_ac = Transparent(0x0103, 0x03);
  bad_ac.write = AccessCondition{card::AccessKind::kSecureMessaging, 0x77};
  EXPECT_EQ(CreateFile(bad_ac), "6A80");
  EXPECT_EQ(Sw("80E000000C620A82013883022001890100"), "6A80");  // unknown tag 89
  EXPECT_TRUE(card().Inspect().files.size() == 1);
}

TEST_F(CardPersoTest, CreateFile_wrongP1P2OrNoData_isRefused) {
  const Bytes fcp = card::EncodeFcp(Transparent(0x0101, 0x01));
  Bytes apdu{0x80, 0xE0, 0x01, 0x00, static_cast<std::uint8_t>(fcp.size())};
  Append(apdu, View(fcp));
  EXPECT_EQ(Sw(apdu), "6A86");
  EXPECT_EQ(Sw("80E00000"), "6700");
}

TEST_F(CardPersoTest, CreateFile_tooDeep_answers6A84) {
  for (std::uint16_t i = 1; i <= 4; ++i) {
    EXPECT_EQ(CreateFile(DfSpec(static_cast<std::uint16_t>(0x2000 + i), {})), "9000");
  }
  EXPECT_EQ(CreateFile(DfSpec(0x2005, {})), "6A84");
}

TEST_F(CardPersoTest, CreateFile_beyond64Files_answers6A84) {
  for (std::uint16_t i = 1; i < 64; ++i) {
    ASSERT_EQ(CreateFile(Transparent(static_cast<std::uint16_t>(0x0100 + i), 0, 1)), "9000");
  }
  EXPECT_EQ(CreateFile(Transparent(0x0200, 0, 1)), "6A84");
}

TEST_F(CardPersoTest, CreateFile_beyondTheChipMemory_answers6A84AndKeepsTheCardAsItWas) {
  std::uint16_t created = 0;
  std::string sw;
  for (std::uint16_t fid = 0x0101; fid < 0x0140; ++fid) {
    const std::string before = StateJson(card());
    sw = CreateFile(Transparent(fid, 0, 4096));
    if (sw != "9000") {
      EXPECT_EQ(sw, "6A84");
      EXPECT_EQ(StateJson(card()), before);
      break;
    }
    ++created;
  }
  EXPECT_EQ(sw, "6A84");
  EXPECT_GT(created, 10);
  EXPECT_FALSE(card().dead());
  EXPECT_EQ(CreateFile(Transparent(0x0300, 0, 16)), "9000");  // smaller still fits
  TestCard reopened = OpenCard(c_.medium->SurvivingContent());
  EXPECT_EQ(StateJson(*reopened.card), StateJson(card()));
}

// ---- WRITE KEY --------------------------------------------------------------------------------

TEST_F(CardPersoTest, WriteKey_withTransportMac_storesTheKeyWithoutShowingIt) {
  const Bytes key = HexToBytes("00112233445566778899AABBCCDDEEFF");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, key))), "9000");
  const card::CardSummary s = card().Inspect();
  ASSERT_EQ(s.files[0].keys.size(), 1u);
  EXPECT_EQ(s.files[0].keys[0].usage, KeyUsage::kMaintenance);
  EXPECT_EQ(s.files[0].keys[0].error_limit, 3);
  EXPECT_EQ(card::ToJson(s).dump().find("00112233445566778899"), std::string::npos);
}

TEST_F(CardPersoTest, WriteKey_sameUsageAndIndex_replacesTheKey) {
  const Bytes key = HexToBytes("00112233445566778899AABBCCDDEEFF");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, key))), "9000");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, key, 5))), "9000");
  ASSERT_EQ(card().Inspect().files[0].keys.size(), 1u);
  EXPECT_EQ(card().Inspect().files[0].keys[0].error_limit, 5);
}

TEST_F(CardPersoTest, WriteKey_wrongMac_answers6988AndThreeLockTheTransportKey) {
  const Bytes key = HexToBytes("00112233445566778899AABBCCDDEEFF");
  for (int i = 0; i < 3; ++i) {
    Bytes apdu = Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, key));
    apdu.back() ^= 0x01;
    EXPECT_EQ(Sw(apdu), "6988");
  }
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, key))), "6983");
  EXPECT_TRUE(card().Inspect().files[0].keys.empty());
  EXPECT_EQ(card().Inspect().transport_key_errors, 3);
}

TEST_F(CardPersoTest, WriteKey_withoutChallenge_answers6984) {
  Bytes apdu = Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, Bytes(16, 1)));
  EXPECT_EQ(Sw(apdu), "9000");
  EXPECT_EQ(Sw(apdu), "6984");
}

TEST_F(CardPersoTest, WriteKey_unknownUsageOrAlgorithmOrLength_answers6A80) {
  Bytes bad_usage = WriteKeyData(KeyUsage::kMaintenance, 1, Bytes(16, 1));
  bad_usage[0] = 0x77;
  EXPECT_EQ(Sw(Secured(0xD4, bad_usage)), "6A80");
  Bytes bad_alg = WriteKeyData(KeyUsage::kMaintenance, 1, Bytes(16, 1));
  bad_alg[3] = 0x04;
  EXPECT_EQ(Sw(Secured(0xD4, bad_alg)), "6A80");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kPurchase, 1, Bytes(8, 1)))), "6A80");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kPurchase, 0, Bytes(16, 1)))), "6A80");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kExternalAuth, 1, Bytes(8, 1)))), "9000");
}

TEST_F(CardPersoTest, WriteKey_cryptogramNotUnderTheTransportKey_answers6A80) {
  Bytes data = {static_cast<std::uint8_t>(KeyUsage::kMaintenance), 1, 1, 0, 3};
  Append(data, View(Bytes(24, 0x5A)));
  EXPECT_EQ(Sw(Secured(0xD4, data)), "6A80");
}

TEST_F(CardPersoTest, WriteKey_wrongLengthOrP1P2_isRefused) {
  EXPECT_EQ(Sw(Secured(0xD4, Bytes(20, 1))), "6700");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, Bytes(16, 1)), 1, 0)), "6A86");
}

TEST_F(CardPersoTest, WriteKey_beyond16Keys_answers6A84) {
  for (std::uint8_t i = 1; i <= 16; ++i) {
    ASSERT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kPurchase, i, Bytes(16, i)))), "9000");
  }
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kPurchase, 17, Bytes(16, 1)))), "6A84");
}

// ---- SET PIN ----------------------------------------------------------------------------------

TEST_F(CardPersoTest, SetPin_withTransportMac_setsAVerifiablePin) {
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("123456"))), "9000");
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  const card::CardSummary s = card().Inspect();
  ASSERT_TRUE(s.files[0].pin.has_value());
  EXPECT_EQ(s.files[0].pin->tries_left, 3);
}

TEST_F(CardPersoTest, SetPin_wrongMac_answers6988) {
  Bytes apdu = Secured(0xD8, SetPinData("123456"));
  apdu.back() ^= 0x01;
  EXPECT_EQ(Sw(apdu), "6988");
  EXPECT_FALSE(card().Inspect().files[0].pin.has_value());
}

TEST_F(CardPersoTest, SetPin_notSixDigitsOrBadLimit_answers6A80) {
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("1234"))), "6A80");
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("123456", 0))), "6A80");
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("123456", 16))), "6A80");
}

TEST_F(CardPersoTest, SetPin_wrongLength_answers6700) {
  EXPECT_EQ(Sw(Secured(0xD8, Bytes(8, 1))), "6700");
}

// ---- END PERSONALISATION ----------------------------------------------------------------------

TEST_F(CardPersoTest, EndPersonalisation_makesTheCardOperationalAndForgetsTheTransportKey) {
  EXPECT_EQ(Sw(Secured(0xEE, {})), "9000");
  const card::CardSummary s = card().Inspect();
  EXPECT_EQ(s.lifecycle, card::Lifecycle::kOperational);
  EXPECT_FALSE(s.transport_key_present);
}

TEST_F(CardPersoTest, EndPersonalisation_thenEveryPersonalisationCommandAnswers6985) {
  EXPECT_EQ(Sw(Secured(0xEE, {})), "9000");
  const Bytes fcp = card::EncodeFcp(Transparent(0x0101, 0x01));
  Bytes create{0x80, 0xE0, 0x00, 0x00, static_cast<std::uint8_t>(fcp.size())};
  Append(create, View(fcp));
  EXPECT_EQ(Sw(create), "6985");
  EXPECT_EQ(Sw(Secured(0xD4, WriteKeyData(KeyUsage::kMaintenance, 1, Bytes(16, 1)))), "6985");
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("123456"))), "6985");
  EXPECT_EQ(Sw(Secured(0xEE, {})), "6985");
}

TEST_F(CardPersoTest, EndPersonalisation_wrongMac_answers6988AndStaysInPersonalisation) {
  Bytes apdu = Secured(0xEE, {});
  apdu.back() ^= 0x01;
  EXPECT_EQ(Sw(apdu), "6988");
  EXPECT_EQ(card().Inspect().lifecycle, card::Lifecycle::kPersonalisation);
}

TEST_F(CardPersoTest, EndPersonalisation_purseWithoutLogOrPin_answers6985) {
  EXPECT_EQ(CreateFile(DfSpec(0x1001, HexToBytes("D15600000503"), true)), "9000");
  EXPECT_EQ(CreateFile(Transparent(0x0015, 0x15, 30)), "9000");
  EXPECT_EQ(Sw(Secured(0xEE, {})), "6985");  // no log, no PIN
  card::FileSpec log =
      EfSpec(FileType::kCyclic, 0x0018, 0x18, AccessCondition::Free(), AccessCondition::Never());
  log.record_length = 23;
  log.record_count = 10;
  EXPECT_EQ(CreateFile(log), "9000");
  EXPECT_EQ(Sw(Secured(0xEE, {})), "6985");  // no PIN
  EXPECT_EQ(Sw(Secured(0xD8, SetPinData("123456"))), "9000");
  EXPECT_EQ(Sw(Secured(0xEE, {})), "9000");
}

TEST_F(CardPersoTest, EndPersonalisation_wrongLengthOrP1P2_isRefused) {
  EXPECT_EQ(Sw(Secured(0xEE, Bytes(2, 0))), "6700");
  EXPECT_EQ(Sw(Secured(0xEE, {}, 0, 1)), "6A86");
}

TEST_F(CardPersoTest, Personalisation_writesContentsFreelyButReadsFollowTheRules) {
  card::FileSpec spec = EfSpec(FileType::kTransparent, 0x0101, 0x01, AccessCondition::Pin(),
                               AccessCondition::Never());
  spec.size = 4;
  EXPECT_EQ(CreateFile(spec), "9000");
  EXPECT_EQ(Sw("00D6000002ABCD"), "9000");
  EXPECT_EQ(Sw("00B0810004"), "6982");
}

// ---- Standard profile, builder and runner ------------------------------------------------------

TEST(CardStandardProfileTest, StandardLayout_badHolderData_isAnError) {
  card::HolderData h = TestHolder();
  h.asn = Bytes(9, 1);
  EXPECT_FALSE(card::StandardLayout(h).ok());
  h = TestHolder();
  h.name_gbk = Bytes(21, 'A');
  EXPECT_FALSE(card::StandardLayout(h).ok());
  h = TestHolder();
  h.pin = "12345";
  EXPECT_FALSE(card::StandardLayout(h).ok());
  h = TestHolder();
  h.expiry_date = Date{2024, 2, 30};
  EXPECT_FALSE(card::StandardLayout(h).ok());
  h = TestHolder();
  h.designated_facilities = {"1", "2", "3", "4"};
  EXPECT_FALSE(card::StandardLayout(h).ok());
}

TEST(CardStandardProfileTest, PersonalisedCard_hasTheCardProfileLayout) {
  TestCard c = MakePersonalisedCard();
  const card::CardSummary s = c.card->Inspect();
  std::vector<std::string> paths;
  for (const auto& f : s.files) paths.push_back(f.path);
  EXPECT_EQ(paths, (std::vector<std::string>{
                       "3F00", "3F00/2F00", "3F00/DF01", "3F00/DF01/0001", "3F00/1001",
                       "3F00/1001/0015", "3F00/1001/0016", "3F00/1001/0018", "3F00/DDF1",
                       "3F00/DDF1/EF05", "3F00/DDF1/EF06", "3F00/DDF1/EF07", "3F00/DDF1/EF08"}));
  EXPECT_EQ(s.lifecycle, card::Lifecycle::kOperational);
  EXPECT_EQ(s.files[4].keys.size(), 8u);
  EXPECT_EQ(s.files[8].keys.size(), 2u);
  ASSERT_EQ(s.purses.size(), 1u);
  EXPECT_EQ(ToHex(View(s.purses[0].asn)), ToHex(View(TestAsn())));
  EXPECT_EQ(s.purses[0].ep.max_balance, 100000u);
}

TEST(CardStandardProfileTest, RunPersonalisation_onAnIssuedCard_stopsAtTheFirstRefusal) {
  TestCard c = MakePersonalisedCard();
  auto layout = card::StandardLayout(TestHolder());
  auto keys = TestWrapper();
  auto script = card::BuildPersonalisation(*layout, keys);
  ASSERT_TRUE(script.ok());
  const Status run = card::RunPersonalisation(*script, keys, *c.card);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.error().message.find("step 2 of"), std::string::npos) << run.error().message;
  EXPECT_NE(run.error().message.find("6985"), std::string::npos) << run.error().message;
}

TEST(CardStandardProfileTest, RunPersonalisation_withAnotherTransportKey_stopsAtWriteKey) {
  TestCard c = MakeBlankCard();
  auto layout = card::StandardLayout(TestHolder());
  auto keys =
      card::ClearKeyWrapper::FromMasterKeys(Bytes(16, 0x42), TestMasterKeys(), View(TestAsn()));
  auto script = card::BuildPersonalisation(*layout, *keys);
  ASSERT_TRUE(script.ok());
  const Status run = card::RunPersonalisation(*script, *keys, *c.card);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.error().message.find("WRITE KEY"), std::string::npos) << run.error().message;
  EXPECT_NE(run.error().message.find("6988"), std::string::npos) << run.error().message;
  // A half-personalised card can not pay.
  EXPECT_EQ(SwHex(Send(*c.card, "00A4040006D15600000503").sw), "9000");
  EXPECT_EQ(SwHex(Send(*c.card, "805C000204").sw), "6985");
}

TEST(CardStandardProfileTest, BuildPersonalisation_missingKey_isAnError) {
  auto layout = card::StandardLayout(TestHolder());
  card::ClearKeyWrapper keys(TestTransportKey(), {});
  const auto script = card::BuildPersonalisation(*layout, keys);
  ASSERT_FALSE(script.ok());
  EXPECT_NE(script.error().message.find("purchase"), std::string::npos);
}

TEST(CardStandardProfileTest, Script_neverCarriesAClearKeyOrPin) {
  auto layout = card::StandardLayout(TestHolder());
  auto keys = TestWrapper();
  auto script = card::BuildPersonalisation(*layout, keys);
  ASSERT_TRUE(script.ok());
  std::string all;
  for (const auto& step : script->steps) all += ToHex(View(step.command.Serialize()));
  for (const auto& [name, master] : TestMasterKeys()) {
    EXPECT_EQ(all.find(ToHex(View(CardKey(name)))), std::string::npos) << name;
  }
  EXPECT_EQ(all.find("123456"), std::string::npos);
}

TEST(CardStandardProfileTest, RunPersonalisation_mutedCard_saysSo) {
  card::PersonalisationScript script;
  script.steps.push_back(
      card::ScriptStep{"SELECT MF", iso7816::CommandApdu::Case1(0x00, 0xA4, 0x00, 0x00)});
  auto keys = TestWrapper();
  const Status run = card::RunPersonalisation(script, keys, [](ByteView) { return Bytes{}; });
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.error().message.find("no answer"), std::string::npos);
}

}  // namespace
}  // namespace medcard::card_test
