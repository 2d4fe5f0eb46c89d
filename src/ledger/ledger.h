// The scheme's double-entry ledger in integer fen (docs/ledger.md; DESIGN.md "Money and the
// ledger").
//
// Every movement of money is a Transfer: one debit account, one credit account, an amount > 0, a
// cause, and a client-chosen id that makes it idempotent — TigerBeetle's model. Post() writes the
// transfer, its two posting legs and both account balances in ONE database transaction; a retry
// with the same id and content returns the first outcome (kExists) and posts nothing; the same id
// with other content is a kConflict error. A pending transfer (online load) holds its amount on
// the debit account until Complete() posts it or Void() releases it.
//
//   ledger::Ledger ledger(connection);  // after store::Migrate(connection, ledger::Migrations())
//   auto r = ledger.Post({.id = "purchase/" + asn + "/0007/06",
//                         .debit = AccountId::CardFloat(asn, Wallet::kEp),
//                         .credit = AccountId::Merchant("H0001"),
//                         .amount = 1250,
//                         .cause = {"purchase", asn + "/0007/06", R"({"terminal":"..."})"}});
//
// Sign convention: an account's balance is its credits minus its debits. Money arrives in an
// account by a credit; the bank clearing account (money from outside the scheme) runs negative;
// the sum of all balances is always zero.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace medcard::ledger {

// ---------------------------------------------------------------------------------------------
// Accounts.

enum class AccountKind {
  kSiaFund,       // the SIA's pooled fund (one)
  kMedical,       // a person's medical account at the bank; key = person id
  kCardFloat,     // money on a card's wallet (the shadow balance); key = "<ASN>/<ED|EP>"
  kMerchant,      // a facility's settlement account; key = merchant id
  kSuspense,      // what cannot be cleared yet: unverifiable TAC, unknown card, counter gap (one)
  kBankClearing,  // the bank's clearing account: money entering or leaving the scheme (one)
  // What a card's holder owes the bank for ED purchases into the card's overdraw limit (the
  // bank's credit to the cardholder, a receivable: its balance is ≤ 0); key = ASN. Repaid by
  // the card's next loads (docs/host.md "ED overdraw").
  kOverdraft,
};
std::string_view AccountKindName(AccountKind kind);  // "sia_fund", "medical", "card_float", ...

enum class Wallet { kEd, kEp };              // PBOC electronic passbook / purse
std::string_view WalletName(Wallet wallet);  // "ED", "EP"

// An account is named by kind + key; its database row is created on first use.
struct AccountId {
  AccountKind kind = AccountKind::kSuspense;
  std::string key = {};  // empty for the scheme's single accounts

  static AccountId SiaFund() { return {AccountKind::kSiaFund, ""}; }
  static AccountId Medical(std::string person_id) {
    return {AccountKind::kMedical, std::move(person_id)};
  }
  // asn: the card's application serial number, 20 hex digits (kept upper case).
  static AccountId CardFloat(std::string_view asn, Wallet wallet);
  static AccountId Merchant(std::string merchant_id) {
    return {AccountKind::kMerchant, std::move(merchant_id)};
  }
  static AccountId Suspense() { return {AccountKind::kSuspense, ""}; }
  static AccountId BankClearing() { return {AccountKind::kBankClearing, ""}; }
  static AccountId Overdraft(std::string_view asn);

  // "sia_fund", "medical/310101199001011234", "card_float/0123456789ABCDEF0123/EP", ...
  std::string ToString() const;
  static std::optional<AccountId> Parse(std::string_view text);
  friend bool operator==(const AccountId&, const AccountId&) = default;
};
// Empty when the id is well-formed, else what is wrong with it.
std::string ValidateAccountId(const AccountId& id);

struct Account {
  AccountId id;
  std::int64_t balance = 0;          // credits posted − debits posted, fen
  std::int64_t debits_pending = 0;   // held by pending transfers debiting this account
  std::int64_t credits_pending = 0;  // promised by pending transfers crediting it
  std::int64_t available() const { return balance - debits_pending; }
};

// ---------------------------------------------------------------------------------------------
// Transfers.

// Cause kinds the scheme uses. A card transaction (purchase, load) is cleared at most once per
// reference: CheckInvariants reports a second transfer for the same card transaction.
namespace cause {
inline constexpr char kAllocation[] = "allocation";  // SIA fund → medical account
inline constexpr char kLoad[] = "load";              // medical account → card float (online)
inline constexpr char kPurchase[] = "purchase";      // card float → merchant (offline, cleared)
inline constexpr char kSuspense[] = "suspense";      // card float → suspense (cannot clear yet)
inline constexpr char kClosure[] = "closure";        // card float → medical (card replaced)
inline constexpr char kSettlement[] = "settlement";  // merchant → bank clearing (paid out)
inline constexpr char kContribution[] = "contribution";  // bank clearing → SIA fund (premiums)
inline constexpr char kOverdraft[] = "overdraft";  // overdraft → merchant (ED overdraw purchase)
inline constexpr char kRefund[] =
    "refund";  // medical → bank clearing (closed card's account paid out)
}  // namespace cause
bool IsCardTransaction(std::string_view cause_kind);  // purchase, load

// Why money moved: kind, the business event it belongs to, and details as a JSON object.
struct Cause {
  std::string kind = {};
  std::string reference = {};  // e.g. "<ASN>/<offline serial>/<type>" for a purchase
  std::string details_json = "{}";
  friend bool operator==(const Cause&, const Cause&) = default;
};

// What the host knows about a card's wallet: its balance as the card last reported it, and the
// serials it belongs to (absent: not reported by that transaction). An update older than the
// stored state (a serial below the stored one) is ignored.
struct CardState {
  std::string asn = {};  // 20 hex digits
  Wallet wallet = Wallet::kEp;
  std::int64_t balance = 0;
  std::optional<std::int64_t> online_serial = std::nullopt;
  std::optional<std::int64_t> offline_serial = std::nullopt;
  friend bool operator==(const CardState&, const CardState&) = default;
};

struct Transfer {
  std::string id =
      {};  // the idempotency key, chosen by the client: "purchase/<ASN>/<serial>/<type>"
  AccountId debit = {};
  AccountId credit = {};
  std::int64_t amount = 0;  // fen, > 0
  Cause cause = {};
  bool pending = false;                     // reserve now; Complete() or Void() later
  bool debit_must_not_go_negative = false;  // reject when debit's available would go below 0
  // Applied in the same database transaction (clearing a purchase). Not with pending: a load's
  // card state comes with Complete().
  std::optional<CardState> card_state = std::nullopt;
};

enum class TransferState { kPosted, kPending, kCompleted, kVoided, kRejected };
std::string_view TransferStateName(TransferState state);  // "posted", "pending", ...

// A transfer as the ledger stored it.
struct TransferRecord {
  std::int64_t seq = 0;  // the ledger's order of arrival
  Transfer transfer;
  TransferState state = TransferState::kPosted;
  std::int64_t created_at_us = 0;              // microseconds since the Unix epoch
  std::optional<std::int64_t> resolved_at_us;  // when completed or voided
};

enum class Outcome {
  kPosted,     // this call posted it
  kPending,    // this call reserved it (pending transfer)
  kCompleted,  // this call completed the pending transfer
  kVoided,     // this call voided the pending transfer
  kRejected,   // the debit account's available balance was too low; recorded (a retry of the
               // same id is rejected too: TigerBeetle's "id already failed")
  kExists,     // an earlier call with the same id and content did the work; nothing written now.
               // transfer.state says how that call ended.
};
std::string_view OutcomeName(Outcome outcome);

struct PostResult {
  Outcome outcome = Outcome::kPosted;
  TransferRecord transfer;
  bool card_state_applied = false;  // false when none was given or it was older than the stored
};

// ---------------------------------------------------------------------------------------------
// History, invariants, errors.

struct HistoryEntry {
  std::int64_t posting_seq = 0;
  std::string transfer_id;
  std::int64_t amount = 0;  // + credit, − debit
  std::int64_t balance_after = 0;
  AccountId counterparty;
  Cause cause;  // details omitted (FindTransfer has them)
  std::int64_t created_at_us = 0;
};

struct HistoryPage {
  std::vector<HistoryEntry> entries;           // oldest first
  std::optional<std::int64_t> next_after_seq;  // pass back for the next page; none at the end
};

struct Problem {
  enum class Kind {
    kBalancesDoNotSumToZero,
    kPendingDoesNotBalance,  // debits pending ≠ credits pending over all accounts
    kBalanceDiffersFromPostings,
    kPendingDiffersFromTransfers,
    kUnbalancedTransfer,  // a posting without its balancing leg, or legs ≠ the transfer
    kCardFloatDiffersFromCard,
    kCardTransactionPostedTwice,
  };
  Kind kind;
  std::string description;  // one line, for people
};

struct InvariantReport {
  std::int64_t accounts = 0;
  std::int64_t postings = 0;
  std::int64_t transfers = 0;
  std::int64_t pending = 0;
  std::vector<Problem> problems;  // at most kMaxProblemsPerCheck of each kind
  bool ok() const { return problems.empty(); }
};
inline constexpr int kMaxProblemsPerCheck = 1000;

enum class ErrorKind {
  kStore,       // the database failed (store_kind says how)
  kInvalid,     // a malformed request: amount ≤ 0, same account twice, bad id, bad JSON, overflow
  kConflict,    // the id exists with different content
  kNotFound,    // no such (pending) transfer
  kWrongState,  // complete/void of a transfer that is not pending (or was voided/completed)
};

struct LedgerError : Error {
  ErrorKind kind = ErrorKind::kStore;
  store::ErrorKind store_kind = store::ErrorKind::kOther;
};

template <typename T>
using LedgerResult = store::Expected<T, LedgerError>;

// ---------------------------------------------------------------------------------------------
// Partitioning (docs/ledger.md "Scale"): every row carries the shard of the card ASN, merchant or
// person it belongs to; PostgreSQL partitions the postings by shard range.
inline constexpr int kShardCount = 256;
int ShardOf(std::string_view partition_key);

// The ledger's schema: store::Migrate(connection, ledger::Migrations()).
const store::MigrationSet& Migrations();

// The ledger on one connection. Not thread-safe (one per connection).
//
// Every operation runs in its own database transaction, retried on serialization failures —
// unless the connection is already inside a transaction: then it joins it (no commit, no retry),
// so the host can commit a request and its postings at once.
class Ledger {
 public:
  struct Options {
    std::function<std::int64_t()> clock_us;  // default: the system clock
    store::RetryPolicy retry;
  };
  explicit Ledger(store::Connection& connection, Options options = {});

  LedgerResult<Account> OpenAccount(const AccountId& id);  // creates it when missing
  LedgerResult<std::optional<Account>> FindAccount(const AccountId& id);

  LedgerResult<PostResult> Post(const Transfer& transfer);
  // Posts many transfers, in order, as Post would one after the other, but set-wise: the
  // accounts are read, the transfers, balances, posting legs and card states written in a few
  // multi-row statements (clearing a batch of uploads). The same all-or-nothing transaction rule
  // as Post. Plain transfers only: pending or must-not-go-negative ones are kInvalid (use Post).
  // A batch holding an id posted before (a retry) or twice goes through Post one by one: the
  // same kExists and kConflict answers. card_state_applied as Post says it, transfer by transfer.
  LedgerResult<std::vector<PostResult>> PostBatch(const std::vector<Transfer>& transfers);
  // Posts a pending transfer (and applies the card state the card's TAC confirmed). Completing a
  // completed transfer again is kExists; a voided one is kWrongState.
  LedgerResult<PostResult> Complete(std::string_view pending_id,
                                    const std::optional<CardState>& card_state = std::nullopt);
  // Releases a pending transfer's hold. Voiding a voided transfer again is kExists.
  LedgerResult<PostResult> Void(std::string_view pending_id);

  LedgerResult<std::optional<TransferRecord>> FindTransfer(std::string_view id);
  // Pending transfers created before `created_before_us`, oldest first, after seq `after_seq`
  // (for reconciliation of loads whose confirmation never came).
  LedgerResult<std::vector<TransferRecord>> ListPending(std::int64_t created_before_us,
                                                        std::size_t limit,
                                                        std::int64_t after_seq = 0);
  LedgerResult<HistoryPage> History(const AccountId& id, std::int64_t after_seq, std::size_t limit);

  // Records what a card reported (issuance, a load, a cleared purchase) when not older than the
  // stored state; returns whether it was applied.
  LedgerResult<bool> SetCardState(const CardState& state);
  LedgerResult<std::optional<CardState>> FindCardState(std::string_view asn, Wallet wallet);

  // Reads everything in one consistent snapshot and lists every violated invariant.
  LedgerResult<InvariantReport> CheckInvariants();

 private:
  template <typename T>
  LedgerResult<T> Run(store::TransactionMode mode, const std::function<LedgerResult<T>()>& body);
  std::int64_t Now() const;

  store::Connection& connection_;
  Options options_;
};

}  // namespace medcard::ledger
