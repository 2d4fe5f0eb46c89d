// Fuzzes the BER-TLV parser (iso7816/tlv.h). Whatever parses must re-encode into bytes that parse
// back to the same tree: from the raw values exactly, and from the children (padding dropped,
// minimal lengths) to the same shape, which is then a fixed point of re-encoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "iso7816/tlv.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
using medcard::iso7816::BuildTlv;
using medcard::iso7816::ParseBerTlv;
using medcard::iso7816::Tlv;

void Check(bool condition) {
  if (!condition) std::abort();
}

// Same tags and children everywhere; values compared for primitives and for constructed objects
// without children (their value is what BuildTlv re-encodes).
bool SameShape(const std::vector<Tlv>& a, const std::vector<Tlv>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].tag != b[i].tag) return false;
    const bool use_children = a[i].constructed() && !a[i].children.empty();
    if (use_children ? !SameShape(a[i].children, b[i].children) : a[i].value != b[i].value) {
      return false;
    }
  }
  return true;
}

Bytes EncodeFromValues(const std::vector<Tlv>& objects) {
  Bytes out;
  for (const Tlv& object : objects) {
    medcard::Append(out, medcard::View(BuildTlv(object.tag, medcard::View(object.value))));
  }
  return out;
}

Bytes EncodeFromChildren(const std::vector<Tlv>& objects) {
  Bytes out;
  for (const Tlv& object : objects) medcard::Append(out, medcard::View(BuildTlv(object)));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = ParseBerTlv(ByteView(data, size));
  if (!parsed.ok()) {
    Check(!parsed.error().message.empty());
    return 0;
  }
  auto from_values = ParseBerTlv(medcard::View(EncodeFromValues(*parsed)));
  Check(from_values.ok());
  Check(*from_values == *parsed);

  const Bytes canonical = EncodeFromChildren(*parsed);
  auto from_children = ParseBerTlv(medcard::View(canonical));
  Check(from_children.ok());
  Check(SameShape(*from_children, *parsed));
  Check(EncodeFromChildren(*from_children) == canonical);
  return 0;
}
