// The bank's daily consumption detail (consumption.h).
#include "insurance/consumption.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

namespace medcard::insurance {

using access::ErrorCode;
using access::MakeServiceError;
using Json = nlohmann::json;
using store::Done;

namespace {

constexpr int kFormat = 1;
constexpr std::size_t kMaxConsumptionLines = 10'000'000;

Bytes HmacSha256(ByteView key, std::string_view data) {
  Bytes mac(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &length);
  mac.resize(length);
  return mac;
}

bool IsIdText(std::string_view text, std::size_t max, bool allow_slash) {
  if (text.empty() || text.size() > max) return false;
  for (char c : text) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    c == '-' || c == '_' || c == '.' || (allow_slash && c == '/');
    if (!ok) return false;
  }
  return true;
}

// "YYYY-MM-DDThh:mm:ss" on `day`.
bool IsTimeOnDay(std::string_view time, const Date& day) {
  if (time.size() != 19 || time[10] != 'T' || time[13] != ':' || time[16] != ':') return false;
  if (ParseIsoDate(time.substr(0, 10)) != day) return false;
  auto two = [&](std::size_t at, int max) {
    const char a = time[at], b = time[at + 1];
    if (a < '0' || a > '9' || b < '0' || b > '9') return false;
    return (a - '0') * 10 + (b - '0') <= max;
  };
  return two(11, 23) && two(14, 59) && two(17, 59);
}

std::string LinePrefix(std::size_t line_no) { return "line " + std::to_string(line_no) + ": "; }

const Json* Member(const Json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

Result<std::string> TextField(const Json& object, const char* name, const std::string& where) {
  const Json* v = Member(object, name);
  if (v == nullptr || !v->is_string()) return MakeError(where + name + ": missing or not text");
  return v->get<std::string>();
}

Result<std::int64_t> IntField(const Json& object, const char* name, const std::string& where) {
  const Json* v = Member(object, name);
  if (v == nullptr || !v->is_number_integer()) {
    return MakeError(where + name + ": missing or not a whole number");
  }
  return v->get<std::int64_t>();
}

}  // namespace

Fen ConsumptionDetail::total_fen() const {
  Fen total = 0;
  for (const auto& l : lines) total += l.amount_fen;
  return total;
}

std::string WriteConsumptionDetail(const ConsumptionDetail& detail, const BatchKey& key) {
  std::string text = Json{{"record", "consumption_header"},  {"format", kFormat},
                          {"day", detail.day.ToString()},    {"count", detail.lines.size()},
                          {"total_fen", detail.total_fen()}, {"key_check", key.CheckValue()}}
                         .dump() +
                     "\n";
  for (const auto& l : detail.lines) {
    text += Json{{"record", "purchase"},
                 {"line", l.line},
                 {"reference", l.reference},
                 {"person_id", l.person_id},
                 {"merchant_id", l.merchant_id},
                 {"amount_fen", l.amount_fen},
                 {"time", l.time}}
                .dump() +
            "\n";
  }
  text += Json{{"record", "consumption_trailer"},
               {"count", detail.lines.size()},
               {"total_fen", detail.total_fen()},
               {"hmac_sha256", ToHex(HmacSha256(key.bytes(), text))}}
              .dump() +
          "\n";
  return text;
}

Result<ConsumptionDetail> ParseConsumptionDetail(std::string_view text, const BatchKey& key) {
  if (text.size() < 2 || text.back() != '\n') return MakeError("not a consumption file");
  const std::size_t trailer_start = text.rfind('\n', text.size() - 2);
  if (trailer_start == std::string_view::npos) return MakeError("no header and trailer");
  const std::string_view covered = text.substr(0, trailer_start + 1);
  const Json trailer =
      Json::parse(text.substr(trailer_start + 1, text.size() - trailer_start - 2), nullptr, false);
  if (!trailer.is_object() || trailer.value("record", "") != "consumption_trailer") {
    return MakeError("the last line is not a consumption_trailer record");
  }
  auto mac_hex = TextField(trailer, "hmac_sha256", "trailer: ");
  if (!mac_hex.ok()) return mac_hex.error();
  const auto mac = FromHex(*mac_hex);
  if (!mac || !ConstantTimeEqual(*mac, HmacSha256(key.bytes(), covered))) {
    return MakeError(
        "authentication failed: the file was altered or made under another key"
        " (HMAC-SHA256 does not match)");
  }

  ConsumptionDetail detail;
  std::int64_t header_count = -1;
  Fen header_total = 0;
  std::set<std::string> references;
  std::size_t line_no = 0;
  std::size_t start = 0;
  while (start < covered.size()) {
    const std::size_t end = covered.find('\n', start);
    const std::string_view line_text = covered.substr(start, end - start);
    start = end + 1;
    ++line_no;
    const std::string where = LinePrefix(line_no);
    const Json record = Json::parse(line_text, nullptr, false);
    if (!record.is_object()) return MakeError(where + "not a JSON object");
    if (line_no == 1) {
      if (record.value("record", "") != "consumption_header") {
        return MakeError(where + "not a consumption_header record");
      }
      auto format = IntField(record, "format", where);
      if (!format.ok()) return format.error();
      if (*format != kFormat) return MakeError(where + "format: not 1");
      auto day = TextField(record, "day", where);
      if (!day.ok()) return day.error();
      auto parsed = ParseIsoDate(*day);
      if (!parsed) return MakeError(where + "day: not a date YYYY-MM-DD");
      detail.day = *parsed;
      auto count = IntField(record, "count", where);
      if (!count.ok()) return count.error();
      auto total = IntField(record, "total_fen", where);
      if (!total.ok()) return total.error();
      header_count = *count;
      header_total = *total;
      continue;
    }
    if (record.value("record", "") != "purchase" || record.size() != 7) {
      return MakeError(where +
                       "not a purchase record (record, line, reference, person_id,"
                       " merchant_id, amount_fen, time)");
    }
    if (detail.lines.size() >= kMaxConsumptionLines) return MakeError(where + "too many lines");
    ConsumptionLine l;
    auto number = IntField(record, "line", where);
    if (!number.ok()) return number.error();
    l.line = *number;
    if (l.line != static_cast<std::int64_t>(detail.lines.size()) + 1) {
      return MakeError(where + "line: " + std::to_string(l.line) + " out of order");
    }
    auto reference = TextField(record, "reference", where);
    if (!reference.ok()) return reference.error();
    l.reference = *reference;
    if (!IsIdText(l.reference, 80, true)) return MakeError(where + "reference: not a reference");
    if (!references.insert(l.reference).second) {
      return MakeError(where + "reference: " + l.reference + " twice");
    }
    auto person = TextField(record, "person_id", where);
    if (!person.ok()) return person.error();
    l.person_id = *person;
    if (!IsIdText(l.person_id, 64, false)) return MakeError(where + "person_id: not a person id");
    auto merchant = TextField(record, "merchant_id", where);
    if (!merchant.ok()) return merchant.error();
    l.merchant_id = *merchant;
    if (!IsIdText(l.merchant_id, 64, false)) {
      return MakeError(where + "merchant_id: not a merchant id");
    }
    auto amount = IntField(record, "amount_fen", where);
    if (!amount.ok()) return amount.error();
    l.amount_fen = *amount;
    if (l.amount_fen <= 0 || l.amount_fen > 100'000'000'000) {
      return MakeError(where + "amount_fen: must be between 1 and 100000000000");
    }
    auto time = TextField(record, "time", where);
    if (!time.ok()) return time.error();
    l.time = *time;
    if (!IsTimeOnDay(l.time, detail.day)) {
      return MakeError(where + "time: not a time YYYY-MM-DDThh:mm:ss on " + detail.day.ToString());
    }
    detail.lines.push_back(std::move(l));
  }
  if (header_count < 0) return MakeError("line 1: no consumption_header record");
  const auto count = static_cast<std::int64_t>(detail.lines.size());
  auto trailer_count = IntField(trailer, "count", "trailer: ");
  if (!trailer_count.ok()) return trailer_count.error();
  auto trailer_total = IntField(trailer, "total_fen", "trailer: ");
  if (!trailer_total.ok()) return trailer_total.error();
  if (header_count != count || *trailer_count != count) {
    return MakeError("count: the file has " + std::to_string(count) +
                     " purchases, the header says " + std::to_string(header_count) +
                     ", the trailer " + std::to_string(*trailer_count));
  }
  if (header_total != detail.total_fen() || *trailer_total != detail.total_fen()) {
    return MakeError("total_fen: the purchases add up to " + std::to_string(detail.total_fen()) +
                     ", the header says " + std::to_string(header_total) + ", the trailer " +
                     std::to_string(*trailer_total));
  }
  return detail;
}

Result<ConsumptionDetail> ExportConsumption(store::Connection& host_connection, const Date& day) {
  char compact[16];
  std::snprintf(compact, sizeof compact, "%04d%02d%02d", day.year, day.month, day.day);
  auto rows = host_connection.Query(
      "SELECT p.asn, p.offline_serial, c.person_id, t.merchant_id, p.amount, p.txn_time, p.type"
      " FROM host_purchases p JOIN host_cards c ON c.asn = p.asn"
      " JOIN host_terminals t ON t.terminal_number = p.terminal_number"
      " WHERE p.outcome = 'accepted' AND SUBSTR(p.txn_time, 1, 8) = ?"
      " ORDER BY p.txn_time, p.asn, p.offline_serial",
      {std::string(compact)});
  if (!rows.ok()) return MakeError("host database: " + rows.error().message);
  ConsumptionDetail detail;
  detail.day = day;
  for (const auto& r : *rows) {
    const std::string& t = r.Text(5);  // YYYYMMDDhhmmss
    if (t.size() != 14)
      return MakeError("host database: purchase time " + t + " not YYYYMMDDhhmmss");
    ConsumptionLine l;
    l.line = static_cast<std::int64_t>(detail.lines.size()) + 1;
    // ED and EP count their offline serials separately (PBOC): the wallet is part of the key,
    // as in the host's (asn, offline_serial, type).
    const std::int64_t type = r.Int(6);
    const std::string wallet = type == 5 ? "ED" : type == 6 ? "EP" : "T" + std::to_string(type);
    l.reference = r.Text(0) + "/" + wallet + "/" + std::to_string(r.Int(1));
    l.person_id = r.Text(2);
    l.merchant_id = r.Text(3);
    l.amount_fen = r.Int(4);
    l.time = day.ToString() + "T" + t.substr(8, 2) + ":" + t.substr(10, 2) + ":" + t.substr(12, 2);
    detail.lines.push_back(std::move(l));
  }
  return detail;
}

ServiceResult<ConsumptionImport> ImportConsumption(store::Connection& connection,
                                                   std::string_view text, const BatchKey& key,
                                                   std::function<std::int64_t()> clock_us) {
  auto detail = ParseConsumptionDetail(text, key);
  if (!detail.ok()) {
    return MakeServiceError(ErrorCode::kInvalid, "file: " + detail.error().message, "file");
  }
  const std::int64_t now = clock_us ? clock_us()
                                    : std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
  ConsumptionImport result{detail->day, static_cast<std::int64_t>(detail->lines.size()),
                           detail->total_fen(), false};
  const std::string day = detail->day.ToString();
  std::optional<access::ServiceError> refused;
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        result.already_imported = false;
        auto existing =
            c.Query("SELECT line_count, total_fen FROM si_consumption_days WHERE day = ?", {day});
        if (!existing.ok()) return existing.error();
        if (!existing->empty()) {
          // The same day again: idempotent when it is the same detail, refused otherwise.
          auto refs = c.Query(
              "SELECT line_no, reference, person_id, merchant_id, amount, txn_time"
              " FROM si_consumption WHERE day = ? ORDER BY line_no",
              {day});
          if (!refs.ok()) return refs.error();
          bool same = refs->size() == detail->lines.size();
          for (std::size_t i = 0; same && i < refs->size(); ++i) {
            const auto& r = (*refs)[i];
            const auto& l = detail->lines[i];
            same = r.Int(0) == l.line && r.Text(1) == l.reference && r.Text(2) == l.person_id &&
                   r.Text(3) == l.merchant_id && r.Int(4) == l.amount_fen && r.Text(5) == l.time;
          }
          if (!same) {
            refused = MakeServiceError(ErrorCode::kConflict,
                                       "day: " + day + " was imported before with other figures (" +
                                           std::to_string((*existing)[0].Int(0)) + " purchases, " +
                                           std::to_string((*existing)[0].Int(1)) + " fen)",
                                       "day");
          }
          result.already_imported = true;
          return Done{};
        }
        // A purchase reported under another day would be counted twice.
        for (const auto& l : detail->lines) {
          auto seen = c.Query("SELECT day FROM si_consumption WHERE reference = ?", {l.reference});
          if (!seen.ok()) return seen.error();
          if (!seen->empty()) {
            refused = MakeServiceError(
                ErrorCode::kConflict,
                "reference: " + l.reference + " was imported with day " + (*seen)[0].Text(0),
                "reference");
            return Done{};
          }
        }
        auto header = c.Execute(
            "INSERT INTO si_consumption_days (day, line_count, total_fen, imported_at_us)"
            " VALUES (?, ?, ?, ?)",
            {day, result.count, result.total_fen, now});
        if (!header.ok()) return header.error();
        store::Params values;
        values.reserve(detail->lines.size() * 7);
        for (const auto& l : detail->lines) {
          values.insert(values.end(), {day, l.line, l.reference, l.person_id, l.merchant_id,
                                       l.amount_fen, l.time});
        }
        auto inserted = store::ExecuteRows(
            c,
            "INSERT INTO si_consumption (day, line_no, reference, person_id, merchant_id, amount,"
            " txn_time) VALUES ",
            "(?, CAST(? AS BIGINT), ?, ?, ?, CAST(? AS BIGINT), ?)", 7, std::move(values));
        if (!inserted.ok()) return inserted.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return result;
}

ServiceResult<std::vector<ConsumptionTotal>> ConsumptionTotals(store::Connection& connection,
                                                               ConsumptionBy by, const Date& from,
                                                               const Date& to) {
  const std::string column = by == ConsumptionBy::kPerson ? "person_id" : "merchant_id";
  auto rows = connection.Query("SELECT " + column +
                                   ", COUNT(*), CAST(SUM(amount) AS BIGINT) AS total"
                                   " FROM si_consumption WHERE day >= ? AND day <= ? GROUP BY " +
                                   column + " ORDER BY total DESC, " + column,
                               {from.ToString(), to.ToString()});
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<ConsumptionTotal> totals;
  for (const auto& r : *rows) totals.push_back({r.Text(0), r.Int(1), r.Int(2)});
  return totals;
}

}  // namespace medcard::insurance
