// The host's services (docs/host.md): each one database transaction over the host tables, the
// ledger's postings and the key store.
#include "host/host.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

#include "keys/pboc.h"

namespace medcard::host {
namespace {

using iso8583::ResponseCode;
using store::Done;

HostError Fail(ResponseCode code, std::string message) {
  HostError e;
  e.message = std::move(message);
  e.code = code;
  return e;
}
HostError FromError(const Error& error, ResponseCode code = ResponseCode::kSystemMalfunction) {
  return Fail(code, error.message);
}
HostError FromError(const store::DbError& error) {
  HostError e = Fail(ResponseCode::kSystemMalfunction, error.message);
  e.retryable = error.retryable();
  return e;
}
HostError FromError(const ledger::LedgerError& error,
                    ResponseCode code = ResponseCode::kSystemMalfunction) {
  HostError e = Fail(code, error.message);
  e.retryable =
      error.kind == ledger::ErrorKind::kStore && error.store_kind == store::ErrorKind::kRetryable;
  return e;
}

// Appends one row's values to a multi-row statement's parameters, each constructed in place (a
// braced list of Values would copy every text once more).
template <typename... V>
void AppendValues(store::Params& params, V&&... values) {
  (params.emplace_back(std::forward<V>(values)), ...);
}

// "YYYYMMDDhhmmss": sorts as time does.
std::string Timestamp(const Date& d, const TimeOfDay& t) {
  char text[32];
  std::snprintf(text, sizeof text, "%04d%02d%02d%02d%02d%02d", d.year, d.month, d.day, t.hour,
                t.minute, t.second);
  return text;
}

std::optional<ledger::Wallet> LoadWallet(std::uint8_t type) {
  if (type == 0x01) return ledger::Wallet::kEd;
  if (type == 0x02) return ledger::Wallet::kEp;
  return std::nullopt;
}
std::optional<ledger::Wallet> PurchaseWallet(std::uint8_t type) {
  if (type == 0x05) return ledger::Wallet::kEd;
  if (type == 0x06) return ledger::Wallet::kEp;
  return std::nullopt;
}

std::string LoadId(const std::string& terminal, std::uint32_t trace) {
  return "load/" + terminal + "/" + std::to_string(trace);
}
// A reversed load the card's TAC proved credited after all (docs/protocol.md 7.7).
std::string LoadAfterReversalId(const std::string& terminal, std::uint32_t trace) {
  return "load-after-reversal/" + terminal + "/" + std::to_string(trace);
}

// "YYYYMMDD": compares with the first 8 characters of a Timestamp.
std::string DayText(const Date& d) {
  char text[16];
  std::snprintf(text, sizeof text, "%04d%02d%02d", d.year, d.month, d.day);
  return text;
}

// "YYYY-MM-DD" (the issuance log's dates, docs/issuance.md).
std::optional<Date> ParseIsoDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  int parts[3] = {0, 0, 0};
  const std::size_t starts[3] = {0, 5, 8}, lengths[3] = {4, 2, 2};
  for (int i = 0; i < 3; ++i) {
    for (std::size_t k = starts[i]; k < starts[i] + lengths[i]; ++k) {
      if (text[k] < '0' || text[k] > '9') return std::nullopt;
      parts[i] = parts[i] * 10 + (text[k] - '0');
    }
  }
  const Date date{parts[0], parts[1], parts[2]};
  if (!IsValidDate(date)) return std::nullopt;
  return date;
}
std::string PurchaseReference(const std::string& asn, std::int64_t serial, int type) {
  return asn + "/" + std::to_string(serial) + "/" + std::to_string(type);
}

// The one method a PIN verification value is made with (issuance::kPinVerificationMethod).
constexpr std::string_view kPinMethodIbm3624 = "ibm3624";

std::optional<HostError> CheckPinVerificationValue(const PinVerificationValue& value) {
  const bool digits = value.offset.size() >= 4 && value.offset.size() <= 12 &&
                      std::all_of(value.offset.begin(), value.offset.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
  if (!keys::IsPinVerificationKeyName(value.key_name) || value.key_version == 0 || !digits) {
    return Fail(ResponseCode::kFormatError,
                "a PIN verification value is a pvk/... key, its version and 4..12 offset digits");
  }
  return std::nullopt;
}

}  // namespace

std::string_view ClearingOutcomeName(ClearingOutcome outcome) {
  switch (outcome) {
    case ClearingOutcome::kAccepted:
      return "accepted";
    case ClearingOutcome::kDuplicate:
      return "duplicate";
    case ClearingOutcome::kSuspense:
      return "suspense";
  }
  return "?";
}

Host::Host(store::Connection& connection, keys::KeyStore& key_store, Options options)
    : connection_(connection),
      key_store_(key_store),
      ledger_(connection, ledger::Ledger::Options{options.clock_us, {}}),
      options_(std::move(options)) {}

std::int64_t Host::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs body in one write transaction: committed when it succeeds, rolled back when it fails,
// and run again from a clean slate when the database reports a serialization failure.
HostResult<Done> Host::InTransaction(const std::function<HostResult<Done>()>& body) {
  // Inside the caller's transaction (the terminal gateway's group commit): a savepoint, so that a
  // refused operation leaves nothing behind while the others of the group stay.
  if (connection_.InTransaction()) {
    auto saved = connection_.Execute("SAVEPOINT host_operation");
    if (!saved.ok()) return FromError(saved.error());
    auto result = body();
    auto ended = connection_.Execute(result.ok() ? "RELEASE SAVEPOINT host_operation"
                                                 : "ROLLBACK TO SAVEPOINT host_operation");
    if (!ended.ok()) return FromError(ended.error());
    if (!result.ok()) {
      auto released = connection_.Execute("RELEASE SAVEPOINT host_operation");
      if (!released.ok()) return FromError(released.error());
    }
    return result;
  }
  const store::RetryPolicy policy;
  for (int attempt = 1;; ++attempt) {
    HostResult<Done> outcome = [&]() -> HostResult<Done> {
      auto tx = store::Transaction::Begin(connection_);
      if (!tx.ok()) return FromError(tx.error());
      auto result = body();
      if (!result.ok()) {
        tx->Rollback();
        return result;
      }
      auto committed = tx->Commit();
      if (!committed.ok()) return FromError(committed.error());
      return Done{};
    }();
    if (outcome.ok() || !outcome.error().retryable || attempt >= policy.max_attempts) {
      return outcome;
    }
    store::BackOff(policy, attempt);
  }
}

HostResult<Done> Host::RegisterMerchant(const Merchant& merchant) {
  if (merchant.id.empty() || merchant.name.empty() ||
      merchant.id.find_first_of(",\"\n") != std::string::npos) {
    return Fail(ResponseCode::kFormatError,
                "a merchant needs an id (no , \" or newline) and a name");
  }
  return InTransaction([&]() -> HostResult<Done> {
    auto existing =
        connection_.Query("SELECT name, grade FROM host_merchants WHERE id = ?", {merchant.id});
    if (!existing.ok()) return FromError(existing.error());
    if (!existing->empty()) {
      if ((*existing)[0].Text(0) == merchant.name && (*existing)[0].Text(1) == merchant.grade) {
        return Done{};  // a replay
      }
      const std::string grade = (*existing)[0].Text(1);
      return Fail(ResponseCode::kInvalidMerchant,
                  "merchant " + merchant.id + " exists already as \"" + (*existing)[0].Text(0) +
                      "\"" + (grade.empty() ? std::string(" (no grade)") : " (" + grade + ")") +
                      ": give its registered name and grade, or another merchant id");
    }
    auto inserted =
        connection_.Execute("INSERT INTO host_merchants (id, name, grade) VALUES (?, ?, ?)",
                            {merchant.id, merchant.name, merchant.grade});
    if (!inserted.ok()) return FromError(inserted.error());
    auto account = ledger_.OpenAccount(ledger::AccountId::Merchant(merchant.id));
    if (!account.ok()) return FromError(account.error());
    return Done{};
  });
}

HostResult<Done> Host::RegisterTerminal(const TerminalRegistration& terminal) {
  if (terminal.terminal_number.size() != 6 || terminal.psam_serial.size() != 10) {
    return Fail(ResponseCode::kFormatError, "terminal number is 6 bytes, PSAM serial 10");
  }
  const std::string number = ToHex(terminal.terminal_number);
  const std::string tmk_name = "tmk/" + number;
  const std::string terminal_id =
      terminal.terminal_id.empty() ? number.substr(4) : terminal.terminal_id;
  if (terminal_id.size() != 8 || std::any_of(terminal_id.begin(), terminal_id.end(),
                                             [](char c) { return c < 0x20 || c > 0x7E; })) {
    return Fail(ResponseCode::kFormatError, "a terminal id is 8 printable characters");
  }
  auto result = InTransaction([&]() -> HostResult<Done> {
    auto merchant =
        connection_.Query("SELECT 1 FROM host_merchants WHERE id = ?", {terminal.merchant_id});
    if (!merchant.ok()) return FromError(merchant.error());
    if (merchant->empty()) {
      return Fail(ResponseCode::kInvalidMerchant, "no merchant " + terminal.merchant_id);
    }
    auto existing = connection_.Query(
        "SELECT merchant_id, psam_serial FROM host_terminals WHERE terminal_number = ?", {number});
    if (!existing.ok()) return FromError(existing.error());
    if (!existing->empty()) {
      if ((*existing)[0].Text(0) == terminal.merchant_id &&
          (*existing)[0].Text(1) == ToHex(terminal.psam_serial)) {
        return Done{};
      }
      return Fail(ResponseCode::kInvalidTransaction, "terminal " + number + " exists already");
    }
    auto inserted = connection_.Execute(
        "INSERT INTO host_terminals (terminal_number, merchant_id, psam_serial, tmk_name, status,"
        " terminal_id) VALUES (?, ?, ?, ?, 'active', ?)",
        {number, terminal.merchant_id, ToHex(terminal.psam_serial), tmk_name, terminal_id});
    if (!inserted.ok()) return FromError(inserted.error());
    return Done{};
  });
  if (!result.ok()) return result;
  // The key store is not transactional with the database: generate the TMK once, after the row
  // is committed (a crash in between leaves a terminal whose next registration makes its TMK).
  if (!key_store_.Find(tmk_name).ok()) {
    auto generated = key_store_.Generate(tmk_name);
    if (!generated.ok()) return FromError(generated.error());
  }
  return Done{};
}

HostResult<Done> Host::SetTerminalStatus(ByteView terminal_number, std::string_view status) {
  if (terminal_number.size() != 6) {
    return Fail(ResponseCode::kFormatError, "terminal number is 6 bytes");
  }
  if (status != kTerminalActive && status != kTerminalBlocked) {
    return Fail(ResponseCode::kFormatError, "terminal status is active or blocked");
  }
  const std::string number = ToHex(terminal_number);
  return InTransaction([&]() -> HostResult<Done> {
    auto updated =
        connection_.Execute("UPDATE host_terminals SET status = ? WHERE terminal_number = ?",
                            {std::string(status), number});
    if (!updated.ok()) return FromError(updated.error());
    if (*updated == 0) {
      return Fail(ResponseCode::kTerminalNotRegistered, "terminal " + number + " unknown");
    }
    return Done{};
  });
}

HostResult<std::vector<TerminalInfo>> Host::Terminals() {
  auto rows = connection_.Query(
      "SELECT t.terminal_number, t.terminal_id, t.merchant_id, m.name, t.psam_serial, t.status"
      " FROM host_terminals t JOIN host_merchants m ON m.id = t.merchant_id"
      " ORDER BY t.terminal_number");
  if (!rows.ok()) return FromError(rows.error());
  std::vector<TerminalInfo> terminals;
  for (const store::Row& row : *rows) {
    terminals.push_back(
        {row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4), row.Text(5)});
  }
  return terminals;
}

HostResult<Done> Host::RegisterCard(const CardRegistration& card) {
  if (card.asn.size() != 10 || card.person_id.empty()) {
    return Fail(ResponseCode::kFormatError, "a card needs a 10-byte ASN and a person id");
  }
  return InTransaction([&] { return InsertCard(card); });
}

HostResult<Done> Host::SetOverdrawLimit(ByteView asn_bytes, std::int64_t limit) {
  if (limit < 0 || limit > 0xFFFFFF) {
    return Fail(ResponseCode::kInvalidAmount, "an overdraw limit is 0..16777215 fen");
  }
  const std::string asn = ToHex(asn_bytes);
  return InTransaction([&]() -> HostResult<Done> {
    auto updated = connection_.Query(
        "UPDATE host_card_wallets SET overdraw_limit = ? WHERE asn = ? AND wallet = 'ED'"
        " RETURNING overdraw_used",
        {limit, asn});
    if (!updated.ok()) return FromError(updated.error());
    if (updated->empty()) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    return Done{};
  });
}

// Inside the caller's transaction.
HostResult<Done> Host::InsertCard(const CardRegistration& card) {
  const std::string asn = ToHex(card.asn);
  {
    const std::optional<std::string> valid_to =
        card.valid_to ? std::optional<std::string>(DayText(*card.valid_to)) : std::nullopt;
    auto existing =
        connection_.Query("SELECT person_id, valid_to FROM host_cards WHERE asn = ?", {asn});
    if (!existing.ok()) return FromError(existing.error());
    if (!existing->empty()) {
      if ((*existing)[0].Text(0) != card.person_id) {
        return Fail(ResponseCode::kInvalidCard, "card " + asn + " belongs to another person");
      }
      // A replay; an expiry learnt now (a card registered before the host knew expiries, or
      // without one) is kept.
      if (valid_to && (*existing)[0].OptionalText("valid_to") != valid_to) {
        auto updated = connection_.Execute("UPDATE host_cards SET valid_to = ? WHERE asn = ?",
                                           {*valid_to, asn});
        if (!updated.ok()) return FromError(updated.error());
      }
      return InsertPinVerificationValue(asn, card.pin_verification);
    }
    auto inserted = connection_.Execute(
        "INSERT INTO host_cards (asn, holder_reference, person_id, status, valid_to)"
        " VALUES (?, ?, ?, 'active', ?)",
        {asn, card.holder_reference, card.person_id, valid_to});
    if (!inserted.ok()) return FromError(inserted.error());
    for (ledger::Wallet wallet : {ledger::Wallet::kEd, ledger::Wallet::kEp}) {
      auto row = connection_.Execute("INSERT INTO host_card_wallets (asn, wallet) VALUES (?, ?)",
                                     {asn, std::string(ledger::WalletName(wallet))});
      if (!row.ok()) return FromError(row.error());
      // A new card holds nothing: its float starts from that known balance.
      auto state = ledger_.SetCardState({.asn = asn, .wallet = wallet, .balance = 0});
      if (!state.ok()) return FromError(state.error());
    }
    auto account = ledger_.OpenAccount(ledger::AccountId::Medical(card.person_id));
    if (!account.ok()) return FromError(account.error());
    return InsertPinVerificationValue(asn, card.pin_verification);
  }
}

// Inside the caller's transaction. A value stored already stays: it may be a branch's PIN reset,
// newer than the issuance log being imported again.
HostResult<Done> Host::InsertPinVerificationValue(
    const std::string& asn, const std::optional<PinVerificationValue>& value) {
  if (!value) return Done{};
  if (auto invalid = CheckPinVerificationValue(*value)) return *invalid;
  auto inserted = connection_.Execute(
      "INSERT INTO host_card_pins (asn, method, key_name, key_version, pin_offset, updated_at_us)"
      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (asn) DO NOTHING",
      {asn, std::string(kPinMethodIbm3624), value->key_name,
       static_cast<std::int64_t>(value->key_version), value->offset, Now()});
  if (!inserted.ok()) return FromError(inserted.error());
  return Done{};
}

HostResult<Done> Host::ReplacePinVerificationValue(ByteView asn_bytes,
                                                   const PinVerificationValue& value) {
  if (auto invalid = CheckPinVerificationValue(value)) return *invalid;
  const std::string asn = ToHex(asn_bytes);
  return InTransaction([&]() -> HostResult<Done> {
    auto card = connection_.Query("SELECT asn FROM host_cards WHERE asn = ?", {asn});
    if (!card.ok()) return FromError(card.error());
    if (card->empty()) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    auto stored = connection_.Execute(
        "INSERT INTO host_card_pins (asn, method, key_name, key_version, pin_offset,"
        " updated_at_us) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (asn) DO UPDATE SET"
        " method = excluded.method, key_name = excluded.key_name,"
        " key_version = excluded.key_version, pin_offset = excluded.pin_offset,"
        " failed_tries = 0, updated_at_us = excluded.updated_at_us",
        {asn, std::string(kPinMethodIbm3624), value.key_name,
         static_cast<std::int64_t>(value.key_version), value.offset, Now()});
    if (!stored.ok()) return FromError(stored.error());
    return Done{};
  });
}

HostResult<Done> Host::VerifyOnlinePin(ByteView asn_bytes, std::string_view pan,
                                       keys::KeyRef pin_key, ByteView encrypted_pin_block) {
  const std::string asn = ToHex(asn_bytes);
  // A refusal decided inside the transaction, which still commits (the wrong-PIN count).
  std::optional<HostError> refusal;
  auto done = InTransaction([&]() -> HostResult<Done> {
    refusal.reset();
    auto rows = connection_.Query(
        "SELECT p.key_name, p.key_version, p.pin_offset, p.failed_tries,"
        " p.asn AS has_value FROM host_cards c LEFT JOIN host_card_pins p ON p.asn = c.asn"
        " WHERE c.asn = ?",
        {asn});
    if (!rows.ok()) return FromError(rows.error());
    if (rows->empty()) {
      refusal = Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
      return Done{};
    }
    const store::Row& row = (*rows)[0];
    if (row.IsNull("has_value")) {
      refusal = Fail(ResponseCode::kInvalidTransaction,
                     "card " + asn + " has no PIN verification value: online PIN not possible");
      return Done{};
    }
    const std::int64_t failed = row.Int("failed_tries");
    if (failed >= kOnlinePinTries) {
      refusal = Fail(ResponseCode::kPinTriesExceeded,
                     "card " + asn + ": online PIN blocked after " + std::to_string(failed) +
                         " wrong PINs (a PIN reset at a branch unblocks it)");
      return Done{};
    }
    auto pvk =
        key_store_.Find(row.Text("key_name"), static_cast<std::uint8_t>(row.Int("key_version")));
    if (!pvk.ok()) return Fail(ResponseCode::kSystemMalfunction, pvk.error().message);
    auto match =
        key_store_.VerifyPin(pin_key, encrypted_pin_block, pan, *pvk, row.Text("pin_offset"));
    key_store_.Release(*pvk);
    if (!match.ok()) return Fail(ResponseCode::kSystemMalfunction, match.error().message);
    if (*match) {
      if (failed == 0) return Done{};
      auto reset =
          connection_.Execute("UPDATE host_card_pins SET failed_tries = 0 WHERE asn = ?", {asn});
      if (!reset.ok()) return FromError(reset.error());
      return Done{};
    }
    const std::int64_t now_failed = failed + 1;
    auto counted = connection_.Execute(
        "UPDATE host_card_pins SET failed_tries = ?, last_failure_at_us = ? WHERE asn = ?",
        {now_failed, Now(), asn});
    if (!counted.ok()) return FromError(counted.error());
    const std::string tries =
        std::to_string(now_failed) + " of " + std::to_string(kOnlinePinTries) + " wrong PINs";
    refusal = now_failed >= kOnlinePinTries
                  ? Fail(ResponseCode::kPinTriesExceeded,
                         "card " + asn + ": wrong PIN, " + tries + ": online PIN now blocked")
                  : Fail(ResponseCode::kIncorrectPin, "card " + asn + ": wrong PIN, " + tries);
    return Done{};
  });
  if (!done.ok()) return done.error();
  if (refusal) return *refusal;
  return Done{};
}

HostResult<Host::ImportSummary> Host::ImportIssuanceLog(std::string_view jsonl,
                                                        bool accept_test_cards) {
  ImportSummary summary;
  auto done = InTransaction([&]() -> HostResult<Done> {
    summary = {};
    std::size_t start = 0;
    while (start < jsonl.size()) {
      const std::size_t end = jsonl.find('\n', start);
      if (end == std::string_view::npos) {  // torn by a crash: the log skips it too
        ++summary.skipped;
        break;
      }
      const std::string_view line = jsonl.substr(start, end - start);
      start = end + 1;
      if (line.empty()) continue;
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!record.is_object()) {
        return Fail(ResponseCode::kFormatError, "issuance log: a line is not a JSON object");
      }
      if (record.value("event", "") != "issued" || record.value("kind", "") != "card" ||
          (record.value("test", false) && !accept_test_cards)) {
        ++summary.skipped;
        continue;
      }
      auto asn = FromHex(record.value("asn", ""));
      const std::string holder = record.value("holder", "");
      if (!asn || asn->size() != 10 || holder.empty()) {
        return Fail(ResponseCode::kFormatError,
                    "issuance log: an issued card record lacks its "
                    "ASN or holder");
      }
      std::optional<Date> valid_to;
      if (record.contains("valid_to")) {
        const auto& text = record["valid_to"];
        valid_to = text.is_string() ? ParseIsoDate(text.get<std::string>()) : std::nullopt;
        if (!valid_to) {
          return Fail(ResponseCode::kFormatError, "issuance log: card " + ToHex(*asn) +
                                                      " has a valid_to that is not YYYY-MM-DD");
        }
      }
      // The issuer's PIN verification value (docs/issuance.md "The issuance log").
      std::optional<PinVerificationValue> pin_verification;
      if (record.contains("pin_verification")) {
        const auto& pv = record["pin_verification"];
        const bool readable = pv.is_object() && pv.value("method", "") == kPinMethodIbm3624 &&
                              pv.contains("key") && pv["key"].is_string() &&
                              pv.contains("version") && pv["version"].is_number_unsigned() &&
                              pv["version"].get<std::uint64_t>() <= 255 && pv.contains("offset") &&
                              pv["offset"].is_string();
        if (readable) {
          pin_verification =
              PinVerificationValue{pv["key"].get<std::string>(),
                                   static_cast<std::uint8_t>(pv["version"].get<std::uint64_t>()),
                                   pv["offset"].get<std::string>()};
        }
        if (!readable || CheckPinVerificationValue(*pin_verification)) {
          return Fail(ResponseCode::kFormatError,
                      "issuance log: card " + ToHex(*asn) +
                          " has a pin_verification that is not {\"method\": \"ibm3624\", "
                          "\"key\": \"pvk/...\", \"version\": N, \"offset\": \"DIGITS\"}");
        }
      }
      auto inserted = InsertCard(
          {*asn, "issued " + record.value("time", ""), holder, valid_to, pin_verification});
      if (!inserted.ok()) return inserted;
      ++summary.cards;
    }
    return Done{};
  });
  if (!done.ok()) return done.error();
  return summary;
}

HostResult<Done> Host::CreditMedicalAccount(const std::string& batch_id,
                                            const std::string& person_id, std::int64_t amount) {
  if (amount <= 0) return Fail(ResponseCode::kInvalidAmount, "an allocation is > 0 fen");
  return InTransaction([&]() -> HostResult<Done> {
    auto posted = ledger_.Post({.id = "allocation/" + batch_id + "/" + person_id,
                                .debit = ledger::AccountId::SiaFund(),
                                .credit = ledger::AccountId::Medical(person_id),
                                .amount = amount,
                                .cause = {ledger::cause::kAllocation, batch_id + "/" + person_id}});
    if (!posted.ok()) return FromError(posted.error(), ResponseCode::kInvalidTransaction);
    return Done{};
  });
}

// ---- Online loads -----------------------------------------------------------------------------

namespace {

keys::LoadAuthorisationRequest KeyRequest(const LoadRequest& r) {
  keys::LoadAuthorisationRequest k;
  k.asn = r.asn;
  k.type = r.type;
  k.amount = r.amount;
  k.terminal_number = r.terminal_number;
  k.old_balance = r.old_balance;
  k.online_serial = r.online_serial;
  k.key_version = r.key_version;
  k.random = r.random;
  k.mac1 = r.mac1;
  k.date = r.date;
  k.time = r.time;
  return k;
}

// The stored request of a load row (host_loads), for TAC verification at confirmation.
keys::LoadAuthorisationRequest KeyRequestFromRow(const store::Row& row) {
  keys::LoadAuthorisationRequest k;
  k.asn = HexToBytes(row.Text("asn"));
  k.type = static_cast<std::uint8_t>(row.Int("type"));
  k.amount = static_cast<std::uint32_t>(row.Int("amount"));
  k.terminal_number = HexToBytes(row.Text("terminal_number"));
  k.old_balance = static_cast<std::uint32_t>(row.Int("old_balance"));
  k.online_serial = static_cast<std::uint16_t>(row.Int("online_serial"));
  k.key_version = static_cast<std::uint8_t>(row.Int("key_version"));
  k.random = HexToBytes(row.Text("random"));
  k.mac1 = HexToBytes(row.Text("mac1"));
  const std::string& t = row.Text("txn_time");
  k.date = {std::stoi(t.substr(0, 4)), std::stoi(t.substr(4, 2)), std::stoi(t.substr(6, 2))};
  k.time = {std::stoi(t.substr(8, 2)), std::stoi(t.substr(10, 2)), std::stoi(t.substr(12, 2))};
  return k;
}

}  // namespace

HostResult<LoadAuthorisation> Host::AuthoriseLoad(const LoadRequest& request) {
  auto wallet = LoadWallet(request.type);
  if (!wallet || request.asn.size() != 10 || request.terminal_number.size() != 6 ||
      request.random.size() != 4 || request.mac1.size() != 4 || !IsValidDate(request.date)) {
    return Fail(ResponseCode::kFormatError, "malformed load request");
  }
  if (request.amount == 0) return Fail(ResponseCode::kInvalidAmount, "a load is > 0 fen");
  const std::string terminal = ToHex(request.terminal_number);
  const std::string asn = ToHex(request.asn);
  const std::string when = Timestamp(request.date, request.time);
  LoadAuthorisation answer;
  auto result = InTransaction([&]() -> HostResult<Done> {
    // The load made before with this trace, the terminal and the card in one statement (every
    // online load asks): always one row, a NULL key column for what is not there.
    auto found = connection_.Query(
        "SELECT l.asn AS load_asn, l.amount AS load_amount, l.mac1 AS load_mac1,"
        " l.mac2 AS load_mac2, t.terminal_number AS terminal_found, c.asn AS card_found,"
        " c.person_id, c.status, c.valid_to"
        " FROM (SELECT 1 AS one) k"
        " LEFT JOIN host_loads l ON l.terminal_number = ? AND l.trace = ?"
        " LEFT JOIN host_terminals t ON t.terminal_number = ?"
        " LEFT JOIN host_cards c ON c.asn = ?",
        {terminal, static_cast<std::int64_t>(request.trace), terminal, asn});
    if (!found.ok()) return FromError(found.error());
    if (found->size() != 1) return Fail(ResponseCode::kSystemMalfunction, "load lookup: no row");
    const store::Row& row = (*found)[0];
    if (!row.IsNull("load_asn")) {
      if (row.Text("load_asn") != asn || row.Int("load_amount") != request.amount ||
          row.Text("load_mac1") != ToHex(request.mac1)) {
        return Fail(ResponseCode::kDuplicateTransmission,
                    "trace " + std::to_string(request.trace) + " was used for another load");
      }
      answer = {HexToBytes(row.Text("load_mac2")), request.date, request.time};  // the first
      return Done{};
    }
    if (row.IsNull("terminal_found")) {
      return Fail(ResponseCode::kTerminalNotRegistered, "terminal " + terminal + " unknown");
    }
    if (row.IsNull("card_found"))
      return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    if (row.Text("status") != "active") {
      return Fail(ResponseCode::kLostCard, "card " + asn + " is " + row.Text("status"));
    }
    // 7.6: the host's date (the one CREDIT FOR LOAD carries) after the card's last valid day.
    if (auto valid_to = row.OptionalText("valid_to");
        valid_to && DayText(request.date) > *valid_to) {
      return Fail(ResponseCode::kExpiredCard, "card " + asn + " expired after " + *valid_to);
    }
    auto mac2 = keys::AuthoriseLoad(key_store_, KeyRequest(request));
    if (!mac2.ok()) return FromError(mac2.error(), ResponseCode::kMacError);

    const std::string id = LoadId(terminal, request.trace);
    auto reserved = ledger_.Post({.id = id,
                                  .debit = ledger::AccountId::Medical(row.Text("person_id")),
                                  .credit = ledger::AccountId::CardFloat(asn, *wallet),
                                  .amount = request.amount,
                                  .cause = {ledger::cause::kLoad, id},
                                  .pending = true,
                                  .debit_must_not_go_negative = true});
    if (!reserved.ok()) return FromError(reserved.error());
    if (reserved->outcome == ledger::Outcome::kRejected ||
        reserved->transfer.state == ledger::TransferState::kRejected) {
      return Fail(ResponseCode::kInsufficientFunds, "the medical account holds too little");
    }
    auto inserted = connection_.Execute(
        "INSERT INTO host_loads (terminal_number, trace, asn, type, amount, old_balance,"
        " online_serial, key_version, random, mac1, txn_time, mac2, state, created_at_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        {terminal, static_cast<std::int64_t>(request.trace), asn, request.type, request.amount,
         request.old_balance, request.online_serial, request.key_version, ToHex(request.random),
         ToHex(request.mac1), when, ToHex(*mac2), Now()});
    if (!inserted.ok()) return FromError(inserted.error());
    answer = {*mac2, request.date, request.time};
    return Done{};
  });
  if (!result.ok()) return result.error();
  return answer;
}

namespace {

// A load with, in the same row, its card's ED overdraw used and the ledger's card state of the
// load's wallet: what completing it needs, read once.
constexpr char kLoadWithCardSql[] =
    "SELECT l.*, w.overdraw_used AS ed_overdraw_used, s.asn AS known_asn,"
    " s.balance AS known_balance, s.online_serial AS known_online_serial"
    " FROM host_loads l"
    " LEFT JOIN host_card_wallets w ON w.asn = l.asn AND w.wallet = 'ED'"
    " LEFT JOIN ledger_card_state s ON s.asn = l.asn"
    "   AND s.wallet = CASE WHEN l.type = 1 THEN 'ED' ELSE 'EP' END"
    " WHERE l.terminal_number = ? AND l.trace = ?";

// ED overdraw (docs/host.md "ED overdraw"): a card repays the overdraw it used before it keeps
// any of a load, so its new balance is old + amount − repaid; what the host knows it used.
std::int64_t RepaidBy(const store::Row& load) {
  if (LoadWallet(static_cast<std::uint8_t>(load.Int("type"))) != ledger::Wallet::kEd) return 0;
  const auto used = load.OptionalInt("ed_overdraw_used");
  return used ? std::min<std::int64_t>(load.Int("amount"), *used) : 0;
}

}  // namespace

HostResult<store::Row> Host::ReadLoad(const std::string& terminal, std::uint32_t trace) {
  auto load = connection_.Query(kLoadWithCardSql, {terminal, static_cast<std::int64_t>(trace)});
  if (!load.ok()) return FromError(load.error());
  if (load->empty()) {
    return Fail(ResponseCode::kUnableToLocateRecord, "no load " + LoadId(terminal, trace));
  }
  return std::move((*load)[0]);
}

HostResult<Done> Host::ConfirmLoad(ByteView terminal_number, std::uint32_t trace, ByteView tac) {
  const std::string terminal = ToHex(terminal_number);
  return InTransaction([&]() -> HostResult<Done> {
    auto load = ReadLoad(terminal, trace);
    if (!load.ok()) return load.error();
    const std::string load_state = load->Text("state");
    if (load_state == "completed") return Done{};  // a replay
    const bool reversed = load_state == "reversed";
    if (load_state != "pending" && !reversed) {
      return Fail(ResponseCode::kInvalidTransaction, "the load was " + load_state);
    }
    // Earlier loads of the card still pending are decided by this one's online serial first (as
    // reconciliation would): the card state this load is measured against must include them.
    // Only when that state is behind this load's serial (a load was credited and not completed);
    // when it is at it, a pending earlier load can only be one the card was not credited by,
    // which reconciliation releases.
    const auto known_serial = load->OptionalInt("known_online_serial");
    if (known_serial && *known_serial >= load->Int("online_serial")) {
      return ConfirmCreditedLoad(*load, tac);
    }
    auto earlier = connection_.Query(
        "SELECT terminal_number, trace FROM host_loads WHERE asn = ? AND type = ?"
        " AND online_serial <= ? AND state = 'pending' AND NOT (terminal_number = ? AND trace = ?)"
        " ORDER BY online_serial, created_at_us",
        {load->Text("asn"), load->Int("type"), load->Int("online_serial"), terminal,
         static_cast<std::int64_t>(trace)});
    if (!earlier.ok()) return FromError(earlier.error());
    if (!earlier->empty()) {
      for (const store::Row& other : *earlier) {
        auto decided = DecidePendingLoad(other.Text(0), static_cast<std::uint32_t>(other.Int(1)));
        if (!decided.ok()) return decided.error();
      }
      load = ReadLoad(terminal, trace);
      if (!load.ok()) return load.error();
    }
    return ConfirmCreditedLoad(*load, tac);
  });
}

HostResult<Done> Host::ConfirmCreditedLoad(const store::Row& load, ByteView tac) {
  const std::int64_t repaid = RepaidBy(load);
  Status verified = keys::VerifyLoadTac(key_store_, KeyRequestFromRow(load), tac,
                                        static_cast<std::uint32_t>(repaid));
  if (!verified.ok()) {
    // The load stays pending (reconciliation decides it from the card's later transactions) or
    // reversed.
    return Fail(ResponseCode::kMacError, "load TAC invalid: " + verified.error().message);
  }
  return CompleteCreditedLoad(load, repaid);
}

HostResult<Done> Host::CompleteCreditedLoad(const store::Row& load, std::int64_t repaid) {
  const std::string terminal = load.Text("terminal_number");
  const auto trace = static_cast<std::uint32_t>(load.Int("trace"));
  const bool reversed = load.Text("state") == "reversed";
  const keys::LoadAuthorisationRequest request = KeyRequestFromRow(load);
  const std::string asn = load.Text("asn");
  const ledger::Wallet wallet = *LoadWallet(request.type);
  // Purchases in transit: the card's balance before the load (INITIALIZE FOR LOAD) is below what
  // the host last knew, because purchases made since have not been uploaded yet. Their money
  // leaves the card float for suspense now, so that the float stays the card's balance; their
  // upload pays it from there to the merchant (ClearPurchases: "in transit"). Only when the
  // known state is not from a later load of the card (a late confirmation).
  const bool known = !load.IsNull("known_asn");
  const std::int64_t known_balance = known ? load.Int("known_balance") : 0;
  const std::optional<std::int64_t> known_online_serial = load.OptionalInt("known_online_serial");
  const std::int64_t in_transit = known_balance - static_cast<std::int64_t>(request.old_balance);
  const bool known_is_older =
      known && (!known_online_serial || *known_online_serial <= request.online_serial);
  if (known_is_older && in_transit > 0) {
    const std::string transit_id = "transit/" + LoadId(terminal, trace);
    auto held =
        ledger_.Post({.id = transit_id,
                      .debit = ledger::AccountId::CardFloat(asn, wallet),
                      .credit = ledger::AccountId::Suspense(),
                      .amount = in_transit,
                      .cause = {ledger::cause::kSuspense, transit_id},
                      .card_state = ledger::CardState{.asn = asn,
                                                      .wallet = wallet,
                                                      .balance = request.old_balance,
                                                      .online_serial = request.online_serial}});
    if (!held.ok()) return FromError(held.error());
    auto counted = connection_.Execute(
        "UPDATE host_card_wallets SET held_in_suspense = held_in_suspense + ?"
        " WHERE asn = ? AND wallet = ?",
        {in_transit, asn, std::string(ledger::WalletName(wallet))});
    if (!counted.ok()) return FromError(counted.error());
  }
  const ledger::CardState state{
      .asn = asn,
      .wallet = wallet,
      .balance = static_cast<std::int64_t>(request.old_balance) + request.amount - repaid,
      .online_serial = static_cast<std::int64_t>(request.online_serial) + 1};
  if (!reversed) {
    auto completed = ledger_.Complete(LoadId(terminal, trace), state);
    if (!completed.ok()) return FromError(completed.error());
  } else {
    // 7.7: the reservation was voided, yet the card proves it was credited: the card has the
    // money. A new transfer completes it, whatever the medical account holds now (it may go
    // below 0: the card's money is a fact), and a reviewer looks at why the host reversed it.
    auto card = connection_.Query("SELECT person_id FROM host_cards WHERE asn = ?", {asn});
    if (!card.ok()) return FromError(card.error());
    if (card->empty()) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    const std::string id = LoadAfterReversalId(terminal, trace);
    auto posted = ledger_.Post({.id = id,
                                .debit = ledger::AccountId::Medical((*card)[0].Text(0)),
                                .credit = ledger::AccountId::CardFloat(asn, wallet),
                                .amount = request.amount,
                                .cause = {ledger::cause::kLoad, id},
                                .card_state = state});
    if (!posted.ok()) return FromError(posted.error());
    auto queued = connection_.Execute(
        "INSERT INTO host_suspense (asn, offline_serial, type, amount, reason, created_at_us,"
        " money_held) VALUES (?, ?, ?, ?, ?, ?, 0)",
        {asn, static_cast<std::int64_t>(request.online_serial), request.type, request.amount,
         std::string(kReasonLoadAfterReversal), Now()});
    if (!queued.ok()) return FromError(queued.error());
  }
  if (repaid > 0) {
    // The repaid part leaves the card float for the cardholder's overdraft.
    const std::string id = "repay/" + LoadId(terminal, trace);
    auto posted = ledger_.Post({.id = id,
                                .debit = ledger::AccountId::CardFloat(asn, wallet),
                                .credit = ledger::AccountId::Overdraft(asn),
                                .amount = repaid,
                                .cause = {ledger::cause::kOverdraft, id}});
    if (!posted.ok()) return FromError(posted.error());
    auto lowered = connection_.Execute(
        "UPDATE host_card_wallets SET overdraw_used = overdraw_used - ? WHERE asn = ? AND"
        " wallet = 'ED'",
        {repaid, asn});
    if (!lowered.ok()) return FromError(lowered.error());
  }
  auto updated = connection_.Execute(
      "UPDATE host_loads SET state = 'completed' WHERE terminal_number = ? AND trace = ?",
      {terminal, static_cast<std::int64_t>(trace)});
  if (!updated.ok()) return FromError(updated.error());
  return Done{};
}

HostResult<Done> Host::ReverseLoad(ByteView terminal_number, std::uint32_t trace) {
  const std::string terminal = ToHex(terminal_number);
  return InTransaction([&]() -> HostResult<Done> {
    auto load =
        connection_.Query("SELECT state FROM host_loads WHERE terminal_number = ? AND trace = ?",
                          {terminal, static_cast<std::int64_t>(trace)});
    if (!load.ok()) return FromError(load.error());
    if (load->empty()) {
      return Fail(ResponseCode::kUnableToLocateRecord, "no load " + LoadId(terminal, trace));
    }
    const std::string state = (*load)[0].Text(0);
    if (state == "reversed") return Done{};
    if (state != "pending") {
      return Fail(ResponseCode::kInvalidTransaction, "the load was " + state + ": not reversed");
    }
    return ReleaseLoad(terminal, trace);
  });
}

HostResult<Done> Host::ReleaseLoad(const std::string& terminal, std::uint32_t trace) {
  auto voided = ledger_.Void(LoadId(terminal, trace));
  if (!voided.ok()) return FromError(voided.error());
  auto updated = connection_.Execute(
      "UPDATE host_loads SET state = 'reversed' WHERE terminal_number = ? AND trace = ?",
      {terminal, static_cast<std::int64_t>(trace)});
  if (!updated.ok()) return FromError(updated.error());
  return Done{};
}

HostResult<std::string> Host::DecidePendingLoad(const std::string& terminal, std::uint32_t trace) {
  auto load = ReadLoad(terminal, trace);
  if (!load.ok()) return load.error();
  if (load->Text("state") != "pending") return load->Text("state");
  // The card's online serial counts its completed loads (pboc-ed-ep.md). Made with serial S, this
  // load was credited if the card later reported a higher serial: a completed later load left
  // the card state at S + 2 or more, a pending one says so itself. It was not credited if another
  // load was credited at S (the card state at S + 1) or asked later with S again. A load reversed
  // since is no evidence either way: the load waits for the card's next one.
  const std::int64_t serial = load->Int("online_serial");
  const std::optional<std::int64_t> known = load->OptionalInt("known_online_serial");
  auto others = connection_.Query(
      "SELECT MAX(online_serial) AS highest,"
      " MAX(CASE WHEN online_serial = ? AND created_at_us > ? THEN 1 ELSE 0 END) AS again"
      " FROM host_loads WHERE asn = ? AND type = ? AND state = 'pending' AND online_serial >= ?"
      " AND NOT (terminal_number = ? AND trace = ?)",
      {serial, load->Int("created_at_us"), load->Text("asn"), load->Int("type"), serial, terminal,
       static_cast<std::int64_t>(trace)});
  if (!others.ok()) return FromError(others.error());
  const store::Row& pending = (*others)[0];
  const bool later_pending = !pending.IsNull("highest") && pending.Int("highest") > serial;
  if ((known && *known >= serial + 2) || later_pending) {
    // Completed as a confirmation would: the purchases in transit held, the overdraw repaid.
    auto completed = CompleteCreditedLoad(*load, RepaidBy(*load));
    if (!completed.ok()) return completed.error();
    return std::string("completed");
  }
  const bool asked_again = !pending.IsNull("again") && pending.Int("again") == 1;
  if ((known && *known == serial + 1) || asked_again) {
    auto released = ReleaseLoad(terminal, trace);
    if (!released.ok()) return released.error();
    return std::string("reversed");
  }
  return std::string("pending");
}

HostResult<std::vector<LoadReconciliation>> Host::ReconcileLoads(std::int64_t created_before_us) {
  std::vector<LoadReconciliation> decisions;
  auto done = InTransaction([&]() -> HostResult<Done> {
    decisions.clear();
    auto pending = connection_.Query(
        "SELECT terminal_number, trace FROM host_loads WHERE state = 'pending'"
        " AND created_at_us < ? ORDER BY created_at_us, terminal_number, trace",
        {created_before_us});
    if (!pending.ok()) return FromError(pending.error());
    for (const store::Row& row : *pending) {
      // One at a time, each read afresh: deciding one changes the card state the next of the
      // same card is measured against.
      LoadReconciliation decision{row.Text(0), static_cast<std::uint32_t>(row.Int(1)), ""};
      auto state = DecidePendingLoad(decision.terminal_number, decision.trace);
      if (!state.ok()) return state.error();
      decision.state = *state;
      decisions.push_back(decision);
    }
    return Done{};
  });
  if (!done.ok()) return done.error();
  return decisions;
}

HostResult<Balances> Host::BalanceInquiry(ByteView asn_bytes) {
  const std::string asn = ToHex(asn_bytes);
  auto card = connection_.Query("SELECT person_id FROM host_cards WHERE asn = ?", {asn});
  if (!card.ok()) return FromError(card.error());
  if (card->empty()) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
  Balances balances;
  auto medical = ledger_.FindAccount(ledger::AccountId::Medical((*card)[0].Text(0)));
  if (!medical.ok()) return FromError(medical.error());
  if (*medical) balances.medical_account = (*medical)->available();
  for (ledger::Wallet wallet : {ledger::Wallet::kEd, ledger::Wallet::kEp}) {
    auto account = ledger_.FindAccount(ledger::AccountId::CardFloat(asn, wallet));
    if (!account.ok()) return FromError(account.error());
    std::int64_t balance = *account ? (*account)->balance : 0;
    (wallet == ledger::Wallet::kEd ? balances.card_ed : balances.card_ep) = balance;
  }
  return balances;
}

// ---- Clearing ---------------------------------------------------------------------------------

namespace {

// A card wallet as clearing knows it while it clears one batch: read once for the batch, then
// kept up to date in memory as the batch's records change it, written back once at the end.
struct ClearingWallet {
  std::optional<std::string> blacklisted_at;
  std::optional<std::int64_t> last_serial;   // host_card_wallets.last_offline_serial
  std::int64_t held = 0;                     // its money in suspense awaiting uploads
  std::int64_t known_balance = 0;            // the ledger's card state: what the card last reported
  std::optional<std::int64_t> state_serial;  // the offline serial of that card state
  std::int64_t overdraw_limit = 0, overdraw_used = 0;  // ED: host_card_wallets' (migration 8)
  bool changed = false;
};

std::string WalletKey(const std::string& asn, std::string_view wallet) {
  return asn + "/" + std::string(wallet);
}

// What host_gaps says about one serial of a wallet.
enum class GapState { kNone, kOpen, kClosed };

// The serial before a wallet's first purchase (docs/host.md "Clearing rules" 5): the host
// registers a card fresh (balance 0, RegisterCard) and a fresh card's first purchase in each
// wallet has offline serial 0; loads use the online serial and leave the offline one as it was.
// So a wallet with nothing cleared yet has its gaps counted from 0, as if serial -1 was cleared.
constexpr std::int64_t kBeforeFirstOfflineSerial = -1;

std::int64_t LastOfflineSerial(const ClearingWallet& wallet) {
  return wallet.last_serial.value_or(kBeforeFirstOfflineSerial);
}

}  // namespace

// Set-wise (docs/host.md "Clearing"): the batch's duplicates, cards and terminals are read in a few
// multi-row statements, every record is decided in order in memory (a card's later record sees
// what its earlier one changed), and the results are written in a few multi-row statements, the
// ledger's through Ledger::PostBatch. One database transaction, as before.
HostResult<std::vector<ClearingResult>> Host::ClearPurchases(
    const std::vector<PurchaseUpload>& batch) {
  std::vector<ClearingResult> results;
  // Each TAC master key version is found in the key store once per batch.
  keys::PurchaseTacVerifier tac_verifier(key_store_);
  // A TAC is checked once, even when the database asks for the transaction to run again.
  std::vector<std::optional<bool>> tac_valid(batch.size());
  struct Names {
    std::string asn, terminal, when, reference;
    std::optional<ledger::Wallet> wallet;
    bool well_formed = false;
    // An ED purchase into the overdraw limit: the card spent its balance to 0 and this much
    // more (its upload says before < amount, after 0).
    std::int64_t overdraw = 0;
  };
  std::vector<Names> names(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const PurchaseUpload& u = batch[i];
    Names& n = names[i];
    n.asn = ToHex(u.asn);
    n.terminal = ToHex(u.terminal_number);
    n.when = Timestamp(u.date, u.time);
    n.reference = PurchaseReference(n.asn, u.card_offline_serial, u.type);
    n.wallet = PurchaseWallet(u.type);
    const bool chains = u.balance_before >= u.amount
                            ? u.balance_after == u.balance_before - u.amount
                            : n.wallet == ledger::Wallet::kEd && u.balance_after == 0;
    n.well_formed = n.wallet && u.asn.size() == 10 && u.terminal_number.size() == 6 &&
                    u.tac.size() == 4 && u.amount != 0 && IsValidDate(u.date) && chains;
    if (n.well_formed && u.balance_before < u.amount) {
      n.overdraw = static_cast<std::int64_t>(u.amount) - u.balance_before;
    }
  }

  auto done = InTransaction([&]() -> HostResult<Done> {
    results.assign(batch.size(), ClearingResult{});
    const std::int64_t now = Now();

    // Duplicates: the same card transaction (ASN + offline serial + type) uploaded before.
    std::unordered_set<std::string> uploaded_before;
    {
      store::Params keys;
      keys.reserve(batch.size() * 3);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        keys.emplace_back(names[i].asn);
        keys.emplace_back(batch[i].card_offline_serial);
        keys.emplace_back(batch[i].type);
      }
      auto seen = store::QueryRows(
          connection_, "WITH v(asn, offline_serial, type) AS (VALUES ",
          "(?, CAST(? AS BIGINT), CAST(? AS BIGINT))", 3, std::move(keys),
          ") SELECT p.asn, p.offline_serial, p.type FROM v JOIN host_purchases p"
          " ON p.asn = v.asn AND p.offline_serial = v.offline_serial AND p.type = v.type");
      if (!seen.ok()) return FromError(seen.error());
      for (const store::Row& row : *seen) {
        uploaded_before.insert(
            PurchaseReference(row.Text(0), row.Int(1), static_cast<int>(row.Int(2))));
      }
    }

    // The cards' wallets with the ledger's card state, and the terminals' merchants.
    std::unordered_map<std::string, ClearingWallet> wallets;
    std::unordered_map<std::string, std::string> merchant_of_terminal;
    {
      store::Params wallet_keys, terminals;
      std::unordered_set<std::string> asked;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Names& n = names[i];
        if (!n.well_formed) continue;
        const std::string_view wallet = ledger::WalletName(*n.wallet);
        if (asked.insert(WalletKey(n.asn, wallet)).second) {
          wallet_keys.emplace_back(n.asn);
          wallet_keys.emplace_back(wallet);
        }
        if (asked.insert("terminal/" + n.terminal).second) terminals.emplace_back(n.terminal);
      }
      auto cards = store::QueryRows(
          connection_, "WITH v(asn, wallet) AS (VALUES ", "(?, ?)", 2, std::move(wallet_keys),
          ") SELECT c.asn, w.wallet, c.blacklisted_at, w.last_offline_serial,"
          " w.held_in_suspense, s.balance, s.offline_serial AS state_serial, w.overdraw_limit,"
          " w.overdraw_used FROM v"
          " JOIN host_cards c ON c.asn = v.asn"
          " JOIN host_card_wallets w ON w.asn = c.asn AND w.wallet = v.wallet"
          " LEFT JOIN ledger_card_state s ON s.asn = c.asn AND s.wallet = w.wallet");
      if (!cards.ok()) return FromError(cards.error());
      for (const store::Row& row : *cards) {
        wallets[WalletKey(row.Text(0), row.Text(1))] = {
            .blacklisted_at = row.OptionalText("blacklisted_at"),
            .last_serial = row.OptionalInt("last_offline_serial"),
            .held = row.Int("held_in_suspense"),
            .known_balance = row.OptionalInt("balance").value_or(0),
            .state_serial = row.OptionalInt("state_serial"),
            .overdraw_limit = row.Int("overdraw_limit"),
            .overdraw_used = row.Int("overdraw_used")};
      }
      auto merchants = store::QueryRows(connection_,
                                        "SELECT terminal_number, merchant_id FROM host_terminals"
                                        " WHERE terminal_number IN (",
                                        "?", 1, std::move(terminals), ")");
      if (!merchants.ok()) return FromError(merchants.error());
      for (const store::Row& row : *merchants) {
        merchant_of_terminal.emplace(row.Text(0), row.Text(1));
      }
    }

    // Gaps read on demand (a serial at or below the card's last one: rare), with what this batch
    // opened and closed on top.
    std::unordered_map<std::string, GapState> gaps;
    store::Params gaps_opened;
    std::vector<std::string> gaps_closed;  // keys into `gaps`
    auto gap_state = [&](const std::string& asn, std::string_view wallet,
                         std::int64_t serial) -> HostResult<GapState> {
      const std::string key = WalletKey(asn, wallet) + "/" + std::to_string(serial);
      if (auto known = gaps.find(key); known != gaps.end()) return known->second;
      auto gap = connection_.Query(
          "SELECT closed_at_us FROM host_gaps WHERE asn = ? AND wallet = ? AND"
          " offline_serial = ?",
          {asn, wallet, serial});
      if (!gap.ok()) return FromError(gap.error());
      const GapState state = gap->empty()          ? GapState::kNone
                             : (*gap)[0].IsNull(0) ? GapState::kOpen
                                                   : GapState::kClosed;
      gaps.emplace(key, state);
      return state;
    };

    // Serials [from, to) of a wallet become open gaps.
    auto open_gaps = [&](const std::string& asn, std::string_view wallet, std::int64_t from,
                         std::int64_t to) {
      for (std::int64_t s = from; s < to; ++s) {
        gaps[WalletKey(asn, wallet) + "/" + std::to_string(s)] = GapState::kOpen;
        AppendValues(gaps_opened, asn, wallet, s, now);
      }
    };

    std::vector<ledger::Transfer> transfers;
    store::Params purchase_rows, suspense_rows;
    purchase_rows.reserve(batch.size() * 12);
    std::unordered_set<std::string> recorded;  // in this batch
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const PurchaseUpload& upload = batch[i];
      const Names& n = names[i];
      const std::int64_t serial = upload.card_offline_serial;
      if (uploaded_before.contains(n.reference) || !recorded.insert(n.reference).second) {
        results[i] = {ClearingOutcome::kDuplicate, ""};
        continue;
      }

      std::string reason;
      const std::string* merchant = nullptr;
      ClearingWallet* card = nullptr;
      if (!n.well_formed) reason = kReasonBadRecord;
      if (reason.empty()) {
        auto found = wallets.find(WalletKey(n.asn, ledger::WalletName(*n.wallet)));
        if (found == wallets.end()) {
          reason = kReasonUnknownCard;
        } else {
          card = &found->second;
        }
      }
      if (reason.empty()) {
        auto known = merchant_of_terminal.find(n.terminal);
        if (known == merchant_of_terminal.end()) {
          reason = "terminal " + n.terminal + " not registered";
        } else {
          merchant = &known->second;
        }
      }
      if (reason.empty()) {
        if (!tac_valid[i]) {
          keys::PurchaseRecord record{.asn = upload.asn,
                                      .type = upload.type,
                                      .amount = upload.amount,
                                      .terminal_number = upload.terminal_number,
                                      .terminal_serial = upload.terminal_serial,
                                      .date = upload.date,
                                      .time = upload.time,
                                      .key_version = upload.key_version,
                                      .tac = upload.tac};
          tac_valid[i] = tac_verifier.Verify(record).ok();
        }
        if (!*tac_valid[i]) reason = kReasonTacInvalid;
      }
      // From here on the card really made this debit (its TAC says so): the money leaves the
      // card float either to the merchant or to suspense, and the card's state follows it.
      bool late = false;  // fills a gap: its money was moved to suspense when the gap opened
      bool money_leaves_float = false;
      std::optional<ledger::CardState> card_state;
      if (reason.empty() && n.overdraw > 0) {
        // ED overdraw (docs/host.md "ED overdraw"): cleared only as the card's next transaction
        // from the balance the host knows, within the limit; the balance it had comes from the
        // card float, the rest is the bank's credit to the cardholder (the card's overdraft).
        const bool next = serial == LastOfflineSerial(*card) + 1;
        if (!next || upload.balance_before != card->known_balance ||
            (card->blacklisted_at && n.when >= *card->blacklisted_at)) {
          reason = kReasonOverdrawReview;
        } else if (n.overdraw > card->overdraw_limit - card->overdraw_used) {
          reason = kReasonOverdrawLimit;
        } else {
          const ledger::CardState drained{
              .asn = n.asn, .wallet = ledger::Wallet::kEd, .balance = 0, .offline_serial = serial};
          if (upload.balance_before > 0) {
            transfers.push_back({.id = "purchase/" + n.reference,
                                 .debit = ledger::AccountId::CardFloat(n.asn, ledger::Wallet::kEd),
                                 .credit = ledger::AccountId::Merchant(*merchant),
                                 .amount = upload.balance_before,
                                 .cause = {ledger::cause::kPurchase, n.reference},
                                 .card_state = drained});
            if (!card->state_serial || serial >= *card->state_serial) card->state_serial = serial;
          }
          transfers.push_back({.id = "overdraft/" + n.reference,
                               .debit = ledger::AccountId::Overdraft(n.asn),
                               .credit = ledger::AccountId::Merchant(*merchant),
                               .amount = n.overdraw,
                               .cause = {ledger::cause::kOverdraft, n.reference}});
          card->known_balance = 0;
          card->overdraw_used += n.overdraw;
          card->last_serial = serial;
          card->changed = true;
        }
      } else if (reason.empty()) {
        const ledger::Wallet wallet = *n.wallet;
        const std::string_view wallet_name = ledger::WalletName(wallet);
        // Gaps are only ever opened below the card's last reported serial: a serial above it
        // cannot fill one, and the common case reads no gap.
        bool fills_gap = false;
        bool advances_serial = false;  // a purchase in transit still moves the serial on
        const std::int64_t last_serial = LastOfflineSerial(*card);
        if (serial <= last_serial) {
          auto gap = gap_state(n.asn, wallet_name, serial);
          if (!gap.ok()) return gap.error();
          fills_gap = *gap == GapState::kOpen;
        }
        if (fills_gap) {
          late = true;
          const std::string key = WalletKey(n.asn, wallet_name) + "/" + std::to_string(serial);
          gaps[key] = GapState::kClosed;
          gaps_closed.push_back(key);
        } else if (serial <= last_serial) {
          // Older than what the card last reported, and not a missing upload: out of chain.
          reason = kReasonBalanceChain;
        } else if (serial == last_serial + 1) {
          if (upload.balance_before != card->known_balance) {
            // In transit: made before a load whose INITIALIZE FOR LOAD showed its money gone
            // (ConfirmLoad moved it to suspense); the chain then continues after the load.
            if (card->held >= upload.amount) {
              late = true;
              advances_serial = true;
            } else {
              reason = kReasonBalanceChain;
            }
          }
        } else if (!card->last_serial && card->held > 0 &&
                   upload.balance_before != card->known_balance) {
          // A wallet's first upload, serials below it missing, and money of purchases in transit
          // held since a load: taken as one of those purchases made before the load, as the
          // next serial would be; the missing ones are gaps whose money is held already.
          // (Made after the load with others missing is possible too: the balances cannot tell
          // the two apart, docs/host.md "Clearing rules" 5.)
          if (card->held >= upload.amount) {
            late = true;
            advances_serial = true;
            open_gaps(n.asn, wallet_name, last_serial + 1, serial);
          } else {
            reason = kReasonBalanceChain;
          }
        } else {
          // Serials between the last known (or, for a wallet's first upload, from 0) and this one
          // were not uploaded: each is a gap, and what they took from the card (known − before)
          // waits in suspense. Other terminals upload in their own order (their own day ends).
          const std::int64_t missing = card->known_balance - upload.balance_before;
          if (missing < 0) {
            reason = kReasonBalanceChain;
          } else {
            open_gaps(n.asn, wallet_name, last_serial + 1, serial);
            if (missing > 0) {
              card->held += missing;
              card->changed = true;
              transfers.push_back({.id = "gap/" + n.reference,
                                   .debit = ledger::AccountId::CardFloat(n.asn, wallet),
                                   .credit = ledger::AccountId::Suspense(),
                                   .amount = missing,
                                   .cause = {ledger::cause::kSuspense, "gap/" + n.reference}});
            }
          }
        }
        if (reason.empty() || reason == kReasonBlacklisted) money_leaves_float = !late;
        if (reason.empty() && card->blacklisted_at && n.when >= *card->blacklisted_at) {
          reason = kReasonBlacklisted;
          money_leaves_float = !late;
        }
        if (late) {
          // Its money is in suspense already: no longer waiting for this upload.
          card->held -= std::min<std::int64_t>(card->held, upload.amount);
          if (advances_serial) card->last_serial = serial;
          card->changed = true;
        }
        if (!late && money_leaves_float) {
          card_state = ledger::CardState{.asn = n.asn,
                                         .wallet = wallet,
                                         .balance = upload.balance_after,
                                         .offline_serial = serial};
        }
      }

      if (money_leaves_float || (late && reason.empty())) {
        const bool to_merchant = reason.empty();
        transfers.push_back(
            {.id = "purchase/" + n.reference,
             .debit = late ? ledger::AccountId::Suspense()
                           : ledger::AccountId::CardFloat(n.asn, *n.wallet),
             .credit = to_merchant ? ledger::AccountId::Merchant(*merchant)
                                   : ledger::AccountId::Suspense(),
             .amount = upload.amount,
             .cause = {to_merchant ? ledger::cause::kPurchase : ledger::cause::kSuspense,
                       n.reference},
             .card_state = card_state});
        if (card_state) {
          // As the ledger applies it: unless older than the stored card state.
          if (!card->state_serial || serial >= *card->state_serial) {
            card->known_balance = upload.balance_after;
            card->state_serial = serial;
          }
          card->last_serial = serial;
          card->changed = true;
        }
      }

      results[i] = {reason.empty() ? ClearingOutcome::kAccepted : ClearingOutcome::kSuspense,
                    reason};
      AppendValues(purchase_rows, n.asn, serial, upload.type, upload.amount, upload.balance_before,
                   upload.balance_after, n.terminal, upload.terminal_serial, n.when,
                   ToHex(upload.tac), ClearingOutcomeName(results[i].outcome), reason);
      if (!reason.empty()) {
        // A blacklisted card's purchase is the one refusal whose money left the card float (or
        // was in suspense already): the reviewer pays or refunds it.
        const bool money_held = reason == kReasonBlacklisted;
        AppendValues(suspense_rows, n.asn, serial, upload.type, upload.amount, reason, now,
                     money_held);
      }
    }

    // Everything the batch decided, written set-wise.
    auto opened = store::ExecuteRows(
        connection_, "INSERT INTO host_gaps (asn, wallet, offline_serial, opened_at_us) VALUES ",
        "(?, ?, ?, ?)", 4, std::move(gaps_opened));
    if (!opened.ok()) return FromError(opened.error());
    for (const std::string& key : gaps_closed) {
      // key: <asn>/<wallet>/<serial> (WalletKey + serial)
      const std::size_t first = key.find('/'), second = key.find('/', first + 1);
      auto closed = connection_.Execute(
          "UPDATE host_gaps SET closed_at_us = ? WHERE asn = ? AND wallet = ? AND"
          " offline_serial = ?",
          {now, key.substr(0, first), key.substr(first + 1, second - first - 1),
           std::stoll(key.substr(second + 1))});
      if (!closed.ok()) return FromError(closed.error());
    }
    if (!transfers.empty()) {
      auto posted = ledger_.PostBatch(transfers);
      if (!posted.ok()) return FromError(posted.error());
    }
    store::Params wallet_rows;
    for (const auto& [key, wallet] : wallets) {
      if (!wallet.changed) continue;
      const std::size_t slash = key.find('/');
      AppendValues(wallet_rows, key.substr(0, slash), key.substr(slash + 1), wallet.last_serial,
                   wallet.held, wallet.overdraw_used);
    }
    auto moved = store::ExecuteRows(
        connection_,
        "WITH v(asn, wallet, last_offline_serial, held_in_suspense, overdraw_used) AS (VALUES ",
        "(?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))", 5,
        std::move(wallet_rows),
        ") UPDATE host_card_wallets SET last_offline_serial = v.last_offline_serial,"
        " held_in_suspense = v.held_in_suspense, overdraw_used = v.overdraw_used FROM v"
        " WHERE host_card_wallets.asn = v.asn AND host_card_wallets.wallet = v.wallet");
    if (!moved.ok()) return FromError(moved.error());
    auto recorded_rows = store::ExecuteRows(
        connection_,
        "INSERT INTO host_purchases (asn, offline_serial, type, amount, balance_before,"
        " balance_after, terminal_number, terminal_serial, txn_time, tac, outcome, reason)"
        " VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", 12, std::move(purchase_rows));
    if (!recorded_rows.ok()) return FromError(recorded_rows.error());
    auto queued = store::ExecuteRows(
        connection_,
        "INSERT INTO host_suspense (asn, offline_serial, type, amount, reason, created_at_us,"
        " money_held) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?)", 7, std::move(suspense_rows));
    if (!queued.ok()) return FromError(queued.error());
    return Done{};
  });
  if (!done.ok()) return done.error();
  return results;
}

HostResult<std::vector<SuspenseItem>> Host::ReviewQueue() {
  auto rows = connection_.Query(
      "SELECT id, asn, offline_serial, type, amount, reason, money_held FROM host_suspense"
      " WHERE resolution IS NULL ORDER BY id");
  if (!rows.ok()) return FromError(rows.error());
  std::vector<SuspenseItem> items;
  for (const store::Row& row : *rows) {
    items.push_back({row.Int("id"), row.Text("asn"), row.Int("offline_serial"),
                     static_cast<int>(row.Int("type")), row.Int("amount"), row.Text("reason"),
                     row.Int("money_held") != 0});
  }
  return items;
}

std::string_view SuspenseDecisionName(SuspenseDecision decision) {
  switch (decision) {
    case SuspenseDecision::kPayMerchant:
      return "pay-merchant";
    case SuspenseDecision::kRefundCardholder:
      return "refund-cardholder";
    case SuspenseDecision::kReject:
      return "reject";
  }
  return "?";
}

std::optional<SuspenseDecision> ParseSuspenseDecision(std::string_view name) {
  for (SuspenseDecision d : {SuspenseDecision::kPayMerchant, SuspenseDecision::kRefundCardholder,
                             SuspenseDecision::kReject}) {
    if (SuspenseDecisionName(d) == name) return d;
  }
  return std::nullopt;
}

HostResult<Done> Host::ResolveSuspense(const SuspenseResolution& resolution) {
  if (resolution.reviewer.empty()) {
    return Fail(ResponseCode::kFormatError, "a resolution names its reviewer");
  }
  if (resolution.decision == SuspenseDecision::kReject && resolution.note.empty()) {
    return Fail(ResponseCode::kFormatError, "a rejection says why (a note)");
  }
  const std::string decision(SuspenseDecisionName(resolution.decision));
  return InTransaction([&]() -> HostResult<Done> {
    auto item = connection_.Query(
        "SELECT s.amount, s.money_held, s.resolution, c.person_id, t.merchant_id"
        " FROM host_suspense s"
        " LEFT JOIN host_cards c ON c.asn = s.asn"
        " LEFT JOIN host_purchases p ON p.asn = s.asn AND p.offline_serial = s.offline_serial"
        "   AND p.type = s.type"
        " LEFT JOIN host_terminals t ON t.terminal_number = p.terminal_number WHERE s.id = ?",
        {resolution.item_id});
    if (!item.ok()) return FromError(item.error());
    if (item->empty()) {
      return Fail(ResponseCode::kUnableToLocateRecord,
                  "no review item " + std::to_string(resolution.item_id));
    }
    const store::Row& row = (*item)[0];
    if (auto previous = row.OptionalText("resolution")) {
      if (*previous == decision) return Done{};  // a replay
      return Fail(ResponseCode::kDuplicateTransmission, "review item " +
                                                            std::to_string(resolution.item_id) +
                                                            " was resolved already: " + *previous);
    }
    const bool money_held = row.Int("money_held") != 0;
    const std::string id = "review/" + std::to_string(resolution.item_id);
    if (resolution.decision == SuspenseDecision::kReject) {
      if (money_held) {
        return Fail(ResponseCode::kInvalidTransaction,
                    "its money is held in suspense: pay the merchant or refund the cardholder");
      }
    } else {
      if (!money_held) {
        return Fail(ResponseCode::kInvalidTransaction,
                    "no money is held for this item (the card float never paid it): reject it");
      }
      ledger::AccountId to;
      if (resolution.decision == SuspenseDecision::kPayMerchant) {
        auto merchant = row.OptionalText("merchant_id");
        if (!merchant) return Fail(ResponseCode::kInvalidMerchant, "the purchase has no merchant");
        to = ledger::AccountId::Merchant(*merchant);
      } else {
        auto person = row.OptionalText("person_id");
        if (!person) return Fail(ResponseCode::kInvalidCard, "the card has no cardholder");
        to = ledger::AccountId::Medical(*person);
      }
      auto posted = ledger_.Post({.id = id,
                                  .debit = ledger::AccountId::Suspense(),
                                  .credit = to,
                                  .amount = row.Int("amount"),
                                  .cause = {ledger::cause::kSuspense, id}});
      if (!posted.ok()) return FromError(posted.error());
    }
    auto resolved = connection_.Execute(
        "UPDATE host_suspense SET resolution = ?, resolved_by = ?, resolution_note = ?,"
        " resolved_at_us = ? WHERE id = ?",
        {decision, resolution.reviewer, resolution.note, Now(), resolution.item_id});
    if (!resolved.ok()) return FromError(resolved.error());
    return Done{};
  });
}

HostResult<std::vector<SerialGap>> Host::OpenGaps() {
  auto rows = connection_.Query(
      "SELECT asn, wallet, offline_serial, opened_at_us FROM host_gaps"
      " WHERE closed_at_us IS NULL ORDER BY asn, wallet, offline_serial");
  if (!rows.ok()) return FromError(rows.error());
  std::vector<SerialGap> gaps;
  for (const store::Row& row : *rows) {
    gaps.push_back({row.Text(0), row.Text(1), row.Int(2), row.Int(3)});
  }
  return gaps;
}

// ---- Blacklist --------------------------------------------------------------------------------

HostResult<std::int64_t> Host::AddToBlacklist(ByteView asn_bytes, const std::string& effective_at) {
  const std::string asn = ToHex(asn_bytes);
  if (effective_at.size() != 14) {
    return Fail(ResponseCode::kFormatError, "blacklisting time is YYYYMMDDhhmmss");
  }
  std::int64_t version = 0;
  auto done = InTransaction([&]() -> HostResult<Done> {
    auto card = connection_.Query("SELECT blacklisted_at FROM host_cards WHERE asn = ?", {asn});
    if (!card.ok()) return FromError(card.error());
    if (card->empty()) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    auto updated = connection_.Execute(
        "UPDATE host_cards SET status = 'blacklisted', blacklisted_at = ? WHERE asn = ?",
        {effective_at, asn});
    if (!updated.ok()) return FromError(updated.error());
    auto entry = InsertBlacklistEntry(asn, "add", effective_at);
    if (!entry.ok()) return entry.error();
    version = *entry;
    return Done{};
  });
  if (!done.ok()) return done.error();
  return version;
}

HostResult<std::int64_t> Host::RemoveFromBlacklist(ByteView asn_bytes) {
  const std::string asn = ToHex(asn_bytes);
  std::int64_t version = 0;
  auto done = InTransaction([&]() -> HostResult<Done> {
    auto updated = connection_.Execute(
        "UPDATE host_cards SET status = 'active', blacklisted_at = NULL WHERE asn = ?", {asn});
    if (!updated.ok()) return FromError(updated.error());
    if (*updated == 0) return Fail(ResponseCode::kInvalidCard, "card " + asn + " unknown");
    auto entry = InsertBlacklistEntry(asn, "remove", "");
    if (!entry.ok()) return entry.error();
    version = *entry;
    return Done{};
  });
  if (!done.ok()) return done.error();
  return version;
}

// Entry numbers never repeat, even after the database was restored from a backup: a number is
// at least the seconds since 2020-01-01 UTC, so the numbers a restored host gives lie beyond
// those it gave before the restore (unless it gave more than one a second for a while), and a
// terminal holding a version from before the restore is not taken to hold the new changes. The
// gateway sends such a terminal the whole list (docs/host.md "Versions").
HostResult<std::int64_t> Host::InsertBlacklistEntry(const std::string& asn,
                                                    const std::string& action,
                                                    const std::string& effective_at) {
  constexpr std::int64_t k20200101 = 1577836800;  // seconds since 1970-01-01 UTC
  auto last = connection_.Query("SELECT MAX(version) FROM host_blacklist");
  if (!last.ok()) return FromError(last.error());
  const std::int64_t after_last = (*last)[0].IsNull(0) ? 1 : (*last)[0].Int(0) + 1;
  const std::int64_t number = std::max(after_last, Now() / 1'000'000 - k20200101);
  // The wire carries number + 1 in 4 bytes (5.6.11): that lasts until 2156.
  if (number >= 0xFFFFFFFFLL) return Fail(ResponseCode::kSystemMalfunction, "blacklist full");
  const bool postgres = connection_.engine() == store::Engine::kPostgres;
  auto inserted = connection_.Execute(
      std::string("INSERT INTO host_blacklist (version, asn, action, effective_at) ") +
          (postgres ? "OVERRIDING SYSTEM VALUE " : "") + "VALUES (?, ?, ?, ?)",
      {number, asn, action, effective_at});
  if (!inserted.ok()) return FromError(inserted.error());
  return number;
}

HostResult<std::vector<BlacklistEntry>> Host::BlacklistSince(std::int64_t version) {
  auto rows = connection_.Query(
      "SELECT version, asn, action, effective_at FROM host_blacklist WHERE version > ?"
      " ORDER BY version",
      {version});
  if (!rows.ok()) return FromError(rows.error());
  std::vector<BlacklistEntry> entries;
  for (const store::Row& row : *rows) {
    entries.push_back({row.Int(0), row.Text(1), row.Text(2) == "add", row.Text(3)});
  }
  return entries;
}

// ---- Settlement -------------------------------------------------------------------------------

HostResult<Bytes> Host::Settle(ByteView terminal_number, const Date& day, ByteView challenge,
                               ByteView totals_answer) {
  return SettleOrRecord(terminal_number, day, challenge, totals_answer, /*exception=*/false);
}

HostResult<Done> Host::RecordSettlementException(ByteView terminal_number, const Date& day,
                                                 ByteView challenge, ByteView totals_answer) {
  auto recorded =
      SettleOrRecord(terminal_number, day, challenge, totals_answer, /*exception=*/true);
  if (!recorded.ok() && recorded.error().code != ResponseCode::kReconciliationError) {
    return recorded.error();
  }
  return Done{};
}

HostResult<Bytes> Host::SettleOrRecord(ByteView terminal_number, const Date& day,
                                       ByteView challenge, ByteView totals_answer, bool exception) {
  // card-profile.md, PSAM GET SAM TOTALS: count(4) ‖ amount(6) ‖ first(4) ‖ last(4) ‖ MAC(4).
  if (totals_answer.size() != 22 || challenge.size() != 8 || !IsValidDate(day)) {
    return Fail(ResponseCode::kFormatError, "settlement needs 8-byte challenge, 22-byte totals");
  }
  const std::string terminal = ToHex(terminal_number);
  const std::string day_text = DayText(day);
  const std::int64_t psam_count = ReadU32(totals_answer, 0);
  const auto psam_amount = static_cast<std::int64_t>(ReadU48(totals_answer, 4));
  const std::int64_t first = ReadU32(totals_answer, 10);
  const std::int64_t last = ReadU32(totals_answer, 14);
  Bytes acknowledgement;
  bool mismatch = false;
  std::string mismatch_text;
  auto done = InTransaction([&]() -> HostResult<Done> {
    auto term = connection_.Query(
        "SELECT psam_serial FROM host_terminals WHERE terminal_number = ?", {terminal});
    if (!term.ok()) return FromError(term.error());
    if (term->empty()) {
      return Fail(ResponseCode::kTerminalNotRegistered, "terminal " + terminal + " unknown");
    }
    const Bytes psam_serial = HexToBytes((*term)[0].Text(0));
    Status signed_by_psam =
        keys::VerifySamTotals(key_store_, psam_serial, challenge, totals_answer);
    if (!signed_by_psam.ok()) return FromError(signed_by_psam.error(), ResponseCode::kMacError);
    auto uploaded = connection_.Query(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM host_purchases"
        " WHERE terminal_number = ? AND terminal_serial BETWEEN ? AND ?",
        {terminal, first, last});
    if (!uploaded.ok()) return FromError(uploaded.error());
    const std::int64_t count = (*uploaded)[0].Int(0);
    const std::int64_t amount = (*uploaded)[0].Int(1);
    mismatch = exception || count != psam_count || amount != psam_amount;
    const std::string status = mismatch ? "exception" : "acknowledged";
    auto removed = connection_.Execute(
        "DELETE FROM host_settlements WHERE terminal_number = ? AND day = ? AND first_serial = ?",
        {terminal, day_text, first});
    if (!removed.ok()) return FromError(removed.error());
    auto recorded = connection_.Execute(
        "INSERT INTO host_settlements (terminal_number, day, first_serial, last_serial,"
        " psam_count, psam_amount, uploaded_count, uploaded_amount, status, settled_at_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {terminal, day_text, first, last, psam_count, psam_amount, count, amount, status, Now()});
    if (!recorded.ok()) return FromError(recorded.error());
    if (mismatch) {
      mismatch_text = "PSAM totals " + std::to_string(psam_count) + " / " +
                      std::to_string(psam_amount) + " fen, uploaded " + std::to_string(count) +
                      " / " + std::to_string(amount) + " fen";
      return Done{};  // the exception is recorded (committed); the PSAM keeps its totals
    }
    auto ack = keys::AcknowledgeSamTotals(key_store_, psam_serial, challenge, totals_answer);
    if (!ack.ok()) return FromError(ack.error());
    acknowledgement = *ack;
    return Done{};
  });
  if (!done.ok()) return done.error();
  if (mismatch) return Fail(ResponseCode::kReconciliationError, mismatch_text);
  return acknowledgement;
}

HostResult<std::vector<Settlement>> Host::Settlements(ByteView terminal_number) {
  auto rows = connection_.Query(
      "SELECT * FROM host_settlements WHERE terminal_number = ? ORDER BY day, first_serial",
      {ToHex(terminal_number)});
  if (!rows.ok()) return FromError(rows.error());
  std::vector<Settlement> settlements;
  for (const store::Row& row : *rows) {
    settlements.push_back({row.Text("terminal_number"), row.Text("day"), row.Int("first_serial"),
                           row.Int("last_serial"), row.Int("psam_count"), row.Int("psam_amount"),
                           row.Int("uploaded_count"), row.Int("uploaded_amount"),
                           row.Text("status")});
  }
  return settlements;
}

HostResult<std::string> Host::MerchantSettlementCsv() {
  auto rows = connection_.Query(
      "SELECT t.merchant_id, SUBSTR(p.txn_time, 1, 8) AS day,"
      " SUM(CASE WHEN p.outcome = 'accepted' THEN 1 ELSE 0 END) AS accepted_count,"
      " SUM(CASE WHEN p.outcome = 'accepted' THEN p.amount ELSE 0 END) AS accepted_fen,"
      " SUM(CASE WHEN p.outcome = 'suspense' THEN 1 ELSE 0 END) AS suspense_count,"
      " SUM(CASE WHEN p.outcome = 'suspense' THEN p.amount ELSE 0 END) AS suspense_fen,"
      // Of those, what a reviewer later paid to the merchant (the merchant's account has it).
      " SUM(CASE WHEN s.resolution = 'pay-merchant' THEN 1 ELSE 0 END) AS paid_on_review_count,"
      " SUM(CASE WHEN s.resolution = 'pay-merchant' THEN p.amount ELSE 0 END)"
      "   AS paid_on_review_fen"
      " FROM host_purchases p JOIN host_terminals t ON t.terminal_number = p.terminal_number"
      " LEFT JOIN host_suspense s ON p.outcome = 'suspense' AND s.asn = p.asn"
      "   AND s.offline_serial = p.offline_serial AND s.type = p.type"
      " GROUP BY t.merchant_id, SUBSTR(p.txn_time, 1, 8) ORDER BY t.merchant_id, day");
  if (!rows.ok()) return FromError(rows.error());
  std::string csv =
      "merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen,"
      "paid_on_review_count,paid_on_review_fen\n";
  for (const store::Row& row : *rows) {
    // Merchant ids are ours (no commas or quotes are accepted at registration).
    csv += row.Text(0) + "," + row.Text(1) + "," + row["accepted_count"].ToString() + "," +
           row["accepted_fen"].ToString() + "," + row["suspense_count"].ToString() + "," +
           row["suspense_fen"].ToString() + "," + row["paid_on_review_count"].ToString() + "," +
           row["paid_on_review_fen"].ToString() + "\n";
  }
  return csv;
}

// ---- Checks -----------------------------------------------------------------------------------

HostResult<std::vector<std::string>> Host::CheckHost() { return CheckHostDatabase(connection_); }

HostResult<std::vector<std::string>> CheckHostDatabase(store::Connection& connection) {
  std::vector<std::string> problems;
  ledger::Ledger ledger(connection);
  auto report = ledger.CheckInvariants();
  if (!report.ok()) return FromError(report.error());
  for (const ledger::Problem& p : report->problems) problems.push_back(p.description);
  // Every record that left the card float has exactly one ledger transfer, and no other does.
  auto unposted = connection.Query(
      "SELECT p.asn, p.offline_serial, p.type FROM host_purchases p"
      " WHERE p.outcome = 'accepted' AND NOT EXISTS (SELECT 1 FROM ledger_transfers t"
      "   WHERE t.id IN ('purchase/' || p.asn || '/' || CAST(p.offline_serial AS TEXT) || '/' ||"
      "   CAST(p.type AS TEXT), 'overdraft/' || p.asn || '/' || CAST(p.offline_serial AS TEXT) ||"
      "   '/' || CAST(p.type AS TEXT)) AND t.state = 'posted')");
  if (!unposted.ok()) return FromError(unposted.error());
  for (const store::Row& row : *unposted) {
    problems.push_back("accepted purchase " +
                       PurchaseReference(row.Text(0), row.Int(1), static_cast<int>(row.Int(2))) +
                       " has no posted transfer");
  }
  // The suspense account holds exactly what the host holds there: money awaiting uploads (gaps,
  // purchases in transit) and blacklisted cards' purchases not yet resolved.
  auto suspense = connection.Query(
      "SELECT (SELECT COALESCE(SUM(held_in_suspense), 0) FROM host_card_wallets) AS held,"
      " (SELECT COALESCE(SUM(amount), 0) FROM host_suspense WHERE money_held = 1"
      "   AND resolution IS NULL) AS queued");
  if (!suspense.ok()) return FromError(suspense.error());
  auto account = ledger.FindAccount(ledger::AccountId::Suspense());
  if (!account.ok()) return FromError(account.error());
  const std::int64_t in_account = *account ? (*account)->balance : 0;
  const std::int64_t explained = (*suspense)[0].Int("held") + (*suspense)[0].Int("queued");
  if (in_account != explained) {
    problems.push_back("suspense holds " + std::to_string(in_account) + " fen but " +
                       std::to_string(explained) +
                       " fen are accounted for (awaiting uploads + open review items)");
  }
  // ED overdraw: each card's overdraft account owes exactly what the host counts as used
  // (docs/host.md "ED overdraw"). (The limit may have been lowered since: not a fault.)
  auto overdrafts = connection.Query(
      "SELECT COALESCE(w.asn, a.account_key) AS asn, COALESCE(w.overdraw_used, 0) AS used,"
      " COALESCE(-a.balance, 0) AS owed"
      " FROM (SELECT asn, overdraw_used FROM host_card_wallets"
      "   WHERE wallet = 'ED' AND overdraw_used <> 0) w"
      " FULL OUTER JOIN (SELECT account_key, balance FROM ledger_accounts"
      "   WHERE kind = 'overdraft' AND balance <> 0) a ON a.account_key = w.asn"
      " WHERE COALESCE(w.overdraw_used, 0) <> COALESCE(-a.balance, 0)");
  if (!overdrafts.ok()) return FromError(overdrafts.error());
  for (const store::Row& row : *overdrafts) {
    problems.push_back("card " + row.Text("asn") + ": overdraw used " +
                       std::to_string(row.Int("used")) + " fen, but its overdraft account owes " +
                       std::to_string(row.Int("owed")) + " fen");
  }
  auto pending = connection.Query(
      "SELECT l.terminal_number, l.trace, l.state, t.state AS ledger_state,"
      " a.state AS after_reversal_state FROM host_loads l"
      " JOIN ledger_transfers t ON t.id = 'load/' || l.terminal_number || '/' ||"
      " CAST(l.trace AS TEXT)"
      " LEFT JOIN ledger_transfers a ON a.id = 'load-after-reversal/' || l.terminal_number ||"
      " '/' || CAST(l.trace AS TEXT)"
      " WHERE NOT ((l.state = 'pending' AND t.state = 'pending' AND a.id IS NULL) OR"
      " (l.state = 'completed' AND t.state = 'completed' AND a.id IS NULL) OR"
      " (l.state = 'reversed' AND t.state = 'voided' AND a.id IS NULL) OR"
      // 7.7: reversed, then completed again by the card's TAC with a transfer of its own.
      " (l.state = 'completed' AND t.state = 'voided' AND a.state = 'posted'))");
  if (!pending.ok()) return FromError(pending.error());
  for (const store::Row& row : *pending) {
    problems.push_back("load " + row.Text(0) + "/" + row["trace"].ToString() + " is " +
                       row.Text("state") + " but its ledger transfer is " +
                       row.Text("ledger_state") +
                       (row.IsNull("after_reversal_state")
                            ? std::string()
                            : ", its transfer after reversal " + row.Text("after_reversal_state")));
  }
  return problems;
}

}  // namespace medcard::host
