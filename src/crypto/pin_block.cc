// ISO 9564-1 PIN block formats 0, 1 and 3 (8 bytes, 16 nibbles):
//   PIN field: C | N | PIN digits | fill    C = format, N = PIN length (4..12)
//     fill: format 0 F, format 1 random 0..F, format 3 random A..F
//   PAN field (formats 0 and 3): 0000 | 12 rightmost PAN digits excluding the check digit
//   block = PIN field xor PAN field (format 1: the PIN field alone)
#include <openssl/crypto.h>

#include <array>
#include <string>

#include "crypto/crypto.h"
#include "crypto/openssl_cipher.h"

namespace medcard::crypto {

namespace {

using Nibbles = std::array<std::uint8_t, 16>;

// Wipes the nibbles of a PIN field when it goes out of scope.
struct WipedNibbles {
  Nibbles n{};
  ~WipedNibbles() { OPENSSL_cleanse(n.data(), n.size()); }
};

constexpr std::size_t kMinPinDigits = 4;
constexpr std::size_t kMaxPinDigits = 12;
// ISO/IEC 7812-1: a PAN has 8 to 19 digits, the last one the check digit.
constexpr std::size_t kMinPanDigits = 8;
constexpr std::size_t kMaxPanDigits = 19;

bool AllDecimal(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool UsesPan(PinBlockFormat format) { return format != PinBlockFormat::kFormat1; }

Result<PinBlockFormat> CheckFormat(PinBlockFormat format) {
  switch (format) {
    case PinBlockFormat::kFormat0:
    case PinBlockFormat::kFormat1:
    case PinBlockFormat::kFormat3:
      return format;
  }
  return MakeError("crypto: PIN block format must be 0, 1 or 3");
}

// The PAN field: 0000 then the 12 rightmost digits before the check digit, zero-filled on the
// left when there are fewer (ISO 9564-1).
Result<Nibbles> PanField(std::string_view pan) {
  if (pan.size() < kMinPanDigits || pan.size() > kMaxPanDigits || !AllDecimal(pan)) {
    return MakeError("crypto: a PAN is 8 to 19 decimal digits");
  }
  const std::string_view account = pan.substr(0, pan.size() - 1);  // without the check digit
  const std::string_view rightmost =
      account.size() > 12 ? account.substr(account.size() - 12) : account;
  Nibbles field{};
  std::size_t at = 16 - rightmost.size();
  for (char c : rightmost) field[at++] = static_cast<std::uint8_t>(c - '0');
  return field;
}

std::uint8_t RandomFill(PinBlockFormat format) {
  for (;;) {
    const std::uint8_t r = RandomBytes(1)[0];
    if (format == PinBlockFormat::kFormat1) return r & 0x0F;
    // Format 3: uniform over A..F (reject the 4 values that would bias r % 6).
    if (r < 252) return static_cast<std::uint8_t>(0x0A + r % 6);
  }
}

Bytes Pack(const Nibbles& nibbles) {
  Bytes out(8);
  for (std::size_t i = 0; i < 8; ++i) {
    out[i] = static_cast<std::uint8_t>((nibbles[2 * i] << 4) | nibbles[2 * i + 1]);
  }
  return out;
}

}  // namespace

Result<Bytes> MakePinBlock(PinBlockFormat format, std::string_view pin, std::string_view pan) {
  if (auto checked = CheckFormat(format); !checked.ok()) return checked.error();
  if (pin.size() < kMinPinDigits || pin.size() > kMaxPinDigits || !AllDecimal(pin)) {
    return MakeError("crypto: a PIN is 4 to 12 decimal digits");
  }
  Nibbles pan_field{};
  if (UsesPan(format)) {
    auto field = PanField(pan);
    if (!field.ok()) return field.error();
    pan_field = *field;
  }
  WipedNibbles pin_field;
  pin_field.n[0] = static_cast<std::uint8_t>(format);
  pin_field.n[1] = static_cast<std::uint8_t>(pin.size());
  for (std::size_t i = 0; i < pin.size(); ++i) {
    pin_field.n[2 + i] = static_cast<std::uint8_t>(pin[i] - '0');
  }
  for (std::size_t i = 2 + pin.size(); i < 16; ++i) {
    pin_field.n[i] = format == PinBlockFormat::kFormat0 ? 0x0F : RandomFill(format);
  }
  for (std::size_t i = 0; i < 16; ++i) pin_field.n[i] ^= pan_field[i];
  return Pack(pin_field.n);
}

Result<std::string> ParsePinBlock(PinBlockFormat format, ByteView block, std::string_view pan) {
  if (auto checked = CheckFormat(format); !checked.ok()) return checked.error();
  if (block.size() != 8) {
    return MakeError("crypto: a PIN block is 8 bytes, got " + std::to_string(block.size()));
  }
  Nibbles pan_field{};
  if (UsesPan(format)) {
    auto field = PanField(pan);
    if (!field.ok()) return field.error();
    pan_field = *field;
  }
  WipedNibbles pin_field;
  for (std::size_t i = 0; i < 8; ++i) {
    pin_field.n[2 * i] = static_cast<std::uint8_t>((block[i] >> 4) ^ pan_field[2 * i]);
    pin_field.n[2 * i + 1] = static_cast<std::uint8_t>((block[i] & 0x0F) ^ pan_field[2 * i + 1]);
  }
  const Nibbles& n = pin_field.n;
  if (n[0] != static_cast<std::uint8_t>(format)) {
    return MakeError("crypto: PIN block control field does not match the format");
  }
  const std::size_t length = n[1];
  if (length < kMinPinDigits || length > kMaxPinDigits) {
    return MakeError("crypto: PIN block has a bad PIN length");
  }
  for (std::size_t i = 2; i < 2 + length; ++i) {
    if (n[i] > 9) return MakeError("crypto: PIN block has a non-decimal PIN digit");
  }
  for (std::size_t i = 2 + length; i < 16; ++i) {
    const bool fill_ok = format == PinBlockFormat::kFormat0   ? n[i] == 0x0F
                         : format == PinBlockFormat::kFormat3 ? n[i] >= 0x0A
                                                              : true;
    if (!fill_ok) return MakeError("crypto: PIN block has bad fill digits");
  }
  std::string pin;
  pin.reserve(length);
  for (std::size_t i = 2; i < 2 + length; ++i) pin.push_back(static_cast<char>('0' + n[i]));
  return pin;
}

}  // namespace medcard::crypto
