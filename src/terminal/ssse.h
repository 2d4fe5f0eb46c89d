// The social-security (SSSE) files of a medcard card as a terminal sees them
// (/work/shared/spec/card-profile.md, docs/card-commands.md "The medcard standard profile"):
//
//   ReadCardholder      EF05 card identification, EF06 personal data, EF07 medical-insurance data,
//                       parsed strictly (a missing tag, a wrong length, a bad date: an error)
//   MaskSsn             110101********1234, the default display of the social-security number
//   CardholderText/Json the cardholder for a cashier's screen or a script
//   AppendVisitRecord   EF08 with secure messaging; the PSAM computes the MAC (DELIVERY KEY of
//                       the visit_record key, then DES CRYPT), the terminal never sees a key
//   ReadVisitRecords    EF08, newest first
//   FormatHistory       the purse log (ReadTransactionLog, SFI 18) as a table or JSON
//
// Every card function here selects the SSSE DDF: select the medical application again
// (SelectMedicalApplication) before a purse command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard::terminal {

// What the SSSE files say about the cardholder. Text is UTF-8 (the card holds GBK), with the
// card's space padding removed.
struct Cardholder {
  // EF05 card identification
  std::string ssse_card_id;      // tag 01, 16
  Date ssse_issue_date;          // tag 05
  Date ssse_expiry_date;         // tag 06
  std::string ssse_card_number;  // tag 07, 9
  // EF06 personal basic data
  std::string social_security_number;  // tag 08, 18
  std::string name;                    // tag 09, GBK on the card
  char sex = '0';         // tag 0A, GB/T 2261.1: '0' unknown, '1' male, '2' female, '9' unspecified
  std::string ethnicity;  // tag 0B, GB 3304 code as 2 digits ("01" Han; one BCD byte on the card)
  std::string birthplace;  // tag 0C, GB/T 2260 division code, 6 digits (3 BCD bytes on the card)
  Date birth_date;         // tag 0D
  // EF07 medical-insurance data
  std::uint8_t insured_category = 0;  // tag 20: 01 employee, 02 retiree, 03 flexible employment
  std::string employer_unit_code;     // tag 21
  std::uint8_t insurance_status = 0;  // tag 22: 01 active, 02 suspended, 03 ended
  std::string pooling_area;           // tag 23, 6
  std::vector<std::string> designated_facilities;  // tag 24, up to 3 (absent: none)
  std::string emergency_data;                      // tag 25, GBK on the card (absent: empty)
};

// Selects the SSSE DDF and reads EF05, EF06 and EF07. Errors: not a medcard card (no SSSE DDF),
// a record missing, or card data that does not parse ("SSSE EF06 tag 0D: not a date").
Result<Cardholder> ReadCardholder(reader::Reader& card);

// The first 6 and the last 4 characters kept, the rest '*': "110101********1234". A number of
// 10 characters or fewer is masked whole.
std::string MaskSsn(std::string_view ssn);

enum class SsnDisplay { kMasked, kFull };
// "male", "employee", "active"...; unknown codes as "code 07".
std::string SexName(char sex);
std::string InsuredCategoryName(std::uint8_t category);
std::string InsuranceStatusName(std::uint8_t status);
// One "label: value" line per field, for a cashier's screen.
std::string CardholderText(const Cardholder& holder, SsnDisplay ssn = SsnDisplay::kMasked);
// One JSON object (keys in snake_case as in Cardholder; dates YYYY-MM-DD; codes with names).
std::string CardholderJson(const Cardholder& holder, SsnDisplay ssn = SsnDisplay::kMasked);

// EF08, one 38-byte record: date(4) ‖ time(3) ‖ facilityCode(10) ‖ visitType(1) ‖
// diagnosis(8, ASCII, space padded) ‖ total(4) ‖ paidByAccount(4) ‖ paidByPool(4).
struct VisitRecord {
  Date date;
  TimeOfDay time;
  std::string facility_code;  // 1..10 of 0-9 A-Z
  std::uint8_t visit_type = 0;
  std::string diagnosis;              // ICD-10 code, 1..8 printable ASCII without spaces ("J06.9")
  std::uint32_t total = 0;            // fen
  std::uint32_t paid_by_account = 0;  // fen; paid_by_account + paid_by_pool <= total
  std::uint32_t paid_by_pool = 0;     // fen

  // The 38 bytes. Errors name the field.
  Result<Bytes> Encode() const;
  static Result<VisitRecord> Parse(ByteView record);
  bool operator==(const VisitRecord&) const = default;
};
inline constexpr std::size_t kVisitRecordSize = 38;
inline constexpr std::size_t kVisitRecordCount = 10;  // EF08 keeps the newest 10

// Which visit_record key the PSAM derives: the card's key diversified by its ASN (SFI 15,
// ApplicationData::asn) from the master of this version (the card's key version; INITIALIZE
// FOR PURCHASE answers it: PurchaseResult::key_version).
struct VisitRecordKey {
  Bytes asn;  // 10
  std::uint8_t key_version = 0x01;
};

// Appends `visit` to EF08 with secure messaging (docs/card-commands.md, "Secure messaging"):
// DELIVERY KEY visit_record (PSAM), GET CHALLENGE (card), DES CRYPT MAC over the SM header and
// the record (PSAM), APPEND RECORD `04 E2 00 40 2A record ‖ MAC` (card). Nothing is
// sent before the record is valid. Errors: a PSAM without the key (6A88), a MAC the card refuses
// (6988: a PSAM of another scheme; the card counts it against its key), a locked key (6983).
// When the card's answer to APPEND RECORD is lost (card pulled), read EF08 to learn whether the
// visit is there: appending again would record it twice. DELIVERY KEY and DES CRYPT need no
// PSAM file selection.
Status AppendVisitRecord(reader::Reader& card, reader::Reader& psam, const VisitRecordKey& key,
                         const VisitRecord& visit);

// EF08, newest first (at most 10).
Result<std::vector<VisitRecord>> ReadVisitRecords(reader::Reader& card);
// A table, one visit a line, amounts in yuan.
std::string FormatVisitRecords(const std::vector<VisitRecord>& visits);

// The purse log: "load", "purchase", ... by PBOC transaction type (01 ED load, 02 EP load,
// 05 ED purchase, 06 EP purchase, ...); unknown types as "type 0x..".
std::string TransactionTypeName(std::uint8_t type);
enum class HistoryFormat { kTable, kJson };
// ReadTransactionLog's records (newest first): serial, type, wallet, amount in yuan, date and
// time, terminal number. JSON: an array of objects with amount_fen and amount ("12.50").
std::string FormatHistory(const std::vector<LogRecord>& log,
                          HistoryFormat format = HistoryFormat::kTable);

}  // namespace medcard::terminal
