#include "keys/key_policy.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <tuple>

#include "common/bcd.h"
#include "crypto/crypto.h"

namespace medcard::keys::internal {

bool IsKeyEncryptingKey(Family family) {
  return family == Family::kTransport || family == Family::kTerminalMaster ||
         family == Family::kTerminalKeyExchange;
}

bool IsPinKey(Family family) {
  return family == Family::kPinEncryption || family == Family::kPinUnblock;
}

Family FamilyOfName(std::string_view name) {
  if (name == "transport") return Family::kTransport;
  if (name == "pin_unblock") return Family::kPinUnblock;
  if (IsPinEncryptionKeyName(name)) return Family::kPinEncryption;
  if (IsPinVerificationKeyName(name)) return Family::kPinVerification;
  if (IsTerminalMasterKeyName(name)) return Family::kTerminalMaster;
  if (name == kTerminalKeyExchangeKey) return Family::kTerminalKeyExchange;
  return Family::kIssuer;
}

Error KeyPolicy::Fail(std::string_view message) const {
  return MakeError(std::string(backend_) + ": " + std::string(message));
}

Status KeyPolicy::CheckWrap(Family wrapping, Family key) const {
  if (!IsKeyEncryptingKey(wrapping)) {
    return Fail("only a transport key or a terminal master key can wrap keys");
  }
  // The key-exchange key is shared with every terminal: under it travel terminal master keys
  // only, and it never travels itself.
  if (key == Family::kTerminalKeyExchange) {
    return Fail("the terminal key-exchange key (tkek) is never wrapped");
  }
  // A PIN pad's key travels only to its workstation's PIN pad, under tkek like a terminal's
  // master key (docs/teller.md "The PIN pad's key"). A DPUK travels to its card (WRITE KEY under
  // the card's transport key) and nowhere else.
  if (key == Family::kPinEncryption && wrapping != Family::kTerminalKeyExchange) {
    return Fail("a PIN encryption key (pek/...) is never wrapped, but under tkek to its PIN pad");
  }
  if (key == Family::kPinVerification) {
    return Fail("a PIN verification key (pvk/...) is never wrapped");
  }
  if (key == Family::kPinUnblock && wrapping != Family::kTransport) {
    return Fail("a PIN-unblock key travels only to its card, under the card's transport key");
  }
  if (wrapping == Family::kTerminalKeyExchange && key != Family::kTerminalMaster &&
      key != Family::kPinEncryption) {
    return Fail(
        "the terminal key-exchange key (tkek) wraps only terminal master keys and PIN pads' "
        "PIN encryption keys");
  }
  // A terminal master key is known to the terminal: only keys meant for the terminal (its
  // working keys) travel under it, never an issuer or transport key.
  if (wrapping == Family::kTerminalMaster && key != Family::kReceived) {
    return Fail("refused to wrap an issuer or transport key under a terminal master key");
  }
  return Status::Ok();
}

Status KeyPolicy::CheckUnwrap(Family wrapping) const {
  if (!IsKeyEncryptingKey(wrapping)) {
    return Fail("only a transport key or a terminal master key can unwrap keys");
  }
  if (wrapping == Family::kTerminalKeyExchange) {
    return Fail(
        "the terminal key-exchange key (tkek) unwraps only a delivered terminal master key "
        "into the store (ImportWrapped)");
  }
  return Status::Ok();
}

Status KeyPolicy::CheckImportWrapped(Family wrapping, std::string_view name, ByteView cryptogram,
                                     ByteView expected_kcv) const {
  if (wrapping != Family::kTerminalKeyExchange) {
    return Fail(
        "a stored key is imported encrypted only under the terminal key-exchange key "
        "(tkek)");
  }
  if (!IsTerminalMasterKeyName(name) && !IsPinEncryptionKeyName(name)) {
    return Fail(
        "the terminal key-exchange key (tkek) delivers only terminal master keys "
        "(tmk/<12 upper-case hex digits>) and PIN encryption keys (pek/<workstation>), not \"" +
        std::string(name) + "\"");
  }
  if (cryptogram.size() != 16) {
    return Fail("a delivered key's cryptogram is 16 bytes, got " +
                std::to_string(cryptogram.size()));
  }
  if (expected_kcv.size() != 3) {
    return Fail("a KCV is 3 bytes, got " + std::to_string(expected_kcv.size()));
  }
  return Status::Ok();
}

Status KeyPolicy::CheckDeliveredKcv(std::string_view name, ByteView kcv,
                                    ByteView expected_kcv) const {
  if (ConstantTimeEqual(kcv, expected_kcv)) return Status::Ok();
  return Fail("the delivered key for \"" + std::string(name) + "\" has KCV " + ToHex(kcv) +
              ", the delivery says " + ToHex(expected_kcv) +
              " (a different tkek, or a damaged cryptogram); nothing imported");
}

Status KeyPolicy::CheckDecrypt(Family key) const {
  if (Status ok =
          RefusePinKey(key, "decrypt data (that would reveal the PINs enciphered under it)");
      !ok.ok()) {
    return ok;
  }
  return RefuseKeyEncryptingKey(key, "decrypt data (that would reveal the keys wrapped under it)");
}

Status KeyPolicy::CheckEncrypt(Family key) const {
  if (key == Family::kPinVerification) {
    return Fail(
        "a PIN verification key (pvk/...) encrypts nothing for the caller (that would give "
        "a card's natural PIN)");
  }
  if (key == Family::kPinUnblock) {
    return Fail(
        "a PIN-unblock key (pin_unblock, a card's DPUK) encrypts only a PIN, inside "
        "TranslatePinForCard");
  }
  return Status::Ok();
}

Status KeyPolicy::CheckDerivation(Family key, std::string_view what) const {
  if (Status ok = RefusePinKey(key, what); !ok.ok()) return ok;
  return RefuseKeyEncryptingKey(key, what);
}

Status KeyPolicy::RefusePinKey(Family key, std::string_view what) const {
  if (key == Family::kPinEncryption) {
    return Fail("a PIN encryption key (pek/...) cannot " + std::string(what));
  }
  if (key == Family::kPinUnblock) {
    return Fail("a PIN-unblock key (pin_unblock, a card's DPUK) cannot " + std::string(what));
  }
  if (key == Family::kPinVerification) {
    return Fail("a PIN verification key (pvk/...) cannot " + std::string(what));
  }
  return Status::Ok();
}

Status KeyPolicy::CheckMac(Family key) const {
  // One block's MAC under a 16-byte key is its 3DES encryption: a natural PIN again.
  if (key == Family::kPinVerification) {
    return Fail("a PIN verification key (pvk/...) computes no MAC");
  }
  return Status::Ok();
}

namespace {

bool AllDigits(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The IBM 3624 natural PIN's digit i: the i-th nibble of 3DES(PVK, validation data),
// decimalised with 0123456789012345 (A..F → 0..5).
int NaturalDigit(ByteView enciphered, std::size_t i) {
  const std::uint8_t b = enciphered[i / 2];
  const int nibble = (i % 2 == 0) ? (b >> 4) : (b & 0x0F);
  return nibble % 10;
}

}  // namespace

Status KeyPolicy::CheckPinOffset(Family pvk, std::string_view pan, std::string_view pin) const {
  if (pvk != Family::kPinVerification) {
    return Fail("a PIN offset is made only under a PIN verification key (pvk/...)");
  }
  if (pan.size() < 8 || pan.size() > 19 || !AllDigits(pan)) {
    return Fail("a card number for PIN verification is 8..19 digits");
  }
  if (pin.size() < 4 || pin.size() > 12 || !AllDigits(pin)) {
    return Fail("a PIN is 4..12 digits; this one is not");
  }
  return Status::Ok();
}

Status KeyPolicy::CheckPinVerification(Family pin_key, Family pvk, ByteView encrypted_pin_block,
                                       std::string_view pan, std::string_view offset) const {
  if (pin_key != Family::kReceived && pin_key != Family::kPinEncryption) {
    return Fail(
        "a PIN block is verified only from a terminal's working PIN key or a PIN encryption "
        "key (pek/...)");
  }
  if (pvk != Family::kPinVerification) {
    return Fail("a PIN is verified only under a PIN verification key (pvk/...)");
  }
  if (encrypted_pin_block.size() != 8) {
    return Fail("an encrypted PIN block is 8 bytes, got " +
                std::to_string(encrypted_pin_block.size()));
  }
  if (pan.size() < 8 || pan.size() > 19 || !AllDigits(pan)) {
    return Fail("a card number for PIN verification is 8..19 digits");
  }
  if (offset.size() < 4 || offset.size() > 12 || !AllDigits(offset)) {
    return Fail("a PIN offset is 4..12 digits");
  }
  return Status::Ok();
}

Status KeyPolicy::CheckPinOffsetFromBlock(Family pin_key, Family pvk, ByteView encrypted_pin_block,
                                          std::string_view block_pan, std::string_view pan) const {
  if (pin_key != Family::kPinEncryption) {
    return Fail("a new PIN's offset is made only from a PIN encryption key (pek/...)");
  }
  if (pvk != Family::kPinVerification) {
    return Fail("a PIN offset is made only under a PIN verification key (pvk/...)");
  }
  if (encrypted_pin_block.size() != 8) {
    return Fail("an encrypted PIN block is 8 bytes, got " +
                std::to_string(encrypted_pin_block.size()));
  }
  for (std::string_view number : {block_pan, pan}) {
    if (number.size() < 8 || number.size() > 19 || !AllDigits(number)) {
      return Fail("a card number for PIN verification is 8..19 digits");
    }
  }
  return Status::Ok();
}

Result<std::string> KeyPolicy::PinOffsetOfBlock(ByteView clear_block, std::string_view block_pan,
                                                ByteView enciphered) const {
  auto pin = crypto::ParsePinBlock(crypto::PinBlockFormat::kFormat0, clear_block, block_pan);
  if (!pin.ok()) {
    return Fail(
        "the PIN block does not decrypt to a format 0 PIN block for this card (wrong "
        "PIN pad key or card number)");
  }
  std::string digits = std::move(pin).value();
  const bool valid = digits.size() >= 4 && digits.size() <= 12 && AllDigits(digits);
  std::string offset;
  if (valid) offset = PinOffsetOf(enciphered, digits);
  OPENSSL_cleanse(digits.data(), digits.size());
  if (!valid) return Fail("a PIN is 4..12 digits; the new PIN was not");
  return offset;
}

Bytes KeyPolicy::PinValidationData(std::string_view pan) {
  std::string digits(16, '0');
  const std::size_t take = std::min<std::size_t>(pan.size(), 16);
  std::copy(pan.end() - static_cast<std::ptrdiff_t>(take), pan.end(),
            digits.end() - static_cast<std::ptrdiff_t>(take));
  Bytes data(8);
  for (std::size_t i = 0; i < 8; ++i) {
    data[i] = static_cast<std::uint8_t>(((digits[2 * i] - '0') << 4) | (digits[2 * i + 1] - '0'));
  }
  return data;
}

std::string KeyPolicy::PinOffsetOf(ByteView enciphered, std::string_view pin) {
  std::string offset(pin.size(), '0');
  for (std::size_t i = 0; i < pin.size(); ++i) {
    const int digit = ((pin[i] - '0') - NaturalDigit(enciphered, i) + 10) % 10;
    offset[i] = static_cast<char>('0' + digit);
  }
  return offset;
}

bool KeyPolicy::PinBlockMatches(ByteView clear_block, std::string_view pan, ByteView enciphered,
                                std::string_view offset) {
  auto pin = crypto::ParsePinBlock(crypto::PinBlockFormat::kFormat0, clear_block, pan);
  if (!pin.ok()) return false;
  std::string digits = std::move(pin).value();
  bool match = digits.size() == offset.size();
  if (match) {
    int difference = 0;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      const int expected = (NaturalDigit(enciphered, i) + (offset[i] - '0')) % 10;
      difference |= (digits[i] - '0') ^ expected;
    }
    match = difference == 0;
  }
  OPENSSL_cleanse(digits.data(), digits.size());
  return match;
}

Status KeyPolicy::CheckPinTranslation(Family pin_key, Family dpuk, ByteView encrypted_pin_block,
                                      ByteView challenge) const {
  if (pin_key != Family::kPinEncryption) {
    return Fail("a PIN block is translated only from a PIN encryption key (pek/...)");
  }
  // Anything else might be a key whose value the caller knows: the PIN would be readable.
  if (dpuk != Family::kPinUnblock) {
    return Fail("a PIN is enciphered for a card only under its DPUK (from the pin_unblock key)");
  }
  if (encrypted_pin_block.size() != 8) {
    return Fail("an encrypted PIN block is 8 bytes, got " +
                std::to_string(encrypted_pin_block.size()));
  }
  if (challenge.size() != 4 && challenge.size() != 8) {
    return Fail("a card challenge is 4 or 8 bytes, got " + std::to_string(challenge.size()));
  }
  return Status::Ok();
}

Result<Bytes> KeyPolicy::CardPinPlaintext(ByteView clear_block, std::string_view pan) const {
  auto pin = crypto::ParsePinBlock(crypto::PinBlockFormat::kFormat0, clear_block, pan);
  if (!pin.ok()) {
    return Fail(
        "the PIN block does not decrypt to a format 0 PIN block for this card (wrong "
        "PIN pad key or card number)");
  }
  std::string digits = std::move(pin).value();
  const bool six_digits = digits.size() == 6;
  std::optional<Bytes> packed;
  if (six_digits) packed = PackDigitsFPadded(digits);
  OPENSSL_cleanse(digits.data(), digits.size());
  if (!six_digits || !packed) return Fail("the card's PIN is 6 digits; the new PIN was not");
  Bytes plain = {0x03};
  Append(plain, *packed);
  SecureWipe(*packed);
  Append(plain, Bytes{0x80, 0x00, 0x00, 0x00});
  return plain;
}

Status KeyPolicy::RefuseKeyEncryptingKey(Family key, std::string_view what) const {
  if (IsKeyEncryptingKey(key)) {
    return Fail("a key-encrypting key (transport or terminal master key) cannot " +
                std::string(what));
  }
  return Status::Ok();
}

Status KeyPolicy::CheckName(std::string_view name) const {
  if (IsValidKeyName(name)) return Status::Ok();
  return Fail("\"" + std::string(name) +
              "\" is not a key name (an issuer role such as \"purchase\", "
              "tmk/<12 upper-case hex digits>, pek/<workstation>, or tkek)");
}

Result<std::uint8_t> KeyPolicy::NextVersion(std::string_view name, std::uint8_t latest) const {
  if (latest == std::numeric_limits<std::uint8_t>::max()) {
    return Fail("key \"" + std::string(name) + "\" has no version left");
  }
  return static_cast<std::uint8_t>(latest + 1);
}

Result<std::uint8_t> KeyPolicy::VersionOfNewKey(std::string_view name, std::uint8_t latest,
                                                std::optional<std::uint8_t> requested) const {
  if (!requested) return NextVersion(name, latest);
  if (*requested == 0 || *requested <= latest) {
    return Fail("key \"" + std::string(name) + "\" version " + std::to_string(*requested) +
                " delivered, but this store already holds version " + std::to_string(latest) +
                ": a delivery must be newer than every version held");
  }
  return *requested;
}

Error KeyPolicy::NoSuchVersion(std::string_view name, std::uint8_t version,
                               std::uint8_t latest) const {
  return Fail("no version " + std::to_string(version) + " of key \"" + std::string(name) +
              "\" (latest is " + std::to_string(latest) + ")");
}

Error KeyPolicy::UnknownRef() const { return Fail("unknown or released key reference"); }

Error KeyPolicy::KeyLengthError(std::string_view what, std::size_t want, std::size_t got) const {
  return Fail(std::string(what) + " needs a " + std::to_string(want) + "-byte key, this one is " +
              std::to_string(got) + " bytes");
}

Status KeyPolicy::CheckFactor(ByteView factor) const {
  if (factor.size() == 8) return Status::Ok();
  return Fail("a diversification factor is 8 bytes, got " + std::to_string(factor.size()));
}

Status KeyPolicy::CheckSessionKeyData(ByteView data) const {
  if (data.size() == 8) return Status::Ok();
  return Fail("session key data is 8 bytes, got " + std::to_string(data.size()));
}

Status KeyPolicy::CheckCipherInput(ByteView data, CipherMode mode, ByteView iv,
                                   bool encrypt) const {
  if (data.empty() || data.size() % 8 != 0) {
    return Fail("data to " + std::string(encrypt ? "encrypt" : "decrypt") +
                " is a whole number of 8-byte blocks, got " + std::to_string(data.size()) +
                " bytes");
  }
  if (mode == CipherMode::kEcb && !iv.empty()) return Fail("ECB takes no IV");
  if (mode == CipherMode::kCbc && !iv.empty() && iv.size() != 8) {
    return Fail("a CBC IV is 8 bytes, got " + std::to_string(iv.size()));
  }
  return Status::Ok();
}

Status KeyPolicy::CheckTestKeyImport(bool test_only, std::string_view store, ByteView key) const {
  if (!test_only) {
    return Fail("refused to import a published test key into " + std::string(store) +
                ", which is not a test key store");
  }
  if (key.size() != 16) {
    return Fail("a test key is 16 bytes, got " + std::to_string(key.size()));
  }
  return Status::Ok();
}

Result<Bytes> KeyPolicy::CombineComponents(std::span<const Bytes> components) const {
  if (components.size() < 2) {
    return Fail("a key ceremony needs at least 2 components, got " +
                std::to_string(components.size()));
  }
  Bytes key(16, 0);
  for (std::size_t i = 0; i < components.size(); ++i) {
    if (components[i].size() != 16) {
      SecureWipe(key);
      return Fail("component " + std::to_string(i + 1) + " is " +
                  std::to_string(components[i].size()) + " bytes; a component is 16");
    }
    for (std::size_t j = 0; j < 16; ++j) key[j] ^= components[i][j];
  }
  if (std::all_of(key.begin(), key.end(), [](std::uint8_t b) { return b == 0; })) {
    SecureWipe(key);
    return Fail("the components combine to an all-zero key; refused");
  }
  if (HalvesEqual(key)) {
    SecureWipe(key);
    return Fail(
        "the components combine to a key whose two halves are equal (single-DES strength); "
        "refused");
  }
  return key;
}

bool HalvesEqual(ByteView key) {
  return key.size() == 16 && std::equal(key.begin(), key.begin() + 8, key.begin() + 8);
}

std::uint64_t FirstRefId() { return (ReadU64(crypto::RandomBytes(8)) >> 2) | 1; }

void SortByNameAndVersion(std::vector<KeyInfo>& keys) {
  std::sort(keys.begin(), keys.end(), [](const KeyInfo& a, const KeyInfo& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
}

std::string IsoUtc(std::int64_t unix_time) {
  const std::time_t t = static_cast<std::time_t>(unix_time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

Bytes Sha256(ByteView data) {
  Bytes out(32);
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha256(), nullptr);
  out.resize(length);
  return out;
}

}  // namespace medcard::keys::internal
