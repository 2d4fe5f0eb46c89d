// Money paths under failure, on both engines: a fault at every statement of every operation
// (before the engine sees it, and after it did the work but the reply was lost) leaves either
// nothing or everything, and a retry then makes it exactly once; concurrent clients sending the
// same request post it once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <thread>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace medcard::ledger::testing {
namespace {

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

class FailureTest : public LedgerTest {
 protected:
  struct Operation {
    std::function<void(int i)> prepare;                  // runs without faults
    std::function<LedgerResult<PostResult>(int i)> act;  // the operation under test
    std::function<bool(int i)> took_effect;              // is its work visible?
    Outcome first_outcome;                               // what a clean first call returns
  };

  // For every statement n of `op` and both timings: inject a fault at n, run it, check that the
  // ledger is consistent with the work done completely or not at all, then retry without faults
  // and check it is done exactly once. Returns how many statements the operation took.
  int RunWithAFaultAtEveryStatement(const Operation& op) {
    int iteration = 0;
    int statements = 0;
    for (const auto timing : {store::FaultTiming::kBefore, store::FaultTiming::kAfter}) {
      for (int n = 1;; ++n) {
        const int i = iteration++;
        SCOPED_TRACE("fault at statement " + std::to_string(n) +
                     (timing == store::FaultTiming::kBefore ? " (before)" : " (after)"));
        op.prepare(i);
        conn_->InjectFault(n, timing);
        const std::int64_t before = conn_->statements_run();
        auto result = op.act(i);
        if (!conn_->fault_fired()) {
          // n is past the operation's last statement: it ran clean.
          EXPECT_TRUE(result.ok()) << result.error().message;
          if (result.ok()) {
            EXPECT_EQ(result->outcome, op.first_outcome);
          }
          statements = static_cast<int>(conn_->statements_run() - before);
          conn_->InjectFault(0);
          break;
        }
        EXPECT_FALSE(result.ok());
        if (!result.ok()) {
          EXPECT_EQ(result.error().store_kind, store::ErrorKind::kInjectedFault);
        }
        EXPECT_FALSE(conn_->InTransaction());
        ExpectConsistent();  // nothing half-done
        const bool done = op.took_effect(i);
        // Only a fault after COMMIT may leave the work done.
        if (timing == store::FaultTiming::kBefore) {
          EXPECT_FALSE(done);
        }

        auto retry = op.act(i);
        EXPECT_TRUE(retry.ok()) << retry.error().message;
        if (retry.ok()) {
          EXPECT_EQ(retry->outcome, done ? Outcome::kExists : op.first_outcome);
        }
        EXPECT_TRUE(op.took_effect(i));
        ExpectConsistent();
        if (::testing::Test::HasFailure()) return statements;
      }
    }
    return statements;
  }

  std::string Id(const char* prefix, int i) { return prefix + std::to_string(i); }
};

INSTANTIATE_TEST_SUITE_P(Engines, FailureTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(FailureTest, Post_FaultAtEveryStatement_NothingPartialAndExactlyOnce) {
  int iterations = 0;
  const int statements = RunWithAFaultAtEveryStatement({
      .prepare = [&](int) { ++iterations; },
      .act = [&](int i) { return ledger_->Post(Allocation(Id("alloc/", i), "P1", 100)); },
      .took_effect = [&](int i) { return ledger_->FindTransfer(Id("alloc/", i))->has_value(); },
      .first_outcome = Outcome::kPosted,
  });
  // BEGIN, the two accounts' lookups, transfer, both balances (one statement), legs, COMMIT.
  EXPECT_GE(statements, 7);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 100 * iterations);
}

TEST_P(FailureTest, ClearedPurchaseWithCardState_FaultAtEveryStatement) {
  ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 1'000'000, 1, 0}).ok());
  ASSERT_EQ(MustPost({.id = "load/1",
                      .debit = AccountId::Medical("P1"),
                      .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                      .amount = 1'000'000,
                      .cause = {cause::kLoad, std::string(kAsn) + "/1"}}),
            Outcome::kPosted);
  std::int64_t card = 1'000'000;
  std::map<int, Transfer> purchases;
  RunWithAFaultAtEveryStatement({
      .prepare =
          [&](int i) {
            card -= 10;
            Transfer t = Purchase(kAsn, i + 1, 10);
            t.card_state = CardState{kAsn, Wallet::kEp, card, std::nullopt, i + 1};
            purchases[i] = t;
          },
      .act = [&](int i) { return ledger_->Post(purchases[i]); },
      .took_effect = [&](int i) { return ledger_->FindTransfer(purchases[i].id)->has_value(); },
      .first_outcome = Outcome::kPosted,
  });
  EXPECT_EQ(Balance(AccountId::CardFloat(kAsn, Wallet::kEp)), card);
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->balance, card);
}

TEST_P(FailureTest, PendingReserve_FaultAtEveryStatement) {
  ASSERT_EQ(MustPost(Allocation("alloc/0", "P1", 1'000'000)), Outcome::kPosted);
  int reserved = 0;
  auto load = [&](int i) {
    return Transfer{.id = Id("load/", i),
                    .debit = AccountId::Medical("P1"),
                    .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                    .amount = 10,
                    .cause = {cause::kLoad, std::string(kAsn) + "/" + std::to_string(i)},
                    .pending = true,
                    .debit_must_not_go_negative = true};
  };
  RunWithAFaultAtEveryStatement({
      .prepare = [&](int) { ++reserved; },
      .act = [&](int i) { return ledger_->Post(load(i)); },
      .took_effect = [&](int i) { return ledger_->FindTransfer(Id("load/", i))->has_value(); },
      .first_outcome = Outcome::kPending,
  });
  EXPECT_EQ((*ledger_->FindAccount(AccountId::Medical("P1")))->debits_pending, 10 * reserved);
}

TEST_P(FailureTest, Complete_FaultAtEveryStatement) {
  ASSERT_EQ(MustPost(Allocation("alloc/0", "P1", 1'000'000)), Outcome::kPosted);
  ASSERT_TRUE(ledger_->SetCardState({kAsn, Wallet::kEp, 0, 0, 0}).ok());
  std::int64_t card = 0;
  std::map<int, CardState> confirmed;
  RunWithAFaultAtEveryStatement({
      .prepare =
          [&](int i) {
            ASSERT_EQ(MustPost({.id = Id("load/", i),
                                .debit = AccountId::Medical("P1"),
                                .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                                .amount = 10,
                                .cause = {cause::kLoad, std::string(kAsn) + "/" + Id("", i)},
                                .pending = true}),
                      Outcome::kPending);
            card += 10;
            confirmed[i] = CardState{kAsn, Wallet::kEp, card, i + 1, std::nullopt};
          },
      .act = [&](int i) { return ledger_->Complete(Id("load/", i), confirmed[i]); },
      .took_effect =
          [&](int i) {
            return (*ledger_->FindTransfer(Id("load/", i)))->state == TransferState::kCompleted;
          },
      .first_outcome = Outcome::kCompleted,
  });
  EXPECT_EQ(Balance(AccountId::CardFloat(kAsn, Wallet::kEp)), card);
  EXPECT_EQ((*ledger_->FindCardState(kAsn, Wallet::kEp))->balance, card);
}

TEST_P(FailureTest, Void_FaultAtEveryStatement) {
  ASSERT_EQ(MustPost(Allocation("alloc/0", "P1", 1'000'000)), Outcome::kPosted);
  RunWithAFaultAtEveryStatement({
      .prepare =
          [&](int i) {
            ASSERT_EQ(MustPost({.id = Id("load/", i),
                                .debit = AccountId::Medical("P1"),
                                .credit = AccountId::Merchant("H1"),
                                .amount = 10,
                                .cause = {"test", Id("", i)},
                                .pending = true}),
                      Outcome::kPending);
          },
      .act = [&](int i) { return ledger_->Void(Id("load/", i)); },
      .took_effect =
          [&](int i) {
            return (*ledger_->FindTransfer(Id("load/", i)))->state == TransferState::kVoided;
          },
      .first_outcome = Outcome::kVoided,
  });
  const auto medical = *ledger_->FindAccount(AccountId::Medical("P1"));
  EXPECT_EQ(medical->debits_pending, 0);
  EXPECT_EQ(medical->balance, 1'000'000);
}

TEST_P(FailureTest, Rejection_FaultAtEveryStatement) {
  RunWithAFaultAtEveryStatement({
      .prepare = [](int) {},
      .act =
          [&](int i) {
            return ledger_->Post({.id = Id("load/", i),
                                  .debit = AccountId::Medical("P1"),
                                  .credit = AccountId::CardFloat(kAsn, Wallet::kEp),
                                  .amount = 10,
                                  .cause = {cause::kLoad, std::string(kAsn) + "/" + Id("", i)},
                                  .debit_must_not_go_negative = true});
          },
      .took_effect = [&](int i) { return ledger_->FindTransfer(Id("load/", i))->has_value(); },
      .first_outcome = Outcome::kRejected,
  });
  EXPECT_EQ(Count("ledger_postings"), 0);
}

TEST_P(FailureTest, ConcurrentClientsSendingTheSameRequests_PostEachOnce) {
  constexpr int kClients = 4, kTransfers = 40;
  std::atomic<int> posted{0}, exists{0}, errors{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto conn = db_->Connect();
      if (!conn.ok()) {
        ++errors;
        return;
      }
      Ledger ledger(**conn);
      for (int i = 0; i < kTransfers; ++i) {
        auto r = ledger.Post(Allocation(Id("alloc/", i), "P" + std::to_string(i % 3), 100));
        if (!r.ok()) {
          ADD_FAILURE() << r.error().message;
          ++errors;
        } else if (r->outcome == Outcome::kPosted) {
          ++posted;
        } else if (r->outcome == Outcome::kExists) {
          ++exists;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(posted.load(), kTransfers);
  EXPECT_EQ(exists.load(), (kClients - 1) * kTransfers);
  EXPECT_EQ(Count("ledger_postings"), 2 * kTransfers);
  EXPECT_EQ(Balance(AccountId::SiaFund()), -100 * kTransfers);
  ExpectConsistent();
}

TEST_P(FailureTest, ConcurrentSpendersOfOneAccount_NeverTakeItBelowZero) {
  ASSERT_EQ(MustPost(Allocation("alloc/0", "P1", 100)), Outcome::kPosted);
  constexpr int kClients = 4, kTries = 40;  // 160 tries of 1 fen against 100 fen
  std::atomic<int> posted{0}, rejected{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto conn = db_->Connect();
      ASSERT_TRUE(conn.ok());
      Ledger ledger(**conn);
      for (int i = 0; i < kTries; ++i) {
        auto r = ledger.Post({.id = "spend/" + std::to_string(c) + "/" + std::to_string(i),
                              .debit = AccountId::Medical("P1"),
                              .credit = AccountId::Merchant("H1"),
                              .amount = 1,
                              .cause = {"test", "spend"},
                              .debit_must_not_go_negative = true});
        ASSERT_TRUE(r.ok()) << r.error().message;
        (r->outcome == Outcome::kPosted ? posted : rejected)++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(posted.load(), 100);
  EXPECT_EQ(rejected.load(), kClients * kTries - 100);
  EXPECT_EQ(Balance(AccountId::Medical("P1")), 0);
  ExpectConsistent();
}

}  // namespace
}  // namespace medcard::ledger::testing
