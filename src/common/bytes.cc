#include "common/bytes.h"

#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>

namespace medcard {

std::string ToHex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0F]);
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<Bytes> FromHex(std::string_view hex) {
  Bytes out;
  out.reserve(hex.size() / 2);
  int high = -1;
  for (char c : hex) {
    if (c == ' ') continue;
    int v = HexValue(c);
    if (v < 0) return std::nullopt;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<std::uint8_t>((high << 4) | v));
      high = -1;
    }
  }
  if (high >= 0) return std::nullopt;
  return out;
}

Bytes HexToBytes(std::string_view hex) {
  auto b = FromHex(hex);
  if (!b) std::abort();
  return *b;
}

void AppendU16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void AppendU24(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void AppendU32(Bytes& out, std::uint32_t v) {
  AppendU16(out, static_cast<std::uint16_t>(v >> 16));
  AppendU16(out, static_cast<std::uint16_t>(v));
}
void AppendU48(Bytes& out, std::uint64_t v) {
  AppendU16(out, static_cast<std::uint16_t>(v >> 32));
  AppendU32(out, static_cast<std::uint32_t>(v));
}
void AppendU64(Bytes& out, std::uint64_t v) {
  AppendU32(out, static_cast<std::uint32_t>(v >> 32));
  AppendU32(out, static_cast<std::uint32_t>(v));
}

std::uint16_t ReadU16(ByteView in, std::size_t o) {
  return static_cast<std::uint16_t>((in[o] << 8) | in[o + 1]);
}
std::uint32_t ReadU24(ByteView in, std::size_t o) {
  return (static_cast<std::uint32_t>(in[o]) << 16) | (static_cast<std::uint32_t>(in[o + 1]) << 8) |
         in[o + 2];
}
std::uint32_t ReadU32(ByteView in, std::size_t o) {
  return (static_cast<std::uint32_t>(ReadU16(in, o)) << 16) | ReadU16(in, o + 2);
}
std::uint64_t ReadU48(ByteView in, std::size_t o) {
  return (static_cast<std::uint64_t>(ReadU16(in, o)) << 32) | ReadU32(in, o + 2);
}
std::uint64_t ReadU64(ByteView in, std::size_t o) {
  return (static_cast<std::uint64_t>(ReadU32(in, o)) << 32) | ReadU32(in, o + 4);
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  std::size_t n = 0;
  for (auto p : parts) n += p.size();
  Bytes out;
  out.reserve(n);
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void SecureWipe(Bytes& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace medcard
