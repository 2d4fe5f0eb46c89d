// Stored claims on SQLite and PostgreSQL: the year so far and the personal account come from
// the database (a second admission's later deductible, the annual cap across claims, the
// account's balance, at most what the card holds when settled at discharge), eligibility from
// the registry, the lifecycle's steps, duplicate submissions, paying exactly once, and the card
// purchase that paid the personal-account share recorded once.
#include "insurance/claims_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "insurance/monthly_run.h"
#include "insurance/policy.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

// The example policy with an average wage of 120,000.00 yuan a year: deductible 0.92% =
// 1,104.00 for the first admission of a year, 0.46% = 552.00 for later ones; the pooled fund's
// annual cap 4× = 480,000.00.
constexpr Fen kFirstDeductible = 110'400;
constexpr Fen kLaterDeductible = 55'200;
constexpr Fen kAnnualCap = 48'000'000;

constexpr char kA[] = "110101199001011237";  // employee, 36 in 2026
constexpr char kB[] = "11010120000515234X";  // employee, suspended from 2026-05-01
constexpr char kC[] = "110101195003103452";  // retiree, closed (death) from 2026-04-01

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

Claim InpatientClaim(std::string number, std::string person, Date admission, Fen covered_fen) {
  Claim claim;
  claim.claim_id = std::move(number);
  claim.person_id = std::move(person);
  claim.grade = FacilityGrade::kGrade3;
  claim.kind = ClaimKind::kInpatient;
  claim.admission = admission;
  claim.discharge = {admission.year, admission.month, admission.day + 5};
  claim.diagnosis_icd10 = "I21.0";
  claim.lines.push_back(
      {"250101001", "ward and nursing", CatalogueCategory::kCovered, 0, covered_fen});
  return claim;
}

class ClaimStoreTest : public ::testing::TestWithParam<store::Engine> {
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
    auto enrol = [&](const char* ssn, Fen wage, PersonCategory category) {
      auto r = registry.Enrol({.ssn = ssn,
                               .name = "Person",
                               .birth_date = BirthDateOfSsn(ssn),
                               .unit_code = "U001",
                               .wage_base_fen = wage,
                               .category = category,
                               .effective = {2026, 1, 1}});
      ASSERT_TRUE(r.ok()) << r.error().message;
    };
    enrol(kA, 800'000, PersonCategory::kEmployee);
    enrol(kB, 500'000, PersonCategory::kEmployee);
    enrol(kC, 0, PersonCategory::kRetiree);
    ASSERT_TRUE(registry.Suspend(kB, {2026, 5, 1}).ok());
    ASSERT_TRUE(registry.Close(kC, {2026, 4, 1}, "death").ok());
    claims_.emplace(*conn_, policies_);
  }

  // Submits, adjudicates, approves and pays; returns the paid claim.
  StoredClaim SubmitAndPay(const Claim& claim) {
    auto submitted = claims_->Submit("H0001", claim);
    EXPECT_TRUE(submitted.ok()) << submitted.error().message;
    if (!submitted.ok()) return {};
    auto adjudicated = claims_->Adjudicate(submitted->id);
    EXPECT_TRUE(adjudicated.ok()) << adjudicated.error().message;
    EXPECT_EQ(adjudicated->state, ClaimState::kAdjudicated);
    auto approved = claims_->Approve(submitted->id, "officer-li");
    EXPECT_TRUE(approved.ok()) << approved.error().message;
    auto paid = claims_->Pay(submitted->id);
    EXPECT_TRUE(paid.ok()) << paid.error().message;
    return paid.ok() ? *paid : StoredClaim{};
  }

  Fen BookBalance(std::string_view account) {
    auto balances = BookBalances(*conn_);
    EXPECT_TRUE(balances.ok());
    if (!balances.ok()) return 0;
    for (const auto& b : *balances) {
      if (b.account == account) return b.balance_fen;
    }
    return 0;
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  PolicyBook policies_;
  std::optional<ClaimStore> claims_;
};

TEST_P(ClaimStoreTest, ASecondAdmissionInTheSameYearUsesTheLaterDeductible) {
  const auto first = SubmitAndPay(InpatientClaim("C-1", kA, {2026, 3, 2}, 1'000'000));
  ASSERT_TRUE(first.adjudication.has_value());
  EXPECT_EQ(first.adjudication->deductible_fen, kFirstDeductible);
  EXPECT_EQ(first.state, ClaimState::kPaid);

  const auto second = SubmitAndPay(InpatientClaim("C-2", kA, {2026, 6, 10}, 1'000'000));
  ASSERT_TRUE(second.adjudication.has_value());
  EXPECT_EQ(second.adjudication->deductible_fen, kLaterDeductible);
  // The later deductible leaves more for the pooled fund on the same bill.
  EXPECT_GT(second.adjudication->pooled_fund_fen, first.adjudication->pooled_fund_fen);

  // A new year starts over with the first-admission deductible.
  auto next_year = claims_->Submit("H0001", InpatientClaim("C-3", kA, {2027, 1, 5}, 1'000'000));
  ASSERT_TRUE(next_year.ok());
  auto adjudicated = claims_->Adjudicate(next_year->id);
  ASSERT_TRUE(adjudicated.ok()) << adjudicated.error().message;
  EXPECT_EQ(adjudicated->adjudication->deductible_fen, kFirstDeductible);
}

TEST_P(ClaimStoreTest, TheAnnualCapHoldsAcrossTwoClaims) {
  const auto first = SubmitAndPay(InpatientClaim("C-1", kA, {2026, 2, 1}, 50'000'000));
  ASSERT_TRUE(first.adjudication.has_value());
  const Fen first_pooled = first.adjudication->pooled_fund_fen;
  ASSERT_GT(first_pooled, 0);
  ASSERT_LT(first_pooled, kAnnualCap);
  EXPECT_FALSE(first.adjudication->cap_reached);

  const auto second = SubmitAndPay(InpatientClaim("C-2", kA, {2026, 9, 1}, 10'000'000));
  ASSERT_TRUE(second.adjudication.has_value());
  EXPECT_TRUE(second.adjudication->cap_reached);
  EXPECT_EQ(second.adjudication->pooled_fund_fen, kAnnualCap - first_pooled);
  EXPECT_EQ(second.adjudication->pooled_fund_fen + second.adjudication->personal_account_fen +
                second.adjudication->self_pay_fen,
            10'000'000);
  EXPECT_EQ(BookBalance("facility_payable/H0001"), kAnnualCap);
}

TEST_P(ClaimStoreTest, ASuspendedOrClosedPersonIsRejectedWithTheReason) {
  // Before the suspension the person was covered.
  auto before = claims_->Submit("H0001", InpatientClaim("C-1", kB, {2026, 4, 1}, 1'000'000));
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(claims_->Adjudicate(before->id)->state, ClaimState::kAdjudicated);

  auto suspended = claims_->Submit("H0001", InpatientClaim("C-2", kB, {2026, 6, 1}, 1'000'000));
  ASSERT_TRUE(suspended.ok());
  auto rejected = claims_->Adjudicate(suspended->id);
  ASSERT_TRUE(rejected.ok()) << rejected.error().message;
  EXPECT_EQ(rejected->state, ClaimState::kRejected);
  ASSERT_FALSE(rejected->reasons.empty());
  EXPECT_THAT(rejected->reasons[0], HasSubstr("suspended since 2026-05-01"));
  EXPECT_EQ(rejected->adjudication->pooled_fund_fen, 0);

  auto closed = claims_->Submit("H0001", InpatientClaim("C-3", kC, {2026, 5, 1}, 1'000'000));
  ASSERT_TRUE(closed.ok());
  auto closed_result = claims_->Adjudicate(closed->id);
  ASSERT_TRUE(closed_result.ok());
  EXPECT_EQ(closed_result->state, ClaimState::kRejected);
  EXPECT_THAT(closed_result->reasons[0], HasSubstr("closed since 2026-04-01 (death)"));

  // A rejected claim cannot be approved or paid.
  EXPECT_EQ(claims_->Approve(closed->id, "officer-li").error().code,
            access::ErrorCode::kUnprocessable);
  EXPECT_EQ(claims_->Pay(closed->id).error().code, access::ErrorCode::kUnprocessable);
}

TEST_P(ClaimStoreTest, PayingTwicePaysOnce) {
  const auto paid = SubmitAndPay(InpatientClaim("C-1", kA, {2026, 3, 2}, 1'000'000));
  ASSERT_EQ(paid.state, ClaimState::kPaid);
  // The agency owes the facility the pooled fund's part; the personal-account part is paid by
  // the cardholder's medical account at the bank.
  const Fen owed = paid.adjudication->pooled_fund_fen;
  EXPECT_EQ(BookBalance("facility_payable/H0001"), owed);
  auto problems = CheckBooks(*conn_);
  ASSERT_TRUE(problems.ok()) << problems.error().message;
  EXPECT_THAT(*problems, testing::IsEmpty());
  const Fen pooled_before = BookBalance("pooled_fund");

  auto again = claims_->Pay(paid.id);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->state, ClaimState::kPaid);
  EXPECT_EQ(again->paid_at_us, paid.paid_at_us);
  EXPECT_EQ(BookBalance("facility_payable/H0001"), owed);
  EXPECT_EQ(BookBalance("pooled_fund"), pooled_before);
  EXPECT_EQ(pooled_before, -paid.adjudication->pooled_fund_fen);
}

TEST_P(ClaimStoreTest, ADuplicateSubmissionIsRefusedAndTheStepsGoInOrder) {
  auto first = claims_->Submit("H0001", InpatientClaim("C-1", kA, {2026, 3, 2}, 1'000'000));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->state, ClaimState::kSubmitted);
  auto again = claims_->Submit("H0001", InpatientClaim("C-1", kA, {2026, 3, 2}, 2'000'000));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, access::ErrorCode::kConflict);
  EXPECT_EQ(again.error().field, "claim_id");
  // Another facility's claim number is its own.
  EXPECT_TRUE(claims_->Submit("H0002", InpatientClaim("C-1", kA, {2026, 4, 2}, 1'000)).ok());

  // Not adjudicated yet: neither approved nor paid.
  EXPECT_EQ(claims_->Approve(first->id, "officer-li").error().code,
            access::ErrorCode::kUnprocessable);
  ASSERT_TRUE(claims_->Adjudicate(first->id).ok());
  EXPECT_EQ(claims_->Adjudicate(first->id).error().code, access::ErrorCode::kUnprocessable);
  EXPECT_EQ(claims_->Pay(first->id).error().code, access::ErrorCode::kUnprocessable);
  auto rejected = claims_->Reject(first->id, "officer-wang", "duplicate of a paper claim");
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->state, ClaimState::kRejected);
  EXPECT_EQ(rejected->decided_by, "officer-wang");
  EXPECT_EQ(rejected->reasons, std::vector<std::string>{"duplicate of a paper claim"});

  // The rejected admission no longer counts: the next one is the year's first.
  auto next = claims_->Submit("H0001", InpatientClaim("C-2", kA, {2026, 5, 2}, 1'000'000));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(claims_->Adjudicate(next->id)->adjudication->deductible_fen, kFirstDeductible);

  EXPECT_EQ(claims_->Find(9999).error().code, access::ErrorCode::kNotFound);
  auto listed = claims_->List(ClaimState::kRejected);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].claim.claim_id, "C-1");
  EXPECT_EQ((*listed)[0].facility, "H0001");
  EXPECT_EQ((*listed)[0].claim.lines.size(), 1u);
}

TEST_P(ClaimStoreTest, ThePersonalAccountPaysFromItsBalanceInTheAgencysBooks) {
  // January's allocation for A (36, wage 8,000.00): 160.00 + 80.00 = 240.00.
  auto run = RunMonth(*conn_, policies_, {2026, 1});
  ASSERT_TRUE(run.ok()) << run.error().message;
  auto balance = claims_->PersonalAccountBalance(kA);
  ASSERT_TRUE(balance.ok());
  ASSERT_EQ(*balance, 24'000);

  const auto paid = SubmitAndPay(InpatientClaim("C-1", kA, {2026, 3, 2}, 1'000'000));
  EXPECT_EQ(paid.adjudication->personal_account_fen, 24'000);
  EXPECT_EQ(*claims_->PersonalAccountBalance(kA), 0);
  // The next claim finds the account empty.
  const auto second = SubmitAndPay(InpatientClaim("C-2", kA, {2026, 4, 2}, 1'000'000));
  EXPECT_EQ(second.adjudication->personal_account_fen, 0);
}

// Settled at discharge (one test: a PostgreSQL database per test costs seconds): the personal
// account pays at most what the card the facility's POS read holds, and the card purchase that
// paid it is recorded on the claim once.
TEST_P(ClaimStoreTest, SettledAtDischargeThePersonalAccountPaysFromTheCardOnceRecorded) {
  // The books say 240.00 (January's allocation); the card the hospital's POS read holds 95.50.
  auto run = RunMonth(*conn_, policies_, {2026, 1});
  ASSERT_TRUE(run.ok()) << run.error().message;
  auto submitted = claims_->Submit("H0001", InpatientClaim("C-1", kA, {2026, 3, 2}, 1'000'000));
  ASSERT_TRUE(submitted.ok()) << submitted.error().message;
  const std::int64_t id = submitted->id;
  auto negative = claims_->Adjudicate(id, Fen{-1});
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().code, access::ErrorCode::kInvalid);
  EXPECT_EQ(claims_->Find(id)->state, ClaimState::kSubmitted);

  auto adjudicated = claims_->Adjudicate(id, Fen{9'550});
  ASSERT_TRUE(adjudicated.ok()) << adjudicated.error().message;
  const Adjudication& a = *adjudicated->adjudication;
  EXPECT_EQ(a.personal_account_fen, 9'550);
  EXPECT_EQ(a.self_pay_fen, kFirstDeductible - 9'550 + a.copay_fen);
  EXPECT_EQ(a.pooled_fund_fen + a.personal_account_fen + a.self_pay_fen, 1'000'000);
  EXPECT_TRUE(std::any_of(a.steps.begin(), a.steps.end(), [](const ExplanationStep& step) {
    return step.detail.find("personal account exhausted") != std::string::npos;
  }));
  // The books' balance now counts only what this claim took.
  EXPECT_EQ(*claims_->PersonalAccountBalance(kA), 24'000 - 9'550);
  EXPECT_FALSE(adjudicated->card_payment.has_value());

  // The patient paid the share by card: the purchase the consumption detail will name.
  const CardPayment payment{.asn = "11000000000000010005",
                            .offline_serial = 7,
                            .terminal_id = "POS00001",
                            .amount_fen = 9'550};
  EXPECT_EQ(payment.Reference(), "11000000000000010005/ED/7");
  auto refused = [&](std::int64_t claim, CardPayment p, access::ErrorCode code, const char* says) {
    auto r = claims_->RecordCardPayment(claim, p);
    ASSERT_FALSE(r.ok()) << says;
    EXPECT_EQ(r.error().code, code) << says;
    EXPECT_THAT(r.error().message, HasSubstr(says));
  };
  CardPayment wrong = payment;
  wrong.amount_fen = 9'549;
  refused(id, wrong, access::ErrorCode::kInvalid, "personal-account share is 9550");
  wrong = payment;
  wrong.asn = "1100000000000001000";
  refused(id, wrong, access::ErrorCode::kInvalid, "asn: 20 digits");
  wrong = payment;
  wrong.terminal_id = "POS 0001";
  refused(id, wrong, access::ErrorCode::kInvalid, "terminal_id");
  EXPECT_FALSE(claims_->Find(id)->card_payment.has_value());

  auto recorded = claims_->RecordCardPayment(id, payment);
  ASSERT_TRUE(recorded.ok()) << recorded.error().message;
  EXPECT_EQ(recorded->card_payment, payment);
  EXPECT_EQ(recorded->state, ClaimState::kAdjudicated);
  ASSERT_TRUE(claims_->Approve(id, "officer-li").ok());
  auto paid = claims_->Pay(id);
  ASSERT_TRUE(paid.ok());
  EXPECT_EQ(paid->card_payment, payment);  // kept through approval and payment
  auto listed = claims_->List(ClaimState::kPaid, kA);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].card_payment, payment);
  // The same payment again changes nothing; another one for the same claim is a conflict.
  auto again = claims_->RecordCardPayment(id, payment);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->card_payment, payment);
  wrong = payment;
  wrong.offline_serial = 8;
  refused(id, wrong, access::ErrorCode::kConflict, "paid by card 11000000000000010005/ED/7");

  // A card holding more than the books: the books' balance still bounds the next claim.
  auto second = claims_->Submit("H0001", InpatientClaim("C-2", kA, {2026, 4, 2}, 1'000'000));
  ASSERT_TRUE(second.ok());
  auto bounded = claims_->Adjudicate(second->id, Fen{1'000'000});
  ASSERT_TRUE(bounded.ok()) << bounded.error().message;
  const Fen share = bounded->adjudication->personal_account_fen;
  EXPECT_EQ(share, 24'000 - 9'550);
  // One purchase pays one claim.
  CardPayment reused = payment;
  reused.amount_fen = share;
  refused(second->id, reused, access::ErrorCode::kConflict,
          "card purchase 11000000000000010005/ED/7 paid claim");
  reused.offline_serial = 8;
  EXPECT_TRUE(claims_->RecordCardPayment(second->id, reused).ok());

  // Not adjudicated yet, or unknown: nothing to record.
  auto third = claims_->Submit("H0001", InpatientClaim("C-3", kA, {2026, 5, 2}, 1'000'000));
  ASSERT_TRUE(third.ok());
  refused(third->id, payment, access::ErrorCode::kUnprocessable, "cannot be paid by card");
  refused(99'999, payment, access::ErrorCode::kNotFound, "no claim 99999");
}

TEST_P(ClaimStoreTest, AnUnknownPersonOrAClaimWithProblemsIsRefused) {
  auto unknown =
      claims_->Submit("H0001", InpatientClaim("C-1", "110101198008085672", {2026, 3, 2}, 100));
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(claims_->Adjudicate(unknown->id).error().code, access::ErrorCode::kNotFound);
  EXPECT_EQ(claims_->Find(unknown->id)->state, ClaimState::kSubmitted);

  auto bad = InpatientClaim("C-2", kA, {2026, 3, 2}, 100);
  bad.diagnosis_icd10 = "heart";
  auto refused = claims_->Submit("H0001", bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, access::ErrorCode::kInvalid);
  EXPECT_EQ(
      claims_->Submit("bad facility!", InpatientClaim("C-3", kA, {2026, 3, 2}, 100)).error().field,
      "facility");
}

INSTANTIATE_TEST_SUITE_P(Engines, ClaimStoreTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
