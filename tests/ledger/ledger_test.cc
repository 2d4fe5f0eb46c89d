// The ledger on both engines: postings, idempotency, pending transfers, card state, history.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace medcard::ledger::testing {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

using LedgerPostTest = LedgerTest;
INSTANTIATE_TEST_SUITE_P(Engines, LedgerPostTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(LedgerPostTest, Post_MovesMoneyWithTwoBalancedLegs) {
  EXPECT_EQ(MustPost(Allocation("alloc/1", "P1", 50'000)), Outcome::kPosted);
  EXPECT_EQ(Balance(AccountId::SiaFund()), -50'000);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 50'000);
  EXPECT_EQ(Count("ledger_postings"), 2);
  auto legs = conn_->Query("SELECT amount FROM ledger_postings ORDER BY amount");
  ASSERT_TRUE(legs.ok());
  EXPECT_EQ((*legs)[0].Int(0), -50'000);
  EXPECT_EQ((*legs)[1].Int(0), 50'000);
  ExpectConsistent();
}

TEST_P(LedgerPostTest, Post_RecordsTheTransferWithItsCause) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 700)), Outcome::kPosted);
  auto found = ledger_->FindTransfer("alloc/1");
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_TRUE(found->has_value());
  const TransferRecord& r = **found;
  EXPECT_EQ(r.state, TransferState::kPosted);
  EXPECT_EQ(r.transfer.debit, AccountId::SiaFund());
  EXPECT_EQ(r.transfer.credit, AccountId::Medical("P1"));
  EXPECT_EQ(r.transfer.amount, 700);
  EXPECT_EQ(r.transfer.cause.kind, "allocation");
  EXPECT_EQ(r.transfer.cause.reference, "2024-01/P1");
  EXPECT_EQ(r.transfer.cause.details_json, R"({"month":"2024-01"})");
  EXPECT_EQ(r.created_at_us, now_us_);
  EXPECT_FALSE(ledger_->FindTransfer("alloc/2")->has_value());
}

TEST_P(LedgerPostTest, Retry_ReturnsExistsAndPostsNothing) {
  const Transfer t = Allocation("alloc/1", "P1", 700);
  ASSERT_EQ(MustPost(t), Outcome::kPosted);
  auto retry = ledger_->Post(t);
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ(retry->outcome, Outcome::kExists);
  EXPECT_EQ(retry->transfer.state, TransferState::kPosted);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 700);
  EXPECT_EQ(Count("ledger_postings"), 2);
  EXPECT_EQ(Count("ledger_transfers"), 1);
}

TEST_P(LedgerPostTest, Retry_WithDetailsInAnotherKeyOrder_IsTheSameTransfer) {
  Transfer t = Allocation("alloc/1", "P1", 700);
  t.cause.details_json = R"({"b": 2, "a": 1})";
  ASSERT_EQ(MustPost(t), Outcome::kPosted);
  t.cause.details_json = R"({"a":1,"b":2})";
  EXPECT_EQ(MustPost(t), Outcome::kExists);
}

TEST_P(LedgerPostTest, SameIdWithOtherContent_IsAConflict) {
  const Transfer original = Allocation("alloc/1", "P1", 700);
  ASSERT_EQ(MustPost(original), Outcome::kPosted);
  Transfer amount = original;
  amount.amount = 701;
  Transfer credit = original;
  credit.credit = AccountId::Medical("P2");
  Transfer details = original;
  details.cause.details_json = R"({"month":"2024-02"})";
  Transfer pending = original;
  pending.pending = true;
  for (const auto& [changed, says] :
       {std::pair{amount, "amount 700 fen, not 701"},
        std::pair{credit, "credit medical/P1, not medical/P2"},
        std::pair{details, "other cause details"}, std::pair{pending, "it is not pending"}}) {
    auto r = ledger_->Post(changed);
    ASSERT_FALSE(r.ok()) << says;
    EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
    EXPECT_THAT(r.error().message, HasSubstr(says));
  }
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 700);
  EXPECT_EQ(Balance(AccountId::Medical("P2")), 0);
  EXPECT_EQ(Count("ledger_postings"), 2);
}

TEST_P(LedgerPostTest, MalformedTransfers_AreRefusedAndWriteNothing) {
  struct Case {
    Transfer transfer;
    const char* says;
  };
  Transfer zero = Allocation("a/0", "P1", 0);
  Transfer negative = Allocation("a/1", "P1", -5);
  Transfer same = Allocation("a/2", "P1", 5);
  same.debit = AccountId::Medical("P1");
  Transfer spaced = Allocation("a 3", "P1", 5);
  Transfer bad_asn = Purchase("0123", 1, 5);
  Transfer bad_json = Allocation("a/5", "P1", 5);
  bad_json.cause.details_json = "[1,2]";
  Transfer no_reference = Purchase(kAsn, 1, 5);
  no_reference.cause.reference = "";
  Transfer no_cause = Allocation("a/7", "P1", 5);
  no_cause.cause.kind = "";
  Transfer pending_card = Purchase(kAsn, 2, 5);
  pending_card.pending = true;
  pending_card.card_state = CardState{kAsn, Wallet::kEp, 10, std::nullopt, 3};
  Transfer keyed_singleton = Allocation("a/9", "P1", 5);
  keyed_singleton.debit = {AccountKind::kSiaFund, "x"};
  Transfer other_card = Purchase(kAsn, 3, 5);
  other_card.card_state = CardState{kOtherAsn, Wallet::kEp, 10, std::nullopt, 3};
  for (const Case& c :
       {Case{zero, "must be > 0"}, Case{negative, "must be > 0"}, Case{same, "one account"},
        Case{spaced, "without spaces"}, Case{bad_asn, "20 hex digit ASN"},
        Case{bad_json, "not a JSON object"}, Case{no_reference, "needs its card transaction"},
        Case{no_cause, "cause kind is required"}, Case{pending_card, "comes with Complete"},
        Case{keyed_singleton, "takes no key"},
        Case{other_card, "which the transfer does not touch"}}) {
    auto r = ledger_->Post(c.transfer);
    ASSERT_FALSE(r.ok()) << c.says;
    EXPECT_EQ(r.error().kind, ErrorKind::kInvalid) << r.error().message;
    EXPECT_THAT(r.error().message, HasSubstr(c.says));
  }
  EXPECT_EQ(Count("ledger_transfers"), 0);
  EXPECT_EQ(Count("ledger_accounts"), 0);
}

TEST_P(LedgerPostTest, MustNotGoNegative_RejectsAndRemembersTheRejection) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  Transfer load{.id = "load/1",
                .debit = AccountId::Medical("P1"),
                .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                .amount = 1001,
                .cause = {cause::kLoad, std::string(kAsn) + "/1"},
                .debit_must_not_go_negative = true};
  auto first = ledger_->Post(load);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->outcome, Outcome::kRejected);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 1000);

  // The money arrives, but a retry of the same request keeps its first answer.
  ASSERT_EQ(MustPost(Allocation("alloc/2", "P1", 1000)), Outcome::kPosted);
  auto retry = ledger_->Post(load);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->outcome, Outcome::kExists);
  EXPECT_EQ(retry->transfer.state, TransferState::kRejected);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 2000);

  load.id = "load/2";  // a new request
  load.card_state = CardState{kAsn, Wallet::kEp, 1001, 1, std::nullopt};
  EXPECT_EQ(MustPost(load), Outcome::kPosted);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 999);
  ExpectConsistent();
}

TEST_P(LedgerPostTest, MustNotGoNegative_AllowsExactlyTheWholeBalance) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  Transfer spend{.id = "closure/1",
                 .debit = AccountId::Medical("P1"),
                 .credit = AccountId::BankClearing(),
                 .amount = 1000,
                 .cause = {"withdrawal", "W1"},
                 .debit_must_not_go_negative = true};
  EXPECT_EQ(MustPost(spend), Outcome::kPosted);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 0);
}

TEST_P(LedgerPostTest, Overflow_IsRefusedWithNothingWritten) {
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", max)), Outcome::kPosted);
  auto r = ledger_->Post(Allocation("alloc/2", "P1", 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("overflow"));
  EXPECT_EQ(Balance(AccountId::Medical("P1")), max);
  EXPECT_FALSE(ledger_->FindTransfer("alloc/2")->has_value());
  EXPECT_EQ(Count("ledger_postings"), 2);
}

TEST_P(LedgerPostTest, Accounts_AreCreatedOnFirstUseOrExplicitly) {
  EXPECT_FALSE(ledger_->FindAccount(AccountId::Merchant("H0001"))->has_value());
  auto opened = ledger_->OpenAccount(AccountId::Merchant("H0001"));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->balance, 0);
  EXPECT_TRUE(ledger_->FindAccount(AccountId::Merchant("H0001"))->has_value());
  auto again = ledger_->OpenAccount(AccountId::Merchant("H0001"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Count("ledger_accounts"), 1);
  auto bad = ledger_->OpenAccount(AccountId::Merchant("has space"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalid);
}

TEST_P(LedgerPostTest, CardFloat_AsnCaseDoesNotMakeASecondAccount) {
  Transfer lower = Purchase("abcdef0123456789abcd", 1, 5);
  ASSERT_EQ(MustPost(lower), Outcome::kPosted);
  EXPECT_EQ(Balance(AccountId::CardFloat("ABCDEF0123456789ABCD", Wallet::kEp)), -5);
  lower.debit = AccountId::CardFloat("ABCDEF0123456789ABCD", Wallet::kEp);
  EXPECT_EQ(MustPost(lower), Outcome::kExists);
  EXPECT_EQ(Count("ledger_accounts"), 2);
}

TEST_P(LedgerPostTest, InsideTheCallersTransaction_CommitsOrRollsBackWithIt) {
  {
    auto tx = store::Transaction::Begin(*conn_);
    ASSERT_TRUE(tx.ok());
    ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 10)), Outcome::kPosted);
    ASSERT_TRUE(conn_->Execute("CREATE TABLE host_requests (id TEXT)").ok());
  }  // rolled back: the posting with it
  EXPECT_FALSE(ledger_->FindTransfer("alloc/1")->has_value());
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 0);

  auto tx = store::Transaction::Begin(*conn_);
  ASSERT_TRUE(tx.ok());
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 10)), Outcome::kPosted);
  ASSERT_TRUE(tx->Commit().ok());
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 10);
}

// ---------------------------------------------------------------------------------------------
// Pending transfers (online load).

using LedgerPendingTest = LedgerTest;
INSTANTIATE_TEST_SUITE_P(Engines, LedgerPendingTest, test_support::AllEngines(),
                         test_support::EngineTestName);

Transfer Load(std::string id, std::int64_t amount) {
  return {.id = "load/" + id,
          .debit = AccountId::Medical("P1"),
          .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
          .amount = amount,
          .cause = {cause::kLoad, std::string(kAsn) + "/" + id},
          .pending = true,
          .debit_must_not_go_negative = true};
}

TEST_P(LedgerPendingTest, Reserve_HoldsTheAmountWithoutPosting) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 300)), Outcome::kPending);
  auto medical = ledger_->FindAccount(AccountId::Medical("P1"));
  ASSERT_TRUE(medical.ok() && medical->has_value());
  EXPECT_EQ((*medical)->balance, 1000);
  EXPECT_EQ((*medical)->debits_pending, 300);
  EXPECT_EQ((*medical)->available(), 700);
  auto card = ledger_->FindAccount(AccountId::CardFloat(kAsn, Wallet::kEp));
  EXPECT_EQ((*card)->balance, 0);
  EXPECT_EQ((*card)->credits_pending, 300);
  EXPECT_EQ(Count("ledger_postings"), 2);  // the allocation's only
  ExpectConsistent();
}

TEST_P(LedgerPendingTest, Holds_CountAgainstTheNextReservation) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 600)), Outcome::kPending);
  EXPECT_EQ(MustPost(Load("2", 600)), Outcome::kRejected);
  EXPECT_EQ(MustPost(Load("3", 400)), Outcome::kPending);
}

TEST_P(LedgerPendingTest, Complete_PostsTheHeldAmountOnce) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 300)), Outcome::kPending);
  now_us_ += 5'000'000;
  const CardState confirmed{kAsn, Wallet::kEp, 300, 1, std::nullopt};
  auto done = ledger_->Complete("load/1", confirmed);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(done->outcome, Outcome::kCompleted);
  EXPECT_TRUE(done->card_state_applied);
  EXPECT_EQ(done->transfer.resolved_at_us, now_us_);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 700);
  EXPECT_EQ(Balance(AccountId::CardFloat(kAsn, Wallet::kEp)), 300);
  EXPECT_EQ((*ledger_->FindAccount(AccountId::Medical("P1")))->debits_pending, 0);

  auto again = ledger_->Complete("load/1", confirmed);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, Outcome::kExists);
  EXPECT_EQ(again->transfer.state, TransferState::kCompleted);
  EXPECT_EQ(Balance(AccountId::CardFloat(kAsn, Wallet::kEp)), 300);
  EXPECT_EQ(Count("ledger_postings"), 4);
  auto retry_reserve = ledger_->Post(Load("1", 300));
  ASSERT_TRUE(retry_reserve.ok());
  EXPECT_EQ(retry_reserve->outcome, Outcome::kExists);
  EXPECT_EQ(retry_reserve->transfer.state, TransferState::kCompleted);
  ExpectConsistent();
}

TEST_P(LedgerPendingTest, Void_ReleasesTheHoldOnce) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 300)), Outcome::kPending);
  auto voided = ledger_->Void("load/1");
  ASSERT_TRUE(voided.ok()) << voided.error().message;
  EXPECT_EQ(voided->outcome, Outcome::kVoided);
  auto medical = *ledger_->FindAccount(AccountId::Medical("P1"));
  EXPECT_EQ(medical->balance, 1000);
  EXPECT_EQ(medical->debits_pending, 0);
  EXPECT_EQ(ledger_->Void("load/1")->outcome, Outcome::kExists);
  ExpectConsistent();
}

TEST_P(LedgerPendingTest, CompleteAndVoid_RefuseWhatIsNotPending) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 300)), Outcome::kPending);
  ASSERT_EQ(MustPost(Load("2", 300)), Outcome::kPending);
  ASSERT_TRUE(ledger_->Complete("load/1", CardState{kAsn, Wallet::kEp, 300, 1}).ok());
  ASSERT_TRUE(ledger_->Void("load/2").ok());
  struct Case {
    LedgerResult<PostResult> result;
    ErrorKind kind;
    const char* says;
  };
  for (const Case& c :
       {Case{ledger_->Void("load/1"), ErrorKind::kWrongState, "is completed, not pending"},
        Case{ledger_->Complete("load/2"), ErrorKind::kWrongState, "is voided, not pending"},
        Case{ledger_->Complete("alloc/1"), ErrorKind::kWrongState, "is posted, not pending"},
        Case{ledger_->Complete("load/9"), ErrorKind::kNotFound, "no transfer load/9"}}) {
    ASSERT_FALSE(c.result.ok()) << c.says;
    EXPECT_EQ(c.result.error().kind, c.kind);
    EXPECT_THAT(c.result.error().message, HasSubstr(c.says));
  }
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 700);
  ExpectConsistent();
}

TEST_P(LedgerPendingTest, Complete_WithAnotherCardsState_IsRefusedAndLeavesItPending) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  ASSERT_EQ(MustPost(Load("1", 300)), Outcome::kPending);
  auto r = ledger_->Complete("load/1", CardState{kOtherAsn, Wallet::kEp, 300, 1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("does not touch"));
  EXPECT_EQ((*ledger_->FindTransfer("load/1"))->state, TransferState::kPending);
  EXPECT_FALSE(ledger_->FindCardState(kOtherAsn, Wallet::kEp)->has_value());
}

TEST_P(LedgerPendingTest, ListPending_GivesOldUnconfirmedLoadsPageByPage) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_EQ(MustPost(Load(std::to_string(i), 10)), Outcome::kPending);
    now_us_ += 60'000'000;
  }
  ASSERT_TRUE(ledger_->Complete("load/2").ok());
  const std::int64_t cutoff = now_us_ - 60'000'000;  // load/5 is too recent
  auto first = ledger_->ListPending(cutoff, 2);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].transfer.id, "load/1");
  EXPECT_EQ((*first)[1].transfer.id, "load/3");
  auto second = ledger_->ListPending(cutoff, 2, first->back().seq);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].transfer.id, "load/4");
  EXPECT_EQ((*second)[0].state, TransferState::kPending);
}

// ---------------------------------------------------------------------------------------------
// Card state and history.

using LedgerCardTest = LedgerTest;
INSTANTIATE_TEST_SUITE_P(Engines, LedgerCardTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(LedgerCardTest, ClearedPurchase_UpdatesTheCardStateInTheSameTransaction) {
  ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 1000, 1, 0}).ok());
  Transfer load{.id = "load/1",
                .debit = AccountId::Medical("P1"),
                .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                .amount = 1000,
                .cause = {cause::kLoad, std::string(kAsn) + "/1"}};
  ASSERT_EQ(MustPost(load), Outcome::kPosted);
  Transfer purchase = Purchase(kAsn, 1, 250);
  purchase.card_state = CardState{kAsn, Wallet::kEp, 750, std::nullopt, 1};
  auto r = ledger_->Post(purchase);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->card_state_applied);
  auto state = ledger_->FindCardState(kAsn, Wallet::kEp);
  ASSERT_TRUE(state.ok() && state->has_value());
  EXPECT_EQ((*state)->balance, 750);
  EXPECT_EQ((*state)->online_serial, 1);  // kept from before: a purchase does not report it
  EXPECT_EQ((*state)->offline_serial, 1);
  ExpectConsistent();
}

TEST_P(LedgerCardTest, OlderCardReport_DoesNotReplaceANewerOne) {
  ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 500, std::nullopt, 7}).ok());
  auto stale = ledger_->SetCardState({kAsn, Wallet::kEp, 800, std::nullopt, 6});
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(*stale);
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->balance, 500);
  EXPECT_TRUE(*ledger_->SetCardState({kAsn, Wallet::kEp, 400, std::nullopt, 8}));
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->balance, 400);
  EXPECT_FALSE(ledger_->FindCardState(kAsn, Wallet::kEd)->has_value());
}

TEST_P(LedgerCardTest, CardState_RefusesAMalformedAsnOrSerial) {
  auto asn = ledger_->SetCardState({"12", Wallet::kEp, 0, std::nullopt, std::nullopt});
  ASSERT_FALSE(asn.ok());
  EXPECT_EQ(asn.error().kind, ErrorKind::kInvalid);
  auto serial = ledger_->SetCardState({kAsn, Wallet::kEp, 0, 70000, std::nullopt});
  ASSERT_FALSE(serial.ok());
  EXPECT_THAT(serial.error().message, HasSubstr("0..65535"));
}

TEST_P(LedgerCardTest, History_ListsPostingsOldestFirstPageByPage) {
  ASSERT_EQ(MustPost(Allocation("alloc/1", "P1", 1000)), Outcome::kPosted);
  for (int i = 1; i <= 4; ++i) {
    Transfer load{.id = "load/" + std::to_string(i),
                  .debit = AccountId::Medical("P1"),
                  .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                  .amount = 100 * i,
                  .cause = {cause::kLoad, std::string(kAsn) + "/" + std::to_string(i)}};
    ASSERT_EQ(MustPost(load), Outcome::kPosted);
  }
  std::vector<HistoryEntry> all;
  std::int64_t after = 0;
  int pages = 0;
  for (;;) {
    auto page = ledger_->History(AccountId::Medical("P1"), after, 2);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ++pages;
    all.insert(all.end(), page->entries.begin(), page->entries.end());
    if (!page->next_after_seq) break;
    after = *page->next_after_seq;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].transfer_id, "alloc/1");
  EXPECT_EQ(all[0].amount, 1000);
  EXPECT_EQ(all[0].counterparty, AccountId::SiaFund());
  EXPECT_EQ(all[1].amount, -100);
  EXPECT_EQ(all[1].balance_after, 900);
  EXPECT_EQ(all[1].counterparty, AccountId::CardFloat(kAsn, Wallet::kEp));
  EXPECT_EQ(all[1].cause.kind, "load");
  EXPECT_EQ(all[4].balance_after, 0);
  auto none = ledger_->History(AccountId::Medical("nobody"), 0, 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->entries.empty());
}

// ---------------------------------------------------------------------------------------------
// Names and shards (engine-independent).

TEST(AccountIdTest, PrintsAndParsesEveryKind) {
  for (const AccountId& id : {AccountId::SiaFund(), AccountId::Medical("310101199001011234"),
                              AccountId::CardFloat(kAsn, Wallet::kEd), AccountId::Merchant("H0001"),
                              AccountId::Suspense(), AccountId::BankClearing()}) {
    const auto parsed = AccountId::Parse(id.ToString());
    ASSERT_TRUE(parsed.has_value()) << id.ToString();
    EXPECT_EQ(*parsed, id);
  }
  EXPECT_EQ(AccountId::CardFloat("0123456789abcdef0123", Wallet::kEp).ToString(),
            "card_float/0123456789ABCDEF0123/EP");
  EXPECT_FALSE(AccountId::Parse("card_float/0123/EP").has_value());
  EXPECT_FALSE(AccountId::Parse("sia_fund/x").has_value());
  EXPECT_FALSE(AccountId::Parse("piggy_bank/1").has_value());
}

TEST(ShardTest, ShardsAreStableAcrossVersions) {
  // Stored in every row: changing the function would misplace every existing row.
  // FNV-1a 32 mod 256; the empty key is the offset basis 0x811C9DC5.
  EXPECT_EQ(ShardOf(""), 0xC5);
  EXPECT_EQ(ShardOf("0123456789ABCDEF0123"), 9);
  EXPECT_EQ(ShardOf("H0001"), 180);
  int used[kShardCount] = {};
  for (int i = 0; i < 10'000; ++i) ++used[ShardOf("P" + std::to_string(i))];
  for (int count : used) EXPECT_GT(count, 10);  // spread over every shard
}

}  // namespace
}  // namespace medcard::ledger::testing
