// The agency's reports on SQLite and PostgreSQL against figures computed by hand (two months of
// the monthly-run test's registry, some payments), their CSV bytes, and the SVG charts.
#include "insurance/reports.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "insurance/charts.h"
#include "insurance/claims_store.h"
#include "insurance/consumption.h"
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

std::string XmlProblem(const std::string& xml);
std::size_t Count(const std::string& text, const std::string& needle);

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
    auto policy = LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                                 "/../../config/policy/beijing-example.json");
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

// Spending: claims at two hospitals (and some that must not count) and two days of the bank's
// consumption detail, with a pharmacy and a cardholder the registry does not know.
constexpr char kG[] = "110101198202029999";  // not in the registry: a card from another area

Claim SpendingClaim(std::string number, std::string person, FacilityGrade grade, ClaimKind kind,
                    Date admission, std::string diagnosis, Fen covered_fen, Fen not_covered_fen) {
  Claim claim;
  claim.claim_id = std::move(number);
  claim.person_id = std::move(person);
  claim.grade = grade;
  claim.kind = kind;
  claim.admission = admission;
  claim.discharge = {admission.year, admission.month, admission.day + 3};
  claim.diagnosis_icd10 = std::move(diagnosis);
  claim.lines.push_back({"250101001", "ward", CatalogueCategory::kCovered, 0, covered_fen});
  if (not_covered_fen > 0) {
    claim.lines.push_back(
        {"990001", "private room", CatalogueCategory::kNotCovered, 0, not_covered_fen});
  }
  return claim;
}

class SpendingReportsTest : public ReportsTest {
 protected:
  void SetUp() override {
    ReportsTest::SetUp();
    if (HasFatalFailure()) return;
    ClaimStore claims(*conn_, policies_);
    // Counted: adjudicated, approved and paid claims admitted in November.
    counted_.push_back(
        Through(claims, "H0001",
                SpendingClaim("C1", kA, FacilityGrade::kGrade3, ClaimKind::kInpatient,
                              {2026, 11, 2}, "I21.0", 3'000'000, 120'000),
                ClaimState::kPaid));
    counted_.push_back(
        Through(claims, "H0001",
                SpendingClaim("C2", kD, FacilityGrade::kGrade3, ClaimKind::kInpatient,
                              {2026, 11, 9}, "I25.1", 800'000, 0),
                ClaimState::kApproved));
    counted_.push_back(
        Through(claims, "H0002",
                SpendingClaim("C3", kA, FacilityGrade::kGrade2, ClaimKind::kOutpatient,
                              {2026, 11, 20}, "J18.9", 45'000, 0),
                ClaimState::kAdjudicated));
    counted_.push_back(
        Through(claims, "H0002",
                SpendingClaim("C4", kC, FacilityGrade::kGrade2, ClaimKind::kInpatient,
                              {2026, 11, 21}, "S72.0", 2'500'000, 0),
                ClaimState::kPaid));
    // Not counted: only submitted; rejected by adjudication (E is suspended); admitted in
    // October; rejected by an officer.
    Through(claims, "H0001",
            SpendingClaim("C5", kB, FacilityGrade::kGrade3, ClaimKind::kInpatient, {2026, 11, 3},
                          "I10", 100'000, 0),
            ClaimState::kSubmitted);
    Through(claims, "H0001",
            SpendingClaim("C6", kE, FacilityGrade::kGrade3, ClaimKind::kInpatient, {2026, 11, 4},
                          "I10", 100'000, 0),
            ClaimState::kRejected);
    Through(claims, "H0001",
            SpendingClaim("C7", kA, FacilityGrade::kGrade3, ClaimKind::kInpatient, {2026, 10, 28},
                          "I10", 100'000, 0),
            ClaimState::kPaid);
    auto rejected = Through(claims, "H0003",
                            SpendingClaim("C8", kD, FacilityGrade::kGrade1, ClaimKind::kInpatient,
                                          {2026, 11, 5}, "K35", 100'000, 0),
                            ClaimState::kAdjudicated);
    ASSERT_TRUE(claims.Reject(rejected.id, "officer-li", "duplicate bill").ok());

    // Card purchases: A 30.00 at H0001 and 10.50 at P002 on 2 November, D 7.00 at P002 on
    // 3 November, G 12.34 at P002 on 3 November; A 99.99 at P002 on 1 December (outside).
    Import({2026, 11, 2}, {{kA, "H0001", 3'000}, {kA, "P002", 1'050}});
    Import({2026, 11, 3}, {{kD, "P002", 700}, {kG, "P002", 1'234}});
    Import({2026, 12, 1}, {{kA, "P002", 9'999}});
  }

  StoredClaim Through(ClaimStore& claims, const char* facility, const Claim& claim,
                      ClaimState until) {
    auto submitted = claims.Submit(facility, claim);
    EXPECT_TRUE(submitted.ok()) << submitted.error().message;
    if (!submitted.ok() || until == ClaimState::kSubmitted)
      return submitted.ok() ? *submitted : StoredClaim{};
    auto adjudicated = claims.Adjudicate(submitted->id);
    EXPECT_TRUE(adjudicated.ok()) << adjudicated.error().message;
    EXPECT_EQ(adjudicated->state,
              until == ClaimState::kRejected ? ClaimState::kRejected : ClaimState::kAdjudicated)
        << claim.claim_id;
    if (until == ClaimState::kAdjudicated || until == ClaimState::kRejected) return *adjudicated;
    EXPECT_TRUE(claims.Approve(submitted->id, "officer-li").ok());
    if (until == ClaimState::kApproved) return *claims.Find(submitted->id);
    auto paid = claims.Pay(submitted->id);
    EXPECT_TRUE(paid.ok()) << paid.error().message;
    return *paid;
  }

  struct Purchase {
    const char* person;
    const char* merchant;
    Fen amount_fen;
  };
  void Import(const Date& day, const std::vector<Purchase>& purchases) {
    ConsumptionDetail detail{day, {}};
    for (const auto& p : purchases) {
      const auto line = static_cast<std::int64_t>(detail.lines.size() + 1);
      detail.lines.push_back({line,
                              "100000000000000" + std::to_string(line) + "/" +
                                  day.ToString().substr(8) + std::to_string(line),
                              p.person, p.merchant, p.amount_fen,
                              day.ToString() + "T10:00:0" + std::to_string(line)});
    }
    const BatchKey key = *BatchKey::FromHex(std::string(64, '7'));
    auto imported = ImportConsumption(*conn_, WriteConsumptionDetail(detail, key), key);
    ASSERT_TRUE(imported.ok()) << imported.error().message;
  }

  const StoredClaim& Counted(std::size_t i) { return counted_.at(i); }
  static Fen Pooled(const StoredClaim& c) { return c.adjudication->pooled_fund_fen; }
  static Fen Personal(const StoredClaim& c) { return c.adjudication->personal_account_fen; }
  static Fen SelfPay(const StoredClaim& c) { return c.adjudication->self_pay_fen; }

  std::vector<StoredClaim> counted_;
  const Date from_{2026, 11, 1};
  const Date to_{2026, 11, 30};
};

TEST_P(SpendingReportsTest, ByFacilityAddsUpToTheFenAndLeavesOutWhatWasNotSpent) {
  auto report = SpendingByFacility(*conn_, from_, to_);
  ASSERT_TRUE(report.ok()) << report.error().message;
  // The totals: the four counted claims as adjudicated, the three November purchases... and G's.
  Fen billed = 0, pooled = 0, personal = 0, self_pay = 0;
  for (const auto& c : counted_) {
    ASSERT_TRUE(c.adjudication.has_value());
    billed += c.adjudication->total_billed_fen;
    pooled += Pooled(c);
    personal += Personal(c);
    self_pay += SelfPay(c);
  }
  EXPECT_EQ(billed, 3'000'000 + 120'000 + 800'000 + 45'000 + 2'500'000);
  EXPECT_EQ(pooled + personal + self_pay, billed);
  const SpendingTotals& t = report->totals;
  EXPECT_EQ(t.claims, 4);
  EXPECT_EQ(t.billed_fen, billed);
  EXPECT_EQ(t.pooled_fund_fen, pooled);
  EXPECT_EQ(t.personal_account_fen, personal);
  EXPECT_EQ(t.self_pay_fen, self_pay);
  EXPECT_EQ(t.card_purchases, 4);
  EXPECT_EQ(t.card_spent_fen, 3'000 + 1'050 + 700 + 1'234);
  EXPECT_EQ(t.people, 4);  // A, D, C with claims; G with a card purchase (A and D both ways)

  // Rows: H0002 (C3 + C4, 25,450.00) before H0001 (C1 + C2 + 30.00) ... by what was spent.
  ASSERT_EQ(report->rows.size(), 3u);
  const FacilitySpending& h1 = report->rows[0];
  EXPECT_EQ(h1.facility, "H0001");
  EXPECT_EQ(h1.grade, 3);
  EXPECT_EQ(h1.claims, 2);
  EXPECT_EQ(h1.billed_fen, 3'920'000);
  EXPECT_EQ(h1.pooled_fund_fen, Pooled(Counted(0)) + Pooled(Counted(1)));
  EXPECT_EQ(h1.self_pay_fen, SelfPay(Counted(0)) + SelfPay(Counted(1)));
  EXPECT_EQ(h1.card_purchases, 1);
  EXPECT_EQ(h1.card_spent_fen, 3'000);
  const FacilitySpending& h2 = report->rows[1];
  EXPECT_EQ(h2.facility, "H0002");
  EXPECT_EQ(h2.grade, 2);
  EXPECT_EQ(h2.claims, 2);
  EXPECT_EQ(h2.billed_fen, 2'545'000);
  const FacilitySpending& pharmacy = report->rows[2];
  EXPECT_EQ(pharmacy.facility, "P002");
  EXPECT_EQ(pharmacy.grade, 0);
  EXPECT_EQ(pharmacy.claims, 0);
  EXPECT_EQ(pharmacy.card_purchases, 3);
  EXPECT_EQ(pharmacy.card_spent_fen, 2'984);

  // Sum of the rows == the totals, to the fen.
  SpendingTotals sum;
  for (const auto& f : report->rows) {
    sum.claims += f.claims;
    sum.billed_fen += f.billed_fen;
    sum.pooled_fund_fen += f.pooled_fund_fen;
    sum.personal_account_fen += f.personal_account_fen;
    sum.self_pay_fen += f.self_pay_fen;
    sum.card_purchases += f.card_purchases;
    sum.card_spent_fen += f.card_spent_fen;
  }
  EXPECT_EQ(sum.claims, t.claims);
  EXPECT_EQ(sum.billed_fen, t.billed_fen);
  EXPECT_EQ(sum.pooled_fund_fen, t.pooled_fund_fen);
  EXPECT_EQ(sum.personal_account_fen, t.personal_account_fen);
  EXPECT_EQ(sum.self_pay_fen, t.self_pay_fen);
  EXPECT_EQ(sum.card_purchases, t.card_purchases);
  EXPECT_EQ(sum.card_spent_fen, t.card_spent_fen);

  const std::string csv = SpendingByFacilityCsv(*report);
  EXPECT_THAT(csv, ::testing::StartsWith("facility,grade,claims,billed,pooled_fund,"
                                         "personal_account,self_pay,card_purchases,card_spent\n"
                                         "H0001,3,2,39200.00,"));
  EXPECT_THAT(csv, HasSubstr("\nP002,,0,0.00,0.00,0.00,0.00,3,29.84\n"));
  EXPECT_THAT(csv, ::testing::EndsWith(",4,59.84\n"));
  EXPECT_THAT(csv, HasSubstr("\ntotal,,4,64650.00,"));

  const std::string svg = BarChartSvg(SpendingByFacilityChart(*report, "November 2026"));
  EXPECT_EQ(XmlProblem(svg), "");
  EXPECT_EQ(Count(svg, "class=\"bar\""), 3u);
  EXPECT_THAT(svg, HasSubstr("P002: 29.84"));

  // A period with nothing in it: no rows, zero totals.
  auto empty = SpendingByFacility(*conn_, {2025, 1, 1}, {2025, 1, 31});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->rows.empty());
  EXPECT_EQ(empty->totals.billed_fen, 0);
  EXPECT_EQ(empty->totals.people, 0);
  EXPECT_EQ(SpendingByFacilityCsv(*empty),
            "facility,grade,claims,billed,pooled_fund,personal_account,self_pay,card_purchases,"
            "card_spent\ntotal,,0,0.00,0.00,0.00,0.00,0,0.00\n");
}

TEST_P(SpendingReportsTest, ByDiagnosisChapterAndCategory) {
  auto chapters = SpendingByDiagnosis(*conn_, from_, to_, DiagnosisLevel::kChapter);
  ASSERT_TRUE(chapters.ok()) << chapters.error().message;
  // IX circulatory (I21.0, I25.1: 39,200.00), XIX injury (S72.0: 25,000.00), X (J18.9: 450.00).
  ASSERT_EQ(chapters->rows.size(), 3u);
  EXPECT_EQ(chapters->rows[0].code, "IX");
  EXPECT_EQ(chapters->rows[0].title, "Diseases of the circulatory system");
  EXPECT_EQ(chapters->rows[0].claims, 2);
  EXPECT_EQ(chapters->rows[0].people, 2);
  EXPECT_EQ(chapters->rows[0].billed_fen, 3'920'000);
  EXPECT_EQ(chapters->rows[1].code, "XIX");
  EXPECT_EQ(chapters->rows[1].pooled_fund_fen, Pooled(Counted(3)));
  EXPECT_EQ(chapters->rows[2].code, "X");
  EXPECT_EQ(chapters->rows[2].personal_account_fen, Personal(Counted(2)));
  EXPECT_EQ(chapters->totals.claims, 4);
  EXPECT_EQ(chapters->totals.people, 3);  // claims only: G's card purchase has no diagnosis
  EXPECT_EQ(chapters->totals.card_spent_fen, 0);
  Fen billed = 0, pooled = 0, personal = 0, self_pay = 0;
  std::int64_t claims = 0;
  for (const auto& d : chapters->rows) {
    claims += d.claims;
    billed += d.billed_fen;
    pooled += d.pooled_fund_fen;
    personal += d.personal_account_fen;
    self_pay += d.self_pay_fen;
  }
  EXPECT_EQ(claims, chapters->totals.claims);
  EXPECT_EQ(billed, chapters->totals.billed_fen);
  EXPECT_EQ(pooled, chapters->totals.pooled_fund_fen);
  EXPECT_EQ(personal, chapters->totals.personal_account_fen);
  EXPECT_EQ(self_pay, chapters->totals.self_pay_fen);
  const std::string csv = SpendingByDiagnosisCsv(*chapters);
  EXPECT_THAT(csv, ::testing::StartsWith(
                       "diagnosis,title,claims,people,billed,pooled_fund,personal_account,"
                       "self_pay\nIX,Diseases of the circulatory system,2,2,39200.00,"));
  EXPECT_THAT(csv, HasSubstr("\nXIX,\"Injury, poisoning and certain other consequences of"
                             " external causes\",1,1,25000.00,"));

  auto categories = SpendingByDiagnosis(*conn_, from_, to_, DiagnosisLevel::kCategory);
  ASSERT_TRUE(categories.ok());
  ASSERT_EQ(categories->rows.size(), 4u);
  EXPECT_EQ(categories->rows[0].code, "I21");
  EXPECT_EQ(categories->rows[0].billed_fen, 3'120'000);
  EXPECT_EQ(categories->rows[0].title, "");
  EXPECT_EQ(categories->rows[1].code, "S72");
  EXPECT_EQ(categories->rows[2].code, "I25");  // "I25.1" as submitted, upper-cased
  EXPECT_EQ(categories->rows[3].code, "J18");
  EXPECT_EQ(categories->totals.billed_fen, chapters->totals.billed_fen);
}

TEST(Icd10ChapterTest, ChapterBoundaries) {
  const auto chapter = [](const char* code) { return Icd10ChapterOf(code).code; };
  EXPECT_EQ(chapter("A00"), "I");
  EXPECT_EQ(chapter("B99.9"), "I");
  EXPECT_EQ(chapter("C00"), "II");
  EXPECT_EQ(chapter("D48.1"), "II");
  EXPECT_EQ(chapter("D49"), "");  // between chapters II and III
  EXPECT_EQ(chapter("D50"), "III");
  EXPECT_EQ(chapter("H59"), "VII");
  EXPECT_EQ(chapter("H60"), "VIII");
  EXPECT_EQ(chapter("I21.0"), "IX");
  EXPECT_EQ(chapter("j18.9"), "X");
  EXPECT_EQ(chapter("K94"), "");
  EXPECT_EQ(chapter("S72"), "XIX");
  EXPECT_EQ(chapter("T98"), "XIX");
  EXPECT_EQ(chapter("U07.1"), "XXII");
  EXPECT_EQ(chapter("V00"), "");
  EXPECT_EQ(chapter("V01"), "XX");
  EXPECT_EQ(chapter("Y98"), "XX");
  EXPECT_EQ(chapter("Z99"), "XXI");
  EXPECT_EQ(chapter("I2"), "");
  EXPECT_EQ(chapter("12A"), "");
  EXPECT_EQ(Icd10ChapterOf("N39.0").title, "Diseases of the genitourinary system");
}

TEST_P(SpendingReportsTest, TopConsumersRankByPooledFundAndCardSpending) {
  auto all = TopConsumers(*conn_, from_, to_, 100);
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->rows.size(), 4u);  // A, C, D with claims, G with a card purchase
  Fen total = 0, pooled = 0, card = 0, billed = 0;
  std::int64_t claims = 0;
  for (std::size_t i = 0; i < all->rows.size(); ++i) {
    const ConsumerSpending& p = all->rows[i];
    EXPECT_EQ(p.total_fen, p.pooled_fund_fen + p.card_spent_fen);
    if (i > 0) {
      EXPECT_GE(all->rows[i - 1].total_fen, p.total_fen);
    }
    total += p.total_fen;
    pooled += p.pooled_fund_fen;
    card += p.card_spent_fen;
    billed += p.billed_fen;
    claims += p.claims;
  }
  EXPECT_EQ(total, all->total_fen);
  EXPECT_EQ(pooled, all->totals.pooled_fund_fen);
  EXPECT_EQ(card, all->totals.card_spent_fen);
  EXPECT_EQ(billed, all->totals.billed_fen);
  EXPECT_EQ(claims, all->totals.claims);
  EXPECT_EQ(all->totals.people, 4);

  const auto find = [&](const char* ssn) -> const ConsumerSpending& {
    for (const auto& p : all->rows) {
      if (p.person_id == ssn) return p;
    }
    ADD_FAILURE() << ssn << " not in the report";
    return all->rows.front();
  };
  const ConsumerSpending& a = find(kA);
  EXPECT_EQ(a.name, "Person");
  EXPECT_EQ(a.claims, 2);  // C1 and C3 (C7 was admitted in October)
  EXPECT_EQ(a.billed_fen, 3'165'000);
  EXPECT_EQ(a.pooled_fund_fen, Pooled(Counted(0)) + Pooled(Counted(2)));
  EXPECT_EQ(a.claims_personal_account_fen, Personal(Counted(0)) + Personal(Counted(2)));
  EXPECT_EQ(a.card_purchases, 2);
  EXPECT_EQ(a.card_spent_fen, 4'050);
  const ConsumerSpending& g = find(kG);
  EXPECT_EQ(g.name, "");
  EXPECT_EQ(g.claims, 0);
  EXPECT_EQ(g.total_fen, 1'234);
  EXPECT_EQ(all->rows.back().person_id, kG);

  auto top2 = TopConsumers(*conn_, from_, to_, 2);
  ASSERT_TRUE(top2.ok());
  ASSERT_EQ(top2->rows.size(), 2u);
  EXPECT_EQ(top2->rows[0].person_id, all->rows[0].person_id);
  EXPECT_EQ(top2->rows[1].person_id, all->rows[1].person_id);
  EXPECT_EQ(top2->total_fen, all->total_fen);  // totals stay over everyone
  const std::string csv = TopConsumersCsv(*top2);
  EXPECT_THAT(csv, ::testing::StartsWith(
                       "rank,person,name,claims,billed,pooled_fund,claims_personal_account,"
                       "self_pay,card_purchases,card_spent,total\n1," +
                       all->rows[0].person_id + ",Person,"));
  EXPECT_THAT(csv, HasSubstr("\ntotal,,4 people,4,64650.00,"));
  EXPECT_EQ(Count(csv, "\n"), 4u);

  auto bad = TopConsumers(*conn_, from_, to_, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "limit");
  auto backwards = TopConsumers(*conn_, to_, from_, 10);
  ASSERT_FALSE(backwards.ok());
  EXPECT_EQ(backwards.error().field, "to");
}

TEST_P(SpendingReportsTest, PersonalAccountBalancesAreAllocationsLessCardSpending) {
  // Allocated by the end of November: A 480.00, B 336.00, C 960.00, D 2,400.00. Spent by card
  // by 30 November: A 40.50, D 7.00, G 12.34 (G has no allocation: overdrawn).
  auto distribution = PersonalAccountBalances(*conn_, {2026, 11, 30}, DefaultBalanceBandEdges());
  ASSERT_TRUE(distribution.ok()) << distribution.error().message;
  EXPECT_EQ(distribution->people, 5);
  EXPECT_EQ(distribution->overdrawn_people, 1);
  EXPECT_EQ(distribution->overdrawn_fen, -1'234);
  EXPECT_EQ(distribution->total_fen, 48'000 + 33'600 + 96'000 + 240'000 - 4'050 - 700 - 1'234);
  ASSERT_EQ(distribution->bands.size(), 7u);
  EXPECT_EQ(distribution->bands[0].people, 2);  // A 439.50, B 336.00
  EXPECT_EQ(distribution->bands[0].total_fen, 43'950 + 33'600);
  EXPECT_EQ(distribution->bands[1].people, 1);  // C 960.00
  EXPECT_EQ(distribution->bands[3].people, 1);  // D 2,393.00
  EXPECT_EQ(distribution->bands[3].total_fen, 239'300);
  Fen sum = distribution->overdrawn_fen;
  std::int64_t people = distribution->overdrawn_people;
  for (const auto& b : distribution->bands) {
    sum += b.total_fen;
    people += b.people;
  }
  EXPECT_EQ(sum, distribution->total_fen);
  EXPECT_EQ(people, distribution->people);
  const std::string csv = PersonalAccountBalancesCsv(*distribution);
  EXPECT_THAT(csv, ::testing::StartsWith("band,from,to,people,total\noverdrawn,,0.00,1,-12.34\n"
                                         "0.00-500.00,0.00,500.00,2,775.50\n"));
  EXPECT_THAT(csv, ::testing::EndsWith("\ntotal,,,5,4116.16\n"));
  const std::string svg = HistogramSvg(PersonalAccountBalancesChart(*distribution, {2026, 11, 30}));
  EXPECT_EQ(XmlProblem(svg), "");
  EXPECT_EQ(Count(svg, "class=\"bar\""), 8u);

  // On 31 October: one month allocated, nothing spent yet.
  auto october = PersonalAccountBalances(*conn_, {2026, 10, 31}, DefaultBalanceBandEdges());
  ASSERT_TRUE(october.ok());
  EXPECT_EQ(october->total_fen, (48'000 + 33'600 + 96'000 + 240'000) / 2);
  EXPECT_EQ(october->overdrawn_people, 0);

  auto bad = PersonalAccountBalances(*conn_, {2026, 11, 30}, {500, 1000});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "bands");
  auto no_day = PersonalAccountBalances(*conn_, {2026, 2, 30}, DefaultBalanceBandEdges());
  ASSERT_FALSE(no_day.ok());
  EXPECT_EQ(no_day.error().field, "as_of");
}

INSTANTIATE_TEST_SUITE_P(Engines, SpendingReportsTest, test_support::AllEngines(),
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
