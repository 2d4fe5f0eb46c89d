#include "terminal/ssse.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/money.h"
#include "common/text.h"
#include "crypto/crypto.h"

namespace medcard::terminal {

using iso7816::CommandApdu;
using iso7816::StatusWord;

namespace {

const Bytes kSsseName = HexToBytes("7378312E73682EC9E7BBE1B1A3D5CF");  // card-profile.md
constexpr std::uint8_t kEf05Sfi = 0x05, kEf06Sfi = 0x06, kEf07Sfi = 0x07, kEf08Sfi = 0x08;
// DELIVERY KEY P1: one diversification level (the card's ASN factor), key type 04 visit_record
// (docs/psam-commands.md, "DELIVERY KEY").
constexpr std::uint8_t kDeliverVisitRecordKey = (1u << 5) | 0x04;
constexpr std::uint8_t kDesCryptMacWithIv = 0x05;
constexpr std::size_t kMacSize = 4;

// Sends `c`; an error names `what` and the status word unless the answer is 9000.
Result<Bytes> Exchange(reader::Reader& r, const std::string& what, const CommandApdu& c) {
  auto response = reader::Send(r, c);
  if (!response.ok()) return MakeError(what + ": " + response.error().message);
  if (!response->ok()) return CardError(what.c_str(), response->sw);
  return std::move(response->data);
}

Status SelectSsse(reader::Reader& card) {
  auto response = reader::Send(card, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kSsseName, 256));
  if (!response.ok()) return MakeError("SELECT SSSE: " + response.error().message);
  if (response->sw.value == iso7816::sw::kFileNotFound.value) {
    return MakeError("not a medcard card: no social-security (SSSE) application (6A82)");
  }
  if (!response->ok()) return CardError("SELECT SSSE", response->sw);
  return Status::Ok();
}

// Trailing spaces (the card's padding) removed.
ByteView TrimPadding(ByteView v) {
  while (!v.empty() && v.back() == ' ') v = v.first(v.size() - 1);
  return v;
}

// The context of a field in error messages: "SSSE EF06 tag 0D".
std::string Where(std::uint8_t sfi, std::uint8_t tag) {
  char text[32];
  std::snprintf(text, sizeof text, "SSSE EF%02X tag %02X", sfi, tag);
  return text;
}

// One TLV record of an SSSE EF, parsed strictly: the card answers `tag ‖ len ‖ value`
// (docs/card-commands.md, READ RECORD). nullopt: the card has no such tag (6A83).
Result<std::optional<Bytes>> ReadTlv(reader::Reader& card, std::uint8_t sfi, std::uint8_t tag,
                                     std::size_t min_length, std::size_t max_length) {
  const std::string where = Where(sfi, tag);
  const auto p2 = static_cast<std::uint8_t>((sfi << 3) | 0x04);
  auto response = reader::Send(card, CommandApdu::Case2(0x00, 0xB2, tag, p2, 256));
  if (!response.ok()) return MakeError("READ RECORD " + where + ": " + response.error().message);
  if (response->sw.value == iso7816::sw::kRecordNotFound.value) {
    return std::optional<Bytes>();
  }
  if (!response->ok()) return CardError(("READ RECORD " + where).c_str(), response->sw);
  const Bytes& d = response->data;
  if (d.size() < 2 || d[0] != tag || d[1] != d.size() - 2) {
    return MakeError(where + ": not a TLV record of that tag (" + ToHex(View(d)) + ")");
  }
  const std::size_t length = d.size() - 2;
  if (length < min_length || length > max_length) {
    return MakeError(where + ": " + std::to_string(length) + " bytes, expected " +
                     (min_length == max_length
                          ? std::to_string(min_length)
                          : std::to_string(min_length) + ".." + std::to_string(max_length)));
  }
  return std::optional<Bytes>(Bytes(d.begin() + 2, d.end()));
}

Result<Bytes> ReadRequiredTlv(reader::Reader& card, std::uint8_t sfi, std::uint8_t tag,
                              std::size_t min_length, std::size_t max_length) {
  auto value = ReadTlv(card, sfi, tag, min_length, max_length);
  if (!value.ok()) return value.error();
  if (!value->has_value()) return MakeError(Where(sfi, tag) + ": missing on the card");
  return std::move(**value);
}

// Space-padded text of printable ASCII, padding removed; `allowed` narrows the characters.
Result<std::string> AsciiField(ByteView value, const std::string& where,
                               bool (*allowed)(std::uint8_t)) {
  const ByteView text = TrimPadding(value);
  if (text.empty()) return MakeError(where + ": empty");
  for (std::uint8_t c : text) {
    if (!allowed(c)) return MakeError(where + ": unexpected character (" + ToHex(value) + ")");
  }
  return std::string(text.begin(), text.end());
}
bool IsPrintable(std::uint8_t c) { return c > 0x20 && c < 0x7F; }
bool IsDigit(std::uint8_t c) { return c >= '0' && c <= '9'; }
bool IsCodeCharacter(std::uint8_t c) { return IsDigit(c) || (c >= 'A' && c <= 'Z'); }

Result<std::string> GbkField(ByteView value, const std::string& where, bool may_be_empty) {
  const ByteView text = TrimPadding(value);
  if (text.empty() && !may_be_empty) return MakeError(where + ": empty");
  auto utf8 = GbkToUtf8(text);
  if (!utf8.ok()) return MakeError(where + ": not GBK text (" + ToHex(text) + ")");
  return utf8;
}

Result<Date> DateField(ByteView value, const std::string& where) {
  auto date = DecodeBcdDate(value);
  if (!date) return MakeError(where + ": not a date (" + ToHex(value) + ")");
  return *date;
}

// Packed BCD digits without padding ("110101" from 11 01 01).
Result<std::string> BcdDigits(ByteView value, const std::string& where) {
  std::string digits;
  for (std::uint8_t b : value) {
    const int high = b >> 4, low = b & 0x0F;
    if (high > 9 || low > 9) return MakeError(where + ": not BCD digits (" + ToHex(value) + ")");
    digits += static_cast<char>('0' + high);
    digits += static_cast<char>('0' + low);
  }
  return digits;
}

std::string CodeName(std::uint8_t code, std::initializer_list<const char*> names) {
  if (code >= 1 && code <= names.size()) return *(names.begin() + (code - 1));
  char text[16];
  std::snprintf(text, sizeof text, "code %02X", code);
  return text;
}

std::string HexByte(std::uint8_t b) { return ToHex(ByteView(&b, 1)); }

// Wallet of a purse transaction type (pboc-ed-ep.md, "Transaction type identifiers").
const char* WalletOfType(std::uint8_t type) {
  switch (type) {
    case 0x01:
    case 0x03:
    case 0x04:
    case 0x05:
    case 0x07:
      return "ED";
    case 0x02:
    case 0x06:
      return "EP";
    default:
      return "";
  }
}

// Left- or right-aligned to `width` (by bytes: every cell here is ASCII).
std::string Cell(const std::string& text, std::size_t width, bool right = false) {
  if (text.size() >= width) return text;
  const std::string pad(width - text.size(), ' ');
  return right ? pad + text : text + pad;
}

bool IsValidTime(const TimeOfDay& t) {
  return t.hour >= 0 && t.hour <= 23 && t.minute >= 0 && t.minute <= 59 && t.second >= 0 &&
         t.second <= 59;
}

// `text` space padded to `width` bytes.
Bytes Padded(const std::string& text, std::size_t width) {
  Bytes out(text.begin(), text.end());
  out.resize(width, ' ');
  return out;
}

Error PsamError(const std::string& command, StatusWord sw, const VisitRecordKey& key) {
  std::string meaning;
  switch (sw.value) {
    case 0x6A88:
      meaning = "the PSAM has no visit_record key of version " + HexByte(key.key_version);
      break;
    case 0x6985:
      meaning = "the PSAM refuses (not personalised, or no key delivered)";
      break;
    default:
      meaning = sw.Name();
  }
  return MakeError("PSAM " + command + ": " + meaning + " (" + ToHex(Bytes{sw.sw1(), sw.sw2()}) +
                   ")");
}

}  // namespace

// ---- Cardholder -------------------------------------------------------------------------------

Result<Cardholder> ReadCardholder(reader::Reader& card) {
  if (Status s = SelectSsse(card); !s.ok()) return s.error();
  Cardholder h;

  // EF05 card identification: 01 card id(16) 05 issue date(4) 06 expiry(4) 07 card number(9)
  auto card_id = ReadRequiredTlv(card, kEf05Sfi, 0x01, 16, 16);
  if (!card_id.ok()) return card_id.error();
  auto card_id_text = AsciiField(View(*card_id), Where(kEf05Sfi, 0x01), IsPrintable);
  if (!card_id_text.ok()) return card_id_text.error();
  h.ssse_card_id = *card_id_text;
  for (auto [tag, date] : {std::pair{std::uint8_t{0x05}, &h.ssse_issue_date},
                           std::pair{std::uint8_t{0x06}, &h.ssse_expiry_date}}) {
    auto value = ReadRequiredTlv(card, kEf05Sfi, tag, 4, 4);
    if (!value.ok()) return value.error();
    auto decoded = DateField(View(*value), Where(kEf05Sfi, tag));
    if (!decoded.ok()) return decoded.error();
    *date = *decoded;
  }
  auto card_number = ReadRequiredTlv(card, kEf05Sfi, 0x07, 9, 9);
  if (!card_number.ok()) return card_number.error();
  auto card_number_text = AsciiField(View(*card_number), Where(kEf05Sfi, 0x07), IsPrintable);
  if (!card_number_text.ok()) return card_number_text.error();
  h.ssse_card_number = *card_number_text;

  // EF06 personal basic data: 08 SSN(18) 09 name(30 GBK) 0A sex 0B ethnicity 0C birthplace(3)
  // 0D birth date(4)
  auto ssn = ReadRequiredTlv(card, kEf06Sfi, 0x08, 18, 18);
  if (!ssn.ok()) return ssn.error();
  auto ssn_text = AsciiField(View(*ssn), Where(kEf06Sfi, 0x08),
                             [](std::uint8_t c) { return IsDigit(c) || c == 'X'; });
  if (!ssn_text.ok()) return ssn_text.error();
  h.social_security_number = *ssn_text;
  auto name = ReadRequiredTlv(card, kEf06Sfi, 0x09, 30, 30);
  if (!name.ok()) return name.error();
  auto name_text = GbkField(View(*name), Where(kEf06Sfi, 0x09), false);
  if (!name_text.ok()) return name_text.error();
  h.name = *name_text;
  auto sex = ReadRequiredTlv(card, kEf06Sfi, 0x0A, 1, 1);
  if (!sex.ok()) return sex.error();
  const char sex_code = static_cast<char>((*sex)[0]);
  if (sex_code != '0' && sex_code != '1' && sex_code != '2' && sex_code != '9') {
    return MakeError(Where(kEf06Sfi, 0x0A) + ": not a GB/T 2261.1 sex code (" + HexByte((*sex)[0]) +
                     ")");
  }
  h.sex = sex_code;
  auto ethnicity = ReadRequiredTlv(card, kEf06Sfi, 0x0B, 1, 1);
  if (!ethnicity.ok()) return ethnicity.error();
  auto ethnicity_digits = BcdDigits(View(*ethnicity), Where(kEf06Sfi, 0x0B));
  if (!ethnicity_digits.ok()) return ethnicity_digits.error();
  h.ethnicity = *ethnicity_digits;
  auto birthplace = ReadRequiredTlv(card, kEf06Sfi, 0x0C, 3, 3);
  if (!birthplace.ok()) return birthplace.error();
  auto birthplace_digits = BcdDigits(View(*birthplace), Where(kEf06Sfi, 0x0C));
  if (!birthplace_digits.ok()) return birthplace_digits.error();
  h.birthplace = *birthplace_digits;
  auto birth = ReadRequiredTlv(card, kEf06Sfi, 0x0D, 4, 4);
  if (!birth.ok()) return birth.error();
  auto birth_date = DateField(View(*birth), Where(kEf06Sfi, 0x0D));
  if (!birth_date.ok()) return birth_date.error();
  h.birth_date = *birth_date;

  // EF07 medical-insurance data: 20 category 21 employer(15) 22 status 23 pooling area(6)
  // 24 facilities (N × 10, N = 1..3, optional) 25 emergency data (<= 64 GBK, optional)
  auto category = ReadRequiredTlv(card, kEf07Sfi, 0x20, 1, 1);
  if (!category.ok()) return category.error();
  h.insured_category = (*category)[0];
  auto employer = ReadRequiredTlv(card, kEf07Sfi, 0x21, 15, 15);
  if (!employer.ok()) return employer.error();
  auto employer_text = AsciiField(View(*employer), Where(kEf07Sfi, 0x21), IsCodeCharacter);
  if (!employer_text.ok()) return employer_text.error();
  h.employer_unit_code = *employer_text;
  auto status = ReadRequiredTlv(card, kEf07Sfi, 0x22, 1, 1);
  if (!status.ok()) return status.error();
  h.insurance_status = (*status)[0];
  auto pooling = ReadRequiredTlv(card, kEf07Sfi, 0x23, 6, 6);
  if (!pooling.ok()) return pooling.error();
  auto pooling_text = AsciiField(View(*pooling), Where(kEf07Sfi, 0x23), IsDigit);
  if (!pooling_text.ok()) return pooling_text.error();
  if (pooling_text->size() != 6) return MakeError(Where(kEf07Sfi, 0x23) + ": not 6 digits");
  h.pooling_area = *pooling_text;
  auto facilities = ReadTlv(card, kEf07Sfi, 0x24, 10, 30);
  if (!facilities.ok()) return facilities.error();
  if (facilities->has_value()) {
    const Bytes& all = **facilities;
    if (all.size() % 10 != 0) {
      return MakeError(Where(kEf07Sfi, 0x24) + ": not a whole number of 10-byte codes");
    }
    for (std::size_t at = 0; at < all.size(); at += 10) {
      auto code = AsciiField(View(all).subspan(at, 10), Where(kEf07Sfi, 0x24), IsCodeCharacter);
      if (!code.ok()) return code.error();
      h.designated_facilities.push_back(*code);
    }
  }
  auto emergency = ReadTlv(card, kEf07Sfi, 0x25, 1, 64);
  if (!emergency.ok()) return emergency.error();
  if (emergency->has_value()) {
    auto text = GbkField(View(**emergency), Where(kEf07Sfi, 0x25), true);
    if (!text.ok()) return text.error();
    h.emergency_data = *text;
  }
  return h;
}

std::string MaskSsn(std::string_view ssn) {
  if (ssn.size() <= 10) return std::string(ssn.size(), '*');
  std::string masked(ssn);
  for (std::size_t i = 6; i < masked.size() - 4; ++i) masked[i] = '*';
  return masked;
}

std::string SexName(char sex) {
  switch (sex) {
    case '0':
      return "unknown";
    case '1':
      return "male";
    case '2':
      return "female";
    case '9':
      return "unspecified";
    default:
      return "code " + HexByte(static_cast<std::uint8_t>(sex));
  }
}

std::string InsuredCategoryName(std::uint8_t category) {
  return CodeName(category, {"employee", "retiree", "flexible employment"});
}

std::string InsuranceStatusName(std::uint8_t status) {
  return CodeName(status, {"active", "suspended", "ended"});
}

std::string CardholderText(const Cardholder& h, SsnDisplay ssn) {
  std::string facilities;
  for (const std::string& f : h.designated_facilities) {
    facilities += (facilities.empty() ? "" : ", ") + f;
  }
  const std::pair<const char*, std::string> lines[] = {
      {"name", h.name},
      {"social security number",
       ssn == SsnDisplay::kFull ? h.social_security_number : MaskSsn(h.social_security_number)},
      {"sex", SexName(h.sex)},
      {"birth date", h.birth_date.ToString()},
      {"ethnicity", h.ethnicity},
      {"birthplace", h.birthplace},
      {"SSSE card number", h.ssse_card_number},
      {"SSSE card id", h.ssse_card_id},
      {"SSSE card valid", h.ssse_issue_date.ToString() + " to " + h.ssse_expiry_date.ToString()},
      {"insured category", InsuredCategoryName(h.insured_category)},
      {"insurance status", InsuranceStatusName(h.insurance_status)},
      {"employer unit", h.employer_unit_code},
      {"pooling area", h.pooling_area},
      {"designated facilities", facilities.empty() ? "none" : facilities},
      {"emergency data", h.emergency_data.empty() ? "none" : h.emergency_data},
  };
  std::string out;
  for (const auto& [label, value] : lines) out += Cell(std::string(label) + ":", 24) + value + "\n";
  return out;
}

std::string CardholderJson(const Cardholder& h, SsnDisplay ssn) {
  nlohmann::ordered_json j;
  j["name"] = h.name;
  j["social_security_number"] =
      ssn == SsnDisplay::kFull ? h.social_security_number : MaskSsn(h.social_security_number);
  j["social_security_number_masked"] = ssn != SsnDisplay::kFull;
  j["sex"] = std::string(1, h.sex);
  j["sex_name"] = SexName(h.sex);
  j["birth_date"] = h.birth_date.ToString();
  j["ethnicity"] = h.ethnicity;
  j["birthplace"] = h.birthplace;
  j["ssse_card_number"] = h.ssse_card_number;
  j["ssse_card_id"] = h.ssse_card_id;
  j["ssse_issue_date"] = h.ssse_issue_date.ToString();
  j["ssse_expiry_date"] = h.ssse_expiry_date.ToString();
  j["insured_category"] = h.insured_category;
  j["insured_category_name"] = InsuredCategoryName(h.insured_category);
  j["insurance_status"] = h.insurance_status;
  j["insurance_status_name"] = InsuranceStatusName(h.insurance_status);
  j["employer_unit_code"] = h.employer_unit_code;
  j["pooling_area"] = h.pooling_area;
  j["designated_facilities"] = h.designated_facilities;
  j["emergency_data"] = h.emergency_data;
  return j.dump();
}

// ---- Visit records ----------------------------------------------------------------------------

Result<Bytes> VisitRecord::Encode() const {
  if (!IsValidDate(date)) return MakeError("visit record: the date is not a date");
  if (!IsValidTime(time)) return MakeError("visit record: the time is not a time of day");
  if (facility_code.empty() || facility_code.size() > 10 ||
      !std::all_of(facility_code.begin(), facility_code.end(),
                   [](char c) { return IsCodeCharacter(static_cast<std::uint8_t>(c)); })) {
    return MakeError("visit record: the facility code is 1 to 10 of 0-9 A-Z");
  }
  if (diagnosis.empty() || diagnosis.size() > 8 ||
      !std::all_of(diagnosis.begin(), diagnosis.end(),
                   [](char c) { return IsPrintable(static_cast<std::uint8_t>(c)); })) {
    return MakeError(
        "visit record: the diagnosis is an ICD-10 code of 1 to 8 printable characters");
  }
  if (std::uint64_t{paid_by_account} + paid_by_pool > total) {
    return MakeError("visit record: paid by account " + FormatFen(paid_by_account) +
                     " + paid by pool " + FormatFen(paid_by_pool) + " exceed the total " +
                     FormatFen(total));
  }
  Bytes out = Concat(
      {View(EncodeBcdDate(date)), View(EncodeBcdTime(time)), View(Padded(facility_code, 10))});
  out.push_back(visit_type);
  Append(out, View(Padded(diagnosis, 8)));
  AppendU32(out, total);
  AppendU32(out, paid_by_account);
  AppendU32(out, paid_by_pool);
  return out;
}

Result<VisitRecord> VisitRecord::Parse(ByteView record) {
  if (record.size() != kVisitRecordSize) {
    return MakeError("visit record: " + std::to_string(record.size()) + " bytes, expected 38");
  }
  VisitRecord v;
  auto date = DecodeBcdDate(record.subspan(0, 4));
  auto time = DecodeBcdTime(record.subspan(4, 3));
  if (!date || !time) return MakeError("visit record: bad date or time (" + ToHex(record) + ")");
  v.date = *date;
  v.time = *time;
  auto facility = AsciiField(record.subspan(7, 10), "visit record facility", IsCodeCharacter);
  if (!facility.ok()) return facility.error();
  v.facility_code = *facility;
  v.visit_type = record[17];
  auto diagnosis = AsciiField(record.subspan(18, 8), "visit record diagnosis", IsPrintable);
  if (!diagnosis.ok()) return diagnosis.error();
  v.diagnosis = *diagnosis;
  v.total = ReadU32(record, 26);
  v.paid_by_account = ReadU32(record, 30);
  v.paid_by_pool = ReadU32(record, 34);
  // What Encode refuses to write, a record read back must not carry either (found by ssse_fuzz).
  if (std::uint64_t{v.paid_by_account} + v.paid_by_pool > v.total) {
    return MakeError("visit record: paid by account " + FormatFen(v.paid_by_account) +
                     " + paid by pool " + FormatFen(v.paid_by_pool) + " exceed the total " +
                     FormatFen(v.total));
  }
  return v;
}

Status AppendVisitRecord(reader::Reader& card, reader::Reader& psam, const VisitRecordKey& key,
                         const VisitRecord& visit) {
  auto record = visit.Encode();
  if (!record.ok()) return record.error();
  if (key.asn.size() != 10) return MakeError("visit record: the card's ASN is 10 bytes");
  if (Status s = SelectSsse(card); !s.ok()) return s;

  // The PSAM derives the card's visit_record key from its master and the ASN factor; the key
  // never leaves it (docs/psam-commands.md, "Multi-level diversification").
  auto delivered =
      reader::Send(psam, CommandApdu::Case3(0x80, 0x1A, kDeliverVisitRecordKey, key.key_version,
                                            crypto::AsnFactor(View(key.asn))));
  if (!delivered.ok()) return MakeError("PSAM DELIVERY KEY: " + delivered.error().message);
  if (!delivered->ok()) return PsamError("DELIVERY KEY", delivered->sw, key);

  // The challenge is good for the card's next command only: GET CHALLENGE and APPEND RECORD
  // run inside one reader transaction so no other application's APDU falls between them.
  auto txn = reader::Transaction::Begin(card);
  if (!txn.ok()) return txn.error();
  auto challenge = Exchange(card, "GET CHALLENGE", CommandApdu::Case2(0x00, 0x84, 0x00, 0x00, 4));
  if (!challenge.ok()) return challenge.error();
  if (challenge->size() != 4) return MakeError("GET CHALLENGE: not 4 bytes");

  // Secure messaging (docs/card-commands.md): MAC over CLA INS P1 P2 Lc ‖ record, Lc counting
  // the MAC, IV = challenge(4) ‖ 00000000.
  constexpr std::uint8_t kP2Ef08 = kEf08Sfi << 3;
  const auto lc = static_cast<std::uint8_t>(kVisitRecordSize + kMacSize);
  Bytes mac_input = *challenge;
  mac_input.resize(8, 0x00);
  Append(mac_input, {0x04, 0xE2, 0x00, kP2Ef08, lc});
  Append(mac_input, View(*record));
  auto mac = reader::Send(
      psam, CommandApdu::Case4(0x80, 0xFA, kDesCryptMacWithIv, 0x00, mac_input, kMacSize));
  if (!mac.ok()) return MakeError("PSAM DES CRYPT: " + mac.error().message);
  if (!mac->ok()) return PsamError("DES CRYPT", mac->sw, key);
  if (mac->data.size() != kMacSize) return MakeError("PSAM DES CRYPT: the MAC is not 4 bytes");

  Bytes data = *record;
  Append(data, View(mac->data));
  auto appended = reader::Send(card, CommandApdu::Case3(0x04, 0xE2, 0x00, kP2Ef08, data));
  if (!appended.ok()) return MakeError("APPEND RECORD EF08: " + appended.error().message);
  if (appended->sw.value == iso7816::sw::kSmMacWrong.value) {
    return MakeError(
        "APPEND RECORD EF08: the card refused the MAC: the PSAM's visit_record key is not this "
        "card's (6988)");
  }
  if (appended->sw.value == iso7816::sw::kBlocked.value) {
    return MakeError("APPEND RECORD EF08: the card's visit_record key is locked (6983)");
  }
  if (!appended->ok()) return CardError("APPEND RECORD EF08", appended->sw);
  return txn->End();
}

Result<std::vector<VisitRecord>> ReadVisitRecords(reader::Reader& card) {
  if (Status s = SelectSsse(card); !s.ok()) return s.error();
  std::vector<VisitRecord> visits;
  constexpr std::uint8_t kP2 = (kEf08Sfi << 3) | 0x04;
  for (std::uint8_t n = 1; n <= kVisitRecordCount; ++n) {
    auto r = reader::Send(card, CommandApdu::Case2(0x00, 0xB2, n, kP2, kVisitRecordSize));
    if (!r.ok()) return MakeError("READ RECORD EF08: " + r.error().message);
    if (r->sw.value == iso7816::sw::kRecordNotFound.value) break;
    if (!r->ok()) return CardError("READ RECORD EF08", r->sw);
    auto visit = VisitRecord::Parse(View(r->data));
    if (!visit.ok()) {
      return MakeError("EF08 record " + std::to_string(n) + ": " + visit.error().message);
    }
    visits.push_back(std::move(visit).value());
  }
  return visits;
}

std::string FormatVisitRecords(const std::vector<VisitRecord>& visits) {
  std::string out = Cell("date", 11) + Cell("time", 9) + Cell("facility", 11) + Cell("type", 5) +
                    Cell("diagnosis", 10) + Cell("total", 12, true) + Cell("account", 12, true) +
                    Cell("pool", 12, true) + "\n";
  for (const VisitRecord& v : visits) {
    out += Cell(v.date.ToString(), 11) + Cell(v.time.ToString(), 9) + Cell(v.facility_code, 11) +
           Cell(HexByte(v.visit_type), 5) + Cell(v.diagnosis, 10) +
           Cell(FormatFen(v.total), 12, true) + Cell(FormatFen(v.paid_by_account), 12, true) +
           Cell(FormatFen(v.paid_by_pool), 12, true) + "\n";
  }
  if (visits.empty()) out += "(no visits)\n";
  return out;
}

// ---- Purse history ----------------------------------------------------------------------------

std::string TransactionTypeName(std::uint8_t type) {
  switch (type) {
    case 0x01:
    case 0x02:
      return "load";
    case 0x03:
      return "unload";
    case 0x04:
      return "cash withdraw";
    case 0x05:
    case 0x06:
      return "purchase";
    case 0x07:
      return "overdraw update";
    case 0x09:
      return "composite purchase";
    default:
      return "type 0x" + HexByte(type);
  }
}

std::string FormatHistory(const std::vector<LogRecord>& log, HistoryFormat format) {
  if (format == HistoryFormat::kJson) {
    nlohmann::ordered_json records = nlohmann::ordered_json::array();
    for (const LogRecord& r : log) {
      nlohmann::ordered_json j;
      j["serial"] = r.serial;
      j["type"] = TransactionTypeName(r.type);
      j["type_code"] = r.type;
      j["wallet"] = WalletOfType(r.type);
      j["amount"] = FormatFen(r.amount);
      j["amount_fen"] = r.amount;
      j["date"] = r.date ? nlohmann::ordered_json(r.date->ToString()) : nullptr;
      j["time"] = r.time ? nlohmann::ordered_json(r.time->ToString()) : nullptr;
      j["terminal_number"] = ToHex(View(r.terminal_number));
      records.push_back(std::move(j));
    }
    return records.dump();
  }
  std::string out = Cell("serial", 7, true) + "  " + Cell("type", 19) + Cell("wallet", 7) +
                    Cell("amount", 12, true) + "  " + Cell("date", 11) + Cell("time", 9) +
                    "terminal\n";
  for (const LogRecord& r : log) {
    out += Cell(std::to_string(r.serial), 7, true) + "  " + Cell(TransactionTypeName(r.type), 19) +
           Cell(WalletOfType(r.type), 7) + Cell(FormatFen(r.amount), 12, true) + "  " +
           Cell(r.date ? r.date->ToString() : "-", 11) +
           Cell(r.time ? r.time->ToString() : "-", 9) + ToHex(View(r.terminal_number)) + "\n";
  }
  if (log.empty()) out += "(no transactions)\n";
  return out;
}

}  // namespace medcard::terminal
