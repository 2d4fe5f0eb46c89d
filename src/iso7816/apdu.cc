#include "iso7816/apdu.h"

#include <cassert>
#include <utility>

namespace medcard::iso7816 {

namespace {

constexpr std::size_t kHeaderSize = 4;  // CLA INS P1 P2
constexpr std::size_t kMaxShortLc = 255;
constexpr std::uint32_t kMaxShortLe = 256;
[[maybe_unused]] constexpr std::size_t kMaxExtendedLc = 65535;  // used in asserts only
constexpr std::uint32_t kMaxExtendedLe = 65536;

// Short Le: 00 means 256. Extended Le: 0000 means 65536 (ISO 7816-3 §12.1.3).
std::uint32_t DecodeShortLe(std::uint8_t b) { return b == 0 ? kMaxShortLe : b; }
std::uint32_t DecodeExtendedLe(std::uint16_t v) { return v == 0 ? kMaxExtendedLe : v; }

// INS codes whose data field is a PIN or a key (plain or under a transport key).
bool CarriesSecret(std::uint8_t ins) {
  switch (ins) {
    case 0x20:  // VERIFY
    case 0x24:  // CHANGE REFERENCE DATA / PBOC PIN UNBLOCK
    case 0x2C:  // RESET RETRY COUNTER
    case 0x5E:  // PBOC CHANGE PIN / RELOAD PIN
    case 0xD4:  // WRITE KEY
      return true;
    default:
      return false;
  }
}

void AppendHexByte(std::string& out, std::uint8_t b) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  if (!out.empty()) out.push_back(' ');
  out.push_back(kDigits[b >> 4]);
  out.push_back(kDigits[b & 0x0F]);
}

}  // namespace

int CommandApdu::Case() const {
  if (data.empty()) return le ? 2 : 1;
  return le ? 4 : 3;
}

Bytes CommandApdu::Serialize() const {
  assert(data.size() <= kMaxExtendedLc);
  assert(!le || (*le >= 1 && *le <= kMaxExtendedLe));
  const bool use_extended = extended || data.size() > kMaxShortLc || (le && *le > kMaxShortLe);
  Bytes out{cla, ins, p1, p2};
  if (Case() == 1) return out;  // no length fields at all, whatever `extended` says
  out.reserve(kHeaderSize + 3 + data.size() + 2);
  if (!use_extended) {
    if (!data.empty()) {
      out.push_back(static_cast<std::uint8_t>(data.size()));
      Append(out, View(data));
    }
    // 256 wraps to 00 by the narrowing cast, as the encoding requires.
    if (le) out.push_back(static_cast<std::uint8_t>(*le));
    return out;
  }
  // Extended: one 00 byte, then 2-byte Lc (if data) and 2-byte Le; 65536 wraps to 0000.
  out.push_back(0x00);
  if (!data.empty()) {
    AppendU16(out, static_cast<std::uint16_t>(data.size()));
    Append(out, View(data));
  }
  if (le) AppendU16(out, static_cast<std::uint16_t>(*le));
  return out;
}

std::string CommandApdu::ToString() const {
  if (!CarriesSecret(ins) || data.empty()) {
    std::string out;
    for (std::uint8_t b : Serialize()) AppendHexByte(out, b);
    return out;
  }
  // The header and length fields as they are on the wire, the data hidden.
  const Bytes wire = Serialize();
  const std::size_t lc_bytes = wire[kHeaderSize] == 0x00 ? 3 : 1;
  std::string out;
  for (std::size_t i = 0; i < kHeaderSize + lc_bytes; ++i) AppendHexByte(out, wire[i]);
  out += " <" + std::to_string(data.size()) + " bytes hidden>";
  for (std::size_t i = kHeaderSize + lc_bytes + data.size(); i < wire.size(); ++i) {
    AppendHexByte(out, wire[i]);
  }
  return out;
}

// ISO 7816-3 §12.1.3: the body length and the first body bytes decide the case.
std::variant<CommandApdu, StatusWord> CommandApdu::Parse(ByteView raw) {
  if (raw.size() < kHeaderSize) return sw::kWrongLength;
  CommandApdu apdu;
  apdu.cla = raw[0];
  apdu.ins = raw[1];
  apdu.p1 = raw[2];
  apdu.p2 = raw[3];
  const ByteView body = raw.subspan(kHeaderSize);
  const std::size_t n = body.size();

  if (n == 0) return apdu;  // case 1
  if (n == 1) {             // case 2 short
    apdu.le = DecodeShortLe(body[0]);
    return apdu;
  }
  if (body[0] != 0x00) {  // short Lc = 1..255
    const std::size_t lc = body[0];
    if (n == 1 + lc) {  // case 3 short
      apdu.data.assign(body.begin() + 1, body.end());
      return apdu;
    }
    if (n == 2 + lc) {  // case 4 short
      apdu.data.assign(body.begin() + 1, body.begin() + 1 + static_cast<std::ptrdiff_t>(lc));
      apdu.le = DecodeShortLe(body[n - 1]);
      return apdu;
    }
    return sw::kWrongLength;
  }

  // body[0] == 00 and more bytes follow: extended length.
  if (n < 3) return sw::kWrongLength;
  apdu.extended = true;
  if (n == 3) {  // case 2 extended
    apdu.le = DecodeExtendedLe(ReadU16(body, 1));
    return apdu;
  }
  const std::size_t lc = ReadU16(body, 1);
  if (lc == 0) return sw::kWrongLength;
  if (n == 3 + lc) {  // case 3 extended
    apdu.data.assign(body.begin() + 3, body.end());
    return apdu;
  }
  if (n == 5 + lc) {  // case 4 extended: Le is 2 bytes, no leading 00
    apdu.data.assign(body.begin() + 3, body.begin() + 3 + static_cast<std::ptrdiff_t>(lc));
    apdu.le = DecodeExtendedLe(ReadU16(body, n - 2));
    return apdu;
  }
  return sw::kWrongLength;
}

CommandApdu CommandApdu::Case1(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1,
                               std::uint8_t p2) {
  CommandApdu apdu;
  apdu.cla = cla;
  apdu.ins = ins;
  apdu.p1 = p1;
  apdu.p2 = p2;
  return apdu;
}

CommandApdu CommandApdu::Case2(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                               std::uint32_t le) {
  CommandApdu apdu = Case1(cla, ins, p1, p2);
  apdu.le = le;
  return apdu;
}

CommandApdu CommandApdu::Case3(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                               Bytes data) {
  CommandApdu apdu = Case1(cla, ins, p1, p2);
  apdu.data = std::move(data);
  return apdu;
}

CommandApdu CommandApdu::Case4(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                               Bytes data, std::uint32_t le) {
  CommandApdu apdu = Case3(cla, ins, p1, p2, std::move(data));
  apdu.le = le;
  return apdu;
}

Bytes ResponseApdu::Serialize() const { return Respond(View(data), sw); }

Result<ResponseApdu> ResponseApdu::Parse(ByteView raw) {
  if (raw.size() < 2) {
    return MakeError("R-APDU of " + std::to_string(raw.size()) + " bytes: needs at least SW1 SW2");
  }
  ResponseApdu response;
  response.data.assign(raw.begin(), raw.end() - 2);
  response.sw = StatusWord(raw[raw.size() - 2], raw[raw.size() - 1]);
  return response;
}

Bytes Respond(ByteView data, StatusWord sw) {
  Bytes out;
  out.reserve(data.size() + 2);
  Append(out, data);
  out.push_back(sw.sw1());
  out.push_back(sw.sw2());
  return out;
}

// ISO 7816-4 §7.2.2: P1 b8 = 1 → b7-b6 RFU (00), b5-b1 SFI, P2 offset 0..255.
std::optional<BinaryAddress> DecodeBinaryAddress(std::uint8_t p1, std::uint8_t p2) {
  BinaryAddress address;
  if ((p1 & 0x80) == 0) {
    address.offset = static_cast<std::uint16_t>((p1 << 8) | p2);
    return address;
  }
  if ((p1 & 0x60) != 0) return std::nullopt;
  const std::uint8_t sfi = p1 & 0x1F;
  if (sfi == 0 || sfi == 0x1F) return std::nullopt;
  address.sfi = sfi;
  address.offset = p2;
  return address;
}

// ISO 7816-4 §7.3.3: P2 b8-b4 SFI (00000 = current EF), b3-b1 reference mode.
RecordAddress DecodeRecordAddress(std::uint8_t p2) {
  RecordAddress address;
  const std::uint8_t sfi = p2 >> 3;
  if (sfi != 0) address.sfi = sfi;
  address.mode = p2 & 0x07;
  return address;
}

}  // namespace medcard::iso7816
