// Claim adjudication, table-driven from worked examples computed by hand on a round-number
// policy: average annual wage 100,000.00 yuan (10,000,000 fen); deductible 10% = 10,000.00
// (first admission of the year) / 5% = 5,000.00 (later); annual cap 4× = 400,000.00; co-pay
// (person's share) by grade over the admission's eligible cost ≤30,000 / 30,000–40,000 / above:
// grade 3: 15% / 10% / 5%, grade 2: 12% / 8% / 4%, grade 1: 10% / 7% / 3%; retirees pay 60%
// of that (50% from 70). The personal account pays deductible, co-pay and partly-covered
// self-pay, not the not-covered items. Amounts below in fen.
#include "insurance/claims.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

Policy RoundPolicy() {
  Policy p;
  p.area_code = "999999";
  p.name = "round-number test policy";
  p.effective_from = {2025, 1, 1};
  p.average_annual_wage_fen = 10'000'000;
  p.contributions = {600, 200, 6000, 30000};
  p.allocation.employer_share_of_base = {{0, 80}, {35, 100}, {45, 200}};
  p.allocation.retiree_share_of_average_wage = {{0, 430}, {70, 480}};
  p.benefits.deductible_first_admission_bp = 1000;
  p.benefits.deductible_later_admission_bp = 500;
  p.benefits.annual_cap_bp = 40000;
  p.benefits.copay[0] = {{3'000'000, 1000}, {4'000'000, 700}, {std::nullopt, 300}};
  p.benefits.copay[1] = {{3'000'000, 1200}, {4'000'000, 800}, {std::nullopt, 400}};
  p.benefits.copay[2] = {{3'000'000, 1500}, {4'000'000, 1000}, {std::nullopt, 500}};
  p.benefits.retiree_copay_factor = {{0, 6000}, {70, 5000}};
  p.benefits.personal_account = {.deductible = true,
                                 .copay = true,
                                 .partly_covered_self_pay = true,
                                 .not_covered = false,
                                 .above_cap = false,
                                 .outpatient = true};
  return p;
}

ClaimLine Covered(Fen amount) {
  return {"C", "covered item", CatalogueCategory::kCovered, 0, amount};
}
ClaimLine Partly(Fen amount, BasisPoints self_pay_bp) {
  return {"P", "partly covered item", CatalogueCategory::kPartlyCovered, self_pay_bp, amount};
}
ClaimLine NotCovered(Fen amount) {
  return {"N", "not covered item", CatalogueCategory::kNotCovered, 0, amount};
}

Claim MakeClaim(PersonCategory category, int age, FacilityGrade grade,
                std::vector<ClaimLine> lines) {
  Claim c;
  c.claim_id = "CLM-1";
  c.person_id = "110101197501010011";
  c.category = category;
  c.age = age;
  c.grade = grade;
  c.admission = {2025, 3, 2};
  c.discharge = {2025, 3, 20};
  c.diagnosis_icd10 = "I21.0";
  c.lines = std::move(lines);
  return c;
}

struct Expected {
  ClaimState state;
  Fen pooled, account, self_pay;
  Fen deductible, copay, not_covered, partly_self, above_cap;
  bool cap_reached;
};

struct ClaimCase {
  std::string name;
  Claim claim;
  YearSoFar year;
  Expected expected;
};

class WorkedClaim : public ::testing::TestWithParam<ClaimCase> {};

TEST_P(WorkedClaim, SplitsTheBillAsComputedByHand) {
  const auto& c = GetParam();
  const auto a = Adjudicate(RoundPolicy(), c.claim, c.year);
  EXPECT_EQ(a.state, c.expected.state);
  EXPECT_EQ(a.total_billed_fen, c.claim.TotalBilledFen());
  EXPECT_EQ(a.pooled_fund_fen, c.expected.pooled);
  EXPECT_EQ(a.personal_account_fen, c.expected.account);
  EXPECT_EQ(a.self_pay_fen, c.expected.self_pay);
  EXPECT_EQ(a.deductible_fen, c.expected.deductible);
  EXPECT_EQ(a.copay_fen, c.expected.copay);
  EXPECT_EQ(a.not_covered_fen, c.expected.not_covered);
  EXPECT_EQ(a.partly_covered_self_pay_fen, c.expected.partly_self);
  EXPECT_EQ(a.above_cap_fen, c.expected.above_cap);
  EXPECT_EQ(a.cap_reached, c.expected.cap_reached);
  EXPECT_EQ(a.pooled_fund_fen + a.personal_account_fen + a.self_pay_fen, a.total_billed_fen);
  Fen steps_total = 0;
  for (const auto& step : a.steps) steps_total += step.amount_fen;
  EXPECT_EQ(steps_total, a.total_billed_fen);
}

YearSoFar Year(int admissions, Fen pooled_paid, Fen balance) {
  YearSoFar y;
  y.admissions_adjudicated = admissions;
  y.pooled_fund_paid_fen = pooled_paid;
  y.personal_account_balance_fen = balance;
  return y;
}

INSTANTIATE_TEST_SUITE_P(
    Examples, WorkedClaim,
    ::testing::Values(
        // First admission, deductible 1,000,000 crossed inside the second line:
        // line 0 600,000 all deductible; line 1: 400,000 deductible, 400,000 in band 1:
        // person 15% = 60,000, pooled 340,000. No balance: all of the person's share self-pay.
        ClaimCase{
            "DeductibleCrossedMidClaim",
            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                      {Covered(600'000), Covered(800'000)}),
            Year(0, 0, 0),
            {ClaimState::kApproved, 340'000, 0, 1'060'000, 1'000'000, 60'000, 0, 0, 0, false}},
        // Same, with 3,000.00 in the personal account: it pays 300,000 of the deductible.
        ClaimCase{
            "DeductiblePartlyFromPersonalAccount",
            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                      {Covered(600'000), Covered(800'000)}),
            Year(0, 0, 300'000),
            {ClaimState::kApproved, 340'000, 300'000, 760'000, 1'000'000, 60'000, 0, 0, 0, false}},
        // Second admission of the year: deductible 500,000. Line 0: 500,000 deductible,
        // 100,000 band 1 → 15,000 / 85,000; line 1: 800,000 band 1 → 120,000 / 680,000.
        ClaimCase{"SecondAdmissionLowerDeductible",
                  MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                            {Covered(600'000), Covered(800'000)}),
                  Year(1, 2'000'000, 0),
                  {ClaimState::kApproved, 765'000, 0, 635'000, 500'000, 135'000, 0, 0, 0, false}},
        // Spanning all three bands, grade 2, later admission, 50,000.00 covered:
        // deductible 500,000; band 1 2,500,000 × 12% = 300,000 (pooled 2,200,000);
        // band 2 1,000,000 × 8% = 80,000 (920,000); band 3 1,000,000 × 4% = 40,000 (960,000).
        // Pooled 4,080,000; the account (10,000.00) pays 500,000 + 420,000 = 920,000.
        ClaimCase{
            "ClaimSpanningAllBands",
            MakeClaim(PersonCategory::kEmployee, 50, FacilityGrade::kGrade2, {Covered(5'000'000)}),
            Year(1, 0, 1'000'000),
            {ClaimState::kApproved, 4'080'000, 920'000, 0, 500'000, 420'000, 0, 0, 0, false}},
        // Annual cap reached mid-claim: 390,000.00 already paid this year, 10,000.00 left.
        // Later admission: deductible 500,000; band 1 1,500,000: person 225,000, pool's share
        // 1,275,000 of which 1,000,000 fits under the cap, 275,000 falls on the person.
        ClaimCase{
            "CapReachedMidClaim",
            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3, {Covered(2'000'000)}),
            Year(3, 39'000'000, 0),
            {ClaimState::kApproved, 1'000'000, 0, 1'000'000, 500'000, 225'000, 0, 0, 275'000,
             true}},
        // Cap already used up: the pool pays nothing; the pool's share 1,275,000 is above cap.
        ClaimCase{
            "CapAlreadyReached",
            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3, {Covered(2'000'000)}),
            Year(3, 40'000'000, 0),
            {ClaimState::kApproved, 0, 0, 2'000'000, 500'000, 225'000, 0, 0, 1'275'000, true}},
        // Retiree aged 65, grade 1, first admission, 20,000.00: deductible 1,000,000; band 1
        // 1,000,000 × 10% = 100,000 × 60% = 60,000; pooled 940,000.
        ClaimCase{
            "RetireeUnder70",
            MakeClaim(PersonCategory::kRetiree, 65, FacilityGrade::kGrade1, {Covered(2'000'000)}),
            Year(0, 0, 0),
            {ClaimState::kApproved, 940'000, 0, 1'060'000, 1'000'000, 60'000, 0, 0, 0, false}},
        // Retiree aged 72: 100,000 × 50% = 50,000; pooled 950,000.
        ClaimCase{
            "Retiree70AndOver",
            MakeClaim(PersonCategory::kRetiree, 72, FacilityGrade::kGrade1, {Covered(2'000'000)}),
            Year(0, 0, 0),
            {ClaimState::kApproved, 950'000, 0, 1'050'000, 1'000'000, 50'000, 0, 0, 0, false}},
        // Covered 1,200,000: deductible 1,000,000, band 1 200,000 → 30,000 / 170,000.
        // Partly covered 500,000 at 10% self-pay: 50,000 first, 450,000 band 1 → 67,500 /
        // 382,500. Not covered 100,000: self-pay, and the account may not pay it.
        // Pooled 552,500; the account (20,000.00) pays 1,000,000 + 30,000 + 50,000 + 67,500.
        ClaimCase{"NotCoveredAndPartlyCoveredItems",
                  MakeClaim(PersonCategory::kEmployee, 30, FacilityGrade::kGrade3,
                            {Covered(1'200'000), Partly(500'000, 1000), NotCovered(100'000)}),
                  Year(0, 0, 2'000'000),
                  {ClaimState::kApproved, 552'500, 1'147'500, 100'000, 1'000'000, 97'500, 100'000,
                   50'000, 0, false}},
        // Half-fen rounding: partly covered 15 fen at 10% → 1.5 → 2 fen self-pay; covered
        // part 13 fen all deductible.
        ClaimCase{
            "HalfFenRoundsUp",
            MakeClaim(PersonCategory::kEmployee, 30, FacilityGrade::kGrade3, {Partly(15, 1000)}),
            Year(0, 0, 0),
            {ClaimState::kApproved, 0, 0, 15, 13, 0, 0, 2, 0, false}},
        // Outside eligibility: rejected, nothing paid even with money in the account.
        ClaimCase{"OutsideEligibility",
                  MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                            {Covered(600'000), Covered(800'000)}),
                  [] {
                    auto y = Year(0, 0, 1'000'000);
                    y.eligible_on_service_date = false;
                    y.ineligible_reason = "contributions in arrears since 2024-11";
                    return y;
                  }(),
                  {ClaimState::kRejected, 0, 0, 1'400'000, 0, 0, 0, 0, 0, false}}),
    [](const auto& param_info) { return param_info.param.name; });

TEST(Adjudicate, RejectionListsTheReasonsAndOneRejectedStep) {
  auto year = Year(0, 0, 1'000'000);
  year.eligible_on_service_date = false;
  year.ineligible_reason = "contributions in arrears since 2024-11";
  auto claim = MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3, {Covered(600'000)});
  claim.diagnosis_icd10 = "heart attack";
  const auto a = Adjudicate(RoundPolicy(), claim, year);
  ASSERT_EQ(a.state, ClaimState::kRejected);
  ASSERT_EQ(a.reasons.size(), 2u);
  EXPECT_THAT(a.reasons[0], HasSubstr("not eligible on the service date 2025-03-02: "
                                      "contributions in arrears since 2024-11"));
  EXPECT_THAT(a.reasons[1], HasSubstr("diagnosis_icd10"));
  ASSERT_EQ(a.steps.size(), 1u);
  EXPECT_EQ(a.steps[0].rule, "rejected");
  EXPECT_EQ(a.steps[0].payer, Payer::kSelfPay);
  EXPECT_EQ(a.steps[0].amount_fen, 600'000);
}

TEST(Adjudicate, ExplainsEachLineStepByStep) {
  const auto a = Adjudicate(RoundPolicy(),
                            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                                      {Covered(600'000), Covered(800'000)}),
                            Year(0, 0, 300'000));
  // Line 0: deductible 300,000 from the account + 300,000 self-pay; line 1: deductible
  // 400,000 self-pay, co-pay 60,000 self-pay, pooled 340,000.
  ASSERT_EQ(a.steps.size(), 5u);
  EXPECT_EQ(a.steps[0].line, 0);
  EXPECT_EQ(a.steps[0].rule, "deductible");
  EXPECT_EQ(a.steps[0].payer, Payer::kPersonalAccount);
  EXPECT_EQ(a.steps[0].amount_fen, 300'000);
  EXPECT_THAT(a.steps[0].detail, HasSubstr("first admission of the year: deductible 10000.00"));
  EXPECT_EQ(a.steps[1].payer, Payer::kSelfPay);
  EXPECT_THAT(a.steps[1].detail, HasSubstr("personal account exhausted"));
  EXPECT_EQ(a.steps[2].line, 1);
  EXPECT_EQ(a.steps[2].rule, "deductible");
  EXPECT_EQ(a.steps[2].amount_fen, 400'000);
  EXPECT_EQ(a.steps[3].rule, "copay");
  EXPECT_EQ(a.steps[3].amount_fen, 60'000);
  EXPECT_THAT(a.steps[3].detail,
              HasSubstr("grade 3 band 1 (0–30000.00 yuan): person 15% of 4000.00"));
  EXPECT_EQ(a.steps[4].rule, "pooled_fund_share");
  EXPECT_EQ(a.steps[4].payer, Payer::kPooledFund);
  EXPECT_EQ(a.steps[4].amount_fen, 340'000);
}

TEST(Adjudicate, InterimBillContinuesTheAdmissionsDeductibleAndBands) {
  // 25,000.00 already billed for this admission: deductible met; 10,000.00 more spans band 1
  // (5,000.00 × 15% = 75,000) and band 2 (5,000.00 × 10% = 50,000): pooled 875,000.
  auto year = Year(0, 1'275'000, 0);
  year.eligible_cost_earlier_bills_fen = 2'500'000;
  const auto a = Adjudicate(
      RoundPolicy(),
      MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3, {Covered(1'000'000)}), year);
  EXPECT_EQ(a.deductible_fen, 0);
  EXPECT_EQ(a.copay_fen, 125'000);
  EXPECT_EQ(a.pooled_fund_fen, 875'000);
}

TEST(Adjudicate, OutpatientClaimIsPaidFromThePersonalAccountOnly) {
  auto claim = MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade1,
                         {Covered(30'000), NotCovered(5'000)});
  claim.kind = ClaimKind::kOutpatient;
  claim.discharge = claim.admission;
  const auto a = Adjudicate(RoundPolicy(), claim, Year(0, 0, 20'000));
  EXPECT_EQ(a.state, ClaimState::kApproved);
  EXPECT_EQ(a.pooled_fund_fen, 0);
  EXPECT_EQ(a.personal_account_fen, 20'000);
  EXPECT_EQ(a.self_pay_fen, 15'000);
}

TEST(Adjudicate, ClaimProblemsAreRejectedWithTheirField) {
  auto claim = MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                         {Covered(100), Covered(-5), Partly(100, 12000)});
  claim.discharge = {2025, 3, 1};
  const auto a = Adjudicate(RoundPolicy(), claim, Year(0, 0, 0));
  ASSERT_EQ(a.state, ClaimState::kRejected);
  EXPECT_THAT(a.reasons, ::testing::Contains(HasSubstr("discharge: 2025-03-01 is before")));
  EXPECT_THAT(a.reasons, ::testing::Contains(HasSubstr("lines[1].amount_fen")));
  EXPECT_THAT(a.reasons, ::testing::Contains(HasSubstr("lines[2].self_pay_bp")));
  EXPECT_EQ(a.pooled_fund_fen, 0);
  EXPECT_EQ(a.pooled_fund_fen + a.personal_account_fen + a.self_pay_fen, a.total_billed_fen);
}

TEST(Icd10, AcceptsTheShapeAndRefusesOthers) {
  for (const char* good : {"I21", "I21.0", "S72.001", "J18.900x002", "C34.9"}) {
    EXPECT_TRUE(IsIcd10Shape(good)) << good;
  }
  for (const char* bad :
       {"", "I2", "i21.0", "121.0", "I2A", "I21.", "I210", "I21.0.1", "I21.123456789", "I21 0"}) {
    EXPECT_FALSE(IsIcd10Shape(bad)) << bad;
  }
}

// pooled + personal account + self-pay = billed, to the fen, whatever the claim and year.
TEST(Adjudicate, SplitAlwaysAddsUpToTheBill) {
  std::mt19937_64 random(424242);
  const auto policy = RoundPolicy();
  auto pick = [&](Fen lo, Fen hi) { return std::uniform_int_distribution<Fen>(lo, hi)(random); };
  for (int i = 0; i < 5'000; ++i) {
    std::vector<ClaimLine> lines;
    const int count = static_cast<int>(pick(1, 8));
    for (int l = 0; l < count; ++l) {
      switch (pick(0, 2)) {
        case 0:
          lines.push_back(Covered(pick(0, 3'000'000)));
          break;
        case 1:
          lines.push_back(Partly(pick(0, 3'000'000), static_cast<BasisPoints>(pick(0, 10000))));
          break;
        default:
          lines.push_back(NotCovered(pick(0, 300'000)));
      }
    }
    auto claim = MakeClaim(static_cast<PersonCategory>(pick(0, 2)), static_cast<int>(pick(18, 99)),
                           static_cast<FacilityGrade>(pick(1, 3)), lines);
    if (pick(0, 9) == 0) claim.kind = ClaimKind::kOutpatient;
    auto year = Year(static_cast<int>(pick(0, 3)), pick(0, 41'000'000), pick(0, 2'000'000));
    year.eligible_cost_earlier_bills_fen = pick(0, 1) ? 0 : pick(0, 5'000'000);
    year.eligible_on_service_date = pick(0, 19) != 0;
    const auto a = Adjudicate(policy, claim, year);
    ASSERT_EQ(a.total_billed_fen, claim.TotalBilledFen()) << "seed 424242, iteration " << i;
    ASSERT_EQ(a.pooled_fund_fen + a.personal_account_fen + a.self_pay_fen, a.total_billed_fen)
        << "seed 424242, iteration " << i;
    ASSERT_GE(a.pooled_fund_fen, 0);
    ASSERT_LE(a.personal_account_fen, year.personal_account_balance_fen);
    ASSERT_LE(a.pooled_fund_fen + year.pooled_fund_paid_fen,
              std::max(policy.AnnualCapFen(), year.pooled_fund_paid_fen));
  }
}

TEST(ClaimFile, ParsesTheDocumentedFormat) {
  auto file = ParseClaimJson(R"({
    "claim_id": "BJ-2025-000123", "person_id": "110101197501010011",
    "category": "retiree", "age": 72, "facility_grade": 3, "kind": "inpatient",
    "admission": "2025-03-02", "discharge": "2025-03-20", "diagnosis_icd10": "I21.0",
    "lines": [
      {"code": "250101001", "description": "ward", "category": "covered", "amount_fen": 600000},
      {"code": "X1", "description": "stent", "category": "partly_covered", "self_pay_bp": 1000,
       "amount_fen": 500000},
      {"code": "X2", "description": "single room", "category": "not_covered", "amount_fen": 1}
    ],
    "year_so_far": {"eligible_on_service_date": true, "admissions_adjudicated": 1,
                    "pooled_fund_paid_fen": 0, "personal_account_balance_fen": 12345}
  })");
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(file->claim.claim_id, "BJ-2025-000123");
  EXPECT_EQ(file->claim.category, PersonCategory::kRetiree);
  EXPECT_EQ(file->claim.grade, FacilityGrade::kGrade3);
  ASSERT_EQ(file->claim.lines.size(), 3u);
  EXPECT_EQ(file->claim.lines[1].category, CatalogueCategory::kPartlyCovered);
  EXPECT_EQ(file->claim.lines[1].self_pay_bp, 1000);
  EXPECT_EQ(file->claim.TotalBilledFen(), 1'100'001);
  EXPECT_EQ(file->year_so_far.admissions_adjudicated, 1);
  EXPECT_EQ(file->year_so_far.personal_account_balance_fen, 12345);
}

TEST(ClaimFile, BadFieldsAreNamed) {
  const std::string head = R"({"claim_id": "C", "person_id": "P", "category": "employee",
    "age": 40, "facility_grade": 3, "admission": "2025-03-02", "discharge": "2025-03-20",
    "diagnosis_icd10": "I21.0", "year_so_far": {"eligible_on_service_date": true,
    "admissions_adjudicated": 0, "pooled_fund_paid_fen": 0, "personal_account_balance_fen": 0},
    "lines": )";
  auto error = [&](const std::string& lines) {
    auto file = ParseClaimJson(head + lines + "}");
    return file.ok() ? std::string("(parsed)") : file.error().message;
  };
  EXPECT_EQ(error(R"([{"code": "A", "description": "", "category": "covered", "amount_fen": 1}])"),
            "(parsed)");
  EXPECT_THAT(error(R"([])"), HasSubstr("lines: a claim needs at least one item"));
  EXPECT_THAT(
      error(R"([{"code": "A", "description": "", "category": "covered", "amount_fen": 1.5}])"),
      HasSubstr("lines[0].amount_fen: must be a whole number"));
  EXPECT_THAT(error(R"([{"code": "A", "description": "", "category": "maybe", "amount_fen": 1}])"),
              HasSubstr("lines[0].category: must be"));
  EXPECT_THAT(error(R"([{"code": "A", "description": "", "category": "covered", "amount_fen": 1,
                        "self_pay_bp": 10}])"),
              HasSubstr("lines[0].self_pay_bp: only partly_covered items"));
  EXPECT_THAT(error(R"([{"code": "A", "description": "", "category": "partly_covered",
                        "amount_fen": 1}])"),
              HasSubstr("lines[0].self_pay_bp: is required"));
  EXPECT_THAT(
      error(R"([{"code": "A", "description": "", "category": "covered", "amount_fen": -1}])"),
      HasSubstr("lines[0].amount_fen: must be between 0 and"));
  EXPECT_THAT(error(R"([{"code": "A", "description": "", "category": "covered", "amount_fen": 1,
                        "price": 3}])"),
              HasSubstr("lines[0].price: unknown field"));

  auto bad_icd = ParseClaimJson(R"({"claim_id": "C", "person_id": "P", "category": "employee",
    "age": 40, "facility_grade": 4, "admission": "2025-03-02", "discharge": "2025-03-20",
    "diagnosis_icd10": "I21.0", "lines": [], "year_so_far": {}})");
  ASSERT_FALSE(bad_icd.ok());
  EXPECT_THAT(bad_icd.error().message, HasSubstr("facility_grade: must be between 1 and 3"));
}

TEST(ClaimFile, AdjudicationAsJsonCarriesTheSplitAndSteps) {
  const auto a = Adjudicate(RoundPolicy(),
                            MakeClaim(PersonCategory::kEmployee, 40, FacilityGrade::kGrade3,
                                      {Covered(600'000), Covered(800'000)}),
                            Year(0, 0, 0));
  const auto json = AdjudicationToJson(a);
  EXPECT_THAT(json, HasSubstr("\"state\": \"approved\""));
  EXPECT_THAT(json, HasSubstr("\"pooled_fund_fen\": 340000"));
  EXPECT_THAT(json, HasSubstr("\"rule\": \"pooled_fund_share\""));
}

}  // namespace
}  // namespace medcard::insurance
