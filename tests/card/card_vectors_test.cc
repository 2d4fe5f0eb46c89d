// The known-answer vectors of tests/data/test-vectors.json replayed through a real card: a card
// personalised with the vector's (already diversified) keys and a random source fixed to the
// vector's random must produce and accept exactly the vector's MAC1, MAC2 and TAC.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "card_test_util.h"

namespace medcard::card_test {
namespace {

nlohmann::json Vectors() {
  std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/test-vectors.json");
  EXPECT_TRUE(in.good()) << "cannot read test-vectors.json";
  return nlohmann::json::parse(in)["vectors"];
}

std::vector<nlohmann::json> VectorsOf(const std::string& algorithm) {
  std::vector<nlohmann::json> out;
  for (const auto& v : Vectors()) {
    if (v["algorithm"] == algorithm) out.push_back(v);
  }
  EXPECT_FALSE(out.empty()) << "no " << algorithm << " vector";
  return out;
}

Bytes Hex(const nlohmann::json& v, const char* field) {
  return HexToBytes(v[field].get<std::string>());
}

// The standard test card, except for the keys given here (card keys by master-key name).
TestCard CardWithKeys(const std::map<std::string, Bytes>& overrides, Bytes random,
                      const std::function<void(card::internal::CardState&)>& edit = {}) {
  std::map<std::string, Bytes> keys;
  for (const auto& [name, master] : TestMasterKeys()) keys[name] = CardKey(name);
  for (const auto& [name, key] : overrides) keys[name] = key;
  card::ClearKeyWrapper wrapper(TestTransportKey(), keys);
  auto layout = card::StandardLayout(TestHolder());
  TestCard c = MakeCardWithLayout(*layout, wrapper, card::CardOptions{FixedRandom(random)});
  if (!edit) return c;
  return OpenCard(EditImage(c.medium->SurvivingContent(), edit),
                  card::CardOptions{FixedRandom(random)});
}

TEST(CardVectorsTest, LoadVectors_cardAnswersMac1AcceptsMac2AndAnswersTheTac) {
  for (const auto& v : VectorsOf("load")) {
    SCOPED_TRACE(v["name"].get<std::string>());
    const std::uint8_t type = Hex(v, "type")[0];
    const bool ed = type == card::kTxnEdLoad;
    const std::uint32_t old_balance = ReadU32(View(Hex(v, "oldBalance")));
    const std::uint16_t serial = ReadU16(View(Hex(v, "onlineSerial")));
    std::map<std::string, Bytes> keys = {{"load", Hex(v, "DLK")}};
    if (v.contains("DTK")) keys["tac"] = Hex(v, "DTK");
    TestCard c = CardWithKeys(keys, Hex(v, "random"), [&](card::internal::CardState& s) {
      auto& wallet = ed ? FileByFid(s, 0x1001).purse->ed : FileByFid(s, 0x1001).purse->ep;
      wallet.balance = old_balance;
      wallet.online_serial = serial;
    });
    SelectAdf(*c.card);
    const Bytes init =
        Concat({View(HexToBytes("805000")), View(Bytes{ed ? std::uint8_t{1} : std::uint8_t{2}}),
                View(HexToBytes("0B01")), View(Hex(v, "amount")), View(Hex(v, "termNo")),
                View(HexToBytes("10"))});
    const Answer a = Send(*c.card, init);
    ASSERT_EQ(SwHex(a.sw), "9000");
    EXPECT_EQ(ToHex(View(a.data).subspan(0, 4)), v["oldBalance"].get<std::string>());
    EXPECT_EQ(ToHex(View(a.data).subspan(4, 2)), v["onlineSerial"].get<std::string>());
    EXPECT_EQ(ToHex(View(a.data).subspan(8, 4)), v["random"].get<std::string>());
    EXPECT_EQ(ToHex(View(a.data).subspan(12, 4)), v["MAC1"].get<std::string>());
    const Bytes credit =
        Concat({View(HexToBytes("805200000B")), View(Hex(v, "date")), View(Hex(v, "time")),
                View(Hex(v, "MAC2")), View(HexToBytes("04"))});
    const Answer r = Send(*c.card, credit);
    ASSERT_EQ(SwHex(r.sw), "9000");
    if (v.contains("TAC")) {
      EXPECT_EQ(ToHex(View(r.data)), v["TAC"].get<std::string>());
    }
    if (v.contains("newBalance")) {
      const card::PurseSummary p = c.card->Inspect().purses.at(0);
      EXPECT_EQ((ed ? p.ed : p.ep).balance, ReadU32(View(Hex(v, "newBalance"))));
    }
  }
}

TEST(CardVectorsTest, PurchaseVectors_cardAcceptsMac1AndAnswersMac2AndTac) {
  for (const auto& v : VectorsOf("purchase")) {
    SCOPED_TRACE(v["name"].get<std::string>());
    const std::uint8_t type = Hex(v, "type")[0];
    // The card does ED (05) and EP (06) purchases; a composite (09) vector still pins MAC2,
    // which covers the amount only, when replayed as an EP purchase.
    const bool card_type = type == card::kTxnEdPurchase || type == card::kTxnEpPurchase;
    const bool ed = type == card::kTxnEdPurchase;
    const std::uint32_t amount = ReadU32(View(Hex(v, "amount")));
    const std::uint16_t serial = ReadU16(View(Hex(v, "offlineSerial")));
    std::map<std::string, Bytes> keys = {{"purchase", Hex(v, "DPK")}};
    if (v.contains("DTK")) keys["tac"] = Hex(v, "DTK");
    TestCard c = CardWithKeys(keys, Hex(v, "random"), [&](card::internal::CardState& s) {
      auto& wallet = ed ? FileByFid(s, 0x1001).purse->ed : FileByFid(s, 0x1001).purse->ep;
      wallet.balance = amount;
      wallet.offline_serial = serial;
    });
    SelectAdf(*c.card);
    const Bytes init =
        Concat({View(HexToBytes("805001")), View(Bytes{ed ? std::uint8_t{1} : std::uint8_t{2}}),
                View(HexToBytes("0B01")), View(Hex(v, "amount")), View(Hex(v, "termNo")),
                View(HexToBytes("0F"))});
    const Answer a = Send(*c.card, init);
    ASSERT_EQ(SwHex(a.sw), "9000");
    EXPECT_EQ(ToHex(View(a.data).subspan(4, 2)), v["offlineSerial"].get<std::string>());
    EXPECT_EQ(ToHex(View(a.data).subspan(11, 4)), v["random"].get<std::string>());
    Bytes mac1;
    if (card_type && v.contains("MAC1")) {
      mac1 = Hex(v, "MAC1");
    } else {
      const Bytes sespk = SessionKeyForPurchase(View(Hex(v, "DPK")), View(Hex(v, "random")), serial,
                                                View(Hex(v, "termTxnSerial")));
      EXPECT_EQ(ToHex(View(sespk)), v["SESPK"].get<std::string>());
      mac1 = PurchaseMac1(View(sespk), amount, card::kTxnEpPurchase, View(Hex(v, "termNo")),
                          View(Hex(v, "date")), View(Hex(v, "time")));
    }
    const Bytes debit =
        Concat({View(HexToBytes("805401000F")), View(Hex(v, "termTxnSerial")), View(Hex(v, "date")),
                View(Hex(v, "time")), View(mac1), View(HexToBytes("08"))});
    const Answer r = Send(*c.card, debit);
    ASSERT_EQ(SwHex(r.sw), "9000");
    EXPECT_EQ(ToHex(View(r.data).subspan(4, 4)), v["MAC2"].get<std::string>());
    if (card_type && v.contains("TAC")) {
      EXPECT_EQ(ToHex(View(r.data).subspan(0, 4)), v["TAC"].get<std::string>());
    }
  }
}

TEST(CardVectorsTest, ExternalAuthenticateVector_cardAcceptsTheCryptogram) {
  for (const auto& v : VectorsOf("external-authenticate")) {
    card::CardLayout layout;
    layout.mf.keys = {card::KeySpec{"ext", card::KeyUsage::kExternalAuth, 1, 1, 3}};
    card::ClearKeyWrapper keys(TestTransportKey(), {{"ext", Hex(v, "key")}});
    TestCard c =
        MakeCardWithLayout(layout, keys, card::CardOptions{FixedRandom(Hex(v, "challenge"))});
    EXPECT_EQ(ToHex(View(Send(*c.card, "0084000004").data)), v["challenge"].get<std::string>());
    EXPECT_EQ(
        SwHex(
            Send(*c.card, Concat({View(HexToBytes("0082000108")), View(Hex(v, "cryptogram"))})).sw),
        "9000");
  }
}

TEST(CardVectorsTest, SecureMessagingVectors_cardAcceptsTheTraceCommands) {
  for (const auto& v : VectorsOf("mac16-iv")) {
    SCOPED_TRACE(v["name"].get<std::string>());
    const Bytes data = Hex(v, "data");
    TestCard c = CardWithKeys({{"maintenance", Hex(v, "key")}}, Hex(v, "iv"));
    SelectAdf(*c.card, false);
    EXPECT_EQ(ToHex(View(Send(*c.card, "0084000004").data)),
              v["iv"].get<std::string>().substr(0, 8));
    const Answer a = Send(*c.card, Concat({View(data), View(Hex(v, "MAC"))}));
    EXPECT_EQ(SwHex(a.sw), "9000");
    if (data[1] == 0xD6) {  // UPDATE BINARY: the file now holds the data
      const Answer read = Send(*c.card, Bytes{0x00, 0xB0, data[2], data[3], 0x00});
      EXPECT_EQ(ToHex(View(read.data)), ToHex(View(data).subspan(5)));
    }
    if (data[1] == 0x1E) {  // APPLICATION BLOCK
      EXPECT_EQ(SwHex(Send(*c.card, "00A4040006D15600000503").sw), "6A81");
    }
  }
}

TEST(CardVectorsTest, DiversifyVector_clearKeyWrapperDerivesTheCardKey) {
  for (const auto& v : VectorsOf("diversify")) {
    const Bytes asn = Concat({View(HexToBytes("0000")), View(Hex(v, "factor"))});
    auto wrapper = card::ClearKeyWrapper::FromMasterKeys(TestTransportKey(),
                                                         {{"k", Hex(v, "masterKey")}}, View(asn));
    ASSERT_TRUE(wrapper.ok());
    EXPECT_EQ(ToHex(View(*wrapper->CardKey("k"))), v["derivedKey"].get<std::string>());
  }
}

}  // namespace
}  // namespace medcard::card_test
