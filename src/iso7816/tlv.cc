#include "iso7816/tlv.h"

#include <string>

namespace medcard::iso7816 {

namespace {

constexpr std::size_t kMaxTagBytes = 3;
constexpr std::size_t kMaxLengthBytes = 4;  // 84 xx xx xx xx

bool IsPadding(std::uint8_t b) { return b == 0x00 || b == 0xFF; }

Error ParseError(std::size_t offset, const std::string& what) {
  return MakeError("BER-TLV at byte " + std::to_string(offset) + ": " + what);
}

// ReadTag and ReadLength answer a bare reason; ParseSequence adds where the object starts.

// Reads a tag at `pos` (ISO/IEC 8825-1 §8.1.2): one byte, or when its bits 5-1 are all 1 more
// bytes, each but the last with bit 8 set.
Result<std::uint32_t> ReadTag(ByteView in, std::size_t& pos) {
  std::uint32_t tag = in[pos++];
  if ((tag & 0x1F) != 0x1F) return tag;
  for (std::size_t count = 1;; ++count) {
    if (count == kMaxTagBytes) return MakeError("tag longer than 3 bytes");
    if (pos == in.size()) return MakeError("truncated tag");
    const std::uint8_t b = in[pos++];
    tag = (tag << 8) | b;
    if ((b & 0x80) == 0) return tag;
  }
}

// Reads a definite length (§8.1.3): short form 00..7F, long form 81..84 then 1..4 bytes.
// Non-minimal long forms (81 05) are valid BER and accepted.
Result<std::size_t> ReadLength(ByteView in, std::size_t& pos) {
  if (pos == in.size()) return MakeError("missing length");
  const std::uint8_t first = in[pos++];
  if (first < 0x80) return static_cast<std::size_t>(first);
  if (first == 0x80) return MakeError("indefinite length");
  const std::size_t count = first & 0x7F;
  if (count > kMaxLengthBytes) return MakeError("length field longer than 4 bytes");
  if (in.size() - pos < count) return MakeError("truncated length");
  std::size_t length = 0;
  for (std::size_t i = 0; i < count; ++i) length = (length << 8) | in[pos++];
  return length;
}

// `base` is the offset of `in` in the outermost buffer, for error messages.
Result<std::vector<Tlv>> ParseSequence(ByteView in, int depth, std::size_t base) {
  std::vector<Tlv> objects;
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (IsPadding(in[pos])) {
      ++pos;
      continue;
    }
    const std::size_t start = pos;
    if (depth > kMaxTlvDepth) {
      return ParseError(base + start, "nested deeper than " + std::to_string(kMaxTlvDepth));
    }
    auto tag = ReadTag(in, pos);
    if (!tag) return ParseError(base + start, tag.error().message);
    auto length = ReadLength(in, pos);
    if (!length) return ParseError(base + start, length.error().message);
    if (*length > in.size() - pos) {
      return ParseError(base + start,
                        "value of " + std::to_string(*length) + " bytes runs past the end");
    }
    Tlv tlv;
    tlv.tag = *tag;
    const ByteView value = in.subspan(pos, *length);
    tlv.value.assign(value.begin(), value.end());
    if (tlv.constructed()) {
      auto children = ParseSequence(value, depth + 1, base + pos);
      if (!children) return children.error();
      tlv.children = std::move(*children);
    }
    pos += *length;
    objects.push_back(std::move(tlv));
  }
  return objects;
}

std::uint8_t FirstTagByte(std::uint32_t tag) {
  if (tag > 0xFFFF) return static_cast<std::uint8_t>(tag >> 16);
  if (tag > 0xFF) return static_cast<std::uint8_t>(tag >> 8);
  return static_cast<std::uint8_t>(tag);
}

}  // namespace

bool Tlv::constructed() const { return (FirstTagByte(tag) & 0x20) != 0; }

const Tlv* Tlv::Find(std::uint32_t wanted) const {
  if (tag == wanted) return this;
  return FindTag(children, wanted);
}

Result<std::vector<Tlv>> ParseBerTlv(ByteView data) { return ParseSequence(data, 1, 0); }

const Tlv* FindTag(const std::vector<Tlv>& objects, std::uint32_t tag) {
  for (const Tlv& object : objects) {
    if (const Tlv* found = object.Find(tag)) return found;
  }
  return nullptr;
}

Bytes EncodeTag(std::uint32_t tag) {
  Bytes out;
  if (tag > 0xFFFF) out.push_back(static_cast<std::uint8_t>(tag >> 16));
  if (tag > 0xFF) out.push_back(static_cast<std::uint8_t>(tag >> 8));
  out.push_back(static_cast<std::uint8_t>(tag));
  return out;
}

Bytes EncodeLength(std::size_t length) {
  if (length < 0x80) return {static_cast<std::uint8_t>(length)};
  Bytes digits;
  for (std::size_t rest = length; rest != 0; rest >>= 8) {
    digits.insert(digits.begin(), static_cast<std::uint8_t>(rest));
  }
  Bytes out{static_cast<std::uint8_t>(0x80 | digits.size())};
  Append(out, View(digits));
  return out;
}

Bytes BuildTlv(std::uint32_t tag, ByteView value) {
  Bytes out = EncodeTag(tag);
  Append(out, View(EncodeLength(value.size())));
  Append(out, value);
  return out;
}

Bytes BuildTlv(const Tlv& tlv) {
  if (!tlv.constructed() || tlv.children.empty()) return BuildTlv(tlv.tag, View(tlv.value));
  Bytes value;
  for (const Tlv& child : tlv.children) Append(value, View(BuildTlv(child)));
  return BuildTlv(tlv.tag, View(value));
}

}  // namespace medcard::iso7816
