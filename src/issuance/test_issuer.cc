#include "issuance/test_issuer.h"

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "crypto/crypto.h"
#include "psam/personalize.h"

namespace medcard::issuance {

extern const char kEmbeddedTestKeySet[];  // generated from share/test-keyset.json

const std::vector<std::string>& TestKeySet::RequiredRoles() {
  static const std::vector<std::string> kRoles = {
      "purchase",    "load",       "tac",          "unload",        "overdraw",
      "pin_unblock", "pin_reload", "maintenance",  "external_auth", "settlement",
      "card_master", "transport",  "visit_record", "pvk/CARDS"};
  return kRoles;
}

Result<TestKeySet> TestKeySet::FromJson(std::string_view json_text) {
  auto doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return MakeError("test key set: not a JSON object");
  auto marker = doc.find("test_only");
  if (marker == doc.end() || !marker->is_boolean() || !marker->get<bool>()) {
    return MakeError("test key set: refused, \"test_only\": true is missing");
  }
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_object()) return MakeError("test key set: \"keys\" missing");
  TestKeySet set;
  const auto& roles = RequiredRoles();
  for (const auto& [role, value] : keys->items()) {
    if (std::find(roles.begin(), roles.end(), role) == roles.end()) {
      return MakeError("test key set: unknown role \"" + role + "\"");
    }
    auto bytes = value.is_string() ? FromHex(value.get<std::string>()) : std::nullopt;
    if (!bytes || bytes->size() != 16) {
      return MakeError("test key set: key \"" + role + "\" must be 32 hex digits (2-key 3DES)");
    }
    set.keys_[role] = std::move(*bytes);
  }
  for (const auto& role : roles) {
    if (!set.keys_.contains(role)) return MakeError("test key set: key \"" + role + "\" missing");
  }
  return set;
}

const TestKeySet& TestKeySet::Embedded() {
  static const TestKeySet kSet = [] {
    auto set = FromJson(kEmbeddedTestKeySet);
    if (!set.ok()) std::abort();  // the shipped file is checked by the tests
    return std::move(set).value();
  }();
  return kSet;
}

const Bytes& TestKeySet::MasterKey(std::string_view role) const {
  auto it = keys_.find(role);
  if (it == keys_.end()) std::abort();  // REQUIRES violated: a programming error
  return it->second;
}

card::HolderData TestHolder(ByteView asn, std::string pin) {
  auto text = [](std::string_view s) { return Bytes(s.begin(), s.end()); };
  card::HolderData h;
  h.issuer_id = HexToBytes("4D45444341524431");  // "MEDCARD1"
  h.asn.assign(asn.begin(), asn.end());
  h.start_date = Date{2026, 1, 1};
  h.expiry_date = Date{2036, 12, 31};
  h.issuer_data.assign(std::begin(kTestCardMarker), std::end(kTestCardMarker));
  h.name_gbk = text("TEST CARDHOLDER");
  h.id_number = "110101199001011234";
  h.ssse_card_id = ToHex(asn.subspan(asn.size() - 8)).substr(0, 16);
  h.ssse_issue_date = h.start_date;
  h.ssse_expiry_date = h.expiry_date;
  h.ssse_card_number = "T" + ToHex(asn.subspan(asn.size() - 4));
  h.social_security_number = "110101199001011234";
  h.ssse_name_gbk = text("TEST CARDHOLDER");
  h.birth_date = Date{1990, 1, 1};
  h.birthplace = {0x11, 0x01, 0x01};
  h.employer_code = "TESTUNIT0000001";
  h.pooling_area = "110100";
  h.designated_facilities = {"H110100001"};
  h.pin = std::move(pin);
  return h;
}

namespace {

// The master keys a standard-layout card is personalised from, by the layout's key names.
std::map<std::string, Bytes> CardMasterKeys(const TestKeySet& keys) {
  std::map<std::string, Bytes> m;
  for (const char* role : {"purchase", "load", "tac", "unload", "overdraw", "pin_unblock",
                           "pin_reload", "maintenance", "visit_record", "external_auth"}) {
    m[role] = keys.MasterKey(role);
  }
  m["ssse_maintenance"] = keys.MasterKey("maintenance");
  m["internal_auth"] = keys.MasterKey("card_master");
  return m;
}

}  // namespace

Result<std::unique_ptr<card::Card>> IssueTestCard(const TestKeySet& keys,
                                                  std::unique_ptr<nvm::Medium> medium,
                                                  card::HolderData holder,
                                                  card::CardOptions options) {
  if (holder.asn.size() != 10) return MakeError("ASN must be 10 bytes");
  holder.issuer_data.assign(std::begin(kTestCardMarker), std::end(kTestCardMarker));
  Bytes chip_serial = crypto::AsnFactor(holder.asn);
  auto transport = crypto::Diversify(keys.MasterKey("transport"), chip_serial);
  if (!transport.ok()) return transport.error();
  auto blank =
      card::Card::Manufacture(std::move(medium), {chip_serial, *transport}, std::move(options));
  if (!blank.ok()) return blank.error();
  auto wrapper =
      card::ClearKeyWrapper::FromMasterKeys(*transport, CardMasterKeys(keys), holder.asn);
  if (!wrapper.ok()) return wrapper.error();
  auto layout = card::StandardLayout(holder);
  if (!layout.ok()) return layout.error();
  auto script = card::BuildPersonalisation(*layout, *wrapper);
  if (!script.ok()) return script.error();
  (*blank)->PowerOn();
  Status run = card::RunPersonalisation(*script, *wrapper, **blank);
  if (!run.ok()) return run.error();
  return std::move(blank).value();
}

Result<std::unique_ptr<psam::Psam>> IssueTestPsam(const TestKeySet& keys,
                                                  std::unique_ptr<nvm::Medium> medium,
                                                  ByteView psam_serial, ByteView terminal_number) {
  if (psam_serial.size() != 10) return MakeError("PSAM serial must be 10 bytes");
  if (terminal_number.size() != 6) return MakeError("terminal number must be 6 bytes");
  Bytes chip_serial = crypto::AsnFactor(psam_serial);
  auto transport = crypto::Diversify(keys.MasterKey("transport"), chip_serial);
  if (!transport.ok()) return transport.error();
  auto settlement = crypto::Diversify(keys.MasterKey("settlement"), crypto::AsnFactor(psam_serial));
  if (!settlement.ok()) return settlement.error();
  auto blank = psam::Psam::Manufacture(std::move(medium), {chip_serial, *transport});
  if (!blank.ok()) return blank.error();

  psam::PsamProfile profile;
  profile.psam_serial.assign(psam_serial.begin(), psam_serial.end());
  profile.issuer_data = Bytes(std::begin(kTestCardMarker), std::end(kTestCardMarker));
  profile.terminal_number.assign(terminal_number.begin(), terminal_number.end());
  profile.valid_from = Date{2026, 1, 1};
  profile.valid_to = Date{2036, 12, 31};
  auto key = [](psam::KeyUsage usage, std::string label) {
    psam::ProfileKey k;
    k.header.usage = usage;
    k.label = std::move(label);
    return k;
  };
  profile.keys = {key(psam::KeyUsage::kPurchase, "purchase"),
                  key(psam::KeyUsage::kSettlement, "settlement"),
                  key(psam::KeyUsage::kMaintenance, "maintenance"),
                  key(psam::KeyUsage::kVisitRecord, "visit_record")};
  psam::ClearKeyWrapper wrapper(*transport, {{"purchase", keys.MasterKey("purchase")},
                                             {"settlement", *settlement},
                                             {"maintenance", keys.MasterKey("maintenance")},
                                             {"visit_record", keys.MasterKey("visit_record")}});
  auto script = psam::BuildPersonalisationScript(profile);
  if (!script.ok()) return script.error();
  (*blank)->PowerOn();
  psam::Psam& device = **blank;
  Status run = psam::RunPersonalisationScript(
      *script, wrapper, [&device](ByteView apdu) { return device.Transmit(apdu); });
  if (!run.ok()) return run.error();
  return std::move(blank).value();
}

Result<Bytes> TestIssuerHost::CardKey(std::string_view role, ByteView asn) const {
  if (asn.size() != 10) return MakeError("ASN must be 10 bytes");
  return crypto::Diversify(keys_.MasterKey(role), crypto::AsnFactor(asn));
}

namespace {
Bytes LoadMacData(const terminal::LoadInitialisation& r) {  // amount ‖ type ‖ termNo
  Bytes d;
  AppendU32(d, r.amount);
  d.push_back(r.type);
  Append(d, r.terminal_number);
  return d;
}
}  // namespace

Result<Bytes> TestIssuerHost::Authorise(const terminal::LoadInitialisation& r) {
  if (r.type != card::kTxnEdLoad && r.type != card::kTxnEpLoad) return MakeError("not a load");
  if (r.terminal_number.size() != 6 || r.random.size() != 4 || r.mac1.size() != 4) {
    return MakeError("malformed load request");
  }
  auto dlk = CardKey("load", r.asn);
  if (!dlk.ok()) return dlk.error();
  Bytes serial;
  AppendU16(serial, r.online_serial);
  auto seslk = crypto::LoadSessionKey(*dlk, r.random, serial);
  if (!seslk.ok()) return seslk.error();
  Bytes mac1_data;
  AppendU32(mac1_data, r.old_balance);
  Append(mac1_data, LoadMacData(r));
  auto mac1 = crypto::PbocMac(*seslk, mac1_data);
  if (!mac1.ok()) return mac1.error();
  if (!ConstantTimeEqual(*mac1, r.mac1)) return MakeError("MAC1 invalid: load refused");
  Bytes mac2_data = LoadMacData(r);
  Append(mac2_data, EncodeBcdDate(r.date));
  Append(mac2_data, EncodeBcdTime(r.time));
  return crypto::PbocMac(*seslk, mac2_data);
}

Status TestIssuerHost::Confirm(const terminal::LoadInitialisation& r, ByteView tac) {
  auto dtk = CardKey("tac", r.asn);
  if (!dtk.ok()) return dtk.error();
  auto tac_key = crypto::TacKey(*dtk);
  if (!tac_key.ok()) return tac_key.error();
  Bytes data;
  AppendU32(data, r.old_balance + r.amount);
  AppendU16(data, r.online_serial);
  Append(data, LoadMacData(r));
  Append(data, EncodeBcdDate(r.date));
  Append(data, EncodeBcdTime(r.time));
  auto expected = crypto::PbocMac(*tac_key, data);
  if (!expected.ok()) return expected.error();
  if (!ConstantTimeEqual(*expected, tac)) return MakeError("load TAC invalid");
  return Status::Ok();
}

Status TestIssuerHost::VerifyPurchaseTac(const terminal::PurchaseResult& p) const {
  auto dtk = CardKey("tac", p.asn);
  if (!dtk.ok()) return dtk.error();
  auto tac_key = crypto::TacKey(*dtk);
  if (!tac_key.ok()) return tac_key.error();
  Bytes data;
  AppendU32(data, p.amount);
  data.push_back(p.type);
  Append(data, p.terminal_number);
  AppendU32(data, p.terminal_serial);
  Append(data, EncodeBcdDate(p.date));
  Append(data, EncodeBcdTime(p.time));
  auto expected = crypto::PbocMac(*tac_key, data);
  if (!expected.ok()) return expected.error();
  if (!ConstantTimeEqual(*expected, p.tac)) return MakeError("purchase TAC invalid");
  return Status::Ok();
}

Result<Bytes> TestIssuerHost::AcknowledgeSamTotals(ByteView psam_serial, ByteView challenge,
                                                   ByteView totals_answer) const {
  // count(4) ‖ amount(6) ‖ firstSerial(4) ‖ lastSerial(4) ‖ MAC(4) (card-profile.md, PSAM)
  if (psam_serial.size() != 10 || challenge.size() != 8 || totals_answer.size() != 22) {
    return MakeError("malformed SAM totals");
  }
  auto key = crypto::Diversify(keys_.MasterKey("settlement"), crypto::AsnFactor(psam_serial));
  if (!key.ok()) return key.error();
  ByteView totals = totals_answer.subspan(0, 18);
  auto mac = crypto::PbocMac(*key, Concat({challenge, totals}));
  if (!mac.ok()) return mac.error();
  if (!ConstantTimeEqual(*mac, totals_answer.subspan(18, 4))) {
    return MakeError("SAM totals MAC invalid: not signed by this PSAM");
  }
  Bytes ack_data{0x7C};
  Append(ack_data, challenge);
  Append(ack_data, totals);
  return crypto::PbocMac(*key, ack_data);
}

}  // namespace medcard::issuance
