// Issuer scripts for the teller's reader (docs/branch.md "Card scripts"; docs/card-commands.md
// for every command): the host builds the one MAC-protected command a card operation needs —
// APPLICATION UNBLOCK / BLOCK under the card's DAMK, UPDATE BINARY of the SFI 15 expiry date with
// secure messaging, PIN UNBLOCK for a PIN reset — for the card's ASN and the challenge it has just
// given (GET CHALLENGE). The key store does all the cryptography: no key, and for a PIN reset no
// PIN, ever passes through this code (the new PIN arrives as a PIN block encrypted under the
// teller workstation's PIN encryption key and is re-enciphered for the card inside the store).
//
// A script is bound to one card (the DAMK/DPUK are diversified by its ASN) and to one challenge
// (the MAC's IV; the card keeps a challenge for the next command only): the card refuses it for
// another card or after another GET CHALLENGE (6988, counted against the key), and nothing
// changes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::branch {

enum class ScriptKind {
  kApplicationUnblock,         // 84 18: lifts a temporary block, resets the DF's key counters
  kApplicationBlock,           // 84 1E P2 00: temporary (card capture; unblock undoes it)
  kApplicationBlockPermanent,  // 84 1E P2 01: for good (the card goes back to the issuer)
  kChangeExpiry,               // 04 D6: SFI 15 expiry date (offset 24, 4 bytes BCD YYYYMMDD)
  kPinReset,                   // 84 24: PIN UNBLOCK, sets the new PIN and resets the tries
};
// "application unblock", "PIN reset", ...
std::string_view ScriptKindName(ScriptKind kind);

// What the teller's reader read from the card (its FCI) just before the script is made.
struct ScriptContext {
  ScriptKind kind = ScriptKind::kApplicationUnblock;
  Bytes asn;        // 10 bytes, SFI 15
  Bytes challenge;  // 4 (or 8) bytes, the card's GET CHALLENGE answer
  Date start_date;  // SFI 15, as the card holds them
  Date expiry_date;
};

// One issuer script: the command to send right after the GET CHALLENGE whose answer it used.
struct CardScript {
  ScriptKind kind = ScriptKind::kApplicationUnblock;
  Bytes command;                   // the C-APDU
  std::optional<Date> new_expiry;  // kChangeExpiry: the date the card must then hold
};

// The PAN of a card's ISO 9564 format 0 PIN blocks: the ASN's last 18 digits and a "0" in the
// check digit's place (19 digits), so the block's PAN field is the ASN's last 12 digits (medcard
// ASNs are BCD). Error for an ASN that is not 10 bytes of decimal digits.
Result<std::string> PinBlockPan(ByteView asn);

// Host side. Card keys are the issuer master keys of version `key_version` (the one the card was
// issued with; 1 for every card so far) diversified by the ASN, released before each call
// returns.
class CardScriptBuilder {
 public:
  explicit CardScriptBuilder(keys::KeyStore& store, std::uint8_t key_version = 1)
      : store_(store), key_version_(key_version) {}

  // MAC under the DAMK over `84 18 00 00 04`.
  Result<CardScript> ApplicationUnblock(const ScriptContext& context);
  // MAC under the DAMK over `84 1E 00 P2 04`; P2 00 temporary, 01 permanent.
  Result<CardScript> ApplicationBlock(const ScriptContext& context, bool permanent);
  // `04 D6 95 18 08 date ‖ MAC`, MAC under the DAMK over `04 D6 95 18 08 ‖ date`. The new date
  // must be valid and after the card's start date.
  Result<CardScript> ChangeExpiry(const ScriptContext& context, const Date& new_expiry);
  // `84 24 00 00 0C enc ‖ MAC` from the PIN pad's `encrypted_pin_block` (format 0 for
  // PinBlockPan(asn), 3DES under the key named `pin_key_name`, "pek/<workstation>"): the store
  // translates it (KeyStore::TranslatePinForCard). This builder takes no clear PIN at all.
  Result<CardScript> PinReset(const ScriptContext& context, std::string_view pin_key_name,
                              ByteView encrypted_pin_block);

  // The script context.kind asks for; kChangeExpiry needs `new_expiry`, kPinReset the PIN key
  // name and block (others ignore them). For a service that answers the teller's reader.
  Result<CardScript> Build(const ScriptContext& context, std::optional<Date> new_expiry = {},
                           std::string_view pin_key_name = {}, ByteView encrypted_pin_block = {});

 private:
  // A command with no payload or a plain payload and a MAC under the card's DAMK.
  Result<Bytes> MaintenanceCommand(const ScriptContext& context, std::uint8_t cla, std::uint8_t ins,
                                   std::uint8_t p1, std::uint8_t p2, ByteView payload);

  keys::KeyStore& store_;
  std::uint8_t key_version_;
};

}  // namespace medcard::branch
