// The store on both engines: values, parameters, errors, transactions, retries, fault injection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <thread>

#include "store/store.h"
#include "test_database.h"

namespace medcard::store {
namespace {

using test_support::NewTempDir;
using test_support::NewTestDatabaseUrl;
using ::testing::HasSubstr;
using ::testing::Not;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

class StoreTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    auto url = NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    url_ = *url;
    auto db = Database::Open(url_);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    conn_ = Connect();
    ASSERT_TRUE(conn_
                    ->ExecuteScript("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT "
                                    "NULL UNIQUE, amount BIGINT CHECK (amount >= 0), data " +
                                    std::string(GetParam() == Engine::kSqlite ? "BLOB" : "BYTEA") +
                                    ")")
                    .ok());
  }

  std::unique_ptr<Connection> Connect() {
    auto conn = db_->Connect();
    EXPECT_TRUE(conn.ok()) << conn.error().message;
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::int64_t CountItems(Connection& c) {
    auto rows = c.Query("SELECT COUNT(*) FROM items");
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  std::string url_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<Connection> conn_;
};

INSTANTIATE_TEST_SUITE_P(Engines, StoreTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(StoreTest, Open_ReportsTheEngineOfTheUrl) {
  EXPECT_EQ(db_->engine(), GetParam());
  EXPECT_EQ(conn_->engine(), GetParam());
}

TEST_P(StoreTest, Execute_ReturnsRowsChanged) {
  auto inserted = conn_->Execute("INSERT INTO items (id, name, amount) VALUES (?, ?, ?), (?, ?, ?)",
                                 {1, "a", 10, 2, "b", 20});
  ASSERT_TRUE(inserted.ok()) << inserted.error().message;
  EXPECT_EQ(*inserted, 2);
  auto updated = conn_->Execute("UPDATE items SET amount = amount + ? WHERE amount >= ?", {1, 0});
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(*updated, 2);
  auto none = conn_->Execute("DELETE FROM items WHERE id = ?", {99});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
}

TEST_P(StoreTest, Query_ReturnsTypedValuesThatRoundTrip) {
  const Bytes binary = {0x00, 0xFF, 0x27, 0x5C, 0x00};  // NULs, a quote and a backslash
  const std::int64_t extremes[] = {std::numeric_limits<std::int64_t>::min(),
                                   std::numeric_limits<std::int64_t>::max()};
  ASSERT_TRUE(conn_
                  ->Execute("INSERT INTO items (id, name, amount, data) VALUES (?, ?, ?, ?)",
                            {1, "héllo 世界", extremes[1], binary})
                  .ok());
  ASSERT_TRUE(conn_
                  ->Execute("INSERT INTO items (id, name, amount, data) VALUES (?, ?, ?, ?)",
                            {2, "empty blob", Null{}, Bytes{}})
                  .ok());
  auto rows = conn_->Query(
      "SELECT id, name, amount, data, CAST(? AS BIGINT) AS minimum FROM items ORDER BY id",
      {extremes[0]});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 2u);
  const Row& first = (*rows)[0];
  EXPECT_EQ(first.Int("id"), 1);
  EXPECT_EQ(first.Text("name"), "héllo 世界");
  EXPECT_EQ(first.Int("amount"), extremes[1]);
  EXPECT_EQ(first.Blob("data"), binary);
  EXPECT_EQ(first.Int("minimum"), extremes[0]);
  const Row& second = (*rows)[1];
  EXPECT_TRUE(second.IsNull("amount"));
  EXPECT_EQ(second.OptionalInt("amount"), std::nullopt);
  EXPECT_EQ(second["data"].type(), Value::Type::kBlob);
  EXPECT_TRUE(second.Blob("data").empty());
  EXPECT_EQ(rows->columns, (std::vector<std::string>{"id", "name", "amount", "data", "minimum"}));
}

TEST_P(StoreTest, Params_AreBoundNeverSplicedIntoTheSql) {
  const std::string hostile = "x'); DROP TABLE items; --";
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {1, hostile}).ok());
  auto rows = conn_->Query("SELECT name FROM items WHERE name = ?", {hostile});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Text(0), hostile);
}

TEST_P(StoreTest, QuestionMarkInsideALiteral_IsNotAPlaceholder) {
  auto rows = conn_->Query("SELECT 'why?' AS q, ? AS p", {"answer"});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  EXPECT_EQ((*rows)[0].Text("q"), "why?");
  EXPECT_EQ((*rows)[0].Text("p"), "answer");
}

TEST_P(StoreTest, WrongParameterCount_IsAnErrorNotAGuess) {
  auto r = conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {1});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("2 placeholders but 1 parameters"));
  EXPECT_EQ(CountItems(*conn_), 0);
}

TEST_P(StoreTest, SqlError_CarriesTheEngineMessage) {
  auto r = conn_->Query("SELECT no_such_column FROM items");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kOther);
  EXPECT_THAT(r.error().message, HasSubstr("no_such_column"));
}

TEST_P(StoreTest, UniqueViolation_IsDistinguishable) {
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {1, "a"}).ok());
  auto same_name = conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {2, "a"});
  ASSERT_FALSE(same_name.ok());
  EXPECT_EQ(same_name.error().kind, ErrorKind::kUniqueViolation) << same_name.error().message;
  auto same_key = conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {1, "b"});
  ASSERT_FALSE(same_key.ok());
  EXPECT_EQ(same_key.error().kind, ErrorKind::kUniqueViolation);
  auto negative =
      conn_->Execute("INSERT INTO items (id, name, amount) VALUES (?, ?, ?)", {3, "c", -1});
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().kind, ErrorKind::kConstraintViolation) << negative.error().message;
}

TEST_P(StoreTest, Transaction_RollsBackUnlessCommitted) {
  {
    auto tx = Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok()) << tx.error().message;
    ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
    EXPECT_TRUE(conn_->InTransaction());
  }  // dropped without Commit
  EXPECT_FALSE(conn_->InTransaction());
  EXPECT_EQ(CountItems(*conn_), 0);

  auto tx = Transaction::Begin(*conn_);
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  ASSERT_TRUE(tx->Commit().ok());
  auto other = Connect();
  EXPECT_EQ(CountItems(*other), 1);
}

TEST_P(StoreTest, Transaction_WorkIsInvisibleToOthersUntilCommit) {
  auto other = Connect();
  auto tx = Transaction::Begin(*conn_);
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  EXPECT_EQ(CountItems(*other), 0);
  ASSERT_TRUE(tx->Commit().ok());
  EXPECT_EQ(CountItems(*other), 1);
}

TEST_P(StoreTest, Transaction_CannotNest) {
  auto tx = Transaction::Begin(*conn_);
  ASSERT_TRUE(tx.ok());
  auto inner = Transaction::Begin(*conn_);
  ASSERT_FALSE(inner.ok());
  EXPECT_THAT(inner.error().message, HasSubstr("already open"));
}

TEST_P(StoreTest, ReadTransaction_SeesOneSnapshot) {
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  auto reader = Connect();
  auto tx = Transaction::Begin(*reader, TransactionMode::kRead);
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(CountItems(*reader), 1);
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (2, 'b')").ok());
  EXPECT_EQ(CountItems(*reader), 1);  // still the snapshot
  ASSERT_TRUE(tx->Commit().ok());
  EXPECT_EQ(CountItems(*reader), 2);
}

TEST_P(StoreTest, WriteTransactions_AreIsolatedAsTheEngineDocuments) {
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  if (GetParam() == Engine::kPostgres) {
    auto tx = Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok());
    auto level = conn_->Query("SHOW transaction_isolation");
    ASSERT_TRUE(level.ok());
    EXPECT_EQ((*level)[0].Text(0), "serializable");
  } else {
    // BEGIN IMMEDIATE: a second writer waits for the lock (here: gives up after its timeout).
    OpenOptions impatient;
    impatient.busy_timeout = std::chrono::milliseconds(50);
    auto db = Database::Open(url_, impatient);
    ASSERT_TRUE(db.ok());
    auto second = (*db)->Connect();
    ASSERT_TRUE(second.ok());
    auto tx = Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok());
    auto blocked = Transaction::Begin(**second);
    ASSERT_FALSE(blocked.ok());
    EXPECT_EQ(blocked.error().kind, ErrorKind::kRetryable) << blocked.error().message;
  }
}

TEST_P(StoreTest, RunTransaction_RetriesConflictsUntilEveryIncrementLands) {
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name, amount) VALUES (1, 'counter', 0)").ok());
  constexpr int kThreads = 4, kIncrements = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto c = db_->Connect();
      if (!c.ok()) {
        ++failures;
        return;
      }
      for (int i = 0; i < kIncrements; ++i) {
        // Read, then write what was read + 1: lost updates unless isolation and retry work.
        auto status = RunTransaction(**c, TransactionMode::kWrite, [](Connection& tx) -> DbStatus {
          auto rows = tx.Query("SELECT amount FROM items WHERE id = 1");
          if (!rows) return rows.error();
          auto set =
              tx.Execute("UPDATE items SET amount = ? WHERE id = 1", {(*rows)[0].Int(0) + 1});
          if (!set) return set.error();
          return Done{};
        });
        if (!status) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto rows = conn_->Query("SELECT amount FROM items WHERE id = 1");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), kThreads * kIncrements);
}

TEST_P(StoreTest, RunTransaction_DoesNotRetryOrdinaryErrors) {
  int runs = 0;
  auto status = RunTransaction(*conn_, TransactionMode::kWrite, [&](Connection& c) -> DbStatus {
    ++runs;
    auto r = c.Execute("INSERT INTO items (id, name, amount) VALUES (1, 'a', -5)");
    if (!r) return r.error();
    return Done{};
  });
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, ErrorKind::kConstraintViolation);
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(conn_->InTransaction());
}

TEST_P(StoreTest, InjectedFaultBefore_StopsTheStatementReachingTheEngine) {
  conn_->InjectFault(2, FaultTiming::kBefore);
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  auto second = conn_->Execute("INSERT INTO items (id, name) VALUES (2, 'b')");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind, ErrorKind::kInjectedFault);
  EXPECT_TRUE(conn_->fault_fired());
  EXPECT_EQ(CountItems(*conn_), 1);  // and the fault fires once only
}

TEST_P(StoreTest, InjectedFaultAfter_ReportsFailureForWorkThatWasDone) {
  conn_->InjectFault(1, FaultTiming::kAfter);
  auto r = conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kInjectedFault);
  EXPECT_EQ(CountItems(*conn_), 1);
}

TEST_P(StoreTest, InjectedFaultAtCommit_RollsBackOrKeepsAllAsTheTimingSays) {
  for (const FaultTiming timing : {FaultTiming::kBefore, FaultTiming::kAfter}) {
    ASSERT_TRUE(conn_->Execute("DELETE FROM items").ok());
    auto tx = Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
    conn_->InjectFault(1, timing);  // the next statement is COMMIT
    auto committed = tx->Commit();
    ASSERT_FALSE(committed.ok());
    EXPECT_EQ(committed.error().kind, ErrorKind::kInjectedFault);
    EXPECT_FALSE(conn_->InTransaction());
    EXPECT_EQ(CountItems(*conn_), timing == FaultTiming::kBefore ? 0 : 1);
  }
}

TEST_P(StoreTest, StatementCache_SurvivesMoreDistinctStatementsThanItHolds) {
  for (int i = 0; i < 300; ++i) {
    auto rows = conn_->Query("SELECT ? + " + std::to_string(i) + " AS n", {1});
    ASSERT_TRUE(rows.ok()) << rows.error().message;
    EXPECT_EQ((*rows)[0].Int("n"), i + 1);
  }
  auto again = conn_->Query("SELECT ? + 0 AS n", {41});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].Int("n"), 41);
}

TEST_P(StoreTest, InsertReturningId_GivesTheNewRowsIdOrNothingWhenSkipped) {
  ASSERT_TRUE(conn_
                  ->ExecuteScript(GetParam() == Engine::kSqlite
                                      ? "CREATE TABLE numbered (seq INTEGER PRIMARY KEY "
                                        "AUTOINCREMENT, name TEXT NOT NULL UNIQUE)"
                                      : "CREATE TABLE numbered (seq BIGINT GENERATED ALWAYS AS "
                                        "IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
                  .ok());
  const char* sql = "INSERT INTO numbered (name) VALUES (?) ON CONFLICT (name) DO NOTHING";
  auto first = conn_->InsertReturningId(sql, "seq", {"a"});
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = conn_->InsertReturningId(sql, "seq", {"b"});
  ASSERT_TRUE(second.ok()) << second.error().message;
  ASSERT_TRUE(first->has_value() && second->has_value());
  EXPECT_GT(**second, **first);
  auto rows = conn_->Query("SELECT seq FROM numbered WHERE name = ?", {"b"});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), **second);

  auto again = conn_->InsertReturningId(sql, "seq", {"a"});  // the conflict inserts nothing
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(again->has_value());
}

TEST_P(StoreTest, CachedSelectStar_SeesColumnsAddedSinceItWasPrepared) {
  if (GetParam() != Engine::kSqlite) {
    GTEST_SKIP() << "PostgreSQL refuses the changed plan (retryable, re-prepared): other test";
  }
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (?, ?)", {1, "a"}).ok());
  auto before = conn_->Query("SELECT * FROM items WHERE id = ?", {1});
  ASSERT_TRUE(before.ok());
  EXPECT_EQ((*before)[0].size(), 4u);
  ASSERT_TRUE(conn_->ExecuteScript("ALTER TABLE items ADD COLUMN note TEXT DEFAULT 'n'").ok());
  auto after = conn_->Query("SELECT * FROM items WHERE id = ?", {1});
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ((*after)[0].Text("note"), "n");
}

TEST_P(StoreTest, ExecuteScript_RunsSeveralStatements) {
  ASSERT_TRUE(conn_
                  ->ExecuteScript("INSERT INTO items (id, name) VALUES (1, 'a');"
                                  "INSERT INTO items (id, name) VALUES (2, 'b');")
                  .ok());
  EXPECT_EQ(CountItems(*conn_), 2);
}

TEST_P(StoreTest, EngineSettings_AreTheDurableOnes) {
  if (GetParam() == Engine::kSqlite) {
    for (auto [pragma, expected] :
         {std::pair{"PRAGMA journal_mode", "wal"}, std::pair{"PRAGMA synchronous", "2"},  // FULL
          std::pair{"PRAGMA foreign_keys", "1"}}) {
      auto rows = conn_->Query(pragma);
      ASSERT_TRUE(rows.ok());
      EXPECT_EQ((*rows)[0][std::size_t{0}].ToString().find(expected) != std::string::npos, true)
          << pragma << " = " << (*rows)[0][std::size_t{0}].ToString();
    }
  } else {
    auto rows = conn_->Query("SHOW server_encoding");
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ((*rows)[0].Text(0), "UTF8");
  }
}

TEST_P(StoreTest, RowTypeMismatch_StopsTheProgram) {
  ASSERT_TRUE(conn_->Execute("INSERT INTO items (id, name) VALUES (1, 'a')").ok());
  auto rows = conn_->Query("SELECT name FROM items");
  ASSERT_TRUE(rows.ok());
  const Row row = (*rows)[0];
  EXPECT_DEATH((void)row.Int("name"), "a column holds 'a' where the query expects an integer");
  EXPECT_DEATH((void)row.Text("nope"), "no column \"nope\"");
}

// ---------------------------------------------------------------------------------------------
// One engine only.

TEST(PostgresStoreTest, ConnectionLost_IsReportedAsSuch) {
  auto url = test_support::NewPostgresDatabase();
  ASSERT_TRUE(url.ok()) << url.error().message;
  auto db = Database::Open(*url);
  ASSERT_TRUE(db.ok());
  auto victim = (*db)->Connect();
  auto killer = (*db)->Connect();
  ASSERT_TRUE(victim.ok() && killer.ok());
  auto pid = (*victim)->Query("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE((*killer)->Query("SELECT pg_terminate_backend(?::int)", {(*pid)[0].Int(0)}).ok());
  auto r = (*victim)->Query("SELECT 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConnectionLost) << r.error().message;
}

// ---------------------------------------------------------------------------------------------
// Engine-independent parts.

TEST(StoreUrlTest, Open_UnknownSchemeIsRefused) {
  auto db = Database::Open("mysql://root@localhost/x");
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(db.error().message, HasSubstr("unknown database URL"));
}

TEST(StoreUrlTest, Open_SqliteAcceptsSchemeOrBarePath) {
  const std::string dir = NewTempDir();
  for (const std::string& url :
       {"sqlite:" + dir + "/a.db", dir + "/b.db", "sqlite://" + dir + "/c.db"}) {
    auto db = Database::Open(url);
    ASSERT_TRUE(db.ok()) << url << ": " << db.error().message;
    EXPECT_EQ((*db)->engine(), Engine::kSqlite);
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/a.db"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/b.db"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/c.db"));
}

TEST(StoreUrlTest, Open_WithoutCreateRefusesAMissingFile) {
  OpenOptions options;
  options.create_if_missing = false;
  const std::string path = NewTempDir() + "/missing.db";
  auto db = Database::Open("sqlite:" + path, options);
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(db.error().message, HasSubstr("no database file"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(StoreUrlTest, Open_UnreachablePostgresIsAConnectionError) {
  auto db = Database::Open("postgresql://nobody:secret@127.0.0.1:1/x?connect_timeout=2");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().kind, ErrorKind::kConnectionLost);
  EXPECT_THAT(db.error().message, Not(HasSubstr("secret")));
}

TEST(StoreUrlTest, SqliteUrlForDataDir_NamesTheFileInTheDirectory) {
  EXPECT_EQ(SqliteUrlForDataDir("/var/lib/medcard"), "sqlite:/var/lib/medcard/medcard.db");
  EXPECT_EQ(SqliteUrlForDataDir("data/"), "sqlite:data/medcard.db");
}

TEST(StoreUrlTest, RedactUrl_HidesPasswords) {
  EXPECT_EQ(RedactUrl("postgresql://host:pw@db.example:5432/medcard"),
            "postgresql://host:***@db.example:5432/medcard");
  EXPECT_EQ(RedactUrl("postgresql://db/medcard?user=u&password=pw&sslmode=require"),
            "postgresql://db/medcard?user=u&password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("postgresql://u@db/medcard"), "postgresql://u@db/medcard");
}

TEST(PlaceholderTest, QuestionMarksBecomeNumberedParameters) {
  int count = 0;
  EXPECT_EQ(ToPostgresPlaceholders("SELECT * FROM t WHERE a = ? AND b IN (?, ?)", &count),
            "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
  EXPECT_EQ(count, 3);
}

TEST(PlaceholderTest, QuotesCommentsAndDollarQuotesAreLeftAlone) {
  int count = 0;
  EXPECT_EQ(ToPostgresPlaceholders("SELECT 'it''s ?', \"odd?name\", ? -- why?\n"
                                   "/* what? */ $$ body ? $$, $fn$ ? $fn$, ?",
                                   &count),
            "SELECT 'it''s ?', \"odd?name\", $1 -- why?\n"
            "/* what? */ $$ body ? $$, $fn$ ? $fn$, $2");
  EXPECT_EQ(count, 2);
}

}  // namespace
}  // namespace medcard::store
