// The engine-independent half of the store: values and rows, connections (statement counting
// and fault injection), transactions and their retry loop, URLs.
#include "store/store.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "store/driver.h"

namespace medcard::store {

namespace {

[[noreturn]] void TypeMismatch(const Value& value, const char* wanted) {
  std::fprintf(stderr, "medcard store: a column holds %s where the query expects %s\n",
               value.ToString().c_str(), wanted);
  std::abort();
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

}  // namespace

std::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kOther:
      return "error";
    case ErrorKind::kUniqueViolation:
      return "unique violation";
    case ErrorKind::kConstraintViolation:
      return "constraint violation";
    case ErrorKind::kRetryable:
      return "retryable conflict";
    case ErrorKind::kConnectionLost:
      return "connection lost";
    case ErrorKind::kInjectedFault:
      return "injected fault";
  }
  return "error";
}

DbError MakeDbError(ErrorKind kind, std::string message) {
  DbError error;
  error.message = std::move(message);
  error.kind = kind;
  return error;
}

std::string_view EngineName(Engine engine) {
  return engine == Engine::kSqlite ? "sqlite" : "postgresql";
}

// ---------------------------------------------------------------------------------------------
// Values and rows.

std::int64_t Value::AsInt() const {
  if (type() != Type::kInt) TypeMismatch(*this, "an integer");
  return std::get<std::int64_t>(v_);
}

const std::string& Value::AsText() const {
  if (type() != Type::kText) TypeMismatch(*this, "text");
  return std::get<std::string>(v_);
}

const Bytes& Value::AsBlob() const {
  if (type() != Type::kBlob) TypeMismatch(*this, "a blob");
  return std::get<Bytes>(v_);
}

std::string Value::ToString() const {
  switch (type()) {
    case Type::kNull:
      return "NULL";
    case Type::kInt:
      return std::to_string(std::get<std::int64_t>(v_));
    case Type::kText:
      return "'" + std::get<std::string>(v_) + "'";
    case Type::kBlob:
      return "x'" + ToHex(std::get<Bytes>(v_)) + "'";
  }
  return "?";
}

const Value& Row::operator[](std::size_t column) const {
  if (column >= values_.size()) {
    std::fprintf(stderr, "medcard store: column %zu asked of a row of %zu columns\n", column,
                 values_.size());
    std::abort();
  }
  return values_[column];
}

const Value& Row::operator[](std::string_view column) const {
  for (std::size_t i = 0; i < columns_->size(); ++i) {
    if ((*columns_)[i] == column) return values_[i];
  }
  std::fprintf(stderr, "medcard store: no column \"%.*s\" in the result\n",
               static_cast<int>(column.size()), column.data());
  std::abort();
}

std::optional<std::int64_t> Row::OptionalInt(std::string_view column) const {
  const Value& v = (*this)[column];
  if (v.is_null()) return std::nullopt;
  return v.AsInt();
}

std::optional<std::string> Row::OptionalText(std::string_view column) const {
  const Value& v = (*this)[column];
  if (v.is_null()) return std::nullopt;
  return v.AsText();
}

// ---------------------------------------------------------------------------------------------
// Connection.

Connection::Connection(std::unique_ptr<detail::Driver> driver) : driver_(std::move(driver)) {}
Connection::~Connection() = default;

Engine Connection::engine() const { return driver_->engine(); }
bool Connection::InTransaction() const { return driver_->InTransaction(); }

void Connection::InjectFault(std::int64_t nth, FaultTiming timing) {
  fault_at_ = nth > 0 ? statements_run_ + nth : 0;
  fault_timing_ = timing;
  fault_fired_ = false;
}

std::optional<DbError> Connection::BeforeStatement() {
  ++statements_run_;
  if (fault_at_ == statements_run_ && fault_timing_ == FaultTiming::kBefore) {
    fault_at_ = 0;
    fault_fired_ = true;
    return MakeDbError(ErrorKind::kInjectedFault,
                       "injected fault before statement " + std::to_string(statements_run_));
  }
  return std::nullopt;
}

std::optional<DbError> Connection::AfterStatement() {
  if (fault_at_ == statements_run_ && fault_timing_ == FaultTiming::kAfter) {
    fault_at_ = 0;
    fault_fired_ = true;
    return MakeDbError(ErrorKind::kInjectedFault,
                       "injected fault after statement " + std::to_string(statements_run_));
  }
  return std::nullopt;
}

DbResult<std::int64_t> Connection::Execute(std::string_view sql, const Params& params) {
  if (auto fault = BeforeStatement()) return *fault;
  auto result = driver_->Run(sql, params);
  if (!result) return result.error();
  if (auto fault = AfterStatement()) return *fault;
  return result->rows_changed;
}

DbResult<Rows> Connection::Query(std::string_view sql, const Params& params) {
  if (auto fault = BeforeStatement()) return *fault;
  auto result = driver_->Run(sql, params);
  if (!result) return result.error();
  if (auto fault = AfterStatement()) return *fault;
  return std::move(result->rows);
}

DbResult<std::optional<std::int64_t>> Connection::InsertReturningId(std::string_view sql,
                                                                    std::string_view id_column,
                                                                    const Params& params) {
  using Id = std::optional<std::int64_t>;
  if (engine() == Engine::kSqlite) {
    auto changed = Execute(sql, params);
    if (!changed) return changed.error();
    if (*changed == 0) return Id();
    return Id(driver_->LastInsertRowId());
  }
  auto rows = Query(std::string(sql) + " RETURNING " + std::string(id_column), params);
  if (!rows) return rows.error();
  if (rows->empty()) return Id();
  return Id(rows->rows[0].Int(0));
}

DbStatus Connection::ExecuteScript(std::string_view sql) {
  if (auto fault = BeforeStatement()) return *fault;
  auto status = driver_->RunScript(sql);
  if (!status) return status;
  if (auto fault = AfterStatement()) return *fault;
  return Done{};
}

DbStatus Connection::Control(std::string_view sql) { return ExecuteScript(sql); }

void Connection::RollbackQuietly() {
  if (driver_->InTransaction()) (void)driver_->RunScript("ROLLBACK");
}

// ---------------------------------------------------------------------------------------------
// Transactions.

DbResult<Transaction> Transaction::Begin(Connection& connection, TransactionMode mode) {
  if (connection.InTransaction()) {
    return MakeDbError(ErrorKind::kOther, "a transaction is already open on this connection");
  }
  auto begun = connection.Control(connection.driver_->BeginSql(mode));
  if (!begun) {
    connection.RollbackQuietly();  // a fault after BEGIN leaves one open
    return begun.error();
  }
  return Transaction(connection);
}

Transaction::Transaction(Transaction&& other) noexcept
    : connection_(other.connection_), open_(other.open_) {
  other.open_ = false;
}

Transaction::~Transaction() {
  if (open_) connection_->RollbackQuietly();
}

DbStatus Transaction::Commit() {
  open_ = false;
  auto committed = connection_->Control("COMMIT");
  // A COMMIT that failed may leave the transaction open (SQLite) or already ended (PostgreSQL).
  if (!committed) connection_->RollbackQuietly();
  return committed;
}

void Transaction::Rollback() {
  open_ = false;
  connection_->RollbackQuietly();
}

void BackOff(const RetryPolicy& policy, int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  auto wait = policy.first_backoff;
  for (int i = 1; i < attempt && wait < policy.max_backoff; ++i) wait *= 2;
  if (wait > policy.max_backoff) wait = policy.max_backoff;
  const auto half = wait.count() / 2;
  // Jitter, so that two clients that collided do not collide again in lockstep.
  std::uniform_int_distribution<std::int64_t> jitter(0, half > 0 ? half : 0);
  std::this_thread::sleep_for(std::chrono::microseconds(half + jitter(random)));
}

DbStatus RunTransaction(Connection& connection, TransactionMode mode,
                        const std::function<DbStatus(Connection&)>& body, RetryPolicy policy) {
  for (int attempt = 1;; ++attempt) {
    DbError error;
    auto tx = Transaction::Begin(connection, mode);
    if (tx) {
      auto status = body(connection);
      if (status) {
        auto committed = tx->Commit();
        if (committed) return Done{};
        error = committed.error();
      } else {
        tx->Rollback();
        error = status.error();
      }
    } else {
      error = tx.error();
    }
    if (!error.retryable() || attempt >= policy.max_attempts) {
      if (error.retryable()) {
        error.message += " (gave up after " + std::to_string(attempt) + " attempts)";
      }
      return error;
    }
    BackOff(policy, attempt);
  }
}

// ---------------------------------------------------------------------------------------------
// Databases and URLs.

std::string SqliteUrlForDataDir(std::string_view dir) {
  std::string path(dir);
  if (path.empty()) path = ".";
  if (path.back() != '/') path += '/';
  return "sqlite:" + path + "medcard.db";
}

std::string RedactUrl(std::string_view url) {
  std::string out(url);
  // postgresql://user:password@host → postgresql://user:***@host
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto authority = scheme + 3;
    const auto at = out.find('@', authority);
    const auto slash = out.find('/', authority);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const auto colon = out.find(':', authority);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // ...?password=secret&... → password=***
  for (std::size_t pos = out.find("password="); pos != std::string::npos;
       pos = out.find("password=", pos + 1)) {
    const auto start = pos + 9;
    const auto end = out.find_first_of("& ", start);
    out.replace(start, (end == std::string::npos ? out.size() : end) - start, "***");
  }
  return out;
}

DbResult<std::unique_ptr<Database>> Database::Open(std::string_view url, OpenOptions options) {
  std::unique_ptr<Database> db;
  if (StartsWith(url, "postgresql://") || StartsWith(url, "postgres://")) {
    db.reset(new Database(Engine::kPostgres, std::string(url), RedactUrl(url), options));
  } else {
    std::string_view path = url;
    if (StartsWith(path, "sqlite:")) {
      path.remove_prefix(7);
      if (StartsWith(path, "//")) path.remove_prefix(2);  // sqlite:///abs/path
    } else if (path.find("://") != std::string_view::npos) {
      return MakeDbError(ErrorKind::kOther,
                         "unknown database URL \"" + RedactUrl(url) +
                             "\" (expected sqlite:PATH, a path, or postgresql://...)");
    }
    if (path.empty()) return MakeDbError(ErrorKind::kOther, "empty SQLite database path");
    db.reset(
        new Database(Engine::kSqlite, std::string(path), "sqlite:" + std::string(path), options));
  }
  auto probe = db->Connect();
  if (!probe) return probe.error();
  return db;
}

DbResult<std::unique_ptr<Connection>> Database::Connect() const {
  auto driver = engine_ == Engine::kSqlite ? detail::OpenSqlite(target_, options_)
                                           : detail::OpenPostgres(target_);
  if (!driver) {
    auto error = driver.error();
    error.message = description_ + ": " + error.message;
    return error;
  }
  return std::make_unique<Connection>(std::move(driver).value());
}

std::string ToPostgresPlaceholders(std::string_view sql, int* count) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  std::size_t i = 0;
  const auto copy_until = [&](std::string_view end) {
    const auto stop = sql.find(end, i);
    const auto to = stop == std::string_view::npos ? sql.size() : stop + end.size();
    out.append(sql.substr(i, to - i));
    i = to;
  };
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      // A quoted literal or identifier; a doubled quote inside is an escaped quote.
      out += c;
      ++i;
      while (i < sql.size()) {
        out += sql[i];
        if (sql[i] == c) {
          if (i + 1 < sql.size() && sql[i + 1] == c) {
            out += c;
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        ++i;
      }
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      copy_until("\n");
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      copy_until("*/");
    } else if (c == '$' && i + 1 < sql.size() &&
               (sql[i + 1] == '$' || std::isalpha(static_cast<unsigned char>(sql[i + 1])) ||
                sql[i + 1] == '_')) {
      // A dollar-quoted string: $tag$ ... $tag$.
      std::size_t j = i + 1;
      while (j < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_'))
        ++j;
      if (j < sql.size() && sql[j] == '$') {
        const std::string tag(sql.substr(i, j - i + 1));
        out += tag;
        i = j + 1;
        copy_until(tag);
      } else {
        out += c;
        ++i;
      }
    } else if (c == '?') {
      out += '$' + std::to_string(++n);
      ++i;
    } else {
      out += c;
      ++i;
    }
  }
  if (count != nullptr) *count = n;
  return out;
}

}  // namespace medcard::store
