// Accounts, transfers, pending transfers, card state and history (docs/ledger.md).
#include "ledger/ledger.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "ledger/internal.h"

namespace medcard::ledger {

using store::Connection;
using store::Params;
using store::Row;
using store::TransactionMode;

namespace detail {

LedgerError MakeLedgerError(ErrorKind kind, std::string message) {
  LedgerError error;
  error.kind = kind;
  error.message = std::move(message);
  return error;
}

LedgerError StoreError(const store::DbError& error, std::string_view context) {
  LedgerError out;
  out.kind = ErrorKind::kStore;
  out.store_kind = error.kind;
  out.message = "ledger: " + std::string(context) + ": " + error.message;
  return out;
}

std::optional<AccountKind> AccountKindFromName(std::string_view name) {
  for (const AccountKind kind :
       {AccountKind::kSiaFund, AccountKind::kMedical, AccountKind::kCardFloat,
        AccountKind::kMerchant, AccountKind::kSuspense, AccountKind::kBankClearing,
        AccountKind::kOverdraft}) {
    if (AccountKindName(kind) == name) return kind;
  }
  return std::nullopt;
}

}  // namespace detail

namespace {

using detail::MakeLedgerError;
using detail::StoreError;

constexpr std::size_t kMaxIdLength = 128;
constexpr std::size_t kMaxKeyLength = 64;
constexpr std::size_t kAsnHexDigits = 20;

// Appends one row's values to a multi-row statement's parameters, each constructed in place (a
// braced list of Values would copy every text once more).
template <typename... V>
void AppendValues(store::Params& params, V&&... values) {
  (params.emplace_back(std::forward<V>(values)), ...);
}

LedgerError Invalid(std::string message) {
  return MakeLedgerError(ErrorKind::kInvalid, std::move(message));
}

// Printable ASCII without spaces: ids and keys appear in logs, URLs and CSV reports.
bool IsToken(std::string_view s, std::size_t max_length, bool allow_slash) {
  if (s.empty() || s.size() > max_length) return false;
  for (const char c : s) {
    if (c <= ' ' || c > '~' || (!allow_slash && c == '/')) return false;
  }
  return true;
}

bool IsUpperHex(std::string_view s) {
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'A' || c > 'F')) return false;
  }
  return true;
}

std::string UpperCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::optional<Wallet> WalletFromName(std::string_view name) {
  if (name == "ED") return Wallet::kEd;
  if (name == "EP") return Wallet::kEp;
  return std::nullopt;
}

std::optional<TransferState> StateFromName(std::string_view name) {
  for (const TransferState s :
       {TransferState::kPosted, TransferState::kPending, TransferState::kCompleted,
        TransferState::kVoided, TransferState::kRejected}) {
    if (TransferStateName(s) == name) return s;
  }
  return std::nullopt;
}

// The card ASN, merchant or person an account belongs to: what its rows are partitioned by.
std::string PartitionKey(const AccountId& id) {
  if (id.kind == AccountKind::kCardFloat) return id.key.substr(0, kAsnHexDigits);
  if (id.key.empty()) return std::string(AccountKindName(id.kind));
  return id.key;
}

// ---------------------------------------------------------------------------------------------
// Canonical forms: what a retry is compared by.

LedgerResult<std::string> CanonicalDetails(std::string_view json) {
  if (json.empty() || json == "{}") return std::string("{}");  // the usual case: no parse
  const auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Invalid("cause details are not a JSON object");
  }
  return parsed.dump();  // object keys sorted: the same details always read the same
}

// Exactly what nlohmann::json's dump() makes of it (keys sorted, no spaces), which stored rows hold
// and retries are compared by; written by hand because clearing makes one per purchase. The ASN
// is upper-case hex (ValidCardState): nothing to escape.
std::string CardStateJson(const CardState& s) {
  std::string out = "{\"asn\":\"" + s.asn + "\",\"balance\":" + std::to_string(s.balance);
  if (s.offline_serial) out += ",\"offline_serial\":" + std::to_string(*s.offline_serial);
  if (s.online_serial) out += ",\"online_serial\":" + std::to_string(*s.online_serial);
  out += ",\"wallet\":\"" + std::string(WalletName(s.wallet)) + "\"}";
  return out;
}

std::optional<CardState> CardStateFromJson(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  CardState s;
  s.asn = j.value("asn", "");
  const auto wallet = WalletFromName(j.value("wallet", ""));
  if (!wallet) return std::nullopt;
  s.wallet = *wallet;
  s.balance = j.value("balance", std::int64_t{0});
  if (j.contains("online_serial")) s.online_serial = j["online_serial"].get<std::int64_t>();
  if (j.contains("offline_serial")) s.offline_serial = j["offline_serial"].get<std::int64_t>();
  return s;
}

LedgerResult<CardState> ValidCardState(const CardState& state) {
  CardState s = state;
  s.asn = UpperCase(s.asn);
  if (s.asn.size() != kAsnHexDigits || !IsUpperHex(s.asn)) {
    return Invalid("card state: ASN \"" + state.asn + "\" is not 20 hex digits");
  }
  for (const auto& serial : {s.online_serial, s.offline_serial}) {
    if (serial && (*serial < 0 || *serial > 0xFFFF)) {
      return Invalid("card state: a transaction serial is 2 bytes (0..65535)");
    }
  }
  return s;
}

// A transfer checked and in canonical form.
struct PreparedTransfer {
  Transfer transfer;
  std::string card_state_json;  // empty when none
};

LedgerResult<PreparedTransfer> Prepare(const Transfer& in) {
  PreparedTransfer p{in, ""};
  Transfer& t = p.transfer;
  if (!IsToken(t.id, kMaxIdLength, true)) {
    return Invalid("transfer id \"" + t.id + "\": 1-128 printable characters without spaces");
  }
  if (t.debit.kind == AccountKind::kCardFloat) t.debit.key = UpperCase(t.debit.key);
  if (t.credit.kind == AccountKind::kCardFloat) t.credit.key = UpperCase(t.credit.key);
  for (const AccountId* account : {&t.debit, &t.credit}) {
    if (auto wrong = ValidateAccountId(*account); !wrong.empty()) {
      return Invalid("transfer " + t.id + ": " + wrong);
    }
  }
  if (t.debit == t.credit)
    return Invalid("transfer " + t.id + ": debit and credit are one account");
  if (t.amount <= 0) {
    return Invalid("transfer " + t.id + ": amount " + std::to_string(t.amount) +
                   " fen (must be > 0)");
  }
  if (!IsToken(t.cause.kind, kMaxKeyLength, false)) {
    return Invalid("transfer " + t.id + ": a cause kind is required");
  }
  if (IsCardTransaction(t.cause.kind) && t.cause.reference.empty()) {
    return Invalid("transfer " + t.id + ": a " + t.cause.kind +
                   " needs its card transaction as the cause reference");
  }
  auto details = CanonicalDetails(t.cause.details_json);
  if (!details) return details.error();
  t.cause.details_json = *details;
  if (t.card_state) {
    if (t.pending) {
      return Invalid("transfer " + t.id + ": a pending transfer's card state comes with Complete");
    }
    auto state = ValidCardState(*t.card_state);
    if (!state) return state.error();
    const AccountId card_float = AccountId::CardFloat(state->asn, state->wallet);
    if (card_float != t.debit && card_float != t.credit) {
      return Invalid("transfer " + t.id + ": the card state is of " + card_float.ToString() +
                     ", which the transfer does not touch");
    }
    t.card_state = *state;
    p.card_state_json = CardStateJson(*state);
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Rows.

struct AccountRow {
  std::int64_t db_id = 0;
  Account account;
  int shard = 0;
};

struct StoredTransfer {
  TransferRecord record;
  std::int64_t debit_db_id = 0;
  std::int64_t credit_db_id = 0;
  std::string card_state_json;
};

constexpr char kSelectTransferColumns[] =
    "SELECT t.seq, t.id, da.kind AS debit_kind, da.account_key AS debit_key,"
    " ca.kind AS credit_kind, ca.account_key AS credit_key, t.debit_account, t.credit_account,"
    " t.amount, t.pending, t.debit_must_not_go_negative, t.state, t.cause_kind,"
    " t.cause_reference, t.cause_details, t.card_state, t.created_at, t.resolved_at"
    " FROM ledger_transfers t"
    " JOIN ledger_accounts da ON da.id = t.debit_account"
    " JOIN ledger_accounts ca ON ca.id = t.credit_account";

LedgerResult<StoredTransfer> TransferFromRow(const Row& row) {
  StoredTransfer s;
  TransferRecord& r = s.record;
  const auto debit_kind = detail::AccountKindFromName(row.Text("debit_kind"));
  const auto credit_kind = detail::AccountKindFromName(row.Text("credit_kind"));
  const auto state = StateFromName(row.Text("state"));
  if (!debit_kind || !credit_kind || !state) {
    return MakeLedgerError(ErrorKind::kStore,
                           "ledger: transfer " + row.Text("id") + " has an unknown kind or state");
  }
  r.seq = row.Int("seq");
  r.transfer.id = row.Text("id");
  r.transfer.debit = {*debit_kind, row.Text("debit_key")};
  r.transfer.credit = {*credit_kind, row.Text("credit_key")};
  r.transfer.amount = row.Int("amount");
  r.transfer.pending = row.Int("pending") != 0;
  r.transfer.debit_must_not_go_negative = row.Int("debit_must_not_go_negative") != 0;
  r.transfer.cause = {row.Text("cause_kind"), row.Text("cause_reference"),
                      row.Text("cause_details")};
  if (auto json = row.OptionalText("card_state")) {
    s.card_state_json = *json;
    r.transfer.card_state = CardStateFromJson(*json);
  }
  r.state = *state;
  r.created_at_us = row.Int("created_at");
  r.resolved_at_us = row.OptionalInt("resolved_at");
  s.debit_db_id = row.Int("debit_account");
  s.credit_db_id = row.Int("credit_account");
  return s;
}

LedgerResult<std::optional<StoredTransfer>> LoadTransfer(Connection& c, std::string_view id) {
  auto rows = c.Query(std::string(kSelectTransferColumns) + " WHERE t.id = ?", {id});
  if (!rows) return StoreError(rows.error(), "reading transfer");
  if (rows->empty()) return std::optional<StoredTransfer>();
  auto stored = TransferFromRow(rows->rows[0]);
  if (!stored) return stored.error();
  return std::optional<StoredTransfer>(std::move(stored).value());
}

AccountRow AccountFromRow(const AccountId& id, const Row& row) {
  AccountRow a;
  a.db_id = row.Int("id");
  a.account.id = id;
  a.account.balance = row.Int("balance");
  a.account.debits_pending = row.Int("debits_pending");
  a.account.credits_pending = row.Int("credits_pending");
  a.shard = static_cast<int>(row.Int("shard"));
  return a;
}

LedgerResult<std::optional<AccountRow>> ReadAccount(Connection& c, const AccountId& id) {
  auto rows = c.Query(
      "SELECT id, balance, debits_pending, credits_pending, shard FROM ledger_accounts"
      " WHERE kind = ? AND account_key = ?",
      {AccountKindName(id.kind), id.key});
  if (!rows) return StoreError(rows.error(), "reading account " + id.ToString());
  if (rows->empty()) return std::optional<AccountRow>();
  return std::optional<AccountRow>(AccountFromRow(id, rows->rows[0]));
}

// A transfer's two accounts by their row ids, read in one statement.
struct TransferAccounts {
  AccountRow debit, credit;
};
LedgerResult<TransferAccounts> ReadTransferAccounts(Connection& c, const AccountId& debit,
                                                    std::int64_t debit_db_id,
                                                    const AccountId& credit,
                                                    std::int64_t credit_db_id) {
  auto rows = c.Query(
      "SELECT id, balance, debits_pending, credits_pending, shard FROM ledger_accounts"
      " WHERE id IN (?, ?)",
      {debit_db_id, credit_db_id});
  if (!rows) {
    return StoreError(rows.error(),
                      "reading accounts " + debit.ToString() + " and " + credit.ToString());
  }
  std::optional<AccountRow> debit_row, credit_row;
  for (const Row& row : *rows) {
    if (row.Int("id") == debit_db_id) debit_row = AccountFromRow(debit, row);
    if (row.Int("id") == credit_db_id) credit_row = AccountFromRow(credit, row);
  }
  if (!debit_row || !credit_row) {
    return MakeLedgerError(
        ErrorKind::kStore,
        "ledger: account " + (debit_row ? credit : debit).ToString() + " vanished");
  }
  return TransferAccounts{*std::move(debit_row), *std::move(credit_row)};
}

// Adds `delta` to what the debit account holds and the credit account is promised (a pending
// transfer reserved: +amount; voided: −amount), both rows in one statement.
LedgerResult<store::Done> ChangeHolds(Connection& c, const AccountRow& debit,
                                      const AccountRow& credit, std::int64_t delta) {
  auto changed = c.Execute(
      "UPDATE ledger_accounts SET"
      " debits_pending = debits_pending + CASE WHEN id = ? THEN CAST(? AS BIGINT) ELSE 0 END,"
      " credits_pending = credits_pending + CASE WHEN id = ? THEN CAST(? AS BIGINT) ELSE 0 END"
      " WHERE id IN (?, ?)",
      {debit.db_id, delta, credit.db_id, delta, debit.db_id, credit.db_id});
  const std::string accounts = debit.account.id.ToString() + " and " + credit.account.id.ToString();
  if (!changed) return StoreError(changed.error(), "changing the holds of " + accounts);
  if (*changed != 2) {
    return MakeLedgerError(ErrorKind::kStore, "ledger: " + accounts + ": an account row vanished");
  }
  return store::Done{};
}

LedgerResult<AccountRow> EnsureAccount(Connection& c, const AccountId& id, std::int64_t now) {
  auto found = ReadAccount(c, id);
  if (!found) return found.error();
  if (*found) return **found;
  const int shard = ShardOf(PartitionKey(id));
  // A concurrent creator makes this a unique violation: the transaction runs again and finds it.
  auto inserted = c.InsertReturningId(
      "INSERT INTO ledger_accounts (kind, account_key, shard, created_at) VALUES (?, ?, ?, ?)",
      "id", {AccountKindName(id.kind), id.key, shard, now});
  if (!inserted) return StoreError(inserted.error(), "creating account " + id.ToString());
  if (!*inserted) {
    return MakeLedgerError(ErrorKind::kStore, "ledger: account " + id.ToString() + " not created");
  }
  AccountRow a;
  a.db_id = **inserted;
  a.account.id = id;
  a.shard = shard;
  return a;
}

// What differs between a stored transfer and a retry of its id; empty when they are the same.
std::string Difference(const StoredTransfer& stored, const PreparedTransfer& retry) {
  const Transfer& a = stored.record.transfer;
  const Transfer& b = retry.transfer;
  if (a.debit != b.debit) return "debit " + a.debit.ToString() + ", not " + b.debit.ToString();
  if (a.credit != b.credit) {
    return "credit " + a.credit.ToString() + ", not " + b.credit.ToString();
  }
  if (a.amount != b.amount) {
    return "amount " + std::to_string(a.amount) + " fen, not " + std::to_string(b.amount);
  }
  if (a.pending != b.pending) return a.pending ? "it is pending" : "it is not pending";
  if (a.debit_must_not_go_negative != b.debit_must_not_go_negative) {
    return "a different must-not-go-negative flag";
  }
  if (a.cause.kind != b.cause.kind || a.cause.reference != b.cause.reference) {
    return "cause " + a.cause.kind + " " + a.cause.reference + ", not " + b.cause.kind + " " +
           b.cause.reference;
  }
  if (a.cause.details_json != b.cause.details_json) return "other cause details";
  if (stored.card_state_json != retry.card_state_json) return "another card state";
  return "";
}

// Moves `amount` from debit to credit: both balances and the two posting legs. from_pending:
// the amount was held by a pending transfer, whose hold this releases.
LedgerResult<store::Done> PostLegs(Connection& c, std::int64_t transfer_seq,
                                   const AccountRow& debit, const AccountRow& credit,
                                   std::int64_t amount, bool from_pending, std::int64_t now) {
  std::int64_t debit_after = 0, credit_after = 0;
  if (__builtin_sub_overflow(debit.account.balance, amount, &debit_after) ||
      __builtin_add_overflow(credit.account.balance, amount, &credit_after)) {
    return Invalid("posting " + std::to_string(amount) + " fen would overflow a balance of " +
                   debit.account.id.ToString() + " or " + credit.account.id.ToString());
  }
  const std::int64_t released = from_pending ? amount : 0;
  // Both balances (and the holds a completed transfer releases) in one statement.
  auto moved = c.Execute(
      "UPDATE ledger_accounts SET"
      " balance = balance + CASE WHEN id = ? THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END,"
      " debits_pending = debits_pending - CASE WHEN id = ? THEN CAST(? AS BIGINT) ELSE 0 END,"
      " credits_pending = credits_pending - CASE WHEN id = ? THEN CAST(? AS BIGINT) ELSE 0 END"
      " WHERE id IN (?, ?)",
      {debit.db_id, -amount, amount, debit.db_id, released, credit.db_id, released, debit.db_id,
       credit.db_id});
  if (!moved) {
    return StoreError(moved.error(), "moving " + std::to_string(amount) + " fen from " +
                                         debit.account.id.ToString() + " to " +
                                         credit.account.id.ToString());
  }
  if (*moved != 2) {
    return MakeLedgerError(ErrorKind::kStore, "ledger: an account row vanished while posting");
  }
  auto legs = c.Execute(
      "INSERT INTO ledger_postings (transfer_seq, account_id, amount, balance_after, shard,"
      " created_at) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)",
      {transfer_seq, debit.db_id, -amount, debit_after, debit.shard, now,  //
       transfer_seq, credit.db_id, amount, credit_after, credit.shard, now});
  if (!legs) return StoreError(legs.error(), "writing postings");
  return store::Done{};
}

// Records the card state of `account` (its card float) unless it is older than the stored one.
LedgerResult<bool> ApplyCardStateOf(Connection& c, const AccountRow& account, const CardState& s,
                                    std::int64_t now) {
  // Uploads arrive late and out of order: never let an older report replace a newer one. One
  // conditional UPDATE does the usual case; only when it changes nothing is the row read.
  auto updated = c.Execute(
      "UPDATE ledger_card_state SET balance = ?,"
      " online_serial = COALESCE(CAST(? AS BIGINT), online_serial),"
      " offline_serial = COALESCE(CAST(? AS BIGINT), offline_serial), updated_at = ?"
      " WHERE account_id = ? AND COALESCE(CAST(? AS BIGINT) >= online_serial, TRUE)"
      " AND COALESCE(CAST(? AS BIGINT) >= offline_serial, TRUE)",
      {s.balance, s.online_serial, s.offline_serial, now, account.db_id, s.online_serial,
       s.offline_serial});
  if (!updated) return StoreError(updated.error(), "updating card state");
  if (*updated == 1) return true;
  auto rows = c.Query("SELECT 1 FROM ledger_card_state WHERE account_id = ?", {account.db_id});
  if (!rows) return StoreError(rows.error(), "reading card state");
  if (!rows->empty()) return false;  // the stored state is newer
  auto inserted = c.Execute(
      "INSERT INTO ledger_card_state (account_id, asn, wallet, balance, online_serial,"
      " offline_serial, shard, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      {account.db_id, s.asn, WalletName(s.wallet), s.balance, s.online_serial, s.offline_serial,
       account.shard, now});
  if (!inserted) return StoreError(inserted.error(), "recording card state");
  return true;
}

AccountId CardFloatOf(const CardState& s) { return AccountId::CardFloat(s.asn, s.wallet); }

LedgerResult<bool> ApplyCardState(Connection& c, const CardState& s, std::int64_t now) {
  auto account = EnsureAccount(c, AccountId::CardFloat(s.asn, s.wallet), now);
  if (!account) return account.error();
  return ApplyCardStateOf(c, *account, s, now);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names.

std::string_view AccountKindName(AccountKind kind) {
  switch (kind) {
    case AccountKind::kSiaFund:
      return "sia_fund";
    case AccountKind::kMedical:
      return "medical";
    case AccountKind::kCardFloat:
      return "card_float";
    case AccountKind::kMerchant:
      return "merchant";
    case AccountKind::kSuspense:
      return "suspense";
    case AccountKind::kBankClearing:
      return "bank_clearing";
    case AccountKind::kOverdraft:
      return "overdraft";
  }
  return "?";
}

std::string_view WalletName(Wallet wallet) { return wallet == Wallet::kEd ? "ED" : "EP"; }

std::string_view TransferStateName(TransferState state) {
  switch (state) {
    case TransferState::kPosted:
      return "posted";
    case TransferState::kPending:
      return "pending";
    case TransferState::kCompleted:
      return "completed";
    case TransferState::kVoided:
      return "voided";
    case TransferState::kRejected:
      return "rejected";
  }
  return "?";
}

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPosted:
      return "posted";
    case Outcome::kPending:
      return "pending";
    case Outcome::kCompleted:
      return "completed";
    case Outcome::kVoided:
      return "voided";
    case Outcome::kRejected:
      return "rejected";
    case Outcome::kExists:
      return "exists";
  }
  return "?";
}

bool IsCardTransaction(std::string_view cause_kind) {
  return cause_kind == cause::kPurchase || cause_kind == cause::kLoad;
}

AccountId AccountId::Overdraft(std::string_view asn) {
  return {AccountKind::kOverdraft, UpperCase(asn)};
}

AccountId AccountId::CardFloat(std::string_view asn, Wallet wallet) {
  return {AccountKind::kCardFloat, UpperCase(asn) + "/" + std::string(WalletName(wallet))};
}

std::string AccountId::ToString() const {
  std::string out(AccountKindName(kind));
  if (!key.empty()) out += "/" + key;
  return out;
}

std::optional<AccountId> AccountId::Parse(std::string_view text) {
  const auto slash = text.find('/');
  const auto kind = detail::AccountKindFromName(text.substr(0, slash));
  if (!kind) return std::nullopt;
  AccountId id{*kind, slash == std::string_view::npos ? "" : std::string(text.substr(slash + 1))};
  if (id.kind == AccountKind::kCardFloat) id.key = UpperCase(id.key);
  if (!ValidateAccountId(id).empty()) return std::nullopt;
  return id;
}

std::string ValidateAccountId(const AccountId& id) {
  const std::string name = id.ToString();
  switch (id.kind) {
    case AccountKind::kSiaFund:
    case AccountKind::kSuspense:
    case AccountKind::kBankClearing:
      if (!id.key.empty()) return "account " + name + ": the scheme has one, it takes no key";
      return "";
    case AccountKind::kMedical:
    case AccountKind::kMerchant:
      if (!IsToken(id.key, kMaxKeyLength, false)) {
        return "account " + name + ": the key is 1-64 printable characters without spaces or /";
      }
      return "";
    case AccountKind::kCardFloat: {
      const std::string_view key = id.key;
      if (key.size() != kAsnHexDigits + 3 || key[kAsnHexDigits] != '/' ||
          !IsUpperHex(key.substr(0, kAsnHexDigits)) ||
          !WalletFromName(key.substr(kAsnHexDigits + 1))) {
        return "account " + name + ": a card float's key is <20 hex digit ASN>/<ED|EP>";
      }
      return "";
    }
    case AccountKind::kOverdraft:
      if (id.key.size() != kAsnHexDigits || !IsUpperHex(id.key)) {
        return "account " + name + ": an overdraft's key is the card's 20 hex digit ASN";
      }
      return "";
  }
  return "account " + name + ": unknown kind";
}

// ---------------------------------------------------------------------------------------------
// Ledger.

Ledger::Ledger(store::Connection& connection, Options options)
    : connection_(connection), options_(std::move(options)) {}

std::int64_t Ledger::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

LedgerResult<Account> Ledger::OpenAccount(const AccountId& in) {
  AccountId id = in;
  if (id.kind == AccountKind::kCardFloat) id.key = UpperCase(id.key);
  if (auto wrong = ValidateAccountId(id); !wrong.empty()) return Invalid(wrong);
  return Run<Account>(TransactionMode::kWrite, [&]() -> LedgerResult<Account> {
    auto row = EnsureAccount(connection_, id, Now());
    if (!row) return row.error();
    return row->account;
  });
}

LedgerResult<std::optional<Account>> Ledger::FindAccount(const AccountId& in) {
  AccountId id = in;
  if (id.kind == AccountKind::kCardFloat) id.key = UpperCase(id.key);
  using Found = std::optional<Account>;
  return Run<Found>(TransactionMode::kRead, [&]() -> LedgerResult<Found> {
    auto row = ReadAccount(connection_, id);
    if (!row) return row.error();
    if (!*row) return Found();
    return Found((*row)->account);
  });
}

LedgerResult<PostResult> Ledger::Post(const Transfer& transfer) {
  auto prepared = Prepare(transfer);
  if (!prepared) return prepared.error();
  const PreparedTransfer& p = *prepared;
  const Transfer& t = p.transfer;

  return Run<PostResult>(TransactionMode::kWrite, [&]() -> LedgerResult<PostResult> {
    Connection& c = connection_;
    // A retry of an id that exists: the first outcome, or a conflict when the content differs.
    auto exists = [&]() -> LedgerResult<PostResult> {
      auto existing = LoadTransfer(c, t.id);
      if (!existing) return existing.error();
      if (!*existing) {
        return MakeLedgerError(ErrorKind::kStore, "ledger: transfer " + t.id + " vanished");
      }
      if (auto difference = Difference(**existing, p); !difference.empty()) {
        return MakeLedgerError(ErrorKind::kConflict,
                               "transfer " + t.id + " exists with other content: " + difference);
      }
      return PostResult{Outcome::kExists, (*existing)->record, false};
    };

    const std::int64_t now = Now();
    auto debit = EnsureAccount(c, t.debit, now);
    if (!debit) return debit.error();
    auto credit = EnsureAccount(c, t.credit, now);
    if (!credit) return credit.error();

    TransferState state = t.pending ? TransferState::kPending : TransferState::kPosted;
    const Account& d = debit->account;
    if (t.debit_must_not_go_negative && (d.available() < t.amount)) {
      state = TransferState::kRejected;
    }
    if (state == TransferState::kPending) {
      std::int64_t ignored = 0;
      if (__builtin_add_overflow(d.debits_pending, t.amount, &ignored) ||
          __builtin_add_overflow(credit->account.credits_pending, t.amount, &ignored)) {
        return Invalid("transfer " + t.id + ": the pending amounts would overflow");
      }
    }

    auto inserted = c.InsertReturningId(
        "INSERT INTO ledger_transfers (id, debit_account, credit_account, amount, pending,"
        " debit_must_not_go_negative, state, cause_kind, cause_reference, cause_details,"
        " card_state, shard, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        "seq",
        {t.id, debit->db_id, credit->db_id, t.amount, t.pending, t.debit_must_not_go_negative,
         TransferStateName(state), t.cause.kind, t.cause.reference, t.cause.details_json,
         p.card_state_json.empty() ? store::Value() : store::Value(p.card_state_json), debit->shard,
         now});
    if (!inserted) return StoreError(inserted.error(), "recording transfer " + t.id);
    if (!*inserted) return exists();

    PostResult result;
    result.transfer.seq = **inserted;
    result.transfer.transfer = t;
    result.transfer.state = state;
    result.transfer.created_at_us = now;

    switch (state) {
      case TransferState::kRejected:
        result.outcome = Outcome::kRejected;
        return result;
      case TransferState::kPending: {
        auto held = ChangeHolds(c, *debit, *credit, t.amount);
        if (!held) return held.error();
        result.outcome = Outcome::kPending;
        return result;
      }
      default:
        break;
    }
    auto posted = PostLegs(c, result.transfer.seq, *debit, *credit, t.amount, false, now);
    if (!posted) return posted.error();
    if (t.card_state) {
      // Prepare checked that the card state is of the debit or the credit account.
      const bool of_debit =
          AccountId::CardFloat(t.card_state->asn, t.card_state->wallet) == t.debit;
      auto applied = ApplyCardStateOf(c, of_debit ? *debit : *credit, *t.card_state, now);
      if (!applied) return applied.error();
      result.card_state_applied = *applied;
    }
    result.outcome = Outcome::kPosted;
    return result;
  });
}

LedgerResult<std::vector<PostResult>> Ledger::PostBatch(const std::vector<Transfer>& transfers) {
  std::vector<PreparedTransfer> prepared;
  prepared.reserve(transfers.size());
  for (const Transfer& t : transfers) {
    if (t.pending || t.debit_must_not_go_negative) {
      return Invalid("transfer " + t.id +
                     ": a batch posts plain transfers (not pending, no must-not-go-negative)");
    }
    auto p = Prepare(t);
    if (!p) return p.error();
    prepared.push_back(std::move(p).value());
  }
  using Results = std::vector<PostResult>;
  return Run<Results>(TransactionMode::kWrite, [&]() -> LedgerResult<Results> {
    Connection& c = connection_;
    Results results;
    if (prepared.empty()) return results;
    const std::int64_t now = Now();

    // A retry among them (an id posted before, or twice here): Post decides each one.
    bool retried = false;
    {
      std::unordered_set<std::string_view> ids;
      Params values;
      values.reserve(prepared.size());
      for (const PreparedTransfer& p : prepared) {
        retried = retried || !ids.insert(p.transfer.id).second;
        values.emplace_back(p.transfer.id);
      }
      if (!retried) {
        auto existing = store::QueryRows(c, "SELECT id FROM ledger_transfers WHERE id IN (", "?", 1,
                                         std::move(values), ")");
        if (!existing) return StoreError(existing.error(), "looking for posted transfers");
        retried = !existing->empty();
      }
    }
    if (retried) {
      for (const Transfer& t : transfers) {
        auto posted = Post(t);
        if (!posted) return posted.error();
        results.push_back(std::move(posted).value());
      }
      return results;
    }

    // Every account the batch touches, read together; a missing one is created.
    std::unordered_map<std::string, AccountRow> accounts;
    auto key_of = [](const AccountId& id) {
      return std::string(AccountKindName(id.kind)) + "|" + id.key;
    };
    {
      Params values;
      for (const PreparedTransfer& p : prepared) {
        for (const AccountId* id : {&p.transfer.debit, &p.transfer.credit}) {
          auto [it, added] = accounts.try_emplace(key_of(*id));
          if (!added) continue;
          it->second.account.id = *id;
          values.emplace_back(AccountKindName(id->kind));
          values.emplace_back(id->key);
        }
      }
      auto rows = store::QueryRows(
          c, "WITH v(kind, account_key) AS (VALUES ", "(?, ?)", 2, std::move(values),
          ") SELECT a.id, a.kind, a.account_key, a.balance, a.debits_pending,"
          " a.credits_pending, a.shard FROM v"
          " JOIN ledger_accounts a ON a.kind = v.kind AND a.account_key = v.account_key");
      if (!rows) return StoreError(rows.error(), "reading accounts");
      for (const Row& row : *rows) {
        auto it = accounts.find(row.Text("kind") + "|" + row.Text("account_key"));
        if (it == accounts.end()) continue;
        it->second = AccountFromRow(it->second.account.id, row);
      }
      for (auto& [key, account] : accounts) {
        if (account.db_id != 0) continue;
        auto created = EnsureAccount(c, account.account.id, now);
        if (!created) return created.error();
        account = *created;
      }
    }

    // The balances after each transfer, in order: what the posting legs record.
    struct Legs {
      const AccountRow* debit = nullptr;
      const AccountRow* credit = nullptr;
      std::int64_t debit_after = 0, credit_after = 0;
    };
    std::vector<Legs> legs;
    legs.reserve(prepared.size());
    std::unordered_map<std::int64_t, std::int64_t> delta_of_account;
    Params transfer_values;
    transfer_values.reserve(prepared.size() * 13);
    for (const PreparedTransfer& p : prepared) {
      const Transfer& t = p.transfer;
      AccountRow& debit = accounts[key_of(t.debit)];
      AccountRow& credit = accounts[key_of(t.credit)];
      Legs l{&debit, &credit, 0, 0};
      if (__builtin_sub_overflow(debit.account.balance, t.amount, &l.debit_after) ||
          __builtin_add_overflow(credit.account.balance, t.amount, &l.credit_after)) {
        return Invalid("posting " + std::to_string(t.amount) + " fen would overflow a balance of " +
                       t.debit.ToString() + " or " + t.credit.ToString());
      }
      debit.account.balance = l.debit_after;
      credit.account.balance = l.credit_after;
      delta_of_account[debit.db_id] -= t.amount;
      delta_of_account[credit.db_id] += t.amount;
      legs.push_back(l);
      AppendValues(transfer_values, t.id, debit.db_id, credit.db_id, t.amount, false, false,
                   TransferStateName(TransferState::kPosted), t.cause.kind, t.cause.reference,
                   t.cause.details_json,
                   p.card_state_json.empty() ? store::Value() : store::Value(p.card_state_json),
                   debit.shard, now);
    }

    auto inserted = store::QueryRows(
        c,
        "INSERT INTO ledger_transfers (id, debit_account, credit_account, amount, pending,"
        " debit_must_not_go_negative, state, cause_kind, cause_reference, cause_details,"
        " card_state, shard, created_at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", 13, std::move(transfer_values),
        " ON CONFLICT (id) DO NOTHING RETURNING seq, id");
    if (!inserted) return StoreError(inserted.error(), "recording transfers");
    std::unordered_map<std::string, std::int64_t> seq_of;
    for (const Row& row : *inserted) seq_of.emplace(row.Text("id"), row.Int("seq"));

    results.reserve(prepared.size());
    Params posting_values;
    posting_values.reserve(prepared.size() * 12);
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      const Transfer& t = prepared[i].transfer;
      auto seq = seq_of.find(t.id);
      if (seq == seq_of.end()) {
        // Checked absent above, in this transaction: another writer got in (run it again).
        LedgerError e = MakeLedgerError(ErrorKind::kStore,
                                        "ledger: transfer " + t.id + " was recorded concurrently");
        e.store_kind = store::ErrorKind::kRetryable;
        return e;
      }
      const Legs& l = legs[i];
      AppendValues(posting_values, seq->second, l.debit->db_id, -t.amount, l.debit_after,
                   l.debit->shard, now, seq->second, l.credit->db_id, t.amount, l.credit_after,
                   l.credit->shard, now);
      PostResult result;
      result.outcome = Outcome::kPosted;
      result.transfer.seq = seq->second;
      result.transfer.transfer = t;
      result.transfer.state = TransferState::kPosted;
      result.transfer.created_at_us = now;
      results.push_back(std::move(result));
    }

    Params delta_values;
    for (const auto& [account_id, delta] : delta_of_account) {
      delta_values.emplace_back(account_id);
      delta_values.emplace_back(delta);
    }
    const auto account_count = static_cast<std::int64_t>(delta_of_account.size());
    auto updated =
        store::ExecuteRows(c, "WITH v(account_id, delta) AS (VALUES ",
                           "(CAST(? AS BIGINT), CAST(? AS BIGINT))", 2, std::move(delta_values),
                           ") UPDATE ledger_accounts SET balance = balance + v.delta FROM v"
                           " WHERE ledger_accounts.id = v.account_id");
    if (!updated) return StoreError(updated.error(), "updating balances");
    if (*updated != account_count) {
      return MakeLedgerError(ErrorKind::kStore, "ledger: an account row vanished while posting");
    }
    auto written = store::ExecuteRows(c,
                                      "INSERT INTO ledger_postings (transfer_seq, account_id,"
                                      " amount, balance_after, shard, created_at) VALUES ",
                                      "(?, ?, ?, ?, ?, ?)", 6, std::move(posting_values));
    if (!written) return StoreError(written.error(), "writing postings");

    // Card states: a card float reported once in the batch in one statement for all; one
    // reported more than once in order, as Post would (each applied unless older than stored).
    std::unordered_map<std::int64_t, int> states_of_account;
    for (const PreparedTransfer& p : prepared) {
      if (p.transfer.card_state) {
        ++states_of_account[accounts[key_of(CardFloatOf(*p.transfer.card_state))].db_id];
      }
    }
    Params state_values;
    std::vector<std::size_t> single_states;
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      const auto& s = prepared[i].transfer.card_state;
      if (!s) continue;
      const AccountRow& account = accounts[key_of(CardFloatOf(*s))];
      if (states_of_account[account.db_id] > 1) {
        auto applied = ApplyCardStateOf(c, account, *s, now);
        if (!applied) return applied.error();
        results[i].card_state_applied = *applied;
        continue;
      }
      single_states.push_back(i);
      AppendValues(state_values, account.db_id, s->balance, s->online_serial, s->offline_serial,
                   now);
    }
    auto applied = store::QueryRows(
        c, "WITH v(card_account, balance, online_serial, offline_serial, updated_at) AS (VALUES ",
        "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT),"
        " CAST(? AS BIGINT))",
        5, std::move(state_values),
        ") UPDATE ledger_card_state SET balance = v.balance,"
        " online_serial = COALESCE(v.online_serial, ledger_card_state.online_serial),"
        " offline_serial = COALESCE(v.offline_serial, ledger_card_state.offline_serial),"
        " updated_at = v.updated_at FROM v WHERE ledger_card_state.account_id = v.card_account"
        " AND COALESCE(v.online_serial >= ledger_card_state.online_serial, TRUE)"
        " AND COALESCE(v.offline_serial >= ledger_card_state.offline_serial, TRUE)"
        " RETURNING account_id");
    if (!applied) return StoreError(applied.error(), "updating card states");
    std::unordered_set<std::int64_t> applied_accounts;
    for (const Row& row : *applied) applied_accounts.insert(row.Int(0));
    for (const std::size_t i : single_states) {
      const CardState& s = *prepared[i].transfer.card_state;
      const AccountRow& account = accounts[key_of(CardFloatOf(s))];
      if (applied_accounts.contains(account.db_id)) {
        results[i].card_state_applied = true;
        continue;
      }
      // No state stored yet (it is inserted), or a newer one (kept): as Post decides it.
      auto one = ApplyCardStateOf(c, account, s, now);
      if (!one) return one.error();
      results[i].card_state_applied = *one;
    }
    return results;
  });
}

namespace {

// Complete or void a pending transfer (inside a transaction).
LedgerResult<PostResult> Resolve(Connection& c, std::string_view id, bool complete,
                                 const std::optional<CardState>& card_state, std::int64_t now) {
  auto loaded = LoadTransfer(c, id);
  if (!loaded) return loaded.error();
  if (!*loaded) {
    return MakeLedgerError(ErrorKind::kNotFound, "no transfer " + std::string(id));
  }
  StoredTransfer& stored = **loaded;
  TransferRecord& record = stored.record;
  const TransferState wanted = complete ? TransferState::kCompleted : TransferState::kVoided;
  if (record.state == wanted) return PostResult{Outcome::kExists, record, false};
  if (record.state != TransferState::kPending) {
    return MakeLedgerError(ErrorKind::kWrongState,
                           "transfer " + record.transfer.id + " is " +
                               std::string(TransferStateName(record.state)) + ", not pending");
  }
  if (card_state) {
    const AccountId card_float = AccountId::CardFloat(card_state->asn, card_state->wallet);
    if (card_float != record.transfer.debit && card_float != record.transfer.credit) {
      return Invalid("transfer " + record.transfer.id + ": the card state is of " +
                     card_float.ToString() + ", which the transfer does not touch");
    }
  }
  auto accounts = ReadTransferAccounts(c, record.transfer.debit, stored.debit_db_id,
                                       record.transfer.credit, stored.credit_db_id);
  if (!accounts) return accounts.error();
  const AccountRow& debit = accounts->debit;
  const AccountRow& credit = accounts->credit;

  auto marked = c.Execute(
      "UPDATE ledger_transfers SET state = ?, resolved_at = ? WHERE seq = ? AND state = 'pending'",
      {TransferStateName(wanted), now, record.seq});
  if (!marked) return StoreError(marked.error(), "resolving transfer " + record.transfer.id);
  if (*marked != 1) {
    return MakeLedgerError(ErrorKind::kStore,
                           "ledger: transfer " + record.transfer.id + " changed underneath");
  }
  record.state = wanted;
  record.resolved_at_us = now;
  PostResult result{complete ? Outcome::kCompleted : Outcome::kVoided, record, false};

  if (!complete) {
    auto released = ChangeHolds(c, debit, credit, -record.transfer.amount);
    if (!released) return released.error();
    return result;
  }
  auto posted = PostLegs(c, record.seq, debit, credit, record.transfer.amount, true, now);
  if (!posted) return posted.error();
  if (card_state) {
    // Checked above: the card state is of the debit or the credit account, both read already.
    const bool of_debit =
        AccountId::CardFloat(card_state->asn, card_state->wallet) == record.transfer.debit;
    auto applied = ApplyCardStateOf(c, of_debit ? debit : credit, *card_state, now);
    if (!applied) return applied.error();
    result.card_state_applied = *applied;
  }
  return result;
}

}  // namespace

LedgerResult<PostResult> Ledger::Complete(std::string_view pending_id,
                                          const std::optional<CardState>& card_state) {
  std::optional<CardState> state;
  if (card_state) {
    auto valid = ValidCardState(*card_state);
    if (!valid) return valid.error();
    state = *valid;
  }
  return Run<PostResult>(TransactionMode::kWrite, [&]() -> LedgerResult<PostResult> {
    return Resolve(connection_, pending_id, true, state, Now());
  });
}

LedgerResult<PostResult> Ledger::Void(std::string_view pending_id) {
  return Run<PostResult>(TransactionMode::kWrite, [&]() -> LedgerResult<PostResult> {
    return Resolve(connection_, pending_id, false, std::nullopt, Now());
  });
}

LedgerResult<std::optional<TransferRecord>> Ledger::FindTransfer(std::string_view id) {
  using Found = std::optional<TransferRecord>;
  return Run<Found>(TransactionMode::kRead, [&]() -> LedgerResult<Found> {
    auto loaded = LoadTransfer(connection_, id);
    if (!loaded) return loaded.error();
    if (!*loaded) return Found();
    return Found((*loaded)->record);
  });
}

LedgerResult<std::vector<TransferRecord>> Ledger::ListPending(std::int64_t created_before_us,
                                                              std::size_t limit,
                                                              std::int64_t after_seq) {
  using List = std::vector<TransferRecord>;
  return Run<List>(TransactionMode::kRead, [&]() -> LedgerResult<List> {
    auto rows =
        connection_.Query(std::string(kSelectTransferColumns) +
                              " WHERE t.state = 'pending' AND t.seq > ? AND t.created_at < ?"
                              " ORDER BY t.seq LIMIT ?",
                          {after_seq, created_before_us, static_cast<std::int64_t>(limit)});
    if (!rows) return StoreError(rows.error(), "listing pending transfers");
    List out;
    for (const Row& row : *rows) {
      auto stored = TransferFromRow(row);
      if (!stored) return stored.error();
      out.push_back(std::move(stored->record));
    }
    return out;
  });
}

LedgerResult<HistoryPage> Ledger::History(const AccountId& in, std::int64_t after_seq,
                                          std::size_t limit) {
  AccountId id = in;
  if (id.kind == AccountKind::kCardFloat) id.key = UpperCase(id.key);
  return Run<HistoryPage>(TransactionMode::kRead, [&]() -> LedgerResult<HistoryPage> {
    HistoryPage page;
    auto account = ReadAccount(connection_, id);
    if (!account) return account.error();
    if (!*account) return page;
    // shard = ? lets PostgreSQL read one partition only.
    auto rows = connection_.Query(
        "SELECT p.seq, t.id, p.amount, p.balance_after, t.cause_kind, t.cause_reference,"
        " o.kind AS other_kind, o.account_key AS other_key, p.created_at"
        " FROM ledger_postings p"
        " JOIN ledger_transfers t ON t.seq = p.transfer_seq"
        " JOIN ledger_accounts o"
        "   ON o.id = CASE WHEN p.amount < 0 THEN t.credit_account ELSE t.debit_account END"
        " WHERE p.shard = ? AND p.account_id = ? AND p.seq > ?"
        " ORDER BY p.seq LIMIT ?",
        {(*account)->shard, (*account)->db_id, after_seq, static_cast<std::int64_t>(limit) + 1});
    if (!rows) return StoreError(rows.error(), "reading history of " + id.ToString());
    for (const Row& row : *rows) {
      if (page.entries.size() == limit) {
        page.next_after_seq = page.entries.back().posting_seq;
        break;
      }
      HistoryEntry e;
      e.posting_seq = row.Int("seq");
      e.transfer_id = row.Text("id");
      e.amount = row.Int("amount");
      e.balance_after = row.Int("balance_after");
      const auto other = detail::AccountKindFromName(row.Text("other_kind"));
      e.counterparty = {other.value_or(AccountKind::kSuspense), row.Text("other_key")};
      e.cause = {row.Text("cause_kind"), row.Text("cause_reference"), ""};
      e.created_at_us = row.Int("created_at");
      page.entries.push_back(std::move(e));
    }
    return page;
  });
}

LedgerResult<bool> Ledger::SetCardState(const CardState& state) {
  auto valid = ValidCardState(state);
  if (!valid) return valid.error();
  return Run<bool>(TransactionMode::kWrite, [&]() -> LedgerResult<bool> {
    return ApplyCardState(connection_, *valid, Now());
  });
}

LedgerResult<std::optional<CardState>> Ledger::FindCardState(std::string_view asn, Wallet wallet) {
  using Found = std::optional<CardState>;
  const std::string upper = UpperCase(asn);
  return Run<Found>(TransactionMode::kRead, [&]() -> LedgerResult<Found> {
    auto rows = connection_.Query(
        "SELECT balance, online_serial, offline_serial FROM ledger_card_state"
        " WHERE asn = ? AND wallet = ?",
        {upper, WalletName(wallet)});
    if (!rows) return StoreError(rows.error(), "reading card state");
    if (rows->empty()) return Found();
    const Row& row = rows->rows[0];
    return Found(CardState{upper, wallet, row.Int("balance"), row.OptionalInt("online_serial"),
                           row.OptionalInt("offline_serial")});
  });
}

}  // namespace medcard::ledger
