// GET CHALLENGE, EXTERNAL/INTERNAL AUTHENTICATE, VERIFY, CHANGE/RELOAD PIN, PIN UNBLOCK,
// APPLICATION BLOCK/UNBLOCK, CARD BLOCK, and key locking after MAC failures.
#include <gtest/gtest.h>

#include <algorithm>

#include "card_test_util.h"
#include "crypto/crypto.h"

namespace medcard::card_test {
namespace {

using card::KeyUsage;

const card::FileSummary& FileAt(const card::CardSummary& s, const std::string& path) {
  const auto it = std::find_if(s.files.begin(), s.files.end(),
                               [&](const card::FileSummary& f) { return f.path == path; });
  if (it == s.files.end()) {
    ADD_FAILURE() << "no file " << path;
    return s.files.front();
  }
  return *it;
}

const card::KeySummary& AdfKey(const card::CardSummary& s, KeyUsage usage) {
  for (const card::KeySummary& k : FileAt(s, "3F00/1001").keys) {
    if (k.usage == usage) return k;
  }
  ADD_FAILURE() << "no key";
  return FileAt(s, "3F00/1001").keys.front();
}

class CardSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
    ASSERT_TRUE(c_.card);
  }
  card::Card& card() { return *c_.card; }
  std::string Sw(std::string_view apdu) { return SwHex(Send(card(), apdu).sw); }
  std::string SendSw(const Bytes& apdu) { return SwHex(Send(card(), apdu).sw); }
  std::string SmSw(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                   const Bytes& data, const std::string& key) {
    return SendSw(SmCommand(card(), cla, ins, p1, p2, data, View(CardKey(key))));
  }
  int PinTriesLeft() { return card().Inspect().purses.at(0).pin->tries_left; }
  TestCard c_;
};

// ---- GET CHALLENGE ---------------------------------------------------------------------------

TEST_F(CardSecurityTest, GetChallenge_fourOrEightBytes_answersThatManyRandomBytes) {
  const Answer four = Send(card(), "0084000004");
  const Answer eight = Send(card(), "0084000008");
  EXPECT_EQ(SwHex(four.sw), "9000");
  EXPECT_EQ(four.data.size(), 4u);
  EXPECT_EQ(eight.data.size(), 8u);
  EXPECT_NE(ToHex(View(four.data)), ToHex(View(eight.data)).substr(0, 8));
}

// ---- GET DATA (chip serial, for the personalisation station) -------------------------------

TEST_F(CardSecurityTest, GetData_chipSerial_answersTheManufacturedSerial) {
  const Answer a = Send(card(), "80CA000108");
  EXPECT_EQ(SwHex(a.sw), "9000");
  EXPECT_EQ(a.data, card().Inspect().chip_serial);
  EXPECT_EQ(a.data.size(), 8u);
}

TEST_F(CardSecurityTest, GetData_unknownTagOrNoLe_isRefused) {
  EXPECT_EQ(Sw("80CA000208"), "6A88");
  EXPECT_EQ(Sw("80CA0001"), "6700");
  EXPECT_EQ(Sw("80CA000104"), "6C08");
}

TEST_F(CardSecurityTest, GetChallenge_otherLe_answers6700) {
  EXPECT_EQ(Sw("0084000002"), "6700");
  EXPECT_EQ(Sw("0084000000"), "6700");
  EXPECT_EQ(Sw("00840000"), "6700");
}

TEST_F(CardSecurityTest, GetChallenge_nonZeroP1P2_answers6A86) {
  EXPECT_EQ(Sw("0084010004"), "6A86");
  EXPECT_EQ(Sw("0084000104"), "6A86");
}

TEST_F(CardSecurityTest, Challenge_anyOtherCommandInBetween_invalidatesIt) {
  SelectAdf(card(), false);
  const Answer challenge = Send(card(), "0084000004");
  Bytes apdu = HexToBytes("04D6960006C1C2");
  Append(apdu, View(SmMac(View(CardKey("maintenance")), View(apdu), View(challenge.data))));
  EXPECT_EQ(Sw("00B0950001"), "9000");
  EXPECT_EQ(SendSw(apdu), "6984");
}

// ---- EXTERNAL / INTERNAL AUTHENTICATE --------------------------------------------------------

class CardAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    card::CardLayout layout;
    layout.mf.keys = {card::KeySpec{"ext", KeyUsage::kExternalAuth, 1, 1, 3},
                      card::KeySpec{"int", KeyUsage::kInternalAuth, 2, 1, 0}};
    card::ClearKeyWrapper keys(TestTransportKey(), {{"ext", ext_}, {"int", int_}});
    c_ = MakeCardWithLayout(layout, keys, card::CardOptions{CountingRandom()});
  }
  std::string Sw(std::string_view apdu) { return SwHex(Send(*c_.card, apdu).sw); }
  Bytes Cryptogram(ByteView key, const Bytes& challenge) {
    Bytes block = challenge;
    block.resize(8, 0);
    return crypto::BlockCipher::Des(key)->EncryptEcb(View(block));
  }
  std::string Authenticate(bool right) {
    Bytes cryptogram = Cryptogram(View(ext_), Send(*c_.card, "0084000004").data);
    if (!right) cryptogram[0] ^= 0x01;
    return SwHex(Send(*c_.card, Concat({View(HexToBytes("0082000108")), View(cryptogram)})).sw);
  }
  Bytes ext_ = HexToBytes("FFFFFFFFFFFFFFFF0000000000000000");
  Bytes int_ = HexToBytes("0123456789ABCDEF");
  TestCard c_;
};

TEST_F(CardAuthTest, ExternalAuthenticate_rightCryptogram_answers9000) {
  EXPECT_EQ(Authenticate(true), "9000");
}

TEST_F(CardAuthTest, ExternalAuthenticate_eightByteChallenge_isTheWholeBlock) {
  const Bytes challenge = Send(*c_.card, "0084000008").data;
  const Bytes cryptogram = Cryptogram(View(ext_), challenge);
  EXPECT_EQ(SwHex(Send(*c_.card, Concat({View(HexToBytes("0082000108")), View(cryptogram)})).sw),
            "9000");
}

TEST_F(CardAuthTest, ExternalAuthenticate_wrongCryptogram_answers63CxThenLocks) {
  EXPECT_EQ(Authenticate(false), "63C2");
  EXPECT_EQ(Authenticate(false), "63C1");
  EXPECT_EQ(Authenticate(false), "63C0");
  EXPECT_EQ(Authenticate(true), "6983");
}

TEST_F(CardAuthTest, ExternalAuthenticate_rightCryptogram_resetsTheCount) {
  EXPECT_EQ(Authenticate(false), "63C2");
  EXPECT_EQ(Authenticate(true), "9000");
  EXPECT_EQ(Authenticate(false), "63C2");
}

TEST_F(CardAuthTest, ExternalAuthenticate_withoutChallenge_answers6984) {
  EXPECT_EQ(Sw("00820001080102030405060708"), "6984");
}

TEST_F(CardAuthTest, ExternalAuthenticate_unknownKey_answers6A88) {
  Send(*c_.card, "0084000004");
  EXPECT_EQ(Sw("00820009080102030405060708"), "6A88");
}

TEST_F(CardAuthTest, ExternalAuthenticate_wrongLengthOrP1_isRefused) {
  EXPECT_EQ(Sw("008200010401020304"), "6700");
  EXPECT_EQ(Sw("00820101080102030405060708"), "6A86");
}

TEST_F(CardAuthTest, InternalAuthenticate_answersTheRandomEncipheredWithTheKey) {
  const Answer a = Send(*c_.card, "00880002081122334455667788");
  EXPECT_EQ(SwHex(a.sw), "9000");
  EXPECT_EQ(
      ToHex(View(a.data)),
      ToHex(View(
          crypto::BlockCipher::Des(View(int_))->EncryptEcb(View(HexToBytes("1122334455667788"))))));
}

TEST_F(CardAuthTest, InternalAuthenticate_shortLe_answers6C08) {
  EXPECT_EQ(Sw("0088000208112233445566778804"), "6C08");
}

TEST_F(CardAuthTest, InternalAuthenticate_unknownKeyOrWrongLength_isRefused) {
  EXPECT_EQ(Sw("00880001081122334455667788"), "6A88");
  EXPECT_EQ(Sw("008800020411223344"), "6700");
}

// ---- VERIFY -----------------------------------------------------------------------------------

TEST_F(CardSecurityTest, Verify_rightPin_answers9000) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("0020000003123456"), "9000");
}

TEST_F(CardSecurityTest, Verify_wrongPin_answers63CxWithTriesLeftAndPersistsTheCount) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("0020000003654321"), "63C2");
  EXPECT_EQ(PinTriesLeft(), 2);
  TestCard reopened = OpenCard(c_.medium->SurvivingContent());
  EXPECT_EQ(reopened.card->Inspect().purses.at(0).pin->tries_left, 2);
}

TEST_F(CardSecurityTest, Verify_threeWrongPins_blockThePinEvenForTheRightOne) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("0020000003654321"), "63C2");
  EXPECT_EQ(Sw("0020000003654321"), "63C1");
  EXPECT_EQ(Sw("0020000003654321"), "63C0");
  EXPECT_EQ(Sw("0020000003123456"), "6983");
  EXPECT_EQ(Sw("0020000003654321"), "6983");
}

TEST_F(CardSecurityTest, Verify_rightPin_resetsTheTryCounter) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("0020000003654321"), "63C2");
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  EXPECT_EQ(PinTriesLeft(), 3);
  EXPECT_EQ(Sw("0020000003654321"), "63C2");
}

TEST_F(CardSecurityTest, Verify_withoutData_answersTheState) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("00200000"), "63C3");
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  EXPECT_EQ(Sw("00200000"), "9000");
}

TEST_F(CardSecurityTest, Verify_shorterPin_isAWrongPin) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("002000000212FF"), "6A80");  // padding must not be a whole byte
  EXPECT_EQ(Sw("00200000021234"), "63C2");
}

TEST_F(CardSecurityTest, Verify_notBcd_answers6A80AndCostsNoTry) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("00200000031234A6"), "6A80");
  EXPECT_EQ(PinTriesLeft(), 3);
}

TEST_F(CardSecurityTest, Verify_wrongLengthOrP1P2_isRefusedAndCostsNoTry) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("00200000071234561234561F"), "6700");
  EXPECT_EQ(Sw("002000000112"), "6700");
  EXPECT_EQ(Sw("0020000103123456"), "6A86");
  EXPECT_EQ(PinTriesLeft(), 3);
}

TEST_F(CardSecurityTest, Verify_inADfWithoutPin_answers6A88) {
  EXPECT_EQ(Sw("0020000003123456"), "6A88");
}

// ---- CHANGE PIN / RELOAD PIN / PIN UNBLOCK -----------------------------------------------------

TEST_F(CardSecurityTest, ChangePin_rightOldPin_replacesIt) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("805E010007123456FF654321"), "9000");
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("0020000003123456"), "63C2");
  EXPECT_EQ(Sw("0020000003654321"), "9000");
}

TEST_F(CardSecurityTest, ChangePin_wrongOldPin_answers63CxAndKeepsThePin) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("805E010007111111FF654321"), "63C2");
  EXPECT_EQ(Sw("0020000003123456"), "9000");
}

TEST_F(CardSecurityTest, ChangePin_withoutSeparatorOrBadNewPin_answers6A80) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("805E010006123456654321"), "6A80");
  EXPECT_EQ(Sw("805E010006123456FF6543"), "6A80");  // 4-digit new PIN
  EXPECT_EQ(PinTriesLeft(), 3);
}

TEST_F(CardSecurityTest, ChangePin_whenBlocked_answers6983) {
  SelectAdf(card(), false);
  for (int i = 0; i < 3; ++i) Sw("0020000003654321");
  EXPECT_EQ(Sw("805E010007123456FF654321"), "6983");
}

TEST_F(CardSecurityTest, ChangePin_wrongLengthOrP2_isRefused) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("805E0100041234FF56"), "6700");
  EXPECT_EQ(Sw("805E010107123456FF654321"), "6A86");
  EXPECT_EQ(Sw("805E020007123456FF654321"), "6A86");
}

Bytes ReloadPin(const std::string& pin_hex, bool right_mac = true) {
  const Bytes pin = HexToBytes(pin_hex);
  const Bytes drpk = CardKey("pin_reload");
  const Bytes key = std::move(crypto::TacKey(View(drpk))).value();
  Bytes mac = Mac4(View(key), View(pin));
  if (!right_mac) mac[0] ^= 0x01;
  Bytes apdu{0x80, 0x5E, 0x00, 0x00, static_cast<std::uint8_t>(pin.size() + 4)};
  Append(apdu, View(pin));
  Append(apdu, View(mac));
  return apdu;
}

TEST_F(CardSecurityTest, ReloadPin_withTheIssuerMac_setsThePinAndUnblocksIt) {
  SelectAdf(card(), false);
  for (int i = 0; i < 3; ++i) Sw("0020000003654321");
  EXPECT_EQ(SendSw(ReloadPin("778899")), "9000");
  EXPECT_EQ(PinTriesLeft(), 3);
  EXPECT_EQ(Sw("0020000003778899"), "9000");
}

TEST_F(CardSecurityTest, ReloadPin_wrongMac_answers9302AndChangesNothingButTheCount) {
  SelectAdf(card(), false);
  EXPECT_EQ(SendSw(ReloadPin("778899", false)), "9302");
  EXPECT_EQ(Sw("0020000003123456"), "9000");
  EXPECT_EQ(AdfKey(card().Inspect(), KeyUsage::kPinReload).error_count, 1);
}

TEST_F(CardSecurityTest, ReloadPin_threeWrongMacs_lockTheKey) {
  SelectAdf(card(), false);
  EXPECT_EQ(SendSw(ReloadPin("778899", false)), "9302");
  EXPECT_EQ(SendSw(ReloadPin("778899", false)), "9302");
  EXPECT_EQ(SendSw(ReloadPin("778899", false)), "9302");
  EXPECT_EQ(SendSw(ReloadPin("778899")), "6983");
  EXPECT_TRUE(AdfKey(card().Inspect(), KeyUsage::kPinReload).locked);
}

TEST_F(CardSecurityTest, ReloadPin_badPinOrLength_isRefused) {
  SelectAdf(card(), false);
  EXPECT_EQ(SendSw(ReloadPin("7788")), "6A80");
  EXPECT_EQ(Sw("805E00000501020304"), "6700");
}

Bytes PinBlock(ByteView key, const std::string& pin_hex) {
  Bytes block{static_cast<std::uint8_t>(pin_hex.size() / 2)};
  Append(block, View(HexToBytes(pin_hex)));
  block.push_back(0x80);
  block.resize(8, 0x00);
  return crypto::BlockCipher::Des(key)->EncryptEcb(View(block));
}

TEST_F(CardSecurityTest, PinUnblock_withTheIssuerMac_setsThePinAndResetsTries) {
  SelectAdf(card(), false);
  for (int i = 0; i < 3; ++i) Sw("0020000003654321");
  const Bytes dpuk = CardKey("pin_unblock");
  EXPECT_EQ(SmSw(0x84, 0x24, 0x00, 0x00, PinBlock(View(dpuk), "123456"), "pin_unblock"), "9000");
  EXPECT_EQ(PinTriesLeft(), 3);
  EXPECT_EQ(Sw("0020000003123456"), "9000");
}

TEST_F(CardSecurityTest, PinUnblock_wrongMac_answers6988AndThePinStaysBlocked) {
  SelectAdf(card(), false);
  for (int i = 0; i < 3; ++i) Sw("0020000003654321");
  const Bytes dpuk = CardKey("pin_unblock");
  EXPECT_EQ(SmSw(0x84, 0x24, 0x00, 0x00, PinBlock(View(dpuk), "123456"), "maintenance"), "6988");
  EXPECT_EQ(PinTriesLeft(), 0);
}

TEST_F(CardSecurityTest, PinUnblock_withoutChallenge_answers6984) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("842400000C000000000000000000000000"), "6984");
}

TEST_F(CardSecurityTest, PinUnblock_malformedPinBlock_answers6A80) {
  SelectAdf(card(), false);
  const Bytes dpuk = CardKey("pin_unblock");
  EXPECT_EQ(SmSw(0x84, 0x24, 0x00, 0x00, PinBlock(View(dpuk), "1234"), "pin_unblock"), "6A80");
  Bytes garbage = crypto::BlockCipher::Des(View(dpuk))->EncryptEcb(View(Bytes(8, 0x07)));
  EXPECT_EQ(SmSw(0x84, 0x24, 0x00, 0x00, garbage, "pin_unblock"), "6A80");
}

TEST_F(CardSecurityTest, PinUnblock_wrongLengthOrP1P2_isRefused) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("8424000004000000000000000000"), "6700");
  EXPECT_EQ(Sw("842401000C000000000000000000000000"), "6A86");
}

// ---- APPLICATION BLOCK / UNBLOCK, CARD BLOCK ---------------------------------------------------

TEST_F(CardSecurityTest, ApplicationBlock_temporary_selectAnswersFciAnd6A81) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x00, {}, "maintenance"), "9000");
  const Answer select = Send(card(), "00A4040006D15600000503");
  EXPECT_EQ(SwHex(select.sw), "6A81");
  EXPECT_EQ(select.data.at(0), 0x6F);
  EXPECT_EQ(Sw("00B0950001"), "6A81");
  EXPECT_EQ(Sw("0020000003123456"), "6A81");
  EXPECT_EQ(Sw("805C000204"), "6A81");
  EXPECT_EQ(card().Inspect().purses.at(0).block, card::AppBlock::kTemporary);
}

TEST_F(CardSecurityTest, ApplicationBlock_temporary_otherDfsStillWork) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x00, {}, "maintenance"), "9000");
  SelectSsse(card());
  EXPECT_EQ(Sw("00B2073C00"), "6A83");
  EXPECT_EQ(Sw("00B2203C00"), "9000");
}

TEST_F(CardSecurityTest, ApplicationUnblock_afterTemporaryBlock_makesItUsableAgain) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x00, {}, "maintenance"), "9000");
  EXPECT_EQ(SwHex(Send(card(), "00A4040006D15600000503").sw), "6A81");
  EXPECT_EQ(SmSw(0x84, 0x18, 0x00, 0x00, {}, "maintenance"), "9000");
  SelectAdf(card());
  EXPECT_EQ(Sw("805C000104"), "9000");
}

TEST_F(CardSecurityTest, ApplicationBlock_permanent_answers9303ToEverything) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x01, {}, "maintenance"), "9000");
  EXPECT_EQ(Sw("00A4040006D15600000503"), "9303");
  EXPECT_EQ(Sw("0084000004"), "9303");
  EXPECT_EQ(Sw("841800000400000000"), "9303");
  EXPECT_EQ(Sw("00A40000023F00"), "9000");  // the rest of the card still answers
  EXPECT_EQ(Sw("00A4040006D15600000503"), "9303");
}

TEST_F(CardSecurityTest, ApplicationBlock_wrongMac_answers6988AndDoesNotBlock) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x00, {}, "load"), "6988");
  EXPECT_EQ(card().Inspect().purses.at(0).block, card::AppBlock::kNone);
}

TEST_F(CardSecurityTest, ApplicationBlock_withoutChallenge_answers6984) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("841E00000401020304"), "6984");
}

TEST_F(CardSecurityTest, ApplicationBlock_badP2OrLength_isRefused) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("841E00020401020304"), "6A86");
  EXPECT_EQ(Sw("841E000003010203"), "6700");
}

TEST_F(CardSecurityTest, ApplicationBlock_inTheMf_answers6985) {
  Send(card(), "0084000004");
  EXPECT_EQ(Sw("841E00000401020304"), "6985");
}

TEST_F(CardSecurityTest, ApplicationBlock_inTheSsseWithTheVisitKey_answers6988) {
  // A hospital terminal holds the visit key: it writes visits and cannot block the card.
  SelectSsse(card());
  EXPECT_EQ(SmSw(0x84, 0x1E, 0x00, 0x00, {}, "visit_record"), "6988");
  EXPECT_EQ(SmSw(0x84, 0x16, 0x00, 0x00, {}, "visit_record"), "6988");
}

TEST_F(CardSecurityTest, CardBlock_withTheMaintenanceMac_mutesEveryCommandForever) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x16, 0x00, 0x00, {}, "maintenance"), "9000");
  EXPECT_EQ(Sw("00A40000023F00"), "6A81");
  EXPECT_EQ(Sw("0084000004"), "6A81");
  TestCard reopened = OpenCard(c_.medium->SurvivingContent());
  EXPECT_EQ(reopened.card->Inspect().lifecycle, card::Lifecycle::kBlocked);
  EXPECT_EQ(SwHex(Send(*reopened.card, "00A4040006D15600000503").sw), "6A81");
}

TEST_F(CardSecurityTest, CardBlock_wrongMac_answers6988) {
  SelectAdf(card(), false);
  EXPECT_EQ(SmSw(0x84, 0x16, 0x00, 0x00, {}, "tac"), "6988");
  EXPECT_EQ(card().Inspect().lifecycle, card::Lifecycle::kOperational);
}

TEST_F(CardSecurityTest, CardBlock_badP1P2OrLength_isRefused) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("841601000401020304"), "6A86");
  EXPECT_EQ(Sw("84160000050102030405"), "6700");
}

// ---- MAC failures lock a key until APPLICATION UNBLOCK ------------------------------------------

std::string CreditWithWrongMac(iso7816::Icc& icc) {
  EXPECT_EQ(SwHex(Send(icc,
                       "805000020B0100000064001122334455"
                       "10")
                      .sw),
            "9000");
  return SwHex(Send(icc,
                    "805200000B2024031510203000000000"
                    "04")
                   .sw);
}

TEST_F(CardSecurityTest, MacFailures_threeConsecutive_lockTheKeyUntilApplicationUnblock) {
  SelectAdf(card());
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");  // the third still answers 9302, and locks
  EXPECT_EQ(Sw("805000020B0100000064001122334455"
               "10"),
            "6983");
  EXPECT_TRUE(AdfKey(card().Inspect(), KeyUsage::kLoad).locked);
  EXPECT_EQ(SmSw(0x84, 0x18, 0x00, 0x00, {}, "maintenance"), "9000");
  SelectAdf(card());
  EXPECT_EQ(SwHex(Load(card(), false, 100).sw), "9000");
}

TEST_F(CardSecurityTest, MacFailures_aGoodMacInBetween_resetsTheCount) {
  SelectAdf(card());
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(SwHex(Load(card(), false, 100).sw), "9000");
  EXPECT_EQ(AdfKey(card().Inspect(), KeyUsage::kLoad).error_count, 0);
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_EQ(SwHex(Load(card(), false, 100).sw), "9000");
}

TEST_F(CardSecurityTest, MacFailures_lockOnlyThatKey) {
  SelectAdf(card());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(CreditWithWrongMac(card()), "9302");
  EXPECT_FALSE(AdfKey(card().Inspect(), KeyUsage::kPurchase).locked);
  EXPECT_EQ(Sw("805C000204"), "9000");
}

TEST_F(CardSecurityTest, SmMacFailures_threeConsecutive_lockTheMaintenanceKey) {
  SelectAdf(card(), false);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(SmSw(0x04, 0xD6, 0x96, 0x00, HexToBytes("01"), "load"), "6988");
  }
  EXPECT_EQ(SmSw(0x04, 0xD6, 0x96, 0x00, HexToBytes("01"), "maintenance"), "6983");
  EXPECT_EQ(SmSw(0x84, 0x18, 0x00, 0x00, {}, "maintenance"), "6983");
}

}  // namespace
}  // namespace medcard::card_test
