// CSV imports of units, people and wages on SQLite and PostgreSQL: bad rows reported with line and
// field, a file with any bad row applies nothing, quoting and UTF-8.
#include "insurance/imports.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;

constexpr char kA[] = "110101199001011237";
constexpr char kB[] = "11010120000515234X";
constexpr char kC[] = "110101195003103452";

TEST(ParseCsv, HandlesQuotesLineBreaksCrlfAndTheByteOrderMark) {
  auto records = ParseCsv(
      "\xEF\xBB\xBF"
      "code,name\r\n"
      "U1,\"Steel, \"\"Capital\"\"\"\r\n"
      "\r\n"
      "U2,\"two\nlines\"\n"
      "U3,\xE5\x8C\x97\xE4\xBA\xAC\n");
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 4u);
  EXPECT_EQ((*records)[0].fields, (std::vector<std::string>{"code", "name"}));
  EXPECT_EQ((*records)[1].fields[1], "Steel, \"Capital\"");
  EXPECT_EQ((*records)[2].line, 4);
  EXPECT_EQ((*records)[2].fields[1], "two\nlines");
  EXPECT_EQ((*records)[3].line, 6);
  EXPECT_EQ((*records)[3].fields[1], "\xE5\x8C\x97\xE4\xBA\xAC");  // 北京
}

TEST(ParseCsv, RefusesBrokenQuotingAndBadUtf8NamingTheLine) {
  auto unclosed = ParseCsv("a,b\n1,\"open\n2,3\n");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_EQ(unclosed.error().message, "line 2: a quoted field is not closed");
  auto stray = ParseCsv("a,b\n1,x\"y\n");
  ASSERT_FALSE(stray.ok());
  EXPECT_THAT(stray.error().message, HasSubstr("line 2: a quote inside an unquoted field"));
  auto latin1 = ParseCsv("a,b\n1,2\n3,caf\xE9\n");
  ASSERT_FALSE(latin1.ok());
  EXPECT_EQ(latin1.error().message, "line 3: not UTF-8 text");
  auto after_quote = ParseCsv("a\n\"x\"y\n");
  ASSERT_FALSE(after_quote.ok());
  EXPECT_THAT(after_quote.error().message, HasSubstr("line 2: text after a closing quote"));
}

TEST(CheckImportFile, ReportsEveryBadRowWithLineAndField) {
  const auto report =
      CheckImportFile(ImportKind::kPeople,
                      "ssn,name,unit_code,wage_base,category,effective\n"
                      "110101199001011237,Li Lei,U001,8000.00,employee,2026-01-01\n"
                      "110101199001011238,Han Meimei,U001,8000.00,employee,2026-01-01\n"
                      "11010120000515234X,Wang,U001,8000.5x,worker,2026-02-30\n"
                      "110101195003103452,Zhao,U001\n");
  EXPECT_EQ(report.rows, 4);
  EXPECT_FALSE(report.applied);
  EXPECT_THAT(
      report.problems,
      ElementsAre(Field(&ImportProblem::field, "ssn"), Field(&ImportProblem::field, "wage_base"),
                  Field(&ImportProblem::field, "category"),
                  Field(&ImportProblem::field, "effective"), Field(&ImportProblem::line, 5)));
  EXPECT_EQ(report.problems[0].line, 3);
  EXPECT_EQ(report.problems[1].line, 4);
  EXPECT_THAT(report.problems[4].message, HasSubstr("3 fields, the header has 6"));
  EXPECT_THAT(FormatProblems(report), HasSubstr("line 4, category: employee, retiree or flexible"));

  const auto header = CheckImportFile(ImportKind::kWages, "ssn,wage,effective\n");
  ASSERT_EQ(header.problems.size(), 2u);
  EXPECT_EQ(header.problems[0].message, "header: unknown column \"wage\"");
  EXPECT_EQ(header.problems[1].message, "header: missing column wage_base");
}

class ImportTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    auto db = store::Database::Open(*url);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    auto conn = db_->Connect();
    ASSERT_TRUE(conn.ok());
    conn_ = std::move(conn).value();
    ASSERT_TRUE(store::Migrate(*conn_, Migrations()).ok());
  }

  std::int64_t Count(const char* table) {
    auto rows = conn_->Query(std::string("SELECT COUNT(*) FROM ") + table);
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  ImportReport MustImport(ImportKind kind, std::string_view text) {
    auto report = Import(*conn_, kind, text);
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? *report : ImportReport{};
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
};

constexpr char kUnits[] =
    "code,name,bank_account,area\n"
    "U001,\"Capital Steel, Ltd. \"\"Shougang\"\"\",62220202001122,110000\n"
    "U002,\xE5\x8C\x97\xE4\xBA\xAC\xE5\x9B\xBE\xE4\xB9\xA6\xE9\xA6\x86,62220202003344,110000\n";

TEST_P(ImportTest, UnitsWithQuotedAndChineseNamesAreImported) {
  const auto report = MustImport(ImportKind::kUnits, kUnits);
  EXPECT_TRUE(report.applied);
  EXPECT_EQ(report.rows, 2);
  EXPECT_TRUE(report.problems.empty());
  Registry registry(*conn_);
  EXPECT_EQ(registry.FindUnit("U001")->name, "Capital Steel, Ltd. \"Shougang\"");
  EXPECT_EQ(registry.FindUnit("U002")->name,
            "\xE5\x8C\x97\xE4\xBA\xAC\xE5\x9B\xBE\xE4\xB9\xA6\xE9\xA6\x86");

  // The same file again: every row is a duplicate, nothing changes.
  const auto again = MustImport(ImportKind::kUnits, kUnits);
  EXPECT_FALSE(again.applied);
  ASSERT_EQ(again.problems.size(), 2u);
  EXPECT_EQ(again.problems[0].message, "code: unit U001 exists");
  EXPECT_EQ(Count("si_units"), 2);
}

TEST_P(ImportTest, APeopleFileWithOneBadRowAppliesNothing) {
  ASSERT_TRUE(MustImport(ImportKind::kUnits, kUnits).applied);
  const std::string people = std::string("ssn,name,unit_code,wage_base,category,effective\n") + kA +
                             ",Li Lei,U001,8000.00,employee,2026-01-01\n" + kB +
                             ",Han Meimei,U002,3000,employee,2026-01-01\n" + kC +
                             ",Zhao,U009,0,retiree,2026-01-01\n" + kA +
                             ",Li Lei again,U001,8000.00,employee,2026-01-01\n";
  const auto refused = MustImport(ImportKind::kPeople, people);
  EXPECT_FALSE(refused.applied);
  ASSERT_EQ(refused.problems.size(), 2u);
  EXPECT_EQ(refused.problems[0].line, 4);
  EXPECT_EQ(refused.problems[0].field, "unit_code");
  EXPECT_EQ(refused.problems[0].message, "unit_code: no unit U009");
  EXPECT_EQ(refused.problems[1].line, 5);
  EXPECT_EQ(refused.problems[1].message, std::string("ssn: ") + kA + " is on line 2");
  EXPECT_EQ(Count("si_people"), 0);
  EXPECT_EQ(Count("si_person_events"), 0);

  // Fixed, the file applies whole.
  const std::string fixed = std::string("effective,ssn,name,unit_code,wage_base,category\n") +
                            "2026-01-01," + kA + ",Li Lei,U001,8000.00,employee\n" + "2026-01-01," +
                            kB + ",Han Meimei,U002,3000,employee\n" + "2026-01-01," + kC +
                            ",Zhao,U001,0,retiree\n";
  const auto applied = MustImport(ImportKind::kPeople, fixed);
  EXPECT_TRUE(applied.applied);
  EXPECT_EQ(applied.rows, 3);
  Registry registry(*conn_);
  auto b = registry.PersonOn(kB, {2026, 2, 1});
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->unit_code, "U002");
  EXPECT_EQ((*b)->wage_base_fen, 300'000);
  EXPECT_EQ((*b)->birth_date, BirthDateOfSsn(kB));
  EXPECT_EQ((*b)->event, "enrol");
  EXPECT_EQ((*registry.PersonOn(kC, {2026, 2, 1}))->category, PersonCategory::kRetiree);
}

TEST_P(ImportTest, WagesAreAppendedAsEventsOrNotAtAll) {
  ASSERT_TRUE(MustImport(ImportKind::kUnits, kUnits).applied);
  ASSERT_TRUE(MustImport(ImportKind::kPeople,
                         std::string("ssn,name,unit_code,wage_base,category,effective\n") + kA +
                             ",Li Lei,U001,8000.00,employee,2026-01-01\n" + kB +
                             ",Han Meimei,U002,3000,employee,2026-01-01\n")
                  .applied);
  Registry registry(*conn_);
  ASSERT_TRUE(registry.Close(kB, {2026, 3, 1}, "emigration").ok());
  const auto events_before = Count("si_person_events");

  const std::string bad = std::string("ssn,wage_base,effective\n") + kA + ",9000.00,2026-07-01\n" +
                          kA + ",9000.00,2026-08-01\n" + kB + ",4000,2026-07-01\n" + kA +
                          ",9500,2026-06-01\n" + kC + ",1000,2026-07-01\n";
  const auto refused = MustImport(ImportKind::kWages, bad);
  EXPECT_FALSE(refused.applied);
  ASSERT_EQ(refused.problems.size(), 4u);
  EXPECT_EQ(refused.problems[0].message, "wage_base: unchanged");  // line 3: same as line 2
  EXPECT_EQ(refused.problems[1].message, "ssn: the person's registration is closed (emigration)");
  EXPECT_THAT(refused.problems[2].message,
              HasSubstr("effective: before the person's latest event (2026-07-01)"));
  EXPECT_EQ(refused.problems[3].message, std::string("ssn: no insured person ") + kC);
  EXPECT_EQ(Count("si_person_events"), events_before);

  const auto applied =
      MustImport(ImportKind::kWages, std::string("ssn,wage_base,effective\n") + kA +
                                         ",9000.00,2026-07-01\n" + kA + ",9500,2026-10-01\n");
  EXPECT_TRUE(applied.applied);
  EXPECT_EQ((*registry.PersonOn(kA, {2026, 6, 30}))->wage_base_fen, 800'000);
  EXPECT_EQ((*registry.PersonOn(kA, {2026, 7, 1}))->wage_base_fen, 900'000);
  auto october = *registry.PersonOn(kA, {2026, 10, 1});
  EXPECT_EQ(october->wage_base_fen, 950'000);
  EXPECT_EQ(october->event, "wage");
  EXPECT_EQ(october->unit_code, "U001");
}

TEST_P(ImportTest, ABrokenFileIsReportedAndAppliesNothing) {
  const auto report = MustImport(ImportKind::kUnits, "code,name,bank_account,area\nU1,\"x,1,2\n");
  EXPECT_FALSE(report.applied);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_EQ(report.problems[0].line, 2);
  EXPECT_EQ(report.problems[0].message, "line 2: a quoted field is not closed");
  EXPECT_EQ(Count("si_units"), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, ImportTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
