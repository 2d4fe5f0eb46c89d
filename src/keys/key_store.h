// keys: every secret of the scheme lives behind KeyStore. Callers hold KeyRefs, never key
// bytes: master keys are born in the store (generated, or assembled from custodians'
// components in a key ceremony), card keys are derived inside it, and a key leaves it only
// encrypted under another key (a card's transport key, a terminal's TMK).
//
// Backends (same interface, one parameterised test suite):
//   software  the embedded default: a file encrypted at rest (AES-256-GCM, key from the
//             passphrase by scrypt), atomic updates — docs/keys.md
//   pkcs11    any PKCS#11 HSM (tested with SoftHSM2) — docs/keys-pkcs11.md says which PBOC
//             operations have no standard mechanism and how the backend handles each.
//
// Thread-compatible: one KeyStore per thread, or external locking.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::keys {

// Issuer master key roles (issue: keys and issuance). Terminal master keys are named
// "tmk/<terminal number hex>". The terminal key-exchange key "tkek" is established by key
// ceremony on both sides (the bank's store and each terminal's) and carries TMKs from the bank to
// the terminals: Wrap(tkek, tmk) at the bank, ImportWrapped at the terminal (docs/pos.md).
inline constexpr std::string_view kIssuerRoles[] = {
    "purchase",    "load",       "tac",         "unload",        "overdraw",
    "pin_unblock", "pin_reload", "maintenance", "external_auth", "settlement",
    "card_master", "transport",  "visit_record"};
bool IsIssuerRole(std::string_view role);
inline constexpr std::string_view kTerminalKeyExchangeKey = "tkek";
bool IsTerminalMasterKeyName(std::string_view name);  // "tmk/" + 12 upper-case hex digits
// A teller workstation's PIN encryption key (the key its PIN pad encrypts ISO 9564 PIN blocks
// under): "pek/" + 1..32 upper-case letters, digits or '-' naming the workstation
// ("pek/BRANCH01-T03"). Established by key ceremony in the store and in the PIN pad.
bool IsPinEncryptionKeyName(std::string_view name);
// A PIN verification key: "pvk/" + 1..32 upper-case letters, digits or '-'. The issuer makes a
// card's PIN verification value (an IBM 3624 offset) under it at issuance and the bank host
// verifies online PINs with it, so both stores hold it (key ceremony). kCardPinVerificationKey
// is the one the issuer and the host use (docs/keys.md "Online PIN verification").
bool IsPinVerificationKeyName(std::string_view name);
inline constexpr std::string_view kCardPinVerificationKey = "pvk/CARDS";
bool IsValidKeyName(std::string_view name);  // an issuer role, a TMK, PEK or PVK name, or "tkek"

// What List() shows about a stored key: never its value.
struct KeyInfo {
  std::string name;          // role or "tmk/..."
  std::uint8_t version = 0;  // 1, 2, ... (rotation adds a version; old ones still work)
  std::string kcv;           // 6 hex digits
  std::string origin;        // "generated", "components", "test-set", "wrapped"
  std::string created;       // ISO 8601 UTC
  bool operator==(const KeyInfo&) const = default;
};

// A key inside the store: a stored key (name + version) or a transient one derived in this
// session (card keys, session keys). Cheap to copy; meaningless to another KeyStore.
struct KeyRef {
  std::uint64_t id = 0;
  bool operator==(const KeyRef&) const = default;
};

enum class CipherMode { kEcb, kCbc };

// Key usage (every backend enforces it, the shared test suite checks it). The key-encrypting
// keys are "transport", "tkek" and every "tmk/..." key, and the keys diversified from them:
//   - only a key-encrypting key can Wrap and Unwrap;
//   - a key-encrypting key never Decrypts data (that would reveal whatever was wrapped under it)
//     and derives no session or TAC key; it may Encrypt (the SET PIN cryptogram) and Mac;
//   - under a terminal master key (known to its terminal) only keys received by Unwrap travel,
//     never an issuer master key, a card key or a transport key;
//   - a key from Unwrap is a data key: it can never wrap or unwrap;
//   - "tkek" wraps only terminal master keys and PIN encryption keys, unwraps nothing transient
//     and is itself never wrapped; a stored key arrives encrypted (ImportWrapped) only under
//     "tkek", and only as a "tmk/..." or "pek/..." key.
// PIN keys: a PIN encryption key ("pek/...") and the "pin_unblock" master key with the card
// keys (DPUK) diversified from it never Decrypt, derive no session or TAC key and wrap nothing;
// a PEK travels only under "tkek" (to its workstation's PIN pad), a DPUK only to its card: the
// one way a PIN block under a PEK is used is TranslatePinForCard, so no PIN ever appears in
// clear outside the store and the PIN pad.
// A PIN verification key ("pvk/...") does nothing but PinOffset, PinOffsetFromBlock and VerifyPin:
// no Encrypt, Mac or Decrypt (3DES under it of a card's validation data is the card's natural PIN,
// which with the offset gives the PIN), no derivation, never wrapped.

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // A store created for the published test key set: every listing says so, every card issued
  // from it is a test card.
  virtual bool test_only() const = 0;
  // "software:/path/to/store" or "pkcs11:<token label>".
  virtual std::string Describe() const = 0;

  // ---- Stored keys ------------------------------------------------------------------------
  virtual Result<std::vector<KeyInfo>> List() = 0;
  // A new random 2-key 3DES key: version 1, or latest + 1 when the name exists (rotation).
  virtual Result<KeyInfo> Generate(std::string_view name) = 0;
  // Key ceremony: the key is the XOR of the custodians' components (each 16 bytes, at least 2).
  // The components are wiped by the caller; the store keeps only the result.
  virtual Result<KeyInfo> ImportComponents(std::string_view name,
                                           std::span<const Bytes> components) = 0;
  // Only on a test_only() store: imports a published test key in clear.
  virtual Result<KeyInfo> ImportTestKey(std::string_view name, ByteView key) = 0;
  // A key delivered encrypted: `cryptogram` = Wrap(wrapping, key) made by another store holding
  // the same `wrapping` key ("tkek"), stored under `name` (a "tmk/..." or "pek/..." name) as a new
  // version with origin "wrapped" — but only when the key's KCV equals `expected_kcv` (3 bytes): a
  // wrong wrapping key or a damaged cryptogram stores nothing. `version` is the sender's version
  // of the key, so both stores name it alike (a terminal reinstalled after a rotation receives
  // the bank's v2 as v2); it must be newer than every version held. nullopt: the next version.
  virtual Result<KeyInfo> ImportWrapped(std::string_view name, KeyRef wrapping, ByteView cryptogram,
                                        ByteView expected_kcv,
                                        std::optional<std::uint8_t> version = std::nullopt) = 0;
  // A stored key by name; version nullopt = the latest. Error naming the key when missing.
  virtual Result<KeyRef> Find(std::string_view name,
                              std::optional<std::uint8_t> version = std::nullopt) = 0;

  // ---- Derivation (results are transient KeyRefs, dropped with Release or the store) -------
  // PBOC diversification: DK = 3DES(MK, D) ‖ 3DES(MK, ~D), D = 8-byte factor.
  virtual Result<KeyRef> Diversify(KeyRef master, ByteView factor) = 0;
  // An 8-byte single-DES session key = 3DES-ECB(key, data(8)): SESLK, SESPK, SESULK.
  virtual Result<KeyRef> DeriveSessionKey(KeyRef key, ByteView data) = 0;
  // The TAC key DTK_L ⊕ DTK_R (8 bytes) of a 16-byte DTK.
  virtual Result<KeyRef> DeriveTacKey(KeyRef dtk) = 0;
  // A key received encrypted under `wrapping` (crypto::EncryptKeyForTransport format), e.g. a
  // terminal's working keys under its TMK.
  virtual Result<KeyRef> Unwrap(KeyRef wrapping, ByteView cryptogram) = 0;
  virtual void Release(KeyRef key) = 0;

  // ---- Use --------------------------------------------------------------------------------
  // PBOC MAC (4 bytes): 8-byte keys single DES, 16-byte keys ISO 9797-1 alg. 3; iv 8 bytes or
  // empty (zero).
  virtual Result<Bytes> Mac(KeyRef key, ByteView data, ByteView iv = {}) = 0;
  // Constant-time comparison of Mac(key, data, iv) with `mac`; an error says "MAC invalid".
  Status VerifyMac(KeyRef key, ByteView data, ByteView mac, ByteView iv = {});
  virtual Result<Bytes> Encrypt(KeyRef key, ByteView data, CipherMode mode = CipherMode::kEcb,
                                ByteView iv = {}) = 0;
  virtual Result<Bytes> Decrypt(KeyRef key, ByteView data, CipherMode mode = CipherMode::kEcb,
                                ByteView iv = {}) = 0;
  // `key` encrypted under `wrapping`: crypto::EncryptKeyForTransport(wrapping, key) — for
  // personalisation (card key under the card's transport key) and working keys under a TMK.
  virtual Result<Bytes> Wrap(KeyRef wrapping, KeyRef key) = 0;
  // Key check value (3 bytes).
  virtual Result<Bytes> Kcv(KeyRef key) = 0;

  // PIN reset at a teller's counter (docs/card-commands.md, PIN UNBLOCK; docs/keys.md "PIN
  // translation"): `encrypted_pin_block` is an ISO 9564 format 0 PIN block (PAN = `pan`, a
  // digit string) encrypted 3DES-ECB under the PIN encryption key `pin_key` ("pek/..."), as the
  // teller's PIN pad sends it. Inside the store the PIN (6 digits, else an error) is re-enciphered
  // for the card: enc = 3DES-ECB(dpuk, 03 ‖ packed PIN ‖ 80 00 00 00), and the secure-messaging
  // MAC under `dpuk` over `84 24 00 00 0C ‖ enc` with IV = `challenge` (4 or 8 bytes, the card's
  // GET CHALLENGE) zero-padded to 8. Returns the PIN UNBLOCK data enc(8) ‖ MAC(4). `dpuk` must
  // be a key of the "pin_unblock" family (the card's DPUK from CardKey). The clear PIN is wiped
  // before this returns; it never leaves the store.
  virtual Result<Bytes> TranslatePinForCard(KeyRef pin_key, ByteView encrypted_pin_block,
                                            std::string_view pan, KeyRef dpuk,
                                            ByteView challenge) = 0;

  // ---- Online PIN verification (IBM 3624 offset method, docs/keys.md) -----------------------
  // The PIN verification value of `pin` (4..12 digits) for the card number `pan` (8..19 digits)
  // under the PIN verification key `pvk` ("pvk/..."): natural PIN = the first len(pin) digits of
  // 3DES-ECB(pvk, validation data) decimalised with 0123456789012345, validation data = the
  // PAN's rightmost 16 digits (zero-padded on the left) as 8 BCD bytes; offset = (PIN − natural
  // PIN) digit by digit mod 10. The offset tells nothing about the PIN without the PVK. For the
  // issuer, which holds the PIN anyway (it goes onto the card and into the PIN mailer).
  virtual Result<std::string> PinOffset(KeyRef pvk, std::string_view pan, std::string_view pin) = 0;
  // Translate and verify: `encrypted_pin_block` (ISO 9564 format 0 for `pan`, 3DES-ECB under
  // `pin_key`: a terminal's working PIN key from Unwrap, or a "pek/..." key) is decrypted inside
  // the store and its PIN checked against `offset` under `pvk`, in constant time. Returns only
  // match (true) or no match (false); a block that is not a format 0 block for `pan` (a wrong
  // PIN key, a garbled block) is no match. Errors: wrong key families, an 8-byte block, a PAN or
  // offset that is not digits. The clear PIN is wiped before this returns.
  virtual Result<bool> VerifyPin(KeyRef pin_key, ByteView encrypted_pin_block, std::string_view pan,
                                 KeyRef pvk, std::string_view offset) = 0;
  // A new PIN's verification value without the PIN leaving the store (a branch PIN reset,
  // docs/branch.md): `encrypted_pin_block` (ISO 9564 format 0 for `block_pan`, 3DES-ECB under the
  // PIN encryption key `pin_key`, "pek/...", as for TranslatePinForCard) is decrypted inside the
  // store and the offset of its PIN for the card number `pan` under `pvk` returned — equal to
  // PinOffset(pvk, pan, PIN). The two PANs differ when the PIN pad forms its block with another
  // PAN than the one terminals send (branch::PinBlockPan and iso8583::PanFromAsn). Errors: wrong
  // key families, a block that is not 8 bytes or not a format 0 block for `block_pan` (a wrong
  // PIN pad key), a PAN that is not 8..19 digits, a PIN that is not 4..12 digits; no error shows
  // the PIN. The clear PIN is wiped before this returns.
  virtual Result<std::string> PinOffsetFromBlock(KeyRef pin_key, ByteView encrypted_pin_block,
                                                 std::string_view block_pan, KeyRef pvk,
                                                 std::string_view pan) = 0;
};

// ---- Backends ----------------------------------------------------------------------------
// Creates a software key store in `dir` (created, mode 0700; the store file 0600). Error if a
// store is already there.
Result<std::unique_ptr<KeyStore>> CreateSoftwareKeyStore(const std::string& dir,
                                                         std::string_view passphrase,
                                                         bool test_only = false);
// Opens it; a wrong passphrase and a tampered file are distinct, clear errors.
Result<std::unique_ptr<KeyStore>> OpenSoftwareKeyStore(const std::string& dir,
                                                       std::string_view passphrase);

struct Pkcs11Config {
  std::string module_path;  // e.g. /usr/lib/softhsm/libsofthsm2.so
  std::string token_label;
  std::string user_pin;
  // Makes a token that holds no medcard keys yet a test key store (like CreateSoftwareKeyStore's
  // test_only): a marker object goes on the token, so every later open is test_only() too.
  bool mark_test_only = false;
};
// Opens a session on the token (C_Initialize, C_OpenSession, C_Login as CKU_USER). Keys are
// token objects labelled "medcard/<name>/v<version>".
Result<std::unique_ptr<KeyStore>> OpenPkcs11KeyStore(const Pkcs11Config& config);

}  // namespace medcard::keys
