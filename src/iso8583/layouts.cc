// The layouts medcard puts into fields 48, 53, 54, 60, 61 and 62 (docs/protocol.md
// "Field layouts"). Parse is strict; Encode re-parses what it built, so it never hands out bytes
// the other side would refuse.
#include <algorithm>
#include <string>
#include <tuple>

#include "iso8583/messages.h"

namespace medcard::iso8583 {

namespace {

template <typename T, typename Encoded>
Result<Encoded> Checked(Encoded encoded) {
  auto parsed = T::Parse(encoded);
  if (!parsed.ok()) return parsed.error();
  return encoded;
}

Error LayoutError(std::string_view layout, const std::string& what) {
  return MakeError("iso8583: " + std::string(layout) + ": " + what);
}

Error WrongSize(std::string_view layout, std::size_t got, std::size_t expected,
                const char* unit = "bytes") {
  return LayoutError(layout,
                     std::to_string(got) + " " + unit + ", expected " + std::to_string(expected));
}

// Zero-padded decimal of `width` digits; empty when the value does not fit.
std::string Digits(std::uint64_t value, std::size_t width) {
  std::string s = std::to_string(value);
  if (s.size() > width) return {};
  return std::string(width - s.size(), '0') + s;
}

bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::uint64_t ToNumber(std::string_view digits) {
  std::uint64_t v = 0;
  for (char c : digits) v = v * 10 + static_cast<std::uint64_t>(c - '0');
  return v;
}

bool ValidTime(const TimeOfDay& t) {
  return t.hour >= 0 && t.hour <= 23 && t.minute >= 0 && t.minute <= 59 && t.second >= 0 &&
         t.second <= 59;
}

// Appends date ‖ time as BCD; false when either is not a real date or time.
bool AppendDateTime(Bytes& out, const Date& date, const TimeOfDay& time) {
  if (!IsValidDate(date) || !ValidTime(time)) return false;
  Append(out, View(EncodeBcdDate(date)));
  Append(out, View(EncodeBcdTime(time)));
  return true;
}

void AppendSized(Bytes& out, const Bytes& value) { Append(out, View(value)); }

Bytes Take(ByteView in, std::size_t offset, std::size_t size) {
  const ByteView part = in.subspan(offset, size);
  return Bytes(part.begin(), part.end());
}

// A fixed-size byte member: the right size or an error naming it.
Status CheckSize(std::string_view layout, const char* member, const Bytes& value,
                 std::size_t size) {
  if (value.size() != size) {
    return LayoutError(layout, std::string(member) + " is " + std::to_string(value.size()) +
                                   " bytes, expected " + std::to_string(size));
  }
  return Status::Ok();
}

constexpr std::string_view kSecurityControl = "security control (field 53)";
constexpr std::string_view kField60 = "field 60";
constexpr std::string_view kOriginal = "original transaction (field 61)";
constexpr std::string_view kTotals = "batch totals (field 48)";
constexpr std::string_view kBalance = "available balance (field 54)";
constexpr std::string_view kSignOn = "sign-on request (field 62)";
constexpr std::string_view kKeys = "working keys (field 62)";
constexpr std::string_view kLoad = "load request (field 62)";
constexpr std::string_view kAuthorisation = "load authorisation (field 62)";
constexpr std::string_view kConfirmation = "load confirmation (field 62)";
constexpr std::string_view kCard = "card reference (field 62)";
constexpr std::string_view kBatch = "purchase batch (field 62)";
constexpr std::string_view kSam = "PSAM totals (field 62)";
constexpr std::string_view kDownload = "download request (field 62)";
constexpr std::string_view kBlacklist = "blacklist part (field 62)";
constexpr std::string_view kParameters = "parameter part (field 62)";

constexpr std::size_t kKeyCryptogramSize = 16;
constexpr std::size_t kKcvSize = 3;
constexpr std::size_t kKeyEntrySize = kKeyCryptogramSize + kKcvSize;
constexpr std::size_t kInitializeForLoadAnswerSize = 16;
constexpr std::size_t kLoadRequestSize = kAsnSize + kTerminalNumberSize + 16;
constexpr std::size_t kSamTotalsAnswerSize = 22;
constexpr std::size_t kSamTotalsSize = kAsnSize + 1 + 8 + kSamTotalsAnswerSize;
constexpr std::size_t kBlacklistEntrySize = kAsnSize + 1;
constexpr std::size_t kDownloadHeaderSize = 7;  // version ‖ flags ‖ part
constexpr std::size_t kMaxMerchantName = 60;
constexpr std::size_t kMaxCardKeyVersions = 8;

// Parameter tags (docs/protocol.md "Parameter download").
enum ParameterTag : std::uint8_t {
  kTagMerchantName = 0x01,
  kTagPurchaseLimit = 0x02,
  kTagLoadLimit = 0x03,
  kTagEpBalanceLimit = 0x04,
  kTagCardKeyVersions = 0x05,
  kTagClock = 0x06,
  kTagUploadThreshold = 0x07,
  kTagBlacklistVersion = 0x08,
};

// Well-formed UTF-8 without control characters (merchant names are printed on receipts).
bool PrintableUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<std::uint8_t>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F) return false;
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // the sequence runs past the end
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<std::uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (cp >= 0x80 && cp <= 0x9F) return false;  // C1 controls
    i += extra + 1;
  }
  return true;
}

}  // namespace

// ---- 53 ---------------------------------------------------------------------------------------

Result<std::string> SecurityControl::Encode() const {
  const std::string version = Digits(key_version, 3);
  if (key_version == 0 || version.empty()) {
    return LayoutError(kSecurityControl,
                       "key version " + std::to_string(key_version) + " outside 001..999");
  }
  return std::string(pin_block ? "1" : "0") + "60" + version + "0000000000";
}

Result<SecurityControl> SecurityControl::Parse(std::string_view d) {
  if (d.size() != 16) return WrongSize(kSecurityControl, d.size(), 16, "digits");
  if (!AllDigits(d)) return LayoutError(kSecurityControl, "not all digits");
  if (d[0] != '0' && d[0] != '1') {
    return LayoutError(kSecurityControl, "PIN format digit " + std::string(1, d[0]) +
                                             ", expected 0 (no PIN) or 1 (format 0)");
  }
  if (d[1] != '6') {
    return LayoutError(kSecurityControl,
                       "algorithm digit " + std::string(1, d[1]) + ", expected 6 (3DES)");
  }
  if (d[2] != '0') return LayoutError(kSecurityControl, "track encryption digit must be 0");
  if (d.substr(6) != "0000000000") {
    return LayoutError(kSecurityControl, "digits 7..16 must be 0");
  }
  SecurityControl out;
  out.pin_block = d[0] == '1';
  out.key_version = static_cast<std::uint16_t>(ToNumber(d.substr(3, 3)));
  if (out.key_version == 0) return LayoutError(kSecurityControl, "key version 000");
  return out;
}

// ---- 60 ---------------------------------------------------------------------------------------

Result<std::string> Field60::Encode() const {
  const std::string type = Digits(message_type, 2);
  const std::string batch = Digits(batch_number, 6);
  const std::string code = Digits(network_code, 3);
  if (type.empty() || batch.empty() || code.empty()) {
    return LayoutError(kField60, "a value does not fit its digits");
  }
  return Checked<Field60>(type + batch + code);
}

Result<Field60> Field60::Parse(std::string_view d) {
  if (d.size() != 11) return WrongSize(kField60, d.size(), 11, "digits");
  if (!AllDigits(d)) return LayoutError(kField60, "not all digits");
  Field60 out;
  out.message_type = static_cast<std::uint8_t>(ToNumber(d.substr(0, 2)));
  out.batch_number = static_cast<std::uint32_t>(ToNumber(d.substr(2, 6)));
  out.network_code = static_cast<std::uint16_t>(ToNumber(d.substr(8, 3)));
  if (out.batch_number == 0) return LayoutError(kField60, "batch number 000000");
  return out;
}

// ---- 61 ---------------------------------------------------------------------------------------

Result<std::string> OriginalTransaction::Encode() const {
  const std::string batch = Digits(batch_number, 6);
  const std::string tr = Digits(trace, 6);
  const std::string mm = Digits(static_cast<std::uint64_t>(std::max(month, 0)), 2);
  const std::string dd = Digits(static_cast<std::uint64_t>(std::max(day, 0)), 2);
  if (batch.empty() || tr.empty() || mm.empty() || dd.empty() || month < 0 || day < 0) {
    return LayoutError(kOriginal, "a value does not fit its digits");
  }
  return Checked<OriginalTransaction>(batch + tr + mm + dd);
}

Result<OriginalTransaction> OriginalTransaction::Parse(std::string_view d) {
  if (d.size() != 16) return WrongSize(kOriginal, d.size(), 16, "digits");
  if (!AllDigits(d)) return LayoutError(kOriginal, "not all digits");
  OriginalTransaction out;
  out.batch_number = static_cast<std::uint32_t>(ToNumber(d.substr(0, 6)));
  out.trace = static_cast<std::uint32_t>(ToNumber(d.substr(6, 6)));
  out.month = static_cast<int>(ToNumber(d.substr(12, 2)));
  out.day = static_cast<int>(ToNumber(d.substr(14, 2)));
  if (out.batch_number == 0) return LayoutError(kOriginal, "original batch number 000000");
  if (out.trace == 0) return LayoutError(kOriginal, "original trace number 000000");
  const bool none = out.month == 0 && out.day == 0;
  // A month-day without a year: 29 February is a valid MMDD.
  if (!none && !IsValidDate(Date{2000, out.month, out.day})) {
    return LayoutError(kOriginal, "original date " + std::string(d.substr(12, 4)) +
                                      " is neither 0000 nor a month-day");
  }
  return out;
}

// ---- 48 ---------------------------------------------------------------------------------------

Result<std::string> BatchTotals::Encode() const {
  const std::string a = Digits(purchase_count, 6), b = Digits(purchase_amount, 12);
  const std::string c = Digits(load_count, 6), e = Digits(load_amount, 12);
  if (a.empty() || b.empty() || c.empty() || e.empty()) {
    return LayoutError(kTotals, "a total does not fit its digits");
  }
  return a + b + c + e;
}

Result<BatchTotals> BatchTotals::Parse(std::string_view d) {
  if (d.size() != 36) return WrongSize(kTotals, d.size(), 36, "digits");
  if (!AllDigits(d)) return LayoutError(kTotals, "not all digits");
  BatchTotals out;
  out.purchase_count = static_cast<std::uint32_t>(ToNumber(d.substr(0, 6)));
  out.purchase_amount = ToNumber(d.substr(6, 12));
  out.load_count = static_cast<std::uint32_t>(ToNumber(d.substr(18, 6)));
  out.load_amount = ToNumber(d.substr(24, 12));
  return out;
}

// ---- 54 ---------------------------------------------------------------------------------------

Result<std::string> AvailableBalance::Encode() const {
  const std::string a = Digits(amount, 12);
  if (a.empty()) return LayoutError(kBalance, "amount above 12 digits");
  return std::string("0002") + std::string(kCurrencyCny) + (negative ? "D" : "C") + a;
}

Result<AvailableBalance> AvailableBalance::Parse(std::string_view t) {
  if (t.size() != 20) return WrongSize(kBalance, t.size(), 20, "characters");
  if (t.substr(0, 2) != "00") return LayoutError(kBalance, "account type must be 00");
  if (t.substr(2, 2) != "02") return LayoutError(kBalance, "amount type must be 02 (available)");
  if (t.substr(4, 3) != kCurrencyCny) return LayoutError(kBalance, "currency must be 156");
  if (t[7] != 'C' && t[7] != 'D') return LayoutError(kBalance, "sign must be C or D");
  if (!AllDigits(t.substr(8))) return LayoutError(kBalance, "amount not all digits");
  AvailableBalance out;
  out.negative = t[7] == 'D';
  out.amount = ToNumber(t.substr(8));
  return out;
}

// ---- 62: sign-on ------------------------------------------------------------------------------

Result<Bytes> SignOnRequest::Encode() const {
  Bytes out;
  AppendSized(out, terminal_number);
  out.push_back(tmk_version);
  return Checked<SignOnRequest>(std::move(out));
}

Result<SignOnRequest> SignOnRequest::Parse(ByteView b) {
  if (b.size() != kTerminalNumberSize + 1) {
    return WrongSize(kSignOn, b.size(), kTerminalNumberSize + 1);
  }
  SignOnRequest out;
  out.terminal_number = Take(b, 0, kTerminalNumberSize);
  out.tmk_version = b[kTerminalNumberSize];
  if (out.tmk_version == 0) return LayoutError(kSignOn, "TMK version 0");
  return out;
}

Result<Bytes> WorkingKeys::Encode() const {
  Bytes out;
  for (const KeyCryptogram* key : {&pin_key, &mac_key, data_key ? &*data_key : nullptr}) {
    if (key == nullptr) continue;
    auto c = CheckSize(kKeys, "a key cryptogram", key->cryptogram, kKeyCryptogramSize);
    if (!c.ok()) return c.error();
    auto k = CheckSize(kKeys, "a KCV", key->kcv, kKcvSize);
    if (!k.ok()) return k.error();
    AppendSized(out, key->cryptogram);
    AppendSized(out, key->kcv);
  }
  return Checked<WorkingKeys>(std::move(out));
}

Result<WorkingKeys> WorkingKeys::Parse(ByteView b) {
  if (b.size() != 2 * kKeyEntrySize && b.size() != 3 * kKeyEntrySize) {
    return LayoutError(kKeys, std::to_string(b.size()) + " bytes, expected " +
                                  std::to_string(2 * kKeyEntrySize) + " or " +
                                  std::to_string(3 * kKeyEntrySize));
  }
  auto entry = [&](std::size_t i) {
    return KeyCryptogram{Take(b, i * kKeyEntrySize, kKeyCryptogramSize),
                         Take(b, i * kKeyEntrySize + kKeyCryptogramSize, kKcvSize)};
  };
  WorkingKeys out;
  out.pin_key = entry(0);
  out.mac_key = entry(1);
  if (b.size() == 3 * kKeyEntrySize) out.data_key = entry(2);
  return out;
}

// ---- 62: load ---------------------------------------------------------------------------------

Result<Bytes> LoadRequest::Encode() const {
  for (auto [member, value, size] :
       {std::tuple{"the ASN", &asn, kAsnSize},
        std::tuple{"the terminal number", &terminal_number, kTerminalNumberSize},
        std::tuple{"the random", &random, std::size_t{4}},
        std::tuple{"MAC1", &mac1, std::size_t{4}}}) {
    auto c = CheckSize(kLoad, member, *value, size);
    if (!c.ok()) return c.error();
  }
  Bytes out;
  AppendSized(out, asn);
  AppendSized(out, terminal_number);
  AppendU32(out, balance);
  AppendU16(out, online_serial);
  out.push_back(key_version);
  out.push_back(algorithm_id);
  AppendSized(out, random);
  AppendSized(out, mac1);
  return Checked<LoadRequest>(std::move(out));
}

Result<LoadRequest> LoadRequest::Parse(ByteView b) {
  if (b.size() != kLoadRequestSize) return WrongSize(kLoad, b.size(), kLoadRequestSize);
  LoadRequest out;
  out.asn = Take(b, 0, kAsnSize);
  out.terminal_number = Take(b, kAsnSize, kTerminalNumberSize);
  const std::size_t a = kAsnSize + kTerminalNumberSize;  // the INITIALIZE FOR LOAD answer
  out.balance = ReadU32(b, a);
  out.online_serial = ReadU16(b, a + 4);
  out.key_version = b[a + 6];
  out.algorithm_id = b[a + 7];
  out.random = Take(b, a + 8, 4);
  out.mac1 = Take(b, a + 12, 4);
  return out;
}

Result<LoadRequest> LoadRequest::FromInitializeForLoad(ByteView asn, ByteView terminal_number,
                                                       ByteView answer) {
  if (answer.size() != kInitializeForLoadAnswerSize) {
    return LayoutError(kLoad, "INITIALIZE FOR LOAD answer is " + std::to_string(answer.size()) +
                                  " bytes, expected 16");
  }
  if (asn.size() != kAsnSize) return LayoutError(kLoad, "the ASN is not 10 bytes");
  if (terminal_number.size() != kTerminalNumberSize) {
    return LayoutError(kLoad, "the terminal number is not 6 bytes");
  }
  return Parse(View(Concat({asn, terminal_number, answer})));
}

Result<Bytes> LoadAuthorisation::Encode() const {
  auto c = CheckSize(kAuthorisation, "MAC2", mac2, 4);
  if (!c.ok()) return c.error();
  Bytes out = mac2;
  if (!AppendDateTime(out, date, time)) {
    return LayoutError(kAuthorisation, "host date or time is not valid");
  }
  return Checked<LoadAuthorisation>(std::move(out));
}

Result<LoadAuthorisation> LoadAuthorisation::Parse(ByteView b) {
  if (b.size() != 11) return WrongSize(kAuthorisation, b.size(), 11);
  const auto date = DecodeBcdDate(b.subspan(4, 4));
  const auto time = DecodeBcdTime(b.subspan(8, 3));
  if (!date) return LayoutError(kAuthorisation, "host date " + ToHex(b.subspan(4, 4)) + " invalid");
  if (!time) return LayoutError(kAuthorisation, "host time " + ToHex(b.subspan(8, 3)) + " invalid");
  return LoadAuthorisation{Take(b, 0, 4), *date, *time};
}

Result<Bytes> LoadConfirmation::Encode() const {
  auto a = CheckSize(kConfirmation, "the ASN", asn, kAsnSize);
  if (!a.ok()) return a.error();
  auto t = CheckSize(kConfirmation, "the TAC", tac, 4);
  if (!t.ok()) return t.error();
  return Checked<LoadConfirmation>(Concat({asn, tac}));
}

Result<LoadConfirmation> LoadConfirmation::Parse(ByteView b) {
  if (b.size() != kAsnSize + 4) return WrongSize(kConfirmation, b.size(), kAsnSize + 4);
  return LoadConfirmation{Take(b, 0, kAsnSize), Take(b, kAsnSize, 4)};
}

Result<Bytes> CardReference::Encode() const {
  auto a = CheckSize(kCard, "the ASN", asn, kAsnSize);
  if (!a.ok()) return a.error();
  return asn;
}

Result<CardReference> CardReference::Parse(ByteView b) {
  if (b.size() != kAsnSize) return WrongSize(kCard, b.size(), kAsnSize);
  return CardReference{Take(b, 0, kAsnSize)};
}

// ---- 62: batch upload -------------------------------------------------------------------------

Result<Bytes> PurchaseBatch::Encode() const {
  if (purchases.empty() || purchases.size() > kMaxPurchasesPerUpload) {
    return LayoutError(kBatch, std::to_string(purchases.size()) + " purchases, expected 1.." +
                                   std::to_string(kMaxPurchasesPerUpload));
  }
  Bytes out;
  out.reserve(1 + purchases.size() * kOfflinePurchaseSize);
  out.push_back(static_cast<std::uint8_t>(purchases.size()));
  for (const OfflinePurchase& p : purchases) {
    for (auto [member, value, size] :
         {std::tuple{"the ASN", &p.asn, kAsnSize},
          std::tuple{"the terminal number", &p.terminal_number, kTerminalNumberSize},
          std::tuple{"the TAC", &p.tac, std::size_t{4}},
          std::tuple{"MAC2", &p.mac2, std::size_t{4}}}) {
      auto c = CheckSize(kBatch, member, *value, size);
      if (!c.ok()) return c.error();
    }
    AppendSized(out, p.asn);
    out.push_back(p.type);
    AppendU32(out, p.amount);
    AppendU16(out, p.card_offline_serial);
    AppendSized(out, p.terminal_number);
    AppendU32(out, p.terminal_serial);
    if (!AppendDateTime(out, p.date, p.time)) {
      return LayoutError(kBatch, "a purchase date or time is not valid");
    }
    out.push_back(p.key_version);
    AppendSized(out, p.tac);
    AppendSized(out, p.mac2);
    AppendU32(out, p.balance_before);
    AppendU32(out, p.balance_after);
  }
  return Checked<PurchaseBatch>(std::move(out));
}

Result<PurchaseBatch> PurchaseBatch::Parse(ByteView b) {
  if (b.empty()) return LayoutError(kBatch, "empty");
  const std::size_t count = b[0];
  if (count == 0 || count > kMaxPurchasesPerUpload) {
    return LayoutError(kBatch, "count " + std::to_string(count) + ", expected 1.." +
                                   std::to_string(kMaxPurchasesPerUpload));
  }
  if (b.size() != 1 + count * kOfflinePurchaseSize) {
    return WrongSize(kBatch, b.size(), 1 + count * kOfflinePurchaseSize);
  }
  PurchaseBatch out;
  out.purchases.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const ByteView r = b.subspan(1 + i * kOfflinePurchaseSize, kOfflinePurchaseSize);
    const std::string which = "record " + std::to_string(i + 1);
    OfflinePurchase p;
    p.asn = Take(r, 0, 10);
    p.type = r[10];
    if (p.type != 0x05 && p.type != 0x06 && p.type != 0x09) {
      return LayoutError(kBatch, which + ": transaction type " + ToHex(r.subspan(10, 1)) +
                                     " is not a purchase (05, 06, 09)");
    }
    p.amount = ReadU32(r, 11);
    p.card_offline_serial = ReadU16(r, 15);
    p.terminal_number = Take(r, 17, 6);
    p.terminal_serial = ReadU32(r, 23);
    const auto date = DecodeBcdDate(r.subspan(27, 4));
    const auto time = DecodeBcdTime(r.subspan(31, 3));
    if (!date) return LayoutError(kBatch, which + ": date " + ToHex(r.subspan(27, 4)) + " invalid");
    if (!time) return LayoutError(kBatch, which + ": time " + ToHex(r.subspan(31, 3)) + " invalid");
    p.date = *date;
    p.time = *time;
    p.key_version = r[34];
    p.tac = Take(r, 35, 4);
    p.mac2 = Take(r, 39, 4);
    p.balance_before = ReadU32(r, 43);
    p.balance_after = ReadU32(r, 47);
    out.purchases.push_back(std::move(p));
  }
  return out;
}

// ---- 62: settlement ---------------------------------------------------------------------------

Bytes SamTotals::TotalsAnswer() const {
  Bytes out;
  out.reserve(kSamTotalsAnswerSize);
  AppendU32(out, count);
  AppendU48(out, amount);
  AppendU32(out, first_serial);
  AppendU32(out, last_serial);
  AppendSized(out, mac);
  return out;
}

Result<Bytes> SamTotals::Encode() const {
  for (auto [member, value, size] : {std::tuple{"the PSAM serial", &psam_serial, kAsnSize},
                                     std::tuple{"the challenge", &challenge, std::size_t{8}},
                                     std::tuple{"the MAC", &mac, std::size_t{4}}}) {
    auto c = CheckSize(kSam, member, *value, size);
    if (!c.ok()) return c.error();
  }
  if (amount > 0xFFFFFFFFFFFFull) return LayoutError(kSam, "amount above 6 bytes");
  Bytes out = psam_serial;
  out.push_back(key_version);
  AppendSized(out, challenge);
  Append(out, View(TotalsAnswer()));
  return Checked<SamTotals>(std::move(out));
}

Result<SamTotals> SamTotals::Parse(ByteView b) {
  if (b.size() != kSamTotalsSize) return WrongSize(kSam, b.size(), kSamTotalsSize);
  SamTotals out;
  out.psam_serial = Take(b, 0, 10);
  out.key_version = b[10];
  if (out.key_version == 0) return LayoutError(kSam, "settlement key version 0");
  out.challenge = Take(b, 11, 8);
  out.count = ReadU32(b, 19);
  out.amount = ReadU48(b, 23);
  out.first_serial = ReadU32(b, 29);
  out.last_serial = ReadU32(b, 33);
  out.mac = Take(b, 37, 4);
  return out;
}

Result<Bytes> ParseClearTotalsMac(ByteView b) {
  if (b.size() != 4) return WrongSize("CLEAR SAM TOTALS MAC (field 62)", b.size(), 4);
  return Take(b, 0, 4);
}

Result<Bytes> ParseSettlementChallenge(ByteView b) {
  if (b.size() != 8) return WrongSize("settlement challenge (field 62)", b.size(), 8);
  return Take(b, 0, 8);
}

// ---- 62: downloads ----------------------------------------------------------------------------

Result<Bytes> DownloadRequest::Encode() const {
  Bytes out;
  AppendU32(out, from_version);
  AppendU32(out, target_version);
  AppendU16(out, part);
  return Checked<DownloadRequest>(std::move(out));
}

Result<DownloadRequest> DownloadRequest::Parse(ByteView b) {
  if (b.size() != 10) return WrongSize(kDownload, b.size(), 10);
  DownloadRequest out{ReadU32(b, 0), ReadU32(b, 4), ReadU16(b, 8)};
  if (out.part > 0 && out.target_version == 0) {
    return LayoutError(kDownload, "part " + std::to_string(out.part) +
                                      " asked without the target version of part 0");
  }
  return out;
}

Result<Bytes> BlacklistPart::Encode() const {
  if (entries.size() > kMaxBlacklistEntriesPerPart) {
    return LayoutError(kBlacklist, std::to_string(entries.size()) + " entries, at most " +
                                       std::to_string(kMaxBlacklistEntriesPerPart));
  }
  Bytes out;
  AppendU32(out, version);
  out.push_back(static_cast<std::uint8_t>((more ? kDownloadMore : 0) | (full ? kDownloadFull : 0)));
  AppendU16(out, part);
  out.push_back(static_cast<std::uint8_t>(entries.size()));
  for (const BlacklistEntry& e : entries) {
    auto c = CheckSize(kBlacklist, "an ASN", e.asn, kAsnSize);
    if (!c.ok()) return c.error();
    AppendSized(out, e.asn);
    out.push_back(static_cast<std::uint8_t>(e.action));
  }
  return Checked<BlacklistPart>(std::move(out));
}

Result<BlacklistPart> BlacklistPart::Parse(ByteView b) {
  if (b.size() < kDownloadHeaderSize + 1) {
    return LayoutError(kBlacklist, std::to_string(b.size()) + " bytes, at least 8");
  }
  BlacklistPart out;
  out.version = ReadU32(b, 0);
  const std::uint8_t flags = b[4];
  if ((flags & ~(kDownloadMore | kDownloadFull)) != 0) {
    return LayoutError(kBlacklist, "unknown flags " + ToHex(b.subspan(4, 1)));
  }
  out.more = (flags & kDownloadMore) != 0;
  out.full = (flags & kDownloadFull) != 0;
  out.part = ReadU16(b, 5);
  if (out.version == 0) return LayoutError(kBlacklist, "version 0");
  const std::size_t count = b[7];
  if (count > kMaxBlacklistEntriesPerPart) {
    return LayoutError(kBlacklist, "count " + std::to_string(count) + ", at most " +
                                       std::to_string(kMaxBlacklistEntriesPerPart));
  }
  if (b.size() != 8 + count * kBlacklistEntrySize) {
    return WrongSize(kBlacklist, b.size(), 8 + count * kBlacklistEntrySize);
  }
  for (std::size_t i = 0; i < count; ++i) {
    const ByteView e = b.subspan(8 + i * kBlacklistEntrySize, kBlacklistEntrySize);
    const std::uint8_t action = e[kAsnSize];
    if (action != 0x01 && action != 0x02) {
      return LayoutError(kBlacklist, "entry " + std::to_string(i + 1) + ": action " +
                                         ToHex(e.subspan(kAsnSize, 1)) +
                                         ", expected 01 (add) or 02 (remove)");
    }
    if (out.full && action != 0x01) {
      return LayoutError(kBlacklist,
                         "entry " + std::to_string(i + 1) + ": a full list holds only additions");
    }
    out.entries.push_back(
        BlacklistEntry{Take(e, 0, kAsnSize), static_cast<BlacklistAction>(action)});
  }
  return out;
}

Status CheckComplete(const Parameters& p) {
  const char* missing = !p.merchant_name              ? "01 merchant name"
                        : !p.purchase_limit           ? "02 purchase limit"
                        : !p.load_limit               ? "03 load limit"
                        : !p.ep_balance_limit         ? "04 EP balance limit"
                        : p.card_key_versions.empty() ? "05 card key versions"
                        : !p.clock_date               ? "06 host clock"
                        : !p.upload_threshold         ? "07 upload threshold"
                        : !p.blacklist_version        ? "08 blacklist version"
                                                      : nullptr;
  if (missing != nullptr) {
    return MakeError(std::string("iso8583: parameters incomplete: tag ") + missing + " missing");
  }
  return Status::Ok();
}

Status Merge(Parameters& into, const Parameters& part) {
  Parameters merged = into;
  bool repeated = false;
  auto take = [&](auto& to, const auto& from) {
    if (!from) return;
    repeated = repeated || to.has_value();
    to = from;
  };
  take(merged.merchant_name, part.merchant_name);
  take(merged.purchase_limit, part.purchase_limit);
  take(merged.load_limit, part.load_limit);
  take(merged.ep_balance_limit, part.ep_balance_limit);
  take(merged.clock_date, part.clock_date);
  take(merged.clock_time, part.clock_time);
  take(merged.upload_threshold, part.upload_threshold);
  take(merged.blacklist_version, part.blacklist_version);
  if (!part.card_key_versions.empty()) {
    repeated = repeated || !merged.card_key_versions.empty();
    merged.card_key_versions = part.card_key_versions;
  }
  if (repeated) return MakeError("iso8583: parameters: a tag repeats across parts");
  into = std::move(merged);
  return Status::Ok();
}

Result<Bytes> ParameterPart::Encode() const {
  Bytes out;
  AppendU32(out, version);
  out.push_back(more ? kDownloadMore : 0);
  AppendU16(out, part);
  const Parameters& p = parameters;
  auto record = [&out](std::uint8_t tag, ByteView value) {
    out.push_back(tag);
    out.push_back(static_cast<std::uint8_t>(value.size()));
    Append(out, value);
  };
  auto u32 = [](std::uint32_t v) {
    Bytes b;
    AppendU32(b, v);
    return b;
  };
  if (p.merchant_name) {
    if (p.merchant_name->size() > kMaxMerchantName) {
      return LayoutError(kParameters, "merchant name above 60 bytes");
    }
    const std::string& n = *p.merchant_name;
    record(kTagMerchantName, ByteView(reinterpret_cast<const std::uint8_t*>(n.data()), n.size()));
  }
  if (p.purchase_limit) record(kTagPurchaseLimit, View(u32(*p.purchase_limit)));
  if (p.load_limit) record(kTagLoadLimit, View(u32(*p.load_limit)));
  if (p.ep_balance_limit) record(kTagEpBalanceLimit, View(u32(*p.ep_balance_limit)));
  if (!p.card_key_versions.empty()) {
    if (p.card_key_versions.size() > kMaxCardKeyVersions) {
      return LayoutError(kParameters, "more than 8 card key versions");
    }
    record(kTagCardKeyVersions, View(p.card_key_versions));
  }
  if (p.clock_date.has_value() != p.clock_time.has_value()) {
    return LayoutError(kParameters, "the host clock needs both its date and its time");
  }
  if (p.clock_date) {
    Bytes clock;
    if (!AppendDateTime(clock, *p.clock_date, *p.clock_time)) {
      return LayoutError(kParameters, "host clock is not a valid date and time");
    }
    record(kTagClock, View(clock));
  }
  if (p.upload_threshold) {
    Bytes b;
    AppendU16(b, *p.upload_threshold);
    record(kTagUploadThreshold, View(b));
  }
  if (p.blacklist_version) record(kTagBlacklistVersion, View(u32(*p.blacklist_version)));
  return Checked<ParameterPart>(std::move(out));
}

Result<ParameterPart> ParameterPart::Parse(ByteView b) {
  if (b.size() < kDownloadHeaderSize) {
    return LayoutError(kParameters, std::to_string(b.size()) + " bytes, at least 7");
  }
  ParameterPart out;
  out.version = ReadU32(b, 0);
  if (out.version == 0) return LayoutError(kParameters, "version 0");
  if ((b[4] & ~kDownloadMore) != 0) {
    return LayoutError(kParameters, "unknown flags " + ToHex(b.subspan(4, 1)));
  }
  out.more = (b[4] & kDownloadMore) != 0;
  out.part = ReadU16(b, 5);
  Parameters& p = out.parameters;
  std::uint16_t seen = 0;
  std::size_t at = kDownloadHeaderSize;
  while (at < b.size()) {
    if (b.size() - at < 2) return LayoutError(kParameters, "truncated record header");
    const std::uint8_t tag = b[at];
    const std::size_t len = b[at + 1];
    at += 2;
    if (b.size() - at < len) {
      return LayoutError(kParameters, "tag " + ToHex(b.subspan(at - 2, 1)) + " truncated");
    }
    const ByteView v = b.subspan(at, len);
    at += len;
    const std::string label = "tag " + ToHex(b.subspan(at - len - 2, 1));
    if (tag < kTagMerchantName || tag > kTagBlacklistVersion) {
      return LayoutError(kParameters, label + " unknown");
    }
    if ((seen & (1u << tag)) != 0) return LayoutError(kParameters, label + " repeated");
    seen = static_cast<std::uint16_t>(seen | (1u << tag));
    auto need = [&](std::size_t size) -> Status {
      if (len != size) {
        return LayoutError(kParameters, label + ": " + std::to_string(len) + " bytes, expected " +
                                            std::to_string(size));
      }
      return Status::Ok();
    };
    switch (tag) {
      case kTagMerchantName: {
        const std::string name(v.begin(), v.end());
        if (name.empty() || name.size() > kMaxMerchantName || !PrintableUtf8(name)) {
          return LayoutError(kParameters, label +
                                              ": merchant name must be 1..60 bytes of "
                                              "printable UTF-8");
        }
        p.merchant_name = name;
        break;
      }
      case kTagPurchaseLimit:
      case kTagLoadLimit:
      case kTagEpBalanceLimit:
      case kTagBlacklistVersion: {
        if (auto s = need(4); !s.ok()) return s.error();
        const std::uint32_t value = ReadU32(v);
        (tag == kTagPurchaseLimit    ? p.purchase_limit
         : tag == kTagLoadLimit      ? p.load_limit
         : tag == kTagEpBalanceLimit ? p.ep_balance_limit
                                     : p.blacklist_version) = value;
        break;
      }
      case kTagCardKeyVersions:
        if (v.empty() || v.size() > kMaxCardKeyVersions ||
            std::find(v.begin(), v.end(), std::uint8_t{0}) != v.end()) {
          return LayoutError(kParameters, label + ": 1..8 card key versions, each at least 1");
        }
        p.card_key_versions.assign(v.begin(), v.end());
        break;
      case kTagClock: {
        if (auto s = need(7); !s.ok()) return s.error();
        const auto date = DecodeBcdDate(v.first(4));
        const auto time = DecodeBcdTime(v.subspan(4, 3));
        if (!date || !time) return LayoutError(kParameters, label + ": invalid date or time");
        p.clock_date = *date;
        p.clock_time = *time;
        break;
      }
      case kTagUploadThreshold:
        if (auto s = need(2); !s.ok()) return s.error();
        p.upload_threshold = ReadU16(v);
        if (*p.upload_threshold == 0) return LayoutError(kParameters, label + ": threshold 0");
        break;
      default:
        break;
    }
  }
  return out;
}

std::optional<std::string> PanFromAsn(ByteView asn) {
  if (asn.size() != kAsnSize) return std::nullopt;
  std::string digits;
  for (std::uint8_t b : asn) {
    if ((b >> 4) > 9 || (b & 0x0F) > 9) return std::nullopt;
    digits.push_back(static_cast<char>('0' + (b >> 4)));
    digits.push_back(static_cast<char>('0' + (b & 0x0F)));
  }
  const std::size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return std::nullopt;
  digits.erase(0, first);
  if (digits.size() < 8 || digits.size() > 19) return std::nullopt;
  return digits;
}

}  // namespace medcard::iso8583
