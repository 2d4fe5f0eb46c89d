// Shared fixtures for the PSAM tests: a PSAM on a fault-injection medium personalised through the
// real personalisation script, APDU helpers and the crypto oracle that recomputes what the PSAM
// should answer.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bcd.h"
#include "common/bytes.h"
#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "nvm/nvm.h"
#include "psam/image.h"
#include "psam/personalize.h"
#include "psam/psam.h"

namespace medcard::psam::testing {

// Test keys (chosen here; never used outside tests).
inline const Bytes kTransportKey = HexToBytes("404142434445464748494A4B4C4D4E4F");
inline const Bytes kPurchaseMasterKeyV1 = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
inline const Bytes kPurchaseMasterKeyV2 = HexToBytes("2B7E151628AED2A6ABF7158809CF4F3C");
inline const Bytes kSettlementKey = HexToBytes("C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0");
inline const Bytes kMaintenanceMasterKey = HexToBytes("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8");
inline const Bytes kVisitRecordMasterKey = HexToBytes("5A5B5C5D5E5F60616263646566676869");

inline const Bytes kChipSerial = HexToBytes("8000000000000042");
inline const Bytes kPsamSerial = HexToBytes("31000000000000001234");
inline const Bytes kTerminalNumber = HexToBytes("110100000088");
inline const Date kValidFrom{2010, 1, 1};
inline const Date kValidTo{2030, 12, 31};

struct Rsp {
  Bytes data;
  std::uint16_t sw = 0;
  bool mute = false;
};

inline Rsp Send(Psam& psam, ByteView apdu) {
  const Bytes raw = psam.Transmit(apdu);
  Rsp r;
  if (raw.empty()) {
    r.mute = true;
    return r;
  }
  EXPECT_GE(raw.size(), 2u);
  r.data.assign(raw.begin(), raw.end() - 2);
  r.sw = static_cast<std::uint16_t>((raw[raw.size() - 2] << 8) | raw.back());
  return r;
}
inline Rsp Send(Psam& psam, const Bytes& apdu) { return Send(psam, View(apdu)); }
inline Rsp SendHex(Psam& psam, std::string_view hex) { return Send(psam, HexToBytes(hex)); }

inline Bytes Apdu(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                  const Bytes& data, std::optional<std::uint32_t> le = std::nullopt) {
  iso7816::CommandApdu c;
  c.cla = cla;
  c.ins = ins;
  c.p1 = p1;
  c.p2 = p2;
  c.data = data;
  c.le = le;
  return c.Serialize();
}

inline Bytes U32(std::uint32_t v) {
  Bytes b;
  AppendU32(b, v);
  return b;
}

inline PsamProfile TestProfile() {
  PsamProfile p;
  p.psam_serial = kPsamSerial;
  p.version = 0x02;
  p.key_type = 0x01;
  p.issuer_data = HexToBytes("5301");
  p.terminal_number = kTerminalNumber;
  p.purchase_key_index = 0x01;
  p.valid_from = kValidFrom;
  p.valid_to = kValidTo;
  p.keys = {
      {KeyHeader{KeyUsage::kPurchase, 0x01, 0x01, kAlgTdes, 3}, "mpk1"},
      {KeyHeader{KeyUsage::kPurchase, 0x01, 0x02, kAlgTdes, 3}, "mpk2"},
      {KeyHeader{KeyUsage::kSettlement, 0x01, 0x01, kAlgTdes, 3}, "settlement"},
      {KeyHeader{KeyUsage::kMaintenance, 0x01, 0x01, kAlgTdes, 3}, "maintenance"},
      {KeyHeader{KeyUsage::kVisitRecord, 0x01, 0x01, kAlgTdes, 3}, "visit"},
  };
  return p;
}

inline ClearKeyWrapper TestWrapper() {
  return ClearKeyWrapper(kTransportKey, {{"mpk1", kPurchaseMasterKeyV1},
                                         {"mpk2", kPurchaseMasterKeyV2},
                                         {"settlement", kSettlementKey},
                                         {"maintenance", kMaintenanceMasterKey},
                                         {"visit", kVisitRecordMasterKey}});
}

// A PSAM with the medium it lives on (the PSAM owns it; the pointer stays valid as long as the
// PSAM does).
struct TestPsam {
  nvm::FaultInjectionMedium* medium = nullptr;
  std::unique_ptr<Psam> psam;
  Psam& operator*() { return *psam; }
  Psam* operator->() { return psam.get(); }
};

inline TestPsam OpenFrom(const Bytes& content) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>(content);
  TestPsam t;
  t.medium = medium.get();
  auto opened = Psam::Open(std::move(medium));
  EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().message);
  if (!opened.ok()) return t;
  t.psam = std::move(opened).value();
  t.psam->PowerOn();
  return t;
}

// What a card reinserted after a power cut would see: the surviving content, powered on.
inline TestPsam Reopen(const TestPsam& t) { return OpenFrom(t.medium->SurvivingContent()); }

inline TestPsam NewPsam() {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  TestPsam t;
  t.medium = medium.get();
  auto made = Psam::Manufacture(std::move(medium), ManufactureInfo{kChipSerial, kTransportKey});
  EXPECT_TRUE(made.ok()) << (made.ok() ? "" : made.error().message);
  if (!made.ok()) return t;
  t.psam = std::move(made).value();
  t.psam->PowerOn();
  return t;
}

inline TestPsam PersonalisedPsam(const PsamProfile& profile = TestProfile()) {
  TestPsam t = NewPsam();
  auto script = BuildPersonalisationScript(profile);
  EXPECT_TRUE(script.ok()) << (script.ok() ? "" : script.error().message);
  ClearKeyWrapper wrapper = TestWrapper();
  const Status st = RunPersonalisationScript(*script, wrapper,
                                             [&](ByteView apdu) { return t.psam->Transmit(apdu); });
  EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().message);
  // As a terminal receives it: freshly powered, nothing selected.
  t.psam->PowerOff();
  t.psam->PowerOn();
  return t;
}

// A PSAM opened from a hand-made state (to reach counters at their maximum, corrupt images...).
inline TestPsam PsamWithState(const internal::State& state) {
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  auto* raw = medium.get();
  auto image = nvm::AtomicImage::Open(std::move(medium));
  EXPECT_TRUE(image.ok());
  const Bytes encoded = internal::EncodeImage(state);
  EXPECT_TRUE(image->Commit(View(encoded)).ok());
  return OpenFrom(raw->SurvivingContent());
}

// The persistent state on a PSAM's medium, decoded (secrets included: tests only).
inline internal::State StateOf(const TestPsam& t) {
  auto image = nvm::AtomicImage::Open(
      std::make_unique<nvm::FaultInjectionMedium>(t.medium->SurvivingContent()));
  EXPECT_TRUE(image.ok());
  if (!image.ok()) return {};
  auto state = internal::DecodeImage(View(image->image()));
  EXPECT_TRUE(state.ok()) << (state.ok() ? "" : state.error().message);
  return state.ok() ? *state : internal::State{};
}

// ---- purchase inputs and the oracle ----------------------------------------------------------

struct Purchase {
  Bytes card_random = HexToBytes("A1B2C3D4");
  Bytes offline_serial = HexToBytes("0007");
  std::uint32_t amount = 2500;
  std::uint8_t type = 0x06;
  Bytes date = HexToBytes("20240315");
  Bytes time = HexToBytes("101530");
  std::uint8_t key_version = 0x01;
  std::uint8_t alg_id = kAlgTdes;
  std::vector<Bytes> factors = {HexToBytes("3100000000004321")};  // ASN first, then issuers

  Bytes Data() const {
    Bytes d = Concat({View(card_random), View(offline_serial), View(U32(amount))});
    d.push_back(type);
    Append(d, View(date));
    Append(d, View(time));
    d.push_back(key_version);
    d.push_back(alg_id);
    for (const Bytes& f : factors) Append(d, View(f));
    return d;
  }
  Bytes InitApdu() const { return Apdu(0x80, 0x70, 0x00, 0x00, Data(), 8); }
};

// DPK by hand: crypto::Diversify from the top issuer level (last factor) down to the ASN.
inline Bytes DpkByHand(const Bytes& master, const std::vector<Bytes>& factors) {
  Bytes key = master;
  for (auto it = factors.rbegin(); it != factors.rend(); ++it) {
    auto next = crypto::Diversify(View(key), View(*it));
    EXPECT_TRUE(next.ok());
    key = *next;
  }
  return key;
}

inline Bytes SessionKey(const Bytes& dpk, const Purchase& p, std::uint32_t term_serial) {
  auto k = crypto::PurchaseSessionKey(View(dpk), View(p.card_random), View(p.offline_serial),
                                      View(U32(term_serial)));
  EXPECT_TRUE(k.ok());
  return *k;
}

inline Bytes Mac(const Bytes& key, const Bytes& data, const Bytes& iv = {}) {
  auto m = crypto::PbocMac(View(key), View(data), View(iv));
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  return *m;
}

inline Bytes ExpectedMac1(const Bytes& sespk, const Purchase& p, const Bytes& term_no) {
  Bytes input = U32(p.amount);
  input.push_back(p.type);
  Append(input, View(term_no));
  Append(input, View(p.date));
  Append(input, View(p.time));
  return Mac(sespk, input);
}

// What the card computes and the terminal relays to CREDIT_SAM_FOR_PURCHASE.
inline Bytes CardMac2(const Bytes& master, const Purchase& p, std::uint32_t term_serial) {
  return Mac(SessionKey(DpkByHand(master, p.factors), p, term_serial), U32(p.amount));
}

inline Bytes CreditApdu(const Bytes& mac2) { return Apdu(0x80, 0x72, 0x00, 0x00, mac2); }
inline Bytes CreditBySerialApdu(std::uint32_t serial, const Bytes& mac2) {
  return Apdu(0x80, 0x72, 0x00, 0x00, Concat({View(U32(serial)), View(mac2)}));
}

// One whole purchase: INIT_SAM then CREDIT_SAM with the card's right MAC2. Returns the serial.
inline std::uint32_t CompletePurchase(Psam& psam, const Purchase& p = {}) {
  const Rsp init = Send(psam, p.InitApdu());
  EXPECT_EQ(init.sw, 0x9000);
  if (init.data.size() != 8) return 0;
  const std::uint32_t serial = ReadU32(View(init.data));
  EXPECT_EQ(Send(psam, CreditApdu(CardMac2(kPurchaseMasterKeyV1, p, serial))).sw, 0x9000);
  return serial;
}

inline Bytes TotalsBytes(const SamTotals& t) { return internal::EncodeTotals(t); }

// The host's acknowledgement that CLEAR SAM TOTALS expects.
inline Bytes ClearAck(const Bytes& challenge, const SamTotals& signed_totals) {
  return Mac(kSettlementKey,
             Concat({View(Bytes{0x7C}), View(challenge), View(TotalsBytes(signed_totals))}));
}

// ---- test vectors ----------------------------------------------------------------------------

inline nlohmann::json LoadVector(std::string_view name) {
  std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/test-vectors.json");
  EXPECT_TRUE(in.good()) << "cannot read test-vectors.json";
  const nlohmann::json all = nlohmann::json::parse(in);
  for (const auto& v : all.at("vectors")) {
    if (v.at("name").get<std::string>() == name) return v;
  }
  ADD_FAILURE() << "no test vector named " << name;
  return {};
}
inline Bytes VectorBytes(const nlohmann::json& v, const char* field) {
  return HexToBytes(v.at(field).get<std::string>());
}

}  // namespace medcard::psam::testing
