#include "card_test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"

namespace medcard::card_test {

std::map<std::string, Bytes> TestMasterKeys() {
  return {
      {"purchase", HexToBytes("0123456789ABCDEFFEDCBA9876543210")},
      {"load", HexToBytes("11223344556677888877665544332211")},
      {"tac", HexToBytes("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8")},
      {"unload", HexToBytes("C1C2C3C4C5C6C7C8D1D2D3D4D5D6D7D8")},
      {"overdraw", HexToBytes("E1E2E3E4E5E6E7E8F1F2F3F4F5F6F7F8")},
      {"pin_unblock", HexToBytes("0102030405060708090A0B0C0D0E0F10")},
      {"pin_reload", HexToBytes("1112131415161718191A1B1C1D1E1F20")},
      {"maintenance", HexToBytes("2122232425262728292A2B2C2D2E2F30")},
      {"ssse_maintenance", HexToBytes("3132333435363738393A3B3C3D3E3F40")},
      {"visit_record", HexToBytes("4142434445464748494A4B4C4D4E4F50")},
  };
}

Bytes TestTransportKey() { return HexToBytes("5152535455565758595A5B5C5D5E5F60"); }
Bytes TestChipSerial() { return HexToBytes("C0C1C2C3C4C5C6C7"); }
Bytes TestAsn() { return HexToBytes("31410000000000000123"); }

card::HolderData TestHolder() {
  card::HolderData h;
  h.issuer_id = HexToBytes("3141000000000001");
  h.asn = TestAsn();
  h.start_date = Date{2024, 1, 1};
  h.expiry_date = Date{2034, 12, 31};
  h.name_gbk = HexToBytes("D5C5C8FD");  // 张三
  h.id_number = "310101199001011234";
  h.ssse_card_id = "310100D156000005";
  h.ssse_issue_date = Date{2024, 1, 1};
  h.ssse_expiry_date = Date{2034, 12, 31};
  h.ssse_card_number = "A00000001";
  h.social_security_number = "310101199001011234";
  h.ssse_name_gbk = HexToBytes("D5C5C8FD");
  h.birth_date = Date{1990, 1, 1};
  h.employer_code = "310000000000001";
  h.pooling_area = "310100";
  h.designated_facilities = {"H310100001", "H310100002"};
  h.emergency_gbk = {'A', '+'};
  h.pin = std::string(kTestPin);
  return h;
}

std::function<Bytes(std::size_t)> CountingRandom() {
  auto next = std::make_shared<std::uint8_t>(1);
  return [next](std::size_t n) {
    Bytes out(n);
    for (auto& b : out) b = (*next)++;
    return out;
  };
}

std::function<Bytes(std::size_t)> FixedRandom(Bytes fixed) {
  return [fixed](std::size_t n) {
    Bytes out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = fixed[i % fixed.size()];
    return out;
  };
}

TestCard OpenCard(const Bytes& content, card::CardOptions options) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>(content);
  TestCard out;
  out.medium = medium.get();
  auto opened = card::Card::Open(std::move(medium), std::move(options));
  if (!opened.ok()) {
    ADD_FAILURE() << "Card::Open: " << opened.error().message;
    return out;
  }
  out.card = std::move(opened).value();
  out.card->PowerOn();
  return out;
}

TestCard MakeBlankCard(card::CardOptions options) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  TestCard out;
  out.medium = medium.get();
  auto made = card::Card::Manufacture(std::move(medium),
                                      card::ManufactureInfo{TestChipSerial(), TestTransportKey()},
                                      std::move(options));
  if (!made.ok()) {
    ADD_FAILURE() << "Card::Manufacture: " << made.error().message;
    return out;
  }
  out.card = std::move(made).value();
  out.card->PowerOn();
  return out;
}

card::ClearKeyWrapper& TestKeys() {
  static auto* keys = [] {
    auto made = card::ClearKeyWrapper::FromMasterKeys(TestTransportKey(), TestMasterKeys(),
                                                      View(TestAsn()));
    return new card::ClearKeyWrapper(std::move(made).value());
  }();
  return *keys;
}

Bytes CardKey(const std::string& master_key) {
  const Bytes* key = TestKeys().CardKey(master_key);
  if (key == nullptr) {
    ADD_FAILURE() << "no test key " << master_key;
    return Bytes(16, 0);
  }
  return *key;
}

TestCard MakePersonalisedCard(card::CardOptions options, const card::HolderData& holder) {
  TestCard out = MakeBlankCard(std::move(options));
  if (!out.card) return out;
  auto layout = card::StandardLayout(holder);
  if (!layout.ok()) {
    ADD_FAILURE() << layout.error().message;
    return out;
  }
  auto keys =
      card::ClearKeyWrapper::FromMasterKeys(TestTransportKey(), TestMasterKeys(), View(holder.asn));
  auto script = card::BuildPersonalisation(*layout, *keys);
  if (!script.ok()) {
    ADD_FAILURE() << script.error().message;
    return out;
  }
  if (Status run = card::RunPersonalisation(*script, *keys, *out.card); !run.ok()) {
    ADD_FAILURE() << run.error().message;
  }
  out.card->PowerOn();
  return out;
}

const Bytes& PersonalisedImage() {
  static const Bytes* image = [] {
    TestCard c = MakePersonalisedCard();
    return new Bytes(c.medium->SurvivingContent());
  }();
  return *image;
}

Answer Send(iso7816::Icc& icc, const Bytes& apdu) {
  const Bytes r = icc.Transmit(View(apdu));
  Answer a;
  if (r.size() < 2) {
    a.empty = r.empty();
    return a;
  }
  a.data.assign(r.begin(), r.end() - 2);
  a.sw = static_cast<std::uint16_t>((r[r.size() - 2] << 8) | r.back());
  return a;
}

Answer Send(iso7816::Icc& icc, std::string_view hex) {
  auto bytes = FromHex(hex);
  if (!bytes) {
    ADD_FAILURE() << "bad hex in test: " << hex;
    return {};
  }
  return Send(icc, *bytes);
}

std::string SwHex(std::uint16_t sw) {
  const Bytes b = {static_cast<std::uint8_t>(sw >> 8), static_cast<std::uint8_t>(sw)};
  return ToHex(View(b));
}

void SelectAdf(iso7816::Icc& icc, bool verify_pin) {
  EXPECT_EQ(SwHex(Send(icc, "00A4040006D15600000503").sw), "9000");
  if (verify_pin) {
    EXPECT_EQ(SwHex(Send(icc, "0020000003123456").sw), "9000");
  }
}

void SelectSsse(iso7816::Icc& icc) {
  EXPECT_EQ(SwHex(Send(icc, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF").sw), "9000");
}

std::string StateJson(const card::Card& card) { return card::ToJson(card.Inspect()).dump(); }

// ---- Issuer / PSAM side ------------------------------------------------------------------------

namespace {

Bytes U16(std::uint16_t v) {
  Bytes b;
  AppendU16(b, v);
  return b;
}

Bytes U32(std::uint32_t v) {
  Bytes b;
  AppendU32(b, v);
  return b;
}

Bytes Must(Result<Bytes> r) {
  if (!r.ok()) {
    ADD_FAILURE() << r.error().message;
    return Bytes(8, 0);
  }
  return std::move(r).value();
}

}  // namespace

Bytes SessionKeyForLoad(ByteView dlk, ByteView random, std::uint16_t online_serial) {
  return Must(crypto::LoadSessionKey(dlk, random, View(U16(online_serial))));
}

Bytes SessionKeyForPurchase(ByteView dpk, ByteView random, std::uint16_t offline_serial,
                            ByteView terminal_serial) {
  return Must(crypto::PurchaseSessionKey(dpk, random, View(U16(offline_serial)), terminal_serial));
}

Bytes Mac4(ByteView key, ByteView data, ByteView iv) {
  return Must(crypto::PbocMac(key, data, iv));
}

Bytes LoadMac1(ByteView seslk, std::uint32_t balance, std::uint32_t amount, std::uint8_t type,
               ByteView terminal) {
  return Mac4(seslk,
              View(Concat({View(U32(balance)), View(U32(amount)), ByteView(&type, 1), terminal})));
}

Bytes LoadMac2(ByteView seslk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
               ByteView date, ByteView time) {
  return Mac4(seslk, View(Concat({View(U32(amount)), ByteView(&type, 1), terminal, date, time})));
}

Bytes LoadTac(ByteView dtk, std::uint32_t new_balance, std::uint16_t online_serial,
              std::uint32_t amount, std::uint8_t type, ByteView terminal, ByteView date,
              ByteView time) {
  const Bytes key = Must(crypto::TacKey(dtk));
  return Mac4(View(key),
              View(Concat({View(U32(new_balance)), View(U16(online_serial)), View(U32(amount)),
                           ByteView(&type, 1), terminal, date, time})));
}

Bytes PurchaseMac1(ByteView sespk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
                   ByteView date, ByteView time) {
  return Mac4(sespk, View(Concat({View(U32(amount)), ByteView(&type, 1), terminal, date, time})));
}

Bytes PurchaseMac2(ByteView sespk, std::uint32_t amount) { return Mac4(sespk, View(U32(amount))); }

Bytes PurchaseTac(ByteView dtk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
                  ByteView terminal_serial, ByteView date, ByteView time) {
  const Bytes key = Must(crypto::TacKey(dtk));
  return Mac4(
      View(key),
      View(Concat({View(U32(amount)), ByteView(&type, 1), terminal, terminal_serial, date, time})));
}

Bytes SmMac(ByteView key, ByteView header_and_data, ByteView challenge) {
  Bytes iv(challenge.begin(), challenge.end());
  iv.resize(8, 0x00);
  return Mac4(key, header_and_data, View(iv));
}

Bytes SmCommand(iso7816::Icc& icc, std::uint8_t cla, std::uint8_t ins, std::uint8_t p1,
                std::uint8_t p2, const Bytes& data, ByteView key) {
  const Answer challenge = Send(icc, "0084000004");
  EXPECT_EQ(SwHex(challenge.sw), "9000");
  Bytes apdu{cla, ins, p1, p2, static_cast<std::uint8_t>(data.size() + 4)};
  Append(apdu, View(data));
  Append(apdu, View(SmMac(key, View(apdu), View(challenge.data))));
  return apdu;
}

LoadOutcome Load(iso7816::Icc& icc, bool ed, std::uint32_t amount) {
  LoadOutcome out;
  const std::uint8_t type = ed ? card::kTxnEdLoad : card::kTxnEpLoad;
  Bytes init{0x80, 0x50, 0x00, static_cast<std::uint8_t>(ed ? 0x01 : 0x02), 0x0B, 0x01};
  Append(init, View(U32(amount)));
  Append(init, View(kTerminal));
  init.push_back(0x10);
  const Answer a = Send(icc, init);
  out.sw = a.sw;
  if (a.sw != 0x9000) return out;
  EXPECT_EQ(a.data.size(), 16u);
  if (a.data.size() != 16) return out;
  out.old_balance = ReadU32(View(a.data), 0);
  out.serial = ReadU16(View(a.data), 4);
  const ByteView random = View(a.data).subspan(8, 4);
  const Bytes seslk = SessionKeyForLoad(View(CardKey("load")), random, out.serial);
  // The host checks MAC1 before it lets the money go.
  EXPECT_EQ(ToHex(View(a.data).subspan(12, 4)),
            ToHex(View(LoadMac1(View(seslk), out.old_balance, amount, type, View(kTerminal)))));
  out.mac2 = LoadMac2(View(seslk), amount, type, View(kTerminal), View(kDate), View(kTime));
  Bytes credit{0x80, 0x52, 0x00, 0x00, 0x0B};
  Append(credit, View(kDate));
  Append(credit, View(kTime));
  Append(credit, View(out.mac2));
  credit.push_back(0x04);
  const Answer c = Send(icc, credit);
  out.sw = c.sw;
  if (c.sw != 0x9000) return out;
  out.tac = c.data;
  EXPECT_EQ(ToHex(View(out.tac)),
            ToHex(View(LoadTac(View(CardKey("tac")), out.old_balance + amount, out.serial, amount,
                               type, View(kTerminal), View(kDate), View(kTime)))));
  return out;
}

PurchaseOutcome Purchase(iso7816::Icc& icc, bool ed, std::uint32_t amount,
                         std::uint32_t terminal_serial, bool cash) {
  PurchaseOutcome out;
  const std::uint8_t type =
      cash ? card::kTxnCashWithdraw : (ed ? card::kTxnEdPurchase : card::kTxnEpPurchase);
  Bytes init{0x80,
             0x50,
             static_cast<std::uint8_t>(cash ? 0x02 : 0x01),
             static_cast<std::uint8_t>(ed ? 0x01 : 0x02),
             0x0B,
             0x01};
  Append(init, View(U32(amount)));
  Append(init, View(kTerminal));
  init.push_back(0x0F);
  const Answer a = Send(icc, init);
  out.sw = a.sw;
  if (a.sw != 0x9000) return out;
  EXPECT_EQ(a.data.size(), 15u);
  if (a.data.size() != 15) return out;
  out.old_balance = ReadU32(View(a.data), 0);
  out.serial = ReadU16(View(a.data), 4);
  const ByteView random = View(a.data).subspan(11, 4);
  out.terminal_serial = U32(terminal_serial);
  const Bytes sespk = SessionKeyForPurchase(View(CardKey("purchase")), random, out.serial,
                                            View(out.terminal_serial));
  Bytes debit{0x80, 0x54, 0x01, 0x00, 0x0F};
  Append(debit, View(out.terminal_serial));
  Append(debit, View(kDate));
  Append(debit, View(kTime));
  Append(debit,
         View(PurchaseMac1(View(sespk), amount, type, View(kTerminal), View(kDate), View(kTime))));
  debit.push_back(0x08);
  const Answer d = Send(icc, debit);
  out.sw = d.sw;
  if (d.sw != 0x9000) return out;
  EXPECT_EQ(d.data.size(), 8u);
  if (d.data.size() != 8) return out;
  out.tac.assign(d.data.begin(), d.data.begin() + 4);
  out.mac2.assign(d.data.begin() + 4, d.data.end());
  // The PSAM checks MAC2; the host checks the TAC at clearing.
  EXPECT_EQ(ToHex(View(out.mac2)), ToHex(View(PurchaseMac2(View(sespk), amount))));
  EXPECT_EQ(ToHex(View(out.tac)),
            ToHex(View(PurchaseTac(View(CardKey("tac")), amount, type, View(kTerminal),
                                   View(out.terminal_serial), View(kDate), View(kTime)))));
  return out;
}

}  // namespace medcard::card_test
