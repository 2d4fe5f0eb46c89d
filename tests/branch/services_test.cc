// The branch services as a teller sees them, on SQLite and PostgreSQL: the card lifecycle with
// its audit entries and version checks, loss reports that the host's clearing honours,
// replacements and closures whose float moves after the clearing window, customer service.
#include "branch/services.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <variant>

#include "branch_test_scheme.h"

namespace medcard::branch::testing {
namespace {

using access::ErrorCode;
using host::ClearingOutcome;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kAsn[] = "11000000000000000501";
constexpr char kNewAsn[] = "11000000000000000502";

std::vector<std::string> Actions(const std::vector<audit::Record>& records) {
  std::vector<std::string> actions;
  for (const auto& r : records) actions.push_back(r.entry.action + " " + r.entry.target);
  return actions;
}

using ServicesTest = BranchTest;

TEST_P(ServicesTest, ATellerAppliesIssuesAndActivatesACardAndEachStepIsAudited) {
  auto applied = services_->Apply(teller_, {kPerson, "holder-0501", kBranch});
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied->state, CardState::kApplied);
  EXPECT_EQ(applied->asn, "");
  EXPECT_EQ(applied->version, 1);

  auto issued = services_->Issue(senior_, {.application_id = applied->application_id,
                                           .expected_version = 1,
                                           .asn = "11000000000000000501",
                                           .valid_to = valid_to_});
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->state, CardState::kIssued);
  EXPECT_EQ(issued->asn, kAsn);
  EXPECT_EQ(issued->valid_to, "2031-11-30");
  EXPECT_EQ(issued->version, 2);
  // The host knows the card and its person's medical account now.
  auto balances = services_->Balances(kAsn);
  ASSERT_TRUE(balances.ok()) << balances.error().message;
  EXPECT_EQ(balances->person_id, kPerson);
  EXPECT_EQ(balances->medical_account, 0);

  auto active = services_->Activate(teller_, {.asn = kAsn, .expected_version = 2});
  ASSERT_TRUE(active.ok()) << active.error().message;
  EXPECT_EQ(active->state, CardState::kActive);
  EXPECT_EQ(active->version, 3);
  EXPECT_FALSE(active->blacklisted_at);

  auto records = AuditCardEntries();
  const std::string application = "application:" + std::to_string(applied->application_id);
  EXPECT_THAT(Actions(records),
              ElementsAre("card.apply " + application, "card.issue card:" + std::string(kAsn),
                          "card.activate card:" + std::string(kAsn)));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].entry.actor, "s01");
  EXPECT_EQ(records[1].entry.authorised_by, "sup1");
  EXPECT_EQ(records[1].entry.from, "10.0.0.8");
  EXPECT_THAT(records[1].entry.details, HasSubstr("\"valid_to\":\"2031-11-30\""));
  EXPECT_EQ(records[2].at_us, now_us_);
  auto verified = audit::Verify(*conn_);
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->intact);
}

TEST_P(ServicesTest, ACardTheHostImportedIsIssuedToItsPersonsApplicationOnly) {
  // The issuance log's import registered the card for the person already.
  ASSERT_TRUE(host_->RegisterCard({HexToBytes(kAsn), "holder-0501", kPerson}).ok());
  auto other = services_->Apply(teller_, {"320101198001011111", "holder-x", kBranch});
  ASSERT_TRUE(other.ok());
  auto refused = services_->Issue(teller_, {.application_id = other->application_id, .asn = kAsn});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnprocessable);
  EXPECT_THAT(refused.error().message, HasSubstr("another person"));

  auto mine = services_->Apply(teller_, {kPerson, "holder-0501", kBranch});
  ASSERT_TRUE(mine.ok());
  auto issued = services_->Issue(
      teller_, {.application_id = mine->application_id, .asn = "11000000000000000501"});
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->state, CardState::kIssued);
  // One card, one application: issuing it again on another application is refused.
  auto second = services_->Apply(teller_, {kPerson, "holder-0501", kBranch});
  ASSERT_TRUE(second.ok());
  auto twice = services_->Issue(teller_, {.application_id = second->application_id, .asn = kAsn});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::kUnprocessable);
  auto again = services_->Issue(teller_, {.application_id = mine->application_id, .asn = kAsn});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kUnprocessable);
}

TEST_P(ServicesTest, MalformedRequestsAreRefusedWithTheFieldAndChangeNothing) {
  auto bad_person = services_->Apply(teller_, {"3101 01", "holder", kBranch});
  ASSERT_FALSE(bad_person.ok());
  EXPECT_EQ(bad_person.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(bad_person.error().field, "person_id");
  auto bad_holder = services_->Apply(teller_, {kPerson, "", kBranch});
  ASSERT_FALSE(bad_holder.ok());
  EXPECT_EQ(bad_holder.error().field, "holder_reference");
  auto bad_branch = services_->Apply(teller_, {kPerson, "h", "B'1"});
  ASSERT_FALSE(bad_branch.ok());
  EXPECT_EQ(bad_branch.error().field, "branch");
  auto bad_asn = services_->ReportLoss(teller_, {.asn = "1100' OR '1'='1"});
  ASSERT_FALSE(bad_asn.ok());
  EXPECT_EQ(bad_asn.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(bad_asn.error().field, "asn");
  auto unknown = services_->ReportLoss(teller_, {.asn = "11000000000000000999"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto unknown_application = services_->Issue(teller_, {.application_id = 77, .asn = kAsn});
  ASSERT_FALSE(unknown_application.ok());
  EXPECT_EQ(unknown_application.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(AuditCardEntries().empty());

  // SQL metacharacters are data, stored as typed.
  const std::string sneaky = "x'); DROP TABLE branch_cards; --";
  auto applied = services_->Apply(teller_, {kPerson, sneaky, kBranch});
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  auto found = services_->FindApplication(applied->application_id);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->holder_reference, sneaky);
}

TEST_P(ServicesTest, AnActionTheCardsStateDoesNotAllowIsUnprocessableAndChangesNothing) {
  NewActiveCard(kAsn);
  auto again = services_->Activate(teller_, {.asn = kAsn});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kUnprocessable);
  EXPECT_THAT(again.error().message, HasSubstr("is active"));
  auto cancel = services_->CancelLoss(teller_, {.asn = kAsn});
  ASSERT_FALSE(cancel.ok());
  EXPECT_EQ(cancel.error().code, ErrorCode::kUnprocessable);
  auto card = services_->FindCard(kAsn);
  ASSERT_TRUE(card.ok());
  EXPECT_EQ(card->state, CardState::kActive);
  EXPECT_EQ(card->version, 3);
  EXPECT_EQ(AuditCardEntries().size(), 3u);
}

// The API's Idempotency-Key record runs in the action's transaction: it sees the action's result
// and the changes; when it fails, nothing of the action stays.
TEST_P(ServicesTest, ACommitHookRunsInTheActionsTransactionAndItsFailureUndoesTheAction) {
  const CardRecord card = NewActiveCard(kAsn);
  const std::size_t audited = AuditCardEntries().size();
  int calls = 0;
  services_->SetCommitHook([&](store::Connection& c, const BranchServices::ActionResult& result) {
    ++calls;
    EXPECT_TRUE(c.InTransaction());
    EXPECT_EQ(std::get<CardRecord>(result).state, CardState::kLost);
    return Status(MakeError("the answer cannot be recorded"));
  });
  auto refused = services_->ReportLoss(teller_, {.asn = kAsn});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInternal);
  EXPECT_THAT(refused.error().message, HasSubstr("the answer cannot be recorded"));
  EXPECT_EQ(calls, 1);
  auto unchanged = services_->FindCard(kAsn);
  ASSERT_TRUE(unchanged.ok());
  EXPECT_EQ(unchanged->state, CardState::kActive);
  EXPECT_EQ(unchanged->version, card.version);
  EXPECT_EQ(AuditCardEntries().size(), audited);
  auto blacklist = host_->BlacklistSince(0);
  ASSERT_TRUE(blacklist.ok());
  EXPECT_TRUE(blacklist->empty());

  services_->SetCommitHook([&](store::Connection&, const BranchServices::ActionResult& result) {
    ++calls;
    EXPECT_EQ(std::get<CardRecord>(result).version, card.version + 1);
    return Status::Ok();
  });
  auto lost = services_->ReportLoss(teller_, {.asn = kAsn});
  ASSERT_TRUE(lost.ok()) << lost.error().message;
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(AuditCardEntries().size(), audited + 1);
}

TEST_P(ServicesTest, AnActionOnAStaleVersionIsAConflictAndChangesNothing) {
  const CardRecord card = NewActiveCard(kAsn);
  auto stale = services_->ReportLoss(teller_, {.asn = kAsn, .expected_version = card.version - 1});
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  auto now = services_->FindCard(kAsn);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->state, CardState::kActive);
  auto blacklist = host_->BlacklistSince(0);
  ASSERT_TRUE(blacklist.ok());
  EXPECT_TRUE(blacklist->empty());
}

TEST_P(ServicesTest, OfTwoTellersActingOnTheSameCardAtOnceOneWinsAndTheOtherGetsAConflict) {
  const CardRecord card = NewActiveCard(kAsn);
  // Two tellers' requests, each on its own connection, both made from the same screen version.
  std::atomic<int> ready{0};
  std::vector<ServiceResult<CardRecord>> results(
      2, ServiceResult<CardRecord>(access::MakeServiceError(ErrorCode::kInternal, "not run")));
  auto teller = [&](int i) {
    auto connection = db_->Connect();
    ASSERT_TRUE(connection.ok());
    BranchServices services(**connection, *key_store_, Options());
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    if (i == 0) {
      results[0] = services.ReportLoss(teller_, {.asn = kAsn, .expected_version = card.version});
    } else {
      results[1] = services.Capture(senior_, {.asn = kAsn, .expected_version = card.version});
    }
  };
  std::thread first(teller, 0), second(teller, 1);
  first.join();
  second.join();
  const int wins = (results[0].ok() ? 1 : 0) + (results[1].ok() ? 1 : 0);
  ASSERT_EQ(wins, 1) << (results[0].ok() ? "" : results[0].error().message) << " / "
                     << (results[1].ok() ? "" : results[1].error().message);
  const auto& loser = results[0].ok() ? results[1] : results[0];
  EXPECT_EQ(loser.error().code, ErrorCode::kConflict) << loser.error().message;
  // Exactly one change: one blacklist entry, one audit entry beyond the three of the setup.
  auto blacklist = host_->BlacklistSince(0);
  ASSERT_TRUE(blacklist.ok());
  EXPECT_EQ(blacklist->size(), 1u);
  EXPECT_EQ(AuditCardEntries().size(), 4u);
  auto now = services_->FindCard(kAsn);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->version, card.version + 1);
}

TEST_P(ServicesTest, ALossReportBlacklistsAtOnceAndClearingRefusesPurchasesMadeAfterIt) {
  NewActiveCard(kAsn);
  Credit(100000);
  auto holder = Holder(kAsn);
  Load(holder, 50000);
  const auto before = Purchase(holder, 1000, {9, 30, 0});  // before the loss report (10:00)
  const auto after = Purchase(holder, 2500, {10, 30, 0});  // the finder's purchase, offline

  auto lost = services_->ReportLoss(teller_, {.asn = kAsn, .reason = "stolen"});
  ASSERT_TRUE(lost.ok()) << lost.error().message;
  EXPECT_EQ(lost->state, CardState::kLost);
  EXPECT_EQ(lost->blacklisted_at, "2026-11-25T10:00:00");
  // The POS terminals' next blacklist download carries it.
  auto blacklist = host_->BlacklistSince(0);
  ASSERT_TRUE(blacklist.ok());
  ASSERT_EQ(blacklist->size(), 1u);
  EXPECT_EQ((*blacklist)[0].asn, kAsn);
  EXPECT_TRUE((*blacklist)[0].added);
  EXPECT_EQ((*blacklist)[0].effective_at, "20261125100000");

  EXPECT_THAT(Clear({before, after}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kSuspense));
  EXPECT_EQ(AccountBalance(ledger::AccountId::Merchant(kMerchant)), 1000);  // not the 25.00
  ExpectHostClean();

  // The card is found: off the blacklist, active again.
  auto found = services_->CancelLoss(teller_, {.asn = kAsn, .expected_version = lost->version});
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(found->state, CardState::kActive);
  EXPECT_FALSE(found->blacklisted_at);
  blacklist = host_->BlacklistSince((*blacklist)[0].version);
  ASSERT_TRUE(blacklist.ok());
  ASSERT_EQ(blacklist->size(), 1u);
  EXPECT_FALSE((*blacklist)[0].added);
  EXPECT_THAT(Actions(AuditCardEntries()),
              ::testing::Contains("card.report_loss card:" + std::string(kAsn)));
}

TEST_P(ServicesTest, ACapturedLostCardKeepsItsBlacklistingTime) {
  NewActiveCard(kAsn);
  auto lost = services_->ReportLoss(teller_, {.asn = kAsn});
  ASSERT_TRUE(lost.ok());
  now_us_ += 90 * kMinuteUs;
  auto captured = services_->Capture(teller_, {.asn = kAsn, .reason = "retained at counter"});
  ASSERT_TRUE(captured.ok()) << captured.error().message;
  EXPECT_EQ(captured->state, CardState::kCaptured);
  EXPECT_EQ(captured->blacklisted_at, "2026-11-25T10:00:00");
  auto blacklist = host_->BlacklistSince(0);
  ASSERT_TRUE(blacklist.ok());
  EXPECT_EQ(blacklist->size(), 1u);
  auto cancel = services_->CancelLoss(teller_, {.asn = kAsn});
  ASSERT_FALSE(cancel.ok());
  EXPECT_EQ(cancel.error().code, ErrorCode::kUnprocessable);
}

TEST_P(ServicesTest, AValidityChangeIsRecordedInTheHostAndAPastDateRefused) {
  NewActiveCard(kAsn);
  auto changed = services_->ChangeValidity(senior_, {.asn = kAsn, .valid_to = {2036, 12, 31}});
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_EQ(changed->valid_to, "2036-12-31");
  EXPECT_EQ(changed->state, CardState::kActive);
  auto host_row = conn_->Query("SELECT valid_to FROM host_cards WHERE asn = ?", {kAsn});
  ASSERT_TRUE(host_row.ok());
  EXPECT_EQ((*host_row)[0].Text(0), "20361231");
  auto past = services_->ChangeValidity(senior_, {.asn = kAsn, .valid_to = {2026, 11, 24}});
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(past.error().field, "valid_to");
  auto records = AuditCardEntries();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().entry.action, "card.change_validity");
  EXPECT_THAT(records.back().entry.details, HasSubstr("\"old_valid_to\":\"2031-11-30\""));
}

TEST_P(ServicesTest, AReplacementMovesExactlyWhatTheOldCardHoldsAfterTheClearingWindow) {
  NewActiveCard(kAsn);
  Credit(100000);
  auto holder = Holder(kAsn);
  Load(holder, 50000);
  const auto late = Purchase(holder, 1234, {9, 45, 0});  // uploaded only after the replacement
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 50000);

  auto replaced = services_->Replace(teller_, {.asn = kAsn, .branch = "B002", .reason = "worn"});
  ASSERT_TRUE(replaced.ok()) << replaced.error().message;
  EXPECT_EQ(replaced->old_card.state, CardState::kReplaced);
  EXPECT_EQ(replaced->old_card.blacklisted_at, "2026-11-25T10:00:00");
  EXPECT_EQ(replaced->old_card.replaced_by, replaced->new_card.application_id);
  EXPECT_EQ(replaced->new_card.state, CardState::kApplied);
  EXPECT_EQ(replaced->new_card.person_id, kPerson);
  EXPECT_EQ(replaced->new_card.branch, "B002");
  EXPECT_EQ(replaced->new_card.replaces, replaced->old_card.application_id);
  EXPECT_EQ(replaced->transfer.due_at_us, now_us_ + 7 * kDayUs);
  EXPECT_EQ(replaced->transfer.state, "scheduled");

  // Inside the window: nothing moves, and the late upload clears from the old card's float.
  now_us_ += 3 * kDayUs;
  auto early = services_->RunDueTransfers(now_us_);
  ASSERT_TRUE(early.ok()) << early.error().message;
  EXPECT_TRUE(early->empty());
  EXPECT_THAT(Clear({late}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_EQ(AccountBalance(ledger::AccountId::CardFloat(kAsn, ledger::Wallet::kEd)), 48766);

  now_us_ += 4 * kDayUs;
  auto due = services_->RunDueTransfers(now_us_);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].moved_ed, 48766);  // 500.00 − 12.34, to the fen
  EXPECT_EQ((*due)[0].moved_ep, 0);
  EXPECT_EQ((*due)[0].state, "done");
  EXPECT_EQ(AccountBalance(ledger::AccountId::CardFloat(kAsn, ledger::Wallet::kEd)), 0);
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 50000 + 48766);
  // The teller sees the move as the old card's last movement.
  auto history = services_->History(kAsn, std::nullopt, 10);
  ASSERT_TRUE(history.ok()) << history.error().message;
  ASSERT_FALSE(history->lines.empty());
  EXPECT_EQ(history->lines.back().kind, "closure");
  EXPECT_EQ(history->lines.back().amount, -48766);
  EXPECT_EQ(history->lines.back().balance_after, 0);
  EXPECT_EQ(history->lines.back().counterparty, "medical/" + std::string(kPerson));
  // Running again moves nothing more.
  auto again = services_->RunDueTransfers(now_us_ + kDayUs);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 50000 + 48766);
  ExpectHostClean();

  // The new card is personalised and issued on the new application.
  auto issued = services_->Issue(
      teller_, {.application_id = replaced->new_card.application_id, .asn = kNewAsn});
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  auto cards = services_->CardsOfPerson(kPerson);
  ASSERT_TRUE(cards.ok());
  ASSERT_EQ(cards->size(), 2u);
  EXPECT_EQ((*cards)[0].state, CardState::kReplaced);
  EXPECT_EQ((*cards)[1].asn, kNewAsn);
  auto transfers = services_->TransfersOfCard(kAsn);
  ASSERT_TRUE(transfers.ok());
  ASSERT_EQ(transfers->size(), 1u);
  EXPECT_EQ((*transfers)[0].done_at_us, now_us_);
}

TEST_P(ServicesTest, AClosureRefundsTheMedicalAccountOnceAfterTheClearingWindow) {
  NewActiveCard(kAsn);
  Credit(100000);
  auto holder = Holder(kAsn);
  Load(holder, 30000);
  Clear({Purchase(holder, 500, {9, 40, 0})});

  auto closed = services_->Close(senior_, {.asn = kAsn, .payee_reference = "ICBC 6222-0001"});
  ASSERT_TRUE(closed.ok()) << closed.error().message;
  EXPECT_EQ(closed->card.state, CardState::kClosed);
  EXPECT_TRUE(closed->card.blacklisted_at);
  EXPECT_EQ(closed->transfer.kind, "closure");
  EXPECT_EQ(closed->transfer.payee_reference, "ICBC 6222-0001");

  auto early = services_->RunDueTransfers(now_us_ + 6 * kDayUs);
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 70000);

  const std::int64_t clearing_before = AccountBalance(ledger::AccountId::BankClearing());
  now_us_ += 7 * kDayUs;
  auto due = services_->RunDueTransfers(now_us_);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].moved_ed, 29500);
  EXPECT_EQ((*due)[0].refunded, 70000 + 29500);
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 0);
  EXPECT_EQ(AccountBalance(ledger::AccountId::CardFloat(kAsn, ledger::Wallet::kEd)), 0);
  EXPECT_EQ(AccountBalance(ledger::AccountId::BankClearing()), clearing_before + 99500);
  ledger::Ledger ledger(*conn_);
  auto refund = ledger.FindTransfer("refund/" + std::string(kAsn));
  ASSERT_TRUE(refund.ok() && *refund);
  EXPECT_EQ((*refund)->transfer.cause.kind, "refund");
  EXPECT_THAT((*refund)->transfer.cause.details_json, HasSubstr("ICBC 6222-0001"));

  // Exactly once: a second run (and money credited later) refunds nothing more.
  Credit(100, "2026-12");
  auto again = services_->RunDueTransfers(now_us_ + kDayUs);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(AccountBalance(ledger::AccountId::Medical(kPerson)), 100);
  auto records = AuditCardEntries();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().entry.action, "card.refund");
  EXPECT_EQ(records.back().entry.actor, "host");
  ExpectHostClean();
}

TEST_P(ServicesTest, AClosureIsRefusedWhileThePersonHasAnotherCardInUse) {
  NewActiveCard(kAsn);
  NewActiveCard(kNewAsn);
  auto closed = services_->Close(teller_, {.asn = kAsn, .payee_reference = "ICBC 1"});
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error().code, ErrorCode::kUnprocessable);
  auto payee = services_->Close(teller_, {.asn = kAsn, .payee_reference = ""});
  ASSERT_FALSE(payee.ok());
  EXPECT_EQ(payee.error().field, "payee_reference");
  auto card = services_->FindCard(kAsn);
  ASSERT_TRUE(card.ok());
  EXPECT_EQ(card->state, CardState::kActive);
}

TEST_P(ServicesTest, TheHistoryShowsLoadsAndPurchasesWithMerchantNamesPageByPage) {
  NewActiveCard(kAsn);
  Credit(100000);
  auto holder = Holder(kAsn);
  Load(holder, 20000);
  Clear({Purchase(holder, 1250, {11, 5, 0}), Purchase(holder, 300, {11, 6, 0})});

  auto balances = services_->Balances(kAsn);
  ASSERT_TRUE(balances.ok());
  EXPECT_EQ(balances->medical_account, 80000);
  EXPECT_EQ(balances->card_ed, 20000 - 1250 - 300);
  EXPECT_EQ(balances->card_ep, 0);
  EXPECT_EQ(balances->state, CardState::kActive);

  std::vector<HistoryLine> lines;
  std::optional<std::int64_t> cursor;
  int pages = 0;
  for (;;) {
    auto page = services_->History(kAsn, cursor, 1);
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const auto& line : page->lines) lines.push_back(line);
    ++pages;
    if (!page->next_cursor) break;
    cursor = page->next_cursor;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].kind, "load");
  EXPECT_EQ(lines[0].amount, 20000);
  EXPECT_EQ(lines[0].counterparty, "medical/" + std::string(kPerson));
  EXPECT_EQ(lines[1].kind, "purchase");
  EXPECT_EQ(lines[1].amount, -1250);
  EXPECT_EQ(lines[1].balance_after, 18750);
  EXPECT_EQ(lines[1].merchant_id, kMerchant);
  EXPECT_EQ(lines[1].merchant_name, kMerchantName);
  EXPECT_EQ(lines[1].when, "2026-11-25T11:05:00");  // the card's time
  EXPECT_EQ(lines[2].wallet, "ED");

  auto too_many = services_->History(kAsn, std::nullopt, kMaxHistoryPage + 1);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().field, "limit");
}

TEST_P(ServicesTest, TheDayEndReportCountsEachBranchsCardsOfTheDay) {
  NewActiveCard(kAsn);  // applied, issued, activated at B001
  ASSERT_TRUE(services_->ReportLoss(teller_, {.asn = kAsn}).ok());
  Actor other = teller_;
  other.branch = "B002";
  ASSERT_TRUE(services_->Replace(other, {.asn = kAsn, .branch = "B002"}).ok());
  now_us_ += kDayUs;
  ASSERT_TRUE(services_->Apply(teller_, {"320101198001011111", "h2", kBranch}).ok());

  auto report = services_->DayEndReport("2026-11-25", "2026-11-26");
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->size(), 3u);
  EXPECT_EQ((*report)[0].day, "2026-11-25");
  EXPECT_EQ((*report)[0].branch, "B001");
  EXPECT_EQ((*report)[0].applied, 1);
  EXPECT_EQ((*report)[0].issued, 1);
  EXPECT_EQ((*report)[0].activated, 1);
  EXPECT_EQ((*report)[0].lost, 1);
  EXPECT_EQ((*report)[0].replaced, 0);
  EXPECT_EQ((*report)[1].branch, "B002");
  EXPECT_EQ((*report)[1].replaced, 1);
  EXPECT_EQ((*report)[2].day, "2026-11-26");
  EXPECT_EQ((*report)[2].applied, 1);
  auto bad = services_->DayEndReport("25.11.2026", "2026-11-26");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "from");
}

INSTANTIATE_TEST_SUITE_P(Engines, ServicesTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::branch::testing
