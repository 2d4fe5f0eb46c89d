// CheckInvariants on both engines: clean after a day's business, and each kind of damage found
// and described.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace medcard::ledger::testing {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

class InvariantsTest : public LedgerTest {
 protected:
  // Premiums in, allocation, a load confirmed by the card, two cleared purchases, a settlement,
  // one load still pending, one purchase in suspense.
  void DoADaysBusiness() {
    Transfer premiums{.id = "contribution/E1/2024-01",
                      .debit = AccountId::BankClearing(),
                      .credit = AccountId::SiaFund(),
                      .amount = 1'000'000,
                      .cause = {cause::kContribution, "E1/2024-01"}};
    ASSERT_EQ(MustPost(premiums), Outcome::kPosted);
    ASSERT_EQ(MustPost(Allocation("allocation/P1/2024-01", "P1", 20'000)), Outcome::kPosted);
    ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 0, 0, 0}).ok());
    Transfer load{.id = "load/" + std::string(kAsn) + "/1",
                  .debit = AccountId::Medical("P1"),
                  .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                  .amount = 5'000,
                  .cause = {cause::kLoad, std::string(kAsn) + "/1"},
                  .pending = true,
                  .debit_must_not_go_negative = true};
    ASSERT_EQ(MustPost(load), Outcome::kPending);
    ASSERT_TRUE(ledger_->Complete(load.id, CardState{kAsn, Wallet::kEp, 5'000, 1}).ok());
    Transfer first = Purchase(kAsn, 1, 1'200);
    first.card_state = CardState{kAsn, Wallet::kEp, 3'800, std::nullopt, 1};
    ASSERT_EQ(MustPost(first), Outcome::kPosted);
    Transfer second = Purchase(kAsn, 2, 800, "P0042");
    second.card_state = CardState{kAsn, Wallet::kEp, 3'000, std::nullopt, 2};
    ASSERT_EQ(MustPost(second), Outcome::kPosted);
    Transfer settle{.id = "settlement/H0001/2024-01-31",
                    .debit = AccountId::Merchant("H0001"),
                    .credit = AccountId::BankClearing(),
                    .amount = 1'200,
                    .cause = {cause::kSettlement, "H0001/2024-01-31"}};
    ASSERT_EQ(MustPost(settle), Outcome::kPosted);
    Transfer later = load;
    later.id = "load/" + std::string(kAsn) + "/2";
    later.cause.reference = std::string(kAsn) + "/2";
    later.amount = 700;
    ASSERT_EQ(MustPost(later), Outcome::kPending);
    ASSERT_TRUE(ledger_->SetCardState({kOtherAsn, Wallet::kEp, 0, 0, 0}).ok());
    Transfer unverifiable{.id = "suspense/" + std::string(kOtherAsn) + "/1/06",
                          .debit = AccountId::Suspense(),
                          .credit = AccountId::Merchant("H0001"),
                          .amount = 300,
                          .cause = {cause::kSuspense, std::string(kOtherAsn) + "/1/06",
                                    R"({"reason":"TAC does not verify"})"}};
    ASSERT_EQ(MustPost(unverifiable), Outcome::kPosted);
  }

  // Damages the database behind the ledger's back.
  void Tamper(const std::string& sql) {
    auto r = conn_->Execute(sql);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.error().message;
    ASSERT_GE(*r, 1) << sql;
  }

  InvariantReport Report() {
    auto report = ledger_->CheckInvariants();
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? *report : InvariantReport{};
  }

  static std::set<Problem::Kind> Kinds(const InvariantReport& report) {
    std::set<Problem::Kind> kinds;
    for (const Problem& p : report.problems) kinds.insert(p.kind);
    return kinds;
  }

  static std::string Descriptions(const InvariantReport& report) {
    std::string all;
    for (const Problem& p : report.problems) all += p.description + "\n";
    return all;
  }
};

INSTANTIATE_TEST_SUITE_P(Engines, InvariantsTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(InvariantsTest, EmptyLedger_IsConsistent) {
  const InvariantReport report = Report();
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.accounts, 0);
  EXPECT_EQ(report.postings, 0);
}

TEST_P(InvariantsTest, ADaysBusiness_IsConsistent) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  const InvariantReport report = Report();
  EXPECT_TRUE(report.ok()) << Descriptions(report);
  // sia_fund, bank_clearing, medical/P1, 2 card floats, H0001, P0042, suspense
  EXPECT_EQ(report.accounts, 8);
  EXPECT_EQ(report.transfers, 8);
  EXPECT_EQ(report.postings, 14);  // 7 posted or completed, 2 legs each
  EXPECT_EQ(report.pending, 1);
}

TEST_P(InvariantsTest, BalanceChangedBehindTheLedgersBack_IsFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Tamper(
      "UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'merchant'"
      " AND account_key = 'P0042'");
  const InvariantReport report = Report();
  EXPECT_EQ(Kinds(report), (std::set{Problem::Kind::kBalancesDoNotSumToZero,
                                     Problem::Kind::kBalanceDiffersFromPostings}));
  EXPECT_THAT(Descriptions(report), HasSubstr("the balances of all accounts sum to 1 fen, not 0"));
  EXPECT_THAT(Descriptions(report),
              HasSubstr("account merchant/P0042: balance 801 fen but its postings sum to 800"));
}

TEST_P(InvariantsTest, PostingWithoutItsBalancingLeg_IsFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Tamper("DELETE FROM ledger_postings WHERE amount = 800");
  const InvariantReport report = Report();
  EXPECT_TRUE(Kinds(report).contains(Problem::Kind::kUnbalancedTransfer));
  EXPECT_THAT(Descriptions(report),
              HasSubstr("transfer purchase/" + std::string(kAsn) +
                        "/2/06 (posted, 800 fen) has 1 posting leg(s) netting -800 fen"));
}

TEST_P(InvariantsTest, PostingsOnAVoidedTransfer_AreFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Tamper("UPDATE ledger_transfers SET state = 'voided' WHERE cause_kind = 'settlement'");
  const InvariantReport report = Report();
  EXPECT_TRUE(Kinds(report).contains(Problem::Kind::kUnbalancedTransfer));
  EXPECT_THAT(Descriptions(report), HasSubstr("(voided, 1200 fen) has 2 posting leg(s)"));
}

TEST_P(InvariantsTest, CardFloatThatDiffersFromTheCard_IsFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Tamper("UPDATE ledger_card_state SET balance = 2999 WHERE asn = '" + std::string(kAsn) + "'");
  const InvariantReport report = Report();
  EXPECT_EQ(Kinds(report), (std::set{Problem::Kind::kCardFloatDiffersFromCard}));
  EXPECT_THAT(Descriptions(report),
              HasSubstr("card " + std::string(kAsn) +
                        " EP: float 3000 fen but the card's last known balance is 2999"));
}

TEST_P(InvariantsTest, CardFloatOfAnUnknownCard_IsFound) {
  Transfer load{.id = "load/1",
                .debit = AccountId::Medical("P1"),
                .credit = AccountId::CardFloat(kOtherAsn, Wallet::kEd),
                .amount = 10,
                .cause = {cause::kLoad, std::string(kOtherAsn) + "/1"}};
  ASSERT_EQ(MustPost(load), Outcome::kPosted);
  const InvariantReport report = Report();
  EXPECT_EQ(Kinds(report), (std::set{Problem::Kind::kCardFloatDiffersFromCard}));
  EXPECT_THAT(Descriptions(report), HasSubstr("card float " + std::string(kOtherAsn) +
                                              "/ED holds 10 fen but no balance of that card"));
}

TEST_P(InvariantsTest, CardTransactionClearedTwiceUnderTwoIds_IsFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Transfer again = Purchase(kAsn, 1, 1'200);
  again.id = "purchase-reupload/" + std::string(kAsn) + "/1/06";  // a client bug: a new id
  ASSERT_EQ(MustPost(again), Outcome::kPosted);
  const InvariantReport report = Report();
  EXPECT_TRUE(Kinds(report).contains(Problem::Kind::kCardTransactionPostedTwice));
  EXPECT_TRUE(Kinds(report).contains(Problem::Kind::kCardFloatDiffersFromCard));
  EXPECT_THAT(Descriptions(report),
              HasSubstr("purchase " + std::string(kAsn) + "/1/06 is posted 2 times"));
}

TEST_P(InvariantsTest, HoldThatNoPendingTransferExplains_IsFound) {
  ASSERT_NO_FATAL_FAILURE(DoADaysBusiness());
  Tamper("UPDATE ledger_accounts SET debits_pending = 0 WHERE kind = 'medical'");
  const InvariantReport report = Report();
  EXPECT_EQ(Kinds(report), (std::set{Problem::Kind::kPendingDoesNotBalance,
                                     Problem::Kind::kPendingDiffersFromTransfers}));
  EXPECT_THAT(Descriptions(report),
              HasSubstr("account medical/P1: holds 0/0 fen (debit/credit) but its pending "
                        "transfers make 700/0"));
}

}  // namespace
}  // namespace medcard::ledger::testing
