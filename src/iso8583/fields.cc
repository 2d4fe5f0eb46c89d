// The field-definition table (docs/protocol.md "Fields") and the codec of one field.
// Formats, length types and maximum lengths follow China UnionPay POS usage; where medcard
// differs (62 is binary up to 999 bytes) the table says so and the document explains why.
#include <array>
#include <string>

#include "iso8583/field_codec.h"
#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

namespace {

using enum FieldFormat;
using enum LengthType;

constexpr std::array kFields = {
    FieldDefinition{2, "primary account number", kN, kLlvar, 19},
    FieldDefinition{3, "processing code", kN, kFixed, 6},
    FieldDefinition{4, "amount, transaction", kN, kFixed, 12},
    FieldDefinition{11, "system trace audit number", kN, kFixed, 6},
    FieldDefinition{12, "time, local transaction", kN, kFixed, 6},
    FieldDefinition{13, "date, local transaction", kN, kFixed, 4},
    FieldDefinition{14, "date, expiration", kN, kFixed, 4},
    FieldDefinition{15, "date, settlement", kN, kFixed, 4},
    FieldDefinition{22, "point of service entry mode", kN, kFixed, 3},
    FieldDefinition{23, "card sequence number", kN, kFixed, 3},
    FieldDefinition{25, "point of service condition code", kN, kFixed, 2},
    FieldDefinition{26, "point of service PIN capture code", kN, kFixed, 2},
    FieldDefinition{32, "acquiring institution identification code", kN, kLlvar, 11},
    FieldDefinition{35, "track 2 data", kZ, kLlvar, 37},
    FieldDefinition{36, "track 3 data", kZ, kLllvar, 104},
    FieldDefinition{37, "retrieval reference number", kAn, kFixed, 12},
    FieldDefinition{38, "authorization identification response", kAn, kFixed, 6},
    FieldDefinition{39, "response code", kAn, kFixed, 2},
    FieldDefinition{41, "card acceptor terminal identification", kAns, kFixed, 8},
    FieldDefinition{42, "card acceptor identification code", kAns, kFixed, 15},
    FieldDefinition{44, "additional response data", kAns, kLlvar, 25},
    FieldDefinition{48, "additional data, private", kN, kLllvar, 322},
    FieldDefinition{49, "currency code, transaction", kAn, kFixed, 3},
    FieldDefinition{52, "PIN data", kB, kFixed, 8},
    FieldDefinition{53, "security related control information", kN, kFixed, 16},
    FieldDefinition{54, "additional amounts", kAn, kLllvar, 20},
    FieldDefinition{55, "ICC system related data", kB, kLllvar, 255},
    FieldDefinition{60, "reserved private (transaction, batch, network management)", kN, kLllvar,
                    17},
    FieldDefinition{61, "original message data", kN, kLllvar, 29},
    FieldDefinition{62, "reserved private (medcard data)", kB, kLllvar, 999},
    FieldDefinition{63, "reserved private (operator)", kAns, kLllvar, 163},
    FieldDefinition{64, "message authentication code", kB, kFixed, 8},
};

constexpr bool TableIsSound() {
  int previous = 1;
  for (const FieldDefinition& f : kFields) {
    if (f.number <= previous || f.number > 64 || f.max_length == 0) return false;
    if (f.length_type == kLlvar && f.max_length > 99) return false;
    if (f.length_type == kLllvar && f.max_length > 999) return false;
    previous = f.number;
  }
  return true;
}
static_assert(TableIsSound(), "field numbers ascend within 2..64, lengths fit their prefix");

constexpr std::array<const FieldDefinition*, 65> BuildIndex() {
  std::array<const FieldDefinition*, 65> index{};
  for (const FieldDefinition& f : kFields) index[static_cast<std::size_t>(f.number)] = &f;
  return index;
}
constexpr auto kIndex = BuildIndex();

bool IsDigitFormat(FieldFormat format) { return format == kN || format == kZ; }

// Bytes the value occupies (without the length prefix).
std::size_t EncodedSize(FieldFormat format, std::size_t length) {
  return IsDigitFormat(format) ? (length + 1) / 2 : length;
}

std::uint8_t NibbleOf(char c) {
  return c == '=' ? std::uint8_t{0x0D} : static_cast<std::uint8_t>(c - '0');
}

void AppendBcdLength(std::size_t length, std::size_t prefix_bytes, Bytes& out) {
  if (prefix_bytes == 1) {
    out.push_back(static_cast<std::uint8_t>((length / 10) << 4 | length % 10));
  } else {
    out.push_back(static_cast<std::uint8_t>(length / 100));
    out.push_back(static_cast<std::uint8_t>((length / 10 % 10) << 4 | length % 10));
  }
}

}  // namespace

std::span<const FieldDefinition> FieldDefinitions() { return kFields; }

const FieldDefinition* FindField(int number) {
  if (number < 0 || number > 64) return nullptr;
  return kIndex[static_cast<std::size_t>(number)];
}

namespace internal {

std::string FieldLabel(const FieldDefinition& field) {
  return "field " + std::to_string(field.number) + " (" + std::string(field.name) + ")";
}

void PackDigits(std::string_view digits, Bytes& out) {
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>((digits[i] - '0') << 4 | (digits[i + 1] - '0')));
  }
}

bool UnpackDigits(ByteView bcd, std::string& out) {
  for (std::uint8_t b : bcd) {
    if ((b >> 4) > 9 || (b & 0x0F) > 9) return false;
    out.push_back(static_cast<char>('0' + (b >> 4)));
    out.push_back(static_cast<char>('0' + (b & 0x0F)));
  }
  return true;
}

Status CheckValue(const FieldDefinition& field, ByteView value) {
  const std::string label = FieldLabel(field);
  if (field.length_type == kFixed && value.size() != field.max_length) {
    return MakeError(label + ": must be exactly " + std::to_string(field.max_length) +
                     (IsDigitFormat(field.format) ? " digits" : " bytes") + ", got " +
                     std::to_string(value.size()));
  }
  if (value.empty()) return MakeError(label + ": empty (absent fields are left out)");
  if (value.size() > field.max_length) {
    return MakeError(label + ": at most " + std::to_string(field.max_length) +
                     (IsDigitFormat(field.format) ? " digits" : " bytes") + ", got " +
                     std::to_string(value.size()));
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::uint8_t c = value[i];
    bool ok = true;
    switch (field.format) {
      case kN:
        ok = c >= '0' && c <= '9';
        break;
      case kZ:
        ok = (c >= '0' && c <= '9') || c == '=';
        break;
      case kAn:
        ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        break;
      case kAns:
        ok = c >= 0x20 && c <= 0x7E;
        break;
      case kB:
        break;
    }
    if (!ok) {
      static constexpr const char* kClass[] = {"a decimal digit", "a digit or '='",
                                               "a letter or digit", "printable ASCII", ""};
      return MakeError(label + ": character " + std::to_string(i + 1) + " (byte " +
                       ToHex(value.subspan(i, 1)) + ") is not " +
                       kClass[static_cast<int>(field.format)]);
    }
  }
  return Status::Ok();
}

void EncodeField(const FieldDefinition& field, ByteView value, Bytes& out) {
  if (field.length_type == kLlvar) AppendBcdLength(value.size(), 1, out);
  if (field.length_type == kLllvar) AppendBcdLength(value.size(), 2, out);
  if (!IsDigitFormat(field.format)) {
    Append(out, value);
    return;
  }
  const bool odd = value.size() % 2 == 1;
  std::size_t i = 0;
  if (odd && field.format == kN) {  // right-aligned: a leading 0 nibble
    out.push_back(NibbleOf(static_cast<char>(value[0])));
    i = 1;
  }
  for (; i + 1 < value.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(NibbleOf(static_cast<char>(value[i])) << 4 |
                                            NibbleOf(static_cast<char>(value[i + 1]))));
  }
  if (odd && field.format == kZ) {  // left-aligned: a trailing 0 nibble
    out.push_back(static_cast<std::uint8_t>(NibbleOf(static_cast<char>(value.back())) << 4));
  }
}

Result<Bytes> DecodeField(const FieldDefinition& field, ByteView in, std::size_t& offset) {
  const std::string label = FieldLabel(field);
  const std::size_t left = in.size() - offset;
  std::size_t length = field.max_length;
  if (field.length_type != kFixed) {
    const std::size_t prefix = field.length_type == kLlvar ? 1 : 2;
    if (left < prefix) {
      return MakeError(label + ": truncated in its length prefix (" + std::to_string(prefix) +
                       " bytes, " + std::to_string(left) + " left)");
    }
    std::string digits;
    if (!UnpackDigits(in.subspan(offset, prefix), digits)) {
      return MakeError(label + ": bad BCD digit in the length prefix " +
                       ToHex(in.subspan(offset, prefix)));
    }
    if (prefix == 2 && digits[0] != '0') {
      return MakeError(label + ": length prefix " + digits + " above 999");
    }
    length = 0;
    for (char c : digits) length = length * 10 + static_cast<std::size_t>(c - '0');
    if (length == 0) return MakeError(label + ": length 0 (absent fields are left out)");
    if (length > field.max_length) {
      return MakeError(label + ": length " + std::to_string(length) + " above the maximum " +
                       std::to_string(field.max_length));
    }
    offset += prefix;
  }
  const std::size_t size = EncodedSize(field.format, length);
  if (in.size() - offset < size) {
    return MakeError(label + ": truncated (needs " + std::to_string(size) + " bytes, " +
                     std::to_string(in.size() - offset) + " left)");
  }
  const ByteView raw = in.subspan(offset, size);
  offset += size;

  if (!IsDigitFormat(field.format)) {
    Bytes value(raw.begin(), raw.end());
    auto checked = CheckValue(field, View(value));
    if (!checked.ok()) return checked.error();
    return value;
  }
  // Nibbles in order; the pad nibble (first for n, last for z) must be 0.
  Bytes value;
  value.reserve(length);
  const bool odd = length % 2 == 1;
  for (std::size_t n = 0; n < size * 2; ++n) {
    const std::uint8_t nibble = n % 2 == 0 ? raw[n / 2] >> 4 : raw[n / 2] & 0x0F;
    const bool pad =
        odd && ((field.format == kN && n == 0) || (field.format == kZ && n == size * 2 - 1));
    if (pad) {
      if (nibble != 0) {
        return MakeError(label + ": pad nibble " + std::to_string(nibble) + " is not 0");
      }
      continue;
    }
    if (nibble <= 9) {
      value.push_back(static_cast<std::uint8_t>('0' + nibble));
    } else if (nibble == 0x0D && field.format == kZ) {
      value.push_back('=');
    } else {
      return MakeError(label + ": bad BCD digit " + std::string(1, "0123456789ABCDEF"[nibble]) +
                       " at digit " + std::to_string(value.size() + 1));
    }
  }
  return value;
}

}  // namespace internal
}  // namespace medcard::iso8583
