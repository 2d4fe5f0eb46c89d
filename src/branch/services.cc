// The branch services (docs/branch.md): each action one write transaction over the branch's
// card row (guarded by its version), the host's tables, the ledger and the audit log.
#include "branch/services.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "common/bytes.h"
#include "host/host.h"
#include "ledger/ledger.h"

namespace medcard::branch {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using access::ServiceError;
using store::Done;

constexpr std::array<std::string_view, 7> kStateNames = {"applied",  "issued",   "active", "lost",
                                                         "captured", "replaced", "closed"};

// The branch's own record of a day's actions (the day-end report counts these).
constexpr char kEventApplied[] = "applied";
constexpr char kEventIssued[] = "issued";
constexpr char kEventActivated[] = "activated";
constexpr char kEventLost[] = "lost";
constexpr char kEventLossCancelled[] = "loss_cancelled";
constexpr char kEventCaptured[] = "captured";
constexpr char kEventValidityChanged[] = "validity_changed";
constexpr char kEventReplaced[] = "replaced";
constexpr char kEventClosed[] = "closed";

constexpr char kTransferScheduled[] = "scheduled";
constexpr char kTransferMoved[] = "moved";  // a closure's float moved, its refund still waiting
constexpr char kTransferDone[] = "done";
constexpr char kKindReplacement[] = "replacement";
constexpr char kKindClosure[] = "closure";
constexpr char kCauseRefund[] = "refund";
constexpr char kSystemActor[] = "host";

ServiceError Invalid(std::string message, std::string field) {
  return MakeServiceError(ErrorCode::kInvalid, std::move(message), std::move(field));
}
ServiceError Unprocessable(std::string message) {
  return MakeServiceError(ErrorCode::kUnprocessable, std::move(message));
}
ServiceError Conflict(std::string message) {
  return MakeServiceError(ErrorCode::kConflict, std::move(message));
}

// One attempt of a write transaction: the errors it converts say whether running the whole
// transaction again may succeed (a serialization failure, a busy database).
struct Attempt {
  bool retryable = false;
  ServiceError Db(const store::DbError& error) {
    retryable = retryable || error.retryable();
    return MakeServiceError(ErrorCode::kInternal, "database: " + error.message);
  }
  ServiceError Host(const host::HostError& error) {
    retryable = retryable || error.retryable;
    return MakeServiceError(ErrorCode::kInternal, "host: " + error.message);
  }
  ServiceError Ledger(const ledger::LedgerError& error) {
    retryable = retryable || error.store_kind == store::ErrorKind::kRetryable;
    return MakeServiceError(ErrorCode::kInternal, "ledger: " + error.message);
  }
  ServiceError Other(const Error& error) {
    return MakeServiceError(ErrorCode::kInternal, error.message);
  }
};

// Runs body in one write transaction, again from a clean slate while the database asks for it.
// `hook` (may be null or empty): BranchServices::SetCommitHook's, run before the commit.
template <typename T>
ServiceResult<T> RunWrite(store::Connection& connection, const BranchServices::CommitHook* hook,
                          const std::function<ServiceResult<T>(Attempt&)>& body) {
  const store::RetryPolicy policy;
  for (int attempt_number = 1;; ++attempt_number) {
    Attempt attempt;
    std::optional<ServiceResult<T>> outcome;
    auto tx = store::Transaction::Begin(connection);
    if (!tx.ok()) {
      outcome.emplace(attempt.Db(tx.error()));
    } else {
      outcome.emplace(body(attempt));
      if constexpr (std::is_constructible_v<BranchServices::ActionResult, const T&>) {
        if (outcome->ok() && hook != nullptr && *hook) {
          if (Status recorded = (*hook)(connection, BranchServices::ActionResult(**outcome));
              !recorded.ok()) {
            outcome.emplace(MakeServiceError(ErrorCode::kInternal,
                                             "recording the answer: " + recorded.error().message));
          }
        }
      }
      if (!outcome->ok()) {
        tx->Rollback();
      } else {
        auto committed = tx->Commit();
        if (!committed.ok()) outcome.emplace(attempt.Db(committed.error()));
      }
    }
    if (outcome->ok() || !attempt.retryable || attempt_number >= policy.max_attempts) {
      return std::move(*outcome);
    }
    store::BackOff(policy, attempt_number);
  }
}

// ---- Validation ---------------------------------------------------------------------------

std::optional<std::string> NormalisedAsn(std::string_view text) {
  if (text.size() != 20) return std::nullopt;
  std::string asn;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      asn += c;
    } else if (c >= 'a' && c <= 'f') {
      asn += static_cast<char>(c - 'a' + 'A');
    } else if (c >= 'A' && c <= 'F') {
      asn += c;
    } else {
      return std::nullopt;
    }
  }
  return asn;
}

bool IsToken(std::string_view text, std::size_t max, std::string_view extra) {
  if (text.empty() || text.size() > max) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           extra.find(c) != std::string_view::npos;
  });
}

// Printable ASCII (no control characters), at most `max`; empty allowed when !required.
bool IsPrintable(std::string_view text, std::size_t max, bool required) {
  if (text.size() > max || (required && text.empty())) return false;
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// ---- Time ---------------------------------------------------------------------------------

struct Civil {
  int year = 0;
  unsigned month = 0, day = 0;
  long hour = 0, minute = 0, second = 0;
};

Civil LocalCivil(std::int64_t at_us, std::int64_t utc_offset_minutes) {
  using namespace std::chrono;
  const sys_seconds t{floor<seconds>(microseconds{at_us}) + minutes{utc_offset_minutes}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{t - day};
  return {static_cast<int>(ymd.year()),
          static_cast<unsigned>(ymd.month()),
          static_cast<unsigned>(ymd.day()),
          static_cast<long>(hms.hours().count()),
          static_cast<long>(hms.minutes().count()),
          static_cast<long>(hms.seconds().count())};
}

std::string IsoDay(const Civil& c) {
  char text[16];
  std::snprintf(text, sizeof text, "%04d-%02u-%02u", c.year, c.month, c.day);
  return text;
}
std::string IsoDateTime(const Civil& c) {
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02ld:%02ld:%02ld", c.year, c.month, c.day,
                c.hour, c.minute, c.second);
  return text;
}
// The host's blacklisting time: "YYYYMMDDhhmmss", the terminals' local time.
std::string HostTimestamp(const Civil& c) {
  char text[32];
  std::snprintf(text, sizeof text, "%04d%02u%02u%02ld%02ld%02ld", c.year, c.month, c.day, c.hour,
                c.minute, c.second);
  return text;
}
// "YYYYMMDDhhmmss" → "YYYY-MM-DDThh:mm:ss"; other text unchanged.
std::string IsoFromHostTimestamp(const std::string& text) {
  if (text.size() != 14) return text;
  return text.substr(0, 4) + "-" + text.substr(4, 2) + "-" + text.substr(6, 2) + "T" +
         text.substr(8, 2) + ":" + text.substr(10, 2) + ":" + text.substr(12, 2);
}
std::string IsoDate(const Date& d) {
  char text[16];
  std::snprintf(text, sizeof text, "%04d-%02d-%02d", d.year, d.month, d.day);
  return text;
}
bool IsIsoDay(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u}) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

// ---- Rows ---------------------------------------------------------------------------------

constexpr char kCardSelect[] =
    "SELECT c.application_id, c.asn, c.person_id, c.holder_reference, c.branch, c.state,"
    " c.version, c.valid_to, c.replaces, c.replaced_by, c.created_at_us, c.updated_at_us,"
    " h.blacklisted_at FROM branch_cards c LEFT JOIN host_cards h ON h.asn = c.asn";

CardRecord CardFromRow(const store::Row& row) {
  CardRecord card;
  card.application_id = row.Int("application_id");
  card.asn = row.OptionalText("asn").value_or("");
  card.person_id = row.Text("person_id");
  card.holder_reference = row.Text("holder_reference");
  card.branch = row.Text("branch");
  card.state = ParseCardState(row.Text("state")).value_or(CardState::kApplied);
  card.version = row.Int("version");
  card.valid_to = row.OptionalText("valid_to");
  card.replaces = row.OptionalInt("replaces");
  card.replaced_by = row.OptionalInt("replaced_by");
  card.created_at_us = row.Int("created_at_us");
  card.updated_at_us = row.Int("updated_at_us");
  if (auto at = row.OptionalText("blacklisted_at")) card.blacklisted_at = IsoFromHostTimestamp(*at);
  return card;
}

constexpr char kTransferSelect[] =
    "SELECT id, asn, person_id, kind, due_at_us, state, moved_ed, moved_ep, refunded,"
    " payee_reference, done_at_us FROM branch_transfers";

ScheduledTransfer TransferFromRow(const store::Row& row) {
  ScheduledTransfer t;
  t.id = row.Int("id");
  t.asn = row.Text("asn");
  t.person_id = row.Text("person_id");
  t.kind = row.Text("kind");
  t.due_at_us = row.Int("due_at_us");
  t.state = row.Text("state");
  t.moved_ed = row.Int("moved_ed");
  t.moved_ep = row.Int("moved_ep");
  t.refunded = row.Int("refunded");
  t.payee_reference = row.Text("payee_reference");
  t.done_at_us = row.OptionalInt("done_at_us");
  return t;
}

bool StateIn(CardState state, std::initializer_list<CardState> allowed) {
  return std::find(allowed.begin(), allowed.end(), state) != allowed.end();
}

std::string StateRefusal(const CardRecord& card, std::string_view action) {
  return "card " +
         (card.asn.empty() ? "application " + std::to_string(card.application_id) : card.asn) +
         " is " + std::string(CardStateName(card.state)) + ": it cannot be " + std::string(action);
}

}  // namespace

std::string_view CardStateName(CardState state) {
  return kStateNames[static_cast<std::size_t>(state)];
}

std::optional<CardState> ParseCardState(std::string_view name) {
  for (std::size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == name) return static_cast<CardState>(i);
  }
  return std::nullopt;
}

// ---- The services' shared steps -------------------------------------------------------------

namespace {

// What a state change also sets (none: unchanged).
struct Also {
  std::optional<std::string> asn = std::nullopt;
  std::optional<std::string> valid_to = std::nullopt;
  std::optional<std::int64_t> replaced_by = std::nullopt;
};

// What one action needs inside its transaction.
struct Work {
  store::Connection& connection;
  keys::KeyStore& key_store;
  const BranchOptions& options;
  std::int64_t now_us;
  Attempt& attempt;

  host::Host MakeHost() const {
    return host::Host(connection, key_store, {.clock_us = [at = now_us] { return at; }});
  }
  Civil Local() const { return LocalCivil(now_us, options.utc_offset_minutes); }

  ServiceResult<std::optional<CardRecord>> FindByAsn(const std::string& asn) {
    auto rows = connection.Query(std::string(kCardSelect) + " WHERE c.asn = ?", {asn});
    if (!rows.ok()) return attempt.Db(rows.error());
    if (rows->empty()) return std::optional<CardRecord>();
    return std::optional<CardRecord>(CardFromRow((*rows)[0]));
  }
  ServiceResult<std::optional<CardRecord>> FindById(std::int64_t id) {
    auto rows = connection.Query(std::string(kCardSelect) + " WHERE c.application_id = ?", {id});
    if (!rows.ok()) return attempt.Db(rows.error());
    if (rows->empty()) return std::optional<CardRecord>();
    return std::optional<CardRecord>(CardFromRow((*rows)[0]));
  }
  ServiceResult<CardRecord> MustFindById(std::int64_t id) {
    auto card = FindById(id);
    if (!card.ok()) return card.error();
    if (!*card) return MakeServiceError(ErrorCode::kInternal, "the card row vanished");
    return **card;
  }

  // The card the action names, at the version the teller saw.
  ServiceResult<CardRecord> Expect(std::string_view asn_text,
                                   const std::optional<std::int64_t>& expected_version) {
    auto asn = NormalisedAsn(asn_text);
    if (!asn) return Invalid("an ASN is 20 hex digits", "asn");
    auto card = FindByAsn(*asn);
    if (!card.ok()) return card.error();
    if (!*card) return MakeServiceError(ErrorCode::kNotFound, "no card " + *asn, "asn");
    if (expected_version && *expected_version != (*card)->version) {
      return Conflict("card " + *asn + " changed (version " + std::to_string((*card)->version) +
                      ", not " + std::to_string(*expected_version) + "): read it again");
    }
    return **card;
  }

  // The state change, guarded by the version read: another teller's change in between → 409.
  ServiceResult<Done> Move(const CardRecord& card, CardState to, const Also& also = {}) {
    auto updated = connection.Execute(
        "UPDATE branch_cards SET state = ?, version = version + 1, updated_at_us = ?,"
        " asn = COALESCE(?, asn), valid_to = COALESCE(?, valid_to),"
        " replaced_by = COALESCE(?, replaced_by) WHERE application_id = ? AND version = ?",
        {std::string(CardStateName(to)), now_us, also.asn, also.valid_to, also.replaced_by,
         card.application_id, card.version});
    if (!updated.ok()) return attempt.Db(updated.error());
    if (*updated != 1) {
      return Conflict("card " + card.asn + " was changed by another action at the same time");
    }
    return Done{};
  }

  ServiceResult<Done> Record(const Actor& actor, const CardRecord& card, std::string_view event,
                             std::string_view action, nlohmann::json details) {
    const std::string branch = actor.branch.empty() ? card.branch : actor.branch;
    auto inserted = connection.Execute(
        "INSERT INTO branch_card_events (application_id, asn, branch, action, actor, day, at_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        {card.application_id, card.asn.empty() ? store::Value() : store::Value(card.asn), branch,
         event, actor.login, IsoDay(Local()), now_us});
    if (!inserted.ok()) return attempt.Db(inserted.error());
    details["application_id"] = card.application_id;
    details["branch"] = branch;
    const std::string target = card.asn.empty()
                                   ? "application:" + std::to_string(card.application_id)
                                   : "card:" + card.asn;
    auto appended = audit::AppendAt(connection,
                                    {.actor = actor.login,
                                     .authorised_by = actor.authorised_by,
                                     .action = std::string(action),
                                     .target = target,
                                     .details = details.dump(),
                                     .from = actor.from},
                                    now_us);
    if (!appended.ok()) return attempt.Other(appended.error());
    return Done{};
  }

  ServiceResult<Done> Blacklist(const CardRecord& card) {
    if (card.blacklisted_at) return Done{};  // already on it since then
    auto host = MakeHost();
    auto added = host.AddToBlacklist(HexToBytes(card.asn), HostTimestamp(Local()));
    if (!added.ok()) return attempt.Host(added.error());
    return Done{};
  }

  ServiceResult<ScheduledTransfer> Schedule(const CardRecord& card, std::string_view kind,
                                            const std::string& payee_reference) {
    auto inserted = connection.Execute(
        "INSERT INTO branch_transfers (asn, person_id, kind, due_at_us, state, payee_reference,"
        " created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
        {card.asn, card.person_id, kind, now_us + options.clearing_window_us, kTransferScheduled,
         payee_reference, now_us});
    if (!inserted.ok()) return attempt.Db(inserted.error());
    auto rows = connection.Query(std::string(kTransferSelect) + " WHERE asn = ?", {card.asn});
    if (!rows.ok()) return attempt.Db(rows.error());
    return TransferFromRow((*rows)[0]);
  }
};

nlohmann::json Details(const CardRecord& card, CardState to, const std::string& reason) {
  nlohmann::json details = {{"from_state", CardStateName(card.state)},
                            {"to_state", CardStateName(to)}};
  if (!reason.empty()) details["reason"] = reason;
  return details;
}

}  // namespace

BranchServices::BranchServices(store::Connection& connection, keys::KeyStore& key_store,
                               Options options)
    : connection_(connection), key_store_(key_store), options_(std::move(options)) {}

std::int64_t BranchServices::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- Lifecycle --------------------------------------------------------------------------------

ServiceResult<CardRecord> BranchServices::Apply(const Actor& actor,
                                                const CardApplication& application) {
  if (!IsToken(application.person_id, 32, "")) {
    return Invalid("a person id is 1 to 32 letters and digits", "person_id");
  }
  if (!IsPrintable(application.holder_reference, 64, true)) {
    return Invalid("a holder reference is 1 to 64 printable ASCII characters", "holder_reference");
  }
  if (!IsToken(application.branch, 32, "-_")) {
    return Invalid("a branch is 1 to 32 letters, digits, - or _", "branch");
  }
  const std::int64_t now = Now();
  return RunWrite<CardRecord>(
      connection_, &commit_hook_, [&](Attempt& attempt) -> ServiceResult<CardRecord> {
        Work work{connection_, key_store_, options_, now, attempt};
        auto id = connection_.InsertReturningId(
            "INSERT INTO branch_cards (person_id, holder_reference, branch, state, version,"
            " created_at_us, updated_at_us) VALUES (?, ?, ?, ?, 1, ?, ?)",
            "application_id",
            {application.person_id, application.holder_reference, application.branch,
             std::string(CardStateName(CardState::kApplied)), now, now});
        if (!id.ok()) return attempt.Db(id.error());
        auto card = work.MustFindById(id->value_or(0));
        if (!card.ok()) return card.error();
        auto recorded = work.Record(actor, *card, kEventApplied, kActionApply,
                                    {{"person_id", application.person_id},
                                     {"holder_reference", application.holder_reference}});
        if (!recorded.ok()) return recorded.error();
        return card;
      });
}

ServiceResult<CardRecord> BranchServices::Issue(const Actor& actor, const CardIssue& issue) {
  auto asn = NormalisedAsn(issue.asn);
  if (!asn) return Invalid("an ASN is 20 hex digits", "asn");
  if (issue.valid_to && !IsValidDate(*issue.valid_to)) {
    return Invalid("valid_to is not a date", "valid_to");
  }
  const std::int64_t now = Now();
  return RunWrite<CardRecord>(
      connection_, &commit_hook_, [&](Attempt& attempt) -> ServiceResult<CardRecord> {
        Work work{connection_, key_store_, options_, now, attempt};
        auto found = work.FindById(issue.application_id);
        if (!found.ok()) return found.error();
        if (!*found) {
          return MakeServiceError(ErrorCode::kNotFound,
                                  "no application " + std::to_string(issue.application_id),
                                  "application_id");
        }
        const CardRecord& card = **found;
        if (issue.expected_version && *issue.expected_version != card.version) {
          return Conflict("application " + std::to_string(card.application_id) +
                          " changed: read it again");
        }
        if (card.state != CardState::kApplied) return Unprocessable(StateRefusal(card, "issued"));
        auto other = work.FindByAsn(*asn);
        if (!other.ok()) return other.error();
        if (*other) return Unprocessable("card " + *asn + " is already issued to an application");
        auto registered_person =
            connection_.Query("SELECT person_id FROM host_cards WHERE asn = ?", {*asn});
        if (!registered_person.ok()) return attempt.Db(registered_person.error());
        if (!registered_person->empty() && (*registered_person)[0].Text(0) != card.person_id) {
          return Unprocessable("card " + *asn + " is registered to another person");
        }
        auto host = work.MakeHost();
        auto registered = host.RegisterCard({.asn = HexToBytes(*asn),
                                             .holder_reference = card.holder_reference,
                                             .person_id = card.person_id,
                                             .valid_to = issue.valid_to});
        if (!registered.ok()) return attempt.Host(registered.error());
        std::optional<std::string> valid_to;
        if (issue.valid_to) valid_to = IsoDate(*issue.valid_to);
        auto moved = work.Move(card, CardState::kIssued, {.asn = *asn, .valid_to = valid_to});
        if (!moved.ok()) return moved.error();
        auto issued = work.MustFindById(card.application_id);
        if (!issued.ok()) return issued.error();
        nlohmann::json details = Details(card, CardState::kIssued, "");
        if (valid_to) details["valid_to"] = *valid_to;
        auto recorded = work.Record(actor, *issued, kEventIssued, kActionIssue, details);
        if (!recorded.ok()) return recorded.error();
        return issued;
      });
}

namespace {

// The shape of activate, report loss, cancel loss, capture: the card at the expected version,
// in one of `from`, moved to `to` after `effect` (the host's side).
ServiceResult<CardRecord> Transition(
    store::Connection& connection, keys::KeyStore& key_store, const BranchOptions& options,
    const BranchServices::CommitHook* hook, std::int64_t now, const Actor& actor,
    const CardAction& action, std::initializer_list<CardState> from, CardState to,
    std::string_view verb, std::string_view event, std::string_view audit_action,
    const std::function<ServiceResult<Done>(Work&, const CardRecord&)>& effect) {
  if (!IsPrintable(action.reason, 200, false)) {
    return Invalid("a reason is at most 200 printable ASCII characters", "reason");
  }
  return RunWrite<CardRecord>(connection, hook, [&](Attempt& attempt) -> ServiceResult<CardRecord> {
    Work work{connection, key_store, options, now, attempt};
    auto card = work.Expect(action.asn, action.expected_version);
    if (!card.ok()) return card.error();
    if (!StateIn(card->state, from)) return Unprocessable(StateRefusal(*card, verb));
    auto done = effect(work, *card);
    if (!done.ok()) return done.error();
    auto moved = work.Move(*card, to);
    if (!moved.ok()) return moved.error();
    auto changed = work.MustFindById(card->application_id);
    if (!changed.ok()) return changed.error();
    nlohmann::json details = Details(*card, to, action.reason);
    if (changed->blacklisted_at) details["blacklisted_at"] = *changed->blacklisted_at;
    auto recorded = work.Record(actor, *changed, event, audit_action, details);
    if (!recorded.ok()) return recorded.error();
    return changed;
  });
}

ServiceResult<Done> Nothing(Work&, const CardRecord&) { return Done{}; }

}  // namespace

ServiceResult<CardRecord> BranchServices::Activate(const Actor& actor, const CardAction& action) {
  return Transition(connection_, key_store_, options_, &commit_hook_, Now(), actor, action,
                    {CardState::kIssued}, CardState::kActive, "activated", kEventActivated,
                    kActionActivate, Nothing);
}

ServiceResult<CardRecord> BranchServices::ReportLoss(const Actor& actor, const CardAction& action) {
  return Transition(connection_, key_store_, options_, &commit_hook_, Now(), actor, action,
                    {CardState::kIssued, CardState::kActive}, CardState::kLost, "reported lost",
                    kEventLost, kActionReportLoss,
                    [](Work& work, const CardRecord& card) { return work.Blacklist(card); });
}

ServiceResult<CardRecord> BranchServices::CancelLoss(const Actor& actor, const CardAction& action) {
  return Transition(connection_, key_store_, options_, &commit_hook_, Now(), actor, action,
                    {CardState::kLost}, CardState::kActive, "taken off the loss report",
                    kEventLossCancelled, kActionCancelLoss,
                    [](Work& work, const CardRecord& card) -> ServiceResult<Done> {
                      auto host = work.MakeHost();
                      auto removed = host.RemoveFromBlacklist(HexToBytes(card.asn));
                      if (!removed.ok()) return work.attempt.Host(removed.error());
                      return Done{};
                    });
}

ServiceResult<CardRecord> BranchServices::Capture(const Actor& actor, const CardAction& action) {
  return Transition(connection_, key_store_, options_, &commit_hook_, Now(), actor, action,
                    {CardState::kIssued, CardState::kActive, CardState::kLost},
                    CardState::kCaptured, "captured", kEventCaptured, kActionCapture,
                    [](Work& work, const CardRecord& card) { return work.Blacklist(card); });
}

ServiceResult<CardRecord> BranchServices::ChangeValidity(const Actor& actor,
                                                         const ValidityChange& change) {
  if (!IsValidDate(change.valid_to)) return Invalid("valid_to is not a date", "valid_to");
  const std::int64_t now = Now();
  const std::string today = IsoDay(LocalCivil(now, options_.utc_offset_minutes));
  const std::string valid_to = IsoDate(change.valid_to);
  if (valid_to < today) return Invalid("valid_to " + valid_to + " is in the past", "valid_to");
  return RunWrite<CardRecord>(
      connection_, &commit_hook_, [&](Attempt& attempt) -> ServiceResult<CardRecord> {
        Work work{connection_, key_store_, options_, now, attempt};
        auto card = work.Expect(change.asn, change.expected_version);
        if (!card.ok()) return card.error();
        if (!StateIn(card->state, {CardState::kIssued, CardState::kActive})) {
          return Unprocessable(StateRefusal(*card, "given a new validity"));
        }
        // Registering again with another expiry records it (Host::RegisterCard keeps the rest).
        auto host = work.MakeHost();
        auto registered = host.RegisterCard({.asn = HexToBytes(card->asn),
                                             .holder_reference = card->holder_reference,
                                             .person_id = card->person_id,
                                             .valid_to = change.valid_to});
        if (!registered.ok()) return attempt.Host(registered.error());
        auto moved = work.Move(*card, card->state, {.valid_to = valid_to});
        if (!moved.ok()) return moved.error();
        auto changed = work.MustFindById(card->application_id);
        if (!changed.ok()) return changed.error();
        nlohmann::json details = {{"old_valid_to", card->valid_to.value_or("")},
                                  {"valid_to", valid_to}};
        auto recorded =
            work.Record(actor, *changed, kEventValidityChanged, kActionChangeValidity, details);
        if (!recorded.ok()) return recorded.error();
        return changed;
      });
}

ServiceResult<ReplacementResult> BranchServices::Replace(const Actor& actor,
                                                         const CardReplacement& replacement) {
  if (!IsToken(replacement.branch, 32, "-_")) {
    return Invalid("a branch is 1 to 32 letters, digits, - or _", "branch");
  }
  if (!IsPrintable(replacement.reason, 200, false)) {
    return Invalid("a reason is at most 200 printable ASCII characters", "reason");
  }
  const std::int64_t now = Now();
  return RunWrite<ReplacementResult>(
      connection_, &commit_hook_, [&](Attempt& attempt) -> ServiceResult<ReplacementResult> {
        Work work{connection_, key_store_, options_, now, attempt};
        auto card = work.Expect(replacement.asn, replacement.expected_version);
        if (!card.ok()) return card.error();
        if (!StateIn(card->state, {CardState::kIssued, CardState::kActive, CardState::kLost,
                                   CardState::kCaptured})) {
          return Unprocessable(StateRefusal(*card, "replaced"));
        }
        auto blacklisted = work.Blacklist(*card);
        if (!blacklisted.ok()) return blacklisted.error();
        auto id = connection_.InsertReturningId(
            "INSERT INTO branch_cards (person_id, holder_reference, branch, state, version,"
            " replaces, created_at_us, updated_at_us) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
            "application_id",
            {card->person_id, card->holder_reference, replacement.branch,
             std::string(CardStateName(CardState::kApplied)), card->application_id, now, now});
        if (!id.ok()) return attempt.Db(id.error());
        const std::int64_t new_id = id->value_or(0);
        auto moved = work.Move(*card, CardState::kReplaced, {.replaced_by = new_id});
        if (!moved.ok()) return moved.error();
        auto transfer = work.Schedule(*card, kKindReplacement, "");
        if (!transfer.ok()) return transfer.error();
        ReplacementResult result;
        auto old_card = work.MustFindById(card->application_id);
        if (!old_card.ok()) return old_card.error();
        auto new_card = work.MustFindById(new_id);
        if (!new_card.ok()) return new_card.error();
        result.old_card = *old_card;
        result.new_card = *new_card;
        result.transfer = *transfer;
        nlohmann::json details = Details(*card, CardState::kReplaced, replacement.reason);
        details["new_application_id"] = new_id;
        details["transfer_due_at_us"] = transfer->due_at_us;
        details["blacklisted_at"] = old_card->blacklisted_at.value_or("");
        auto recorded = work.Record(actor, *old_card, kEventReplaced, kActionReplace, details);
        if (!recorded.ok()) return recorded.error();
        return result;
      });
}

ServiceResult<ClosureResult> BranchServices::Close(const Actor& actor, const CardClosure& closure) {
  if (!IsPrintable(closure.payee_reference, 64, true)) {
    return Invalid("a payee reference is 1 to 64 printable ASCII characters", "payee_reference");
  }
  if (!IsPrintable(closure.reason, 200, false)) {
    return Invalid("a reason is at most 200 printable ASCII characters", "reason");
  }
  const std::int64_t now = Now();
  return RunWrite<ClosureResult>(
      connection_, &commit_hook_, [&](Attempt& attempt) -> ServiceResult<ClosureResult> {
        Work work{connection_, key_store_, options_, now, attempt};
        auto card = work.Expect(closure.asn, closure.expected_version);
        if (!card.ok()) return card.error();
        if (!StateIn(card->state, {CardState::kIssued, CardState::kActive, CardState::kLost,
                                   CardState::kCaptured})) {
          return Unprocessable(StateRefusal(*card, "closed"));
        }
        // The refund empties the person's medical account: no other card may still use it.
        auto others = connection_.Query(
            "SELECT COUNT(*) FROM branch_cards WHERE person_id = ? AND application_id <> ?"
            " AND state IN ('applied', 'issued', 'active', 'lost', 'captured')",
            {card->person_id, card->application_id});
        if (!others.ok()) return attempt.Db(others.error());
        if ((*others)[0].Int(0) > 0) {
          return Unprocessable("person " + card->person_id +
                               " has another card in use: close or replace it first");
        }
        auto blacklisted = work.Blacklist(*card);
        if (!blacklisted.ok()) return blacklisted.error();
        auto moved = work.Move(*card, CardState::kClosed);
        if (!moved.ok()) return moved.error();
        auto transfer = work.Schedule(*card, kKindClosure, closure.payee_reference);
        if (!transfer.ok()) return transfer.error();
        auto closed = work.MustFindById(card->application_id);
        if (!closed.ok()) return closed.error();
        nlohmann::json details = Details(*card, CardState::kClosed, closure.reason);
        details["payee_reference"] = closure.payee_reference;
        details["transfer_due_at_us"] = transfer->due_at_us;
        details["blacklisted_at"] = closed->blacklisted_at.value_or("");
        auto recorded = work.Record(actor, *closed, kEventClosed, kActionClose, details);
        if (!recorded.ok()) return recorded.error();
        return ClosureResult{*closed, *transfer};
      });
}

// ---- Scheduled transfers ----------------------------------------------------------------------

ServiceResult<std::vector<ScheduledTransfer>> BranchServices::RunDueTransfers(std::int64_t now_us) {
  auto due = connection_.Query(
      std::string(kTransferSelect) + " WHERE state <> ? AND due_at_us <= ? ORDER BY due_at_us, id",
      {kTransferDone, now_us});
  if (!due.ok()) {
    Attempt attempt;
    return attempt.Db(due.error());
  }
  std::vector<ScheduledTransfer> made;
  for (const store::Row& row : *due) {
    const std::int64_t id = row.Int("id");
    auto outcome = RunWrite<std::optional<ScheduledTransfer>>(
        connection_, nullptr,
        [&](Attempt& attempt) -> ServiceResult<std::optional<ScheduledTransfer>> {
          auto current = connection_.Query(std::string(kTransferSelect) + " WHERE id = ?", {id});
          if (!current.ok()) return attempt.Db(current.error());
          ScheduledTransfer t = TransferFromRow((*current)[0]);
          if (t.state == kTransferDone) return std::optional<ScheduledTransfer>();
          ledger::Ledger ledger(connection_,
                                {.clock_us = [now_us] { return now_us; }, .retry = {}});
          bool changed = false;
          if (t.state == kTransferScheduled) {
            // Exactly what the old card's float holds now, after the clearing window.
            for (ledger::Wallet wallet : {ledger::Wallet::kEd, ledger::Wallet::kEp}) {
              const ledger::AccountId from = ledger::AccountId::CardFloat(t.asn, wallet);
              auto account = ledger.FindAccount(from);
              if (!account.ok()) return attempt.Ledger(account.error());
              const std::int64_t balance = *account ? (*account)->balance : 0;
              if (balance <= 0) continue;
              const std::string reference = t.asn + "/" + std::string(ledger::WalletName(wallet));
              auto posted = ledger.Post(
                  {.id = "closure/" + reference,
                   .debit = from,
                   .credit = ledger::AccountId::Medical(t.person_id),
                   .amount = balance,
                   .cause = {ledger::cause::kClosure, reference,
                             nlohmann::json{{"kind", t.kind}}.dump()},
                   // The retired wallet's known balance becomes what its
                   // float holds now: nothing (the ledger's invariant 5).
                   .card_state = ledger::CardState{.asn = t.asn, .wallet = wallet, .balance = 0}});
              if (!posted.ok()) return attempt.Ledger(posted.error());
              (wallet == ledger::Wallet::kEd ? t.moved_ed : t.moved_ep) =
                  posted->transfer.transfer.amount;
            }
            t.state = t.kind == kKindClosure ? kTransferMoved : kTransferDone;
            changed = true;
          }
          if (t.state == kTransferMoved) {
            // The refund waits for the person's other transfers (a replaced card's float).
            auto waiting = connection_.Query(
                "SELECT COUNT(*) FROM branch_transfers WHERE person_id = ? AND id <> ?"
                " AND state = ?",
                {t.person_id, t.id, kTransferScheduled});
            if (!waiting.ok()) return attempt.Db(waiting.error());
            if ((*waiting)[0].Int(0) == 0) {
              auto medical = ledger.FindAccount(ledger::AccountId::Medical(t.person_id));
              if (!medical.ok()) return attempt.Ledger(medical.error());
              const std::int64_t available = *medical ? (*medical)->available() : 0;
              if (available > 0) {
                auto posted = ledger.Post(
                    {.id = "refund/" + t.asn,
                     .debit = ledger::AccountId::Medical(t.person_id),
                     .credit = ledger::AccountId::BankClearing(),
                     .amount = available,
                     .cause = {kCauseRefund, t.asn,
                               nlohmann::json{{"payee_reference", t.payee_reference}}.dump()},
                     .debit_must_not_go_negative = true});
                if (!posted.ok()) return attempt.Ledger(posted.error());
                if (posted->outcome == ledger::Outcome::kRejected) {
                  return MakeServiceError(ErrorCode::kInternal,
                                          "refund of " + t.asn + " rejected by the ledger");
                }
                t.refunded = posted->transfer.transfer.amount;
              }
              auto appended =
                  audit::AppendAt(connection_,
                                  {.actor = kSystemActor,
                                   .authorised_by = "",
                                   .action = kActionRefund,
                                   .target = "card:" + t.asn,
                                   .details = nlohmann::json{{"person_id", t.person_id},
                                                             {"refunded_fen", t.refunded},
                                                             {"moved_ed_fen", t.moved_ed},
                                                             {"moved_ep_fen", t.moved_ep},
                                                             {"payee_reference", t.payee_reference}}
                                                  .dump(),
                                   .from = "scheduler"},
                                  now_us);
              if (!appended.ok()) return attempt.Other(appended.error());
              t.state = kTransferDone;
              changed = true;
            }
          }
          if (!changed) return std::optional<ScheduledTransfer>();
          if (t.state == kTransferDone) t.done_at_us = now_us;
          auto updated = connection_.Execute(
              "UPDATE branch_transfers SET state = ?, moved_ed = ?, moved_ep = ?, refunded = ?,"
              " done_at_us = ? WHERE id = ?",
              {t.state, t.moved_ed, t.moved_ep, t.refunded, t.done_at_us, t.id});
          if (!updated.ok()) return attempt.Db(updated.error());
          return std::optional<ScheduledTransfer>(t);
        });
    if (!outcome.ok()) return outcome.error();
    if (*outcome) made.push_back(**outcome);
  }
  return made;
}

// ---- Customer service -------------------------------------------------------------------------

ServiceResult<CardRecord> BranchServices::FindCard(std::string_view asn_text) {
  auto asn = NormalisedAsn(asn_text);
  if (!asn) return Invalid("an ASN is 20 hex digits", "asn");
  Attempt attempt;
  Work work{connection_, key_store_, options_, Now(), attempt};
  auto card = work.FindByAsn(*asn);
  if (!card.ok()) return card.error();
  if (!*card) return MakeServiceError(ErrorCode::kNotFound, "no card " + *asn, "asn");
  return **card;
}

ServiceResult<CardRecord> BranchServices::FindApplication(std::int64_t application_id) {
  Attempt attempt;
  Work work{connection_, key_store_, options_, Now(), attempt};
  auto card = work.FindById(application_id);
  if (!card.ok()) return card.error();
  if (!*card) {
    return MakeServiceError(ErrorCode::kNotFound,
                            "no application " + std::to_string(application_id), "application_id");
  }
  return **card;
}

ServiceResult<std::vector<CardRecord>> BranchServices::CardsOfPerson(std::string_view person_id) {
  if (!IsToken(person_id, 32, "")) {
    return Invalid("a person id is 1 to 32 letters and digits", "person_id");
  }
  auto rows = connection_.Query(
      std::string(kCardSelect) + " WHERE c.person_id = ? ORDER BY c.application_id", {person_id});
  if (!rows.ok()) return Attempt().Db(rows.error());
  std::vector<CardRecord> cards;
  for (const store::Row& row : *rows) cards.push_back(CardFromRow(row));
  return cards;
}

ServiceResult<CustomerBalances> BranchServices::Balances(std::string_view asn_text) {
  auto card = FindCard(asn_text);
  if (!card.ok()) return card.error();
  host::Host host(connection_, key_store_);
  auto balances = host.BalanceInquiry(HexToBytes(card->asn));
  if (!balances.ok()) return Attempt().Host(balances.error());
  return CustomerBalances{.asn = card->asn,
                          .person_id = card->person_id,
                          .state = card->state,
                          .blacklisted_at = card->blacklisted_at,
                          .medical_account = balances->medical_account,
                          .card_ed = balances->card_ed,
                          .card_ep = balances->card_ep};
}

ServiceResult<HistoryPage> BranchServices::History(std::string_view asn_text,
                                                   std::optional<std::int64_t> cursor,
                                                   std::size_t limit) {
  if (limit == 0 || limit > kMaxHistoryPage) {
    return Invalid("a page holds 1 to " + std::to_string(kMaxHistoryPage) + " lines", "limit");
  }
  if (cursor && *cursor < 0) return Invalid("a cursor is not negative", "cursor");
  auto card = FindCard(asn_text);
  if (!card.ok()) return card.error();
  if (card->asn.empty()) return HistoryPage{};
  ledger::Ledger ledger(connection_);
  // Both wallets after the cursor, merged in the ledger's posting order; one more line than the
  // page says whether there is a next page.
  std::vector<HistoryLine> lines;
  for (ledger::Wallet wallet : {ledger::Wallet::kEd, ledger::Wallet::kEp}) {
    auto page = ledger.History(ledger::AccountId::CardFloat(card->asn, wallet), cursor.value_or(0),
                               limit + 1);
    if (!page.ok()) return Attempt().Ledger(page.error());
    for (const ledger::HistoryEntry& entry : page->entries) {
      HistoryLine line;
      line.seq = entry.posting_seq;
      line.when = IsoDateTime(LocalCivil(entry.created_at_us, options_.utc_offset_minutes));
      line.kind = entry.cause.kind;
      line.wallet = std::string(ledger::WalletName(wallet));
      line.amount = entry.amount;
      line.balance_after = entry.balance_after;
      line.counterparty = entry.counterparty.ToString();
      line.reference = entry.cause.reference;
      if (entry.counterparty.kind == ledger::AccountKind::kMerchant) {
        line.merchant_id = entry.counterparty.key;
      }
      lines.push_back(std::move(line));
    }
  }
  std::sort(lines.begin(), lines.end(),
            [](const HistoryLine& a, const HistoryLine& b) { return a.seq < b.seq; });
  HistoryPage page;
  if (lines.size() > limit) {
    lines.resize(limit);
    page.next_cursor = lines.back().seq;
  }
  // A purchase (cleared or held in suspense) carries the card's own time and the merchant of
  // the terminal it was made at.
  for (HistoryLine& line : lines) {
    if (line.kind != ledger::cause::kPurchase && line.kind != ledger::cause::kSuspense) continue;
    const auto first = line.reference.find('/');
    const auto second = line.reference.find('/', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string serial = line.reference.substr(first + 1, second - first - 1);
    const std::string type = line.reference.substr(second + 1);
    if (serial.empty() || type.empty() || serial.size() > 10 || type.size() > 3 ||
        !IsToken(serial, 10, "") || !IsToken(type, 3, "")) {
      continue;
    }
    auto rows = connection_.Query(
        "SELECT p.txn_time, t.merchant_id, m.name FROM host_purchases p"
        " LEFT JOIN host_terminals t ON t.terminal_number = p.terminal_number"
        " LEFT JOIN host_merchants m ON m.id = t.merchant_id"
        " WHERE p.asn = ? AND p.offline_serial = ? AND p.type = ?",
        {card->asn, std::stoll(serial), std::stoll(type)});
    if (!rows.ok()) return Attempt().Db(rows.error());
    if (rows->empty()) continue;
    const store::Row& row = (*rows)[0];
    line.when = IsoFromHostTimestamp(row.Text(0));
    if (auto merchant = row.OptionalText("merchant_id")) line.merchant_id = *merchant;
    if (auto name = row.OptionalText("name")) line.merchant_name = *name;
  }
  page.lines = std::move(lines);
  return page;
}

ServiceResult<std::vector<ScheduledTransfer>> BranchServices::TransfersOfCard(
    std::string_view asn_text) {
  auto asn = NormalisedAsn(asn_text);
  if (!asn) return Invalid("an ASN is 20 hex digits", "asn");
  auto rows =
      connection_.Query(std::string(kTransferSelect) + " WHERE asn = ? ORDER BY id", {*asn});
  if (!rows.ok()) return Attempt().Db(rows.error());
  std::vector<ScheduledTransfer> transfers;
  for (const store::Row& row : *rows) transfers.push_back(TransferFromRow(row));
  return transfers;
}

ServiceResult<std::vector<DayEndLine>> BranchServices::DayEndReport(std::string_view from_day,
                                                                    std::string_view to_day) {
  if (!IsIsoDay(from_day)) return Invalid("a day is YYYY-MM-DD", "from");
  if (!IsIsoDay(to_day)) return Invalid("a day is YYYY-MM-DD", "to");
  auto rows = connection_.Query(
      "SELECT day, branch, action, COUNT(*) FROM branch_card_events WHERE day >= ? AND day <= ?"
      " GROUP BY day, branch, action ORDER BY day, branch, action",
      {from_day, to_day});
  if (!rows.ok()) return Attempt().Db(rows.error());
  std::vector<DayEndLine> lines;
  for (const store::Row& row : *rows) {
    if (lines.empty() || lines.back().day != row.Text(0) || lines.back().branch != row.Text(1)) {
      lines.push_back({.day = row.Text(0), .branch = row.Text(1)});
    }
    DayEndLine& line = lines.back();
    const std::string& action = row.Text(2);
    const std::int64_t count = row.Int(3);
    if (action == kEventApplied) line.applied += count;
    if (action == kEventIssued) line.issued += count;
    if (action == kEventActivated) line.activated += count;
    if (action == kEventLost) line.lost += count;
    if (action == kEventCaptured) line.captured += count;
    if (action == kEventReplaced) line.replaced += count;
    if (action == kEventClosed) line.closed += count;
  }
  return lines;
}

}  // namespace medcard::branch
