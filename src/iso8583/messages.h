// medcard's transaction set over ISO 8583 (docs/protocol.md "Messages"): which MTI, processing
// code (field 3) and network management code (60.3) make each transaction, which fields its
// request and response carry, the layouts medcard puts into fields 48, 53, 54, 60, 61 and 62, and
// the validators the host runs on every request and the terminal on every response.
//
// Every layout has Parse (strict: exact length, valid BCD, known values) and Encode, which
// returns an error instead of bytes that Parse would refuse.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

// ---- The catalogue --------------------------------------------------------------------------
enum class Transaction : std::uint8_t {
  kSignOn,               // 0800/0810, 60.3 003 (PIN + MAC keys) or 004 (PIN + MAC + data keys)
  kSignOff,              // 0820/0830, 60.3 002
  kEchoTest,             // 0820/0830, 60.3 301
  kParameterDownload,    // 0800/0810, 60.3 360
  kBlacklistDownload,    // 0800/0810, 60.3 370
  kSettlementChallenge,  // 0800/0810, 60.3 380
  kBalanceInquiry,       // 0200/0210, processing code 310000
  kLoad,                 // 0200/0210, processing code 600001 (ED) or 600002 (EP)
  kLoadConfirmation,     // 0220/0230, as the load
  kLoadReversal,         // 0400/0410, as the load
  kBatchUpload,          // 0320/0330
  kSettlement,           // 0500/0510
};

enum class Presence : std::uint8_t {
  kMandatory,
  kOptional,
  kEcho,          // response: equal to the request's; mandatory when 39 = 00, else optional
  kIfApproved,    // response: present if and only if 39 = 00
  kWhenApproved,  // response: mandatory when 39 = 00, optional otherwise (the MAC)
  kWithPin,       // request: present if and only if field 52 (PIN block) is present
};
struct FieldRule {
  int field = 0;
  Presence presence = Presence::kMandatory;
};

// The key field 64 is computed with: a sign-on pair under the terminal master key (the terminal
// has no working key yet), everything else under the working MAC key of the last sign-on.
enum class MacKeyUse : std::uint8_t { kTerminalMasterKey, kWorkingMacKey };

struct TransactionSpec {
  Transaction transaction{};
  std::string_view name;
  Mti request_mti = 0;
  std::array<std::string_view, 2> processing_codes{};  // field 3; empty strings: no field 3
  std::uint8_t message_type = 0;                       // 60.1
  std::array<std::uint16_t, 2> network_codes{};        // 60.3 (0 = "000")
  MacKeyUse mac_key = MacKeyUse::kWorkingMacKey;
  std::span<const FieldRule> request_fields;
  std::span<const FieldRule> response_fields;

  Mti response_mti() const { return ResponseMti(request_mti); }
};

std::span<const TransactionSpec> Catalogue();
const TransactionSpec& SpecOf(Transaction transaction);

// The entry a request or response belongs to, by its MTI, field 3 and 60.3. On error *code is
// 12 (no such transaction; also sign-on with single-length keys, 60.3 = 001) or 30 (field 3 or
// 60 missing or malformed).
Result<const TransactionSpec*> Identify(const Message& message, ResponseCode* code = nullptr);

// Everything the host checks before looking at any account: the entry (Identify), every field
// the entry requires present, no field it does not list, and each field's value and layout.
// The error names the missing, extra or bad field; *code (when given) is the response code:
// 12 unknown transaction, 13 a zero or oversized amount, 30 anything else.
Status ValidateRequest(const Message& request, ResponseCode* code = nullptr);
// The terminal's check of an answer. With the request, also that the response belongs to it and
// echoes what it must. A refusal (39 ≠ 00) may omit echoed fields but never alter them.
Status ValidateResponse(const Message& response, const Message* request = nullptr);

// The host's answer skeleton to a request that passed ValidateRequest: the response MTI, the
// fields the response echoes, and 39 = code. The caller adds the rest and the MAC.
Result<Message> StartResponse(const Message& request, ResponseCode code);
// An answer to a request that did not parse or validate (a ParseFailure's partial, or the
// request): the response MTI, 39 = code, and fields 3, 4, 11, 25, 41, 42, 48, 49 and 60 when they
// were read and the response may echo them (when the transaction is identified, exactly the
// fields its answer echoes). No MAC: the caller adds one when it can (docs/protocol.md 9.6).
// Error when the MTI is not a catalogue request (such a frame is not answered: log it and close
// the connection).
Result<Message> Refusal(const Message& request, ResponseCode code);

// ---- Field layouts (docs/protocol.md "Field layouts") -----------------------------------------
inline constexpr std::size_t kAsnSize = 10;
inline constexpr std::size_t kTerminalNumberSize = 6;
inline constexpr std::string_view kCurrencyCny = "156";

// 53, 16 digits: PIN block flag ('1' ISO 9564 format 0 in 52, '0' no PIN) ‖ algorithm '6'
// (double-length 3DES) ‖ '0' (no track encryption) ‖ working key version (3 digits, 001..999) ‖
// ten '0'.
struct SecurityControl {
  bool pin_block = false;
  std::uint16_t key_version = 0;  // 1..999
  Result<std::string> Encode() const;
  static Result<SecurityControl> Parse(std::string_view digits);
  bool operator==(const SecurityControl&) const = default;
};

// 60, 11 digits: 60.1 message type (2) ‖ 60.2 batch number (6, 000001..999999) ‖ 60.3 network
// management information code (3).
struct Field60 {
  std::uint8_t message_type = 0;
  std::uint32_t batch_number = 0;
  std::uint16_t network_code = 0;
  Result<std::string> Encode() const;
  static Result<Field60> Parse(std::string_view digits);
  bool operator==(const Field60&) const = default;
};
inline constexpr std::uint8_t kMessageTypeNetwork = 0;  // 60.1 of 0800/0820
inline constexpr std::uint8_t kMessageTypeBalance = 1;  // 60.1 of the balance inquiry
inline constexpr std::uint8_t kMessageTypeLoad = 10;    // load, confirmation, reversal
inline constexpr std::uint8_t kMessageTypeBatchUpload = 20;
inline constexpr std::uint8_t kMessageTypeSettlement = 30;
inline constexpr std::uint16_t kNetworkSignOnSingle = 1;  // refused: medcard keys are 16 bytes
inline constexpr std::uint16_t kNetworkSignOff = 2;
inline constexpr std::uint16_t kNetworkSignOn = 3;
inline constexpr std::uint16_t kNetworkSignOnWithDataKey = 4;
inline constexpr std::uint16_t kNetworkEchoTest = 301;
inline constexpr std::uint16_t kNetworkParameterDownload = 360;
inline constexpr std::uint16_t kNetworkBlacklistDownload = 370;
inline constexpr std::uint16_t kNetworkSettlementChallenge = 380;

// 61, 16 digits: original batch number (6) ‖ original trace number (6) ‖ original date MMDD (4,
// the host date of the original's answer, field 13; 0000 when no answer was received).
struct OriginalTransaction {
  std::uint32_t batch_number = 0;  // 1..999999
  std::uint32_t trace = 0;         // 1..999999
  int month = 0, day = 0;          // both 0, or a month-day
  Result<std::string> Encode() const;
  static Result<OriginalTransaction> Parse(std::string_view digits);
  bool operator==(const OriginalTransaction&) const = default;
};

// 48 of the settlement, 36 digits: purchase count (6) ‖ purchase amount (12, fen) ‖ load count
// (6) ‖ load amount (12, fen) — the terminal's totals for the batch.
struct BatchTotals {
  std::uint32_t purchase_count = 0;
  std::uint64_t purchase_amount = 0;
  std::uint32_t load_count = 0;
  std::uint64_t load_amount = 0;
  Result<std::string> Encode() const;
  static Result<BatchTotals> Parse(std::string_view digits);
  bool operator==(const BatchTotals&) const = default;
};

// 54 of the balance answer, 20 characters (ISO 8583 additional amount): account type "00" ‖
// amount type "02" (available balance) ‖ currency "156" ‖ sign 'C' or 'D' ‖ amount (12, fen).
struct AvailableBalance {
  bool negative = false;  // 'D'
  std::uint64_t amount = 0;
  Result<std::string> Encode() const;
  static Result<AvailableBalance> Parse(std::string_view text);
  bool operator==(const AvailableBalance&) const = default;
};

// 62 layouts, all binary, integers big-endian, dates and times BCD.

// Sign-on request (7): terminal number (6, the PSAM's) ‖ TMK version (1, ≥ 1).
struct SignOnRequest {
  Bytes terminal_number;
  std::uint8_t tmk_version = 0;
  Result<Bytes> Encode() const;
  static Result<SignOnRequest> Parse(ByteView bytes);
  bool operator==(const SignOnRequest&) const = default;
};

// A working key as it travels: 3DES-ECB(TMK, key) (16) ‖ KCV (3).
struct KeyCryptogram {
  Bytes cryptogram;
  Bytes kcv;
  bool operator==(const KeyCryptogram&) const = default;
};
// Sign-on answer (38 for 003, 57 for 004): PIN key ‖ MAC key [‖ data key].
struct WorkingKeys {
  KeyCryptogram pin_key;
  KeyCryptogram mac_key;
  std::optional<KeyCryptogram> data_key;
  Result<Bytes> Encode() const;
  static Result<WorkingKeys> Parse(ByteView bytes);
  bool operator==(const WorkingKeys&) const = default;
};

// Online load request (32): ASN (10) ‖ terminal number (6, as sent in INITIALIZE FOR LOAD) ‖ the
// card's INITIALIZE FOR LOAD answer (16): balance (4) ‖ online serial (2) ‖ key version (1) ‖
// algorithm id (1) ‖ random (4) ‖ MAC1 (4) (pboc-ed-ep.md, "Card commands").
struct LoadRequest {
  Bytes asn;
  Bytes terminal_number;
  std::uint32_t balance = 0;
  std::uint16_t online_serial = 0;
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  Bytes random;
  Bytes mac1;
  Result<Bytes> Encode() const;
  static Result<LoadRequest> Parse(ByteView bytes);
  // From the card's 16-byte answer as the terminal received it.
  static Result<LoadRequest> FromInitializeForLoad(ByteView asn, ByteView terminal_number,
                                                   ByteView answer);
  bool operator==(const LoadRequest&) const = default;
};

// Approved load answer (11): MAC2 (4) ‖ host date YYYYMMDD (4) ‖ host time hhmmss (3) — the date
// and time MAC2 covers, which the terminal passes to CREDIT FOR LOAD.
struct LoadAuthorisation {
  Bytes mac2;
  Date date;
  TimeOfDay time;
  Result<Bytes> Encode() const;
  static Result<LoadAuthorisation> Parse(ByteView bytes);
  bool operator==(const LoadAuthorisation&) const = default;
};

// Load confirmation (14): ASN (10) ‖ TAC (4) from CREDIT FOR LOAD.
struct LoadConfirmation {
  Bytes asn;
  Bytes tac;
  Result<Bytes> Encode() const;
  static Result<LoadConfirmation> Parse(ByteView bytes);
  bool operator==(const LoadConfirmation&) const = default;
};

// Balance inquiry and load reversal (10): the card's ASN.
struct CardReference {
  Bytes asn;
  Result<Bytes> Encode() const;
  static Result<CardReference> Parse(ByteView bytes);
  bool operator==(const CardReference&) const = default;
};

// One offline purchase of a batch upload (51 bytes): ASN (10) ‖ type (1: 05 ED, 06 EP, 09
// composite) ‖ amount (4) ‖ card offline serial (2) ‖ terminal number (6) ‖ terminal transaction
// serial (4, the PSAM's) ‖ date (4) ‖ time (3) ‖ card key version (1) ‖ TAC (4) ‖ MAC2 (4) ‖
// balance before (4) ‖ balance after (4).
struct OfflinePurchase {
  Bytes asn;
  std::uint8_t type = 0;
  std::uint32_t amount = 0;
  std::uint16_t card_offline_serial = 0;
  Bytes terminal_number;
  std::uint32_t terminal_serial = 0;
  Date date;
  TimeOfDay time;
  std::uint8_t key_version = 0;
  Bytes tac;
  Bytes mac2;
  std::uint32_t balance_before = 0;
  std::uint32_t balance_after = 0;
  bool operator==(const OfflinePurchase&) const = default;
};
inline constexpr std::size_t kOfflinePurchaseSize = 51;
inline constexpr std::size_t kMaxPurchasesPerUpload = 16;
// Batch upload (1 + 51·n): count n (1..16) ‖ n records.
struct PurchaseBatch {
  std::vector<OfflinePurchase> purchases;
  Result<Bytes> Encode() const;
  static Result<PurchaseBatch> Parse(ByteView bytes);
  bool operator==(const PurchaseBatch&) const = default;
};

// Settlement request (41): PSAM serial (10) ‖ settlement key version (1) ‖ host challenge (8,
// from the settlement challenge) ‖ the PSAM's GET SAM TOTALS answer (22): count (4) ‖ amount (6)
// ‖ first serial (4) ‖ last serial (4) ‖ MAC (4) (psam-commands.md, "Settlement totals").
struct SamTotals {
  Bytes psam_serial;
  std::uint8_t key_version = 0;
  Bytes challenge;
  std::uint32_t count = 0;
  std::uint64_t amount = 0;  // 6 bytes
  std::uint32_t first_serial = 0;
  std::uint32_t last_serial = 0;
  Bytes mac;
  // The 22 bytes GET SAM TOTALS answered (what keys::VerifySamTotals takes).
  Bytes TotalsAnswer() const;
  Result<Bytes> Encode() const;
  static Result<SamTotals> Parse(ByteView bytes);
  bool operator==(const SamTotals&) const = default;
};

// Settlement answer when approved (4): the CLEAR SAM TOTALS MAC.
// Settlement challenge answer (8): the host challenge.
// Both are plain bytes of a fixed length; these check it.
Result<Bytes> ParseClearTotalsMac(ByteView bytes);
Result<Bytes> ParseSettlementChallenge(ByteView bytes);

// Parameter and blacklist download request (10): version held (4, 0 = none) ‖ target version (4,
// 0 in the first request = the host's latest; later parts repeat the first answer's version) ‖
// part number (2, from 0).
struct DownloadRequest {
  std::uint32_t from_version = 0;
  std::uint32_t target_version = 0;
  std::uint16_t part = 0;
  Result<Bytes> Encode() const;
  static Result<DownloadRequest> Parse(ByteView bytes);
  bool operator==(const DownloadRequest&) const = default;
};

inline constexpr std::uint8_t kDownloadMore = 0x01;  // more parts follow
inline constexpr std::uint8_t kDownloadFull = 0x02;  // blacklist: the whole list, replace

enum class BlacklistAction : std::uint8_t { kAdd = 0x01, kRemove = 0x02 };
struct BlacklistEntry {
  Bytes asn;
  BlacklistAction action = BlacklistAction::kAdd;
  bool operator==(const BlacklistEntry&) const = default;
};
inline constexpr std::size_t kMaxBlacklistEntriesPerPart = 90;
// Blacklist download answer (8 + 11·n): version (4) ‖ flags (1) ‖ part (2) ‖ count n (1, 0..90) ‖
// n × (ASN (10) ‖ action (1)). A full list holds only additions.
struct BlacklistPart {
  std::uint32_t version = 0;
  bool more = false;
  bool full = false;
  std::uint16_t part = 0;
  std::vector<BlacklistEntry> entries;
  Result<Bytes> Encode() const;
  static Result<BlacklistPart> Parse(ByteView bytes);
  bool operator==(const BlacklistPart&) const = default;
};

// Terminal parameters (tag ‖ length ‖ value records, each tag at most once per part).
struct Parameters {
  std::optional<std::string> merchant_name;        // 01: UTF-8, 1..60 bytes, no control chars
  std::optional<std::uint32_t> purchase_limit;     // 02: fen, per purchase
  std::optional<std::uint32_t> load_limit;         // 03: fen, per load
  std::optional<std::uint32_t> ep_balance_limit;   // 04: fen, EP balance ceiling
  std::vector<std::uint8_t> card_key_versions;     // 05: 1..8 versions accepted, each ≥ 1
  std::optional<Date> clock_date;                  // 06: host clock YYYYMMDD ‖ hhmmss (7)
  std::optional<TimeOfDay> clock_time;             //     (06 sets both)
  std::optional<std::uint16_t> upload_threshold;   // 07: stored purchases that trigger upload
  std::optional<std::uint32_t> blacklist_version;  // 08: the host's current blacklist version
  bool operator==(const Parameters&) const = default;
};
// The union of all parts of one download must hold every tag: error naming the first missing.
Status CheckComplete(const Parameters& parameters);
// Merges a later part into the parameters gathered so far; error when a tag repeats.
Status Merge(Parameters& into, const Parameters& part);

// Parameter download answer (7 + records): version (4) ‖ flags (1, kDownloadMore only) ‖
// part (2) ‖ records.
struct ParameterPart {
  std::uint32_t version = 0;
  bool more = false;
  std::uint16_t part = 0;
  Parameters parameters;
  Result<Bytes> Encode() const;
  static Result<ParameterPart> Parse(ByteView bytes);
  bool operator==(const ParameterPart&) const = default;
};

// The PAN medcard uses for field 2 and the format 0 PIN block: the ASN's 20 digits without
// leading zeros, when every nibble is decimal and 8..19 digits remain; nullopt otherwise (that
// card has no PAN and is never asked for an online PIN).
std::optional<std::string> PanFromAsn(ByteView asn);

}  // namespace medcard::iso8583
