// The POS terminal against a real test card and PSAM in in-process readers and the real host in
// process (host::TerminalGateway through terminal::InProcessTransport, SQLite): purchases and
// their checks, a torn purchase at every card command, recovery, loads and day end — each test
// asserts the card's balance, the journal and what the host cleared, to the fen.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "crypto/crypto.h"
#include "host/gateway.h"
#include "host/host.h"
#include "issuance/test_issuer.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "reader/reader.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"
#include "terminal/ssse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::pos {
namespace {

namespace fs = std::filesystem;
using terminal::Wallet;
using ::testing::HasSubstr;

constexpr char kPerson[] = "310101199001011234";
constexpr char kMerchant[] = "898440154110001";
constexpr char kTerminalId[] = "POS00042";
constexpr char kPin[] = "123456";
const Bytes kTmk = HexToBytes("0F1E2D3C4B5A69788796A5B4C3D2E1F0");

std::int64_t HostClock() {  // 2026-11-25 09:15:00 UTC
  using namespace std::chrono;
  const auto t = sys_days{year{2026} / 11 / 25} + hours{9} + minutes{15};
  return duration_cast<microseconds>(t.time_since_epoch()).count();
}

template <typename R>
auto Must(R result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

// A card reader whose card is pulled out around the nth command from now: kBefore — the command
// never reaches the card; kAfter — the card executed it and the answer is lost.
class PullingReader final : public reader::Reader {
 public:
  enum class When { kBefore, kAfter };
  explicit PullingReader(reader::InProcessReader& inner) : inner_(inner) {}
  void PullAt(int nth, When when) {
    pull_at_ = nth;
    when_ = when;
  }
  bool pulled() const { return pulled_; }
  int commands() const { return commands_; }

  std::string Name() const override { return inner_.Name(); }
  Result<Bytes> Connect() override { return inner_.Connect(); }
  Status Disconnect() override { return inner_.Disconnect(); }
  bool Connected() const override { return inner_.Connected(); }
  Result<bool> CardPresent() override { return inner_.CardPresent(); }
  Result<bool> WaitForCard(std::chrono::milliseconds t) override { return inner_.WaitForCard(t); }
  Result<bool> WaitForRemoval(std::chrono::milliseconds t) override {
    return inner_.WaitForRemoval(t);
  }
  // Pulled when the command with this INS comes (before it reaches the card).
  void PullOnIns(std::uint8_t ins) { pull_on_ins_ = ins; }
  Result<Bytes> Transmit(ByteView command) override {
    ++commands_;
    if (pull_on_ins_ && command.size() > 1 && command[1] == *pull_on_ins_) {
      pull_on_ins_.reset();
      pulled_ = true;
      inner_.RemoveCard();
      return MakeError("card removed");
    }
    if (pull_at_ > 0 && --pull_at_ == 0) {
      pulled_ = true;
      if (when_ == When::kAfter) (void)inner_.Transmit(command);
      inner_.RemoveCard();
      return MakeError("card removed");
    }
    return inner_.Transmit(command);
  }
  Result<Bytes> PowerCycle(reader::Reset kind) override { return inner_.PowerCycle(kind); }
  Status BeginTransaction() override { return inner_.BeginTransaction(); }
  Status EndTransaction() override { return inner_.EndTransaction(); }

 private:
  reader::InProcessReader& inner_;
  int pull_at_ = 0;
  std::optional<std::uint8_t> pull_on_ins_;
  When when_ = When::kBefore;
  bool pulled_ = false;
  int commands_ = 0;
};

// The gateway in process; while `down`, the host is unreachable (every exchange unanswered).
// lose_mti: the answers to requests of this MTI are lost (the host did the work).
struct Line {
  host::TerminalGateway* gateway = nullptr;
  bool down = false;
  int down_after = -1;  // the host becomes unreachable after this many more exchanges
  std::optional<iso8583::Mti> lose_mti;
  std::optional<Bytes> operator()(ByteView frame) {
    if (down_after == 0) down = true;
    if (down_after > 0) --down_after;
    if (down) return std::nullopt;
    host::GatewayReply reply = gateway->Handle(frame);
    const auto mti = static_cast<iso8583::Mti>(frame[11] << 8 | frame[12]);
    if (lose_mti && *lose_mti == mti) return std::nullopt;
    return reply.frame;
  }
};

class PosTerminalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-pos");
    host_keys_ =
        Must(test_support::TestKeyStore((fs::path(dir_) / "host-keys").string(), "host test"));
    const std::string tmk_name = "tmk/" + ToHex(terminal_number_);
    ASSERT_TRUE(host_keys_->ImportTestKey(tmk_name, kTmk).ok());
    terminal_keys_ = Must(keys::CreateSoftwareKeyStore((fs::path(dir_) / "terminal-keys").string(),
                                                       "terminal test", true));
    ASSERT_TRUE(terminal_keys_->ImportTestKey(tmk_name, kTmk).ok());

    test_support::TestDatabase db = Must(test_support::NewHostDatabase(store::Engine::kSqlite));
    db_ = std::move(db.database);
    conn_ = std::move(db.connection);
    host_ = std::make_unique<host::Host>(*conn_, *host_keys_);
    ASSERT_TRUE(host_->RegisterMerchant({kMerchant, "City Hospital", "hospital-3A"}).ok());
    ASSERT_TRUE(
        host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_, kTerminalId}).ok());
    ASSERT_TRUE(host_->RegisterCard({asn_, "holder-1", kPerson}).ok());
    ASSERT_TRUE(host_->CreditMedicalAccount("2026-11", kPerson, 500000).ok());
    gateway_ = std::make_unique<host::TerminalGateway>(
        *conn_, *host_keys_, host::GatewayOptions{[] { return HostClock(); }, 8192});
    line_.gateway = gateway_.get();
    transport_ = std::make_unique<terminal::InProcessTransport>(
        [this](ByteView frame) { return line_(frame); });

    journal_path_ = (fs::path(dir_) / "pos.db").string();
    OpenJournal();

    holder_ = Must(test_support::NewTestCardholder(asn_, kPin));
    card_reader_.reset(new reader::InProcessReader("card", holder_.card));
    ASSERT_TRUE(card_reader_->Connect().ok());
    pulling_ = std::make_unique<PullingReader>(*card_reader_);
    psam_ = Must(test_support::NewTestPsam(psam_serial_, terminal_number_));
    NewTerminal();
  }
  void TearDown() override {
    terminal_.reset();
    link_.reset();
    journal_.reset();
    transport_.reset();
    gateway_.reset();
    host_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  void OpenJournal() { journal_ = Must(Journal::Open(journal_path_)); }
  // A terminal as after a restart: the link state from the journal.
  void NewTerminal() {
    terminal::HostLinkConfig config;
    config.terminal_id = kTerminalId;
    config.merchant_id = kMerchant;
    config.terminal_number = terminal_number_;
    config.max_retries = 1;
    config.sleep = [](std::chrono::milliseconds) {};
    terminal_.reset();
    link_ = std::make_unique<terminal::HostLink>(
        config, *transport_, *terminal_keys_, Must(journal_->LinkState()),
        [this](const terminal::LinkState& s) { ASSERT_TRUE(journal_->SaveLinkState(s).ok()); });
    TerminalIdentity identity{kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"};
    terminal_ = std::make_unique<Terminal>(identity, *pulling_, *psam_.reader, *journal_,
                                           link_.get(), [this] { return now_; });
  }
  void Reinsert() {
    if (!*card_reader_->CardPresent()) {
      ASSERT_TRUE(card_reader_->InsertCard(holder_.card).ok());
    }
  }
  // The card's balances read directly (PIN verified), outside the terminal.
  std::uint32_t CardBalance(Wallet wallet) {
    reader::InProcessReader direct("direct", holder_.card.get());
    EXPECT_TRUE(card_reader_->RemoveCard() != nullptr);
    EXPECT_TRUE(direct.Connect().ok());
    EXPECT_TRUE(terminal::SelectMedicalApplication(direct).ok());
    EXPECT_TRUE(terminal::VerifyPin(direct, kPin).ok());
    const std::uint32_t balance = Must(terminal::GetBalance(direct, wallet));
    direct.RemoveCard();
    EXPECT_TRUE(card_reader_->InsertCard(holder_.card).ok());
    return balance;
  }
  void Load(Wallet wallet, std::uint32_t amount) {
    auto loaded = terminal_->LoadOnline(wallet, amount, kPin);
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  }
  Receipt Buy(Wallet wallet, std::uint32_t amount) {
    auto receipt = terminal_->Purchase({wallet, amount, kPin});
    EXPECT_TRUE(receipt.ok()) << receipt.error().message;
    return receipt.ok() ? *receipt : Receipt{};
  }
  host::Balances HostBalances() { return Must(host_->BalanceInquiry(asn_)); }
  std::size_t Count(PurchaseState state) { return Must(journal_->Purchases(state)).size(); }
  DayEndReport DayEnd() {
    auto report = terminal_->DayEnd();
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? *report : DayEndReport{};
  }
  // After a day end: the host's float of the card equals the card, and the host is consistent.
  void ExpectHostMatchesCard() {
    EXPECT_EQ(HostBalances().card_ed, CardBalance(Wallet::kEd));
    EXPECT_EQ(HostBalances().card_ep, CardBalance(Wallet::kEp));
    auto problems = Must(host_->CheckHost());
    EXPECT_TRUE(problems.empty()) << problems.front();
  }

  std::string dir_, journal_path_;
  std::unique_ptr<keys::KeyStore> host_keys_, terminal_keys_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<host::Host> host_;
  std::unique_ptr<host::TerminalGateway> gateway_;
  Line line_;
  std::unique_ptr<terminal::InProcessTransport> transport_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<terminal::HostLink> link_;
  std::unique_ptr<Terminal> terminal_;
  test_support::TestCardholder holder_;
  std::unique_ptr<reader::InProcessReader> card_reader_;
  std::unique_ptr<PullingReader> pulling_;
  test_support::TestPsam psam_;
  DateTime now_{{2026, 11, 25}, {10, 0, 0}};
  Bytes asn_ = HexToBytes("11000000000000000421");
  Bytes psam_serial_ = HexToBytes("50000000000000000421");
  Bytes terminal_number_ = HexToBytes("000000000421");
};

TEST_F(PosTerminalTest, PurchasesFromBothWalletsPrintAReceiptAndAreJournalled) {
  Load(Wallet::kEd, 30000);
  Load(Wallet::kEp, 5000);
  const Receipt ed = Buy(Wallet::kEd, 1250);
  EXPECT_EQ(ed.amount, 1250u);
  EXPECT_EQ(ed.balance_after, 30000u - 1250u);
  EXPECT_EQ(ed.masked_card_number, "110000**********0421");
  EXPECT_EQ(ed.terminal_serial, 1u);
  EXPECT_EQ(ed.tac.size(), 4u);
  EXPECT_FALSE(ed.recovered);
  const std::string text = ed.Text();
  for (const char* line :
       {"City Hospital", "TERMINAL POS00042", "CARD     110000**********0421", "AMOUNT   CNY 12.50",
        "BALANCE  CNY 287.50", "PSAM SERIAL 1", "DATE     2026-11-25 10:00:00"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  EXPECT_THAT(text, HasSubstr("TAC      " + ToHex(ed.tac)));
  EXPECT_THAT(ed.ToJson(), HasSubstr("\"amount\":1250,\"balance_after\":28750"));
  EXPECT_THAT(ed.ToJson(), HasSubstr("\"wallet\":\"ED\""));

  const Receipt ep = Buy(Wallet::kEp, 800);  // EP: no PIN checked
  EXPECT_EQ(ep.balance_after, 4200u);
  EXPECT_EQ(ep.terminal_serial, 2u);

  auto completed = Must(journal_->Purchases(PurchaseState::kCompleted));
  ASSERT_EQ(completed.size(), 2u);
  EXPECT_TRUE(completed[0].psam_credited);
  EXPECT_EQ(ToHex(completed[0].tac), ToHex(ed.tac));
  EXPECT_EQ(completed[1].wallet, Wallet::kEp);
  EXPECT_EQ(CardBalance(Wallet::kEd), 28750u);
  EXPECT_EQ(CardBalance(Wallet::kEp), 4200u);
}

TEST_F(PosTerminalTest, BadInputIsAClearErrorAndMovesNoMoney) {
  Load(Wallet::kEd, 2000);
  auto expect = [&](PosResult<Receipt> r, ErrorKind kind, const std::string& text) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, kind) << r.error().message;
    EXPECT_THAT(r.error().message, HasSubstr(text));
  };
  // A load above the host's load limit: the host refuses (61), the card is not credited.
  auto refused = terminal_->LoadOnline(Wallet::kEd, 600000, kPin);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kHostDeclined) << refused.error().message;
  EXPECT_THAT(refused.error().message, HasSubstr("61"));
  EXPECT_EQ(CardBalance(Wallet::kEd), 2000u);
  expect(terminal_->Purchase({Wallet::kEd, 0, kPin}), ErrorKind::kBadAmount, "greater than zero");
  expect(terminal_->Purchase({Wallet::kEd, 100, std::nullopt}), ErrorKind::kPinRequired, "PIN");
  expect(terminal_->Purchase({Wallet::kEd, 2001, kPin}), ErrorKind::kInsufficientBalance,
         "insufficient balance in the ED for 20.01");
  expect(terminal_->Purchase({Wallet::kEp, 1, kPin}), ErrorKind::kInsufficientBalance,
         "insufficient balance");
  expect(terminal_->Purchase({Wallet::kEd, 100, "999999"}), ErrorKind::kWrongPin, "2 tries left");
  now_.date = {2037, 1, 1};
  expect(terminal_->Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kExpired, "2036-12-31");
  now_.date = {2026, 11, 25};

  // A PSAM of another terminal.
  auto other = Must(
      test_support::NewTestPsam(HexToBytes("50000000000000000999"), HexToBytes("000000000999")));
  Terminal wrong({kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"}, *pulling_,
                 *other.reader, *journal_, nullptr, [this] { return now_; });
  expect(wrong.Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kWrongPsam, "000000000999");

  // No card in the reader.
  card_reader_->RemoveCard();
  expect(terminal_->Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kNoCard, "no card");
  Reinsert();

  // Not a medcard card (a PSAM in the card reader).
  card_reader_->RemoveCard();
  ASSERT_TRUE(card_reader_->InsertCard(other.psam).ok());
  expect(terminal_->Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kNotMedcardCard,
         "not a medcard card");
  card_reader_->RemoveCard();
  Reinsert();

  // Blacklisted by the host and downloaded at day end; the host's purchase limit too.
  ASSERT_TRUE(host_->AddToBlacklist(asn_, "20261101000000").ok());
  DayEnd();
  expect(terminal_->Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kBlacklisted, "blacklist");
  ASSERT_TRUE(host_->RemoveFromBlacklist(asn_).ok());
  const DayEndReport report = DayEnd();
  EXPECT_EQ(Must(journal_->BlacklistSize()), 0u);
  EXPECT_GE(report.parameters_version, 1u);
  expect(terminal_->Purchase({Wallet::kEd, 100001, kPin}), ErrorKind::kBadAmount,
         "above the terminal's purchase limit 1000.00");

  // The third wrong PIN in a row (none was right since the first) blocks it, and it stays
  // blocked for the right one too.
  expect(terminal_->Purchase({Wallet::kEd, 100, "999999"}), ErrorKind::kWrongPin, "1 try left");
  expect(terminal_->Purchase({Wallet::kEd, 100, "999999"}), ErrorKind::kPinBlocked, "blocked");
  expect(terminal_->Purchase({Wallet::kEd, 100, kPin}), ErrorKind::kPinBlocked, "blocked");

  EXPECT_EQ(Count(PurchaseState::kCompleted), 0u);
  EXPECT_EQ(Count(PurchaseState::kPending), 0u);
  EXPECT_EQ(HostBalances().card_ed, 2000);
}

// Issue 5: the card pulled around every card command of an ED purchase (SELECT PSE, SELECT ADF,
// VERIFY, INITIALIZE, DEBIT), before it reached the card and after the card ran it. Reinserted,
// the terminal finishes or voids the purchase; the day end clears exactly what the card paid.
TEST_F(PosTerminalTest, ATornPurchaseAtEveryCardCommandIsRecoveredExactlyOnce) {
  Load(Wallet::kEd, 50000);
  std::uint32_t expected = 50000;
  int completed = 0;
  for (int step = 1; step <= 5; ++step) {
    for (auto when : {PullingReader::When::kBefore, PullingReader::When::kAfter}) {
      SCOPED_TRACE("card pulled at command " + std::to_string(step) +
                   (when == PullingReader::When::kAfter ? " after it ran" : " before it ran"));
      const std::uint32_t amount = 100 + static_cast<std::uint32_t>(step);
      pulling_->PullAt(step, when);
      auto torn = terminal_->Purchase({Wallet::kEd, amount, kPin});
      ASSERT_TRUE(pulling_->pulled());
      ASSERT_FALSE(torn.ok());
      const bool debited = step == 5 && when == PullingReader::When::kAfter;
      if (step == 5) {
        EXPECT_EQ(torn.error().kind, ErrorKind::kTornPurchase) << torn.error().message;
        EXPECT_EQ(Count(PurchaseState::kPending), 1u);
      } else {
        EXPECT_EQ(torn.error().kind, ErrorKind::kNoCard) << torn.error().message;
        EXPECT_EQ(Count(PurchaseState::kPending), 0u);
      }
      // The terminal restarts (a new process would do the same from the journal file).
      journal_.reset();
      OpenJournal();
      NewTerminal();
      Reinsert();
      auto recovered = Must(terminal_->RecoverPending());
      if (step == 5) {
        ASSERT_EQ(recovered.purchases.size(), 1u);
        EXPECT_EQ(recovered.purchases[0].outcome,
                  debited ? RecoveryOutcome::kCompleted : RecoveryOutcome::kVoided);
        if (debited) {
          EXPECT_TRUE(recovered.purchases[0].record.psam_credited);
          EXPECT_EQ(recovered.purchases[0].record.tac.size(), 4u);
        }
      } else {
        EXPECT_TRUE(recovered.purchases.empty());
      }
      EXPECT_EQ(Count(PurchaseState::kPending), 0u);
      if (debited) {
        expected -= amount;
        ++completed;
      }
      // The next purchase goes through.
      Buy(Wallet::kEd, 1000);
      expected -= 1000;
      ++completed;
      EXPECT_EQ(CardBalance(Wallet::kEd), expected);
    }
  }
  EXPECT_EQ(Count(PurchaseState::kCompleted), static_cast<std::size_t>(completed));
  const DayEndReport report = DayEnd();
  EXPECT_EQ(report.purchases_uploaded, static_cast<std::size_t>(completed));
  EXPECT_EQ(report.totals.purchase_count, static_cast<std::uint32_t>(completed));
  EXPECT_EQ(report.totals.purchase_amount, 50000u - expected);
  EXPECT_TRUE(report.psam_cleared);
  EXPECT_EQ(HostBalances().card_ed, expected);
  ExpectHostMatchesCard();
}

// A full card log (ten newer entries) still tells a purchase torn before DEBIT: the newest
// debit's serial is below the pending one, so the serial was never consumed.
TEST_F(PosTerminalTest, ATornPurchaseBeforeDebitIsVoidedAlsoWhenTheCardLogIsFull) {
  Load(Wallet::kEd, 50000);
  for (int i = 0; i < 10; ++i) Buy(Wallet::kEd, 100);
  pulling_->PullAt(5, PullingReader::When::kBefore);  // DEBIT never reached the card
  ASSERT_EQ(terminal_->Purchase({Wallet::kEd, 700, kPin}).error().kind, ErrorKind::kTornPurchase);
  Reinsert();
  auto report = Must(terminal_->RecoverPending());
  ASSERT_EQ(report.purchases.size(), 1u);
  EXPECT_EQ(report.purchases[0].outcome, RecoveryOutcome::kVoided);
  EXPECT_EQ(Count(PurchaseState::kPending), 0u);
  EXPECT_EQ(CardBalance(Wallet::kEd), 50000u - 1000u);
  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_count, 10u);
  EXPECT_EQ(day.totals.purchase_amount, 1000u);
  ExpectHostMatchesCard();
}

// The torn purchase is also settled when the same card comes back for the next purchase, without
// a restart; another card in the reader leaves it pending.
TEST_F(PosTerminalTest, TheCardsNextPurchaseFinishesItsTornPurchaseFirst) {
  Load(Wallet::kEd, 10000);
  pulling_->PullAt(5, PullingReader::When::kAfter);  // DEBIT ran, answer lost
  ASSERT_EQ(terminal_->Purchase({Wallet::kEd, 700, kPin}).error().kind, ErrorKind::kTornPurchase);

  // Another card: the pending record is not its own.
  const Bytes other_asn = HexToBytes("11000000000000000422");
  auto other = Must(test_support::NewTestCardholder(other_asn, kPin));
  ASSERT_TRUE(card_reader_->InsertCard(other.card).ok());
  auto report = Must(terminal_->RecoverPending());
  ASSERT_EQ(report.purchases.size(), 1u);
  EXPECT_EQ(report.purchases[0].outcome, RecoveryOutcome::kStillPending);
  card_reader_->RemoveCard();

  Reinsert();
  const Receipt next = Buy(Wallet::kEd, 300);
  EXPECT_EQ(next.balance_after, 10000u - 700u - 300u);
  auto completed = Must(journal_->Purchases(PurchaseState::kCompleted));
  ASSERT_EQ(completed.size(), 2u);
  EXPECT_TRUE(completed[0].recovered);
  EXPECT_EQ(completed[0].amount, 700u);
  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_amount, 1000u);
  ExpectHostMatchesCard();
}

// The PSAM's half lost: CREDIT_SAM_FOR_PURCHASE never reached it. The receipt stands (the card
// paid); start-up recovery sends the long form and the PSAM's totals agree at settlement.
TEST_F(PosTerminalTest, ALostCreditSamIsSentAgainAndTheTotalsAgree) {
  Load(Wallet::kEd, 10000);
  PullingReader psam(*dynamic_cast<reader::InProcessReader*>(psam_.reader.get()));
  Terminal terminal({kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"}, *pulling_,
                    psam, *journal_, link_.get(), [this] { return now_; });
  // The PSAM's commands of a purchase: READ terminal number, SELECT, INIT_SAM, CREDIT_SAM.
  psam.PullAt(4, PullingReader::When::kBefore);
  auto receipt = terminal.Purchase({Wallet::kEd, 2500, kPin});
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  ASSERT_TRUE(psam.pulled());
  auto completed = Must(journal_->Purchases(PurchaseState::kCompleted));
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_FALSE(completed[0].psam_credited);
  ASSERT_TRUE(
      dynamic_cast<reader::InProcessReader*>(psam_.reader.get())->InsertCard(psam_.psam).ok());
  auto report = Must(terminal_->RecoverPending());
  EXPECT_EQ(report.psam_completions, 1);
  EXPECT_TRUE(Must(journal_->Purchase(completed[0].id))->psam_credited);
  // Sending it once more changes nothing (the PSAM answers "already completed").
  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_amount, 2500u);
  EXPECT_TRUE(day.psam_cleared);
  ExpectHostMatchesCard();
}

// Day end with the host going away half way through a two-message upload: the journal keeps
// what was acknowledged, the next day end uploads the rest and settles the batch once.
TEST_F(PosTerminalTest, AnInterruptedDayEndResumesAndSettlesOnce) {
  Load(Wallet::kEp, 20000);
  std::uint64_t paid = 0;
  for (std::uint32_t i = 1; i <= 20; ++i) {
    Buy(Wallet::kEp, 10 * i);
    paid += 10 * i;
  }
  // Sign-on, then the first upload message; the second goes unanswered.
  line_.down_after = 2;
  auto failed = terminal_->DayEnd();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().kind, ErrorKind::kHostUnreachable) << failed.error().message;
  EXPECT_EQ(Must(journal_->Unuploaded()).size(), 4u);
  EXPECT_TRUE(Must(journal_->Settlements()).empty());

  line_.down = false;
  line_.down_after = -1;
  journal_.reset();
  OpenJournal();
  NewTerminal();
  const DayEndReport report = DayEnd();
  EXPECT_EQ(report.purchases_uploaded, 4u);
  EXPECT_EQ(report.totals.purchase_count, 20u);
  EXPECT_EQ(report.totals.purchase_amount, paid);
  EXPECT_EQ(report.totals.load_count, 1u);
  EXPECT_EQ(report.totals.load_amount, 20000u);
  EXPECT_TRUE(report.psam_cleared);
  auto settlements = Must(host_->Settlements(terminal_number_));
  ASSERT_EQ(settlements.size(), 1u);
  EXPECT_EQ(settlements[0].uploaded_amount, static_cast<std::int64_t>(paid));
  EXPECT_EQ(settlements[0].status, "acknowledged");
  // The next day end settles an empty batch; nothing is cleared twice.
  const DayEndReport next = DayEnd();
  EXPECT_EQ(next.purchases_uploaded, 0u);
  EXPECT_EQ(next.totals.purchase_count, 0u);
  EXPECT_EQ(next.settled_batch, report.settled_batch + 1);
  EXPECT_EQ(HostBalances().card_ep, static_cast<std::int64_t>(20000 - paid));
  ExpectHostMatchesCard();
  // Settled purchases may now be pruned, and only those.
  EXPECT_EQ(Must(journal_->Prune(next.settled_batch + 1)), 20);
}

// An online load whose confirmation goes unanswered: the card has the money, the journal keeps
// the confirmation, and the day end sends it before it settles the load with the batch.
TEST_F(PosTerminalTest, AnUnconfirmedLoadIsConfirmedAtDayEnd) {
  line_.lose_mti = 0x0220;
  auto loaded = terminal_->LoadOnline(Wallet::kEd, 30000, kPin);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->balance_after, 30000u);
  ASSERT_EQ(Must(journal_->UnconfirmedLoads()).size(), 1u);
  line_.lose_mti.reset();
  Buy(Wallet::kEd, 4500);
  const DayEndReport report = DayEnd();
  EXPECT_EQ(report.loads_confirmed, 1);
  EXPECT_TRUE(Must(journal_->UnconfirmedLoads()).empty());
  EXPECT_EQ(report.totals.load_count, 1u);
  EXPECT_EQ(report.totals.load_amount, 30000u);
  EXPECT_EQ(HostBalances().card_ed, 25500);
  ExpectHostMatchesCard();
}

// A hospital terminal records the visit on the card (SSSE EF08) as part of the purchase.
TEST_F(PosTerminalTest, APurchaseWithAVisitAppendsItToTheCard) {
  Load(Wallet::kEd, 10000);
  terminal::VisitRecord visit;
  visit.date = now_.date;
  visit.time = now_.time;
  visit.visit_type = 1;
  visit.diagnosis = "J06.9";
  visit.total = 5000;
  visit.paid_by_account = 3000;
  visit.paid_by_pool = 2000;
  auto receipt = terminal_->Purchase({Wallet::kEd, 3000, kPin, visit});
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  EXPECT_TRUE(receipt->visit_recorded) << receipt->visit_error.value_or("");
  EXPECT_THAT(receipt->Text(), HasSubstr("VISIT RECORDED"));
  auto visits = Must(terminal::ReadVisitRecords(*pulling_));
  ASSERT_EQ(visits.size(), 1u);
  EXPECT_EQ(visits[0].facility_code, "H1");
  EXPECT_EQ(visits[0].paid_by_account, 3000u);
  EXPECT_EQ(receipt->balance_after, 7000u);
  // The purse still works after the SSSE selection.
  EXPECT_EQ(Buy(Wallet::kEd, 1000).balance_after, 6000u);
}

// What a purchase costs at the readers: the PBOC minimum is SELECT ADF, VERIFY (ED), INITIALIZE,
// DEBIT at the card and INIT_SAM, CREDIT_SAM at the PSAM; the terminal adds SELECT PSE (the
// issue's select path) and, at the PSAM, READ terminal number and SELECT (the wrong-PSAM check).
TEST_F(PosTerminalTest, APurchaseTakesFiveCardAndFourPsamCommands) {
  Load(Wallet::kEd, 10000);
  Load(Wallet::kEp, 10000);
  PullingReader psam(*dynamic_cast<reader::InProcessReader*>(psam_.reader.get()));
  Terminal terminal({kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"}, *pulling_,
                    psam, *journal_, link_.get(), [this] { return now_; });
  int card_before = pulling_->commands();
  ASSERT_TRUE(terminal.Purchase({Wallet::kEd, 100, kPin}).ok());
  EXPECT_EQ(pulling_->commands() - card_before, 5);
  EXPECT_EQ(psam.commands(), 4);
  card_before = pulling_->commands();
  ASSERT_TRUE(terminal.Purchase({Wallet::kEp, 100, std::nullopt}).ok());
  EXPECT_EQ(pulling_->commands() - card_before, 4);  // no VERIFY
  EXPECT_EQ(psam.commands(), 8);
}

// The PSAM is pulled as the host's CLEAR SAM TOTALS MAC arrives: the settlement stands (the host
// closed the batch), the MAC waits in the journal, and the next purchase clears the PSAM first
// so that the next batch's totals agree.
TEST_F(PosTerminalTest, AClearSamTotalsThatDidNotReachThePsamIsSentBeforeTheNextPurchase) {
  Load(Wallet::kEp, 10000);
  auto* psam_inner = dynamic_cast<reader::InProcessReader*>(psam_.reader.get());
  PullingReader psam(*psam_inner);
  Terminal terminal({kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"}, *pulling_,
                    psam, *journal_, link_.get(), [this] { return now_; });
  ASSERT_TRUE(terminal.Purchase({Wallet::kEp, 1200, std::nullopt}).ok());
  psam.PullOnIns(0x7C);
  auto day = terminal.DayEnd();
  ASSERT_TRUE(day.ok()) << day.error().message;
  EXPECT_FALSE(day->psam_cleared);
  EXPECT_EQ(day->totals.purchase_amount, 1200u);
  ASSERT_TRUE(Must(journal_->UnclearedSettlement()).has_value());

  ASSERT_TRUE(psam_inner->InsertCard(psam_.psam).ok());
  auto after = terminal.Purchase({Wallet::kEp, 300, std::nullopt});
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_FALSE(Must(journal_->UnclearedSettlement()).has_value());
  const DayEndReport next = Must(terminal.DayEnd());
  EXPECT_EQ(next.totals.purchase_count, 1u);
  EXPECT_EQ(next.totals.purchase_amount, 300u);
  EXPECT_TRUE(next.psam_cleared);
  ExpectHostMatchesCard();
}

// The journal write that must come before DEBIT fails: DEBIT is never sent and no money moves.
// The completion write fails after DEBIT: no receipt, the record stays pending, and recovery
// completes it from the card.
TEST_F(PosTerminalTest, AJournalThatCannotBeWrittenStopsThePurchaseBeforeTheMoneyMoves) {
  Load(Wallet::kEp, 5000);
  // A purchase's statements: parameters, uncleared settlement, pending records, blacklist, then
  // the PENDING insert (5th) and the COMPLETED update (6th).
  journal_->connection().InjectFault(5);
  auto refused = terminal_->Purchase({Wallet::kEp, 700, std::nullopt});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ErrorKind::kJournalError) << refused.error().message;
  EXPECT_TRUE(journal_->connection().fault_fired());
  EXPECT_EQ(Count(PurchaseState::kPending), 0u);
  EXPECT_EQ(CardBalance(Wallet::kEp), 5000u);

  journal_->connection().InjectFault(6);
  auto unjournalled = terminal_->Purchase({Wallet::kEp, 800, std::nullopt});
  ASSERT_FALSE(unjournalled.ok());
  EXPECT_EQ(unjournalled.error().kind, ErrorKind::kJournalError);
  EXPECT_EQ(Count(PurchaseState::kPending), 1u);
  EXPECT_EQ(CardBalance(Wallet::kEp), 4200u);
  auto report = Must(terminal_->RecoverPending());
  ASSERT_EQ(report.purchases.size(), 1u);
  EXPECT_EQ(report.purchases[0].outcome, RecoveryOutcome::kCompleted);
  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_count, 1u);
  EXPECT_EQ(day.totals.purchase_amount, 800u);
  ExpectHostMatchesCard();
}

// The host's totals disagree (95: here the journal says a purchase was acknowledged that the host
// never got): the terminal uploads the whole batch again and settles with a new challenge.
TEST_F(PosTerminalTest, TotalsThatDisagreeAreUploadedAgainAndSettled) {
  Load(Wallet::kEp, 5000);
  Buy(Wallet::kEp, 600);
  const Receipt lost = Buy(Wallet::kEp, 400);
  ASSERT_TRUE(
      journal_->MarkUploaded({lost.journal_id}, Must(journal_->LinkState()).batch_number).ok());
  const DayEndReport report = DayEnd();
  EXPECT_EQ(report.purchases_uploaded, 1u);
  EXPECT_EQ(report.totals.purchase_amount, 1000u);
  EXPECT_TRUE(report.psam_cleared);
  ExpectHostMatchesCard();
}

// The terminal stopped between the host's settlement approval and its journal write (simulated by
// undoing the write): the day end says what happened instead of failing on 95 forever.
TEST_F(PosTerminalTest, ALostSettlementApprovalIsReportedNotRetriedForever) {
  Load(Wallet::kEp, 5000);
  Buy(Wallet::kEp, 600);
  DayEnd();
  ASSERT_TRUE(journal_->connection().Execute("DELETE FROM pos_settlement").ok());
  ASSERT_TRUE(journal_->connection().Execute("UPDATE pos_purchase SET settled = 0").ok());
  auto day = terminal_->DayEnd();
  ASSERT_FALSE(day.ok());
  EXPECT_EQ(day.error().kind, ErrorKind::kHostDeclined);
  EXPECT_THAT(day.error().message, HasSubstr("batch 1 was settled by the host"));
}

TEST_F(PosTerminalTest, OfflineTheTerminalStillSellsButCannotLoadOrSettle) {
  Load(Wallet::kEp, 1000);
  Terminal offline({kMerchant, kTerminalId, "City Hospital", terminal_number_, "H1"}, *pulling_,
                   *psam_.reader, *journal_, nullptr, [this] { return now_; });
  auto receipt = offline.Purchase({Wallet::kEp, 250, std::nullopt});
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  EXPECT_EQ(receipt->balance_after, 750u);
  EXPECT_EQ(offline.DayEnd().error().kind, ErrorKind::kHostUnreachable);
  EXPECT_EQ(offline.LoadOnline(Wallet::kEp, 100, std::nullopt).error().kind,
            ErrorKind::kHostUnreachable);
  auto balances = Must(offline.ReadBalances(std::nullopt));
  EXPECT_EQ(balances.ep, 750u);
  auto history = Must(offline.ReadHistory());
  ASSERT_GE(history.size(), 2u);
  EXPECT_EQ(history[0].amount, 250u);
  EXPECT_EQ(history[0].type, 0x06);
}

// The issuer's card maintenance, done on the card outside the terminal (taken out of the POS's
// reader meanwhile) with the test key set's card keys (docs/card-commands.md).
class PosCardMaintenanceTest : public PosTerminalTest {
 protected:
  // The card's key of `role`: the test master diversified by the ASN.
  Bytes CardKey(std::string_view role) {
    return Must(crypto::Diversify(issuance::TestKeySet::Embedded().MasterKey(role),
                                  crypto::AsnFactor(asn_)));
  }
  // Runs `work` on the card in a reader of its own.
  template <typename Work>
  void OutsideTheTerminal(Work work) {
    ASSERT_TRUE(card_reader_->RemoveCard() != nullptr);
    reader::InProcessReader issuer("issuer", holder_.card.get());
    ASSERT_TRUE(issuer.Connect().ok());
    work(issuer);
    issuer.RemoveCard();
    ASSERT_TRUE(card_reader_->InsertCard(holder_.card).ok());
  }
  // SELECT of the medical ADF; its status word (6A81 when blocked: the ADF is still selected).
  static std::uint16_t SelectAdf(reader::Reader& card) {
    const Bytes aid = HexToBytes("D15600000503");
    return Must(reader::Send(card, iso7816::CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, aid, 256)))
        .sw.value;
  }
  // A CLA 84 command with its secure-messaging MAC under the card's maintenance key: GET
  // CHALLENGE, then `84 ins 00 p2 04 MAC` (docs/card-commands.md "Secure messaging").
  std::uint16_t Maintenance(reader::Reader& card, std::uint8_t ins, std::uint8_t p2) {
    const Bytes challenge =
        Must(reader::Send(card, iso7816::CommandApdu::Case2(0x00, 0x84, 0x00, 0x00, 4))).data;
    Bytes iv = challenge;
    iv.resize(8, 0x00);
    const Bytes header{0x84, ins, 0x00, p2, 0x04};
    const Bytes mac = Must(crypto::PbocMac(CardKey("maintenance"), header, iv));
    return Must(reader::Send(card, iso7816::CommandApdu::Case3(0x84, ins, 0x00, p2, mac))).sw.value;
  }
  // APPLICATION BLOCK (84 1E): P2 00 temporary (SELECT answers 6A81), 01 permanent (9303).
  void BlockApplication(bool permanent) {
    OutsideTheTerminal([&](reader::Reader& card) {
      ASSERT_EQ(SelectAdf(card), 0x9000);
      EXPECT_EQ(Maintenance(card, 0x1E, permanent ? 0x01 : 0x00), 0x9000);
    });
  }
  void UnblockApplication() {
    OutsideTheTerminal([&](reader::Reader& card) {
      ASSERT_EQ(SelectAdf(card), 0x6A81);
      EXPECT_EQ(Maintenance(card, 0x18, 0x00), 0x9000);
    });
  }
  // INITIALIZE FOR UPDATE + UPDATE OVERDRAW LIMIT (pboc-ed-ep.md "Overdraw limit update") with
  // MAC2 under the card's DUK, as the issuer's host would compute it.
  void SetOverdrawLimit(std::uint32_t limit) {
    OutsideTheTerminal([&](reader::Reader& card) {
      ASSERT_TRUE(terminal::SelectMedicalApplication(card).ok());
      ASSERT_TRUE(terminal::VerifyPin(card, kPin).ok());
      Bytes init_data{0x01};  // key index
      Append(init_data, View(terminal_number_));
      // → balance(4) ‖ onlineSerial(2) ‖ overdraw limit(3) ‖ keyVersion ‖ algId ‖ random(4) ‖
      // MAC1(4)
      const auto init = Must(
          reader::Send(card, iso7816::CommandApdu::Case4(0x80, 0x50, 0x04, 0x01, init_data, 0x13)));
      ASSERT_EQ(init.sw.value, 0x9000);
      ASSERT_EQ(init.data.size(), 19u);
      const Bytes session_key = Must(crypto::LoadSessionKey(
          CardKey("overdraw"), View(init.data).subspan(11, 4), View(init.data).subspan(4, 2)));
      const Bytes date_time =
          Concat({View(EncodeBcdDate(now_.date)), View(EncodeBcdTime(now_.time))});
      Bytes mac2_input;
      AppendU24(mac2_input, limit);
      mac2_input.push_back(0x07);  // overdraw-limit update
      Append(mac2_input, View(terminal_number_));
      Append(mac2_input, View(date_time));
      Bytes update;
      AppendU24(update, limit);
      Append(update, View(date_time));
      Append(update, View(Must(crypto::PbocMac(session_key, mac2_input))));
      const auto updated =
          Must(reader::Send(card, iso7816::CommandApdu::Case4(0x80, 0x58, 0x00, 0x00, update, 4)));
      ASSERT_EQ(updated.sw.value, 0x9000);
      EXPECT_EQ(updated.data.size(), 4u);  // the TAC
    });
    ASSERT_EQ(holder_.card->Inspect().purses.at(0).ed.overdraw_limit, limit);
  }
  card::WalletSummary Ed() { return holder_.card->Inspect().purses.at(0).ed; }
  card::WalletSummary Ep() { return holder_.card->Inspect().purses.at(0).ep; }
};

// A blocked medical application (temporary: SELECT answers 6A81; permanent: 9303) is refused
// when the card is selected, before any PIN, INITIALIZE or DEBIT: no money moves on the card,
// nothing is journalled, nothing reaches the host; unblocked, the card pays again.
TEST_F(PosCardMaintenanceTest, ABlockedApplicationIsRefusedAndMovesNoMoney) {
  Load(Wallet::kEd, 5000);
  Load(Wallet::kEp, 3000);
  BlockApplication(/*permanent=*/false);
  ASSERT_EQ(holder_.card->Inspect().purses.at(0).block, card::AppBlock::kTemporary);

  for (const PurchaseOrder& order :
       {PurchaseOrder{Wallet::kEd, 1000, kPin}, PurchaseOrder{Wallet::kEp, 1000, std::nullopt}}) {
    auto refused = terminal_->Purchase(order);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().kind, ErrorKind::kApplicationBlocked) << refused.error().message;
    EXPECT_THAT(refused.error().message, HasSubstr("application blocked (6A81)"));
    EXPECT_STREQ(ErrorKindName(refused.error().kind), "application_blocked");
  }
  auto load = terminal_->LoadOnline(Wallet::kEd, 1000, kPin);
  ASSERT_FALSE(load.ok());
  EXPECT_EQ(load.error().kind, ErrorKind::kApplicationBlocked) << load.error().message;
  // The PIN was never presented: a blocked card costs the cardholder no PIN try.
  ASSERT_TRUE(holder_.card->Inspect().purses.at(0).pin.has_value());
  EXPECT_EQ(holder_.card->Inspect().purses.at(0).pin->tries_left, 3);
  EXPECT_EQ(Ed().balance, 5000u);
  EXPECT_EQ(Ep().balance, 3000u);
  EXPECT_EQ(Count(PurchaseState::kPending), 0u);
  EXPECT_EQ(Count(PurchaseState::kCompleted), 0u);

  UnblockApplication();
  EXPECT_EQ(CardBalance(Wallet::kEd), 5000u);
  EXPECT_EQ(Buy(Wallet::kEd, 1000).balance_after, 4000u);

  BlockApplication(/*permanent=*/true);
  auto permanent = terminal_->Purchase({Wallet::kEd, 1000, kPin});
  ASSERT_FALSE(permanent.ok());
  EXPECT_EQ(permanent.error().kind, ErrorKind::kApplicationBlocked) << permanent.error().message;
  EXPECT_THAT(permanent.error().message, HasSubstr("9303"));
  EXPECT_EQ(Ed().balance, 4000u);
  EXPECT_EQ(Ep().balance, 3000u);

  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_count, 1u);
  EXPECT_EQ(day.totals.purchase_amount, 1000u);
  EXPECT_EQ(HostBalances().card_ed, 4000);
  EXPECT_EQ(HostBalances().card_ep, 3000);
}

// The ED may go below zero down to its overdraw limit (INITIALIZE FOR PURCHASE answers what is
// left of it): a purchase within balance + overdraw left succeeds, one fen more is refused as
// insufficient before DEBIT; the EP has no overdraw.
TEST_F(PosCardMaintenanceTest, AnEdPurchaseMayUseTheOverdrawLimitAndNoMore) {
  Load(Wallet::kEd, 1000);
  Load(Wallet::kEp, 1000);
  SetOverdrawLimit(5000);
  auto expect_insufficient = [&](Wallet wallet, std::uint32_t amount) {
    auto refused = terminal_->Purchase({wallet, amount, kPin});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().kind, ErrorKind::kInsufficientBalance) << refused.error().message;
    EXPECT_THAT(refused.error().message, HasSubstr("insufficient balance"));
  };

  // 10.00 of balance + 50.00 of overdraw: 60.01 is refused, nothing moves.
  expect_insufficient(Wallet::kEd, 6001);
  EXPECT_EQ(Ed().balance, 1000u);
  EXPECT_EQ(Ed().overdraw_used, 0u);

  const Receipt into_overdraw = Buy(Wallet::kEd, 2500);
  EXPECT_EQ(into_overdraw.amount, 2500u);
  EXPECT_EQ(into_overdraw.balance_after, 0u);
  EXPECT_EQ(Ed().balance, 0u);
  EXPECT_EQ(Ed().overdraw_used, 1500u);

  // 35.00 of overdraw left: 35.01 refused, 35.00 accepted, then not one fen more.
  expect_insufficient(Wallet::kEd, 3501);
  EXPECT_EQ(Ed().overdraw_used, 1500u);
  EXPECT_EQ(Buy(Wallet::kEd, 3500).balance_after, 0u);
  EXPECT_EQ(Ed().overdraw_used, 5000u);
  expect_insufficient(Wallet::kEd, 1);

  // The EP's own balance only.
  expect_insufficient(Wallet::kEp, 1001);
  EXPECT_EQ(Buy(Wallet::kEp, 1000).balance_after, 0u);

  auto completed = Must(journal_->Purchases(PurchaseState::kCompleted));
  ASSERT_EQ(completed.size(), 3u);
  EXPECT_EQ(completed[0].balance_before, 1000u);
  EXPECT_EQ(completed[1].balance_before, 0u);
  EXPECT_EQ(Count(PurchaseState::kPending), 0u);
  const DayEndReport day = DayEnd();
  EXPECT_EQ(day.totals.purchase_count, 3u);
  EXPECT_EQ(day.totals.purchase_amount, 7000u);
  EXPECT_TRUE(day.psam_cleared);
}

}  // namespace
}  // namespace medcard::pos
