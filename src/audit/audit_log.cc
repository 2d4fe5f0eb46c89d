// The hash-chained audit log (docs/audit.md).
#include "audit/audit_log.h"

#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/bytes.h"

namespace medcard::audit {

namespace {

constexpr std::int64_t kVerifyPage = 1000;

std::string LowerHex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0x0F]);
  }
  return out;
}

void AppendField(Bytes& out, std::string_view field) {
  AppendU64(out, field.size());
  out.insert(out.end(), field.begin(), field.end());
}

std::int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error DbFailure(std::string_view what, const store::DbError& error) {
  return MakeError(std::string(what) + ": " + error.message);
}

constexpr char kColumns[] =
    "sequence, at_us, actor, authorised_by, action, target, details, from_address, "
    "previous_hash, hash";

Record RecordOf(const store::Row& row) {
  Record r;
  r.sequence = row.Int(0);
  r.at_us = row.Int(1);
  r.entry.actor = row.Text(2);
  r.entry.authorised_by = row.Text(3);
  r.entry.action = row.Text(4);
  r.entry.target = row.Text(5);
  r.entry.details = row.Text(6);
  r.entry.from = row.Text(7);
  r.previous_hash = row.Text(8);
  r.hash = row.Text(9);
  return r;
}

// "2026-11-26T01:02:03.000004Z"
std::string IsoTime(std::int64_t at_us) {
  using namespace std::chrono;
  const sys_time<microseconds> t{microseconds(at_us)};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> hms{t - day};
  char text[40];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                static_cast<long long>(hms.subseconds().count()));
  return text;
}

std::string CsvField(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

Status ValidEntry(const Entry& entry) {
  if (entry.actor.empty()) return MakeError("an audit entry needs an actor");
  if (entry.action.empty()) return MakeError("an audit entry needs an action");
  if (!entry.details.empty()) {
    const auto parsed = nlohmann::json::parse(entry.details, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      return MakeError("an audit entry's details must be a JSON object");
    }
  }
  return Status::Ok();
}

}  // namespace

std::string EntryHash(std::int64_t sequence, std::int64_t at_us, const Entry& entry,
                      std::string_view previous_hash) {
  // Canonical encoding (docs/audit.md "Hash"): a version tag, then fixed-width integers and
  // length-prefixed fields, so no two different entries encode alike.
  Bytes encoded;
  AppendField(encoded, "medcard-audit-v1");
  AppendU64(encoded, static_cast<std::uint64_t>(sequence));
  AppendU64(encoded, static_cast<std::uint64_t>(at_us));
  for (std::string_view field :
       {std::string_view(entry.actor), std::string_view(entry.authorised_by),
        std::string_view(entry.action), std::string_view(entry.target),
        std::string_view(entry.details), std::string_view(entry.from), previous_hash}) {
    AppendField(encoded, field);
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(encoded.data(), encoded.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return LowerHex(digest.data(), size);
}

Result<std::int64_t> Append(store::Connection& connection, const Entry& entry) {
  auto appended = AppendDb(connection, entry);
  if (!appended) return Error(appended.error());
  return *appended;
}

Result<std::int64_t> AppendAt(store::Connection& connection, const Entry& entry,
                              std::int64_t at_us) {
  auto appended = AppendDb(connection, entry, at_us);
  if (!appended) return Error(appended.error());
  return *appended;
}

store::DbResult<std::int64_t> AppendDb(store::Connection& connection, const Entry& entry,
                                       std::optional<std::int64_t> at_us) {
  if (!connection.InTransaction()) {
    return store::MakeDbError(
        store::ErrorKind::kOther,
        "audit::Append needs an open transaction (the entry commits with its action)");
  }
  if (auto valid = ValidEntry(entry); !valid) {
    return store::MakeDbError(store::ErrorKind::kOther, valid.error().message);
  }
  const std::int64_t when = at_us ? *at_us : NowMicros();
  // The head row is the chain's lock: PostgreSQL's FOR UPDATE makes concurrent appends wait
  // (and the later one retry under SERIALIZABLE); SQLite has one writer at a time.
  const char* head_sql = connection.engine() == store::Engine::kPostgres
                             ? "SELECT sequence, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                             : "SELECT sequence, hash FROM audit_head WHERE id = 1";
  auto head = connection.Query(head_sql);
  if (!head) return head.error();
  if (head->empty()) {
    return store::MakeDbError(store::ErrorKind::kOther,
                              "the audit log has no head row (not migrated?)");
  }
  const std::int64_t sequence = (*head)[0].Int(0) + 1;
  const std::string previous_hash = (*head)[0].Text(1);
  const std::string hash = EntryHash(sequence, when, entry, previous_hash);
  auto inserted = connection.Execute(
      "INSERT INTO audit_entries (sequence, at_us, actor, authorised_by, action, target, details, "
      "from_address, previous_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {sequence, when, entry.actor, entry.authorised_by, entry.action, entry.target, entry.details,
       entry.from, previous_hash, hash});
  if (!inserted) return inserted.error();
  auto moved = connection.Execute("UPDATE audit_head SET sequence = ?, hash = ? WHERE id = 1",
                                  {sequence, hash});
  if (!moved) return moved.error();
  return sequence;
}

Result<std::vector<Record>> Read(store::Connection& connection, const Filter& filter) {
  if (filter.limit < 1 || filter.limit > 10000) return MakeError("limit must be 1..10000");
  std::string sql = std::string("SELECT ") + kColumns + " FROM audit_entries WHERE sequence > ?";
  store::Params params{filter.after_sequence};
  if (filter.actor) {
    sql += " AND actor = ?";
    params.emplace_back(*filter.actor);
  }
  if (filter.action) {
    if (!filter.action->empty() && filter.action->back() == '.') {
      sql += " AND substr(action, 1, " + std::to_string(filter.action->size()) + ") = ?";
    } else {
      sql += " AND action = ?";
    }
    params.emplace_back(*filter.action);
  }
  if (filter.target) {
    sql += " AND target = ?";
    params.emplace_back(*filter.target);
  }
  if (filter.from_us) {
    sql += " AND at_us >= ?";
    params.emplace_back(*filter.from_us);
  }
  if (filter.until_us) {
    sql += " AND at_us < ?";
    params.emplace_back(*filter.until_us);
  }
  sql += " ORDER BY sequence LIMIT " + std::to_string(filter.limit);
  auto rows = connection.Query(sql, params);
  if (!rows) return DbFailure("reading the audit log", rows.error());
  std::vector<Record> out;
  out.reserve(rows->size());
  for (const auto& row : *rows) out.push_back(RecordOf(row));
  return out;
}

Result<Verification> Verify(store::Connection& connection,
                            std::optional<std::string> expected_head) {
  std::optional<store::Transaction> tx;
  if (!connection.InTransaction()) {
    auto begun = store::Transaction::Begin(connection, store::TransactionMode::kRead);
    if (!begun) return DbFailure("verifying the audit log", begun.error());
    tx.emplace(std::move(*begun));
  }
  Verification v;
  v.head_hash = std::string(kGenesisHash);
  bool expected_seen = expected_head && *expected_head == kGenesisHash;
  auto fail = [&](std::int64_t sequence, std::string problem, std::string explanation) {
    v.intact = false;
    v.first_bad_sequence = sequence;
    v.problem = std::move(problem);
    v.explanation = std::move(explanation);
    return v;
  };
  std::int64_t expected_sequence = 1;
  for (;;) {
    auto rows = connection.Query(std::string("SELECT ") + kColumns +
                                     " FROM audit_entries WHERE sequence >= ? ORDER BY sequence "
                                     "LIMIT " +
                                     std::to_string(kVerifyPage),
                                 {expected_sequence});
    if (!rows) return DbFailure("verifying the audit log", rows.error());
    for (const auto& row : *rows) {
      const Record r = RecordOf(row);
      if (r.sequence != expected_sequence) {
        return fail(expected_sequence, "deleted",
                    "entries " + std::to_string(expected_sequence) + ".." +
                        std::to_string(r.sequence - 1) + " are missing (deleted)");
      }
      if (EntryHash(r.sequence, r.at_us, r.entry, r.previous_hash) != r.hash) {
        return fail(r.sequence, "edited",
                    "entry " + std::to_string(r.sequence) +
                        " does not match its hash: its content was edited");
      }
      if (r.previous_hash != v.head_hash) {
        return fail(r.sequence, "reordered",
                    "entry " + std::to_string(r.sequence) +
                        " does not chain to the entry before it: entries were reordered, "
                        "replaced or rewritten");
      }
      v.head_hash = r.hash;
      ++v.count;
      ++expected_sequence;
      if (expected_head && r.hash == *expected_head) expected_seen = true;
    }
    if (static_cast<std::int64_t>(rows->size()) < kVerifyPage) break;
  }
  auto head = connection.Query("SELECT sequence, hash FROM audit_head WHERE id = 1");
  if (!head) return DbFailure("verifying the audit log", head.error());
  if (head->empty()) return fail(expected_sequence, "deleted", "the audit log's head row is gone");
  const std::int64_t head_sequence = (*head)[0].Int(0);
  const std::string head_hash = (*head)[0].Text(1);
  if (head_sequence > v.count) {
    return fail(v.count + 1, "deleted",
                "the head records " + std::to_string(head_sequence) +
                    " entries but the log ends at " + std::to_string(v.count) +
                    ": the tail was deleted");
  }
  if (head_sequence < v.count || head_hash != v.head_hash) {
    return fail(head_sequence + 1, "head mismatch",
                "the head (entry " + std::to_string(head_sequence) + ", " + head_hash +
                    ") is not the last entry of the chain");
  }
  if (expected_head && !expected_seen) {
    return fail(v.count + 1, "deleted",
                "the expected head " + *expected_head +
                    " is not in the log: entries were deleted or the log was rewritten");
  }
  v.intact = true;
  return v;
}

std::optional<ExportFormat> ParseExportFormat(std::string_view name) {
  if (name == "csv") return ExportFormat::kCsv;
  if (name == "jsonl") return ExportFormat::kJsonLines;
  return std::nullopt;
}

std::string CsvHeader() {
  return "sequence,at,at_us,actor,authorised_by,action,target,details,from,previous_hash,hash";
}

std::string ToCsvRow(const Record& r) {
  std::string out = std::to_string(r.sequence);
  for (const std::string& field :
       {IsoTime(r.at_us), std::to_string(r.at_us), r.entry.actor, r.entry.authorised_by,
        r.entry.action, r.entry.target, r.entry.details, r.entry.from, r.previous_hash, r.hash}) {
    out += ',';
    out += CsvField(field);
  }
  return out;
}

std::string ToJsonLine(const Record& r) {
  nlohmann::ordered_json j;
  j["sequence"] = r.sequence;
  j["at"] = IsoTime(r.at_us);
  j["at_us"] = r.at_us;
  j["actor"] = r.entry.actor;
  j["authorised_by"] = r.entry.authorised_by;
  j["action"] = r.entry.action;
  j["target"] = r.entry.target;
  auto details = nlohmann::ordered_json::parse(r.entry.details, nullptr, false);
  if (details.is_discarded()) {
    j["details"] = r.entry.details;
  } else {
    j["details"] = std::move(details);
  }
  j["from"] = r.entry.from;
  j["previous_hash"] = r.previous_hash;
  j["hash"] = r.hash;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Status Export(store::Connection& connection, const Filter& filter, ExportFormat format,
              std::ostream& out) {
  Filter page = filter;
  page.after_sequence = 0;
  page.limit = kVerifyPage;
  if (format == ExportFormat::kCsv) out << CsvHeader() << '\n';
  for (;;) {
    auto records = Read(connection, page);
    if (!records) return records.error();
    for (const auto& r : *records) {
      out << (format == ExportFormat::kCsv ? ToCsvRow(r) : ToJsonLine(r)) << '\n';
    }
    if (static_cast<std::int64_t>(records->size()) < page.limit) break;
    page.after_sequence = records->back().sequence;
  }
  if (!out) return MakeError("writing the export failed");
  return Status::Ok();
}

std::optional<std::pair<std::int64_t, std::int64_t>> DayRange(std::string_view day) {
  using namespace std::chrono;
  if (day.size() != 10 || day[4] != '-' || day[7] != '-') return std::nullopt;
  int parts[3] = {0, 0, 0};
  const std::pair<std::size_t, std::size_t> spans[3] = {{0, 4}, {5, 2}, {8, 2}};
  for (int i = 0; i < 3; ++i) {
    for (std::size_t k = 0; k < spans[i].second; ++k) {
      const char c = day[spans[i].first + k];
      if (c < '0' || c > '9') return std::nullopt;
      parts[i] = parts[i] * 10 + (c - '0');
    }
  }
  const year_month_day ymd{year(parts[0]), month(static_cast<unsigned>(parts[1])),
                           std::chrono::day(static_cast<unsigned>(parts[2]))};
  if (!ymd.ok()) return std::nullopt;
  const sys_days start{ymd};
  const auto start_us = duration_cast<microseconds>(start.time_since_epoch()).count();
  return std::make_pair(start_us, start_us + std::int64_t{86'400'000'000});
}

Result<Journal> DayJournal(store::Connection& connection, std::string_view day) {
  const auto range = DayRange(day);
  if (!range) return MakeError("the day must be YYYY-MM-DD, got '" + std::string(day) + "'");
  auto rows = connection.Query(
      "SELECT actor, action, COUNT(*) FROM audit_entries WHERE at_us >= ? AND at_us < ? "
      "GROUP BY actor, action ORDER BY actor, action",
      {range->first, range->second});
  if (!rows) return DbFailure("reading the day's journal", rows.error());
  Journal journal;
  journal.day = std::string(day);
  for (const auto& row : *rows) {
    const std::string& actor = row.Text(0);
    const std::string& action = row.Text(1);
    const std::int64_t count = row.Int(2);
    if (journal.actors.empty() || journal.actors.back().actor != actor) {
      journal.actors.push_back({actor, 0, {}});
    }
    journal.actors.back().operations += count;
    journal.actors.back().by_action.emplace_back(action, count);
    if (action == "card.issue") journal.cards_issued += count;
    if (action == "card.report_loss") journal.cards_lost += count;
    if (action == "card.replace") journal.cards_replaced += count;
    if (action == "card.close") journal.cards_closed += count;
  }
  return journal;
}

}  // namespace medcard::audit
