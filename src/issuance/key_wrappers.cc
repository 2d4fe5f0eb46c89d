// KeyStore-backed personalisation wrappers and the chip factory (docs/issuance.md, "Keys").
#include <algorithm>
#include <map>

#include "crypto/crypto.h"
#include "issuance/issuer.h"
#include "keys/pboc.h"

namespace medcard::issuance {

namespace {

constexpr std::size_t kKeySize = 16;      // every card and PSAM key: 2-key 3DES
constexpr std::size_t kPinBlockSize = 8;  // SET PIN cryptogram
constexpr std::size_t kMacSize = 4;

// A transient KeyRef released when the result goes out of scope.
Result<keys::KeyRef> TransportKey(keys::KeyStore& store, ByteView chip_serial) {
  if (chip_serial.size() != 8) {
    return MakeError("a chip serial is 8 bytes, got " + std::to_string(chip_serial.size()));
  }
  auto master = store.Find("transport");
  if (!master.ok()) return master.error();
  keys::ScopedKey master_ref(store, *master);
  return store.Diversify(*master, chip_serial);
}

// What a store returned must have the size the device expects: a store or HSM answering
// otherwise is misconfigured, and a wrong-length cryptogram would cost the card a MAC try.
Status CheckLength(const Result<Bytes>& value, std::size_t expected, const std::string& what) {
  if (!value.ok()) return value.error();
  if (value->size() != expected) {
    return MakeError(what + ": the key store returned " + std::to_string(value->size()) +
                     " bytes, " + std::to_string(expected) + " expected (wrong key length)");
  }
  return Status::Ok();
}

// The layout key names of a DF tree, depth first.
void CollectKeyNames(const card::DfLayout& df, std::vector<std::string>& out) {
  for (const card::KeySpec& k : df.keys) out.push_back(k.master_key);
  for (const card::DfLayout& child : df.dfs) CollectKeyNames(child, out);
}

}  // namespace

Result<std::string> StoreRoleForLayoutKey(std::string_view layout_key_name) {
  if (layout_key_name == "ssse_maintenance") return std::string("maintenance");
  if (layout_key_name == "internal_auth") return std::string("card_master");
  if (keys::IsIssuerRole(layout_key_name) && layout_key_name != "transport") {
    return std::string(layout_key_name);
  }
  std::string roles;
  for (std::string_view role : keys::kIssuerRoles) {
    if (role != "transport") roles += (roles.empty() ? "" : ", ") + std::string(role);
  }
  return MakeError("unknown role \"" + std::string(layout_key_name) +
                   "\" for a card key (roles: " + roles + ", ssse_maintenance, internal_auth)");
}

Result<std::uint8_t> LatestVersion(keys::KeyStore& store, std::string_view name) {
  auto list = store.List();
  if (!list.ok()) return list.error();
  std::uint8_t latest = 0;
  for (const keys::KeyInfo& info : *list) {
    if (info.name == name) latest = std::max(latest, info.version);
  }
  if (latest == 0) {
    return MakeError("key store " + store.Describe() + " has no key \"" + std::string(name) + "\"");
  }
  return latest;
}

Result<std::uint8_t> CardKeyVersion(keys::KeyStore& store, const card::CardLayout& layout) {
  std::vector<std::string> names;
  CollectKeyNames(layout.mf, names);
  std::map<std::string, std::uint8_t> latest;  // role → latest version
  for (const std::string& name : names) {
    auto role = StoreRoleForLayoutKey(name);
    if (!role.ok()) return role.error();
    if (latest.contains(*role)) continue;
    auto version = LatestVersion(store, *role);
    if (!version.ok()) return version.error();
    latest[*role] = *version;
  }
  if (latest.empty()) return MakeError("the card layout has no keys");
  const std::uint8_t newest = std::max_element(latest.begin(), latest.end(), [](auto& a, auto& b) {
                                return a.second < b.second;
                              })->second;
  std::string behind;
  for (const auto& [role, version] : latest) {
    if (version != newest) {
      behind += (behind.empty() ? "" : ", ") + role + " v" + std::to_string(version);
    }
  }
  if (!behind.empty()) {
    return MakeError("card master keys are at different versions (newest v" +
                     std::to_string(newest) + "; " + behind +
                     "): a card takes all its keys from one version — finish the rotation");
  }
  return newest;
}

// ---- Card ---------------------------------------------------------------------------------

Result<std::unique_ptr<KeyStoreCardWrapper>> KeyStoreCardWrapper::Create(keys::KeyStore& store,
                                                                         ByteView chip_serial,
                                                                         ByteView asn) {
  if (asn.size() != 10) return MakeError("an ASN is 10 bytes, got " + std::to_string(asn.size()));
  auto transport = TransportKey(store, chip_serial);
  if (!transport.ok()) return MakeError("card transport key: " + transport.error().message);
  return std::unique_ptr<KeyStoreCardWrapper>(
      new KeyStoreCardWrapper(store, *transport, Bytes(asn.begin(), asn.end())));
}

KeyStoreCardWrapper::~KeyStoreCardWrapper() { store_.Release(transport_); }

Result<Bytes> KeyStoreCardWrapper::WrapKey(const card::KeySpec& key) {
  auto role = StoreRoleForLayoutKey(key.master_key);
  if (!role.ok()) return role.error();
  const std::string what = "card key " + key.master_key + " v" + std::to_string(key.version);
  auto card_key = keys::CardKey(store_, *role, View(asn_), key.version);
  if (!card_key.ok()) return MakeError(what + ": " + card_key.error().message);
  keys::ScopedKey card_key_ref(store_, *card_key);
  Result<Bytes> cryptogram = store_.Wrap(transport_, *card_key);
  if (Status s = CheckLength(cryptogram, kKeySize, what); !s.ok()) return s.error();
  return cryptogram;
}

Result<Bytes> KeyStoreCardWrapper::WrapPin(std::string_view pin) {
  // len ‖ packed PIN ‖ 80 00.. (docs/card-commands.md, SET PIN)
  auto packed = PackDigitsFPadded(pin);
  if (!packed || packed->empty() || packed->size() > 6) {
    return MakeError("a PIN is 1 to 12 decimal digits");
  }
  Bytes block{static_cast<std::uint8_t>(packed->size())};
  Append(block, View(*packed));
  block.push_back(0x80);
  block.resize(kPinBlockSize, 0x00);
  SecureWipe(*packed);
  Result<Bytes> enciphered = store_.Encrypt(transport_, View(block));
  SecureWipe(block);
  if (Status s = CheckLength(enciphered, kPinBlockSize, "SET PIN cryptogram"); !s.ok()) {
    return s.error();
  }
  return enciphered;
}

Result<Bytes> KeyStoreCardWrapper::TransportMac(ByteView data, ByteView iv) {
  Result<Bytes> mac = store_.Mac(transport_, data, iv);
  if (Status s = CheckLength(mac, kMacSize, "transport MAC"); !s.ok()) return s.error();
  return mac;
}

// ---- PSAM ---------------------------------------------------------------------------------

Result<std::unique_ptr<KeyStorePsamWrapper>> KeyStorePsamWrapper::Create(keys::KeyStore& store,
                                                                         ByteView chip_serial,
                                                                         ByteView psam_serial) {
  if (psam_serial.size() != 10) {
    return MakeError("a PSAM serial is 10 bytes, got " + std::to_string(psam_serial.size()));
  }
  auto transport = TransportKey(store, chip_serial);
  if (!transport.ok()) return MakeError("PSAM transport key: " + transport.error().message);
  return std::unique_ptr<KeyStorePsamWrapper>(
      new KeyStorePsamWrapper(store, *transport, Bytes(psam_serial.begin(), psam_serial.end())));
}

KeyStorePsamWrapper::~KeyStorePsamWrapper() { store_.Release(transport_); }

Result<Bytes> KeyStorePsamWrapper::WrapKey(const psam::KeyHeader& header, std::string_view label,
                                           ByteView challenge) {
  const std::string what = "PSAM key " + std::string(label) + " v" + std::to_string(header.version);
  if (challenge.size() != 4 && challenge.size() != 8) {
    return MakeError(what + ": the challenge is 4 or 8 bytes");
  }
  Result<keys::KeyRef> key = MakeError("");
  if (label == "settlement") {
    key = keys::CardKey(store_, "settlement", View(psam_serial_), header.version);
  } else if (label == "purchase" || label == "maintenance" || label == "visit_record") {
    key = store_.Find(label, header.version);
  } else {
    return MakeError("unknown role \"" + std::string(label) +
                     "\" for a PSAM key (purchase, settlement, maintenance, visit_record)");
  }
  if (!key.ok()) return MakeError(what + ": " + key.error().message);
  keys::ScopedKey key_ref(store_, *key);
  Result<Bytes> cryptogram = store_.Wrap(transport_, *key);
  if (Status s = CheckLength(cryptogram, kKeySize, what); !s.ok()) return s.error();

  // header ‖ cryptogram ‖ MAC over 84 D4 00 00 Lc ‖ header ‖ cryptogram, IV = challenge ‖ 00..
  // (docs/psam-commands.md, WRITE KEY)
  const Bytes encoded_header = header.Encode();
  const auto lc = static_cast<std::uint8_t>(encoded_header.size() + kKeySize + kMacSize);
  Bytes mac_input{0x84, 0xD4, 0x00, 0x00, lc};
  Append(mac_input, View(encoded_header));
  Append(mac_input, View(*cryptogram));
  Bytes iv(challenge.begin(), challenge.end());
  iv.resize(8, 0x00);
  Result<Bytes> mac = store_.Mac(transport_, View(mac_input), View(iv));
  if (Status s = CheckLength(mac, kMacSize, what + " MAC"); !s.ok()) return s.error();
  return Concat({View(encoded_header), View(*cryptogram), View(*mac)});
}

Result<Bytes> KeyStorePsamWrapper::EndPersonalisationMac(ByteView challenge) {
  if (challenge.size() != 4 && challenge.size() != 8) {
    return MakeError("END PERSONALISATION: the challenge is 4 or 8 bytes");
  }
  const Bytes header{0x84, 0xEE, 0x00, 0x00, 0x04};
  Bytes iv(challenge.begin(), challenge.end());
  iv.resize(8, 0x00);
  Result<Bytes> mac = store_.Mac(transport_, View(header), View(iv));
  if (Status s = CheckLength(mac, kMacSize, "END PERSONALISATION MAC"); !s.ok()) return s.error();
  return mac;
}

// ---- The chip factory ------------------------------------------------------------------------

Result<Bytes> ChipFactoryTransportKey(keys::KeyStore& store, ByteView chip_serial) {
  if (chip_serial.size() != 8) {
    return MakeError("a chip serial is 8 bytes, got " + std::to_string(chip_serial.size()));
  }
  auto master = store.Find("transport");
  if (!master.ok()) return master.error();
  keys::ScopedKey master_ref(store, *master);
  // Diversify(MK, D) = 3DES-ECB(MK, D ‖ ~D): the factory's computation, done by the store.
  Bytes d_and_not_d(chip_serial.begin(), chip_serial.end());
  for (std::uint8_t b : chip_serial) d_and_not_d.push_back(static_cast<std::uint8_t>(~b));
  Result<Bytes> key = store.Encrypt(*master, View(d_and_not_d));
  if (Status s = CheckLength(key, kKeySize, "transport key"); !s.ok()) return s.error();
  return key;
}

Result<std::unique_ptr<card::Card>> ManufactureBlankCard(keys::KeyStore& store,
                                                         std::unique_ptr<nvm::Medium> medium,
                                                         ByteView chip_serial,
                                                         card::CardOptions options) {
  auto transport = ChipFactoryTransportKey(store, chip_serial);
  if (!transport.ok()) return transport.error();
  card::ManufactureInfo info{Bytes(chip_serial.begin(), chip_serial.end()), *transport};
  SecureWipe(*transport);
  auto made = card::Card::Manufacture(std::move(medium), info, std::move(options));
  SecureWipe(info.transport_key);
  return made;
}

Result<std::unique_ptr<psam::Psam>> ManufactureBlankPsam(keys::KeyStore& store,
                                                         std::unique_ptr<nvm::Medium> medium,
                                                         ByteView chip_serial) {
  auto transport = ChipFactoryTransportKey(store, chip_serial);
  if (!transport.ok()) return transport.error();
  psam::ManufactureInfo info{Bytes(chip_serial.begin(), chip_serial.end()), *transport};
  SecureWipe(*transport);
  auto made = psam::Psam::Manufacture(std::move(medium), info);
  SecureWipe(info.transport_key);
  return made;
}

}  // namespace medcard::issuance
