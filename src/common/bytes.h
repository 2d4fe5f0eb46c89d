// Byte strings, hex and big-endian integers: the vocabulary of APDUs and card files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace medcard {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Upper-case hex, no separators.
std::string ToHex(ByteView bytes);
// Accepts upper/lower case, ignores spaces; nullopt on odd length or a non-hex character.
std::optional<Bytes> FromHex(std::string_view hex);
// For constants in code and tests only: aborts on bad hex.
Bytes HexToBytes(std::string_view hex);

// Big-endian fixed-width integers, as every PBOC field is encoded.
void AppendU16(Bytes& out, std::uint16_t v);
void AppendU24(Bytes& out, std::uint32_t v);
void AppendU32(Bytes& out, std::uint32_t v);
void AppendU48(Bytes& out, std::uint64_t v);
void AppendU64(Bytes& out, std::uint64_t v);
// REQUIRES: the view holds at least the bytes read.
std::uint16_t ReadU16(ByteView in, std::size_t offset = 0);
std::uint32_t ReadU24(ByteView in, std::size_t offset = 0);
std::uint32_t ReadU32(ByteView in, std::size_t offset = 0);
std::uint64_t ReadU48(ByteView in, std::size_t offset = 0);
std::uint64_t ReadU64(ByteView in, std::size_t offset = 0);

inline void Append(Bytes& out, ByteView more) { out.insert(out.end(), more.begin(), more.end()); }
inline void Append(Bytes& out, std::initializer_list<std::uint8_t> more) {
  out.insert(out.end(), more.begin(), more.end());
}
// Concatenation: Concat({a, b, c}).
Bytes Concat(std::initializer_list<ByteView> parts);

inline ByteView View(const Bytes& b) { return ByteView(b.data(), b.size()); }
inline ByteView Sub(ByteView in, std::size_t offset, std::size_t length) {
  return in.subspan(offset, length);
}

// Overwrites the buffer so a secret does not linger in memory.
void SecureWipe(Bytes& secret);

// Compares in time independent of where the first difference is (for MACs, PINs).
bool ConstantTimeEqual(ByteView a, ByteView b);

}  // namespace medcard
