// Ledger::PostBatch on both engines: the same money, legs, card states and retries as Post one by
// one, in a few multi-row statements.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace medcard::ledger::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kThirdAsn[] = "11111111111111110001";
constexpr char kFourthAsn[] = "22222222222222220001";

class LedgerBatchTest : public LedgerTest {
 protected:
  std::vector<PostResult> MustPostBatch(const std::vector<Transfer>& transfers) {
    auto r = ledger_->PostBatch(transfers);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::vector<PostResult>{};
  }
  static std::vector<Outcome> Outcomes(const std::vector<PostResult>& results) {
    std::vector<Outcome> outcomes;
    for (const PostResult& r : results) outcomes.push_back(r.outcome);
    return outcomes;
  }
  static Transfer Load(std::string id, std::string_view asn, std::int64_t amount) {
    return {.id = std::move(id),
            .debit = AccountId::Medical("P1"),
            .credit = AccountId::CardFloat(asn, Wallet::kEp),
            .amount = amount,
            .cause = {cause::kLoad, std::string(asn) + "/load"}};
  }
  static Transfer PurchaseWithState(std::string_view asn, int serial, std::int64_t amount,
                                    std::int64_t balance_after) {
    Transfer t = Purchase(asn, serial, amount);
    t.card_state = CardState{std::string(asn), Wallet::kEp, balance_after, std::nullopt, serial};
    return t;
  }
};
INSTANTIATE_TEST_SUITE_P(Engines, LedgerBatchTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(LedgerBatchTest, PostsInOrderAndEachLegRecordsTheRunningBalance) {
  auto results = MustPostBatch({Allocation("alloc/1", "P1", 500),
                                Allocation("alloc/2", "P1", 300),
                                {.id = "move/1",
                                 .debit = AccountId::Medical("P1"),
                                 .credit = AccountId::Medical("P2"),
                                 .amount = 200,
                                 .cause = {"transfer", "P1/P2"}}});
  EXPECT_THAT(Outcomes(results), ElementsAre(Outcome::kPosted, Outcome::kPosted, Outcome::kPosted));
  ASSERT_EQ(results.size(), 3u);
  EXPECT_LT(results[0].transfer.seq, results[1].transfer.seq);
  EXPECT_LT(results[1].transfer.seq, results[2].transfer.seq);
  EXPECT_EQ(Balance(AccountId::SiaFund()), -800);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 600);
  EXPECT_EQ(Balance(AccountId::Medical("P2")), 200);
  EXPECT_EQ(Count("ledger_postings"), 6);
  auto history = ledger_->History(AccountId::Medical("P1"), 0, 10);
  ASSERT_TRUE(history.ok()) << history.error().message;
  ASSERT_EQ(history->entries.size(), 3u);
  EXPECT_EQ(history->entries[0].balance_after, 500);
  EXPECT_EQ(history->entries[1].balance_after, 800);
  EXPECT_EQ(history->entries[2].balance_after, 600);
  EXPECT_EQ(history->entries[2].amount, -200);
  auto found = ledger_->FindTransfer("alloc/2");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->transfer.cause.details_json, R"({"month":"2024-01"})");
  EXPECT_EQ((*found)->created_at_us, now_us_);
  ExpectConsistent();
}

TEST_P(LedgerBatchTest, CardStatesAreAppliedAsPostAppliesThem) {
  // kThirdAsn's state is stored before the batch and reported once in it; kFourthAsn has none
  // stored; kAsn is reported three times in the batch.
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 10'000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("load/3", kThirdAsn, 400)), Outcome::kPosted);
  ASSERT_TRUE(ledger_->SetCardState({kThirdAsn, Wallet::kEp, 400, std::nullopt, 3}).ok());
  Transfer load = Load("load/1", kAsn, 1000);
  load.card_state = CardState{kAsn, Wallet::kEp, 1000, 1, std::nullopt};
  auto results = MustPostBatch(
      {load, PurchaseWithState(kAsn, 1, 250, 750), PurchaseWithState(kAsn, 2, 100, 650),
       PurchaseWithState(kThirdAsn, 4, 150, 250), Load("load/4", kFourthAsn, 600),
       PurchaseWithState(kFourthAsn, 1, 200, 400)});
  ASSERT_EQ(results.size(), 6u);
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u}) {
    EXPECT_TRUE(results[i].card_state_applied) << "transfer " << i;
  }
  EXPECT_FALSE(results[4].card_state_applied) << "it reported no card state";
  auto kasn = ledger_->FindCardState(kAsn, Wallet::kEp);
  ASSERT_TRUE(kasn.ok() && kasn->has_value());
  EXPECT_EQ(**kasn, (CardState{kAsn, Wallet::kEp, 650, 1, 2}));
  EXPECT_EQ((*ledger_->FindCardState(kThirdAsn, Wallet::kEp))->balance, 250);
  EXPECT_EQ((*ledger_->FindCardState(kFourthAsn, Wallet::kEp))->balance, 400);
  EXPECT_EQ(Balance(AccountId::CardFloat(kAsn, Wallet::kEp)), 650);
  EXPECT_EQ(Balance(AccountId::Merchant("H0001")), 250 + 100 + 150 + 200);
  ExpectConsistent();
}

TEST_P(LedgerBatchTest, AnOlderCardStateInTheBatchDoesNotReplaceANewerStoredOne) {
  ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 500, std::nullopt, 7}).ok());
  auto results = MustPostBatch({PurchaseWithState(kAsn, 6, 100, 800)});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, Outcome::kPosted);
  EXPECT_FALSE(results[0].card_state_applied);
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->balance, 500);
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->offline_serial, 7);
}

// Rows written before clearing went set-wise hold nlohmann's dump of the card state; a retry is
// compared with them, so the text must not change.
TEST_P(LedgerBatchTest, TheStoredCardStateIsTheJsonRetriesAreComparedWith) {
  Transfer t = PurchaseWithState(kAsn, 3, 100, 900);
  t.card_state->online_serial = 2;
  MustPostBatch({t});
  auto rows = conn_->Query("SELECT card_state FROM ledger_transfers WHERE id = ?", {t.id});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  const nlohmann::json expected = {{"asn", kAsn},
                                   {"wallet", "EP"},
                                   {"balance", 900},
                                   {"online_serial", 2},
                                   {"offline_serial", 3}};
  EXPECT_EQ((*rows)[0].Text(0), expected.dump());
  EXPECT_EQ(MustPost(t), Outcome::kExists);
}

TEST_P(LedgerBatchTest, ARetriedBatchPostsNothingTwice) {
  const std::vector<Transfer> batch = {Allocation("alloc/1", "P1", 700),
                                       Allocation("alloc/2", "P2", 300)};
  EXPECT_THAT(Outcomes(MustPostBatch(batch)), ElementsAre(Outcome::kPosted, Outcome::kPosted));
  EXPECT_THAT(Outcomes(MustPostBatch(batch)), ElementsAre(Outcome::kExists, Outcome::kExists));
  // Partly new: the old one exists, the new one is posted.
  EXPECT_THAT(
      Outcomes(MustPostBatch({Allocation("alloc/2", "P2", 300), Allocation("alloc/3", "P3", 50)})),
      ElementsAre(Outcome::kExists, Outcome::kPosted));
  // The same id twice in one batch: posted once.
  EXPECT_THAT(
      Outcomes(MustPostBatch({Allocation("alloc/4", "P4", 10), Allocation("alloc/4", "P4", 10)})),
      ElementsAre(Outcome::kPosted, Outcome::kExists));
  EXPECT_EQ(Balance(AccountId::SiaFund()), -(700 + 300 + 50 + 10));
  EXPECT_EQ(Count("ledger_transfers"), 4);
  EXPECT_EQ(Count("ledger_postings"), 8);
  ExpectConsistent();
}

TEST_P(LedgerBatchTest, AnIdPostedBeforeWithOtherContentFailsTheWholeBatch) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 700)), Outcome::kPosted);
  auto r = ledger_->PostBatch({Allocation("alloc/2", "P2", 300), Allocation("alloc/1", "P1", 999)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_EQ(Balance(AccountId::Medical("P2")), 0) << "nothing of the batch stays";
  EXPECT_EQ(Count("ledger_transfers"), 1);
}

TEST_P(LedgerBatchTest, PendingOrMalformedTransfersAreRefusedAndWriteNothing) {
  Transfer pending = Allocation("alloc/2", "P2", 300);
  pending.pending = true;
  auto refused = ledger_->PostBatch({Allocation("alloc/1", "P1", 700), pending});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kInvalid);
  auto malformed = ledger_->PostBatch({Allocation("alloc/1", "P1", 700), Allocation("", "P2", 1)});
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(Count("ledger_transfers"), 0);
  EXPECT_EQ(Count("ledger_postings"), 0);
}

TEST_P(LedgerBatchTest, ABatchLargerThanOneStatementIsPostedWhole) {
  std::vector<Transfer> batch;
  for (int i = 1; i <= 1500; ++i) {
    batch.push_back(Allocation("alloc/" + std::to_string(i), "P" + std::to_string(i % 40), i));
  }
  auto results = MustPostBatch(batch);
  ASSERT_EQ(results.size(), 1500u);
  EXPECT_EQ(Balance(AccountId::SiaFund()), -(1500 * 1501 / 2));
  EXPECT_EQ(Count("ledger_transfers"), 1500);
  EXPECT_EQ(Count("ledger_postings"), 3000);
  ExpectConsistent();
}

TEST_P(LedgerBatchTest, InsideTheCallersTransaction_RollsBackWithIt) {
  {
    auto tx = store::Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok());
    MustPostBatch({Allocation("alloc/1", "P1", 700)});
    tx->Rollback();
  }
  EXPECT_EQ(Count("ledger_transfers"), 0);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 0);
}

}  // namespace
}  // namespace medcard::ledger::testing
