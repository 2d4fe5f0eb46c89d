// Message: typed field access, Encode and strict Parse (docs/protocol.md "Message layout").
#include <algorithm>
#include <array>
#include <string>

#include "iso8583/field_codec.h"
#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

namespace {

using internal::FieldLabel;

// The MTIs of the medcard catalogue (messages.h): requests and their responses.
constexpr std::array<Mti, 14> kKnownMtis = {0x0200, 0x0210, 0x0220, 0x0230, 0x0320, 0x0330, 0x0400,
                                            0x0410, 0x0500, 0x0510, 0x0800, 0x0810, 0x0820, 0x0830};

constexpr std::size_t kMtiSize = 2;
constexpr std::size_t kBitmapSize = 8;
constexpr std::size_t kMaxNumberDigits = 19;  // 10^19 - 1 fits in 64 bits

std::size_t BitmapByte(int field) { return static_cast<std::size_t>(field - 1) / 8; }
std::uint8_t BitmapMask(int field) {
  return static_cast<std::uint8_t>(0x80u >> static_cast<unsigned>((field - 1) % 8));
}

bool IsDigitFormat(FieldFormat f) { return f == FieldFormat::kN || f == FieldFormat::kZ; }

const char* KindName(FieldFormat f) {
  switch (f) {
    case FieldFormat::kN:
      return "n (numeric)";
    case FieldFormat::kZ:
      return "z (track data)";
    case FieldFormat::kAn:
      return "an (text)";
    case FieldFormat::kAns:
      return "ans (text)";
    case FieldFormat::kB:
      return "b (binary)";
  }
  return "?";
}

Result<const FieldDefinition*> Definition(int field) {
  const FieldDefinition* def = FindField(field);
  if (def == nullptr) {
    return MakeError("iso8583: field " + std::to_string(field) + " is not defined by medcard");
  }
  return def;
}

Error WrongKind(const FieldDefinition& def, const char* wanted) {
  return MakeError("iso8583: " + FieldLabel(def) + " is " + KindName(def.format) + ", not " +
                   wanted);
}

std::string AsString(const Bytes& b) { return std::string(b.begin(), b.end()); }

// The sign-on answer's field 62 holds the working keys (under the TMK): logs never show it.
// Network management codes 003/004 are the sign-ons (messages.h); an unreadable 60 is masked too.
bool CarriesKeyBlock(Mti mti, const Bytes* field60) {
  if (mti != 0x0810) return false;
  if (field60 == nullptr || field60->size() < 11) return true;
  const std::string code(field60->begin() + 8, field60->begin() + 11);
  return code == "003" || code == "004" || code == "001";
}

std::string MaskedPan(const Bytes& digits) {
  const std::size_t n = digits.size();
  const std::size_t head = n >= 13 ? 6 : 0;
  const std::size_t tail = n >= 8 ? 4 : 0;
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(i < head || i >= n - tail ? static_cast<char>(digits[i]) : '*');
  }
  return out;
}

}  // namespace

bool IsKnownMti(Mti mti) {
  return std::find(kKnownMtis.begin(), kKnownMtis.end(), mti) != kKnownMtis.end();
}

std::string MtiText(Mti mti) {
  std::string out(4, '0');
  for (int i = 0; i < 4; ++i) {
    out[static_cast<std::size_t>(i)] = "0123456789ABCDEF"[(mti >> (12 - 4 * i)) & 0x0F];
  }
  return out;
}

// ---- field access -----------------------------------------------------------------------------

const Message::Field* Message::Find(int number) const {
  for (const Field& f : fields_) {
    if (f.number == number) return &f;
  }
  return nullptr;
}

bool Message::Has(int field) const { return Find(field) != nullptr; }

void Message::Remove(int field) {
  std::erase_if(fields_, [field](const Field& f) { return f.number == field; });
}

std::vector<int> Message::Fields() const {
  std::vector<int> out;
  out.reserve(fields_.size());
  for (const Field& f : fields_) out.push_back(f.number);
  return out;
}

Status Message::Store(int number, Bytes value) {
  auto def = Definition(number);
  if (!def.ok()) return def.error();
  auto checked = internal::CheckValue(**def, View(value));
  if (!checked.ok()) return MakeError("iso8583: " + checked.error().message);
  auto at = std::lower_bound(fields_.begin(), fields_.end(), number,
                             [](const Field& f, int n) { return f.number < n; });
  if (at != fields_.end() && at->number == number) {
    at->value = std::move(value);
  } else {
    fields_.insert(at, Field{static_cast<std::uint8_t>(number), std::move(value)});
  }
  return Status::Ok();
}

Status Message::SetNumber(int field, std::uint64_t value) {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if ((*def)->format != FieldFormat::kN) return WrongKind(**def, "numeric");
  std::string digits = std::to_string(value);
  if ((*def)->length_type == LengthType::kFixed && digits.size() < (*def)->max_length) {
    digits.insert(0, (*def)->max_length - digits.size(), '0');
  }
  return Store(field, Bytes(digits.begin(), digits.end()));
}

Status Message::SetDigits(int field, std::string_view digits) {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if (!IsDigitFormat((*def)->format)) return WrongKind(**def, "digits");
  return Store(field, Bytes(digits.begin(), digits.end()));
}

Status Message::SetText(int field, std::string_view text) {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if ((*def)->format != FieldFormat::kAn && (*def)->format != FieldFormat::kAns) {
    return WrongKind(**def, "text");
  }
  return Store(field, Bytes(text.begin(), text.end()));
}

Status Message::SetBytes(int field, ByteView bytes) {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if ((*def)->format != FieldFormat::kB) return WrongKind(**def, "binary");
  return Store(field, Bytes(bytes.begin(), bytes.end()));
}

Result<std::uint64_t> Message::GetNumber(int field) const {
  auto digits = GetDigits(field);
  if (!digits.ok()) return digits.error();
  const FieldDefinition& def = *FindField(field);
  if (def.format != FieldFormat::kN) return WrongKind(def, "numeric");
  if (digits->size() > kMaxNumberDigits) {
    return MakeError("iso8583: " + FieldLabel(def) + " has " + std::to_string(digits->size()) +
                     " digits, too many for a number");
  }
  std::uint64_t value = 0;
  for (char c : *digits) value = value * 10 + static_cast<std::uint64_t>(c - '0');
  return value;
}

Result<std::string> Message::GetDigits(int field) const {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if (!IsDigitFormat((*def)->format)) return WrongKind(**def, "digits");
  const Field* f = Find(field);
  if (f == nullptr) return MakeError("iso8583: " + FieldLabel(**def) + " is absent");
  return AsString(f->value);
}

Result<std::string> Message::GetText(int field) const {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if ((*def)->format != FieldFormat::kAn && (*def)->format != FieldFormat::kAns) {
    return WrongKind(**def, "text");
  }
  const Field* f = Find(field);
  if (f == nullptr) return MakeError("iso8583: " + FieldLabel(**def) + " is absent");
  return AsString(f->value);
}

Result<Bytes> Message::GetBytes(int field) const {
  auto def = Definition(field);
  if (!def.ok()) return def.error();
  if ((*def)->format != FieldFormat::kB) return WrongKind(**def, "binary");
  const Field* f = Find(field);
  if (f == nullptr) return MakeError("iso8583: " + FieldLabel(**def) + " is absent");
  return f->value;
}

// ---- encoding ---------------------------------------------------------------------------------

void Message::AppendEncoded(Bytes& out, bool for_mac) const {
  out.push_back(static_cast<std::uint8_t>(mti_ >> 8));
  out.push_back(static_cast<std::uint8_t>(mti_ & 0xFF));
  const std::size_t bitmap_at = out.size();
  out.resize(out.size() + kBitmapSize, 0);
  for (const Field& f : fields_) {
    out[bitmap_at + BitmapByte(f.number)] |= BitmapMask(f.number);
  }
  if (for_mac) out[bitmap_at + BitmapByte(64)] |= BitmapMask(64);
  for (const Field& f : fields_) {
    if (for_mac && f.number == 64) continue;
    internal::EncodeField(*FindField(f.number), View(f.value), out);
  }
}

Bytes Message::Encode() const {
  Bytes out;
  out.reserve(kMtiSize + kBitmapSize + 64);
  AppendEncoded(out, false);
  return out;
}

Result<Message> Message::Parse(ByteView bytes, ParseFailure* failure) {
  Message message;
  bool mti_read = false;
  auto fail = [&](ResponseCode code, int field, const std::string& reason) -> Error {
    Error error = MakeError("iso8583: " + reason);
    if (failure != nullptr) {
      failure->code = code;
      failure->field = field;
      failure->reason = error.message;
      failure->mti_read = mti_read;
      failure->partial = std::move(message);
    }
    return error;
  };

  if (bytes.size() < kMtiSize) {
    return fail(ResponseCode::kFormatError, 0,
                "truncated in the MTI (2 bytes, " + std::to_string(bytes.size()) + " left)");
  }
  std::string mti_digits;
  if (!internal::UnpackDigits(bytes.first(kMtiSize), mti_digits)) {
    return fail(ResponseCode::kFormatError, 0,
                "MTI " + ToHex(bytes.first(kMtiSize)) + ": bad BCD digit");
  }
  message.mti_ = static_cast<Mti>(bytes[0] << 8 | bytes[1]);
  mti_read = true;
  if (!IsKnownMti(message.mti_)) {
    return fail(ResponseCode::kInvalidTransaction, 0,
                "MTI " + mti_digits + " is not a medcard message");
  }
  if (bytes.size() < kMtiSize + kBitmapSize) {
    return fail(
        ResponseCode::kFormatError, 0,
        "truncated in the bitmap (8 bytes, " + std::to_string(bytes.size() - kMtiSize) + " left)");
  }
  const ByteView bitmap = bytes.subspan(kMtiSize, kBitmapSize);
  if ((bitmap[0] & 0x80) != 0) {
    return fail(ResponseCode::kFormatError, 1,
                "bit 1 (secondary bitmap) set: medcard defines no fields 65..128");
  }
  std::size_t offset = kMtiSize + kBitmapSize;
  for (int number = 2; number <= 64; ++number) {
    if ((bitmap[BitmapByte(number)] & BitmapMask(number)) == 0) continue;
    const FieldDefinition* def = FindField(number);
    if (def == nullptr) {
      return fail(ResponseCode::kFormatError, number,
                  "bit " + std::to_string(number) + " set: field " + std::to_string(number) +
                      " is not defined by medcard");
    }
    auto value = internal::DecodeField(*def, bytes, offset);
    if (!value.ok()) return fail(ResponseCode::kFormatError, number, value.error().message);
    message.fields_.push_back(Field{static_cast<std::uint8_t>(number), std::move(value).value()});
  }
  if (offset != bytes.size()) {
    return fail(ResponseCode::kFormatError, 0,
                std::to_string(bytes.size() - offset) + " bytes after the last field");
  }
  return message;
}

std::string Message::ToString() const {
  std::string out = MtiText(mti_) + " {";
  const Field* field60 = Find(60);
  bool first = true;
  for (const Field& f : fields_) {
    const FieldDefinition& def = *FindField(f.number);
    out += first ? "" : " ";
    first = false;
    out += std::to_string(f.number) + "=";
    const std::string size = std::to_string(f.value.size());
    switch (f.number) {
      case 2:
        out += MaskedPan(f.value);
        continue;
      case 35:
      case 36:
        out += "<track data, " + size + " characters>";
        continue;
      case 52:
        out += "<PIN block, " + size + " bytes>";
        continue;
      case 55:
        out += ToHex(ByteView(f.value).first(std::min<std::size_t>(4, f.value.size()))) + "...<" +
               size + " bytes>";
        continue;
      case 62:
        if (CarriesKeyBlock(mti_, field60 == nullptr ? nullptr : &field60->value)) {
          out += "<key block, " + size + " bytes>";
          continue;
        }
        if (Has(2)) {  // the card reference of a PIN inquiry: the ASN is the PAN
          const std::string hex = ToHex(View(f.value));
          out += MaskedPan(Bytes(hex.begin(), hex.end()));
          continue;
        }
        break;
      default:
        break;
    }
    switch (def.format) {
      case FieldFormat::kB:
        out += ToHex(View(f.value));
        break;
      case FieldFormat::kAn:
      case FieldFormat::kAns:
        out += "'" + AsString(f.value) + "'";
        break;
      case FieldFormat::kN:
      case FieldFormat::kZ:
        out += AsString(f.value);
        break;
    }
  }
  return out + "}";
}

}  // namespace medcard::iso8583
