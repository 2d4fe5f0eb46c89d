// Allocation batches and acknowledgements (allocation_batch.h).
#include "insurance/allocation_batch.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <limits>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

namespace medcard::insurance {

using access::ErrorCode;
using access::MakeServiceError;
using store::Done;
using Json = nlohmann::json;

namespace {

constexpr int kFormat = 1;
constexpr char kKeyCheckLabel[] = "medcard allocation batch key check";

Bytes Hmac(ByteView key, std::string_view data) {
  Bytes mac(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &length);
  mac.resize(length);
  return mac;
}

bool IsBatchId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsPersonId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!ok) return false;
  }
  return true;
}

bool IsReason(std::string_view reason) {
  if (reason.empty() || reason.size() > 200) return false;
  for (unsigned char c : reason) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

std::string Line(const Json& record) {
  return record.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// One record of a file, checked field by field; errors say "line N: field: what".
class Record {
 public:
  Record(const Json& json, std::size_t line_no) : json_(json), line_no_(line_no) {}

  std::string Where(std::string_view field) const {
    return "line " + std::to_string(line_no_) + ": " + std::string(field);
  }
  // The record has exactly these fields (and "record").
  Status Fields(std::initializer_list<std::string_view> names) const {
    if (json_.size() != names.size() + 1) {
      return MakeError("line " + std::to_string(line_no_) + ": expected the fields of a " +
                       json_["record"].get<std::string>() + " record and nothing else");
    }
    for (auto name : names) {
      if (!json_.contains(std::string(name))) return MakeError(Where(name) + ": missing");
    }
    return Status::Ok();
  }
  Result<std::string> Text(std::string_view field) const {
    const auto& v = json_.at(std::string(field));
    if (!v.is_string()) return MakeError(Where(field) + ": not a string");
    return v.get<std::string>();
  }
  Result<std::int64_t> Integer(std::string_view field, std::int64_t min) const {
    const auto& v = json_.at(std::string(field));
    if (v.is_number_unsigned()) {
      if (v.get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return MakeError(Where(field) + ": too large");
      }
    } else if (!v.is_number_integer()) {
      return MakeError(Where(field) + ": not an integer");
    }
    const std::int64_t n = v.get<std::int64_t>();
    if (n < min) return MakeError(Where(field) + ": at least " + std::to_string(min));
    return n;
  }

 private:
  const Json& json_;
  std::size_t line_no_;
};

// The records of an authenticated file: `header_type`, body records, `trailer_type`; the
// trailer's MAC is checked over every byte before the trailer line before anything else is read.
struct AuthenticatedFile {
  std::vector<Json> records;  // header, body..., trailer
};

Result<AuthenticatedFile> ReadAuthenticated(std::string_view text, const BatchKey& key,
                                            std::string_view header_type,
                                            std::string_view body_type,
                                            std::string_view trailer_type) {
  if (text.empty() || text.back() != '\n') {
    return MakeError("the file does not end with a complete line (truncated?)");
  }
  const std::size_t trailer_start = text.rfind('\n', text.size() - 2);
  if (trailer_start == std::string_view::npos) return MakeError("no header and trailer");
  const std::string_view covered = text.substr(0, trailer_start + 1);
  const std::string_view trailer_text =
      text.substr(trailer_start + 1, text.size() - trailer_start - 2);
  const Json trailer = Json::parse(trailer_text, nullptr, false);
  if (!trailer.is_object() || !trailer.contains("record") || !trailer["record"].is_string() ||
      trailer["record"].get<std::string>() != trailer_type) {
    return MakeError("the last line is not a " + std::string(trailer_type) + " record");
  }
  if (!trailer.contains("hmac_sha256") || !trailer["hmac_sha256"].is_string()) {
    return MakeError("trailer: hmac_sha256: missing");
  }
  // The key check first, for a clear message when the sides hold different keys.
  const std::size_t header_end = covered.find('\n');
  const Json header = Json::parse(covered.substr(0, header_end), nullptr, false);
  if (!header.is_object() || !header.contains("record") || !header["record"].is_string() ||
      header["record"].get<std::string>() != header_type) {
    return MakeError("line 1: not a " + std::string(header_type) + " record");
  }
  if (header.contains("key_check") && header["key_check"].is_string() &&
      header["key_check"].get<std::string>() != key.CheckValue()) {
    return MakeError("made under another batch key (key check " +
                     header["key_check"].get<std::string>() + ", this side's " + key.CheckValue() +
                     ")");
  }
  const auto mac = FromHex(trailer["hmac_sha256"].get<std::string>());
  const Bytes expected = Hmac(key.bytes(), covered);
  if (!mac || !ConstantTimeEqual(*mac, expected)) {
    return MakeError("authentication failed: the file was altered (HMAC-SHA256 does not match)");
  }
  AuthenticatedFile file;
  std::size_t start = 0, line_no = 1;
  while (start < covered.size()) {
    const std::size_t end = covered.find('\n', start);
    Json record = Json::parse(covered.substr(start, end - start), nullptr, false);
    if (!record.is_object() || !record.contains("record") || !record["record"].is_string()) {
      return MakeError("line " + std::to_string(line_no) + ": not a JSON record");
    }
    const std::string type = record["record"].get<std::string>();
    const std::string_view want = line_no == 1 ? header_type : body_type;
    if (type != want) {
      return MakeError("line " + std::to_string(line_no) + ": a " + type + " record where a " +
                       std::string(want) + " record belongs");
    }
    file.records.push_back(std::move(record));
    start = end + 1;
    ++line_no;
  }
  file.records.push_back(trailer);
  return file;
}

// Header fields common to batches and acknowledgements.
struct HeaderFields {
  std::string batch_id;
  YearMonth month;
  std::int64_t count = 0;
};

Result<HeaderFields> ReadHeader(const Record& r) {
  HeaderFields h;
  auto format = r.Integer("format", 0);
  if (!format.ok()) return format.error();
  if (*format != kFormat) return MakeError(r.Where("format") + ": only format 1 is known");
  auto id = r.Text("batch_id");
  if (!id.ok()) return id.error();
  if (!IsBatchId(*id)) return MakeError(r.Where("batch_id") + ": 1..64 of A-Z a-z 0-9 . _ -");
  h.batch_id = *id;
  auto month = r.Text("month");
  if (!month.ok()) return month.error();
  auto parsed = ParseMonthText(*month);
  if (!parsed) return MakeError(r.Where("month") + ": not YYYY-MM");
  h.month = *parsed;
  auto count = r.Integer("count", 0);
  if (!count.ok()) return count.error();
  if (static_cast<std::uint64_t>(*count) > kMaxBatchLines) {
    return MakeError(r.Where("count") + ": more than " + std::to_string(kMaxBatchLines));
  }
  h.count = *count;
  return h;
}

// A line's number, person and amount.
Result<AllocationLine> ReadAllocation(const Record& r, std::int64_t expected_line) {
  AllocationLine line;
  auto n = r.Integer("line", 1);
  if (!n.ok()) return n.error();
  if (*n != expected_line) {
    return MakeError(r.Where("line") + ": " + std::to_string(*n) + " where " +
                     std::to_string(expected_line) + " belongs");
  }
  line.line = *n;
  auto person = r.Text("person_id");
  if (!person.ok()) return person.error();
  if (!IsPersonId(*person)) return MakeError(r.Where("person_id") + ": 1..64 letters or digits");
  line.person_id = *person;
  auto amount = r.Integer("amount_fen", 1);
  if (!amount.ok()) return amount.error();
  line.amount_fen = *amount;
  return line;
}

// total += amount, refusing an overflow.
Status AddTo(Fen& total, Fen amount) {
  if (amount > std::numeric_limits<Fen>::max() - total) return MakeError("the total overflows");
  total += amount;
  return Status::Ok();
}

Status CheckTrailerTotal(const Record& trailer, std::string_view count_field, std::int64_t count,
                         std::string_view total_field, Fen total) {
  auto c = trailer.Integer(count_field, 0);
  if (!c.ok()) return c.error();
  if (*c != count) {
    return MakeError(trailer.Where(count_field) + ": " + std::to_string(*c) + ", the file has " +
                     std::to_string(count));
  }
  auto t = trailer.Integer(total_field, 0);
  if (!t.ok()) return t.error();
  if (*t != total) {
    return MakeError(trailer.Where(total_field) + ": " + std::to_string(*t) +
                     ", the lines add up to " + std::to_string(total));
  }
  return Status::Ok();
}

std::int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- Key ----------------------------------------------------------------------------------------

Result<BatchKey> BatchKey::FromHex(std::string_view hex) {
  auto key = medcard::FromHex(hex);
  if (!key || key->size() != 32) {
    if (key) SecureWipe(*key);
    return MakeError(std::string(kBatchKeyEnvironment) +
                     ": the batch key is 64 hexadecimal digits (256 bits)");
  }
  return BatchKey(std::move(*key));
}

BatchKey::~BatchKey() { SecureWipe(key_); }

std::string BatchKey::CheckValue() const {
  const Bytes mac = Hmac(key_, kKeyCheckLabel);
  return ToHex(ByteView(mac.data(), 3));
}

Fen AllocationBatch::total_fen() const {
  Fen total = 0;
  for (const auto& l : lines) total += l.amount_fen;
  return total;
}

// ---- Batch --------------------------------------------------------------------------------------

std::string WriteAllocationBatch(const AllocationBatch& batch, const BatchKey& key) {
  std::string text = Line({{"record", "header"},
                           {"format", kFormat},
                           {"batch_id", batch.batch_id},
                           {"month", MonthText(batch.month)},
                           {"count", batch.lines.size()},
                           {"total_fen", batch.total_fen()},
                           {"key_check", key.CheckValue()}});
  for (const auto& l : batch.lines) {
    text += Line({{"record", "line"},
                  {"line", l.line},
                  {"person_id", l.person_id},
                  {"amount_fen", l.amount_fen}});
  }
  text += Line({{"record", "trailer"},
                {"count", batch.lines.size()},
                {"total_fen", batch.total_fen()},
                {"hmac_sha256", ToHex(Hmac(key.bytes(), text))}});
  return text;
}

Result<AllocationBatch> ParseAllocationBatch(std::string_view text, const BatchKey& key) {
  auto file = ReadAuthenticated(text, key, "header", "line", "trailer");
  if (!file.ok()) return file.error();
  const auto& records = file->records;
  const Record header(records.front(), 1);
  if (Status s = header.Fields({"format", "batch_id", "month", "count", "total_fen", "key_check"});
      !s.ok()) {
    return s.error();
  }
  auto h = ReadHeader(header);
  if (!h.ok()) return h.error();
  if (auto check = header.Text("key_check"); !check.ok()) return check.error();
  auto header_total = header.Integer("total_fen", 0);
  if (!header_total.ok()) return header_total.error();
  AllocationBatch batch;
  batch.batch_id = h->batch_id;
  batch.month = h->month;
  std::set<std::string> people;
  Fen total = 0;
  for (std::size_t i = 1; i + 1 < records.size(); ++i) {
    const Record r(records[i], i + 1);
    if (Status s = r.Fields({"line", "person_id", "amount_fen"}); !s.ok()) return s.error();
    auto line = ReadAllocation(r, static_cast<std::int64_t>(i));
    if (!line.ok()) return line.error();
    if (!people.insert(line->person_id).second) {
      return MakeError(r.Where("person_id") + ": " + line->person_id + " appears twice");
    }
    if (Status s = AddTo(total, line->amount_fen); !s.ok()) return s.error();
    batch.lines.push_back(std::move(*line));
  }
  const auto count = static_cast<std::int64_t>(batch.lines.size());
  if (h->count != count || *header_total != total) {
    return MakeError("line 1: count/total_fen say " + std::to_string(h->count) + " lines, " +
                     std::to_string(*header_total) + " fen; the file has " + std::to_string(count) +
                     " lines, " + std::to_string(total) + " fen");
  }
  const Record trailer(records.back(), records.size());
  if (Status s = trailer.Fields({"count", "total_fen", "hmac_sha256"}); !s.ok()) return s.error();
  if (Status s = CheckTrailerTotal(trailer, "count", count, "total_fen", total); !s.ok()) {
    return s.error();
  }
  return batch;
}

// ---- Acknowledgement ----------------------------------------------------------------------------

std::string WriteAcknowledgement(const Acknowledgement& ack, const BatchKey& key) {
  std::int64_t credited = 0, refused = 0;
  Fen credited_fen = 0, refused_fen = 0;
  std::string body;
  for (const auto& l : ack.lines) {
    const bool ok = l.outcome == LineOutcome::kCredited;
    (ok ? credited : refused) += 1;
    (ok ? credited_fen : refused_fen) += l.allocation.amount_fen;
    body += Line({{"record", "ack_line"},
                  {"line", l.allocation.line},
                  {"person_id", l.allocation.person_id},
                  {"amount_fen", l.allocation.amount_fen},
                  {"outcome", ok ? "credited" : "refused"},
                  {"reason", l.reason}});
  }
  std::string text = Line({{"record", "ack_header"},
                           {"format", kFormat},
                           {"batch_id", ack.batch_id},
                           {"month", MonthText(ack.month)},
                           {"count", ack.lines.size()},
                           {"key_check", key.CheckValue()}}) +
                     body;
  text += Line({{"record", "ack_trailer"},
                {"credited_count", credited},
                {"credited_fen", credited_fen},
                {"refused_count", refused},
                {"refused_fen", refused_fen},
                {"hmac_sha256", ToHex(Hmac(key.bytes(), text))}});
  return text;
}

Result<Acknowledgement> ParseAcknowledgement(std::string_view text, const BatchKey& key) {
  auto file = ReadAuthenticated(text, key, "ack_header", "ack_line", "ack_trailer");
  if (!file.ok()) return file.error();
  const auto& records = file->records;
  const Record header(records.front(), 1);
  if (Status s = header.Fields({"format", "batch_id", "month", "count", "key_check"}); !s.ok()) {
    return s.error();
  }
  auto h = ReadHeader(header);
  if (!h.ok()) return h.error();
  if (auto check = header.Text("key_check"); !check.ok()) return check.error();
  Acknowledgement ack;
  ack.batch_id = h->batch_id;
  ack.month = h->month;
  std::int64_t credited = 0, refused = 0;
  Fen credited_fen = 0, refused_fen = 0;
  for (std::size_t i = 1; i + 1 < records.size(); ++i) {
    const Record r(records[i], i + 1);
    if (Status s = r.Fields({"line", "person_id", "amount_fen", "outcome", "reason"}); !s.ok()) {
      return s.error();
    }
    AcknowledgedLine line;
    auto allocation = ReadAllocation(r, static_cast<std::int64_t>(i));
    if (!allocation.ok()) return allocation.error();
    line.allocation = std::move(*allocation);
    auto outcome = r.Text("outcome");
    if (!outcome.ok()) return outcome.error();
    auto reason = r.Text("reason");
    if (!reason.ok()) return reason.error();
    if (*outcome == "credited") {
      line.outcome = LineOutcome::kCredited;
      if (!reason->empty()) return MakeError(r.Where("reason") + ": a credited line has none");
      ++credited;
      if (Status s = AddTo(credited_fen, line.allocation.amount_fen); !s.ok()) return s.error();
    } else if (*outcome == "refused") {
      line.outcome = LineOutcome::kRefused;
      if (!IsReason(*reason)) return MakeError(r.Where("reason") + ": 1..200 characters");
      line.reason = *reason;
      ++refused;
      if (Status s = AddTo(refused_fen, line.allocation.amount_fen); !s.ok()) return s.error();
    } else {
      return MakeError(r.Where("outcome") + ": credited or refused");
    }
    ack.lines.push_back(std::move(line));
  }
  if (h->count != static_cast<std::int64_t>(ack.lines.size())) {
    return MakeError("line 1: count says " + std::to_string(h->count) + " lines; the file has " +
                     std::to_string(ack.lines.size()));
  }
  const Record trailer(records.back(), records.size());
  if (Status s = trailer.Fields(
          {"credited_count", "credited_fen", "refused_count", "refused_fen", "hmac_sha256"});
      !s.ok()) {
    return s.error();
  }
  if (Status s =
          CheckTrailerTotal(trailer, "credited_count", credited, "credited_fen", credited_fen);
      !s.ok()) {
    return s.error();
  }
  if (Status s = CheckTrailerTotal(trailer, "refused_count", refused, "refused_fen", refused_fen);
      !s.ok()) {
    return s.error();
  }
  return ack;
}

// ---- Bank side ----------------------------------------------------------------------------------

Result<Acknowledgement> ImportAllocationBatch(std::string_view text, const BatchKey& key,
                                              const CreditLine& credit) {
  auto batch = ParseAllocationBatch(text, key);
  if (!batch.ok()) return MakeError("batch refused, nothing credited: " + batch.error().message);
  Acknowledgement ack{batch->batch_id, batch->month, {}};
  for (const auto& line : batch->lines) {
    auto outcome = credit(batch->batch_id, line);
    if (!outcome.ok()) {
      return MakeError("stopped at line " + std::to_string(line.line) + " (run the import again: " +
                       "nothing is credited twice): " + outcome.error().message);
    }
    AcknowledgedLine acknowledged{line, LineOutcome::kCredited, {}};
    if (outcome->has_value()) {
      acknowledged.outcome = LineOutcome::kRefused;
      acknowledged.reason = outcome->value().substr(0, 200);
      if (acknowledged.reason.empty()) acknowledged.reason = "refused";
    }
    ack.lines.push_back(std::move(acknowledged));
  }
  return ack;
}

// ---- Agency side --------------------------------------------------------------------------------

namespace {

store::DbResult<std::optional<AllocationBatch>> StoredBatch(store::Connection& c,
                                                            const std::string& where,
                                                            const std::string& value) {
  auto head = c.Query("SELECT batch_id, month FROM si_batches WHERE " + where + " = ?", {value});
  if (!head.ok()) return head.error();
  if (head->empty()) return std::optional<AllocationBatch>{};
  AllocationBatch batch;
  batch.batch_id = (*head)[0].Text(0);
  batch.month = ParseMonthText((*head)[0].Text(1)).value_or(YearMonth{});
  auto lines = c.Query(
      "SELECT line_no, person_id, amount FROM si_batch_lines WHERE batch_id = ? ORDER BY line_no",
      {batch.batch_id});
  if (!lines.ok()) return lines.error();
  for (const auto& r : *lines) batch.lines.push_back({r.Int(0), r.Text(1), r.Int(2)});
  return std::optional<AllocationBatch>(std::move(batch));
}

}  // namespace

ServiceResult<ExportedBatch> ExportAllocations(store::Connection& connection,
                                               const YearMonth& month, const BatchKey& key,
                                               std::function<std::int64_t()> clock_us) {
  const std::string m = MonthText(month);
  std::optional<access::ServiceError> refused;
  AllocationBatch batch;
  bool existed = false;
  const std::int64_t now = clock_us ? clock_us() : SystemNowUs();
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto stored = StoredBatch(c, "month", m);
        if (!stored.ok()) return stored.error();
        if (stored->has_value()) {
          batch = std::move(**stored);
          existed = true;
          return Done{};
        }
        existed = false;
        auto run = c.Query("SELECT state FROM si_month_runs WHERE month = ?", {m});
        if (!run.ok()) return run.error();
        if (run->empty() || (*run)[0].Text(0) != "finished") {
          refused = MakeServiceError(ErrorCode::kUnprocessable,
                                     "month: " + m + " has not been run to the end", "month");
          return Done{};
        }
        auto lines = c.Query(
            "SELECT ssn, personal_account_fen FROM si_bill_lines WHERE month = ? AND"
            " personal_account_fen > 0 ORDER BY ssn",
            {m});
        if (!lines.ok()) return lines.error();
        if (lines->empty()) {
          refused = MakeServiceError(ErrorCode::kUnprocessable,
                                     "month: nothing was allocated in " + m, "month");
          return Done{};
        }
        batch = AllocationBatch{"SIA-" + m, month, {}};
        store::Params values;
        std::int64_t n = 0;
        for (const auto& r : *lines) {
          batch.lines.push_back({++n, r.Text(0), r.Int(1)});
          values.insert(values.end(), {batch.batch_id, n, r.Text(0), r.Int(1)});
        }
        auto head = c.Execute(
            "INSERT INTO si_batches (batch_id, month, line_count, total_fen, state,"
            " created_at_us) VALUES (?, ?, ?, ?, 'exported', ?)",
            {batch.batch_id, m, n, batch.total_fen(), now});
        if (!head.ok()) return head.error();
        auto written = store::ExecuteRows(
            c,
            "INSERT INTO si_batch_lines (batch_id, line_no, person_id, amount, outcome, reason) "
            "VALUES ",
            "(?, CAST(? AS BIGINT), ?, CAST(? AS BIGINT), 'sent', '')", 4, std::move(values));
        if (!written.ok()) return written.error();
        auto entry = c.Execute(
            "INSERT INTO si_book_entries (id, debit, credit, amount, kind, month, recorded_at_us)"
            " VALUES (?, 'personal_accounts', 'bank_allocations', ?, 'allocation_sent', ?, ?)",
            {"batch/" + batch.batch_id, batch.total_fen(), m, now});
        if (!entry.ok()) return entry.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return ExportedBatch{batch.batch_id, WriteAllocationBatch(batch, key),
                       static_cast<std::int64_t>(batch.lines.size()), batch.total_fen(), existed};
}

ServiceResult<ReconciliationReport> ReconcileAcknowledgement(
    store::Connection& connection, std::string_view ack_text, const BatchKey& key,
    std::function<std::int64_t()> clock_us) {
  auto ack = ParseAcknowledgement(ack_text, key);
  if (!ack.ok()) {
    return MakeServiceError(ErrorCode::kInvalid,
                            "acknowledgement refused, nothing recorded: " + ack.error().message,
                            "acknowledgement");
  }
  ReconciliationReport report;
  report.batch_id = ack->batch_id;
  report.month = ack->month;
  for (const auto& l : ack->lines) {
    if (l.outcome == LineOutcome::kCredited) {
      ++report.credited_count;
      report.credited_fen += l.allocation.amount_fen;
    } else {
      report.refused.push_back(l);
      report.refused_fen += l.allocation.amount_fen;
    }
  }
  const std::int64_t now = clock_us ? clock_us() : SystemNowUs();
  std::optional<access::ServiceError> refused;
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto stored = StoredBatch(c, "batch_id", ack->batch_id);
        if (!stored.ok()) return stored.error();
        if (!stored->has_value()) {
          refused = MakeServiceError(ErrorCode::kNotFound, "batch_id: no batch " + ack->batch_id,
                                     "batch_id");
          return Done{};
        }
        const AllocationBatch& batch = **stored;
        // Every line of the batch acknowledged once, with its person and amount.
        std::string differences;
        if (batch.month != ack->month) differences += " month differs;";
        for (std::size_t i = 0; i < std::max(batch.lines.size(), ack->lines.size()); ++i) {
          if (i >= ack->lines.size()) {
            differences += " line " + std::to_string(i + 1) + " not acknowledged;";
          } else if (i >= batch.lines.size()) {
            differences += " line " + std::to_string(i + 1) + " is not in the batch;";
          } else if (!(ack->lines[i].allocation == batch.lines[i])) {
            differences += " line " + std::to_string(i + 1) + " differs from the batch;";
          }
          if (differences.size() > 2000) break;
        }
        if (!differences.empty()) {
          refused = MakeServiceError(ErrorCode::kUnprocessable,
                                     "acknowledgement does not match batch " + batch.batch_id +
                                         ", nothing recorded:" + differences,
                                     "acknowledgement");
          return Done{};
        }
        auto state = c.Query("SELECT state FROM si_batches WHERE batch_id = ?", {batch.batch_id});
        if (!state.ok()) return state.error();
        if ((*state)[0].Text(0) == "reconciled") {
          // Again: the same outcomes, or a conflict.
          auto outcomes = c.Query(
              "SELECT line_no, outcome, reason FROM si_batch_lines WHERE batch_id = ?"
              " ORDER BY line_no",
              {batch.batch_id});
          if (!outcomes.ok()) return outcomes.error();
          for (std::size_t i = 0; i < outcomes->size(); ++i) {
            const auto& l = ack->lines[i];
            const std::string outcome =
                l.outcome == LineOutcome::kCredited ? "credited" : "refused";
            if ((*outcomes)[i].Text(1) != outcome || (*outcomes)[i].Text(2) != l.reason) {
              refused = MakeServiceError(ErrorCode::kConflict,
                                         "batch " + batch.batch_id +
                                             " was reconciled with other outcomes (line " +
                                             std::to_string(i + 1) + ")",
                                         "acknowledgement");
              return Done{};
            }
          }
          report.already_reconciled = true;
          return Done{};
        }
        report.already_reconciled = false;
        for (const auto& l : report.refused) {
          auto updated = c.Execute(
              "UPDATE si_batch_lines SET outcome = 'refused', reason = ? WHERE batch_id = ? AND"
              " line_no = ?",
              {l.reason, batch.batch_id, l.allocation.line});
          if (!updated.ok()) return updated.error();
        }
        auto credited = c.Execute(
            "UPDATE si_batch_lines SET outcome = 'credited' WHERE batch_id = ? AND outcome = "
            "'sent'",
            {batch.batch_id});
        if (!credited.ok()) return credited.error();
        if (report.refused_fen > 0) {
          auto entry = c.Execute(
              "INSERT INTO si_book_entries (id, debit, credit, amount, kind, month,"
              " recorded_at_us) VALUES (?, 'bank_allocations', 'personal_accounts', ?,"
              " 'allocation_refused', ?, ?)",
              {"refused/" + batch.batch_id, report.refused_fen, MonthText(batch.month), now});
          if (!entry.ok()) return entry.error();
        }
        auto done = c.Execute(
            "UPDATE si_batches SET state = 'reconciled', reconciled_at_us = ? WHERE batch_id = ?",
            {now, batch.batch_id});
        if (!done.ok()) return done.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return report;
}

}  // namespace medcard::insurance
