// The host's online PIN value after a PIN reset at a branch (docs/branch.md "PIN reset and the
// online PIN"): the new PIN's IBM 3624 offset, made inside the key store from the teller's PIN
// pad block, so the PIN is never in clear outside the store and the PIN pad.
#pragma once

#include <optional>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"
#include "host/host.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::branch {

// The card's new PIN verification value for the PIN in `encrypted_pin_block` (ISO 9564 format 0
// for PinBlockPan(asn) under the PIN pad key `pin_key_name`, "pek/<workstation>"), under the PIN
// verification key the host checks this card with: the key of the card's stored value, else
// keys::kCardPinVerificationKey when the key store holds it; always its latest version. None
// when the host makes no online PIN check for the card: the card number gives no PAN
// (docs/protocol.md 5.7), or it has no stored value and the store holds no such key. Errors:
// the card's key is not in the key store, the block is not one for the card or its PIN key.
// Reads host_card_pins on `connection` (inside the caller's transaction if it has one).
Result<std::optional<host::PinVerificationValue>> NewPinVerificationValue(
    store::Connection& connection, keys::KeyStore& key_store, ByteView asn,
    std::string_view pin_key_name, ByteView encrypted_pin_block);

}  // namespace medcard::branch
