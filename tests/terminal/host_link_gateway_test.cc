// The terminal's host link against the real host: HostLink → an in-process Transport →
// host::TerminalGateway::Handle, with the host set up as tests/host/host_test.cc does it
// (test_scheme.h: test key set, the terminal's TMK imported before its registration, a real test
// card and PSAM through in-process readers), on SQLite and PostgreSQL. The terminal has its own key
// store holding only its TMK.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "host/gateway.h"
#include "host/host.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "reader/reader.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::terminal {
namespace {

namespace fs = std::filesystem;
using iso8583::ResponseCode;
using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kPerson[] = "310101199001011234";
constexpr char kMerchant[] = "898440154110001";
constexpr char kTerminalId[] = "POS00042";
const Bytes kTmk = HexToBytes("0F1E2D3C4B5A69788796A5B4C3D2E1F0");

// 2026-11-25 09:15:00 UTC, the host's clock.
std::int64_t HostClock() {
  using namespace std::chrono;
  const auto t = sys_days{year{2026} / 11 / 25} + hours{9} + minutes{15};
  return duration_cast<microseconds>(t.time_since_epoch()).count();
}

// The gateway in process. lose_answers drops the next answers after the host made them (a
// broken connection on the way back), so a retry meets the host's stored first answer.
struct LossyGateway {
  host::TerminalGateway* gateway = nullptr;
  int lose_answers = 0;
  std::optional<iso8583::Mti> only_of;  // lose only answers to requests of this MTI
  int exchanges = 0;
  std::optional<Bytes> operator()(ByteView frame) {
    ++exchanges;
    host::GatewayReply reply = gateway->Handle(frame);
    const auto mti = static_cast<iso8583::Mti>(frame[11] << 8 | frame[12]);  // after TPDU, header
    if (lose_answers > 0 && reply.frame && (!only_of || *only_of == mti)) {
      --lose_answers;
      return std::nullopt;
    }
    return reply.frame;
  }
};

// Result, store::DbResult or host::HostResult.
template <typename R>
auto Must(R result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

class HostLinkGatewayTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-host-link");
    host_keys_ =
        Must(test_support::TestKeyStore((fs::path(dir_) / "host-keys").string(), "host test"));
    const std::string tmk_name = "tmk/" + ToHex(terminal_number_);
    ASSERT_TRUE(host_keys_->ImportTestKey(tmk_name, kTmk).ok());
    terminal_keys_ = Must(keys::CreateSoftwareKeyStore((fs::path(dir_) / "terminal-keys").string(),
                                                       "terminal test", true));
    ASSERT_TRUE(terminal_keys_->ImportTestKey(tmk_name, kTmk).ok());

    test_support::TestDatabase db = Must(test_support::NewHostDatabase(GetParam()));
    db_ = std::move(db.database);
    conn_ = std::move(db.connection);
    host_ = std::make_unique<host::Host>(*conn_, *host_keys_);
    ASSERT_TRUE(host_->RegisterMerchant({kMerchant, "City Hospital", "hospital-3A"}).ok());
    auto registered =
        host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_, kTerminalId});
    ASSERT_TRUE(registered.ok()) << registered.error().message;
    ASSERT_TRUE(host_->RegisterCard({asn_, "holder-1", kPerson}).ok());
    ASSERT_TRUE(host_->CreditMedicalAccount("2026-11", kPerson, 100000).ok());
    gateway_ = std::make_unique<host::TerminalGateway>(
        *conn_, *host_keys_, host::GatewayOptions{[] { return HostClock(); }, 8192});
    lossy_.gateway = gateway_.get();
    transport_ =
        std::make_unique<InProcessTransport>([this](ByteView frame) { return lossy_(frame); });

    config_.terminal_id = kTerminalId;
    config_.merchant_id = kMerchant;
    config_.terminal_number = terminal_number_;
    config_.tmk_version = 1;
    config_.sleep = [](std::chrono::milliseconds) {};
    link_ = std::make_unique<HostLink>(config_, *transport_, *terminal_keys_, LinkState{},
                                       [this](const LinkState& s) { saved_ = s; });

    cardholder_ = Must(test_support::NewTestCardholder(asn_, "123456"));
    psam_ = Must(test_support::NewTestPsam(psam_serial_, terminal_number_));
  }
  void TearDown() override {
    link_.reset();
    transport_.reset();
    gateway_.reset();
    host_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  void SignOn() {
    auto reply = link_->SignOn();
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    ASSERT_TRUE(reply->approved()) << iso8583::ResponseCodeText(reply->code);
  }
  Result<LoadResult> Load(LoadAuthoriser& issuer, std::uint32_t amount) {
    // The terminal's clock is 4 minutes behind the host's: CREDIT FOR LOAD must carry the
    // host's date and time, which MAC2 covers.
    return terminal::Load(*cardholder_.reader, issuer, cardholder_.app,
                          {Wallet::kEd, amount, terminal_number_, {2026, 11, 25}, {9, 11, 0}});
  }
  PurchaseResult Purchase(std::uint32_t amount) {
    auto p = terminal::Purchase(*cardholder_.reader, *psam_.reader, cardholder_.app,
                                {Wallet::kEd, amount, {2026, 11, 25}, {10, 0, 0}});
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? *p : PurchaseResult{};
  }
  host::Balances Balances() { return Must(host_->BalanceInquiry(asn_)); }

  std::string dir_;
  std::unique_ptr<keys::KeyStore> host_keys_, terminal_keys_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<host::Host> host_;
  std::unique_ptr<host::TerminalGateway> gateway_;
  LossyGateway lossy_;
  std::unique_ptr<InProcessTransport> transport_;
  HostLinkConfig config_;
  LinkState saved_;
  std::unique_ptr<HostLink> link_;
  Bytes asn_ = HexToBytes("11000000000000000421");
  Bytes psam_serial_ = HexToBytes("50000000000000000421");
  Bytes terminal_number_ = HexToBytes("000000000421");
  test_support::TestCardholder cardholder_;
  test_support::TestPsam psam_;
};

TEST_P(HostLinkGatewayTest, SignOnThenEchoParametersBlacklistAndBalance) {
  SignOn();
  EXPECT_TRUE(link_->signed_on());
  EXPECT_GE(link_->key_version(), 1);

  auto echo = link_->EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
  EXPECT_EQ(echo->host_time, "1125091500");

  auto parameters = link_->DownloadParameters(0);
  ASSERT_TRUE(parameters.ok()) << parameters.error().message;
  ASSERT_TRUE(parameters->approved()) << iso8583::ResponseCodeText(parameters->code);
  EXPECT_FALSE(parameters->up_to_date);
  EXPECT_GE(parameters->version, 1u);
  EXPECT_EQ(parameters->parameters.clock_date, (Date{2026, 11, 25}));
  auto again = link_->DownloadParameters(parameters->version);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->up_to_date);

  const Bytes lost = HexToBytes("11000000000000000999");
  ASSERT_TRUE(host_->RegisterCard({lost, "holder-2", "310101199001015678"}).ok());
  auto listed = host_->AddToBlacklist(lost, "20261101000000");
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  auto blacklist = link_->DownloadBlacklist(0);
  ASSERT_TRUE(blacklist.ok()) << blacklist.error().message;
  ASSERT_TRUE(blacklist->approved()) << iso8583::ResponseCodeText(blacklist->code);
  EXPECT_TRUE(blacklist->full);
  ASSERT_EQ(blacklist->entries.size(), 1u);
  EXPECT_EQ(ToHex(blacklist->entries[0].asn), "11000000000000000999");

  auto balance = link_->BalanceInquiry(asn_);
  ASSERT_TRUE(balance.ok()) << balance.error().message;
  ASSERT_TRUE(balance->approved()) << iso8583::ResponseCodeText(balance->code);
  EXPECT_EQ(balance->balance.amount, 100000u);
  EXPECT_FALSE(balance->balance.negative);
}

TEST_P(HostLinkGatewayTest, ALoadThroughTerminalLoadCreditsTheCardOnce) {
  SignOn();
  HostLoadAuthoriser authoriser(*link_);
  auto loaded = Load(authoriser, 30000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(Must(GetBalance(*cardholder_.reader, Wallet::kEd)), 30000u);
  ASSERT_TRUE(authoriser.last_load().has_value());
  EXPECT_EQ(authoriser.last_load()->authorisation.time, (TimeOfDay{9, 15, 0}));
  ASSERT_TRUE(authoriser.last_confirmation().has_value());
  EXPECT_TRUE(authoriser.last_confirmation()->approved());
  EXPECT_EQ(Balances().medical_account, 70000);
  EXPECT_EQ(Balances().card_ed, 30000);

  // The load's answer is lost once: the retry (same bytes) fetches the host's first answer and
  // nothing is reserved twice.
  lossy_.lose_answers = 1;
  const int before = lossy_.exchanges;
  loaded = Load(authoriser, 20000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(lossy_.exchanges - before, 3);  // load twice, confirmation once
  EXPECT_EQ(Must(GetBalance(*cardholder_.reader, Wallet::kEd)), 50000u);
  EXPECT_EQ(Balances().medical_account, 50000);
  EXPECT_EQ(Balances().card_ed, 50000);
  auto problems = Must(host_->CheckHost());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST_P(HostLinkGatewayTest, AnUnansweredConfirmationIsSentAgainFromTheJournal) {
  SignOn();
  HostLoadAuthoriser authoriser(*link_);
  auto loaded = Load(authoriser, 30000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  lossy_.lose_answers = 3;  // the load goes through; every attempt of its confirmation is lost
  lossy_.only_of = 0x0220;
  loaded = Load(authoriser, 20000);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message, HasSubstr("no answer from the host"));
  EXPECT_EQ(Must(GetBalance(*cardholder_.reader, Wallet::kEd)), 50000u);  // the card has the money
  ASSERT_TRUE(authoriser.last_load().has_value() && authoriser.last_tac().has_value());
  auto confirmed = link_->ConfirmLoad(authoriser.last_load()->load, *authoriser.last_tac());
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_TRUE(confirmed->approved()) << iso8583::ResponseCodeText(confirmed->code);
  EXPECT_EQ(Balances().medical_account, 50000);
  EXPECT_EQ(Balances().card_ed, 50000);
  auto problems = Must(host_->CheckHost());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST_P(HostLinkGatewayTest, AnUnansweredLoadIsReversedAndTheCardIsNotCredited) {
  SignOn();
  HostLoadAuthoriser authoriser(*link_);
  lossy_.lose_answers = 3;  // every attempt of the load
  auto loaded = Load(authoriser, 30000);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message, HasSubstr("reversed"));
  EXPECT_EQ(Must(GetBalance(*cardholder_.reader, Wallet::kEd)), 0u);
  EXPECT_EQ(Balances().medical_account, 100000);
  EXPECT_EQ(Balances().card_ed, 0);
}

TEST_P(HostLinkGatewayTest, PurchasesAreUploadedAndTheBatchSettlesWithTheRealPsam) {
  SignOn();
  HostLoadAuthoriser authoriser(*link_);
  ASSERT_TRUE(Load(authoriser, 50000).ok());
  std::vector<PurchaseResult> purchases;
  for (std::uint32_t amount : {1250u, 8630u, 100u}) purchases.push_back(Purchase(amount));
  auto uploaded = link_->UploadPurchases(purchases);
  ASSERT_TRUE(uploaded.ok()) << uploaded.error().message;
  ASSERT_TRUE(uploaded->approved()) << iso8583::ResponseCodeText(uploaded->code);
  EXPECT_EQ(uploaded->uploaded, 3u);
  EXPECT_EQ(Balances().card_ed, 50000 - 1250 - 8630 - 100);

  auto challenge = link_->SettlementChallenge();
  ASSERT_TRUE(challenge.ok()) << challenge.error().message;
  ASSERT_TRUE(challenge->approved());
  auto totals = reader::Send(
      *psam_.reader, iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge->challenge, 22));
  ASSERT_TRUE(totals.ok() && totals->ok());
  const PsamTotals psam{psam_serial_, 1, challenge->challenge, totals->data};
  const std::uint32_t batch = link_->state().batch_number;
  auto settled = link_->Settle({3, 1250 + 8630 + 100, 1, 50000}, psam);
  ASSERT_TRUE(settled.ok()) << settled.error().message;
  ASSERT_TRUE(settled->approved()) << iso8583::ResponseCodeText(settled->code);
  auto cleared =
      reader::Send(*psam_.reader,
                   iso7816::CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, settled->clear_totals_mac));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok()) << "the PSAM refused the host's CLEAR SAM TOTALS MAC";
  EXPECT_EQ(link_->state().batch_number, batch + 1);
  EXPECT_EQ(saved_, link_->state());
  // The host has opened the same next batch.
  auto echo = link_->EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved()) << iso8583::ResponseCodeText(echo->code);
  auto problems = Must(host_->CheckHost());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST_P(HostLinkGatewayTest, SignOffAndStaleKeysNeedANewSignOn) {
  SignOn();
  auto off = link_->SignOff();
  ASSERT_TRUE(off.ok()) << off.error().message;
  EXPECT_TRUE(off->approved());
  EXPECT_FALSE(link_->signed_on());
  EXPECT_FALSE(link_->EchoTest().ok());  // nothing but a sign-on without working keys

  // A second link of the same terminal (its own trace range) signs on; then this one does, which
  // replaces the keys at the host: the other's next request is refused for its stale key
  // version (A0, no MAC the terminal could check), which is no usable answer.
  HostLink stale(config_, *transport_, *terminal_keys_, LinkState{.last_trace = 500});
  ASSERT_TRUE(stale.SignOn().ok());
  SignOn();
  EXPECT_NE(link_->key_version(), stale.key_version());
  auto echo = stale.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("A0 without a MAC"));
  auto renewed = stale.SignOn();
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  echo = stale.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
}

INSTANTIATE_TEST_SUITE_P(Engines, HostLinkGatewayTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::terminal
