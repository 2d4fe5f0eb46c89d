// Versioned schema migrations, recorded in schema_migrations (docs/store.md, "Migrations").
#include <chrono>
#include <cstdio>

#include "store/store.h"

namespace medcard::store {
namespace {

constexpr char kCreateMigrationsTable[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " component TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL,"
    " PRIMARY KEY (component, version))";

// Serialises migrations between PostgreSQL clients (SQLite's BEGIN IMMEDIATE already does): two
// hosts starting at once must not both create the same table. A session lock, taken before any
// transaction begins, so each migration's snapshot already sees what the previous holder did.
constexpr char kPostgresLock[] = "SELECT pg_advisory_lock(7305921864)";
constexpr char kPostgresUnlock[] = "SELECT pg_advisory_unlock(7305921864)";

class MigrationLock {
 public:
  explicit MigrationLock(Connection& connection) : connection_(connection) {}
  ~MigrationLock() {
    if (held_) (void)connection_.Query(kPostgresUnlock);
  }
  MigrationLock(const MigrationLock&) = delete;
  MigrationLock& operator=(const MigrationLock&) = delete;

  DbStatus Acquire() {
    if (connection_.engine() != Engine::kPostgres) return Done{};
    auto locked = connection_.Query(kPostgresLock);
    if (!locked) return locked.error();
    held_ = true;
    return Done{};
  }

 private:
  Connection& connection_;
  bool held_ = false;
};

std::int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// FNV-1a 64: detects a migration whose SQL was edited after it ran somewhere.
std::string Checksum(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : text) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

void ReplaceAll(std::string& text, std::string_view token, std::string_view with) {
  for (auto pos = text.find(token); pos != std::string::npos;
       pos = text.find(token, pos + with.size())) {
    text.replace(pos, token.size(), with);
  }
}

DbStatus EnsureMigrationsTable(Connection& connection) {
  return RunTransaction(connection, TransactionMode::kWrite, [](Connection& c) -> DbStatus {
    return c.ExecuteScript(kCreateMigrationsTable);
  });
}

DbError WithContext(const DbError& error, const std::string& context) {
  DbError out = error;
  out.message = context + ": " + error.message;
  return out;
}

}  // namespace

std::string MigrationSql(const Migration& migration, Engine engine) {
  std::string sql = migration.sql;
  if (engine == Engine::kSqlite && !migration.sqlite_sql.empty()) sql = migration.sqlite_sql;
  if (engine == Engine::kPostgres && !migration.postgres_sql.empty()) sql = migration.postgres_sql;
  if (engine == Engine::kSqlite) {
    ReplaceAll(sql, "{{ID}}", "INTEGER PRIMARY KEY AUTOINCREMENT");
    ReplaceAll(sql, "{{BLOB}}", "BLOB");
  } else {
    ReplaceAll(sql, "{{ID}}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY");
    ReplaceAll(sql, "{{BLOB}}", "BYTEA");
  }
  return sql;
}

DbResult<std::vector<AppliedMigration>> AppliedMigrations(Connection& connection) {
  // Whether the table exists, asked the way each engine answers it.
  const char* exists_sql =
      connection.engine() == Engine::kSqlite
          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
          : "SELECT COUNT(*) FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = ?";
  auto exists = connection.Query(exists_sql, {"schema_migrations"});
  if (!exists) return exists.error();
  std::vector<AppliedMigration> applied;
  if ((*exists)[0].Int(0) == 0) return applied;
  auto rows = connection.Query(
      "SELECT component, version, name, checksum, applied_at FROM schema_migrations"
      " ORDER BY component, version");
  if (!rows) return rows.error();
  for (const Row& row : *rows) {
    applied.push_back(AppliedMigration{row.Text("component"), static_cast<int>(row.Int("version")),
                                       row.Text("name"), row.Text("checksum"),
                                       row.Int("applied_at")});
  }
  return applied;
}

DbResult<int> SchemaVersion(Connection& connection, std::string_view component) {
  auto applied = AppliedMigrations(connection);
  if (!applied) return applied.error();
  int version = 0;
  for (const auto& m : *applied) {
    if (m.component == component && m.version > version) version = m.version;
  }
  return version;
}

DbResult<int> Migrate(Connection& connection, const MigrationSet& set) {
  if (set.component.empty()) return MakeDbError(ErrorKind::kOther, "a migration set needs a name");
  int previous = 0;
  for (const Migration& m : set.migrations) {
    if (m.version <= previous) {
      return MakeDbError(ErrorKind::kOther,
                         set.component + " migrations: version " + std::to_string(m.version) +
                             " after " + std::to_string(previous) + " (versions must increase)");
    }
    previous = m.version;
  }
  if (connection.InTransaction()) {
    return MakeDbError(ErrorKind::kOther, "Migrate runs its own transactions; commit first");
  }
  MigrationLock lock(connection);
  if (auto locked = lock.Acquire(); !locked) {
    return WithContext(locked.error(), "waiting for other migrations");
  }
  if (auto created = EnsureMigrationsTable(connection); !created) {
    return WithContext(created.error(), "creating schema_migrations");
  }
  const int newest_known = previous;

  int applied_now = 0;
  for (const Migration& m : set.migrations) {
    const std::string sql = MigrationSql(m, connection.engine());
    const std::string checksum = Checksum(sql);
    const std::string label =
        set.component + " migration " + std::to_string(m.version) + " (" + m.name + ")";
    bool applied_here = false;
    auto status =
        RunTransaction(connection, TransactionMode::kWrite, [&](Connection& c) -> DbStatus {
          applied_here = false;
          auto newest = c.Query("SELECT MAX(version) FROM schema_migrations WHERE component = ?",
                                {set.component});
          if (!newest) return newest.error();
          if (!(*newest)[0].IsNull(0) && (*newest)[0].Int(0) > newest_known) {
            return MakeDbError(ErrorKind::kOther, "the database has " + set.component +
                                                      " schema version " +
                                                      std::to_string((*newest)[0].Int(0)) +
                                                      ", newer than this program knows (" +
                                                      std::to_string(newest_known) + ")");
          }
          auto recorded =
              c.Query("SELECT checksum FROM schema_migrations WHERE component = ? AND version = ?",
                      {set.component, m.version});
          if (!recorded) return recorded.error();
          if (!recorded->empty()) {
            if (recorded->rows[0].Text(0) != checksum) {
              return MakeDbError(ErrorKind::kOther,
                                 "its SQL changed after it was applied (checksum " +
                                     recorded->rows[0].Text(0) + ", now " + checksum +
                                     "): add a new migration instead of editing an old one");
            }
            return Done{};
          }
          if (auto ran = c.ExecuteScript(sql); !ran) return ran;
          auto recorded_now = c.Execute(
              "INSERT INTO schema_migrations (component, version, name, checksum, applied_at)"
              " VALUES (?, ?, ?, ?, ?)",
              {set.component, m.version, m.name, checksum, NowMicros()});
          if (!recorded_now) return recorded_now.error();
          applied_here = true;
          return Done{};
        });
    if (!status) return WithContext(status.error(), label);
    if (applied_here) ++applied_now;
  }
  return applied_now;
}

}  // namespace medcard::store
