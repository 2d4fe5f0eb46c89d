// The monthly run on SQLite and PostgreSQL against figures computed by hand, its idempotency,
// resumption after a crash between chunks, payments and arrears, and the books' check.
#include "insurance/monthly_run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "insurance/policy.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

// Hand computation (the example policy with an average wage of 120,000 yuan a year, so 10,000.00
// a month; base floor 60% = 6,000.00, cap 300% = 30,000.00; employer 6%, employee 2%; employer
// share to the account 0.8% under 35, 1% 35-44, 2% from 45; retirees 4.3% / 4.8% from 70), on
// 2026-11-01:
//   A employee, 36, wage 8,000.00: er 480.00, ee 160.00, account 160.00 + 80.00 = 240.00
//   B employee, 26, wage 3,000.00 → floor 6,000.00: er 360.00, ee 120.00, account 120.00 + 48.00
//   C retiree, 76: account 4.8% × 10,000.00 = 480.00 (from the pooled fund)
//   D employee, 51, wage 50,000.00 → cap 30,000.00: er 1,800.00, ee 600.00, account 600.00 + 600.00
//   E suspended since October, F enrolled on 2026-11-15: not billed.
constexpr char kA[] = "110101199001011237";
constexpr char kB[] = "11010120000515234X";
constexpr char kC[] = "110101195003103452";
constexpr char kD[] = "110101197506204561";
constexpr char kE[] = "110101198008085672";
constexpr char kF[] = "11010119851111678X";
constexpr YearMonth kMonth{2026, 11};

Result<PolicyBook> TestPolicies() {
  auto policy = LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                               "/../../config/policy/beijing-example.json");
  if (!policy.ok()) return policy.error();
  policy->effective_from = {2026, 1, 1};
  policy->average_annual_wage_fen = 12'000'000;
  PolicyBook book;
  if (Status s = book.Add(*policy); !s.ok()) return s.error();
  return book;
}

class MonthlyRunTest : public ::testing::TestWithParam<store::Engine> {
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
    auto policies = TestPolicies();
    ASSERT_TRUE(policies.ok()) << policies.error().message;
    policies_ = std::move(policies).value();

    Registry registry(*conn_);
    ASSERT_TRUE(registry.AddUnit({"U001", "Capital Steel", "62220202001122", "110000"}).ok());
    ASSERT_TRUE(registry.AddUnit({"U002", "City Library", "62220202003344", "110000"}).ok());
    auto enrol = [&](const char* ssn, const char* unit, Fen wage, PersonCategory category,
                     Date effective) {
      auto r = registry.Enrol({.ssn = ssn,
                               .name = "Person",
                               .birth_date = BirthDateOfSsn(ssn),
                               .unit_code = unit,
                               .wage_base_fen = wage,
                               .category = category,
                               .effective = effective});
      ASSERT_TRUE(r.ok()) << r.error().message;
    };
    enrol(kA, "U001", 800'000, PersonCategory::kEmployee, {2026, 1, 1});
    enrol(kB, "U001", 300'000, PersonCategory::kEmployee, {2026, 1, 1});
    enrol(kC, "U001", 0, PersonCategory::kRetiree, {2026, 1, 1});
    enrol(kD, "U002", 5'000'000, PersonCategory::kEmployee, {2026, 1, 1});
    enrol(kE, "U002", 700'000, PersonCategory::kEmployee, {2026, 1, 1});
    ASSERT_TRUE(registry.Suspend(kE, {2026, 10, 1}).ok());
    enrol(kF, "U002", 700'000, PersonCategory::kEmployee, {2026, 11, 15});
  }

  std::int64_t Count(const char* table) {
    auto rows = conn_->Query(std::string("SELECT COUNT(*) FROM ") + table);
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  void ExpectHandFigures(const MonthlyRunSummary& s) {
    EXPECT_EQ(s.people, 4);
    EXPECT_EQ(s.units, 2);
    EXPECT_EQ(s.employer_fen, 48'000 + 36'000 + 180'000);
    EXPECT_EQ(s.employee_fen, 16'000 + 12'000 + 60'000);
    EXPECT_EQ(s.personal_account_fen, 24'000 + 16'800 + 48'000 + 120'000);
    EXPECT_EQ(s.retiree_allowance_fen, 48'000);
    EXPECT_EQ(s.pooled_fund_fen, 352'000 - 208'800);
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  PolicyBook policies_;
};

TEST_P(MonthlyRunTest, FiguresMatchTheHandComputation) {
  auto run = RunMonth(*conn_, policies_, kMonth);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_FALSE(run->already_finished);
  ExpectHandFigures(*run);

  auto bills = UnitBills(*conn_, kMonth);
  ASSERT_TRUE(bills.ok()) << bills.error().message;
  ASSERT_EQ(bills->size(), 2u);
  EXPECT_EQ((*bills)[0].unit_code, "U001");
  EXPECT_EQ((*bills)[0].people, 3);
  EXPECT_EQ((*bills)[0].billed_fen, 112'000);
  EXPECT_EQ((*bills)[0].personal_account_fen, 88'800);
  EXPECT_EQ((*bills)[1].billed_fen, 240'000);

  auto lines = BillLines(*conn_, kMonth, "U001");
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 3u);
  for (const auto& line : *lines) {
    if (line.ssn == kB) {
      EXPECT_EQ(line.age, 26);
      EXPECT_EQ(line.base_fen, 600'000);  // raised to the floor
      EXPECT_EQ(line.personal_account_fen, 16'800);
    }
    if (line.ssn == kC) {
      EXPECT_EQ(line.category, PersonCategory::kRetiree);
      EXPECT_EQ(line.employer_fen + line.employee_fen, 0);
      EXPECT_EQ(line.retiree_allowance_fen, 48'000);
    }
  }

  // The books: the pooled fund got the contributions less what they allocate, less the
  // retiree's allowance; the personal accounts everything allocated.
  auto balances = BookBalances(*conn_);
  ASSERT_TRUE(balances.ok());
  std::map<std::string, Fen> by_account;
  for (const auto& b2 : *balances) by_account[b2.account] = b2.balance_fen;
  EXPECT_EQ(by_account["pooled_fund"], 143'200);
  EXPECT_EQ(by_account["personal_accounts"], 208'800);
  EXPECT_EQ(by_account["receivable/U001"], -112'000);
  auto problems = CheckBooks(*conn_);
  ASSERT_TRUE(problems.ok()) << problems.error().message;
  EXPECT_TRUE(problems->empty()) << ::testing::PrintToString(*problems);
}

TEST_P(MonthlyRunTest, ASecondRunOfAFinishedMonthChangesNothingAndSaysSo) {
  ASSERT_TRUE(RunMonth(*conn_, policies_, kMonth).ok());
  const auto lines = Count("si_bill_lines"), entries = Count("si_book_entries");
  auto again = RunMonth(*conn_, policies_, kMonth);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_finished);
  EXPECT_EQ(again->chunks, 0);
  ExpectHandFigures(*again);
  EXPECT_EQ(Count("si_bill_lines"), lines);
  EXPECT_EQ(Count("si_book_entries"), entries);
}

TEST_P(MonthlyRunTest, ResumesAfterACrashBetweenChunks) {
  MonthlyRunOptions crashing;
  crashing.chunk_size = 1;
  crashing.after_chunk = [](int chunk) -> Status {
    if (chunk == 2) return MakeError("power cut");
    return Status::Ok();
  };
  auto crashed = RunMonth(*conn_, policies_, kMonth, crashing);
  ASSERT_FALSE(crashed.ok());
  EXPECT_THAT(crashed.error().message, HasSubstr("after chunk 2"));
  EXPECT_EQ(Count("si_bill_lines"), 2);  // both committed chunks stay
  EXPECT_EQ(Count("si_book_entries"), 0);
  auto not_finished = UnitBills(*conn_, kMonth);
  EXPECT_FALSE(not_finished.ok());

  MonthlyRunOptions rest;
  rest.chunk_size = 1;
  auto resumed = RunMonth(*conn_, policies_, kMonth, rest);
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->chunks, 2);  // only the two people left
  ExpectHandFigures(*resumed);
  auto problems = CheckBooks(*conn_);
  ASSERT_TRUE(problems.ok());
  EXPECT_TRUE(problems->empty()) << ::testing::PrintToString(*problems);
}

TEST_P(MonthlyRunTest, AMissingPolicyStopsTheRunWithNothingOfTheChunkAndItResumesLater) {
  Registry registry(*conn_);
  ASSERT_TRUE(registry.AddUnit({"U900", "Shanghai Branch", "62220202009999", "310000"}).ok());
  ASSERT_TRUE(registry
                  .Enrol({.ssn = "110101199202027892",
                          .name = "Li Lei",
                          .birth_date = {1992, 2, 2},
                          .unit_code = "U900",
                          .wage_base_fen = 900'000,
                          .category = PersonCategory::kEmployee,
                          .effective = {2026, 1, 1}})
                  .ok());
  MonthlyRunOptions options;
  options.chunk_size = 2;
  auto stopped = RunMonth(*conn_, policies_, kMonth, options);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().field, "policy");
  EXPECT_THAT(stopped.error().message, HasSubstr("310000"));
  const auto committed = Count("si_bill_lines");
  EXPECT_EQ(committed % 2, 0);  // whole chunks only

  auto shanghai = LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                                 "/../../config/policy/beijing-example.json");
  ASSERT_TRUE(shanghai.ok());
  shanghai->area_code = "310000";
  shanghai->effective_from = {2026, 1, 1};
  ASSERT_TRUE(policies_.Add(*shanghai).ok());
  auto resumed = RunMonth(*conn_, policies_, kMonth, options);
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->people, 5);
}

TEST_P(MonthlyRunTest, ArrearsAreBilledLessPaid) {
  ASSERT_TRUE(RunMonth(*conn_, policies_, kMonth).ok());
  auto paid = AddPayment(*conn_, {"U001", kMonth, 100'000, {2026, 11, 20}});
  ASSERT_TRUE(paid.ok()) << paid.error().message;
  ASSERT_TRUE(AddPayment(*conn_, {"U001", kMonth, 2'000, {2026, 11, 25}}).ok());
  auto bills = UnitBills(*conn_, kMonth);
  ASSERT_TRUE(bills.ok());
  EXPECT_EQ((*bills)[0].paid_fen, 102'000);
  EXPECT_EQ((*bills)[0].arrears_fen, 10'000);
  EXPECT_EQ((*bills)[1].paid_fen, 0);
  EXPECT_EQ((*bills)[1].arrears_fen, 240'000);

  auto unknown = AddPayment(*conn_, {"U404", kMonth, 1, {2026, 11, 25}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().field, "unit");
  auto zero = AddPayment(*conn_, {"U001", kMonth, 0, {2026, 11, 25}});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().field, "amount");
  EXPECT_EQ(Count("si_payments"), 2);

  auto balances = BookBalances(*conn_);
  ASSERT_TRUE(balances.ok());
  for (const auto& b : *balances) {
    if (b.account == "receivable/U001") {
      EXPECT_EQ(b.balance_fen, -10'000);
    }
    if (b.account == "collections") {
      EXPECT_EQ(b.balance_fen, -102'000);
    }
  }
}

TEST_P(MonthlyRunTest, CheckFindsAnEntryThatMovesPersonalAccountMoneyToThePooledFund) {
  ASSERT_TRUE(RunMonth(*conn_, policies_, kMonth).ok());
  ASSERT_TRUE(conn_
                  ->Execute("INSERT INTO si_book_entries (id, debit, credit, amount, kind, month,"
                            " recorded_at_us) VALUES ('forged', 'personal_accounts',"
                            " 'pooled_fund', 500, 'contribution', '2026-11', 0)")
                  .ok());
  auto problems = CheckBooks(*conn_);
  ASSERT_TRUE(problems.ok());
  EXPECT_THAT(*problems, ::testing::Contains(HasSubstr("crosses the pooled fund")));
  EXPECT_THAT(*problems, ::testing::Contains(HasSubstr("books differ from the bills")));
}

INSTANTIATE_TEST_SUITE_P(Engines, MonthlyRunTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
