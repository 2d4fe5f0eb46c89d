// The hospital and pharmacy POS terminal (issue 5): offline purchases with a PSAM, the SQLite
// journal that makes them durable, torn-purchase recovery, receipts, online loads and day end
// through terminal::HostLink. The card and PSAM commands are terminal/purse.h's; this layer adds
// the terminal's checks, the journal and the host's batch.
//
//   auto journal = pos::Journal::Open("/var/lib/medcard/pos.db");
//   pos::Terminal terminal(identity, card_reader, psam_reader, **journal, &link);
//   terminal.RecoverPending();                                  // at start-up
//   auto receipt = terminal.Purchase({terminal::Wallet::kEd, 1250, "123456"});
//   if (!receipt.ok()) exit(pos::ExitCode(receipt.error().kind));
//   std::cout << receipt->Text();
//   terminal.DayEnd();
//
// Every method is synchronous; one Terminal per process, used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "pos/journal.h"
#include "reader/reader.h"
#include "store/store.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"
#include "terminal/ssse.h"

namespace medcard::pos {

// ---- Errors -------------------------------------------------------------------------------------
// What went wrong, for the CLI's exit codes and the cashier's message. In every case but
// kTornPurchase no money moved and the journal is consistent. The order is the exit-code
// contract (ExitCode): new kinds go at the end.
enum class ErrorKind {
  kBadAmount,            // zero, or above the terminal's purchase/load limit
  kNoCard,               // no card in the reader, or it was pulled before anything happened
  kNotMedcardCard,       // no medical application (6A82), or not a card at all
  kExpired,              // past the application's expiry date (or before its start date)
  kApplicationBlocked,   // 6A81 / 9303, or the card is blocked
  kBlacklisted,          // on the terminal's local blacklist
  kPinRequired,          // ED without a PIN
  kWrongPin,             // the message says the tries left
  kPinBlocked,           // no tries left
  kInsufficientBalance,  // balance (+ the ED's overdraw still available) below the amount
  kDeclinedByCard,       // any other refusal by the card
  kWrongPsam,            // PSAM missing, not answering, or not this terminal's
  kReaderError,          // the reader failed mid-transaction
  kTornPurchase,         // the card went away after DEBIT was sent: journalled as pending;
                         // RecoverPending (or the card's next insertion) settles it
  kHostUnreachable,      // no usable answer from the host after the retries
  kHostDeclined,         // the host answered with a refusal (the message has its code)
  kConfigError,          // identity, keys or journal unusable
  kJournalError,         // the journal could not be written: nothing was done after that
};
const char* ErrorKindName(ErrorKind kind);  // "insufficient_balance", ... (for --json)
// The documented exit code of `medcard pos` for a failure of this kind (2..): docs/pos.md.
int ExitCode(ErrorKind kind);

struct Failure : Error {
  ErrorKind kind = ErrorKind::kDeclinedByCard;
};
Failure MakeFailure(ErrorKind kind, std::string message);

template <typename T>
using PosResult = store::Expected<T, Failure>;

// ---- Configuration ------------------------------------------------------------------------------
struct TerminalIdentity {
  std::string merchant_id;    // field 42, 15 characters
  std::string terminal_id;    // field 41, 8 characters
  std::string merchant_name;  // printed on receipts until the host's parameters name it
  Bytes terminal_number;      // 6, the PSAM's (EF 16): checked against the PSAM in the slot
  std::string facility_code;  // the hospital's code, for visit records
};

struct DateTime {
  Date date;
  TimeOfDay time;
};
using Clock = std::function<DateTime()>;
Clock SystemClock();  // the local wall clock (Today(), Now())

// ---- Purchase -----------------------------------------------------------------------------------
struct PurchaseOrder {
  terminal::Wallet wallet = terminal::Wallet::kEd;
  std::uint32_t amount = 0;        // fen
  std::optional<std::string> pin;  // required for ED, ignored for EP
  // A hospital terminal's visit (SSSE EF08), appended with secure messaging once the card has
  // paid; its facility code defaults to the identity's.
  std::optional<terminal::VisitRecord> visit = std::nullopt;
};

struct Receipt {
  std::string merchant_name, merchant_id, terminal_id;
  std::string masked_card_number;  // the ASN's first 6 and last 4 digits, the rest '*'
  terminal::Wallet wallet = terminal::Wallet::kEd;
  std::uint32_t amount = 0;         // fen
  std::uint32_t balance_after = 0;  // fen
  std::uint16_t card_offline_serial = 0;
  std::uint32_t terminal_serial = 0;  // the PSAM's
  Bytes terminal_number;
  Bytes tac;
  Date date;
  TimeOfDay time;
  std::int64_t journal_id = 0;
  bool recovered = false;  // completed by torn-purchase recovery
  // With PurchaseOrder::visit: whether EF08 holds it; the purchase stands either way.
  bool visit_recorded = false;
  std::optional<std::string> visit_error;

  std::string Text() const;    // the printed slip, one field a line (32 columns but the name)
  std::string ToJson() const;  // one JSON object, amounts in fen as integers
};

// ---- Recovery -----------------------------------------------------------------------------------
enum class RecoveryOutcome {
  kCompleted,     // the card was debited: MAC2/TAC from GET TRANSACTION PROVE, PSAM credited
  kVoided,        // the card was not debited. The PSAM's INIT_SAM session stays uncompleted:
                  // its terminal serial is used up but never enters the totals, so the PSAM's
                  // count and amount still equal the uploaded purchases (protocol.md 7.10)
  kStillPending,  // the card is not in the reader (another card, or none): kept for later
};
struct RecoveredPurchase {
  PurchaseRecord record;  // as journalled after the recovery
  RecoveryOutcome outcome = RecoveryOutcome::kStillPending;
};
struct RecoveryReport {
  std::vector<RecoveredPurchase> purchases;
  int psam_completions = 0;  // completed purchases whose CREDIT_SAM was (re)sent to the PSAM
};

// ---- Day end ------------------------------------------------------------------------------------
struct DayEndReport {
  std::uint16_t key_version = 0;        // working keys after sign-on
  int loads_confirmed = 0;              // unconfirmed loads answered now
  std::size_t purchases_uploaded = 0;   // acknowledged by the host in this run
  std::uint32_t settled_batch = 0;      // 0: nothing settled (an empty batch is settled too)
  iso8583::BatchTotals totals;          // what was settled
  bool psam_cleared = false;            // CLEAR SAM TOTALS accepted
  std::uint32_t blacklist_version = 0;  // held after the download
  std::uint32_t parameters_version = 0;
  std::size_t still_pending = 0;  // torn purchases still waiting for their card
};

struct Balances {
  std::uint32_t ed = 0, ep = 0;
};

// ---- The terminal -------------------------------------------------------------------------------
class Terminal {
 public:
  // link may be null: offline (Purchase, RecoverPending and the card reads work; LoadOnline and
  // DayEnd answer kHostUnreachable). The terminal connects both readers itself before it uses
  // them, so a card or PSAM inserted since is picked up; an empty card reader answers kNoCard.
  Terminal(TerminalIdentity identity, reader::Reader& card, reader::Reader& psam, Journal& journal,
           terminal::HostLink* link, Clock clock = SystemClock());

  // Issue 5's purchase: select (the FCI's 9F0C carries SFI 15), expiry, block, blacklist, PIN
  // (ED), INITIALIZE FOR PURCHASE, balance (+ overdraw for ED), INIT_SAM_FOR_PURCHASE, journal
  // PENDING (durable), DEBIT FOR PURCHASE, journal COMPLETED (durable), CREDIT_SAM_FOR_PURCHASE,
  // receipt. A pending purchase of the same card is recovered first.
  PosResult<Receipt> Purchase(const PurchaseOrder& order);

  // Start-up / card inserted: re-sends CREDIT_SAM for completed purchases the PSAM did not take,
  // and settles every pending purchase of the card in the reader (if any).
  PosResult<RecoveryReport> RecoverPending();

  // Sign-on, confirm unconfirmed loads, finish a settlement whose CLEAR SAM TOTALS did not run,
  // upload every completed purchase the host has not acknowledged (resuming a partial upload),
  // settlement challenge, GET SAM TOTALS, Settle, CLEAR SAM TOTALS, then blacklist and
  // parameter downloads into the journal.
  PosResult<DayEndReport> DayEnd();

  // An online load through the host (protocol.md 7.6/7.7). The load is journalled once the card
  // was credited; a confirmation that went unanswered is sent again by DayEnd until answered.
  PosResult<terminal::LoadResult> LoadOnline(terminal::Wallet wallet, std::uint32_t amount,
                                             std::optional<std::string> pin);

  // Reads for the cashier: both balances (the ED's needs the PIN: without one, ed is 0 and only
  // the EP is read) and the last-10 log.
  PosResult<Balances> ReadBalances(std::optional<std::string> pin);
  PosResult<std::vector<terminal::LogRecord>> ReadHistory();

  const TerminalIdentity& identity() const { return identity_; }

 private:
  struct Selected;
  PosResult<Selected> SelectCard();
  PosResult<bool> CheckPsam();
  PosResult<RecoveredPurchase> RecoverOne(const PurchaseRecord& record);
  PosResult<int> CompletePsamSide();
  PosResult<bool> ClearSettledTotals();
  std::string MerchantName() const;

  TerminalIdentity identity_;
  reader::Reader& card_;
  reader::Reader& psam_;
  Journal& journal_;
  terminal::HostLink* link_;
  Clock clock_;
};

// The ASN as 20 digits with all but the first 6 and last 4 replaced by '*'.
std::string MaskCardNumber(ByteView asn);

}  // namespace medcard::pos
