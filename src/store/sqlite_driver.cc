// SQLite: the embedded default. One file in WAL mode with synchronous=FULL, so a transaction that
// COMMIT acknowledged survives a crash or a power cut; foreign keys enforced; writers wait for
// each other up to busy_timeout.
#include <sqlite3.h>

#include <cctype>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/driver.h"

namespace medcard::store::detail {
namespace {

constexpr std::size_t kStatementCacheLimit = 256;

ErrorKind KindOf(int extended_code) {
  switch (extended_code) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
      return ErrorKind::kUniqueViolation;
    default:
      break;
  }
  switch (extended_code & 0xFF) {
    case SQLITE_CONSTRAINT:
      return ErrorKind::kConstraintViolation;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorKind::kRetryable;
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_IOERR:
    case SQLITE_FULL:
      return ErrorKind::kConnectionLost;
    default:
      return ErrorKind::kOther;
  }
}

class SqliteDriver final : public Driver {
 public:
  explicit SqliteDriver(sqlite3* db) : db_(db) {}
  ~SqliteDriver() override {
    for (auto& [sql, prepared] : cache_) sqlite3_finalize(prepared.statement);
    sqlite3_close_v2(db_);
  }

  Engine engine() const override { return Engine::kSqlite; }

  bool InTransaction() const override { return sqlite3_get_autocommit(db_) == 0; }

  std::int64_t LastInsertRowId() const override { return sqlite3_last_insert_rowid(db_); }

  std::string_view BeginSql(TransactionMode mode) const override {
    return mode == TransactionMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED";
  }

  DbError LastError(std::string_view context) const {
    const int code = sqlite3_extended_errcode(db_);
    return MakeDbError(KindOf(code), std::string(context) + sqlite3_errmsg(db_));
  }

  // A prepared statement and its result's column names (shared by every row it returns).
  struct Prepared {
    sqlite3_stmt* statement = nullptr;
    std::shared_ptr<std::vector<std::string>> columns;
  };

  DbResult<Prepared*> Prepare(std::string_view sql) {
    if (auto it = cache_.find(sql); it != cache_.end()) return &it->second;
    const std::string key(sql);
    sqlite3_stmt* statement = nullptr;
    const char* tail = nullptr;
    if (sqlite3_prepare_v3(db_, key.c_str(), static_cast<int>(key.size()),
                           SQLITE_PREPARE_PERSISTENT, &statement, &tail) != SQLITE_OK) {
      return LastError("");
    }
    if (statement == nullptr) return MakeDbError(ErrorKind::kOther, "empty SQL statement");
    for (; tail != nullptr && *tail != '\0'; ++tail) {
      if (!std::isspace(static_cast<unsigned char>(*tail)) && *tail != ';') {
        sqlite3_finalize(statement);
        return MakeDbError(ErrorKind::kOther,
                           "one statement at a time (ExecuteScript runs several): " + key);
      }
    }
    if (cache_.size() >= kStatementCacheLimit) {
      for (auto& [cached_sql, cached] : cache_) sqlite3_finalize(cached.statement);
      cache_.clear();
    }
    auto columns = std::make_shared<std::vector<std::string>>();
    for (int c = 0; c < sqlite3_column_count(statement); ++c) {
      columns->emplace_back(sqlite3_column_name(statement, c));
    }
    return &cache_.emplace(key, Prepared{statement, std::move(columns)}).first->second;
  }

  // The values are bound without a copy (SQLITE_STATIC): `params` outlives the statement's run,
  // and Run clears the bindings before it returns.
  DbStatus Bind(sqlite3_stmt* statement, const Params& params) {
    const int expected = sqlite3_bind_parameter_count(statement);
    if (expected != static_cast<int>(params.size())) {
      return MakeDbError(ErrorKind::kOther, "the statement has " + std::to_string(expected) +
                                                " placeholders but " +
                                                std::to_string(params.size()) +
                                                " parameters: " + sqlite3_sql(statement));
    }
    for (int i = 0; i < expected; ++i) {
      const Value& v = params[static_cast<std::size_t>(i)];
      int rc = SQLITE_OK;
      switch (v.type()) {
        case Value::Type::kNull:
          rc = sqlite3_bind_null(statement, i + 1);
          break;
        case Value::Type::kInt:
          rc = sqlite3_bind_int64(statement, i + 1, v.AsInt());
          break;
        case Value::Type::kText:
          rc = sqlite3_bind_text64(statement, i + 1, v.AsText().data(), v.AsText().size(),
                                   SQLITE_STATIC, SQLITE_UTF8);
          break;
        case Value::Type::kBlob: {
          // A zero-length blob must stay a blob, not become NULL.
          static const std::uint8_t kEmpty = 0;
          rc = sqlite3_bind_blob64(statement, i + 1,
                                   v.AsBlob().empty() ? &kEmpty : v.AsBlob().data(),
                                   v.AsBlob().size(), SQLITE_STATIC);
          break;
        }
      }
      if (rc != SQLITE_OK) return LastError("binding parameters: ");
    }
    return Done{};
  }

  static Value ColumnValue(sqlite3_stmt* statement, int column) {
    switch (sqlite3_column_type(statement, column)) {
      case SQLITE_INTEGER:
        return Value(static_cast<std::int64_t>(sqlite3_column_int64(statement, column)));
      case SQLITE_TEXT: {
        const auto* text = sqlite3_column_text(statement, column);
        return Value(
            std::string(reinterpret_cast<const char*>(text),
                        static_cast<std::size_t>(sqlite3_column_bytes(statement, column))));
      }
      case SQLITE_BLOB: {
        const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(statement, column));
        const auto size = static_cast<std::size_t>(sqlite3_column_bytes(statement, column));
        return Value(data == nullptr ? Bytes{} : Bytes(data, data + size));
      }
      case SQLITE_FLOAT:
        // medcard stores no floating point; show it as text rather than round it silently.
        return Value(std::to_string(sqlite3_column_double(statement, column)));
      default:
        return Value();
    }
  }

  DbResult<StatementResult> Run(std::string_view sql, const Params& params) override {
    auto prepared = Prepare(sql);
    if (!prepared) return prepared.error();
    sqlite3_stmt* statement = (*prepared)->statement;
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{statement};
    if (auto bound = Bind(statement, params); !bound) return bound.error();

    StatementResult result;
    auto& names = (*prepared)->columns;
    int columns = 0;
    for (bool first = true;; first = false) {
      const int rc = sqlite3_step(statement);
      if (first) {
        columns = sqlite3_column_count(statement);
        if (names->size() != static_cast<std::size_t>(columns)) {
          // SQLite re-prepared the statement after a schema change (SELECT * of an altered table).
          names = std::make_shared<std::vector<std::string>>();
          for (int c = 0; c < columns; ++c) names->emplace_back(sqlite3_column_name(statement, c));
        }
      }
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return LastError("");
      std::vector<Value> values;
      values.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) values.push_back(ColumnValue(statement, c));
      result.rows.rows.emplace_back(names, std::move(values));
    }
    result.rows.columns = *names;
    result.rows_changed = sqlite3_stmt_readonly(statement) ? 0 : sqlite3_changes64(db_);
    return result;
  }

  DbStatus RunScript(std::string_view sql) override {
    const std::string text(sql);
    char* message = nullptr;
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      DbError error = LastError("");
      if (message != nullptr) {
        error.message = message;
        sqlite3_free(message);
      }
      return error;
    }
    return Done{};
  }

 private:
  sqlite3* db_;
  // Looked up by string_view without a copy of the SQL.
  struct SqlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view sql) const {
      return std::hash<std::string_view>()(sql);
    }
  };
  std::unordered_map<std::string, Prepared, SqlHash, std::equal_to<>> cache_;
};

}  // namespace

DbResult<std::unique_ptr<Driver>> OpenSqlite(const std::string& path, const OpenOptions& options) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (options.create_if_missing) {
    flags |= SQLITE_OPEN_CREATE;
    const auto parent = std::filesystem::path(path).parent_path();
    std::error_code ignored;
    if (!parent.empty()) std::filesystem::create_directories(parent, ignored);
  } else if (std::error_code ec; !std::filesystem::exists(path, ec)) {
    return MakeDbError(ErrorKind::kConnectionLost, "no database file (not created: read-only use)");
  }
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return MakeDbError(ErrorKind::kConnectionLost, "cannot open: " + message);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(options.busy_timeout.count()));
  auto driver = std::make_unique<SqliteDriver>(db);

  // WAL: readers never block the writer; FULL: the WAL is fsynced at every commit.
  auto mode = driver->Run("PRAGMA journal_mode=WAL", {});
  if (!mode) return mode.error();
  if (mode->rows.empty() || mode->rows[0][0].type() != Value::Type::kText ||
      mode->rows[0].Text(0) != "wal") {
    return MakeDbError(ErrorKind::kOther, "the database refused WAL journal mode");
  }
  // cache_size: 64 MiB of pages per connection (the default 2 MiB makes every index lookup in a
  // large database a read system call); bounded, whatever the number of cards.
  // temp_store: savepoint sub-journals (a savepoint per request in a group commit) stay in
  // memory instead of spilling into a temporary file a write(2) per page; a rollback does the
  // same either way.
  for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                             "PRAGMA cache_size=-65536", "PRAGMA temp_store=MEMORY"}) {
    if (auto set = driver->RunScript(pragma); !set) return set.error();
  }
  return std::unique_ptr<Driver>(std::move(driver));
}

}  // namespace medcard::store::detail
