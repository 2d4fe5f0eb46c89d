// Private to src/keys: what every KeyStore backend (software_store.cc, pkcs11_store.cc) enforces
// and checks in the same way — the key-usage rules of key_store.h, the argument checks, and
// their error messages, in one place — plus the few helpers both backends need.
//
// A message starts with the backend's prefix ("key store: ", "pkcs11: "): callers show the
// store's messages as they are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::keys::internal {

// Which keys a key may protect or be used for. A key-encrypting key (the transport keys and the
// terminal master keys, with everything diversified from them) wraps and unwraps keys but never
// decrypts data: that would hand out in clear whatever was wrapped under it.
enum class Family : std::uint8_t {
  kIssuer,               // issuer master keys other than transport, and the card keys from them
  kTransport,            // "transport" and the card/PSAM transport keys diversified from it
  kTerminalMaster,       // "tmk/..." and keys diversified from one
  kReceived,             // a key unwrapped from a cryptogram (a terminal's working key)
  kTerminalKeyExchange,  // "tkek" (docs/pos.md "TMK delivery"), and keys diversified from it
  kPinEncryption,        // "pek/..." (a teller PIN pad's key), and keys diversified from one
  kPinUnblock,           // "pin_unblock" and the card DPUKs diversified from it
  kPinVerification,  // "pvk/..." (online PIN verification values), and keys diversified from one
};

bool IsKeyEncryptingKey(Family family);
// A PIN encryption key or a PIN-unblock key: what it enciphers is a PIN.
bool IsPinKey(Family family);
// The family of a stored key. REQUIRES: IsValidKeyName(name).
Family FamilyOfName(std::string_view name);

class KeyPolicy {
 public:
  // `backend` begins every message: "key store" or "pkcs11".
  explicit constexpr KeyPolicy(std::string_view backend) : backend_(backend) {}

  // ---- Key usage (key_store.h) ------------------------------------------------------------
  // Only a key-encrypting key wraps; under a terminal master key only received keys travel.
  Status CheckWrap(Family wrapping, Family key) const;
  // Only a key-encrypting key unwraps; "tkek" unwraps nothing transient (only ImportWrapped).
  Status CheckUnwrap(Family wrapping) const;
  // ImportWrapped: only under "tkek", only into a "tmk/..." or "pek/..." name; the cryptogram is
  // 16 bytes.
  Status CheckImportWrapped(Family wrapping, std::string_view name, ByteView cryptogram,
                            ByteView expected_kcv) const;
  // The KCV of the unwrapped key against the delivery's.
  Status CheckDeliveredKcv(std::string_view name, ByteView kcv, ByteView expected_kcv) const;
  // A key-encrypting key never decrypts data.
  Status CheckDecrypt(Family key) const;
  // A PIN-unblock key encrypts nothing for the caller: under the master, D ‖ ~D would be a
  // card's DPUK in clear; under a DPUK, only TranslatePinForCard enciphers (a PIN).
  Status CheckEncrypt(Family key) const;
  // A key-encrypting key derives no session or TAC key; `what` is e.g. "derive a TAC key".
  Status CheckDerivation(Family key, std::string_view what) const;
  // TranslatePinForCard: a PEK in, a DPUK out, an 8-byte block, a 4- or 8-byte challenge.
  Status CheckPinTranslation(Family pin_key, Family dpuk, ByteView encrypted_pin_block,
                             ByteView challenge) const;
  // The card's PIN UNBLOCK plaintext `03 ‖ packed PIN ‖ 80 00 00 00` from a clear ISO 9564
  // format 0 block for `pan`; a PIN that is not 6 digits is an error that never shows the PIN.
  // Every intermediate copy of the PIN is wiped; the caller wipes `clear_block` and the result.
  Result<Bytes> CardPinPlaintext(ByteView clear_block, std::string_view pan) const;
  // A PIN verification key only makes and checks PIN offsets: no MAC under it.
  Status CheckMac(Family key) const;

  // ---- Online PIN verification (IBM 3624 offsets, key_store.h PinOffset / VerifyPin) --------
  // PinOffset: a "pvk/..." key, a PAN of 8..19 digits, a PIN of 4..12 digits.
  Status CheckPinOffset(Family pvk, std::string_view pan, std::string_view pin) const;
  // VerifyPin: a working PIN key (received) or a PEK, a "pvk/..." key, an 8-byte block, a PAN
  // of 8..19 digits, an offset of 4..12 digits.
  Status CheckPinVerification(Family pin_key, Family pvk, ByteView encrypted_pin_block,
                              std::string_view pan, std::string_view offset) const;
  // PinOffsetFromBlock: a PEK (a teller's PIN pad sets PINs; a terminal's working PIN key only
  // verifies them), a "pvk/..." key, an 8-byte block, PANs (the block's, the card's) of 8..19
  // digits.
  Status CheckPinOffsetFromBlock(Family pin_key, Family pvk, ByteView encrypted_pin_block,
                                 std::string_view block_pan, std::string_view pan) const;
  // The offset of the PIN in the clear format 0 block for `block_pan`, given `enciphered` (the
  // card's validation data under the PVK); an error that never shows the PIN when the block is
  // not one for `block_pan` or its PIN is not 4..12 digits. Wipes its copies of the PIN; the
  // caller wipes `clear_block`.
  Result<std::string> PinOffsetOfBlock(ByteView clear_block, std::string_view block_pan,
                                       ByteView enciphered) const;
  // The 8 bytes the PVK enciphers: the PAN's rightmost 16 digits, zero-padded on the left, BCD.
  static Bytes PinValidationData(std::string_view pan);
  // The offset of `pin` given `enciphered` = 3DES-ECB(PVK, validation data).
  static std::string PinOffsetOf(ByteView enciphered, std::string_view pin);
  // Whether the clear format 0 block for `pan` holds the PIN that `offset` and `enciphered`
  // give; constant time in the digits. Wipes its copies of the PIN.
  static bool PinBlockMatches(ByteView clear_block, std::string_view pan, ByteView enciphered,
                              std::string_view offset);

  // ---- Arguments ----------------------------------------------------------------------------
  // IsValidKeyName(name), or an error that names it.
  Status CheckName(std::string_view name) const;
  // The version after `latest` (0: none yet), or an error when 255 is taken.
  Result<std::uint8_t> NextVersion(std::string_view name, std::uint8_t latest) const;
  // The version a new key gets: `requested` (a delivered key keeps its sender's version), which
  // must be above `latest`, or else the next one.
  Result<std::uint8_t> VersionOfNewKey(std::string_view name, std::uint8_t latest,
                                       std::optional<std::uint8_t> requested) const;
  Error NoSuchVersion(std::string_view name, std::uint8_t version, std::uint8_t latest) const;
  Error UnknownRef() const;
  Error KeyLengthError(std::string_view what, std::size_t want, std::size_t got) const;
  // The 8-byte D of a diversification.
  Status CheckFactor(ByteView factor) const;
  // The 8 bytes a session key is derived from.
  Status CheckSessionKeyData(ByteView data) const;
  // Data of whole 8-byte blocks; no IV for ECB, an empty (zero) or 8-byte IV for CBC.
  Status CheckCipherInput(ByteView data, CipherMode mode, ByteView iv, bool encrypt) const;
  // ImportTestKey: only into a test store (`store` is its Describe()), a 16-byte key.
  Status CheckTestKeyImport(bool test_only, std::string_view store, ByteView key) const;
  // A key ceremony: the XOR of at least 2 components of 16 bytes, neither all zero nor of two
  // equal halves. On error nothing of the components is left in memory here.
  Result<Bytes> CombineComponents(std::span<const Bytes> components) const;

 private:
  Error Fail(std::string_view message) const;
  Status RefuseKeyEncryptingKey(Family key, std::string_view what) const;
  Status RefusePinKey(Family key, std::string_view what) const;

  std::string_view backend_;
};

// ---- Helpers ------------------------------------------------------------------------------

// A 16-byte key whose halves are equal is single DES in 3DES clothing.
bool HalvesEqual(ByteView key);
// The first KeyRef id of a store: a random point, so a ref from another store is very unlikely
// to name a key here; never 0 (no valid ref).
std::uint64_t FirstRefId();
// List() order: by name, then version.
void SortByNameAndVersion(std::vector<KeyInfo>& keys);
// "2024-05-01T12:00:00Z"
std::string IsoUtc(std::int64_t unix_time);
Bytes Sha256(ByteView data);

}  // namespace medcard::keys::internal
