// The message MAC (docs/protocol.md "MAC"): ISO 9797-1 algorithm 3 over MacInput, 4 bytes used.
#include <array>

#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

namespace {
constexpr std::size_t kMacFieldSize = 8;
}  // namespace

Bytes MacInput(const Message& message) {
  Bytes out;
  out.reserve(256);
  message.AppendEncoded(out, true);
  return out;
}

Status SetMac(Message& message, ByteView mac) {
  if (mac.size() != kMacSize) {
    return MakeError("iso8583: a MAC is " + std::to_string(kMacSize) + " bytes, got " +
                     std::to_string(mac.size()));
  }
  Bytes field(kMacFieldSize, 0x00);
  std::copy(mac.begin(), mac.end(), field.begin());
  return message.SetBytes(64, View(field));
}

Result<Bytes> MacOf(const Message& message) {
  auto field = message.GetBytes(64);
  if (!field.ok()) return field.error();
  const ByteView tail = ByteView(*field).subspan(kMacSize);
  for (std::uint8_t b : tail) {
    if (b != 0) {
      return MakeError("iso8583: field 64 (message authentication code): bytes 5..8 are " +
                       ToHex(tail) + ", must be 00000000");
    }
  }
  return Bytes(field->begin(), field->begin() + kMacSize);
}

void Sign(Message& message, const crypto::MacKey& key) {
  const auto mac = key.Mac4(View(MacInput(message)));
  // A 4-byte MAC always fits field 64.
  (void)SetMac(message, ByteView(mac.data(), mac.size()));
}

Status VerifyMac(const Message& message, const crypto::MacKey& key) {
  auto received = MacOf(message);
  if (!received.ok()) return received.error();
  const auto expected = key.Mac4(View(MacInput(message)));
  if (!ConstantTimeEqual(View(*received), ByteView(expected.data(), expected.size()))) {
    return MakeError("iso8583: MAC invalid");
  }
  return Status::Ok();
}

}  // namespace medcard::iso8583
