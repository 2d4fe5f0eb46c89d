// Migrations on both engines: ordered, recorded, idempotent, all-or-nothing, tamper-evident.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "store/store.h"
#include "test_database.h"

namespace medcard::store {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

MigrationSet Shop() {
  return {"shop",
          {
              {1, "customers", "CREATE TABLE customers (id {{ID}}, name TEXT NOT NULL)"},
              {2, "photos", "CREATE TABLE photos (customer BIGINT NOT NULL, image {{BLOB}})"},
          }};
}

class MigrationsTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    auto db = Database::Open(*url);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    auto conn = db_->Connect();
    ASSERT_TRUE(conn.ok());
    conn_ = std::move(conn).value();
  }

  bool TableExists(const std::string& table) {
    auto rows = conn_->Query("SELECT COUNT(*) FROM " + table);
    return rows.ok();
  }

  std::unique_ptr<Database> db_;
  std::unique_ptr<Connection> conn_;
};

INSTANTIATE_TEST_SUITE_P(Engines, MigrationsTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(MigrationsTest, FreshDatabase_HasNoMigrations) {
  auto applied = AppliedMigrations(*conn_);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_TRUE(applied->empty());
  auto version = SchemaVersion(*conn_, "shop");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 0);
}

TEST_P(MigrationsTest, Migrate_AppliesEveryMigrationInOrderAndRecordsIt) {
  auto applied = Migrate(*conn_, Shop());
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(*applied, 2);
  EXPECT_TRUE(TableExists("customers"));
  EXPECT_TRUE(TableExists("photos"));
  auto recorded = AppliedMigrations(*conn_);
  ASSERT_TRUE(recorded.ok());
  ASSERT_EQ(recorded->size(), 2u);
  EXPECT_EQ((*recorded)[0].component, "shop");
  EXPECT_EQ((*recorded)[0].version, 1);
  EXPECT_EQ((*recorded)[0].name, "customers");
  EXPECT_EQ((*recorded)[1].version, 2);
  EXPECT_GT((*recorded)[1].applied_at_us, 0);
  EXPECT_EQ(*SchemaVersion(*conn_, "shop"), 2);
}

TEST_P(MigrationsTest, Migrate_AgainAppliesNothing) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  auto again = Migrate(*conn_, Shop());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, 0);
}

TEST_P(MigrationsTest, AddedMigration_IsTheOnlyOneApplied) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  MigrationSet later = Shop();
  later.migrations.push_back({3, "orders", "CREATE TABLE orders (id {{ID}}, total BIGINT)"});
  auto applied = Migrate(*conn_, later);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(*applied, 1);
  EXPECT_TRUE(TableExists("orders"));
}

TEST_P(MigrationsTest, Tokens_GiveEachEngineItsIdentityAndBlobTypes) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  auto a = conn_->Query("INSERT INTO customers (name) VALUES (?) RETURNING id", {"a"});
  auto b = conn_->Query("INSERT INTO customers (name) VALUES (?) RETURNING id", {"b"});
  ASSERT_TRUE(a.ok() && b.ok()) << (a.ok() ? b.error().message : a.error().message);
  EXPECT_LT((*a)[0].Int(0), (*b)[0].Int(0));
  const Bytes image = {0x89, 0x50, 0x4E, 0x47, 0x00};
  ASSERT_TRUE(conn_->Execute("INSERT INTO photos VALUES (?, ?)", {(*a)[0].Int(0), image}).ok());
  auto back = conn_->Query("SELECT image FROM photos");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0].Blob(0), image);
}

TEST_P(MigrationsTest, EngineSpecificSql_ReplacesThePortableSql) {
  MigrationSet set{"dialect",
                   {{1, "which", "CREATE VIEW which AS SELECT 'portable' AS engine",
                     "CREATE VIEW which AS SELECT 'sqlite' AS engine",
                     "CREATE VIEW which AS SELECT 'postgresql'::text AS engine"}}};
  ASSERT_TRUE(Migrate(*conn_, set).ok());
  auto rows = conn_->Query("SELECT engine FROM which");
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  EXPECT_EQ((*rows)[0].Text(0), std::string(EngineName(GetParam())));
}

TEST_P(MigrationsTest, FailingMigration_LeavesNothingBehind) {
  MigrationSet broken{"broken",
                      {{1, "good", "CREATE TABLE kept (id INTEGER)"},
                       {2, "half", "CREATE TABLE half (id INTEGER); CREATE TABLE oops (id NOPE("}}};
  auto applied = Migrate(*conn_, broken);
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.error().message, HasSubstr("broken migration 2 (half)"));
  EXPECT_TRUE(TableExists("kept"));
  EXPECT_FALSE(TableExists("half"));  // the statement before the failing one is rolled back too
  EXPECT_EQ(*SchemaVersion(*conn_, "broken"), 1);
}

TEST_P(MigrationsTest, EditedAppliedMigration_IsRefused) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  MigrationSet edited = Shop();
  edited.migrations[0].sql = "CREATE TABLE customers (id {{ID}}, name TEXT, email TEXT)";
  auto applied = Migrate(*conn_, edited);
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.error().message, HasSubstr("changed after it was applied"));
}

TEST_P(MigrationsTest, DatabaseNewerThanTheProgram_IsRefused) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  MigrationSet older = Shop();
  older.migrations.pop_back();
  auto applied = Migrate(*conn_, older);
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.error().message, HasSubstr("newer than this program knows"));
}

TEST_P(MigrationsTest, VersionsOutOfOrder_AreRefusedBeforeAnythingRuns) {
  MigrationSet bad{
      "bad", {{2, "b", "CREATE TABLE b (id INTEGER)"}, {1, "a", "CREATE TABLE a (id INTEGER)"}}};
  auto applied = Migrate(*conn_, bad);
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.error().message, HasSubstr("versions must increase"));
  EXPECT_FALSE(TableExists("b"));
}

TEST_P(MigrationsTest, ComponentsAreVersionedIndependently) {
  ASSERT_TRUE(Migrate(*conn_, Shop()).ok());
  MigrationSet other{"other", {{1, "x", "CREATE TABLE other_x (id INTEGER)"}}};
  auto applied = Migrate(*conn_, other);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(*applied, 1);
  EXPECT_EQ(*SchemaVersion(*conn_, "shop"), 2);
  EXPECT_EQ(*SchemaVersion(*conn_, "other"), 1);
}

TEST_P(MigrationsTest, ConcurrentMigrate_AppliesEachMigrationOnce) {
  constexpr int kProcesses = 4;  // as hosts starting at once
  std::vector<int> applied(kProcesses, -1);
  std::vector<std::string> errors(kProcesses);
  std::vector<std::thread> threads;
  for (int i = 0; i < kProcesses; ++i) {
    threads.emplace_back([&, i] {
      auto conn = db_->Connect();
      if (!conn.ok()) {
        errors[i] = conn.error().message;
        return;
      }
      auto n = Migrate(**conn, Shop());
      if (n.ok()) {
        applied[i] = *n;
      } else {
        errors[i] = n.error().message;
      }
    });
  }
  for (auto& t : threads) t.join();
  int total = 0;
  for (int i = 0; i < kProcesses; ++i) {
    EXPECT_EQ(errors[i], "");
    total += applied[i];
  }
  EXPECT_EQ(total, 2);
  EXPECT_EQ(AppliedMigrations(*conn_)->size(), 2u);
}

TEST(MigrationSqlTest, TokensAreReplacedPerEngine) {
  const Migration m{1, "t", "CREATE TABLE t (id {{ID}}, b {{BLOB}})"};
  EXPECT_EQ(MigrationSql(m, Engine::kSqlite),
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB)");
  EXPECT_EQ(MigrationSql(m, Engine::kPostgres),
            "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, b BYTEA)");
}

}  // namespace
}  // namespace medcard::store
