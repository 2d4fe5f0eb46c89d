// The agency's reports on SQLite and PostgreSQL against figures computed by hand (two months of
// the monthly-run test's registry, some payments), their CSV bytes, and the SVG charts.
#include "insurance/reports.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "insurance/charts.h"
#include "insurance/policy.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

// The monthly-run test's people (its header comment has the hand computation): in October and
// November 2026 the same four are billed (E is suspended from October, F enrols mid-November):
// U001 (A, B, C) 1,120.00 billed, 888.00 to accounts; U002 (D) 2,400.00 billed, 1,200.00 to
// accounts; the retiree C's allowance 480.00 a month.
constexpr char kA[] = "110101199001011237";
constexpr char kB[] = "11010120000515234X";
constexpr char kC[] = "110101195003103452";
constexpr char kD[] = "110101197506204561";
constexpr char kE[] = "110101198008085672";
constexpr char kF[] = "11010119851111678X";
constexpr YearMonth kOctober{2026, 10};
constexpr YearMonth kNovember{2026, 11};

class ReportsTest : public ::testing::TestWithParam<store::Engine> {
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
    auto policy = LoadPolicyFile(MEDCARD_TEST_DATA_DIR "/../../config/policy/beijing-example.json");
    ASSERT_TRUE(policy.ok()) << policy.error().message;
    policy->effective_from = {2026, 1, 1};
    policy->average_annual_wage_fen = 12'000'000;
    ASSERT_TRUE(policies_.Add(*policy).ok());

    Registry registry(*conn_);
    ASSERT_TRUE(registry.AddUnit({"U001", "Capital Steel", "62220202001122", "110000"}).ok());
    ASSERT_TRUE(registry.AddUnit({"U002", "City Library, East", "62220202003344", "110000"}).ok());
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
    ASSERT_TRUE(RunMonth(*conn_, policies_, kOctober).ok());
    ASSERT_TRUE(RunMonth(*conn_, policies_, kNovember).ok());
    ASSERT_TRUE(AddPayment(*conn_, {"U001", kOctober, 112'000, {2026, 10, 20}}).ok());
    ASSERT_TRUE(AddPayment(*conn_, {"U002", kOctober, 100'000, {2026, 10, 25}}).ok());
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  PolicyBook policies_;
};

TEST_P(ReportsTest, FundByMonthMatchesTheHandFigures) {
  // December was never run: it is left out.
  auto months = FundByMonth(*conn_, kOctober, {2026, 12});
  ASSERT_TRUE(months.ok()) << months.error().message;
  ASSERT_EQ(months->size(), 2u);
  const FundMonth& october = (*months)[0];
  EXPECT_EQ(october.month, kOctober);
  EXPECT_EQ(october.people, 4);
  EXPECT_EQ(october.employer_fen, 264'000);
  EXPECT_EQ(october.employee_fen, 88'000);
  EXPECT_EQ(october.billed_fen, 352'000);
  EXPECT_EQ(october.collected_fen, 212'000);
  EXPECT_EQ(october.arrears_fen, 140'000);
  EXPECT_EQ(october.personal_account_fen, 208'800);
  EXPECT_EQ(october.retiree_allowance_fen, 48'000);
  EXPECT_EQ(october.pooled_fund_fen, 143'200);
  EXPECT_EQ((*months)[1].collected_fen, 0);
  EXPECT_EQ((*months)[1].arrears_fen, 352'000);

  EXPECT_EQ(FundByMonthCsv(*months),
            "month,people,employer,employee,billed,collected,arrears,personal_account_allocation,"
            "retiree_allowance,pooled_fund_income\n"
            "2026-10,4,2640.00,880.00,3520.00,2120.00,1400.00,2088.00,480.00,1432.00\n"
            "2026-11,4,2640.00,880.00,3520.00,0.00,3520.00,2088.00,480.00,1432.00\n");
}

TEST_P(ReportsTest, ArrearsByUnitLargestFirstWithQuotedNames) {
  auto units = ArrearsByUnit(*conn_, kOctober, kNovember);
  ASSERT_TRUE(units.ok()) << units.error().message;
  ASSERT_EQ(units->size(), 2u);
  EXPECT_EQ((*units)[0].unit_code, "U002");
  EXPECT_EQ((*units)[0].months, 2);
  EXPECT_EQ((*units)[0].billed_fen, 480'000);
  EXPECT_EQ((*units)[0].paid_fen, 100'000);
  EXPECT_EQ((*units)[0].arrears_fen, 380'000);
  EXPECT_EQ((*units)[1].unit_code, "U001");
  EXPECT_EQ((*units)[1].arrears_fen, 112'000);
  EXPECT_EQ(ArrearsByUnitCsv(*units),
            "unit,name,months,billed,paid,arrears\n"
            "U002,\"City Library, East\",2,4800.00,1000.00,3800.00\n"
            "U001,Capital Steel,2,2240.00,1120.00,1120.00\n");

  // November alone: nothing paid against it.
  auto november = ArrearsByUnit(*conn_, kNovember, kNovember);
  ASSERT_TRUE(november.ok());
  EXPECT_EQ((*november)[0].paid_fen + (*november)[1].paid_fen, 0);
}

TEST_P(ReportsTest, AllocationDistributionCountsPeopleInBands) {
  // Two months: A 480.00, B 336.00, C 960.00, D 2,400.00.
  auto bands = AllocationDistribution(*conn_, kOctober, kNovember, DefaultBalanceBandEdges());
  ASSERT_TRUE(bands.ok()) << bands.error().message;
  ASSERT_EQ(bands->size(), 7u);
  EXPECT_EQ((*bands)[0].people, 2);
  EXPECT_EQ((*bands)[0].total_fen, 81'600);
  EXPECT_EQ((*bands)[1].people, 1);
  EXPECT_EQ((*bands)[1].total_fen, 96'000);
  EXPECT_EQ((*bands)[2].people, 0);
  EXPECT_EQ((*bands)[3].people, 1);
  EXPECT_EQ((*bands)[3].total_fen, 240'000);
  EXPECT_FALSE((*bands)[6].to_fen.has_value());
  const std::string csv = AllocationDistributionCsv(*bands);
  EXPECT_THAT(csv, HasSubstr("0.00-500.00,0.00,500.00,2,816.00\n"));
  EXPECT_THAT(csv, HasSubstr("20000.00+,20000.00,,0,0.00\n"));

  auto bad = AllocationDistribution(*conn_, kOctober, kNovember, {0, 100, 100});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "bands");
}

TEST_P(ReportsTest, ABackwardsRangeIsRefusedNamingTheField) {
  auto months = FundByMonth(*conn_, kNovember, kOctober);
  ASSERT_FALSE(months.ok());
  EXPECT_EQ(months.error().code, access::ErrorCode::kInvalid);
  EXPECT_EQ(months.error().field, "to");
}

INSTANTIATE_TEST_SUITE_P(Engines, ReportsTest, test_support::AllEngines(),
                         test_support::EngineTestName);

// A tiny XML well-formedness check: balanced, properly nested tags, quoted attributes, no raw
// '<' or '&' in text. Returns the problem, or empty.
std::string XmlProblem(const std::string& xml) {
  std::vector<std::string> open;
  std::size_t i = 0;
  if (xml.rfind("<?xml", 0) == 0) i = xml.find("?>") + 2;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      const auto end = xml.find(';', i);
      if (end == std::string::npos || end - i > 6) return "bare & at " + std::to_string(i);
      i = end + 1;
      continue;
    }
    if (xml[i] != '<') {
      ++i;
      continue;
    }
    const auto end = xml.find('>', i);
    if (end == std::string::npos) return "unterminated tag";
    std::string tag = xml.substr(i + 1, end - i - 1);
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return "unbalanced quotes: " + tag;
    if (tag.find('<') != std::string::npos) return "'<' inside a tag: " + tag;
    if (tag.starts_with("/")) {
      if (open.empty() || open.back() != tag.substr(1)) return "mismatched <" + tag + ">";
      open.pop_back();
    } else if (!tag.ends_with("/")) {
      open.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end + 1;
  }
  return open.empty() ? std::string() : "unclosed <" + open.back() + ">";
}

std::size_t Count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(ChartsTest, BarChartIsWellFormedWithOneBarPerMonth) {
  const BarChart chart{"Fund income <by month> & arrears",
                       "yuan",
                       {{"2026-10", 143'200}, {"2026-11", -5'000}, {"2026-12", 0}}};
  const std::string svg = BarChartSvg(chart);
  EXPECT_EQ(XmlProblem(svg), "") << svg;
  EXPECT_EQ(Count(svg, "class=\"bar\""), 3u);
  EXPECT_THAT(svg, HasSubstr("Fund income &lt;by month&gt; &amp; arrears"));
  EXPECT_THAT(svg, HasSubstr("2026-11: -50.00"));
  EXPECT_EQ(svg, BarChartSvg(chart));  // deterministic
}

TEST(ChartsTest, HistogramAndLineChartAreWellFormed) {
  const std::string histogram =
      HistogramSvg({"Allocation distribution", "people", {{"0-500", 2}, {"500-1000", 1}}});
  EXPECT_EQ(XmlProblem(histogram), "");
  EXPECT_EQ(Count(histogram, "class=\"bar\""), 2u);
  EXPECT_THAT(histogram, HasSubstr("0-500: 2<"));

  const std::string line =
      LineChartSvg({"Pooled fund forecast",
                    "yuan",
                    {"year 1", "year 2", "year 3"},
                    {{"current policy", {100, 200, 300}}, {"proposed \"7%\"", {100, 250, 400}}}});
  EXPECT_EQ(XmlProblem(line), "");
  EXPECT_EQ(Count(line, "class=\"series\""), 2u);
  EXPECT_THAT(line, HasSubstr("proposed &quot;7%&quot;"));
  EXPECT_EQ(XmlProblem("<svg><g></svg></g>"), "mismatched </svg>");
}

}  // namespace
}  // namespace medcard::insurance
