#include "branch/pin_verification.h"

#include <algorithm>
#include <string>

#include "branch/card_scripts.h"
#include "iso8583/messages.h"
#include "keys/pboc.h"

namespace medcard::branch {

namespace {

// The latest version of `name` in the store, none when it holds no such key.
Result<std::optional<std::uint8_t>> LatestVersion(keys::KeyStore& key_store,
                                                  std::string_view name) {
  auto listed = key_store.List();
  if (!listed.ok()) return listed.error();
  std::optional<std::uint8_t> version;
  for (const auto& key : *listed) {
    if (key.name == name) version = std::max(version.value_or(0), key.version);
  }
  return version;
}

}  // namespace

Result<std::optional<host::PinVerificationValue>> NewPinVerificationValue(
    store::Connection& connection, keys::KeyStore& key_store, ByteView asn,
    std::string_view pin_key_name, ByteView encrypted_pin_block) {
  // The host verifies against the PAN terminals send (field 2); the PIN pad formed its block
  // with PinBlockPan (docs/branch.md), which format 0 reads differently.
  const auto pan = iso8583::PanFromAsn(asn);
  if (!pan) return std::optional<host::PinVerificationValue>();
  auto block_pan = PinBlockPan(asn);
  if (!block_pan.ok()) return block_pan.error();

  auto stored = connection.Query("SELECT key_name FROM host_card_pins WHERE asn = ?", {ToHex(asn)});
  if (!stored.ok()) return MakeError("PIN verification value: " + stored.error().message);
  std::string pvk_name;
  if (!stored->empty()) {
    pvk_name = (*stored)[0].Text("key_name");
  } else {
    pvk_name = std::string(keys::kCardPinVerificationKey);
  }
  auto version = LatestVersion(key_store, pvk_name);
  if (!version.ok()) return version.error();
  if (!*version) {
    if (stored->empty()) return std::optional<host::PinVerificationValue>();
    return MakeError("the card's PIN verification key " + pvk_name +
                     " is not in the key store: the host could not check the new PIN online");
  }

  auto pek = key_store.Find(pin_key_name);
  if (!pek.ok()) return pek.error();
  keys::ScopedKey scoped_pek(key_store, *pek);
  auto pvk = key_store.Find(pvk_name, **version);
  if (!pvk.ok()) return pvk.error();
  keys::ScopedKey scoped_pvk(key_store, *pvk);
  auto offset = key_store.PinOffsetFromBlock(scoped_pek.get(), encrypted_pin_block, *block_pan,
                                             scoped_pvk.get(), *pan);
  if (!offset.ok()) return offset.error();
  return std::optional<host::PinVerificationValue>(
      host::PinVerificationValue{pvk_name, **version, std::move(offset).value()});
}

}  // namespace medcard::branch
