// Allocation batches end to end on SQLite and PostgreSQL: the agency exports a month's batch,
// the bank (a real host::Host on its own database) verifies it and credits each medical account,
// the agency reconciles the acknowledgement. A tampered batch posts nothing; a re-import posts
// nothing twice; a refused line is reported and its money returns to the personal-account book.
#include "insurance/allocation_batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "host/host.h"
#include "insurance/monthly_run.h"
#include "keys/key_store.h"
#include "ledger/ledger.h"
#include "test_database.h"

namespace medcard::insurance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kKeyHex[] = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
constexpr char kOtherKeyHex[] = "FF0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
constexpr char kA[] = "110101199001011237";
constexpr char kC[] = "110101195003103452";
constexpr char kD[] = "110101197506204561";  // no card at the bank: refused
constexpr YearMonth kMonth{2026, 11};

BatchKey Key(const char* hex = kKeyHex) { return *BatchKey::FromHex(hex); }

AllocationBatch SmallBatch() { return {"SIA-2026-11", kMonth, {{1, kA, 24'000}, {2, kC, 48'000}}}; }

// Replaces the first `from` in `text` by `to`.
std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(AllocationBatchFile, RoundTripsUnderTheKey) {
  const std::string text = WriteAllocationBatch(SmallBatch(), Key());
  auto parsed = ParseAllocationBatch(text, Key());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->batch_id, "SIA-2026-11");
  EXPECT_EQ(parsed->month, kMonth);
  EXPECT_EQ(parsed->lines, SmallBatch().lines);
  EXPECT_EQ(parsed->total_fen(), 72'000);
  EXPECT_THAT(text, ::testing::Not(HasSubstr("000102030405")));  // the key is not in the file
}

TEST(AllocationBatchFile, RefusesTamperingAWrongKeyAndBadStructure) {
  const std::string text = WriteAllocationBatch(SmallBatch(), Key());
  auto tampered = ParseAllocationBatch(Replace(text, "24000", "94000"), Key());
  ASSERT_FALSE(tampered.ok());
  EXPECT_THAT(tampered.error().message, HasSubstr("authentication failed"));

  auto other_key = ParseAllocationBatch(text, Key(kOtherKeyHex));
  ASSERT_FALSE(other_key.ok());
  EXPECT_THAT(other_key.error().message, HasSubstr("another batch key"));

  auto truncated = ParseAllocationBatch(text.substr(0, text.size() - 5), Key());
  ASSERT_FALSE(truncated.ok());
  EXPECT_THAT(truncated.error().message, HasSubstr("complete line"));

  // The trailer is outside the MAC: its count and total must agree with the lines.
  auto trailer_count =
      ParseAllocationBatch(Replace(text, R"("count":2,"hmac)", R"("count":3,"hmac)"), Key());
  ASSERT_FALSE(trailer_count.ok());
  EXPECT_THAT(trailer_count.error().message, HasSubstr("count"));

  // A well-authenticated batch whose header disagrees with its lines.
  AllocationBatch twice = SmallBatch();
  twice.lines[1].person_id = kA;
  auto duplicate = ParseAllocationBatch(WriteAllocationBatch(twice, Key()), Key());
  ASSERT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.error().message, HasSubstr("appears twice"));

  AllocationBatch zero = SmallBatch();
  zero.lines[0].amount_fen = 0;
  auto zero_amount = ParseAllocationBatch(WriteAllocationBatch(zero, Key()), Key());
  ASSERT_FALSE(zero_amount.ok());
  EXPECT_THAT(zero_amount.error().message, HasSubstr("line 2: amount_fen"));

  EXPECT_FALSE(BatchKey::FromHex("0011").ok());
}

TEST(AcknowledgementFile, RoundTripsAndChecksItsTotals) {
  Acknowledgement ack{"SIA-2026-11",
                      kMonth,
                      {{{1, kA, 24'000}, LineOutcome::kCredited, ""},
                       {{2, kC, 48'000}, LineOutcome::kRefused, "no medical account"}}};
  const std::string text = WriteAcknowledgement(ack, Key());
  auto parsed = ParseAcknowledgement(text, Key());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->lines, ack.lines);
  auto tampered = ParseAcknowledgement(
      Replace(text, R"("outcome":"refused")", R"("outcome":"credited")"), Key());
  EXPECT_FALSE(tampered.ok());
}

// The agency's database with a finished month, and the bank's host on its own database.
class AllocationBatchTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    agency_db_ = OpenMigrated({&Migrations()});
    ASSERT_NE(agency_db_, nullptr);
    auto agency = agency_db_->Connect();
    ASSERT_TRUE(agency.ok());
    agency_ = std::move(agency).value();

    auto policy = LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                                 "/../../config/policy/beijing-example.json");
    ASSERT_TRUE(policy.ok()) << policy.error().message;
    policy->effective_from = {2026, 1, 1};
    policy->average_annual_wage_fen = 12'000'000;
    ASSERT_TRUE(policies_.Add(*policy).ok());
    Registry registry(*agency_);
    ASSERT_TRUE(registry.AddUnit({"U001", "Capital Steel", "62220202001122", "110000"}).ok());
    for (auto [ssn, category] :
         {std::pair{kA, PersonCategory::kEmployee}, std::pair{kC, PersonCategory::kRetiree},
          std::pair{kD, PersonCategory::kEmployee}}) {
      auto enrolled = registry.Enrol({.ssn = ssn,
                                      .name = "Person",
                                      .birth_date = BirthDateOfSsn(ssn),
                                      .unit_code = "U001",
                                      .wage_base_fen = std::string(ssn) == kD ? 5'000'000 : 800'000,
                                      .category = category,
                                      .effective = {2026, 1, 1}});
      ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
    }
    auto run = RunMonth(*agency_, policies_, kMonth);
    ASSERT_TRUE(run.ok()) << run.error().message;
    ASSERT_EQ(run->personal_account_fen, 24'000 + 48'000 + 120'000);

    bank_db_ = OpenMigrated({&ledger::Migrations(), &host::Migrations()});
    ASSERT_NE(bank_db_, nullptr);
    auto bank = bank_db_->Connect();
    ASSERT_TRUE(bank.ok());
    bank_ = std::move(bank).value();
    auto keys = keys::CreateSoftwareKeyStore(
        (fs::path(test_support::NewTempDir("medcard-alloc")) / "keys").string(), "bank test", true);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    key_store_ = std::move(keys).value();
    host_ = std::make_unique<host::Host>(*bank_, *key_store_);
    ASSERT_TRUE(host_->RegisterCard({HexToBytes("11000000000000000001"), "h1", kA}).ok());
    ASSERT_TRUE(host_->RegisterCard({HexToBytes("11000000000000000002"), "h2", kC}).ok());
  }
  void TearDown() override { ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF"); }

  std::unique_ptr<store::Database> OpenMigrated(std::vector<const store::MigrationSet*> sets) {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    if (!url.ok()) return nullptr;
    auto db = store::Database::Open(*url);
    if (!db.ok()) return nullptr;
    auto conn = (*db)->Connect();
    if (!conn.ok()) return nullptr;
    for (const auto* set : sets) {
      if (!store::Migrate(**conn, *set).ok()) return nullptr;
    }
    return std::move(db).value();
  }

  // The bank's posting: a person without a medical account (no card registered) is refused.
  CreditLine BankCredit() {
    return [this](const std::string& batch_id,
                  const AllocationLine& line) -> Result<std::optional<std::string>> {
      ledger::Ledger ledger(*bank_);
      auto account = ledger.FindAccount(ledger::AccountId::Medical(line.person_id));
      if (!account.ok()) return MakeError(account.error().message);
      if (!account->has_value()) {
        return std::optional<std::string>("no medical account at the bank for this person");
      }
      auto credited = host_->CreditMedicalAccount(batch_id, line.person_id, line.amount_fen);
      if (!credited.ok()) return std::optional<std::string>(credited.error().message);
      return std::optional<std::string>();
    };
  }

  Fen MedicalBalance(const std::string& person) {
    ledger::Ledger ledger(*bank_);
    auto account = ledger.FindAccount(ledger::AccountId::Medical(person));
    return account.ok() && account->has_value() ? (*account)->balance : -1;
  }
  std::int64_t BankTransfers() {
    auto rows = bank_->Query("SELECT COUNT(*) FROM ledger_transfers");
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  std::unique_ptr<store::Database> agency_db_, bank_db_;
  std::unique_ptr<store::Connection> agency_, bank_;
  std::unique_ptr<keys::KeyStore> key_store_;
  std::unique_ptr<host::Host> host_;
  PolicyBook policies_;
};

TEST_P(AllocationBatchTest, ExportIsTheMonthsOneBatchAndAgainTheSameFile) {
  auto exported = ExportAllocations(*agency_, kMonth, Key());
  ASSERT_TRUE(exported.ok()) << exported.error().message;
  EXPECT_EQ(exported->batch_id, "SIA-2026-11");
  EXPECT_EQ(exported->count, 3);
  EXPECT_EQ(exported->total_fen, 192'000);
  EXPECT_FALSE(exported->already_exported);
  auto again = ExportAllocations(*agency_, kMonth, Key());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_exported);
  EXPECT_EQ(again->text, exported->text);
  auto not_run = ExportAllocations(*agency_, {2026, 12}, Key());
  ASSERT_FALSE(not_run.ok());
  EXPECT_EQ(not_run.error().field, "month");
  auto problems = CheckBooks(*agency_);
  ASSERT_TRUE(problems.ok());
  EXPECT_TRUE(problems->empty()) << ::testing::PrintToString(*problems);
}

TEST_P(AllocationBatchTest, BankCreditsEachLineOnceAndRefusesAPersonWithoutAccount) {
  auto exported = ExportAllocations(*agency_, kMonth, Key());
  ASSERT_TRUE(exported.ok());
  const auto before = BankTransfers();
  auto ack = ImportAllocationBatch(exported->text, Key(), BankCredit());
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  ASSERT_EQ(ack->lines.size(), 3u);
  EXPECT_EQ(MedicalBalance(kA), 24'000);
  EXPECT_EQ(MedicalBalance(kC), 48'000);
  EXPECT_EQ(MedicalBalance(kD), -1);  // no account was made for the refused line
  for (const auto& line : ack->lines) {
    if (line.allocation.person_id == kD) {
      EXPECT_EQ(line.outcome, LineOutcome::kRefused);
      EXPECT_THAT(line.reason, HasSubstr("no medical account"));
    } else {
      EXPECT_EQ(line.outcome, LineOutcome::kCredited);
    }
  }
  const auto after = BankTransfers();
  EXPECT_EQ(after, before + 2);

  // The same file again: the same acknowledgement, nothing posted twice.
  auto reimport = ImportAllocationBatch(exported->text, Key(), BankCredit());
  ASSERT_TRUE(reimport.ok());
  EXPECT_EQ(reimport->lines, ack->lines);
  EXPECT_EQ(BankTransfers(), after);
  EXPECT_EQ(MedicalBalance(kA), 24'000);
}

TEST_P(AllocationBatchTest, ATamperedBatchIsRefusedByTheBankWithNothingPosted) {
  auto exported = ExportAllocations(*agency_, kMonth, Key());
  ASSERT_TRUE(exported.ok());
  const auto before = BankTransfers();
  const std::string forged =
      Replace(exported->text, "\"amount_fen\":24000", "\"amount_fen\":2400000");
  ASSERT_NE(forged, exported->text);
  auto refused = ImportAllocationBatch(forged, Key(), BankCredit());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("nothing credited"));
  EXPECT_THAT(refused.error().message, HasSubstr("authentication failed"));
  // A dropped line (the attacker cannot recompute the MAC) is refused the same way.
  const auto first_line = exported->text.find('\n') + 1;
  const auto second_line = exported->text.find('\n', first_line) + 1;
  std::string dropped = exported->text;
  dropped.erase(first_line, second_line - first_line);
  EXPECT_FALSE(ImportAllocationBatch(dropped, Key(), BankCredit()).ok());
  EXPECT_EQ(BankTransfers(), before);
  EXPECT_EQ(MedicalBalance(kA), 0);
}

TEST_P(AllocationBatchTest, ReconciliationReportsTheRefusedLineAndEveryFenIsAccountedFor) {
  auto exported = ExportAllocations(*agency_, kMonth, Key());
  ASSERT_TRUE(exported.ok());
  auto ack = ImportAllocationBatch(exported->text, Key(), BankCredit());
  ASSERT_TRUE(ack.ok());
  const std::string ack_text = WriteAcknowledgement(*ack, Key());

  // An acknowledgement that does not match the batch records nothing.
  Acknowledgement wrong = *ack;
  wrong.lines[0].allocation.amount_fen += 1;
  auto mismatch = ReconcileAcknowledgement(*agency_, WriteAcknowledgement(wrong, Key()), Key());
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.error().message, HasSubstr("line 1 differs"));

  auto report = ReconcileAcknowledgement(*agency_, ack_text, Key());
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_FALSE(report->already_reconciled);
  EXPECT_EQ(report->credited_count, 2);
  EXPECT_EQ(report->credited_fen, 72'000);
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_EQ(report->refused[0].allocation.person_id, kD);
  EXPECT_EQ(report->refused_fen, 120'000);
  EXPECT_EQ(report->credited_fen + report->refused_fen, exported->total_fen);

  // The refused money is back in the personal-account book, not lost and not in the pool.
  auto balances = BookBalances(*agency_);
  ASSERT_TRUE(balances.ok());
  for (const auto& b : *balances) {
    if (b.account == "personal_accounts") {
      EXPECT_EQ(b.balance_fen, 120'000);
    }
    if (b.account == "bank_allocations") {
      EXPECT_EQ(b.balance_fen, 72'000);
    }
  }
  auto problems = CheckBooks(*agency_);
  ASSERT_TRUE(problems.ok());
  EXPECT_TRUE(problems->empty()) << ::testing::PrintToString(*problems);

  auto again = ReconcileAcknowledgement(*agency_, ack_text, Key());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->already_reconciled);
  auto tampered = ReconcileAcknowledgement(
      *agency_, Replace(ack_text, "no medical account", "No medical account"), Key());
  ASSERT_FALSE(tampered.ok());
  EXPECT_EQ(tampered.error().code, access::ErrorCode::kInvalid);
}

INSTANTIATE_TEST_SUITE_P(Engines, AllocationBatchTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
