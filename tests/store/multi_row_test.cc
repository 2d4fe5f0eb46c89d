// Multi-row statements (store.h "Multi-row statements") on both engines: rows in power-of-two
// chunks, INSERT, SELECT ... IN and UPDATE ... FROM (VALUES ...) written once for both.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "store/store.h"
#include "test_database.h"

namespace medcard::store {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

class MultiRowTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    auto db = Database::Open(*url);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    auto conn = db_->Connect();
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    conn_ = std::move(conn).value();
    ASSERT_TRUE(conn_
                    ->ExecuteScript("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                                    " amount BIGINT NOT NULL)")
                    .ok());
  }

  // Inserts items 1..count, item i named "item-i" holding i fen.
  std::int64_t InsertItems(int count) {
    Params values;
    for (int i = 1; i <= count; ++i) {
      values.emplace_back(i);
      values.emplace_back("item-" + std::to_string(i));
      values.emplace_back(i);
    }
    auto inserted = ExecuteRows(*conn_, "INSERT INTO items (id, name, amount) VALUES ", "(?, ?, ?)",
                                3, std::move(values));
    EXPECT_TRUE(inserted.ok()) << inserted.error().message;
    return inserted.ok() ? *inserted : -1;
  }

  std::int64_t Scalar(const std::string& sql) {
    auto rows = conn_->Query(sql);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  std::unique_ptr<Database> db_;
  std::unique_ptr<Connection> conn_;
};

INSTANTIATE_TEST_SUITE_P(Engines, MultiRowTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(MultiRowTest, ExecuteRows_InsertsEveryRowInPowerOfTwoChunks) {
  const std::int64_t before = conn_->statements_run();
  EXPECT_EQ(InsertItems(1000), 1000);
  // 1000 = 512 + 256 + 128 + 64 + 32 + 8: six statements, not a thousand.
  EXPECT_EQ(conn_->statements_run() - before, 6);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM items"), 1000);
  EXPECT_EQ(Scalar("SELECT SUM(amount) FROM items"), 1000 * 1001 / 2);
  EXPECT_EQ(Scalar("SELECT amount FROM items WHERE name = 'item-777'"), 777);
}

TEST_P(MultiRowTest, QueryRows_ReturnsTheRowsOfEveryChunk) {
  ASSERT_EQ(InsertItems(600), 600);
  Params ids;
  for (int i = 2; i <= 1200; i += 2) ids.emplace_back(i);  // half of them exist
  auto rows =
      QueryRows(*conn_, "SELECT id, amount FROM items WHERE id IN (", "?", 1, std::move(ids), ")");
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 300u);
  std::int64_t sum = 0;
  for (const Row& row : *rows) {
    EXPECT_EQ(row.Int("id"), row.Int("amount"));
    EXPECT_EQ(row.Int("id") % 2, 0);
    sum += row.Int("amount");
  }
  EXPECT_EQ(sum, 2 * (300 * 301 / 2));
}

TEST_P(MultiRowTest, UpdateFromValues_IsOnePortableStatementPerChunk) {
  ASSERT_EQ(InsertItems(300), 300);
  Params changes;
  for (int i = 1; i <= 300; i += 3) {
    changes.emplace_back(i);
    changes.emplace_back(1000 + i);
  }
  auto updated = ExecuteRows(*conn_, "WITH v(item, amount) AS (VALUES ",
                             "(CAST(? AS BIGINT), CAST(? AS BIGINT))", 2, std::move(changes),
                             ") UPDATE items SET amount = items.amount + v.amount FROM v"
                             " WHERE items.id = v.item");
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(*updated, 100);
  EXPECT_EQ(Scalar("SELECT amount FROM items WHERE id = 4"), 4 + 1004);
  EXPECT_EQ(Scalar("SELECT amount FROM items WHERE id = 5"), 5);
}

TEST_P(MultiRowTest, NoRows_RunsNothing) {
  const std::int64_t before = conn_->statements_run();
  auto inserted =
      ExecuteRows(*conn_, "INSERT INTO items (id, name, amount) VALUES ", "(?, ?, ?)", 3, {});
  ASSERT_TRUE(inserted.ok()) << inserted.error().message;
  EXPECT_EQ(*inserted, 0);
  auto rows = QueryRows(*conn_, "SELECT id FROM items WHERE id IN (", "?", 1, {}, ")");
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  EXPECT_TRUE(rows->empty());
  EXPECT_EQ(conn_->statements_run(), before);
}

TEST_P(MultiRowTest, ValuesThatAreNotWholeRows_AreRefusedBeforeAnythingRuns) {
  auto inserted = ExecuteRows(*conn_, "INSERT INTO items (id, name, amount) VALUES ", "(?, ?, ?)",
                              3, {1, "one"});
  ASSERT_FALSE(inserted.ok());
  EXPECT_THAT(inserted.error().message, HasSubstr("not rows of 3"));
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM items"), 0);
}

TEST_P(MultiRowTest, AFailingChunk_FailsTheCallWithTheEngineError) {
  ASSERT_EQ(InsertItems(3), 3);
  Params values = {10, "ten", 10, 2, "two again", 2};  // id 2 exists
  auto inserted = ExecuteRows(*conn_, "INSERT INTO items (id, name, amount) VALUES ", "(?, ?, ?)",
                              3, std::move(values));
  ASSERT_FALSE(inserted.ok());
  EXPECT_EQ(inserted.error().kind, ErrorKind::kUniqueViolation);
}

}  // namespace
}  // namespace medcard::store
