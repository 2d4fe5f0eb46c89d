// Bank branch services (docs/branch.md): the card lifecycle a teller drives at the counter
// (apply, issue, activate, report loss and cancel it, capture, change validity, replace, close
// with refund) and customer service (balances, history, statements, the day-end report), on the
// host's database.
//
// Every action is one database transaction holding the card's change, the host's change
// (registration, blacklist), the branch's event row and the audit entry (audit::Append). A card
// carries a version: every change updates "... WHERE asn = ? AND version = ?", so of two tellers
// acting on the same card at once one wins and the other gets kConflict. Who may act (roles, dual
// control) is the API's check; these services enforce the business rules (kUnprocessable when
// the card's state does not allow the action).
//
//   branch::BranchServices services(connection, key_store);
//   auto card = services.ReportLoss(actor, {.asn = "0123456789ABCDEF0123",
//                                           .expected_version = 3});
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "access/service_error.h"
#include "common/bcd.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::branch {

using access::ServiceResult;

// The branch's tables ("branch" migration set). Migrate after ledger::Migrations(),
// host::Migrations() and audit::Migrations().
const store::MigrationSet& Migrations();

// Who acts: the teller's login, the senior teller or supervisor who authorised it (empty when
// the action needs none), and where from (the workstation's address). Written to the audit log.
struct Actor {
  std::string login = {};
  std::string authorised_by = {};
  std::string from = {};
  std::string branch = {};  // the teller's branch (the day-end report's); empty: the card's branch
};

// The audit log's action names for the card lifecycle.
inline constexpr char kActionApply[] = "card.apply";
inline constexpr char kActionIssue[] = "card.issue";
inline constexpr char kActionActivate[] = "card.activate";
inline constexpr char kActionReportLoss[] = "card.report_loss";
inline constexpr char kActionCancelLoss[] = "card.cancel_loss";
inline constexpr char kActionCapture[] = "card.capture";
inline constexpr char kActionChangeValidity[] = "card.change_validity";
inline constexpr char kActionReplace[] = "card.replace";
inline constexpr char kActionClose[] = "card.close";
inline constexpr char kActionRefund[] = "card.refund";

// applied → issued → active → lost (↔ active by cancelling the loss report) / captured /
// replaced / closed. Lost, captured, replaced and closed cards are on the blacklist.
enum class CardState { kApplied, kIssued, kActive, kLost, kCaptured, kReplaced, kClosed };
std::string_view CardStateName(CardState state);  // "applied", "issued", ...
std::optional<CardState> ParseCardState(std::string_view name);

// A card as the teller's screen shows it.
struct CardRecord {
  std::int64_t application_id = 0;  // the application's number; the key until the card is issued
  std::string asn;                  // 20 hex digits, upper case; empty while only applied
  std::string person_id;            // the medical account's key
  std::string holder_reference;     // the cardholder data's reference (no personal data here)
  std::string branch;               // the branch that took the application
  CardState state = CardState::kApplied;
  std::int64_t version = 0;                   // changes with every action; pass it back as expected
  std::optional<std::string> valid_to;        // "YYYY-MM-DD": the card's last valid day
  std::optional<std::string> blacklisted_at;  // "YYYY-MM-DDThh:mm:ss" local time, when on it
  std::optional<std::int64_t> replaces;       // application id of the card this one replaces
  std::optional<std::int64_t> replaced_by;    // application id of the replacement card
  std::int64_t created_at_us = 0;
  std::int64_t updated_at_us = 0;
};

struct CardApplication {
  std::string person_id = {};         // required; digits and letters, at most 32
  std::string holder_reference = {};  // required; at most 64 printable ASCII characters
  std::string branch = {};            // required; the teller's branch
};

// Registers the personalised card (`medcard issue card` wrote it) with the host.
struct CardIssue {
  std::int64_t application_id = 0;
  std::optional<std::int64_t> expected_version = {};
  std::string asn = {};               // 20 hex digits
  std::optional<Date> valid_to = {};  // the card's last valid day (its SFI 15 expiry)
};

// Activate, report loss, cancel the loss report, capture. expected_version: the version the
// teller saw (kConflict when the card changed since); none: the current one.
struct CardAction {
  std::string asn = {};
  std::optional<std::int64_t> expected_version = {};
  std::string reason = {};  // optional note for the audit log (no personal data)
};

struct ValidityChange {
  std::string asn = {};
  std::optional<std::int64_t> expected_version = {};
  Date valid_to = {};  // the new last valid day; not in the past
};

// A transfer of an old card's float (and, for a closure, the refund) waiting for the clearing
// window to pass, so late uploads of the card's offline purchases clear first.
struct ScheduledTransfer {
  std::int64_t id = 0;
  std::string asn;
  std::string person_id;
  std::string kind;                         // "replacement" or "closure"
  std::int64_t due_at_us = 0;               // not run before this time
  std::string state;                        // "scheduled" or "done"
  std::int64_t moved_ed = 0, moved_ep = 0;  // fen moved from the card's float to medical
  std::int64_t refunded = 0;                // fen refunded from the medical account (closure)
  std::string payee_reference;              // closure: the bank account the refund goes to
  std::optional<std::int64_t> done_at_us;
};

struct CardReplacement {
  std::string asn = {};  // the old card
  std::optional<std::int64_t> expected_version = {};
  std::string branch = {};  // the branch taking the new card's application
  std::string reason = {};
};
struct ReplacementResult {
  CardRecord old_card;  // replaced, blacklisted
  CardRecord new_card;  // applied: personalise it, then Issue
  ScheduledTransfer transfer;
};

struct CardClosure {
  std::string asn = {};
  std::optional<std::int64_t> expected_version = {};
  std::string payee_reference = {};  // required: where the refund is paid (bank account reference)
  std::string reason = {};
};
struct ClosureResult {
  CardRecord card;  // closed, blacklisted
  ScheduledTransfer transfer;
};

// Host-side balances in fen: the person's medical account (available) and the card's float.
struct CustomerBalances {
  std::string asn;
  std::string person_id;
  CardState state = CardState::kActive;
  std::optional<std::string> blacklisted_at;
  std::int64_t medical_account = 0;
  std::int64_t card_ed = 0, card_ep = 0;
};

// One line of a card's history: a load, a purchase, a transfer off the card.
struct HistoryLine {
  std::int64_t seq = 0;     // the ledger's posting order (the cursor)
  std::string when;         // "YYYY-MM-DDThh:mm:ss": the card's time for purchases (terminal local
                            // time), the host's local time otherwise
  std::string kind;         // the ledger cause: "load", "purchase", "suspense", "closure", ...
  std::string wallet;       // "ED" / "EP"
  std::int64_t amount = 0;  // fen; + into the card's float, − out of it
  std::int64_t balance_after = 0;  // the wallet's float after it
  std::string counterparty;        // the ledger account: "merchant/H0001", "medical/...", ...
  std::string merchant_id;         // purchases
  std::string merchant_name;       // purchases
  std::string reference;           // the transfer's cause reference
};
struct HistoryPage {
  std::vector<HistoryLine> lines;           // oldest first
  std::optional<std::int64_t> next_cursor;  // pass back for the next page; none at the end
};
inline constexpr std::size_t kMaxHistoryPage = 500;

// The day-end report: cards applied, issued, lost, replaced, closed per branch per day.
struct DayEndLine {
  std::string day;  // "YYYY-MM-DD", local time
  std::string branch;
  std::int64_t applied = 0, issued = 0, activated = 0, lost = 0, captured = 0, replaced = 0,
               closed = 0;
};

// How the services run (tests inject the clock).
struct BranchOptions {
  std::function<std::int64_t()> clock_us;  // default: the system clock
  // How long an old card's float waits before it moves (late offline uploads clear first).
  std::int64_t clearing_window_us = std::int64_t{7} * 24 * 3600 * 1'000'000;
  // Local time of the terminals and branches (blacklisting times, days): UTC+8 by default.
  std::int64_t utc_offset_minutes = 8 * 60;
};

class BranchServices {
 public:
  using Options = BranchOptions;
  // REQUIRES: connection migrated with ledger, host, audit and branch migrations.
  BranchServices(store::Connection& connection, keys::KeyStore& key_store, Options options = {});

  // ---- Card lifecycle (each writes its audit entry in the same transaction).
  ServiceResult<CardRecord> Apply(const Actor& actor, const CardApplication& application);
  ServiceResult<CardRecord> Issue(const Actor& actor, const CardIssue& issue);
  ServiceResult<CardRecord> Activate(const Actor& actor, const CardAction& action);
  // Blacklisted at once (effective now): purchases at or after this time are refused.
  ServiceResult<CardRecord> ReportLoss(const Actor& actor, const CardAction& action);
  ServiceResult<CardRecord> CancelLoss(const Actor& actor, const CardAction& action);
  ServiceResult<CardRecord> Capture(const Actor& actor, const CardAction& action);
  // Records the new last valid day in the host (the card's own SFI 15 is a card script).
  ServiceResult<CardRecord> ChangeValidity(const Actor& actor, const ValidityChange& change);
  ServiceResult<ReplacementResult> Replace(const Actor& actor, const CardReplacement& replacement);
  ServiceResult<ClosureResult> Close(const Actor& actor, const CardClosure& closure);

  // Makes every scheduled transfer due at `now_us`: the old card's float (exactly what it holds
  // then) to the person's medical account, then for a closure the medical account's available
  // balance to the bank clearing account (cause "refund"). Idempotent: ledger ids
  // "closure/<ASN>/<wallet>", "refund/<ASN>"; a done transfer is not run again. A closure's
  // refund waits while the person has another transfer still scheduled. Returns those made now.
  ServiceResult<std::vector<ScheduledTransfer>> RunDueTransfers(std::int64_t now_us);

  // ---- Customer service (read only).
  ServiceResult<CardRecord> FindCard(std::string_view asn);
  ServiceResult<CardRecord> FindApplication(std::int64_t application_id);
  ServiceResult<std::vector<CardRecord>> CardsOfPerson(std::string_view person_id);
  ServiceResult<CustomerBalances> Balances(std::string_view asn);
  // Both wallets' movements, oldest first, after `cursor` (none: from the start); limit 1..500.
  ServiceResult<HistoryPage> History(std::string_view asn, std::optional<std::int64_t> cursor,
                                     std::size_t limit);
  ServiceResult<std::vector<ScheduledTransfer>> TransfersOfCard(std::string_view asn);
  // Days from..to inclusive ("YYYY-MM-DD"), ordered by day then branch; days without any
  // action are left out.
  ServiceResult<std::vector<DayEndLine>> DayEndReport(std::string_view from_day,
                                                      std::string_view to_day);

  std::int64_t Now() const;

  // The API's Idempotency-Key record (docs/api.md "Replays"): run inside each lifecycle action's
  // transaction (apply to close) after its changes and before the commit, with the action's
  // result. An error rolls the whole action back (kInternal), so the action, its audit entry and
  // the recorded answer commit together or not at all.
  using ActionResult = std::variant<CardRecord, ReplacementResult, ClosureResult>;
  using CommitHook = std::function<Status(store::Connection&, const ActionResult&)>;
  void SetCommitHook(CommitHook hook) { commit_hook_ = std::move(hook); }

 private:
  store::Connection& connection_;
  keys::KeyStore& key_store_;
  Options options_;
  CommitHook commit_hook_;
};

}  // namespace medcard::branch
