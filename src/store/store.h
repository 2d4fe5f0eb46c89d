// The host's database: SQLite (the embedded default) and PostgreSQL (a server deployment) behind
// one small interface, and versioned schema migrations (docs/store.md).
//
//   auto db = store::Database::Open("sqlite:/var/lib/medcard/medcard.db");  // or postgresql://...
//   auto conn = (*db)->Connect();
//   auto tx = store::Transaction::Begin(**conn);
//   (*conn)->Execute("UPDATE t SET n = n + ? WHERE id = ?", {5, "a"});
//   tx->Commit();
//
// SQL is written once, with `?` placeholders (turned into $1, $2... for PostgreSQL); parameters
// are always bound, never spliced into the text. A Connection is used by one thread at a time;
// open one per thread (or per request) from the shared Database.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::store {

// ---------------------------------------------------------------------------------------------
// Errors that say what kind they are, so callers can act on them (retry, idempotency).

// The value of an operation that produces nothing.
struct Done {};

// Expected<T, E>: a value or an error E (a medcard::Error with more to say), never both.
// Converts to medcard::Result<T> / Status for callers that only report the message.
template <typename T, typename E>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Expected(E error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok()
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // REQUIRES: !ok()
  const E& error() const { return std::get<1>(v_); }

  operator Result<T>() const& {  // NOLINT(google-explicit-constructor)
    if (ok()) return value();
    return Error(error());
  }
  operator Result<T>() && {  // NOLINT(google-explicit-constructor)
    if (ok()) return std::move(*this).value();
    return Error(error());
  }
  operator Status() const {  // NOLINT(google-explicit-constructor)
    if (ok()) return Status::Ok();
    return Error(error());
  }

 private:
  std::variant<T, E> v_;
};

enum class ErrorKind {
  kOther,                // anything else: the message says what (SQL error, misuse, ...)
  kUniqueViolation,      // a UNIQUE or PRIMARY KEY constraint refused a row
  kConstraintViolation,  // another constraint (CHECK, FOREIGN KEY, NOT NULL)
  kRetryable,            // serialization failure or deadlock (PostgreSQL), busy/locked (SQLite):
                         // run the whole transaction again
  kConnectionLost,       // the server went away or the file could not be opened
  kInjectedFault,        // Connection::InjectFault fired (tests only)
};
std::string_view ErrorKindName(ErrorKind kind);

struct DbError : Error {
  ErrorKind kind = ErrorKind::kOther;
  bool retryable() const { return kind == ErrorKind::kRetryable; }
};
DbError MakeDbError(ErrorKind kind, std::string message);

template <typename T>
using DbResult = Expected<T, DbError>;
using DbStatus = Expected<Done, DbError>;

// ---------------------------------------------------------------------------------------------
// Values, parameters and rows.

struct Null {};

// One SQL value: NULL, a 64-bit integer, text (UTF-8) or a blob. Money is always an integer.
class Value {
 public:
  enum class Type { kNull, kInt, kText, kBlob };

  Value() = default;
  Value(Null) {}  // NOLINT(google-explicit-constructor)
  template <std::integral I>
  requires(!std::same_as<I, bool> && (std::is_signed_v<I> || sizeof(I) < 8)) Value(I v)
      : v_(static_cast<std::int64_t>(v)) {}          // NOLINT(google-explicit-constructor)
  Value(bool v) : v_(std::int64_t{v ? 1 : 0}) {}     // NOLINT(google-explicit-constructor)
  Value(std::string v) : v_(std::move(v)) {}         // NOLINT(google-explicit-constructor)
  Value(std::string_view v) : v_(std::string(v)) {}  // NOLINT(google-explicit-constructor)
  Value(const char* v) : v_(std::string(v)) {}       // NOLINT(google-explicit-constructor)
  Value(Bytes v) : v_(std::move(v)) {}               // NOLINT(google-explicit-constructor)
  template <typename T>
  Value(const std::optional<T>& v) {  // NOLINT(google-explicit-constructor)
    if (v) *this = Value(*v);
  }

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  // Each REQUIRES the matching type(): a mismatch is a bug in a query, so it aborts the program
  // with the column's story rather than inventing a value.
  std::int64_t AsInt() const;
  const std::string& AsText() const;
  const Bytes& AsBlob() const;
  // For messages and tests: 42, 'text', x'0A0B', NULL.
  std::string ToString() const;

  friend bool operator==(const Value&, const Value&) = default;

 private:
  std::variant<std::monostate, std::int64_t, std::string, Bytes> v_;
};

using Params = std::vector<Value>;

// A result row. Columns by position (0-based) or by name.
class Row {
 public:
  Row(std::shared_ptr<const std::vector<std::string>> columns, std::vector<Value> values)
      : columns_(std::move(columns)), values_(std::move(values)) {}

  std::size_t size() const { return values_.size(); }
  const Value& operator[](std::size_t column) const;
  const Value& operator[](std::string_view column) const;

  std::int64_t Int(std::size_t column) const { return (*this)[column].AsInt(); }
  std::int64_t Int(std::string_view column) const { return (*this)[column].AsInt(); }
  const std::string& Text(std::size_t column) const { return (*this)[column].AsText(); }
  const std::string& Text(std::string_view column) const { return (*this)[column].AsText(); }
  const Bytes& Blob(std::size_t column) const { return (*this)[column].AsBlob(); }
  const Bytes& Blob(std::string_view column) const { return (*this)[column].AsBlob(); }
  bool IsNull(std::size_t column) const { return (*this)[column].is_null(); }
  bool IsNull(std::string_view column) const { return (*this)[column].is_null(); }
  std::optional<std::int64_t> OptionalInt(std::string_view column) const;
  std::optional<std::string> OptionalText(std::string_view column) const;

 private:
  std::shared_ptr<const std::vector<std::string>> columns_;
  std::vector<Value> values_;
};

struct Rows {
  std::vector<std::string> columns;
  std::vector<Row> rows;

  bool empty() const { return rows.empty(); }
  std::size_t size() const { return rows.size(); }
  const Row& operator[](std::size_t i) const { return rows[i]; }
  std::vector<Row>::const_iterator begin() const { return rows.begin(); }
  std::vector<Row>::const_iterator end() const { return rows.end(); }
};

// ---------------------------------------------------------------------------------------------
// Engines, connections, transactions.

enum class Engine { kSqlite, kPostgres };
std::string_view EngineName(Engine engine);  // "sqlite", "postgresql"

struct OpenOptions {
  // SQLite: create the file (and its directory) when missing. A checking tool says false.
  bool create_if_missing = true;
  // SQLite: how long a writer waits for another process's write lock before kRetryable.
  std::chrono::milliseconds busy_timeout{10'000};
};

namespace detail {
class Driver;
}

// When an injected fault strikes: before the statement reaches the engine, or after the engine
// executed it (the caller sees an error for work that was done — a lost reply).
enum class FaultTiming { kBefore, kAfter };

// One session with the database. Not thread-safe: one thread at a time.
class Connection {
 public:
  explicit Connection(std::unique_ptr<detail::Driver> driver);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Engine engine() const;

  // One statement; returns the number of rows it changed. Prepared once per connection and
  // cached; `?` placeholders bound from params (their count must match).
  DbResult<std::int64_t> Execute(std::string_view sql, const Params& params = {});
  // One statement that returns rows (SELECT, or INSERT/UPDATE ... RETURNING).
  DbResult<Rows> Query(std::string_view sql, const Params& params = {});
  // An INSERT of one row into a table whose auto-numbered ({{ID}}) column is `id_column`: the new
  // row's id, or nullopt when nothing was inserted (ON CONFLICT DO NOTHING). The SQL has no
  // RETURNING: SQLite answers from the connection's last insert rowid (a RETURNING clause makes it
  // build and free a temporary b-tree per statement), PostgreSQL gets RETURNING id_column.
  DbResult<std::optional<std::int64_t>> InsertReturningId(std::string_view sql,
                                                          std::string_view id_column,
                                                          const Params& params = {});
  // Several statements separated by `;`, no parameters, nothing prepared (migrations).
  DbStatus ExecuteScript(std::string_view sql);

  // True between a Transaction's Begin and its Commit/Rollback (as the engine sees it).
  bool InTransaction() const;

  // Test seam (LevelDB's fault_injection_test in spirit): the nth statement from now (1 = the
  // next one; BEGIN and COMMIT count, ROLLBACK does not) fails with kInjectedFault, at `timing`.
  // Fires once. nth = 0 disarms.
  void InjectFault(std::int64_t nth, FaultTiming timing = FaultTiming::kBefore);
  bool fault_fired() const { return fault_fired_; }
  // Statements this connection has run (the unit InjectFault counts in).
  std::int64_t statements_run() const { return statements_run_; }

 private:
  friend class Transaction;
  DbStatus Control(std::string_view sql);  // BEGIN / COMMIT, counted and fault-injectable
  void RollbackQuietly();                  // ROLLBACK, never injected; errors are dropped
  std::optional<DbError> BeforeStatement();
  std::optional<DbError> AfterStatement();

  std::unique_ptr<detail::Driver> driver_;
  std::int64_t statements_run_ = 0;
  std::int64_t fault_at_ = 0;  // statements_run_ value at which the fault strikes; 0 = none
  FaultTiming fault_timing_ = FaultTiming::kBefore;
  bool fault_fired_ = false;
};

// kWrite: SQLite BEGIN IMMEDIATE (takes the write lock up front, so a transaction never fails
// half-way for a lock); PostgreSQL SERIALIZABLE. kRead: a consistent snapshot — SQLite BEGIN
// DEFERRED (a WAL read transaction), PostgreSQL REPEATABLE READ READ ONLY.
enum class TransactionMode { kWrite, kRead };

// RAII: rolls back unless committed.
class Transaction {
 public:
  static DbResult<Transaction> Begin(Connection& connection,
                                     TransactionMode mode = TransactionMode::kWrite);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  // On failure the transaction is rolled back (or was never committed): nothing of it stays.
  // REQUIRES: neither Commit nor Rollback was called before.
  DbStatus Commit();
  void Rollback();
  Connection& connection() { return *connection_; }

 private:
  explicit Transaction(Connection& connection) : connection_(&connection) {}
  Connection* connection_;
  bool open_ = true;
};

struct RetryPolicy {
  int max_attempts = 50;
  std::chrono::microseconds first_backoff{200};  // doubled per attempt, with jitter
  std::chrono::microseconds max_backoff{50'000};
};

// Runs body inside a transaction and commits it; when the engine reports kRetryable (from the
// body, BEGIN or COMMIT) the whole transaction runs again, up to policy.max_attempts times. The
// body must be safe to run again: it sees a clean slate each time.
DbStatus RunTransaction(Connection& connection, TransactionMode mode,
                        const std::function<DbStatus(Connection&)>& body, RetryPolicy policy = {});

// ---------------------------------------------------------------------------------------------
// Multi-row statements: set-wise work over many rows (clearing a batch of uploads) in a few
// statements rather than one per row.
//
// Runs head ‖ row_sql ‖ ", " ‖ row_sql ... ‖ tail once per chunk of rows; `row_sql` is one row's
// placeholders, e.g. "(?, CAST(? AS BIGINT))" (PostgreSQL types a bare `?` in VALUES as text),
// and `values` holds `columns` values per row, row after row. Chunks are powers of two rows up to
// kMaxRowsPerStatement (fewer when the row has many columns), so a connection prepares and caches
// a handful of statement texts whatever the number of rows. No rows: nothing runs.
inline constexpr std::size_t kMaxRowsPerStatement = 512;
// The number of rows each statement changed, summed.
DbResult<std::int64_t> ExecuteRows(Connection& connection, std::string_view head,
                                   std::string_view row_sql, std::size_t columns, Params values,
                                   std::string_view tail = {});
// The rows every chunk's statement returned (SELECT, or ... RETURNING), chunk after chunk.
DbResult<Rows> QueryRows(Connection& connection, std::string_view head, std::string_view row_sql,
                         std::size_t columns, Params values, std::string_view tail = {});

// Sleeps before retry number `attempt` (1 = the first retry) as `policy` says.
void BackOff(const RetryPolicy& policy, int attempt);

// A database: where it is and how to connect to it. Thread-safe; Connect from any thread.
class Database {
 public:
  // url: "sqlite:/path/file.db", "sqlite:relative/file.db", a bare path (SQLite), or
  // "postgresql://user@host:port/dbname?..." / "postgres://..." (libpq's URI syntax). Opens one
  // connection to check that the database is there.
  static DbResult<std::unique_ptr<Database>> Open(std::string_view url, OpenOptions options = {});

  Engine engine() const { return engine_; }
  // The URL without any password, for messages.
  const std::string& description() const { return description_; }
  DbResult<std::unique_ptr<Connection>> Connect() const;

 private:
  Database(Engine engine, std::string target, std::string description, OpenOptions options)
      : engine_(engine),
        target_(std::move(target)),
        description_(std::move(description)),
        options_(options) {}
  Engine engine_;
  std::string target_;  // SQLite: the file path; PostgreSQL: the URL as given
  std::string description_;
  OpenOptions options_;
};

// `--data DIR`: the embedded database of a medcard process lives in DIR/medcard.db.
std::string SqliteUrlForDataDir(std::string_view dir);
// The URL with any password replaced by "***".
std::string RedactUrl(std::string_view url);
// `?` placeholders → $1, $2, ... (outside quotes, comments and dollar-quoted text). Exposed for
// tests. Returns the count of placeholders in *count.
std::string ToPostgresPlaceholders(std::string_view sql, int* count);

// ---------------------------------------------------------------------------------------------
// Migrations.
//
// A component owns an ordered list of migrations; adding one is one line in that list:
//   {3, "card blacklist", R"sql(CREATE TABLE blacklist (asn TEXT PRIMARY KEY, since BIGINT))sql"},
// Portable SQL runs on both engines. Two tokens cover the usual differences:
//   {{ID}}    an auto-numbered 64-bit primary key column (SQLite INTEGER PRIMARY KEY
//             AUTOINCREMENT, PostgreSQL BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY)
//   {{BLOB}}  binary (BLOB, BYTEA)
// When an engine needs different SQL altogether (e.g. PostgreSQL table partitioning), give it
// in sqlite_sql / postgres_sql; it replaces `sql` for that engine.
struct Migration {
  int version = 0;  // 1, 2, 3...: strictly increasing within a set
  std::string name;
  std::string sql;
  std::string sqlite_sql = {};
  std::string postgres_sql = {};
};

struct MigrationSet {
  std::string component;  // "ledger", "host", ...: the key in schema_migrations
  std::vector<Migration> migrations;
};

// The SQL a migration runs on `engine`, tokens replaced.
std::string MigrationSql(const Migration& migration, Engine engine);

// Applies every migration of `set` that schema_migrations does not record yet, in version order,
// each in its own transaction together with its schema_migrations row. Returns how many it
// applied (0 when up to date). Safe on every start and from several processes at once. Fails
// when an applied migration's SQL has changed since, or the database has a newer version than
// `set` knows.
DbResult<int> Migrate(Connection& connection, const MigrationSet& set);

struct AppliedMigration {
  std::string component;
  int version = 0;
  std::string name;
  std::string checksum;
  std::int64_t applied_at_us = 0;
};
// Everything recorded in schema_migrations (empty when the table does not exist yet).
DbResult<std::vector<AppliedMigration>> AppliedMigrations(Connection& connection);
// The highest applied version of `component`, 0 when none.
DbResult<int> SchemaVersion(Connection& connection, std::string_view component);

}  // namespace medcard::store
