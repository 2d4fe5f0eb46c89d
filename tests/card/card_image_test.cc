// The card as a device and its persistent image: power, ATR, dead cards, reopening, corrupt
// images, what a command writes, and the read-only inspection.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "card_test_util.h"

namespace medcard::card_test {
namespace {

// A medium content holding `image` as its only (valid) slot.
Bytes MediumWith(ByteView image) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  nvm::FaultInjectionMedium* raw = medium.get();
  auto store = nvm::AtomicImage::Open(std::move(medium));
  EXPECT_TRUE(store.ok());
  EXPECT_TRUE(store->Commit(image).ok());
  return raw->SurvivingContent();
}

TEST(CardDeviceTest, Atr_isT1WithHistoricalBytesNamingMedcardAndAValidTck) {
  const Bytes atr = card::CardAtr();
  ASSERT_GE(atr.size(), 4u);
  EXPECT_EQ(atr[0], 0x3B);
  EXPECT_EQ(atr[2] & 0x0F, 0x01);  // TD1: T=1
  const std::string text(atr.begin(), atr.end());
  EXPECT_NE(text.find("medcard"), std::string::npos);
  std::uint8_t check = 0;
  for (std::size_t i = 1; i < atr.size(); ++i) check ^= atr[i];
  EXPECT_EQ(check, 0);  // TCK makes the XOR of T0..TCK zero
  EXPECT_EQ(atr.size(), 2u + 1u + (atr[1] & 0x0Fu) + 1u);
}

TEST(CardDeviceTest, PowerOn_answersTheAtr) {
  TestCard c = OpenCard(PersonalisedImage());
  EXPECT_EQ(ToHex(View(c.card->PowerOn())), ToHex(View(card::CardAtr())));
  EXPECT_EQ(ToHex(View(c.card->Atr())), ToHex(View(card::CardAtr())));
}

TEST(CardDeviceTest, Transmit_beforePowerOn_answers6F00) {
  auto opened = card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>(PersonalisedImage()));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(SwHex(Send(**opened, "00A40000023F00").sw), "6F00");
  (*opened)->PowerOn();
  EXPECT_EQ(SwHex(Send(**opened, "00A40000023F00").sw), "9000");
  (*opened)->PowerOff();
  EXPECT_EQ(SwHex(Send(**opened, "00A40000023F00").sw), "6F00");
}

TEST(CardDeviceTest, PowerOn_forgetsPinChallengePendingInitializeAndSelection) {
  TestCard c = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
  SelectAdf(*c.card);
  ASSERT_EQ(SwHex(Load(*c.card, false, 100).sw), "9000");
  ASSERT_EQ(SwHex(Send(*c.card,
                       "805000020B0100000064001122334455"
                       "10")
                      .sw),
            "9000");
  const Answer challenge = Send(*c.card, "0084000004");
  c.card->PowerOn();
  EXPECT_EQ(SwHex(Send(*c.card, "805C000204").sw), "6985");  // back in the MF
  EXPECT_EQ(SwHex(Send(*c.card, "00A4040006D15600000503").sw), "9000");
  EXPECT_EQ(SwHex(Send(*c.card, "805C000104").sw), "6982");
  EXPECT_EQ(SwHex(Send(*c.card, "805200000B2024031510203001020304").sw), "6985");
  Bytes apdu = HexToBytes("04D6960006C1C2");
  Append(apdu, View(SmMac(View(CardKey("maintenance")), View(apdu), View(challenge.data))));
  EXPECT_EQ(SwHex(Send(*c.card, apdu).sw), "6984");
}

TEST(CardDeviceTest, DeadCard_afterACutCommit_isMuteAndKeepsNoChangeInMemory) {
  TestCard c = OpenCard(PersonalisedImage());
  SelectAdf(*c.card, false);
  const std::string before = StateJson(*c.card);
  c.medium->CutPowerAtWrite(1);
  const Answer a = Send(*c.card, "0020000003654321");
  EXPECT_TRUE(a.empty);
  EXPECT_TRUE(c.card->dead());
  EXPECT_EQ(StateJson(*c.card), before);
  EXPECT_TRUE(c.card->PowerOn().empty());
  EXPECT_TRUE(c.card->Atr().empty());
  EXPECT_TRUE(Send(*c.card, "00A40000023F00").empty);
  TestCard reopened = OpenCard(c.medium->SurvivingContent());
  EXPECT_EQ(StateJson(*reopened.card), before);
}

TEST(CardImageTest, Reopen_afterTransactions_showsTheSameCard) {
  TestCard c = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
  SelectAdf(*c.card);
  ASSERT_EQ(SwHex(Load(*c.card, true, 7000).sw), "9000");
  ASSERT_EQ(SwHex(Purchase(*c.card, true, 1234).sw), "9000");
  TestCard reopened = OpenCard(c.medium->SurvivingContent());
  EXPECT_EQ(StateJson(*reopened.card), StateJson(*c.card));
  SelectAdf(*reopened.card);
  EXPECT_EQ(ToHex(View(Send(*reopened.card, "805C000104").data)), "00001686");
}

TEST(CardImageTest, Commands_thatChangeNothing_writeNothing) {
  TestCard c = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
  const int writes = c.medium->sector_writes();
  SelectAdf(*c.card);  // right PIN with all tries left: nothing to write
  Send(*c.card, "00B0950000");
  Send(*c.card, "00B201C400");
  Send(*c.card, "805C000104");
  Send(*c.card, "0084000008");
  Send(*c.card,
       "805000020B0100000064001122334455"
       "10");
  Send(*c.card, "00FF000000");
  EXPECT_EQ(c.medium->sector_writes(), writes);
  Send(*c.card, "0020000003654321");
  EXPECT_GT(c.medium->sector_writes(), writes);
}

TEST(CardImageTest, Open_everyTruncationOfARealImage_isAnErrorNeverACrash) {
  const Bytes image = ImageOf(PersonalisedImage());
  for (std::size_t length = 1; length < image.size(); ++length) {
    auto opened = card::Card::Open(
        std::make_unique<nvm::FaultInjectionMedium>(MediumWith(View(image).first(length))));
    EXPECT_FALSE(opened.ok()) << length;
  }
}

TEST(CardImageTest, Open_anyCorruptedByte_isAnErrorOrAWorkingCardNeverACrash) {
  const Bytes image = ImageOf(PersonalisedImage());
  int refused = 0;
  for (std::size_t i = 0; i < image.size(); ++i) {
    Bytes bad = image;
    bad[i] ^= 0xA5;
    auto opened =
        card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>(MediumWith(View(bad))));
    if (!opened.ok()) {
      ++refused;
      continue;
    }
    // Whatever loaded must run commands without crashing.
    card::Card& card = **opened;
    card.PowerOn();
    for (const char* apdu : {"00A4040006D15600000503", "0020000003123456", "805C000104",
                             "00B201C417", "00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "00B2013C00",
                             "805000020B0100000064001122334455"
                             "10"}) {
      EXPECT_GE(card.Transmit(View(HexToBytes(apdu))).size(), 2u);
    }
    card.Inspect();
  }
  EXPECT_GT(refused, 50);
}

TEST(CardImageTest, Open_unknownFormatVersion_isAnErrorNamingTheVersion) {
  Bytes image = ImageOf(PersonalisedImage());
  image[4] = 0x7F;
  auto opened =
      card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>(MediumWith(View(image))));
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("version 127"), std::string::npos)
      << opened.error().message;
}

TEST(CardImageTest, Open_anotherKindOfImage_isAnError) {
  auto opened = card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>(
      MediumWith(View(HexToBytes("5053414D01020304")))));
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("not a medcard card image"), std::string::npos);
}

TEST(CardImageTest, Open_garbageMedium_isAnError) {
  EXPECT_FALSE(
      card::Card::Open(std::make_unique<nvm::FaultInjectionMedium>(Bytes(3000, 0x42))).ok());
}

// ---- Inspection ------------------------------------------------------------------------------

TEST(CardInspectTest, Inspect_neverShowsAKeyThePinOrTheTransportKey) {
  TestCard blank = MakeBlankCard();
  const std::string blank_json = StateJson(*blank.card);
  EXPECT_EQ(blank_json.find(ToHex(View(TestTransportKey()))), std::string::npos);
  TestCard c = OpenCard(PersonalisedImage());
  const std::string json = StateJson(*c.card);
  for (const auto& [name, master] : TestMasterKeys()) {
    EXPECT_EQ(json.find(ToHex(View(CardKey(name)))), std::string::npos) << name;
    EXPECT_EQ(json.find(ToHex(View(CardKey(name))).substr(0, 16)), std::string::npos) << name;
  }
  EXPECT_EQ(json.find("123456"), std::string::npos);
}

TEST(CardInspectTest, Inspect_decodesTheLogBalancesSerialsAndProofs) {
  TestCard c = OpenCard(PersonalisedImage(), card::CardOptions{CountingRandom()});
  SelectAdf(*c.card);
  ASSERT_EQ(SwHex(Load(*c.card, true, 3000).sw), "9000");
  const PurchaseOutcome p = Purchase(*c.card, true, 1000, 42);
  ASSERT_EQ(SwHex(p.sw), "9000");
  const nlohmann::json j = card::ToJson(c.card->Inspect());
  const auto& purse = j["purses"][0];
  EXPECT_EQ(purse["ed"]["balance"], 2000);
  EXPECT_EQ(purse["ed"]["online_serial"], 1);
  EXPECT_EQ(purse["ed"]["offline_serial"], 1);
  EXPECT_EQ(purse["pin"]["tries_left"], 3);
  ASSERT_EQ(purse["log"].size(), 2u);
  EXPECT_EQ(purse["log"][0]["type"], 5);
  EXPECT_EQ(purse["log"][0]["amount"], 1000);
  EXPECT_EQ(purse["log"][0]["terminal"], ToHex(View(kTerminal)));
  EXPECT_EQ(purse["log"][0]["date"], ToHex(View(kDate)));
  EXPECT_EQ(purse["log"][1]["type"], 1);
  EXPECT_EQ(purse["proofs"][0]["tac"], ToHex(View(p.tac)));
  EXPECT_EQ(purse["proofs"][0]["mac2"], ToHex(View(p.mac2)));
  EXPECT_EQ(j["lifecycle"], "operational");
  EXPECT_EQ(j["files"][4]["keys"][0]["usage"], "purchase");
}

TEST(CardInspectTest, Inspect_fileReadOnlyWithPin_hidesItsContents) {
  card::CardLayout layout;
  card::EfLayout ef;
  ef.file = EfSpec(card::FileType::kTransparent, 0x0101, 0x01, card::AccessCondition::Pin(),
                   card::AccessCondition::Never());
  ef.file.size = 4;
  ef.content = HexToBytes("CAFEBABE");
  layout.mf.efs.push_back(ef);
  auto keys = TestWrapper();
  TestCard c = MakeCardWithLayout(layout, keys);
  const card::CardSummary s = c.card->Inspect();
  EXPECT_FALSE(s.files.at(1).readable);
  EXPECT_TRUE(s.files.at(1).content.empty());
  EXPECT_EQ(StateJson(*c.card).find("CAFEBABE"), std::string::npos);
  EXPECT_EQ(card::ToJson(s)["files"][1]["read"], "PIN");
}

}  // namespace
}  // namespace medcard::card_test
