// HOLDER.json: parsing, strict validation, GBK conversion (docs/issuance.md, "Holder data").
#include "issuance/holder.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <set>
#include <utility>

#include "common/text.h"
#include "crypto/crypto.h"

namespace medcard::issuance {

namespace {

using nlohmann::json;

Error FieldError(std::string_view field, std::string_view what) {
  return MakeError("holder." + std::string(field) + ": " + std::string(what));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit);
}
bool IsUpperAlnum(char c) { return IsDigit(c) || (c >= 'A' && c <= 'Z'); }

// ---- Field readers --------------------------------------------------------------------------

Result<std::string> StringField(const json& object, const char* field, const std::string& path) {
  const json& value = object.at(field);
  if (!value.is_string()) return FieldError(path, "not a string");
  return value.get<std::string>();
}

Result<Date> ParseIsoDate(const std::string& text, const std::string& path) {
  const bool shape = text.size() == 10 && text[4] == '-' && text[7] == '-' &&
                     AllDigits(std::string_view(text).substr(0, 4)) &&
                     AllDigits(std::string_view(text).substr(5, 2)) &&
                     AllDigits(std::string_view(text).substr(8, 2));
  if (!shape) return FieldError(path, "not a date (YYYY-MM-DD)");
  Date d{std::stoi(text.substr(0, 4)), std::stoi(text.substr(5, 2)), std::stoi(text.substr(8, 2))};
  if (!IsValidDate(d) || d.year < 1900) {
    return FieldError(path, "\"" + text + "\" is not a real date");
  }
  return d;
}

Result<Date> DateField(const json& object, const char* field, const std::string& path) {
  auto text = StringField(object, field, path);
  if (!text.ok()) return text.error();
  return ParseIsoDate(*text, path);
}

// A name or free text: UTF-8 without control characters, no leading or trailing white space
// (the card pads with spaces), at most `max_gbk` bytes in GBK.
Result<Bytes> GbkText(const std::string& text, std::size_t max_gbk, const std::string& path,
                      const char* where_on_card) {
  if (text.empty()) return FieldError(path, "empty");
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto cp = NextCodePoint(text, pos);
    if (!cp) return FieldError(path, "not valid UTF-8");
    if (*cp < 0x20 || (*cp >= 0x7F && *cp < 0xA0)) {
      return FieldError(path, "control character " + CodePointName(*cp));
    }
  }
  if (text.front() == ' ' || text.back() == ' ') {
    return FieldError(path, "leading or trailing space (the card pads with spaces)");
  }
  auto gbk = Utf8ToGbk(text);
  if (!gbk.ok()) return FieldError(path, gbk.error().message);
  if (gbk->size() > max_gbk) {
    return FieldError(path, std::to_string(gbk->size()) + " bytes in GBK; the card holds at most " +
                                std::to_string(max_gbk) + " (" + where_on_card + ")");
  }
  return gbk;
}

template <typename E>
struct EnumName {
  const char* name;
  E value;
};

template <typename E, std::size_t N>
Result<E> EnumField(const json& object, const char* field, const std::string& path,
                    const EnumName<E> (&names)[N]) {
  auto text = StringField(object, field, path);
  if (!text.ok()) return text.error();
  std::string allowed;
  for (const auto& n : names) {
    if (*text == n.name) return n.value;
    allowed += (allowed.empty() ? "" : ", ") + std::string(n.name);
  }
  return FieldError(path, "\"" + *text + "\" is not one of " + allowed);
}

constexpr EnumName<Sex> kSexNames[] = {{"male", Sex::kMale},
                                       {"female", Sex::kFemale},
                                       {"unknown", Sex::kUnknown},
                                       {"unspecified", Sex::kUnspecified}};
constexpr EnumName<IdType> kIdTypeNames[] = {
    {"resident_id", IdType::kResidentId},   {"officer", IdType::kOfficer},
    {"passport", IdType::kPassport},        {"entry_permit", IdType::kEntryPermit},
    {"temporary_id", IdType::kTemporaryId}, {"other", IdType::kOther}};
constexpr EnumName<InsuredCategory> kCategoryNames[] = {
    {"employee", InsuredCategory::kEmployee},
    {"retiree", InsuredCategory::kRetiree},
    {"flexible_employment", InsuredCategory::kFlexibleEmployment}};
constexpr EnumName<InsuranceStatus> kStatusNames[] = {{"active", InsuranceStatus::kActive},
                                                      {"suspended", InsuranceStatus::kSuspended},
                                                      {"ended", InsuranceStatus::kEnded}};

// 1..max characters of 0-9 A-Z (employer and facility codes).
Result<std::string> CodeField(const json& value, std::size_t max, const std::string& path) {
  if (!value.is_string()) return FieldError(path, "not a string");
  std::string code = value.get<std::string>();
  if (code.empty() || code.size() > max || !std::all_of(code.begin(), code.end(), IsUpperAlnum)) {
    return FieldError(path, "must be 1 to " + std::to_string(max) + " characters 0-9 A-Z");
  }
  return code;
}

Result<std::string> DigitsField(const json& object, const char* field, std::size_t length,
                                const std::string& path) {
  auto text = StringField(object, field, path);
  if (!text.ok()) return text.error();
  if (text->size() != length || !AllDigits(*text)) {
    return FieldError(path, "must be " + std::to_string(length) + " digits");
  }
  return text;
}

Status CheckKnownFields(const json& object, const std::vector<std::string>& known,
                        const std::string& prefix) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return FieldError(prefix + key, "unknown field");
    }
  }
  return Status::Ok();
}

Status CheckRequiredFields(const json& object, const std::vector<std::string>& required,
                           const std::string& prefix) {
  for (const std::string& field : required) {
    if (!object.contains(field)) return FieldError(prefix + field, "missing");
  }
  return Status::Ok();
}

// Line and column (1-based) of a byte offset, for JSON syntax errors without quoting the text.
std::string Position(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Strict JSON: a syntax error is reported by position; a key repeated in one object is an
// error (nlohmann would keep the last silently).
Result<json> ParseStrictJson(std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(text, callback);
  } catch (const json::parse_error& e) {
    return MakeError("holder: not valid JSON (" + Position(text, e.byte > 0 ? e.byte - 1 : 0) +
                     ")");
  }
  if (!duplicate.empty()) return FieldError(duplicate, "appears twice");
  return doc;
}

Bytes BcdDigits(std::string_view digits) {  // REQUIRES: an even number of decimal digits
  Bytes out;
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(((digits[i] - '0') << 4) | (digits[i + 1] - '0')));
  }
  return out;
}

Date AddYears(const Date& d, int years) {
  Date out{d.year + years, d.month, d.day};
  if (!IsValidDate(out)) out.day = 28;  // 29 February in a year that has none
  return out;
}

std::string TrimSpaces(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

// ---- Check character ------------------------------------------------------------------------

char Mod112CheckCharacter(std::string_view first_17_digits) {
  // ISO 7064 MOD 11-2 as GB 11643 applies it: weights 2^(17-i) mod 11, check value
  // (12 - sum mod 11) mod 11, 10 written as X.
  int sum = 0;
  int weight = 1;
  for (std::size_t i = first_17_digits.size(); i-- > 0;) {
    weight = (weight * 2) % 11;
    sum += (first_17_digits[i] - '0') * weight;
  }
  const int check = (12 - sum % 11) % 11;
  return check == 10 ? 'X' : static_cast<char>('0' + check);
}

bool IsValidResidentIdNumber(std::string_view id) {
  if (id.size() != 18 || !AllDigits(id.substr(0, 17))) return false;
  return id[17] == Mod112CheckCharacter(id.substr(0, 17));
}

// ---- GBK ------------------------------------------------------------------------------------

// ---- HOLDER.json ----------------------------------------------------------------------------

const std::vector<std::string>& RequiredHolderFields() {
  static const std::vector<std::string> kRequired = {"social_security_number",
                                                     "name",
                                                     "sex",
                                                     "ethnicity",
                                                     "birthplace",
                                                     "birth_date",
                                                     "id_number",
                                                     "id_type",
                                                     "insured_category",
                                                     "employer_unit_code",
                                                     "pooling_area"};
  return kRequired;
}

const std::vector<std::string>& HolderFields() {
  static const std::vector<std::string> kFields = [] {
    std::vector<std::string> fields = RequiredHolderFields();
    for (const char* optional : {"insurance_status", "designated_facilities", "emergency_data",
                                 "card_type", "staff_flag", "validity", "$schema"}) {
      fields.emplace_back(optional);
    }
    return fields;
  }();
  return kFields;
}

Result<Holder> ParseHolderJson(std::string_view json_text, const Date& today) {
  auto parsed = ParseStrictJson(json_text);
  if (!parsed.ok()) return parsed.error();
  const json& doc = *parsed;
  if (!doc.is_object()) return MakeError("holder: not a JSON object");
  if (Status s = CheckKnownFields(doc, HolderFields(), ""); !s.ok()) return s.error();
  if (Status s = CheckRequiredFields(doc, RequiredHolderFields(), ""); !s.ok()) return s.error();

  Holder h;
  // Dates first: the social-security number is checked against the birth date.
  auto birth = DateField(doc, "birth_date", "birth_date");
  if (!birth.ok()) return birth.error();
  if (*birth > today) return FieldError("birth_date", birth->ToString() + " is in the future");
  h.birth_date = *birth;

  auto ssn = StringField(doc, "social_security_number", "social_security_number");
  if (!ssn.ok()) return ssn.error();
  if (ssn->size() != 18 || !AllDigits(std::string_view(*ssn).substr(0, 17))) {
    return FieldError("social_security_number", "must be 17 digits and a check character");
  }
  const char expected = Mod112CheckCharacter(std::string_view(*ssn).substr(0, 17));
  if ((*ssn)[17] != expected) {
    return FieldError("social_security_number", std::string("check character is ") + (*ssn)[17] +
                                                    ", ISO 7064 MOD 11-2 gives " + expected);
  }
  // GB 11643: digits 7..14 are the birth date.
  const std::string embedded =
      ssn->substr(6, 4) + "-" + ssn->substr(10, 2) + "-" + ssn->substr(12, 2);
  if (embedded != h.birth_date.ToString()) {
    return FieldError("social_security_number", "its birth date " + embedded +
                                                    " does not match holder.birth_date " +
                                                    h.birth_date.ToString());
  }
  h.social_security_number = *ssn;

  auto name = StringField(doc, "name", "name");
  if (!name.ok()) return name.error();
  if (auto gbk = GbkText(*name, 20, "name", "SFI 16 cardholder name"); !gbk.ok()) {
    return gbk.error();
  }
  h.name = *name;

  auto sex = EnumField(doc, "sex", "sex", kSexNames);
  if (!sex.ok()) return sex.error();
  h.sex = *sex;

  auto ethnicity = DigitsField(doc, "ethnicity", 2, "ethnicity");
  if (!ethnicity.ok()) return ethnicity.error();
  const int code = std::stoi(*ethnicity);
  if (!((code >= 1 && code <= 56) || code == 97 || code == 98)) {
    return FieldError("ethnicity", "\"" + *ethnicity + "\" is not a GB 3304 code (01-56, 97, 98)");
  }
  h.ethnicity = *ethnicity;

  auto birthplace = DigitsField(doc, "birthplace", 6, "birthplace");
  if (!birthplace.ok()) return birthplace.error();
  h.birthplace = *birthplace;

  auto id_type = EnumField(doc, "id_type", "id_type", kIdTypeNames);
  if (!id_type.ok()) return id_type.error();
  h.id_type = *id_type;
  auto id_number = StringField(doc, "id_number", "id_number");
  if (!id_number.ok()) return id_number.error();
  if (id_number->empty() || id_number->size() > 32 ||
      !std::all_of(id_number->begin(), id_number->end(),
                   [](char c) { return c > ' ' && c < 0x7F; })) {
    return FieldError("id_number", "must be 1 to 32 printable ASCII characters without spaces");
  }
  if (h.id_type == IdType::kResidentId && !IsValidResidentIdNumber(*id_number)) {
    return FieldError("id_number",
                      "not a resident ID number (17 digits and its MOD 11-2 check character)");
  }
  h.id_number = *id_number;

  auto category = EnumField(doc, "insured_category", "insured_category", kCategoryNames);
  if (!category.ok()) return category.error();
  h.insured_category = *category;

  auto employer = CodeField(doc.at("employer_unit_code"), 15, "employer_unit_code");
  if (!employer.ok()) return employer.error();
  h.employer_unit_code = *employer;

  auto pooling = DigitsField(doc, "pooling_area", 6, "pooling_area");
  if (!pooling.ok()) return pooling.error();
  h.pooling_area = *pooling;

  if (doc.contains("insurance_status")) {
    auto status = EnumField(doc, "insurance_status", "insurance_status", kStatusNames);
    if (!status.ok()) return status.error();
    h.insurance_status = *status;
  }
  if (doc.contains("designated_facilities")) {
    const json& list = doc.at("designated_facilities");
    if (!list.is_array()) return FieldError("designated_facilities", "not an array");
    if (list.size() > 3) return FieldError("designated_facilities", "at most 3 facilities");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string path = "designated_facilities[" + std::to_string(i) + "]";
      auto facility = CodeField(list[i], 10, path);
      if (!facility.ok()) return facility.error();
      if (std::find(h.designated_facilities.begin(), h.designated_facilities.end(), *facility) !=
          h.designated_facilities.end()) {
        return FieldError(path, "\"" + *facility + "\" is listed twice");
      }
      h.designated_facilities.push_back(*facility);
    }
  }
  if (doc.contains("emergency_data")) {
    auto text = StringField(doc, "emergency_data", "emergency_data");
    if (!text.ok()) return text.error();
    if (auto gbk = GbkText(*text, 64, "emergency_data", "SSSE EF07 tag 25"); !gbk.ok()) {
      return gbk.error();
    }
    h.emergency_data = *text;
  }
  if (doc.contains("card_type")) {
    const json& value = doc.at("card_type");
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
        value.get<std::int64_t>() > 255) {
      return FieldError("card_type", "must be an integer 0 to 255");
    }
    h.card_type = static_cast<std::uint8_t>(value.get<std::int64_t>());
  }
  if (doc.contains("staff_flag")) {
    if (!doc.at("staff_flag").is_boolean()) return FieldError("staff_flag", "not true or false");
    h.staff = doc.at("staff_flag").get<bool>();
  }
  if (doc.contains("validity")) {
    const json& validity = doc.at("validity");
    if (!validity.is_object()) return FieldError("validity", "not an object");
    if (Status s = CheckKnownFields(validity, {"start", "expiry"}, "validity."); !s.ok()) {
      return s.error();
    }
    if (Status s = CheckRequiredFields(validity, {"start", "expiry"}, "validity."); !s.ok()) {
      return s.error();
    }
    auto start = DateField(validity, "start", "validity.start");
    if (!start.ok()) return start.error();
    auto expiry = DateField(validity, "expiry", "validity.expiry");
    if (!expiry.ok()) return expiry.error();
    if (*expiry < *start) return FieldError("validity.expiry", "before validity.start");
    if (*expiry < today) return FieldError("validity.expiry", expiry->ToString() + " has passed");
    h.valid_from = *start;
    h.valid_to = *expiry;
  }
  if (doc.contains("$schema") && !doc.at("$schema").is_string()) {
    return FieldError("$schema", "not a string");
  }
  return h;
}

// ---- To the card ----------------------------------------------------------------------------

Result<card::HolderData> ToCardHolderData(const Holder& holder, const CardIdentity& identity) {
  if (identity.issuer_id.size() != 8) return MakeError("the issuer id is 8 bytes");
  if (identity.asn.size() != 10) return MakeError("the ASN is 10 bytes");
  if (identity.issuer_data.size() != 2) return MakeError("the issuer data is 2 bytes");
  if (!IsValidDate(identity.issue_date)) return MakeError("the issue date is not a date");
  auto name = Utf8ToGbk(holder.name);
  if (!name.ok()) return FieldError("name", name.error().message);

  card::HolderData h;
  h.issuer_id = identity.issuer_id;
  h.asn = identity.asn;
  h.start_date = holder.valid_from.value_or(identity.issue_date);
  h.expiry_date = holder.valid_to.value_or(AddYears(h.start_date, identity.validity_years));
  h.issuer_data = identity.issuer_data;
  h.card_type = holder.card_type;
  h.staff_flag = holder.staff ? 0x01 : 0x00;
  h.name_gbk = *name;
  h.id_number = holder.id_number;
  h.id_type = static_cast<std::uint8_t>(holder.id_type);
  const std::string asn_hex = ToHex(View(identity.asn));
  h.ssse_card_id = asn_hex.substr(asn_hex.size() - 16);
  h.ssse_issue_date = identity.issue_date;
  h.ssse_expiry_date = h.expiry_date;
  h.ssse_card_number = asn_hex.substr(asn_hex.size() - 9);
  h.social_security_number = holder.social_security_number;
  h.ssse_name_gbk = *name;
  h.sex = static_cast<std::uint8_t>(holder.sex);
  h.ethnicity = BcdDigits(holder.ethnicity)[0];  // "cn" (BCD), as the SSSE files code it
  h.birthplace = BcdDigits(holder.birthplace);
  h.birth_date = holder.birth_date;
  h.insured_category = static_cast<std::uint8_t>(holder.insured_category);
  h.employer_code = holder.employer_unit_code;
  h.insurance_status = static_cast<std::uint8_t>(holder.insurance_status);
  h.pooling_area = holder.pooling_area;
  h.designated_facilities = holder.designated_facilities;
  if (!holder.emergency_data.empty()) {
    auto emergency = Utf8ToGbk(holder.emergency_data);
    if (!emergency.ok()) return FieldError("emergency_data", emergency.error().message);
    h.emergency_gbk = *emergency;
  }
  h.pin = identity.pin;
  h.key_version = identity.key_version;
  return h;
}

// ---- From the card --------------------------------------------------------------------------

CardholderView ReadCardholder(const card::CardSummary& summary) {
  CardholderView view;
  const auto text_of = [](ByteView bytes) {
    return TrimSpaces(std::string(bytes.begin(), bytes.end()));
  };
  const auto gbk_text = [](ByteView bytes) {
    Bytes trimmed(bytes.begin(), bytes.end());
    while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == 0x00)) {
      trimmed.pop_back();
    }
    auto utf8 = GbkToUtf8(View(trimmed));
    return utf8.ok() ? *utf8 : std::string("(not GBK: ") + ToHex(View(trimmed)) + ")";
  };
  // TLV records (tag ‖ len ‖ value) of an SSSE EF, by tag.
  const auto tlv = [](const card::FileSummary& f, std::uint8_t tag) -> std::optional<ByteView> {
    for (const Bytes& r : f.records) {
      if (r.size() >= 2 && r[0] == tag && r.size() == 2u + r[1]) return View(r).subspan(2);
    }
    return std::nullopt;
  };
  for (const card::FileSummary& f : summary.files) {
    if (!f.readable) continue;
    if (f.path == "3F00/1001/0016" && f.content.size() >= 54) {
      view.name = gbk_text(View(f.content).subspan(2, 20));
      view.id_number = text_of(View(f.content).subspan(22, 32));
    } else if (f.path == "3F00/DDF1/EF06") {
      if (auto v = tlv(f, 0x08)) view.social_security_number = text_of(*v);
      if (auto v = tlv(f, 0x09); v && view.name.empty()) view.name = gbk_text(*v);
      if (auto v = tlv(f, 0x0D)) {
        auto d = DecodeBcdDate(*v);
        if (d) view.birth_date = d->ToString();
      }
    } else if (f.path == "3F00/DDF1/EF07") {
      if (auto v = tlv(f, 0x21)) view.employer_unit_code = text_of(*v);
      if (auto v = tlv(f, 0x23)) view.pooling_area = text_of(*v);
    }
  }
  return view;
}

}  // namespace medcard::issuance
