// The cardholder as the issuer receives them: HOLDER.json (schema: docs/issuance.md, "Holder
// data", and docs/holder.schema.json), validated strictly, and turned into the card's holder
// data (card::HolderData) with names converted from UTF-8 to GBK.
//
// Every validation error names the field: "holder.birth_date: not a date (YYYY-MM-DD)".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "card/card.h"
#include "card/personalize.h"
#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "common/text.h"

namespace medcard::issuance {

// GB/T 2261.1 sex codes, stored on the card as the ASCII digit (SSSE EF06 tag 0A).
enum class Sex : char { kUnknown = '0', kMale = '1', kFemale = '2', kUnspecified = '9' };
// PBOC SFI 16 idType (pboc-ed-ep.md, "Files in the ED/EP application").
enum class IdType : std::uint8_t {
  kResidentId = 0x00,
  kOfficer = 0x01,
  kPassport = 0x02,
  kEntryPermit = 0x03,
  kTemporaryId = 0x04,
  kOther = 0x05,
};
// SSSE EF07 tag 20 (card-profile.md).
enum class InsuredCategory : std::uint8_t {
  kEmployee = 0x01,
  kRetiree = 0x02,
  kFlexibleEmployment = 0x03,
};
// SSSE EF07 tag 22.
enum class InsuranceStatus : std::uint8_t { kActive = 0x01, kSuspended = 0x02, kEnded = 0x03 };

// One validated HOLDER.json. Text is UTF-8 here; the card gets GBK.
struct Holder {
  std::string social_security_number;  // 17 digits + MOD 11-2 check character (0-9, X)
  std::string name;                    // UTF-8, at most 20 bytes once in GBK
  Sex sex = Sex::kUnknown;
  std::string ethnicity;   // GB 3304 code, 2 digits ("01" Han)
  std::string birthplace;  // GB/T 2260 administrative division code, 6 digits
  Date birth_date;
  std::string id_number;  // <= 32 printable ASCII; a resident ID is checked like the SSN
  IdType id_type = IdType::kResidentId;
  InsuredCategory insured_category = InsuredCategory::kEmployee;
  std::string employer_unit_code;  // 1..15 of 0-9 A-Z
  std::string pooling_area;        // 6 digits
  // Optional fields.
  InsuranceStatus insurance_status = InsuranceStatus::kActive;
  std::vector<std::string> designated_facilities;  // <= 3, each 1..10 of 0-9 A-Z
  std::string emergency_data;                      // UTF-8, at most 64 bytes once in GBK
  std::uint8_t card_type = 0x00;
  bool staff = false;
  std::optional<Date> valid_from, valid_to;  // default: the issue date, + validity years
};

// Parses and validates HOLDER.json. `today` bounds the birth date (not in the future).
// Unknown fields, duplicate fields, wrong types, lengths, non-digits, impossible dates, a bad
// check character, names GBK cannot hold: each an error naming the field.
Result<Holder> ParseHolderJson(std::string_view json_text, const Date& today);

// The fields HOLDER.json accepts, and those it requires (the schema file is checked against
// these by the tests).
const std::vector<std::string>& HolderFields();
const std::vector<std::string>& RequiredHolderFields();

// ISO 7064 MOD 11-2 check character of the first 17 digits of a Chinese resident ID number
// (GB 11643): '0'..'9' or 'X'. REQUIRES: 17 decimal digits.
char Mod112CheckCharacter(std::string_view first_17_digits);
// 17 digits, then the right check character (upper-case X only).
bool IsValidResidentIdNumber(std::string_view id);

// The GBK conversions (common/text.h), where issuance's callers have always found them.
using ::medcard::GbkToUtf8;
using ::medcard::Utf8ToGbk;

// What the issuer puts on a card besides the holder: its numbers and the issuer's settings.
struct CardIdentity {
  Bytes issuer_id;                     // 8 (SFI 15)
  Bytes asn;                           // 10
  Bytes issuer_data = Bytes(2, 0x00);  // 2 (SFI 15): "TE" on a test card
  Date issue_date;
  int validity_years = 10;
  std::uint8_t key_version = 1;
  std::string pin;  // 6 digits
};

// The card's holder data (the standard layout's input): SFI 15/16 and the SSSE files. The SSSE
// card id is the ASN's rightmost 16 hex digits, the SSSE card number its rightmost 9.
Result<card::HolderData> ToCardHolderData(const Holder& holder, const CardIdentity& identity);

// What a card says about its holder (SFI 16 and SSSE EF06/EF07), read back from `card show`'s
// summary. Fields the card does not hold (or cannot be read freely) are empty.
struct CardholderView {
  std::string name;  // UTF-8 (from SFI 16, else EF06)
  std::string social_security_number;
  std::string id_number;
  std::string birth_date;  // YYYY-MM-DD
  std::string pooling_area;
  std::string employer_unit_code;
  bool empty() const { return name.empty() && social_security_number.empty(); }
};
CardholderView ReadCardholder(const card::CardSummary& summary);

}  // namespace medcard::issuance
