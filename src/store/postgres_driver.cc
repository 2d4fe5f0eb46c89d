// PostgreSQL through libpq: for a server deployment (several stateless hosts, one database).
// Statements are prepared once per connection (PQprepare) with `?` turned into $n; parameters go
// as text, blobs in binary; results come back as text and are typed by their column's type.
#include <libpq-fe.h>

#include <charconv>
#include <cstdlib>
#include <unordered_map>

#include "store/driver.h"

namespace medcard::store::detail {
namespace {

constexpr std::size_t kStatementCacheLimit = 256;

// pg_type OIDs (src/include/catalog/pg_type.dat).
constexpr Oid kBoolOid = 16, kByteaOid = 17, kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23,
              kOidOid = 26, kNumericOid = 1700;

ErrorKind KindOf(std::string_view sqlstate) {
  if (sqlstate == "23505") return ErrorKind::kUniqueViolation;
  if (sqlstate.starts_with("23")) return ErrorKind::kConstraintViolation;
  // serialization_failure, deadlock_detected
  if (sqlstate == "40001" || sqlstate == "40P01") return ErrorKind::kRetryable;
  // A prepared statement whose tables changed shape: run the transaction again, re-prepared.
  if (sqlstate == "0A000") return ErrorKind::kRetryable;
  if (sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03")
    return ErrorKind::kConnectionLost;
  return ErrorKind::kOther;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Owns a PGresult.
struct ResultPtr {
  PGresult* r = nullptr;
  explicit ResultPtr(PGresult* result) : r(result) {}
  ResultPtr(const ResultPtr&) = delete;
  ResultPtr& operator=(const ResultPtr&) = delete;
  ~ResultPtr() { PQclear(r); }
};

Value IntegerOrText(const char* text, int length) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text, text + length, v);
  if (ec == std::errc() && end == text + length) return Value(v);
  return Value(std::string(text, static_cast<std::size_t>(length)));
}

Value ColumnValue(const PGresult* result, int row, int column) {
  if (PQgetisnull(result, row, column)) return Value();
  const char* text = PQgetvalue(result, row, column);
  const int length = PQgetlength(result, row, column);
  switch (PQftype(result, column)) {
    case kInt8Oid:
    case kInt4Oid:
    case kInt2Oid:
    case kOidOid:
    case kNumericOid:  // SUM(bigint) is numeric: an integer when it is one
      return IntegerOrText(text, length);
    case kBoolOid:
      return Value(std::int64_t{text[0] == 't' ? 1 : 0});
    case kByteaOid: {
      // bytea_output = hex: "\x0a0b..."
      std::string_view hex(text, static_cast<std::size_t>(length));
      if (hex.starts_with("\\x")) hex.remove_prefix(2);
      if (auto bytes = FromHex(hex)) return Value(std::move(*bytes));
      return Value(std::string(text, static_cast<std::size_t>(length)));
    }
    default:
      return Value(std::string(text, static_cast<std::size_t>(length)));
  }
}

void IgnoreNotice(void*, const char*) {}

class PostgresDriver final : public Driver {
 public:
  explicit PostgresDriver(PGconn* conn) : conn_(conn) {}
  ~PostgresDriver() override { PQfinish(conn_); }

  Engine engine() const override { return Engine::kPostgres; }

  bool InTransaction() const override {
    const auto status = PQtransactionStatus(conn_);
    return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE;
  }

  std::string_view BeginSql(TransactionMode mode) const override {
    return mode == TransactionMode::kWrite ? "BEGIN ISOLATION LEVEL SERIALIZABLE"
                                           : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
  }

  DbError ErrorOf(const PGresult* result) const {
    if (PQstatus(conn_) == CONNECTION_BAD) {
      return MakeDbError(ErrorKind::kConnectionLost, Trim(PQerrorMessage(conn_)));
    }
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    const char* detail = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL) : nullptr;
    std::string message = primary ? primary : Trim(PQerrorMessage(conn_));
    if (detail) message += std::string(" (") + detail + ")";
    return MakeDbError(KindOf(state ? state : ""), message);
  }

  DbResult<std::string> Prepare(std::string_view sql, std::size_t param_count) {
    const std::string key(sql);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    int placeholders = 0;
    const std::string translated = ToPostgresPlaceholders(sql, &placeholders);
    if (static_cast<std::size_t>(placeholders) != param_count) {
      return MakeDbError(ErrorKind::kOther, "the statement has " + std::to_string(placeholders) +
                                                " placeholders but " + std::to_string(param_count) +
                                                " parameters: " + key);
    }
    if (cache_.size() >= kStatementCacheLimit && !InTransaction()) {
      ResultPtr cleared(PQexec(conn_, "DEALLOCATE ALL"));
      cache_.clear();
    }
    std::string name = "medcard_" + std::to_string(++statement_counter_);
    ResultPtr prepared(PQprepare(conn_, name.c_str(), translated.c_str(), placeholders, nullptr));
    if (PQresultStatus(prepared.r) != PGRES_COMMAND_OK) return ErrorOf(prepared.r);
    cache_.emplace(key, name);
    return name;
  }

  DbResult<StatementResult> Run(std::string_view sql, const Params& params) override {
    auto name = Prepare(sql, params.size());
    if (!name) return name.error();

    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<int> lengths(params.size(), 0);
    std::vector<int> formats(params.size(), 0);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Value& v = params[i];
      switch (v.type()) {
        case Value::Type::kNull:
          break;
        case Value::Type::kInt:
          texts[i] = std::to_string(v.AsInt());
          values[i] = texts[i].c_str();
          break;
        case Value::Type::kText:
          values[i] = v.AsText().c_str();
          break;
        case Value::Type::kBlob:
          values[i] = reinterpret_cast<const char*>(v.AsBlob().data());
          lengths[i] = static_cast<int>(v.AsBlob().size());
          formats[i] = 1;
          if (values[i] == nullptr) values[i] = "";  // an empty blob, not NULL
          break;
      }
    }
    ResultPtr result(PQexecPrepared(conn_, name->c_str(), static_cast<int>(params.size()),
                                    values.data(), lengths.data(), formats.data(), 0));
    const auto status = PQresultStatus(result.r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      DbError error = ErrorOf(result.r);
      const char* state = PQresultErrorField(result.r, PG_DIAG_SQLSTATE);
      if (state != nullptr && std::string_view(state) == "0A000") cache_.erase(std::string(sql));
      return error;
    }
    StatementResult out;
    const int columns = PQnfields(result.r);
    auto names = std::make_shared<std::vector<std::string>>();
    for (int c = 0; c < columns; ++c) names->emplace_back(PQfname(result.r, c));
    const int rows = PQntuples(result.r);
    for (int r = 0; r < rows; ++r) {
      std::vector<Value> row;
      row.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) row.push_back(ColumnValue(result.r, r, c));
      out.rows.rows.emplace_back(names, std::move(row));
    }
    out.rows.columns = *names;
    const char* changed = PQcmdTuples(result.r);
    out.rows_changed = (changed != nullptr && *changed != '\0') ? std::atoll(changed) : 0;
    return out;
  }

  DbStatus RunScript(std::string_view sql) override {
    const std::string text(sql);
    ResultPtr result(PQexec(conn_, text.c_str()));
    const auto status = PQresultStatus(result.r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
      return ErrorOf(result.r);
    }
    return Done{};
  }

 private:
  PGconn* conn_;
  std::unordered_map<std::string, std::string> cache_;  // SQL → prepared statement name
  std::int64_t statement_counter_ = 0;
};

}  // namespace

DbResult<std::unique_ptr<Driver>> OpenPostgres(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (conn == nullptr) return MakeDbError(ErrorKind::kConnectionLost, "out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = Trim(PQerrorMessage(conn));
    PQfinish(conn);
    return MakeDbError(ErrorKind::kConnectionLost, "cannot connect: " + message);
  }
  // NOTICEs ("relation exists, skipping") are not errors and must not litter stderr.
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  auto driver = std::make_unique<PostgresDriver>(conn);
  if (auto set = driver->RunScript("SET client_encoding = 'UTF8'; SET bytea_output = 'hex'");
      !set) {
    return set.error();
  }
  return std::unique_ptr<Driver>(std::move(driver));
}

}  // namespace medcard::store::detail
