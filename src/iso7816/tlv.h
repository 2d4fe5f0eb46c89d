// BER-TLV (ISO/IEC 8825-1 as used by ISO 7816-4 and EMV): multi-byte tags, definite lengths
// up to 4 length bytes, constructed tags parsed recursively. Strict: indefinite length, a
// length that runs past the buffer, or nesting deeper than kMaxDepth is an error.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::iso7816 {

struct Tlv {
  std::uint32_t tag = 0;  // the tag bytes as an integer, e.g. 0x9F08, 0x6F
  Bytes value;            // raw value (for constructed tags also parsed into children)
  std::vector<Tlv> children;

  bool constructed() const;  // bit 6 of the first tag byte
  // First descendant-or-self child with this tag (depth-first), or nullptr.
  const Tlv* Find(std::uint32_t tag) const;

  bool operator==(const Tlv&) const = default;
};

inline constexpr int kMaxTlvDepth = 16;

// Parses a sequence of TLV objects filling the whole buffer. 00 and FF padding between objects
// is skipped (ISO 7816-4 §5.2.2), also inside constructed values. Tags are 1 to 3 bytes; lengths
// are short form or 81..84 long form (non-minimal long forms such as 81 05 are valid BER and
// accepted). The top-level objects are depth 1; an object deeper than kMaxTlvDepth is an error,
// as is a constructed value that is not itself a TLV sequence. Errors name the byte offset.
Result<std::vector<Tlv>> ParseBerTlv(ByteView data);
// Finds a tag among parsed objects (searching children too).
const Tlv* FindTag(const std::vector<Tlv>& objects, std::uint32_t tag);

// Encoding.
Bytes EncodeTag(std::uint32_t tag);
Bytes EncodeLength(std::size_t length);  // minimal form; REQUIRES: length <= 0xFFFFFFFF
Bytes BuildTlv(std::uint32_t tag, ByteView value);
Bytes BuildTlv(const Tlv& tlv);  // uses children when constructed and non-empty, else value

}  // namespace medcard::iso7816
