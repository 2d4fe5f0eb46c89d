// The host fed by real cards: test cards and a PSAM issued from the embedded test key set, a
// test-only software key store holding the same keys, loads and purchases run by the terminal's
// purse flows through in-process readers, on both database engines.
#include "host/host.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <thread>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::host {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ResponseCode = iso8583::ResponseCode;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kPerson[] = "310101199001011234";
constexpr char kMerchant[] = "H0001";

// The terminal's issuer: every load goes to the host with the next trace number.
class HostAuthoriser final : public terminal::LoadAuthoriser {
 public:
  explicit HostAuthoriser(Host& host) : host_(host) {}
  Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
    last_request = {.terminal_number = init.terminal_number,
                    .trace = ++trace,
                    .asn = init.asn,
                    .type = init.type,
                    .amount = init.amount,
                    .old_balance = init.old_balance,
                    .online_serial = init.online_serial,
                    .key_version = init.key_version,
                    .random = init.random,
                    .mac1 = init.mac1,
                    .date = init.date,
                    .time = init.time};
    auto answer = host_.AuthoriseLoad(last_request);
    if (!answer.ok()) {
      last_code = answer.error().code;
      return Error(answer.error());
    }
    if (lose_mac2) return MakeError("no answer from the host");  // the card is never credited
    last_mac2 = answer->mac2;
    return answer->mac2;
  }
  Status Confirm(const terminal::LoadInitialisation&, ByteView tac) override {
    last_tac = Bytes(tac.begin(), tac.end());
    if (!confirm) return Status::Ok();  // the confirmation is lost on the way
    return host_.ConfirmLoad(last_request.terminal_number, trace, tac);
  }

  Host& host_;
  std::uint32_t trace = 0;
  bool confirm = true;
  bool lose_mac2 = false;
  LoadRequest last_request;
  Bytes last_tac;
  Bytes last_mac2;
  std::optional<ResponseCode> last_code;
};

PurchaseUpload Upload(const terminal::PurchaseResult& p) {
  return {.asn = p.asn,
          .type = p.type,
          .amount = p.amount,
          .balance_before = p.balance_before,
          .balance_after = p.balance_after,
          .card_offline_serial = p.card_offline_serial,
          .terminal_serial = p.terminal_serial,
          .terminal_number = p.terminal_number,
          .date = p.date,
          .time = p.time,
          .key_version = 1,
          .tac = p.tac};
}

class HostTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-host");
    auto key_store = test_support::TestKeyStore((fs::path(dir_) / "keys").string(), "host test");
    ASSERT_TRUE(key_store.ok()) << key_store.error().message;
    key_store_ = std::move(key_store).value();

    auto db = test_support::NewHostDatabase(GetParam());
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db->database);
    conn_ = std::move(db->connection);
    host_ = std::make_unique<Host>(*conn_, *key_store_);
    authoriser_ = std::make_unique<HostAuthoriser>(*host_);

    ASSERT_TRUE(host_->RegisterMerchant({kMerchant, "City Hospital", "hospital-3A"}).ok());
    auto terminal = host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_});
    ASSERT_TRUE(terminal.ok()) << terminal.error().message;
    auto card = host_->RegisterCard({asn_, "holder-1", kPerson});
    ASSERT_TRUE(card.ok()) << card.error().message;
    ASSERT_TRUE(host_->CreditMedicalAccount("2026-11", kPerson, 100000).ok());

    auto cardholder = test_support::NewTestCardholder(asn_, "123456");
    ASSERT_TRUE(cardholder.ok()) << cardholder.error().message;
    cardholder_ = std::move(cardholder).value();
    auto psam = test_support::NewTestPsam(psam_serial_, terminal_number_);
    ASSERT_TRUE(psam.ok()) << psam.error().message;
    psam_ = std::move(psam).value();
  }
  void TearDown() override {
    host_.reset();
    key_store_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  Result<terminal::LoadResult> Load(std::uint32_t amount) {
    return terminal::Load(*cardholder_.reader, *authoriser_, cardholder_.app,
                          {terminal::Wallet::kEd, amount, terminal_number_, date_, time_});
  }
  terminal::PurchaseResult Purchase(std::uint32_t amount, TimeOfDay time = {10, 0, 0}) {
    auto p = terminal::Purchase(*cardholder_.reader, *psam_.reader, cardholder_.app,
                                {terminal::Wallet::kEd, amount, date_, time});
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? *p : terminal::PurchaseResult{};
  }
  std::vector<ClearingOutcome> Clear(const std::vector<PurchaseUpload>& batch) {
    auto r = host_->ClearPurchases(batch);
    EXPECT_TRUE(r.ok()) << r.error().message;
    std::vector<ClearingOutcome> outcomes;
    if (r.ok()) {
      for (const auto& one : *r) outcomes.push_back(one.outcome);
    }
    return outcomes;
  }
  Balances Balance() {
    auto b = host_->BalanceInquiry(asn_);
    EXPECT_TRUE(b.ok()) << b.error().message;
    return b.ok() ? *b : Balances{};
  }
  std::int64_t MerchantBalance() {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(ledger::AccountId::Merchant(kMerchant));
    return account.ok() && *account ? (*account)->balance : -1;
  }
  std::int64_t SuspenseBalance() {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(ledger::AccountId::Suspense());
    return account.ok() && *account ? (*account)->balance : 0;
  }
  std::vector<std::string> ReviewReasons() {
    auto queue = host_->ReviewQueue();
    EXPECT_TRUE(queue.ok());
    std::vector<std::string> reasons;
    if (queue.ok()) {
      for (const auto& item : *queue) reasons.push_back(item.reason);
    }
    return reasons;
  }
  Bytes GetSamTotals(const Bytes& challenge) {
    auto totals = reader::Send(*psam_.reader,
                               iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge, 22));
    EXPECT_TRUE(totals.ok() && totals->ok());
    return totals.ok() ? totals->data : Bytes{};
  }
  void ExpectHostClean() {
    auto problems = host_->CheckHost();
    ASSERT_TRUE(problems.ok()) << problems.error().message;
    for (const auto& p : *problems) ADD_FAILURE() << p;
  }

  std::string dir_;
  std::unique_ptr<keys::KeyStore> key_store_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<Host> host_;
  std::unique_ptr<HostAuthoriser> authoriser_;
  Bytes asn_ = HexToBytes("11000000000000000301");
  Bytes psam_serial_ = HexToBytes("50000000000000000301");
  Bytes terminal_number_ = HexToBytes("000000000301");
  Date date_{2026, 11, 25};
  TimeOfDay time_{9, 15, 0};
  test_support::TestCardholder cardholder_;
  test_support::TestPsam psam_;
};

TEST_P(HostTest, RegisteringATerminalGeneratesItsMasterKeyInTheKeyStore) {
  EXPECT_TRUE(key_store_->Find("tmk/000000000301").ok());
  // A replay of the same registration is fine; another merchant for the number is not.
  EXPECT_TRUE(host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_}).ok());
  ASSERT_TRUE(host_->RegisterMerchant({"P0002", "Pharmacy", "pharmacy"}).ok());
  EXPECT_FALSE(host_->RegisterTerminal({terminal_number_, "P0002", psam_serial_}).ok());
}

TEST_P(HostTest, TerminalsAreListedInOrderWithTheirMerchantAndStatus) {
  ASSERT_TRUE(host_->RegisterMerchant({"P0002", "Corner Pharmacy", "pharmacy"}).ok());
  ASSERT_TRUE(host_
                  ->RegisterTerminal({HexToBytes("000000000105"), "P0002",
                                      HexToBytes("50000000000000000105"), "POS00105"})
                  .ok());
  auto terminals = host_->Terminals();
  ASSERT_TRUE(terminals.ok()) << terminals.error().message;
  ASSERT_EQ(terminals->size(), 2u);
  const TerminalInfo& first = (*terminals)[0];
  EXPECT_EQ(first.terminal_number, "000000000105");
  EXPECT_EQ(first.terminal_id, "POS00105");
  EXPECT_EQ(first.merchant_id, "P0002");
  EXPECT_EQ(first.merchant_name, "Corner Pharmacy");
  EXPECT_EQ(first.psam_serial, "50000000000000000105");
  EXPECT_EQ(first.status, "active");
  const TerminalInfo& second = (*terminals)[1];
  EXPECT_EQ(second.terminal_number, "000000000301");
  EXPECT_EQ(second.terminal_id, "00000301");
  EXPECT_EQ(second.merchant_id, kMerchant);
  EXPECT_EQ(second.merchant_name, "City Hospital");
  EXPECT_EQ(second.status, "active");
}

TEST_P(HostTest, ATerminalIsBlockedAndUnblockedIdempotently) {
  auto status_of = [&]() -> std::string {
    auto terminals = host_->Terminals();
    EXPECT_TRUE(terminals.ok());
    return terminals.ok() && terminals->size() == 1 ? (*terminals)[0].status : "";
  };
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "blocked").ok());
  EXPECT_EQ(status_of(), "blocked");
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "blocked").ok());  // again: no change
  EXPECT_EQ(status_of(), "blocked");
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "active").ok());
  EXPECT_EQ(status_of(), "active");
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "active").ok());
  EXPECT_EQ(status_of(), "active");
}

TEST_P(HostTest, BlockingAnUnknownTerminalOrAnUnknownStatusIsRefused) {
  auto unknown = host_->SetTerminalStatus(HexToBytes("000000000999"), "blocked");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ResponseCode::kTerminalNotRegistered);
  EXPECT_THAT(unknown.error().message, HasSubstr("000000000999"));
  auto bad_status = host_->SetTerminalStatus(terminal_number_, "stolen");
  ASSERT_FALSE(bad_status.ok());
  EXPECT_EQ(bad_status.error().code, ResponseCode::kFormatError);
  auto terminals = host_->Terminals();
  ASSERT_TRUE(terminals.ok());
  ASSERT_EQ(terminals->size(), 1u);
  EXPECT_EQ((*terminals)[0].status, "active");
}

TEST_P(HostTest, AnOnlineLoadIsPendingUntilTheCardsTacCompletesIt) {
  authoriser_->confirm = false;
  auto loaded = Load(30000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  // Reserved on the medical account, not yet on the card float.
  EXPECT_EQ(Balance().medical_account, 70000);
  EXPECT_EQ(Balance().card_ed, 0);
  ExpectHostClean();

  auto confirmed = host_->ConfirmLoad(terminal_number_, authoriser_->trace, loaded->tac);
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_EQ(Balance().medical_account, 70000);
  EXPECT_EQ(Balance().card_ed, 30000);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 30000u);
  // A replayed confirmation changes nothing.
  EXPECT_TRUE(host_->ConfirmLoad(terminal_number_, authoriser_->trace, loaded->tac).ok());
  EXPECT_EQ(Balance().card_ed, 30000);
  ExpectHostClean();
}

TEST_P(HostTest, AReplayedLoadRequestGetsTheFirstMac2AndReservesOnce) {
  auto loaded = Load(1000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  auto again = host_->AuthoriseLoad(authoriser_->last_request);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->mac2, authoriser_->last_mac2);
  EXPECT_EQ(Balance().medical_account, 99000);
  EXPECT_EQ(Balance().card_ed, 1000);
  ExpectHostClean();
}

TEST_P(HostTest, AForgedMac1IsRefusedWithAMacErrorAndReservesNothing) {
  LoadRequest forged;
  auto loaded = Load(500);
  ASSERT_TRUE(loaded.ok());
  forged = authoriser_->last_request;
  forged.trace = 99;
  forged.amount = 50000;  // more than the card signed
  auto refused = host_->AuthoriseLoad(forged);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kMacError);
  EXPECT_EQ(Balance().medical_account, 99500);
  ExpectHostClean();
}

TEST_P(HostTest, ALoadBeyondTheMedicalAccountIsRefusedAsInsufficientFunds) {
  auto refused = Load(100001);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(authoriser_->last_code, ResponseCode::kInsufficientFunds);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 0u);
  EXPECT_EQ(Balance().medical_account, 100000);
  ExpectHostClean();
}

TEST_P(HostTest, AReversedLoadReleasesTheReservation) {
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(2000).ok());
  EXPECT_EQ(Balance().medical_account, 98000);
  ASSERT_TRUE(host_->ReverseLoad(terminal_number_, authoriser_->trace).ok());
  EXPECT_EQ(Balance().medical_account, 100000);
  EXPECT_EQ(Balance().card_ed, 0);
  // A completed load is never reversed.
  authoriser_->confirm = true;
  ASSERT_TRUE(Load(100).ok());
  auto refused = host_->ReverseLoad(terminal_number_, authoriser_->trace);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kInvalidTransaction);
}

TEST_P(HostTest, PurchasesAreClearedToTheMerchantAndDuplicatesArePostedOnce) {
  ASSERT_TRUE(Load(50000).ok());
  auto first = Upload(Purchase(1250));
  auto second = Upload(Purchase(8630));
  EXPECT_THAT(Clear({first, second, first}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted,
                          ClearingOutcome::kDuplicate));
  EXPECT_THAT(Clear({second}), ElementsAre(ClearingOutcome::kDuplicate));
  EXPECT_EQ(MerchantBalance(), 1250 + 8630);
  EXPECT_EQ(Balance().card_ed, 50000 - 1250 - 8630);
  EXPECT_EQ(Balance().card_ed, *terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd));
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

TEST_P(HostTest, AForgedTacGoesToSuspenseAndPaysTheMerchantNothing) {
  ASSERT_TRUE(Load(5000).ok());
  auto forged = Upload(Purchase(700));
  forged.tac[0] ^= 0x01;
  EXPECT_THAT(Clear({forged}), ElementsAre(ClearingOutcome::kSuspense));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonTacInvalid));
  EXPECT_EQ(MerchantBalance(), 0);
  ExpectHostClean();
}

TEST_P(HostTest, ASerialGapIsReportedUntilTheMissingUploadClosesIt) {
  ASSERT_TRUE(Load(10000).ok());
  auto first = Upload(Purchase(100));
  auto missing = Upload(Purchase(200));
  auto third = Upload(Purchase(300));
  EXPECT_THAT(Clear({first, third}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted));
  auto gaps = host_->OpenGaps();
  ASSERT_TRUE(gaps.ok());
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].offline_serial, missing.card_offline_serial);
  // The card float already follows the card; the missing debit waits in suspense.
  EXPECT_EQ(Balance().card_ed, 10000 - 600);
  EXPECT_EQ(SuspenseBalance(), 200);
  ExpectHostClean();

  EXPECT_THAT(Clear({missing}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_TRUE(host_->OpenGaps()->empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 600);
  ExpectHostClean();
}

TEST_P(HostTest, ABalanceChainBreakGoesToSuspense) {
  ASSERT_TRUE(Load(10000).ok());
  auto purchase = Upload(Purchase(400));
  // The TAC does not cover balances: a terminal that reports a wrong one breaks the chain.
  purchase.balance_before += 1000;
  purchase.balance_after += 1000;
  EXPECT_THAT(Clear({purchase}), ElementsAre(ClearingOutcome::kSuspense));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonBalanceChain));
  EXPECT_EQ(MerchantBalance(), 0);
  ExpectHostClean();
}

// The everyday order at a hospital: purchases offline during the day, a load online in
// between, the purchases uploaded at day end. The load's INITIALIZE FOR LOAD shows a lower
// balance than the host knew (purchases in transit): that money waits in suspense until their
// upload pays it to the merchant.
TEST_P(HostTest, APurchaseMadeBeforeALoadButUploadedAfterItIsPaidToTheMerchant) {
  ASSERT_TRUE(Load(30000).ok());
  const auto before_load = Purchase(1000, {10, 0, 0});
  ASSERT_TRUE(Load(2000).ok());
  EXPECT_EQ(Balance().card_ed, 31000) << "the float is the card's balance as the load showed it";
  EXPECT_EQ(SuspenseBalance(), 1000) << "the purchase in transit waits in suspense";
  ExpectHostClean();
  const auto after_load = Purchase(500, {11, 0, 0});
  EXPECT_THAT(Clear({Upload(before_load), Upload(after_load)}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted));
  EXPECT_EQ(Balance().card_ed, 30500);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 30500u);
  EXPECT_EQ(MerchantBalance(), 1500);
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

TEST_P(HostTest, APurchaseBeforeALoadUploadedAfterTheLaterOnesClosesItsGap) {
  ASSERT_TRUE(Load(30000).ok());
  const auto first = Purchase(1000, {9, 0, 0});
  EXPECT_THAT(Clear({Upload(first)}), ElementsAre(ClearingOutcome::kAccepted));
  const auto before_load = Purchase(700, {10, 0, 0});
  ASSERT_TRUE(Load(2000).ok());
  const auto after_load = Purchase(500, {11, 0, 0});
  // Another terminal uploads the later purchase first: the earlier one is a gap, then arrives.
  EXPECT_THAT(Clear({Upload(after_load)}), ElementsAre(ClearingOutcome::kAccepted));
  ExpectHostClean();
  EXPECT_THAT(Clear({Upload(before_load)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_EQ(Balance().card_ed, 29800);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 29800u);
  EXPECT_EQ(MerchantBalance(), 2200);
  EXPECT_EQ(SuspenseBalance(), 0);
  auto gaps = host_->OpenGaps();
  ASSERT_TRUE(gaps.ok());
  EXPECT_TRUE(gaps->empty());
  ExpectHostClean();
}

// Offline purchases at two terminals of different merchants: each terminal uploads at its own
// day end, so the card's later purchase may reach the host first, before anything of the card
// was cleared (docs/host.md "Clearing rules" 5: a wallet's gaps count from serial 0).
class HostTwoTerminalsTest : public HostTest {
 protected:
  void SetUp() override {
    HostTest::SetUp();
    ASSERT_TRUE(host_->RegisterMerchant({kOtherMerchant, "District Pharmacy", "pharmacy-7"}).ok());
    auto terminal = host_->RegisterTerminal({other_terminal_, kOtherMerchant, other_psam_serial_});
    ASSERT_TRUE(terminal.ok()) << terminal.error().message;
    auto psam = test_support::NewTestPsam(other_psam_serial_, other_terminal_);
    ASSERT_TRUE(psam.ok()) << psam.error().message;
    other_psam_ = std::move(psam).value();
  }
  // A purchase at the pharmacy's terminal (the fixture's Purchase is at the hospital's).
  terminal::PurchaseResult PurchaseAtPharmacy(std::uint32_t amount, TimeOfDay time) {
    auto p = terminal::Purchase(*cardholder_.reader, *other_psam_.reader, cardholder_.app,
                                {terminal::Wallet::kEd, amount, date_, time});
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? *p : terminal::PurchaseResult{};
  }
  std::int64_t PharmacyBalance() {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(ledger::AccountId::Merchant(kOtherMerchant));
    return account.ok() && *account ? (*account)->balance : -1;
  }
  std::vector<std::int64_t> OpenGapSerials() {
    auto gaps = host_->OpenGaps();
    EXPECT_TRUE(gaps.ok());
    std::vector<std::int64_t> serials;
    if (gaps.ok()) {
      for (const auto& gap : *gaps) serials.push_back(gap.offline_serial);
    }
    return serials;
  }
  void ExpectFloatIsTheCardsBalance() {
    EXPECT_EQ(Balance().card_ed, *terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd));
  }

  static constexpr char kOtherMerchant[] = "P0007";
  Bytes other_psam_serial_ = HexToBytes("50000000000000000302");
  Bytes other_terminal_ = HexToBytes("000000000302");
  test_support::TestPsam other_psam_;
};

TEST_P(HostTwoTerminalsTest, AFreshCardsLaterPurchaseUploadedFirstOpensAGapTheEarlierOneCloses) {
  ASSERT_TRUE(Load(10000).ok());
  const auto at_hospital = Purchase(1000, {9, 0, 0});             // offline serial 0
  const auto at_pharmacy = PurchaseAtPharmacy(2500, {10, 0, 0});  // offline serial 1
  ASSERT_EQ(at_hospital.card_offline_serial, 0);
  ASSERT_EQ(at_pharmacy.card_offline_serial, 1);

  EXPECT_THAT(Clear({Upload(at_pharmacy)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_EQ(PharmacyBalance(), 2500);
  EXPECT_THAT(OpenGapSerials(), ElementsAre(0)) << "the hospital's upload is still to come";
  EXPECT_EQ(SuspenseBalance(), 1000) << "what serial 0 took from the card waits in suspense";
  ExpectFloatIsTheCardsBalance();
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();

  EXPECT_THAT(Clear({Upload(at_hospital)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_EQ(MerchantBalance(), 1000);
  EXPECT_EQ(PharmacyBalance(), 2500);
  EXPECT_TRUE(OpenGapSerials().empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(Balance().card_ed, 10000 - 3500);
  ExpectFloatIsTheCardsBalance();
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
  // Both again, in either order: duplicates, nothing posted twice.
  EXPECT_THAT(Clear({Upload(at_hospital), Upload(at_pharmacy)}),
              ElementsAre(ClearingOutcome::kDuplicate, ClearingOutcome::kDuplicate));
  EXPECT_EQ(MerchantBalance() + PharmacyBalance(), 3500);
}

TEST_P(HostTwoTerminalsTest, SeveralMissingSerialsEachStayAGapUntilItsUploadArrives) {
  ASSERT_TRUE(Load(10000).ok());
  const auto first = Purchase(100, {9, 0, 0});
  const auto second = Purchase(200, {9, 30, 0});
  const auto third = PurchaseAtPharmacy(400, {10, 0, 0});
  EXPECT_THAT(Clear({Upload(third)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_THAT(OpenGapSerials(), ElementsAre(0, 1));
  EXPECT_EQ(SuspenseBalance(), 300);
  ExpectHostClean();
  EXPECT_THAT(Clear({Upload(second)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_THAT(OpenGapSerials(), ElementsAre(0));
  EXPECT_EQ(SuspenseBalance(), 100);
  ExpectHostClean();
  EXPECT_THAT(Clear({Upload(first)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_TRUE(OpenGapSerials().empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 300);
  EXPECT_EQ(PharmacyBalance(), 400);
  ExpectFloatIsTheCardsBalance();
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

// The earlier purchase made before a load: its money went to suspense at the load (in transit),
// and the later one starts from the balance the load left, so nothing more is held for the gap.
TEST_P(HostTwoTerminalsTest, APurchaseBeforeALoadStillClosesTheGapTheLaterTerminalOpened) {
  ASSERT_TRUE(Load(10000).ok());
  const auto before_load = Purchase(1000, {9, 0, 0});
  ASSERT_TRUE(Load(500).ok());
  EXPECT_EQ(SuspenseBalance(), 1000);
  const auto after_load = PurchaseAtPharmacy(2000, {11, 0, 0});
  EXPECT_THAT(Clear({Upload(after_load)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_THAT(OpenGapSerials(), ElementsAre(0));
  EXPECT_EQ(SuspenseBalance(), 1000);
  ExpectFloatIsTheCardsBalance();
  ExpectHostClean();
  EXPECT_THAT(Clear({Upload(before_load)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_TRUE(OpenGapSerials().empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 1000);
  EXPECT_EQ(PharmacyBalance(), 2000);
  EXPECT_EQ(Balance().card_ed, 10000 - 1000 + 500 - 2000);
  ExpectFloatIsTheCardsBalance();
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

// Both purchases made before a load, uploaded after it, the later one first: both are in transit.
TEST_P(HostTwoTerminalsTest, TwoPurchasesBeforeALoadUploadedAfterItInEitherOrderAreBothPaid) {
  ASSERT_TRUE(Load(10000).ok());
  const auto at_hospital = Purchase(1000, {9, 0, 0});
  const auto at_pharmacy = PurchaseAtPharmacy(2500, {10, 0, 0});
  ASSERT_TRUE(Load(500).ok());
  EXPECT_EQ(SuspenseBalance(), 3500);
  EXPECT_THAT(Clear({Upload(at_pharmacy)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_THAT(OpenGapSerials(), ElementsAre(0));
  EXPECT_EQ(SuspenseBalance(), 1000);
  ExpectHostClean();
  EXPECT_THAT(Clear({Upload(at_hospital)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_TRUE(OpenGapSerials().empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 1000);
  EXPECT_EQ(PharmacyBalance(), 2500);
  EXPECT_EQ(Balance().card_ed, 10000 - 3500 + 500);
  ExpectFloatIsTheCardsBalance();
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

// A first upload whose balance the card cannot have had is not a gap: it waits for review,
// nothing moves and no gap is opened.
TEST_P(HostTwoTerminalsTest, AFreshCardsFirstUploadWithAnImpossibleBalanceStillGoesToSuspense) {
  ASSERT_TRUE(Load(10000).ok());
  (void)Purchase(1000, {9, 0, 0});
  auto wrong = Upload(PurchaseAtPharmacy(2500, {10, 0, 0}));
  // The TAC does not cover balances: more than the host knows the card ever held.
  wrong.balance_before += 5000;
  wrong.balance_after += 5000;
  EXPECT_THAT(Clear({wrong}), ElementsAre(ClearingOutcome::kSuspense));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonBalanceChain));
  EXPECT_TRUE(OpenGapSerials().empty());
  EXPECT_EQ(PharmacyBalance(), 0);
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(Balance().card_ed, 10000);
  ExpectHostClean();
}

INSTANTIATE_TEST_SUITE_P(Engines, HostTwoTerminalsTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(HostTest, ABlacklistedCardIsRefusedAfterItsBlacklistingTimeAndAcceptedBefore) {
  ASSERT_TRUE(Load(10000).ok());
  auto before = Upload(Purchase(100, {10, 0, 0}));
  auto after = Upload(Purchase(200, {12, 0, 0}));
  auto version = host_->AddToBlacklist(asn_, "20261125110000");
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_THAT(Clear({before, after}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kSuspense));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonBlacklisted));
  EXPECT_EQ(MerchantBalance(), 100);
  // The card really spent it: the float follows the card, the money waits in suspense.
  EXPECT_EQ(Balance().card_ed, 10000 - 300);
  EXPECT_EQ(SuspenseBalance(), 200);
  // A blacklisted card gets no load.
  EXPECT_FALSE(Load(100).ok());
  EXPECT_EQ(authoriser_->last_code, ResponseCode::kLostCard);
  ExpectHostClean();
}

// The review queue: a lost card's purchase after its loss report is held in suspense until a
// reviewer refunds the cardholder (the scheme's rule: not charged) or pays the merchant.
TEST_P(HostTest, AReviewerRefundsALostCardsPurchaseToTheCardholder) {
  ASSERT_TRUE(Load(10000).ok());
  auto after = Upload(Purchase(200, {12, 0, 0}));
  ASSERT_TRUE(host_->AddToBlacklist(asn_, "20261125110000").ok());
  EXPECT_THAT(Clear({after}), ElementsAre(ClearingOutcome::kSuspense));
  auto queue = host_->ReviewQueue();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  const SuspenseItem item = (*queue)[0];
  EXPECT_TRUE(item.money_held);
  EXPECT_EQ(item.amount, 200);

  // Money held cannot just be rejected, and a decision needs a reviewer.
  auto rejected = host_->ResolveSuspense({item.id, SuspenseDecision::kReject, "rita", "lost"});
  ASSERT_FALSE(rejected.ok());
  EXPECT_THAT(rejected.error().message, HasSubstr("pay the merchant or refund"));
  EXPECT_FALSE(host_->ResolveSuspense({item.id, SuspenseDecision::kRefundCardholder, "", ""}).ok());

  const std::int64_t medical_before = Balance().medical_account;
  ASSERT_TRUE(
      host_->ResolveSuspense({item.id, SuspenseDecision::kRefundCardholder, "rita", ""}).ok());
  EXPECT_EQ(Balance().medical_account, medical_before + 200);
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 0);
  EXPECT_TRUE(ReviewReasons().empty());
  // The same decision again changes nothing; another one is refused.
  EXPECT_TRUE(
      host_->ResolveSuspense({item.id, SuspenseDecision::kRefundCardholder, "rita", ""}).ok());
  EXPECT_EQ(Balance().medical_account, medical_before + 200);
  auto other = host_->ResolveSuspense({item.id, SuspenseDecision::kPayMerchant, "rita", ""});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ResponseCode::kDuplicateTransmission);
  ExpectHostClean();
}

TEST_P(HostTest, AReviewerPaysTheMerchantOrRejectsAForgery) {
  ASSERT_TRUE(Load(10000).ok());
  auto lost = Upload(Purchase(300, {12, 0, 0}));
  auto forged = Upload(Purchase(400, {12, 5, 0}));
  forged.tac[0] ^= 0x01;
  ASSERT_TRUE(host_->AddToBlacklist(asn_, "20261125110000").ok());
  EXPECT_THAT(Clear({lost, forged}),
              ElementsAre(ClearingOutcome::kSuspense, ClearingOutcome::kSuspense));
  auto queue = host_->ReviewQueue();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 2u);
  EXPECT_TRUE((*queue)[0].money_held);
  EXPECT_FALSE((*queue)[1].money_held) << "a forged TAC never took money from the float";
  ASSERT_TRUE(
      host_->ResolveSuspense({(*queue)[0].id, SuspenseDecision::kPayMerchant, "rita", ""}).ok());
  EXPECT_EQ(MerchantBalance(), 300);
  // Nothing to pay for the forgery: only a rejection, with its reason.
  EXPECT_FALSE(
      host_->ResolveSuspense({(*queue)[1].id, SuspenseDecision::kPayMerchant, "rita", ""}).ok());
  EXPECT_FALSE(
      host_->ResolveSuspense({(*queue)[1].id, SuspenseDecision::kReject, "rita", ""}).ok());
  ASSERT_TRUE(
      host_->ResolveSuspense({(*queue)[1].id, SuspenseDecision::kReject, "rita", "TAC forged"})
          .ok());
  EXPECT_TRUE(ReviewReasons().empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  // The settlement report: both went to suspense, the reviewer paid the merchant one of them.
  auto csv = host_->MerchantSettlementCsv();
  ASSERT_TRUE(csv.ok()) << csv.error().message;
  EXPECT_THAT(*csv, HasSubstr("\nH0001,20261125,0,0,2,700,1,300\n"));
  EXPECT_FALSE(host_->ResolveSuspense({9999, SuspenseDecision::kReject, "rita", "x"}).ok());
  ExpectHostClean();
}

TEST_P(HostTest, TheBlacklistIsVersionedForDeltas) {
  auto added = host_->AddToBlacklist(asn_, "20261125110000");
  ASSERT_TRUE(added.ok());
  auto removed = host_->RemoveFromBlacklist(asn_);
  ASSERT_TRUE(removed.ok());
  auto all = host_->BlacklistSince(0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_TRUE((*all)[0].added);
  EXPECT_FALSE((*all)[1].added);
  auto delta = host_->BlacklistSince(*added);
  ASSERT_TRUE(delta.ok());
  ASSERT_EQ(delta->size(), 1u);
  EXPECT_EQ((*delta)[0].version, *removed);
  EXPECT_FALSE(host_->AddToBlacklist(HexToBytes("99999999999999999999"), "20261125110000").ok());
}

TEST_P(HostTest, BlacklistEntryNumbersFollowTheClockAndNeverRepeat) {
  // 2025-11-25 12:00:00 UTC: 186,235,200 s after 2020-01-01.
  std::int64_t now_us = 1764072000LL * 1'000'000;
  Host host(*conn_, *key_store_, Host::Options{[&] { return now_us; }});
  auto first = host.AddToBlacklist(asn_, "20261125110000");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 1764072000 - 1577836800);
  // Two changes in one second, and a clock set back: the numbers still rise.
  auto second = host.RemoveFromBlacklist(asn_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first + 1);
  now_us -= 3600LL * 1'000'000;
  auto third = host.AddToBlacklist(asn_, "20261125110000");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, *first + 2);
  // A day later the numbers jump to the clock: a host restored from yesterday's backup gives
  // numbers beyond every one it gave since.
  now_us += 86400LL * 1'000'000;
  auto fourth = host.RemoveFromBlacklist(asn_);
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(*fourth, *first + 86400 - 3600);
}

TEST_P(HostTest, AnUnknownCardsPurchaseWaitsInTheReviewQueue) {
  ASSERT_TRUE(Load(1000).ok());
  auto purchase = Upload(Purchase(100));
  purchase.asn = HexToBytes("11000000000000009999");
  EXPECT_THAT(Clear({purchase}), ElementsAre(ClearingOutcome::kSuspense));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonUnknownCard));
  ExpectHostClean();
}

TEST_P(HostTest, MatchingPsamTotalsAreAcknowledgedAndThePsamClearsThem) {
  ASSERT_TRUE(Load(10000).ok());
  EXPECT_THAT(Clear({Upload(Purchase(700)), Upload(Purchase(300))}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted));
  const Bytes challenge = crypto::RandomBytes(8);
  auto totals = GetSamTotals(challenge);
  auto ack = host_->Settle(terminal_number_, date_, challenge, totals);
  ASSERT_TRUE(ack.ok()) << ack.error().message;
  auto cleared = reader::Send(*psam_.reader, iso7816::CommandApdu::Case3(0x80, 0x7C, 0, 0, *ack));
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ(cleared->sw, iso7816::sw::kOk) << cleared->sw.ToString();
  EXPECT_EQ(psam_.psam->Inspect().totals.count, 0u);
  auto settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok());
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "acknowledged");
  EXPECT_EQ((*settlements)[0].psam_amount, 1000);
  ExpectHostClean();
}

TEST_P(HostTest, PsamTotalsThatDoNotMatchTheUploadsAreASettlementException) {
  ASSERT_TRUE(Load(10000).ok());
  auto uploaded = Upload(Purchase(700));
  Purchase(300);  // never uploaded
  EXPECT_THAT(Clear({uploaded}), ElementsAre(ClearingOutcome::kAccepted));
  const Bytes challenge = crypto::RandomBytes(8);
  auto refused = host_->Settle(terminal_number_, date_, challenge, GetSamTotals(challenge));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kReconciliationError) << refused.error().message;
  EXPECT_THAT(refused.error().message, HasSubstr("1000 fen"));
  EXPECT_EQ(psam_.psam->Inspect().totals.count, 2u);
  auto settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok());
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "exception");
  EXPECT_EQ((*settlements)[0].uploaded_amount, 700);
}

TEST_P(HostTest, PsamTotalsWithAForgedMacAreRefused) {
  ASSERT_TRUE(Load(10000).ok());
  EXPECT_THAT(Clear({Upload(Purchase(700))}), ElementsAre(ClearingOutcome::kAccepted));
  const Bytes challenge = crypto::RandomBytes(8);
  Bytes totals = GetSamTotals(challenge);
  totals[9] ^= 0x01;  // the amount's last byte
  auto refused = host_->Settle(terminal_number_, date_, challenge, totals);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kMacError);
}

TEST_P(HostTest, ReconciliationCompletesAnUnconfirmedLoadTheCardsNextLoadProvesCredited) {
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(2000).ok());  // credited on the card, confirmation lost
  const std::uint32_t unconfirmed = authoriser_->trace;
  ASSERT_TRUE(Load(1000).ok());  // credited too, its confirmation lost as well
  auto decisions = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(decisions.ok()) << decisions.error().message;
  ASSERT_EQ(decisions->size(), 2u);
  EXPECT_EQ((*decisions)[0].trace, unconfirmed);
  EXPECT_EQ((*decisions)[0].state, "completed");
  EXPECT_EQ((*decisions)[1].state, "pending") << "nothing proves the last one yet";
  EXPECT_EQ(Balance().card_ed, 2000);
  EXPECT_EQ(Balance().medical_account, 97000);
  ExpectHostClean();
}

TEST_P(HostTest, ReconciliationReversesALoadTheCardsNextLoadProvesNotCredited) {
  authoriser_->lose_mac2 = true;
  ASSERT_FALSE(Load(2000).ok());  // reserved at the host, never credited on the card
  authoriser_->lose_mac2 = false;
  EXPECT_EQ(Balance().medical_account, 98000);
  // Without later evidence the load stays pending and is reported.
  auto waiting = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(waiting.ok());
  ASSERT_EQ(waiting->size(), 1u);
  EXPECT_EQ((*waiting)[0].state, "pending");
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(1000).ok());
  auto decisions = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(decisions.ok()) << decisions.error().message;
  ASSERT_EQ(decisions->size(), 2u);
  EXPECT_EQ((*decisions)[0].state, "reversed");
  EXPECT_EQ((*decisions)[1].state, "pending");
  EXPECT_EQ(Balance().card_ed, 0);
  EXPECT_EQ(Balance().medical_account, 99000) << "the second load's 1000 is still held";
  ExpectHostClean();
}

// The card's next load proves what became of an earlier one: its confirmation decides it first,
// as reconciliation would, so its own card state is measured against the right one.
TEST_P(HostTest, TheCardsNextConfirmedLoadDecidesItsEarlierPendingLoads) {
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(2000).ok());  // credited on the card, confirmation lost
  authoriser_->lose_mac2 = true;
  authoriser_->confirm = true;
  ASSERT_FALSE(Load(500).ok());  // reserved, never credited
  authoriser_->lose_mac2 = false;
  ASSERT_TRUE(Load(1000).ok());
  EXPECT_EQ(Balance().card_ed, 3000);
  EXPECT_EQ(Balance().medical_account, 97000);
  auto decisions = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(decisions.ok()) << decisions.error().message;
  EXPECT_TRUE(decisions->empty()) << "nothing left pending";
  ExpectHostClean();
}

// A pending load whose card's later load was completed without deciding it (a host before this
// rule): the card state tells. At S + 2 or more a later load was credited, so this one was; at
// S + 1 another load was credited at S, so this one was not.
TEST_P(HostTest, ReconciliationReadsTheCardStateOfLaterLoadsCompletedBefore) {
  // As an older host completed a load: the ledger and the load row only.
  auto complete_alone = [&](std::uint32_t trace, std::int64_t balance, std::int64_t online) {
    ledger::Ledger ledger(*conn_);
    auto completed = ledger.Complete("load/000000000301/" + std::to_string(trace),
                                     ledger::CardState{.asn = ToHex(asn_),
                                                       .wallet = ledger::Wallet::kEd,
                                                       .balance = balance,
                                                       .online_serial = online});
    ASSERT_TRUE(completed.ok()) << completed.error().message;
    ASSERT_TRUE(conn_
                    ->Execute("UPDATE host_loads SET state = 'completed' WHERE trace = ?",
                              {static_cast<std::int64_t>(trace)})
                    .ok());
  };
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(2000).ok());  // serial 0: credited, confirmation lost
  ASSERT_TRUE(Load(1000).ok());  // serial 1, completed below as an older host would
  complete_alone(authoriser_->trace, 3000, 2);
  auto credited = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(credited.ok()) << credited.error().message;
  ASSERT_EQ(credited->size(), 1u);
  EXPECT_EQ((*credited)[0].state, "completed") << "the card state is at 2: serial 0 + 2";
  EXPECT_EQ(Balance().card_ed, 3000);
  ExpectHostClean();

  authoriser_->lose_mac2 = true;
  ASSERT_FALSE(Load(500).ok());  // serial 2: reserved, never credited
  authoriser_->lose_mac2 = false;
  ASSERT_TRUE(Load(400).ok());  // serial 2 again: credited, completed as an older host would
  complete_alone(authoriser_->trace, 3400, 3);
  auto not_credited = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(not_credited.ok()) << not_credited.error().message;
  ASSERT_EQ(not_credited->size(), 1u);
  EXPECT_EQ((*not_credited)[0].state, "reversed") << "the card state is at 3: serial 2 + 1";
  EXPECT_EQ(Balance().card_ed, 3400);
  EXPECT_EQ(Balance().medical_account, 100000 - 3400);
  ExpectHostClean();
}

// A purchase made before a load whose confirmation was lost, uploaded after the card's next
// load: the lost load's completion holds the purchase's money in transit (as its confirmation
// would have), whether the next load's confirmation or reconciliation completes it, and the
// upload is paid from there.
class HostTransitTest : public HostTest {
 protected:
  void PurchaseInTransitThenLoads(bool next_confirmed) {
    ASSERT_TRUE(Load(5000).ok());
    const auto in_transit = Purchase(700);  // uploaded only at day end
    authoriser_->confirm = false;
    ASSERT_TRUE(Load(2000).ok());  // credited, confirmation lost: the card has 6300
    authoriser_->confirm = next_confirmed;
    ASSERT_TRUE(Load(1000).ok());  // the card has 7300
    auto decisions = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
    ASSERT_TRUE(decisions.ok()) << decisions.error().message;
    EXPECT_EQ(decisions->size(), next_confirmed ? 0u : 2u);
    EXPECT_EQ(Balance().card_ed, next_confirmed ? 7300 : 6300) << "the last load pending or not";
    EXPECT_EQ(SuspenseBalance(), 700);
    ExpectHostClean();
    EXPECT_THAT(Clear({Upload(in_transit)}), ElementsAre(ClearingOutcome::kAccepted));
    EXPECT_EQ(MerchantBalance(), 700);
    EXPECT_EQ(SuspenseBalance(), 0);
    EXPECT_TRUE(ReviewReasons().empty());
    ExpectHostClean();
  }
};

TEST_P(HostTransitTest, TheNextConfirmationCompletesALostLoadWithThePurchasesInTransitHeld) {
  PurchaseInTransitThenLoads(/*next_confirmed=*/true);
}

TEST_P(HostTransitTest, ReconciliationCompletesALostLoadWithThePurchasesInTransitHeld) {
  PurchaseInTransitThenLoads(/*next_confirmed=*/false);
}

INSTANTIATE_TEST_SUITE_P(Engines, HostTransitTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(HostTest, TheIssuanceLogsIssuedCardsAreImportedOnceAndTornLinesSkipped) {
  const std::string log =
      R"({"asn":"11000000000000000401","event":"reserved","format":1,"kind":"card","test":false})"
      "\n"
      R"({"asn":"11000000000000000401","event":"issued","format":1,"holder":"11010519491231002X",)"
      R"("key_version":1,"kind":"card","test":false,"time":"2026-11-25T09:15:02Z"})"
      "\n"
      R"({"asn":"11000000000000000402","event":"issued","format":1,"holder":"X","kind":"card",)"
      R"("test":true})"
      "\n"
      R"({"asn":"11000000000000000403","event":"issued","format":1,"hol)";
  auto summary = host_->ImportIssuanceLog(log, /*accept_test_cards=*/false);
  ASSERT_TRUE(summary.ok()) << summary.error().message;
  EXPECT_EQ(summary->cards, 1);
  EXPECT_EQ(summary->skipped, 3);
  EXPECT_TRUE(host_->BalanceInquiry(HexToBytes("11000000000000000401")).ok());
  auto test_card = host_->BalanceInquiry(HexToBytes("11000000000000000402"));
  ASSERT_FALSE(test_card.ok());
  EXPECT_EQ(test_card.error().code, ResponseCode::kInvalidCard);
  auto again = host_->ImportIssuanceLog(log, false);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->cards, 1);
  ExpectHostClean();
}

TEST_P(HostTest, TheIssuersPinVerificationValueIsImportedAndAPinResetIsNotUndoneByAReimport) {
  const auto line = [](const std::string& pin_verification) {
    return R"({"asn":"00004100000089999985","event":"issued","format":1,"holder":"P-1",)"
           R"("kind":"card","test":false,"pin_verification":)" +
           pin_verification + "}\n";
  };
  const std::string log =
      line(R"({"method":"ibm3624","key":"pvk/CARDS","version":1,"offset":"402913"})");
  ASSERT_TRUE(host_->ImportIssuanceLog(log, false).ok());
  const auto stored = [&] {
    auto rows = conn_->Query(
        "SELECT key_name, key_version, pin_offset, failed_tries FROM host_card_pins WHERE asn ="
        " '00004100000089999985'");
    EXPECT_TRUE(rows.ok());
    if (!rows.ok() || rows->empty()) return std::string("none");
    const store::Row& r = (*rows)[0];
    return r.Text(0) + "/" + std::to_string(r.Int(1)) + "/" + r.Text(2) + "/" +
           std::to_string(r.Int(3));
  };
  EXPECT_EQ(stored(), "pvk/CARDS/1/402913/0");
  const Bytes asn = HexToBytes("00004100000089999985");
  ASSERT_TRUE(host_->ReplacePinVerificationValue(asn, {"pvk/CARDS", 2, "777001"}).ok());
  EXPECT_EQ(stored(), "pvk/CARDS/2/777001/0");
  ASSERT_TRUE(host_->ImportIssuanceLog(log, false).ok());  // the old log again: the reset stays
  EXPECT_EQ(stored(), "pvk/CARDS/2/777001/0");
  for (const char* bad : {R"({"method":"visa-pvv","key":"pvk/CARDS","version":1,"offset":"4029"})",
                          R"({"method":"ibm3624","key":"purchase","version":1,"offset":"402913"})",
                          R"({"method":"ibm3624","key":"pvk/CARDS","version":0,"offset":"402913"})",
                          R"({"method":"ibm3624","key":"pvk/CARDS","version":1,"offset":"40a913"})",
                          R"({"method":"ibm3624","key":"pvk/CARDS","version":1})", R"("402913")"}) {
    SCOPED_TRACE(bad);
    auto refused = host_->ImportIssuanceLog(line(bad), false);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ResponseCode::kFormatError);
    EXPECT_THAT(refused.error().message, ::testing::HasSubstr("pin_verification"));
  }
  EXPECT_EQ(stored(), "pvk/CARDS/2/777001/0");
  ExpectHostClean();
}

// ---- ED overdraw --------------------------------------------------------------------------------

class HostOverdrawTest : public HostTest {
 protected:
  // The issuer's UPDATE OVERDRAW LIMIT on the card (INITIALIZE FOR UPDATE, then MAC2 under the
  // card's overdraw key), and the same limit told to the host.
  void SetOverdrawLimit(std::uint32_t limit, bool tell_host = true) {
    reader::Reader& card = *cardholder_.reader;
    ASSERT_TRUE(terminal::SelectMedicalApplication(card).ok());
    ASSERT_TRUE(terminal::VerifyPin(card, "123456").ok());
    Bytes init_data{0x01};
    Append(init_data, terminal_number_);
    auto init =
        reader::Send(card, iso7816::CommandApdu::Case4(0x80, 0x50, 0x04, 0x01, init_data, 0x13));
    ASSERT_TRUE(init.ok() && init->ok());
    const Bytes duk = *crypto::Diversify(issuance::TestKeySet::Embedded().MasterKey("overdraw"),
                                         crypto::AsnFactor(asn_));
    const Bytes session = *crypto::LoadSessionKey(duk, ByteView(init->data).subspan(11, 4),
                                                  ByteView(init->data).subspan(4, 2));
    const Bytes date_time = Concat({EncodeBcdDate(date_), EncodeBcdTime(time_)});
    Bytes mac2_input;
    AppendU24(mac2_input, limit);
    mac2_input.push_back(0x07);
    Append(mac2_input, terminal_number_);
    Append(mac2_input, date_time);
    Bytes update;
    AppendU24(update, limit);
    Append(update, date_time);
    Append(update, *crypto::PbocMac(session, mac2_input));
    auto updated =
        reader::Send(card, iso7816::CommandApdu::Case4(0x80, 0x58, 0x00, 0x00, update, 4));
    ASSERT_TRUE(updated.ok() && updated->ok());
    auto app = terminal::SelectMedicalApplication(card);
    ASSERT_TRUE(app.ok());
    cardholder_.app = *app;
    ASSERT_TRUE(terminal::VerifyPin(card, "123456").ok());
    if (tell_host) {
      ASSERT_TRUE(host_->SetOverdrawLimit(asn_, limit).ok());
    }
  }
  std::int64_t Owed() {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(ledger::AccountId::Overdraft(ToHex(asn_)));
    EXPECT_TRUE(account.ok());
    return account.ok() && *account ? -(*account)->balance : 0;
  }
};

TEST_P(HostOverdrawTest, PurchasesIntoTheLimitAreClearedAsTheBanksCreditToTheCardholder) {
  SetOverdrawLimit(5000);
  ASSERT_TRUE(Load(3000).ok());
  const auto first = Purchase(4000);  // 3000 from the balance, 1000 overdrawn
  ASSERT_EQ(first.balance_before, 3000u);
  ASSERT_EQ(first.balance_after, 0u);
  const auto second = Purchase(2000, {10, 5, 0});  // all overdrawn
  ASSERT_EQ(second.balance_before, 0u);
  EXPECT_THAT(Clear({Upload(first), Upload(second)}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted));
  EXPECT_EQ(MerchantBalance(), 6000);
  EXPECT_EQ(Balance().card_ed, 0);  // the card float follows the card's balance
  EXPECT_EQ(Owed(), 3000);          // and the cardholder owes the bank the rest
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_TRUE(ReviewReasons().empty());
  // Uploaded again: duplicates, nothing posted twice.
  EXPECT_THAT(Clear({Upload(first), Upload(second)}),
              ElementsAre(ClearingOutcome::kDuplicate, ClearingOutcome::kDuplicate));
  EXPECT_EQ(MerchantBalance(), 6000);
  EXPECT_EQ(Owed(), 3000);
  ExpectHostClean();

  // The next load repays the overdraw first: the card's TAC covers 0 + 5000 − 3000.
  auto load = Load(5000);
  ASSERT_TRUE(load.ok()) << load.error().message;
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 2000u);
  EXPECT_EQ(Balance().card_ed, 2000);
  EXPECT_EQ(Owed(), 0);
  EXPECT_EQ(Balance().medical_account, 100000 - 3000 - 5000);
  const auto after_repay = Purchase(500, {11, 0, 0});
  EXPECT_THAT(Clear({Upload(after_repay)}), ElementsAre(ClearingOutcome::kAccepted));
  EXPECT_EQ(Balance().card_ed, 1500);
  ExpectHostClean();
  // A load larger than nothing owed repays nothing.
  ASSERT_TRUE(Load(100).ok());
  EXPECT_EQ(Balance().card_ed, 1600);
  ExpectHostClean();

  // `medcard host check` sees an overdraft the host does not account for.
  ASSERT_TRUE(conn_
                  ->Execute("UPDATE host_card_wallets SET overdraw_used = 2000 WHERE wallet = 'ED'"
                            " AND asn = ?",
                            {ToHex(asn_)})
                  .ok());
  auto problems = host_->CheckHost();
  ASSERT_TRUE(problems.ok());
  EXPECT_THAT(*problems, ElementsAre(HasSubstr("overdraw used 2000 fen, but its overdraft account"
                                               " owes 0 fen")));
}

TEST_P(HostOverdrawTest, BeyondTheLimitTheHostKnowsOrOutOfChainItWaitsForReviewAndNothingMoves) {
  SetOverdrawLimit(5000, /*tell_host=*/false);  // the host still believes 0
  ASSERT_TRUE(Load(1000).ok());
  const auto over = Purchase(2500);
  auto cleared = host_->ClearPurchases({Upload(over)});
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ((*cleared)[0].outcome, ClearingOutcome::kSuspense);
  EXPECT_EQ((*cleared)[0].reason, kReasonOverdrawLimit);
  EXPECT_EQ(MerchantBalance(), 0);
  EXPECT_EQ(Owed(), 0);
  EXPECT_EQ(Balance().card_ed, 1000);
  ExpectHostClean();

  // A gap before an overdraw purchase: the host cannot tell its balance, so a reviewer decides.
  ASSERT_TRUE(host_->SetOverdrawLimit(asn_, 5000).ok());
  (void)Purchase(100, {10, 1, 0});  // never uploaded (the card is at −1600 after the first)
  const auto after_gap = Purchase(200, {10, 2, 0});
  auto reviewed = host_->ClearPurchases({Upload(after_gap)});
  ASSERT_TRUE(reviewed.ok());
  EXPECT_EQ((*reviewed)[0].reason, kReasonOverdrawReview);
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonOverdrawLimit, kReasonOverdrawReview));
  EXPECT_EQ(Owed(), 0);
  ExpectHostClean();
  // The host's limit is checked: no negative limit, an unknown card.
  EXPECT_EQ(host_->SetOverdrawLimit(asn_, -1).error().code, ResponseCode::kInvalidAmount);
  EXPECT_EQ(host_->SetOverdrawLimit(HexToBytes("11000000000000000999"), 100).error().code,
            ResponseCode::kInvalidCard);
}

// A load the card repaid overdraw from, completed without its confirmation: by the card's next
// confirmed load (then that load's TAC repays nothing more), by reconciliation, or by a
// confirmation after the host reversed it (7.7) — each as the card did it.
TEST_P(HostOverdrawTest, ALoadCompletedWithoutItsConfirmationRepaysTheOverdrawAsTheCardDid) {
  SetOverdrawLimit(5000);
  ASSERT_TRUE(Load(3000).ok());
  EXPECT_THAT(Clear({Upload(Purchase(4000))}), ElementsAre(ClearingOutcome::kAccepted));
  ASSERT_EQ(Owed(), 1000);
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(5000).ok());  // the card repays 1000 first: 4000
  authoriser_->confirm = true;
  auto next = Load(100);  // its TAC covers 4100: the overdraw was repaid by the load before
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 4100u);
  EXPECT_EQ(Balance().card_ed, 4100);
  EXPECT_EQ(Owed(), 0);
  ExpectHostClean();

  // Overdrawn again, then a load whose confirmation is lost, decided by reconciliation.
  EXPECT_THAT(Clear({Upload(Purchase(4600, {12, 0, 0}))}), ElementsAre(ClearingOutcome::kAccepted));
  ASSERT_EQ(Owed(), 500);
  authoriser_->confirm = false;
  ASSERT_TRUE(Load(2000).ok());  // repays 500: 1500
  ASSERT_TRUE(Load(100).ok());   // proves the one before; its own confirmation is lost too
  auto decisions = host_->ReconcileLoads(std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(decisions.ok()) << decisions.error().message;
  ASSERT_EQ(decisions->size(), 2u);
  EXPECT_EQ((*decisions)[0].state, "completed");
  EXPECT_EQ(Balance().card_ed, 1500);
  EXPECT_EQ(Owed(), 0);
  ExpectHostClean();

  // Overdrawn again; the host reverses the next load, then its confirmation arrives (7.7).
  const std::uint32_t pending_trace = authoriser_->trace;
  ASSERT_TRUE(host_->ReverseLoad(terminal_number_, pending_trace).ok());  // the 100 above
  const auto tac_of_reversed = authoriser_->last_tac;
  ASSERT_TRUE(host_->ConfirmLoad(terminal_number_, pending_trace, tac_of_reversed).ok());
  EXPECT_EQ(Balance().card_ed, 1600);
  EXPECT_THAT(Clear({Upload(Purchase(2600, {13, 0, 0}))}), ElementsAre(ClearingOutcome::kAccepted));
  ASSERT_EQ(Owed(), 1000);
  ASSERT_TRUE(Load(3000).ok());  // repays 1000: 2000; the host learns of it only late
  const std::uint32_t late = authoriser_->trace;
  ASSERT_TRUE(host_->ReverseLoad(terminal_number_, late).ok());
  auto confirmed = host_->ConfirmLoad(terminal_number_, late, authoriser_->last_tac);
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_EQ(Balance().card_ed, 2000);
  EXPECT_EQ(Owed(), 0);
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonLoadAfterReversal, kReasonLoadAfterReversal));
  ExpectHostClean();
}

INSTANTIATE_TEST_SUITE_P(Engines, HostOverdrawTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(HostTest, ConcurrentCreditsToOneAccountAreAllPostedAfterRetries) {
  constexpr int kThreads = 4, kCreditsEach = 15;
  std::vector<std::thread> threads;
  std::atomic<int> failures = 0;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto conn = db_->Connect();
      if (!conn.ok()) {
        ++failures;
        return;
      }
      // CreditMedicalAccount never touches the key store, so sharing it here is safe.
      Host host(**conn, *key_store_);
      for (int i = 0; i < kCreditsEach; ++i) {
        const std::string batch = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!host.CreditMedicalAccount(batch, kPerson, 10).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(Balance().medical_account, 100000 + kThreads * kCreditsEach * 10);
  ExpectHostClean();
}

TEST_P(HostTest, TheMerchantSettlementReportSumsEachMerchantsDay) {
  ASSERT_TRUE(Load(10000).ok());
  auto first = Upload(Purchase(700));
  auto second = Upload(Purchase(300));
  auto forged = Upload(Purchase(50));
  forged.tac[3] ^= 0x80;
  EXPECT_THAT(Clear({first, second, forged, first}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted,
                          ClearingOutcome::kSuspense, ClearingOutcome::kDuplicate));
  auto csv = host_->MerchantSettlementCsv();
  ASSERT_TRUE(csv.ok()) << csv.error().message;
  EXPECT_EQ(*csv,
            "merchant,day,accepted_count,accepted_fen,suspense_count,suspense_fen,"
            "paid_on_review_count,paid_on_review_fen\n"
            "H0001,20261125,2,1000,1,50,0,0\n");
  EXPECT_FALSE(host_->RegisterMerchant({"A,B", "Comma", "clinic"}).ok());
}

// docs/protocol.md 7.6: a load dated after the card's last valid day is refused 54; a card the
// host knows no expiry of is not checked.
TEST_P(HostTest, ALoadAfterTheCardsLastValidDayIsRefusedAsExpired) {
  // The card's issuance log record names its expiry (the card was registered without one).
  auto log = [](const std::string& valid_to) {
    return std::string(R"({"asn":"11000000000000000301","event":"issued","format":1,"holder":")") +
           kPerson + R"(","kind":"card","test":true,"valid_from":"2016-11-25","valid_to":")" +
           valid_to + "\"}\n";
  };
  ASSERT_TRUE(Load(1000).ok()) << "no expiry known: not checked";
  auto imported = host_->ImportIssuanceLog(log("2026-11-25"), /*accept_test_cards=*/true);
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  EXPECT_EQ(imported->cards, 1);
  ASSERT_TRUE(Load(1000).ok()) << "its last valid day is the load's date";
  ASSERT_TRUE(host_->ImportIssuanceLog(log("2026-11-24"), true).ok());
  auto refused = Load(2000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(authoriser_->last_code, ResponseCode::kExpiredCard);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 2000u);
  EXPECT_EQ(Balance().medical_account, 98000) << "nothing reserved";
  auto malformed = host_->ImportIssuanceLog(log("2026-02-30"), true);
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().code, ResponseCode::kFormatError);

  // Registered with an expiry: checked before MAC1 (this request's MAC1 is not even the card's).
  const Bytes expired_asn = HexToBytes("11000000000000000302");
  ASSERT_TRUE(
      host_->RegisterCard({expired_asn, "holder-2", "310101199001015678", Date{2025, 6, 30}}).ok());
  LoadRequest request = authoriser_->last_request;
  request.asn = expired_asn;
  request.trace = 77;
  auto expired = host_->AuthoriseLoad(request);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().code, ResponseCode::kExpiredCard) << expired.error().message;
  ExpectHostClean();
}

// docs/protocol.md 7.7: the card proves (its TAC) a load the host had reversed was credited.
TEST_P(HostTest, ALoadConfirmedAfterItsReversalIsCompletedAgainAndQueuedForReview) {
  authoriser_->confirm = false;
  auto loaded = Load(2000);  // credited on the card; the confirmation is late
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  const std::uint32_t trace = authoriser_->trace;
  ASSERT_TRUE(host_->ReverseLoad(terminal_number_, trace).ok());
  EXPECT_EQ(Balance().medical_account, 100000);
  ExpectHostClean();

  // A wrong TAC changes nothing: the load stays reversed.
  Bytes forged = loaded->tac;
  forged[0] ^= 0x01;
  auto refused = host_->ConfirmLoad(terminal_number_, trace, forged);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kMacError);
  EXPECT_EQ(Balance().medical_account, 100000);
  EXPECT_TRUE(ReviewReasons().empty());

  auto confirmed = host_->ConfirmLoad(terminal_number_, trace, loaded->tac);
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_EQ(Balance().medical_account, 98000);
  EXPECT_EQ(Balance().card_ed, 2000);
  auto queue = host_->ReviewQueue();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  const SuspenseItem item = (*queue)[0];
  EXPECT_EQ(item.reason, kReasonLoadAfterReversal);
  EXPECT_EQ(item.asn, "11000000000000000301");
  EXPECT_EQ(item.type, 0x01);
  EXPECT_EQ(item.amount, 2000);
  EXPECT_FALSE(item.money_held);
  ExpectHostClean();

  // A repeat changes nothing; the completed load is not reversed again.
  ASSERT_TRUE(host_->ConfirmLoad(terminal_number_, trace, loaded->tac).ok());
  EXPECT_EQ(Balance().card_ed, 2000);
  EXPECT_EQ(ReviewReasons().size(), 1u);
  auto reversal = host_->ReverseLoad(terminal_number_, trace);
  ASSERT_FALSE(reversal.ok());
  EXPECT_EQ(reversal.error().code, ResponseCode::kInvalidTransaction);
  // The card's purchases chain on from the completed load.
  EXPECT_THAT(Clear({Upload(Purchase(500))}), ElementsAre(ClearingOutcome::kAccepted));

  // The reviewer checks it and closes it: nothing is held, so only a rejection with a note.
  EXPECT_FALSE(host_->ResolveSuspense({item.id, SuspenseDecision::kPayMerchant, "rita", ""}).ok());
  ASSERT_TRUE(host_
                  ->ResolveSuspense(
                      {item.id, SuspenseDecision::kReject, "rita", "terminal timed out at 09:15"})
                  .ok());
  EXPECT_TRUE(ReviewReasons().empty());
  EXPECT_EQ(Balance().card_ed, 1500);
  ExpectHostClean();
}

TEST_P(HostTest, ALoadConfirmedAfterItsReversalCompletesEvenBeyondTheMedicalAccount) {
  authoriser_->confirm = false;
  auto loaded = Load(60000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  const std::uint32_t trace = authoriser_->trace;
  ASSERT_TRUE(host_->ReverseLoad(terminal_number_, trace).ok());
  // Another load reserves half the account after the reversal (it never reaches the card).
  authoriser_->lose_mac2 = true;
  ASSERT_FALSE(Load(50000).ok());
  EXPECT_EQ(Balance().medical_account, 50000);

  auto confirmed = host_->ConfirmLoad(terminal_number_, trace, loaded->tac);
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_EQ(Balance().card_ed, 60000) << "the card has the money";
  EXPECT_EQ(Balance().medical_account, -10000);
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonLoadAfterReversal));
  ExpectHostClean();
}

// The terminal gateway's own disagreement (field 48) is recorded as Settle records its own.
TEST_P(HostTest, ASettlementRefusedByTheGatewayIsRecordedAsAnException) {
  ASSERT_TRUE(Load(10000).ok());
  EXPECT_THAT(Clear({Upload(Purchase(700))}), ElementsAre(ClearingOutcome::kAccepted));
  const Bytes challenge = crypto::RandomBytes(8);
  const Bytes totals = GetSamTotals(challenge);
  Bytes forged = totals;
  forged[9] ^= 0x01;
  auto refused = host_->RecordSettlementException(terminal_number_, date_, challenge, forged);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ResponseCode::kMacError);
  auto none = host_->Settlements(terminal_number_);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  auto recorded = host_->RecordSettlementException(terminal_number_, date_, challenge, totals);
  ASSERT_TRUE(recorded.ok()) << recorded.error().message;
  auto settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok());
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "exception");
  EXPECT_EQ((*settlements)[0].day, "20261125");
  EXPECT_EQ((*settlements)[0].psam_amount, 700);
  EXPECT_EQ((*settlements)[0].uploaded_amount, 700);
  EXPECT_EQ(psam_.psam->Inspect().totals.count, 1u) << "the PSAM keeps its totals";
  // A later settlement that agrees acknowledges the same range.
  ASSERT_TRUE(host_->Settle(terminal_number_, date_, challenge, totals).ok());
  settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok());
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "acknowledged");
  ExpectHostClean();
}

// Clearing decides a batch set-wise (docs/host.md "Clearing"): a card's later record in the same
// batch sees what its earlier one changed, exactly as in separate uploads.
TEST_P(HostTest, AGapOpenedAndFilledInOneBatchIsClosedAndPostedOnce) {
  ASSERT_TRUE(Load(10000).ok());
  auto first = Upload(Purchase(100));
  auto missing = Upload(Purchase(200));
  auto third = Upload(Purchase(300));
  EXPECT_THAT(Clear({first, third, missing, third, missing}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kAccepted,
                          ClearingOutcome::kAccepted, ClearingOutcome::kDuplicate,
                          ClearingOutcome::kDuplicate));
  auto gaps = host_->OpenGaps();
  ASSERT_TRUE(gaps.ok());
  EXPECT_TRUE(gaps->empty());
  EXPECT_EQ(SuspenseBalance(), 0);
  EXPECT_EQ(MerchantBalance(), 600);
  EXPECT_EQ(Balance().card_ed, 10000 - 600);
  EXPECT_EQ(Balance().card_ed, *terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd));
  EXPECT_TRUE(ReviewReasons().empty());
  ExpectHostClean();
}

TEST_P(HostTest, EachRecordOfAMixedBatchGetsItsOwnOutcomeInOrder) {
  ASSERT_TRUE(Load(10000).ok());
  auto good = Upload(Purchase(100));
  auto forged = Upload(Purchase(200));
  forged.tac[1] ^= 0x40;
  auto after_forged = Upload(Purchase(300));
  auto stranger = good;
  stranger.asn = HexToBytes("11000000000000009999");
  auto malformed = good;
  malformed.card_offline_serial = 77;
  malformed.balance_after = malformed.balance_before;  // not before − amount
  auto unknown_terminal = good;
  unknown_terminal.card_offline_serial = 78;
  unknown_terminal.terminal_number = HexToBytes("000000009999");
  EXPECT_THAT(Clear({good, forged, stranger, malformed, unknown_terminal, after_forged}),
              ElementsAre(ClearingOutcome::kAccepted, ClearingOutcome::kSuspense,
                          ClearingOutcome::kSuspense, ClearingOutcome::kSuspense,
                          ClearingOutcome::kSuspense, ClearingOutcome::kAccepted));
  EXPECT_THAT(ReviewReasons(), ElementsAre(kReasonTacInvalid, kReasonUnknownCard, kReasonBadRecord,
                                           "terminal 000000009999 not registered"));
  // The forged record proves nothing: its serial is a gap until a good copy arrives.
  auto gaps = host_->OpenGaps();
  ASSERT_TRUE(gaps.ok());
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].offline_serial, forged.card_offline_serial);
  EXPECT_EQ(MerchantBalance(), 400);
  EXPECT_EQ(SuspenseBalance(), 200);
  ExpectHostClean();
}

INSTANTIATE_TEST_SUITE_P(Engines, HostTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::host
