// The append-only, hash-chained audit log (docs/audit.md): every action by a person or a system
// account, who authorised it, what it touched, when and from where. Each entry carries the hash of
// the previous one, so an edit, a deletion or a reordering is found by Verify; triggers refuse
// UPDATE and DELETE on both engines.
//
//   auto tx = store::Transaction::Begin(connection);
//   ... the action itself ...
//   auto seq = audit::Append(connection, {.actor = "t01", .action = "card.report_loss",
//                                         .target = "card:1000000000000001", .from = "10.0.0.7"});
//   tx->Commit();  // the entry commits or rolls back with the action
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace medcard::audit {

const store::MigrationSet& Migrations();

struct Entry {
  std::string actor;          // the user's login, or a system account ("sia-system", "host")
  std::string authorised_by;  // the authoriser's login (dual control), or empty
  std::string action;         // "card.report_loss", "user.sign_in", ...
  std::string target;         // "card:<ASN>", "user:<login>", "person:<id>"
  std::string details;        // a JSON object's text; never a PIN, password or key
  std::string from;           // the client's address ("127.0.0.1", "cli")
};

// Appends inside the caller's OPEN transaction on `connection`: the entry commits or rolls back
// with the action it records. Returns the entry's sequence number (1, 2, ...).
Result<std::int64_t> Append(store::Connection& connection, const Entry& entry);
// As Append, with the time given (microseconds since the epoch, UTC) instead of the clock's:
// for callers that run on an injected clock (tests, replays of a day).
Result<std::int64_t> AppendAt(store::Connection& connection, const Entry& entry,
                              std::int64_t at_us);
// As Append (at_us: nullopt = now), but a database failure keeps its store::ErrorKind, so that a
// body run by store::RunTransaction can return it and PostgreSQL's serialization failure of two
// concurrent appends (kRetryable) runs the transaction again. Use this inside RunTransaction.
store::DbResult<std::int64_t> AppendDb(store::Connection& connection, const Entry& entry,
                                       std::optional<std::int64_t> at_us = std::nullopt);

// An entry as stored.
struct Record {
  std::int64_t sequence = 0;
  std::int64_t at_us = 0;  // microseconds since the epoch, UTC
  Entry entry;
  std::string previous_hash;  // 64 lower-case hex digits; all zeros for entry 1
  std::string hash;           // SHA-256 of the canonical encoding (docs/audit.md), lower-case hex
};

// The hash entry `sequence` must carry (exposed for tests and docs/audit.md's example).
std::string EntryHash(std::int64_t sequence, std::int64_t at_us, const Entry& entry,
                      std::string_view previous_hash);
// The previous hash of entry 1.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Read filters; every set field must match. Pagination: entries after `after_sequence`, at most
// `limit` of them, in sequence order (the last one's sequence is the next page's after_sequence).
struct Filter {
  std::optional<std::string> actor;
  std::optional<std::string> action;  // exact, or a prefix ending in '.': "card." for all card ops
  std::optional<std::string> target;
  std::optional<std::int64_t> from_us;   // at_us >= from_us
  std::optional<std::int64_t> until_us;  // at_us < until_us
  std::int64_t after_sequence = 0;
  std::int64_t limit = 100;  // 1..10000
};
Result<std::vector<Record>> Read(store::Connection& connection, const Filter& filter);

// Verify's answer. intact: every entry chains to the one before and the last one is the head
// the head table (and `expected_head`, when given) says. Otherwise first_bad_sequence and problem
// say where and what: "edited" (the entry's hash does not match its content), "deleted" (a gap in
// the sequence, or the tail is missing against the head), "reordered" (an entry does not chain
// to the one before it), "head mismatch" (the head is not the expected one).
struct Verification {
  bool intact = false;
  std::int64_t count = 0;  // entries read
  std::string head_hash;   // the last entry's hash (kGenesisHash when empty)
  std::int64_t first_bad_sequence = 0;
  std::string problem;      // "edited", "deleted", "reordered", "head mismatch"
  std::string explanation;  // a sentence for the operator
};
// Reads the whole log in sequence order (in pages; memory stays small). `expected_head`: a hash
// the auditor kept from an earlier run (`audit verify` prints it), detects a deleted tail even
// when the head table was rewritten too.
Result<Verification> Verify(store::Connection& connection,
                            std::optional<std::string> expected_head = std::nullopt);

// Export: CSV (RFC 4180, a header row) or JSON lines (one object per entry). Writes every entry
// matching `filter` (its limit and after_sequence ignored: all of them, page by page).
enum class ExportFormat { kCsv, kJsonLines };
std::optional<ExportFormat> ParseExportFormat(std::string_view name);  // "csv", "jsonl"
Status Export(store::Connection& connection, const Filter& filter, ExportFormat format,
              std::ostream& out);
std::string ToJsonLine(const Record& record);  // no trailing newline
std::string CsvHeader();                       // no trailing newline
std::string ToCsvRow(const Record& record);    // no trailing newline

// The teller day-end journal of one UTC day ("YYYY-MM-DD"): operations per actor, and the card
// lifecycle counts (actions "card.issue", "card.report_loss", "card.replace", "card.close").
struct ActorDay {
  std::string actor;
  std::int64_t operations = 0;                                  // every entry of the actor that day
  std::vector<std::pair<std::string, std::int64_t>> by_action;  // action → count, by action
};
struct Journal {
  std::string day;
  std::vector<ActorDay> actors;  // by actor login
  std::int64_t cards_issued = 0;
  std::int64_t cards_lost = 0;
  std::int64_t cards_replaced = 0;
  std::int64_t cards_closed = 0;
};
Result<Journal> DayJournal(store::Connection& connection, std::string_view day);
// The microsecond range [start, end) of a UTC day "YYYY-MM-DD"; nullopt when malformed.
std::optional<std::pair<std::int64_t, std::int64_t>> DayRange(std::string_view day);

}  // namespace medcard::audit
