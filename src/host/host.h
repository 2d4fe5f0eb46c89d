// The bank host's core services without the network (docs/host.md): merchants, terminals and
// cards, medical-account credits, online loads (MAC1 → MAC2 with a pending ledger transfer,
// completed by the card's TAC), clearing of uploaded offline purchases (TAC, duplicates, balance
// chain, serial gaps, blacklist; anything that fails goes to the suspense review queue) and
// CheckHost. Every operation is one database transaction; a replay returns the first answer.
// Errors carry the ISO 8583 response code the terminal protocol answers with.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso8583/iso8583.h"
#include "keys/key_store.h"
#include "ledger/ledger.h"
#include "store/store.h"

namespace medcard::host {

struct HostError : Error {
  iso8583::ResponseCode code = iso8583::ResponseCode::kSystemMalfunction;
  bool retryable = false;  // the database asked for the transaction to run again
};
template <typename T>
using HostResult = store::Expected<T, HostError>;

// The host's schema; migrate the ledger's first (the host posts through it).
const store::MigrationSet& Migrations();

struct Merchant {
  std::string id;  // e.g. "H0001"
  std::string name;
  std::string grade;  // facility grade / type, e.g. "hospital-3A", "pharmacy"
};

struct TerminalRegistration {
  Bytes terminal_number;  // 6
  std::string merchant_id;
  Bytes psam_serial;  // 10
  // Field 41 of its messages: 8 printable characters; empty = the last 8 hex digits of the
  // terminal number (docs/protocol.md 4; the gateway's registry key with the merchant id).
  std::string terminal_id = {};
};

// A registered terminal as `medcard host terminals list` shows it.
struct TerminalInfo {
  std::string terminal_number;  // hex, 12 digits
  std::string terminal_id;      // field 41
  std::string merchant_id;
  std::string merchant_name;
  std::string psam_serial;  // hex
  std::string status;       // "active" or "blocked"
};

// A blocked terminal (stolen, decommissioned): the gateway refuses all its messages with 97.
inline constexpr char kTerminalActive[] = "active";
inline constexpr char kTerminalBlocked[] = "blocked";

// A card's online PIN verification value (docs/host.md "Online PIN"): the IBM 3624 offset the
// issuer computed under a PIN verification key (keys::KeyStore::PinOffset). Never the PIN.
struct PinVerificationValue {
  std::string key_name;  // "pvk/..." (keys::kCardPinVerificationKey at issuance)
  std::uint8_t key_version = 1;
  std::string offset;  // 4..12 digits
  bool operator==(const PinVerificationValue&) const = default;
};
// Wrong online PINs in a row a card may have; at the last one the host answers 75 and keeps
// answering it until the PIN is reset at a branch (Host::ReplacePinVerificationValue).
inline constexpr int kOnlinePinTries = 3;

struct CardRegistration {
  Bytes asn;  // 10
  std::string holder_reference;
  std::string person_id;  // the medical account's key
  // The card's last valid day (the issuance log's "valid_to"): a load dated after it is refused
  // 54 (docs/protocol.md 7.6). None: not checked.
  std::optional<Date> valid_to = {};
  // For the online PIN of the balance inquiry (docs/protocol.md 9.8); none: a PIN block for
  // this card is refused 12. Registering the card again never replaces a stored one.
  std::optional<PinVerificationValue> pin_verification = {};
};

// An online load as the terminal asks for it: the card's INITIALIZE FOR LOAD answer
// (terminal::LoadInitialisation's fields).
struct LoadRequest {
  Bytes terminal_number;     // 6
  std::uint32_t trace = 0;   // the terminal's trace number: idempotency with terminal_number
  Bytes asn;                 // 10
  std::uint8_t type = 0;     // 01 ED, 02 EP
  std::uint32_t amount = 0;  // fen
  std::uint32_t old_balance = 0;
  std::uint16_t online_serial = 0;
  std::uint8_t key_version = 1;
  Bytes random;  // 4
  Bytes mac1;    // 4
  Date date;     // the date and time CREDIT FOR LOAD carries
  TimeOfDay time;
};

struct LoadAuthorisation {
  Bytes mac2;
  Date date;
  TimeOfDay time;
};

// An uploaded offline purchase (terminal::PurchaseResult's fields).
struct PurchaseUpload {
  Bytes asn;
  std::uint8_t type = 0;  // 05 ED, 06 EP
  std::uint32_t amount = 0;
  std::uint32_t balance_before = 0, balance_after = 0;
  std::uint16_t card_offline_serial = 0;
  std::uint32_t terminal_serial = 0;
  Bytes terminal_number;
  Date date;
  TimeOfDay time;
  std::uint8_t key_version = 1;
  Bytes tac;
};

enum class ClearingOutcome { kAccepted, kDuplicate, kSuspense };
std::string_view ClearingOutcomeName(ClearingOutcome outcome);

// Why a record went to suspense (docs/host.md "Suspense reasons").
inline constexpr char kReasonUnknownCard[] = "unknown card";
inline constexpr char kReasonTacInvalid[] = "TAC invalid";
inline constexpr char kReasonBalanceChain[] = "balance chain break";
inline constexpr char kReasonBlacklisted[] = "card blacklisted";
inline constexpr char kReasonBadRecord[] = "malformed record";
// An ED purchase into the card's overdraw limit (docs/host.md "ED overdraw") that cannot be
// cleared automatically: more than the limit the host knows, or out of the balance chain (a
// gap, a load in between) or by a blacklisted card. Nothing moved; the reviewer decides.
inline constexpr char kReasonOverdrawLimit[] = "overdraw beyond the card's limit";
inline constexpr char kReasonOverdrawReview[] = "overdraw purchase for review";
// Not a purchase: a load the card proved credited (its TAC) after the host had reversed it
// (docs/protocol.md 7.7). Its item's offline_serial is the load's online serial, type 01/02.
inline constexpr char kReasonLoadAfterReversal[] = "load confirmed after its reversal";

struct ClearingResult {
  ClearingOutcome outcome = ClearingOutcome::kAccepted;
  std::string reason;  // for kSuspense
};

struct SuspenseItem {
  std::int64_t id = 0;
  std::string asn;
  std::int64_t offline_serial = 0;  // a load's item (type 01/02): the load's online serial
  int type = 0;
  std::int64_t amount = 0;
  std::string reason;
  bool money_held = false;  // its amount sits in the suspense account (a blacklisted card's)
};

// A reviewer's decision on a review-queue item (docs/host.md "Suspense review").
enum class SuspenseDecision {
  kPayMerchant,       // the purchase stands: the held money goes to the merchant
  kRefundCardholder,  // the cardholder is not charged: the held money goes to the medical account
  kReject,  // nothing to pay (forged TAC, unknown card, ...): closed with the reason noted
};
std::string_view SuspenseDecisionName(SuspenseDecision decision);  // "pay-merchant", ...
std::optional<SuspenseDecision> ParseSuspenseDecision(std::string_view name);

struct SuspenseResolution {
  std::int64_t item_id = 0;
  SuspenseDecision decision = SuspenseDecision::kReject;
  std::string reviewer;  // who decided (required)
  std::string note;      // why (required for kReject)
};

// A missing upload: the card's offline serials show a transaction the host has not received.
struct SerialGap {
  std::string asn;
  std::string wallet;  // "ED" / "EP"
  std::int64_t offline_serial = 0;
  std::int64_t opened_at_us = 0;  // when clearing first saw the serial missing
};

// What reconciliation decided for a pending load.
struct LoadReconciliation {
  std::string terminal_number;
  std::uint32_t trace = 0;
  std::string state;  // "completed", "reversed", or "pending" (no evidence yet: reported again)
};

struct Balances {
  std::int64_t medical_account = 0;       // available (balance − held by pending loads)
  std::int64_t card_ed = 0, card_ep = 0;  // card float
};

struct BlacklistEntry {
  std::int64_t version = 0;
  std::string asn;
  bool added = true;         // false: removed
  std::string effective_at;  // "YYYYMMDDhhmmss"
};

// A terminal's settlement for a day: what its PSAM signed against what the host received.
struct Settlement {
  std::string terminal_number;
  std::string day;                                 // YYYYMMDD
  std::int64_t first_serial = 0, last_serial = 0;  // the PSAM's terminal transaction serials
  std::int64_t psam_count = 0, psam_amount = 0;
  std::int64_t uploaded_count = 0, uploaded_amount = 0;
  std::string status;  // "acknowledged" or "exception"
};

class Host {
 public:
  struct Options {
    std::function<std::int64_t()> clock_us;  // default: the system clock
  };
  // REQUIRES: connection migrated with ledger::Migrations() and host::Migrations().
  Host(store::Connection& connection, keys::KeyStore& key_store, Options options = {});

  HostResult<store::Done> RegisterMerchant(const Merchant& merchant);
  // Also generates the terminal's master key "tmk/<terminal number>" in the key store.
  HostResult<store::Done> RegisterTerminal(const TerminalRegistration& terminal);
  // status: kTerminalActive or kTerminalBlocked (else 30). Unknown terminal: 97. Setting the
  // status it has changes nothing.
  HostResult<store::Done> SetTerminalStatus(ByteView terminal_number, std::string_view status);
  // Every registered terminal, ordered by terminal number.
  HostResult<std::vector<TerminalInfo>> Terminals();
  HostResult<store::Done> RegisterCard(const CardRegistration& card);
  // The ED overdraw limit (fen) the issuer set on the card (UPDATE OVERDRAW LIMIT at a branch,
  // docs/host.md "ED overdraw"): purchases into it are cleared up to it. Unknown card 14; a
  // limit below 0 or above the card's 3-byte field (16777215) 13.
  HostResult<store::Done> SetOverdrawLimit(ByteView asn, std::int64_t limit);
  // Registers every card of the issuance log's `issued` card records (docs/issuance.md, "The
  // issuance log"): ASN, holder (the person id of the medical account), valid_to (the card's
  // expiry; also stored on a card registered before without one). A line a crash tore (no
  // final newline) is skipped, as the log itself does. Test cards ("test": true) only when
  // accept_test_cards. One transaction; importing the same log again changes nothing.
  struct ImportSummary {
    int cards = 0;    // issued card records registered (or already registered identically)
    int skipped = 0;  // other records: reserved, failed, PSAMs, refused test cards, torn line
  };
  HostResult<ImportSummary> ImportIssuanceLog(std::string_view jsonl, bool accept_test_cards);

  // Allocation from the SIA pooled fund to a person's medical account; idempotent on batch_id.
  HostResult<store::Done> CreditMedicalAccount(const std::string& batch_id,
                                               const std::string& person_id, std::int64_t amount);

  // Checks MAC1, reserves the amount (pending medical → card float) and answers MAC2.
  HostResult<LoadAuthorisation> AuthoriseLoad(const LoadRequest& request);
  // The card's TAC for the load: verified, then the pending transfer is completed. A load the
  // host reversed is completed again by a right TAC (the card has the money: a new transfer
  // "load-after-reversal/<terminal>/<trace>", even beyond the medical account) and queued for
  // review (kReasonLoadAfterReversal).
  HostResult<store::Done> ConfirmLoad(ByteView terminal_number, std::uint32_t trace, ByteView tac);
  // The terminal says the card was not credited: the reservation is released.
  HostResult<store::Done> ReverseLoad(ByteView terminal_number, std::uint32_t trace);

  // Decides every load still pending that was authorised before `created_before_us` from the
  // card's later load requests (docs/host.md "Online loads and their reconciliation").
  HostResult<std::vector<LoadReconciliation>> ReconcileLoads(std::int64_t created_before_us);

  HostResult<Balances> BalanceInquiry(ByteView asn);
  // The online PIN of a balance inquiry (docs/protocol.md 9.8): `encrypted_pin_block` (ISO 9564
  // format 0 for `pan`, under `pin_key`, the terminal's working PIN key) is verified inside the
  // key store against the card's PIN verification value. Unknown card 14; no value registered
  // 12; wrong PIN 55, counted per card; the kOnlinePinTries-th wrong PIN in a row and every
  // attempt after it 75; a right PIN resets the count. The count is written even when the
  // answer is a refusal.
  HostResult<store::Done> VerifyOnlinePin(ByteView asn, std::string_view pan, keys::KeyRef pin_key,
                                          ByteView encrypted_pin_block);
  // A new PIN verification value for the card, after a PIN reset at a branch (docs/branch.md):
  // stored (or replaced), and the wrong-PIN count set back to 0. Unknown card 14, a value that
  // is not a pvk/... key and 4..12 offset digits 30.
  HostResult<store::Done> ReplacePinVerificationValue(ByteView asn,
                                                      const PinVerificationValue& value);

  // One result per record, in order. The whole batch is one database transaction.
  HostResult<std::vector<ClearingResult>> ClearPurchases(const std::vector<PurchaseUpload>& batch);
  // The open items (not yet resolved), oldest first.
  HostResult<std::vector<SuspenseItem>> ReviewQueue();
  // Money held for the item moves once (pay or refund); an item without held money can only be
  // rejected. Resolving again with the same decision changes nothing; with another: 94.
  HostResult<store::Done> ResolveSuspense(const SuspenseResolution& resolution);
  HostResult<std::vector<SerialGap>> OpenGaps();

  // effective_at: "YYYYMMDDhhmmss"; purchases at or after it are refused.
  HostResult<std::int64_t> AddToBlacklist(ByteView asn, const std::string& effective_at);
  HostResult<std::int64_t> RemoveFromBlacklist(ByteView asn);
  HostResult<std::vector<BlacklistEntry>> BlacklistSince(std::int64_t version);

  // Settlement of a terminal's day: totals_answer is the PSAM's GET SAM TOTALS answer
  // (count ‖ amount ‖ first ‖ last ‖ MAC) for `challenge`. When the purchases uploaded with
  // terminal serials first..last match count and amount, returns the CLEAR SAM TOTALS MAC;
  // otherwise records a settlement exception and fails with kReconciliationError (95).
  HostResult<Bytes> Settle(ByteView terminal_number, const Date& day, ByteView challenge,
                           ByteView totals_answer);
  // The terminal gateway's own checks disagreed (docs/protocol.md 7.10: field 48, or the PSAM
  // totals against the batch's uploads): after the PSAM's MAC is verified, the settlement is
  // recorded as an exception as Settle records its own mismatch. The PSAM keeps its totals.
  HostResult<store::Done> RecordSettlementException(ByteView terminal_number, const Date& day,
                                                    ByteView challenge, ByteView totals_answer);
  HostResult<std::vector<Settlement>> Settlements(ByteView terminal_number);

  // Per merchant and day (the purchases' date): header
  // "merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen", then one line per
  // merchant and day, ordered. Duplicates are not counted (they were never a new transaction).
  HostResult<std::string> MerchantSettlementCsv();

  // The ledger's invariants plus the host's: every accepted purchase posted exactly once.
  HostResult<std::vector<std::string>> CheckHost();

 private:
  HostResult<store::Done> InsertCard(const CardRegistration& card);
  HostResult<store::Done> InsertPinVerificationValue(
      const std::string& asn, const std::optional<PinVerificationValue>& value);
  // Settle and RecordSettlementException: `exception` forces the exception status.
  HostResult<Bytes> SettleOrRecord(ByteView terminal_number, const Date& day, ByteView challenge,
                                   ByteView totals_answer, bool exception);
  HostResult<store::Done> InTransaction(const std::function<HostResult<store::Done>()>& body);
  // Loads (inside the caller's transaction). A load row with its card's context.
  HostResult<store::Row> ReadLoad(const std::string& terminal, std::uint32_t trace);
  // A load's TAC verified (with the overdraw the card repaid), then CompleteCreditedLoad.
  HostResult<store::Done> ConfirmCreditedLoad(const store::Row& load, ByteView tac);
  // A load the card proves credited (its TAC, or its later online serial), pending or reversed:
  // completed with the card's new state, the purchases in transit held, the overdraw repaid.
  HostResult<store::Done> CompleteCreditedLoad(const store::Row& load, std::int64_t repaid);
  // A pending load's reservation released and the load marked reversed.
  HostResult<store::Done> ReleaseLoad(const std::string& terminal, std::uint32_t trace);
  // A pending load decided by the card's later load requests: "completed", "reversed", or
  // "pending" when there is none yet (docs/host.md "Online loads and their reconciliation").
  HostResult<std::string> DecidePendingLoad(const std::string& terminal, std::uint32_t trace);
  // One host_blacklist entry (inside the caller's transaction); its number, never given before.
  HostResult<std::int64_t> InsertBlacklistEntry(const std::string& asn, const std::string& action,
                                                const std::string& effective_at);
  std::int64_t Now() const;

  store::Connection& connection_;
  keys::KeyStore& key_store_;
  ledger::Ledger ledger_;
  Options options_;
};

// Host::CheckHost on a database alone (no key store needed): what `medcard host check` runs.
HostResult<std::vector<std::string>> CheckHostDatabase(store::Connection& connection);

}  // namespace medcard::host
