// The hash-chained audit log on both engines: appends chain, triggers refuse changes, Verify finds
// edits, deletions and rewrites, reads filter and page, exports, the day journal, and concurrent
// appends never fork the chain.
#include "audit/audit_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "test_database.h"

namespace medcard::audit {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

// 2026-11-25 00:00:00 UTC in microseconds.
constexpr std::int64_t kDay = 1'795'564'800'000'000;
constexpr std::int64_t kHour = 3'600'000'000;

class AuditLogTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    url_ = *url;
    auto db = store::Database::Open(url_);
    ASSERT_TRUE(db.ok()) << db.error().message;
    database_ = std::move(*db);
    connection_ = Connect();
    auto migrated = store::Migrate(*connection_, Migrations());
    ASSERT_TRUE(migrated.ok()) << migrated.error().message;
  }

  std::unique_ptr<store::Connection> Connect() {
    auto c = database_->Connect();
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  }

  std::int64_t AppendCommitted(const Entry& entry, std::optional<std::int64_t> at_us = {}) {
    std::int64_t sequence = 0;
    auto done = store::RunTransaction(*connection_, store::TransactionMode::kWrite,
                                      [&](store::Connection& c) -> store::DbStatus {
                                        auto s = AppendDb(c, entry, at_us);
                                        if (!s) return s.error();
                                        sequence = *s;
                                        return store::Done{};
                                      });
    EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message);
    return sequence;
  }

  void AppendThree() {
    AppendCommitted({"t01", "", "card.report_loss", "card:1000000000000001", R"({"reason":"lost"})",
                     "10.0.0.7"});
    AppendCommitted({"t01", "s01", "card.close", "card:1000000000000002", R"({"refund_fen":1250})",
                     "10.0.0.7"});
    AppendCommitted({"admin", "", "user.add", "user:t02", "{}", "cli"});
  }

  void DropEntryTriggers() {
    const char* sql = GetParam() == store::Engine::kSqlite
                          ? "DROP TRIGGER audit_entries_no_update; "
                            "DROP TRIGGER audit_entries_no_delete"
                          : "DROP TRIGGER audit_entries_no_change ON audit_entries";
    ASSERT_TRUE(connection_->ExecuteScript(sql).ok());
  }

  Verification MustVerify(std::optional<std::string> expected_head = {}) {
    auto v = Verify(*connection_, std::move(expected_head));
    EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.error().message);
    return v.ok() ? *v : Verification{};
  }

  std::string url_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
};

TEST_P(AuditLogTest, AppendsChainAndVerifyReportsTheHead) {
  AppendThree();
  Filter all;
  auto records = Read(*connection_, all);
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].sequence, 1);
  EXPECT_EQ((*records)[0].previous_hash, kGenesisHash);
  EXPECT_EQ((*records)[1].previous_hash, (*records)[0].hash);
  EXPECT_EQ((*records)[2].previous_hash, (*records)[1].hash);
  EXPECT_EQ((*records)[1].entry.authorised_by, "s01");
  EXPECT_EQ((*records)[1].hash,
            EntryHash(2, (*records)[1].at_us, (*records)[1].entry, (*records)[0].hash));
  EXPECT_EQ((*records)[0].hash.size(), 64u);
  const Verification v = MustVerify();
  EXPECT_TRUE(v.intact) << v.explanation;
  EXPECT_EQ(v.count, 3);
  EXPECT_EQ(v.head_hash, (*records)[2].hash);
  // An auditor's earlier head is still in the chain.
  EXPECT_TRUE(MustVerify((*records)[1].hash).intact);
}

TEST_P(AuditLogTest, AnEmptyLogIsIntact) {
  const Verification v = MustVerify();
  EXPECT_TRUE(v.intact);
  EXPECT_EQ(v.count, 0);
  EXPECT_EQ(v.head_hash, kGenesisHash);
}

TEST_P(AuditLogTest, AppendNeedsTheCallersTransactionAndRollsBackWithIt) {
  auto outside = Append(*connection_, {"t01", "", "card.issue", "card:1", "{}", "cli"});
  ASSERT_FALSE(outside.ok());
  EXPECT_THAT(outside.error().message, HasSubstr("open transaction"));
  {
    auto tx = store::Transaction::Begin(*connection_);
    ASSERT_TRUE(tx.ok());
    auto seq = Append(*connection_, {"t01", "", "card.issue", "card:1", "{}", "cli"});
    ASSERT_TRUE(seq.ok()) << seq.error().message;
    EXPECT_EQ(*seq, 1);
    tx->Rollback();
  }
  EXPECT_EQ(MustVerify().count, 0);
  EXPECT_EQ(AppendCommitted({"t01", "", "card.issue", "card:1", "{}", "cli"}), 1);
}

TEST_P(AuditLogTest, RefusesEntriesWithoutActorOrWithDetailsThatAreNotAnObject) {
  auto tx = store::Transaction::Begin(*connection_);
  ASSERT_TRUE(tx.ok());
  EXPECT_FALSE(Append(*connection_, {"", "", "card.issue", "card:1", "{}", "cli"}).ok());
  EXPECT_FALSE(Append(*connection_, {"t01", "", "", "card:1", "{}", "cli"}).ok());
  auto bad = Append(*connection_, {"t01", "", "card.issue", "card:1", "[1,2]", "cli"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, HasSubstr("JSON object"));
}

TEST_P(AuditLogTest, TriggersRefuseUpdateAndDelete) {
  AppendThree();
  auto updated =
      connection_->Execute("UPDATE audit_entries SET actor = 'nobody' WHERE sequence = 2");
  ASSERT_FALSE(updated.ok());
  EXPECT_THAT(updated.error().message, HasSubstr("append-only"));
  auto deleted = connection_->Execute("DELETE FROM audit_entries WHERE sequence = 3");
  ASSERT_FALSE(deleted.ok());
  EXPECT_THAT(deleted.error().message, HasSubstr("append-only"));
  auto rewound = connection_->Execute("UPDATE audit_head SET sequence = 2 WHERE id = 1");
  ASSERT_FALSE(rewound.ok());
  EXPECT_THAT(rewound.error().message, HasSubstr("only moves forward"));
  EXPECT_FALSE(connection_->Execute("DELETE FROM audit_head").ok());
  const Verification v = MustVerify();
  EXPECT_TRUE(v.intact);
  EXPECT_EQ(v.count, 3);
}

TEST_P(AuditLogTest, VerifyNamesAnEditedEntry) {
  AppendThree();
  DropEntryTriggers();
  ASSERT_TRUE(connection_
                  ->Execute("UPDATE audit_entries SET details = ? WHERE sequence = 2",
                            {R"({"refund_fen":125000})"})
                  .ok());
  const Verification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_sequence, 2);
  EXPECT_EQ(v.problem, "edited");
  EXPECT_THAT(v.explanation, HasSubstr("entry 2"));
}

TEST_P(AuditLogTest, VerifyNamesAnEntryRewrittenWithAFreshHash) {
  AppendThree();
  DropEntryTriggers();
  auto records = Read(*connection_, {});
  ASSERT_TRUE(records.ok());
  Record forged = (*records)[1];
  forged.entry.authorised_by = "";
  const std::string hash = EntryHash(2, forged.at_us, forged.entry, forged.previous_hash);
  ASSERT_TRUE(connection_
                  ->Execute("UPDATE audit_entries SET authorised_by = '', hash = ? WHERE "
                            "sequence = 2",
                            {hash})
                  .ok());
  const Verification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_sequence, 3);
  EXPECT_EQ(v.problem, "reordered");
}

TEST_P(AuditLogTest, VerifyNamesADeletedMiddleEntry) {
  AppendThree();
  DropEntryTriggers();
  ASSERT_TRUE(connection_->Execute("DELETE FROM audit_entries WHERE sequence = 2").ok());
  const Verification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_sequence, 2);
  EXPECT_EQ(v.problem, "deleted");
}

TEST_P(AuditLogTest, VerifyNamesADeletedTailAgainstTheHeadAndAnExpectedHead) {
  AppendThree();
  const std::string head3 = MustVerify().head_hash;
  DropEntryTriggers();
  ASSERT_TRUE(connection_->Execute("DELETE FROM audit_entries WHERE sequence = 3").ok());
  Verification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_sequence, 3);
  EXPECT_EQ(v.problem, "deleted");
  EXPECT_THAT(v.explanation, HasSubstr("tail"));

  // A tamperer who also rewinds the head is caught by the head the auditor kept.
  const char* drop_head = GetParam() == store::Engine::kSqlite
                              ? "DROP TRIGGER audit_head_forward"
                              : "DROP TRIGGER audit_head_forward ON audit_head";
  ASSERT_TRUE(connection_->ExecuteScript(drop_head).ok());
  auto records = Read(*connection_, {});
  ASSERT_TRUE(records.ok());
  ASSERT_TRUE(connection_
                  ->Execute("UPDATE audit_head SET sequence = 2, hash = ? WHERE id = 1",
                            {records->back().hash})
                  .ok());
  EXPECT_TRUE(MustVerify().intact);
  v = MustVerify(head3);
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.problem, "deleted");
  EXPECT_EQ(v.first_bad_sequence, 3);
}

TEST_P(AuditLogTest, ReadsWithFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    AppendCommitted({"t01", "", i % 2 == 0 ? "card.report_loss" : "card.issue",
                     "card:" + std::to_string(i), "{}", "10.0.0.7"},
                    kDay + i * kHour);
  }
  AppendCommitted({"t02", "", "user.sign_in", "user:t02", "{}", "10.0.0.8"}, kDay + 10 * kHour);

  Filter by_actor;
  by_actor.actor = "t02";
  auto t02 = Read(*connection_, by_actor);
  ASSERT_TRUE(t02.ok());
  ASSERT_EQ(t02->size(), 1u);
  EXPECT_EQ((*t02)[0].entry.action, "user.sign_in");

  Filter cards;
  cards.action = "card.";
  auto card_records = Read(*connection_, cards);
  ASSERT_TRUE(card_records.ok());
  EXPECT_EQ(card_records->size(), 5u);

  Filter exact;
  exact.action = "card.issue";
  EXPECT_EQ(Read(*connection_, exact)->size(), 2u);

  Filter target;
  target.target = "card:3";
  ASSERT_EQ(Read(*connection_, target)->size(), 1u);
  EXPECT_EQ((*Read(*connection_, target))[0].sequence, 4);

  Filter window;
  window.from_us = kDay + 1 * kHour;
  window.until_us = kDay + 3 * kHour;
  auto in_window = Read(*connection_, window);
  ASSERT_EQ(in_window->size(), 2u);
  EXPECT_EQ((*in_window)[0].sequence, 2);
  EXPECT_EQ((*in_window)[1].sequence, 3);

  Filter page;
  page.limit = 4;
  auto first = Read(*connection_, page);
  ASSERT_EQ(first->size(), 4u);
  page.after_sequence = first->back().sequence;
  auto second = Read(*connection_, page);
  ASSERT_EQ(second->size(), 2u);
  EXPECT_EQ((*second)[0].sequence, 5);

  Filter bad;
  bad.limit = 0;
  EXPECT_FALSE(Read(*connection_, bad).ok());
  // Text that looks like SQL is only ever a bound value.
  Filter sql;
  sql.actor = "t01' OR '1'='1";
  EXPECT_TRUE(Read(*connection_, sql)->empty());
}

TEST_P(AuditLogTest, ExportsCsvAndJsonLines) {
  AppendCommitted({"t01", "s01", "card.close", "card:1000000000000002",
                   R"({"note":"counter 3, \"urgent\""})", "10.0.0.7"},
                  kDay + 90'000'123);
  AppendCommitted({"admin", "", "user.add", "user:t02", "{}", "cli"}, kDay + kHour);

  std::ostringstream csv;
  ASSERT_TRUE(Export(*connection_, {}, ExportFormat::kCsv, csv).ok());
  std::istringstream lines(csv.str());
  std::string header, first, second;
  std::getline(lines, header);
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_EQ(header, CsvHeader());
  EXPECT_THAT(first, HasSubstr("1,2026-11-25T00:01:30.000123Z,"));
  EXPECT_THAT(first, HasSubstr(R"(,"{""note"":""counter 3, \""urgent\""""}",)"));
  EXPECT_THAT(second, HasSubstr(",admin,,user.add,user:t02,{},cli,"));

  std::ostringstream jsonl;
  Filter only_admin;
  only_admin.actor = "admin";
  ASSERT_TRUE(Export(*connection_, only_admin, ExportFormat::kJsonLines, jsonl).ok());
  const auto parsed = nlohmann::json::parse(jsonl.str());
  EXPECT_EQ(parsed["sequence"], 2);
  EXPECT_EQ(parsed["action"], "user.add");
  EXPECT_TRUE(parsed["details"].is_object());
  EXPECT_EQ(parsed["hash"].get<std::string>().size(), 64u);
  EXPECT_EQ(ParseExportFormat("jsonl"), ExportFormat::kJsonLines);
  EXPECT_FALSE(ParseExportFormat("xml").has_value());
}

TEST_P(AuditLogTest, DayJournalCountsOperationsPerTellerAndCardEvents) {
  const auto day = DayRange("2026-11-25");
  ASSERT_TRUE(day.has_value());
  EXPECT_EQ(day->first, kDay);
  AppendCommitted({"t01", "", "card.issue", "card:1", "{}", "a"}, kDay + kHour);
  AppendCommitted({"t01", "", "card.issue", "card:2", "{}", "a"}, kDay + 2 * kHour);
  AppendCommitted({"t01", "s01", "card.close", "card:3", "{}", "a"}, kDay + 3 * kHour);
  AppendCommitted({"t02", "", "card.report_loss", "card:4", "{}", "b"}, kDay + 4 * kHour);
  AppendCommitted({"t02", "s01", "card.replace", "card:4", "{}", "b"}, kDay + 5 * kHour);
  AppendCommitted({"t02", "", "card.issue", "card:9", "{}", "b"}, kDay + 25 * kHour);  // next day
  AppendCommitted({"t03", "", "card.issue", "card:8", "{}", "b"}, kDay - 1);           // day before

  auto journal = DayJournal(*connection_, "2026-11-25");
  ASSERT_TRUE(journal.ok()) << journal.error().message;
  ASSERT_EQ(journal->actors.size(), 2u);
  EXPECT_EQ(journal->actors[0].actor, "t01");
  EXPECT_EQ(journal->actors[0].operations, 3);
  ASSERT_EQ(journal->actors[0].by_action.size(), 2u);
  EXPECT_EQ(journal->actors[0].by_action[0], std::make_pair(std::string("card.close"), 1L));
  EXPECT_EQ(journal->actors[0].by_action[1], std::make_pair(std::string("card.issue"), 2L));
  EXPECT_EQ(journal->actors[1].operations, 2);
  EXPECT_EQ(journal->cards_issued, 2);
  EXPECT_EQ(journal->cards_lost, 1);
  EXPECT_EQ(journal->cards_replaced, 1);
  EXPECT_EQ(journal->cards_closed, 1);
  EXPECT_FALSE(DayJournal(*connection_, "2026-02-30").ok());
  EXPECT_FALSE(DayJournal(*connection_, "25/11/2026").ok());
}

TEST_P(AuditLogTest, ConcurrentAppendsNeverForkTheChain) {
  constexpr int kPerThread = 40;
  auto worker = [&](std::string actor) {
    auto c = Connect();
    for (int i = 0; i < kPerThread; ++i) {
      auto done = store::RunTransaction(
          *c, store::TransactionMode::kWrite, [&](store::Connection& tx) -> store::DbStatus {
            auto s = AppendDb(
                tx, {actor, "", "card.issue", "card:" + std::to_string(i), "{}", "thread"});
            if (!s) return s.error();
            return store::Done{};
          });
      EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message);
    }
  };
  std::thread a(worker, "t01");
  std::thread b(worker, "t02");
  a.join();
  b.join();
  const Verification v = MustVerify();
  EXPECT_TRUE(v.intact) << v.explanation;
  EXPECT_EQ(v.count, 2 * kPerThread);
}

INSTANTIATE_TEST_SUITE_P(Engines, AuditLogTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::audit
