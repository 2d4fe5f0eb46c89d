// The terminal gateway as a terminal sees it (docs/protocol.md): requests built with the
// iso8583 types and MACed with the keys the terminal holds (its TMK, then the working keys it
// unwrapped from the sign-on answer), a real test card and PSAM through the terminal's purse
// flows, on both database engines.
#include "host/gateway.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso8583/messages.h"
#include "issuance/test_issuer.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::host {
namespace {

namespace fs = std::filesystem;
using iso8583::Frame;
using iso8583::Message;
using iso8583::ResponseCode;
using ::testing::ElementsAre;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kPerson[] = "310101199001011234";
constexpr char kMerchant[] = "898440154110001";
constexpr char kTerminalId[] = "POS00001";
const Bytes kTmk = HexToBytes("00112233445566778899AABBCCDDEEFF");

// 2026-11-25 09:15:00 UTC.
std::int64_t TestClock() {
  using namespace std::chrono;
  const auto t = sys_days{year{2026} / 11 / 25} + hours{9} + minutes{15};
  return duration_cast<microseconds>(t.time_since_epoch()).count();
}

// An answer as the terminal checks it: parsed, validated against its request, MAC verified.
struct Answer {
  GatewayReply reply;
  Frame frame;
  ResponseCode code = ResponseCode::kSystemMalfunction;
  bool has_mac = false;
  const Message& message() const { return frame.message; }
};

class GatewayTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-gateway");
    auto key_store = test_support::TestKeyStore((fs::path(dir_) / "keys").string(), "gateway test");
    ASSERT_TRUE(key_store.ok()) << key_store.error().message;
    key_store_ = std::move(key_store).value();
    // The terminal's TMK, known to the test terminal: imported before the registration.
    ASSERT_TRUE(key_store_->ImportTestKey("tmk/000000000301", kTmk).ok());

    auto db = test_support::NewHostDatabase(GetParam());
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db->database);
    conn_ = std::move(db->connection);
    host_ = std::make_unique<Host>(*conn_, *key_store_);
    ASSERT_TRUE(host_->RegisterMerchant({kMerchant, "City Hospital", "hospital-3A"}).ok());
    auto terminal =
        host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_, kTerminalId});
    ASSERT_TRUE(terminal.ok()) << terminal.error().message;
    ASSERT_TRUE(host_->RegisterCard({asn_, "holder-1", kPerson}).ok());
    ASSERT_TRUE(host_->CreditMedicalAccount("2026-11", kPerson, 100000).ok());
    gateway_ = std::make_unique<TerminalGateway>(*conn_, *key_store_,
                                                 GatewayOptions{[this] { return now_us_; }, 8192});

    auto cardholder = test_support::NewTestCardholder(asn_, "123456");
    ASSERT_TRUE(cardholder.ok()) << cardholder.error().message;
    cardholder_ = std::move(cardholder).value();
    auto psam = test_support::NewTestPsam(psam_serial_, terminal_number_);
    ASSERT_TRUE(psam.ok()) << psam.error().message;
    psam_ = std::move(psam).value();
  }
  void TearDown() override {
    gateway_.reset();
    host_.reset();
    key_store_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  // ---- The test terminal ---------------------------------------------------------------------

  // The common fields: 11 (a new trace unless given), 41, 42, 60, and 53 for working-key messages.
  Message Request(iso8583::Transaction transaction, std::optional<std::uint32_t> trace = {}) {
    const iso8583::TransactionSpec& spec = iso8583::SpecOf(transaction);
    Message m(spec.request_mti);
    EXPECT_TRUE(m.SetNumber(11, trace ? *trace : ++trace_).ok());
    EXPECT_TRUE(m.SetText(41, terminal_id_).ok());
    EXPECT_TRUE(m.SetText(42, kMerchant).ok());
    EXPECT_TRUE(
        m.SetDigits(60,
                    *iso8583::Field60{spec.message_type, batch_, spec.network_codes[0]}.Encode())
            .ok());
    if (spec.mac_key == iso8583::MacKeyUse::kWorkingMacKey) {
      EXPECT_TRUE(m.SetDigits(53, *iso8583::SecurityControl{false, key_version_}.Encode()).ok());
    }
    if (!spec.processing_codes[0].empty()) {
      EXPECT_TRUE(m.SetDigits(3, spec.processing_codes[0]).ok());
    }
    return m;
  }
  Message SignOnRequest(std::uint8_t tmk_version = 1, Bytes number = {}) {
    Message m = Request(iso8583::Transaction::kSignOn);
    EXPECT_TRUE(m.SetBytes(62, *iso8583::SignOnRequest{number.empty() ? terminal_number_ : number,
                                                       tmk_version}
                                    .Encode())
                    .ok());
    return m;
  }
  // The frame the terminal sends (without the length): MACed under `key` (the working MAC key by
  // default, the TMK for a sign-on).
  Bytes FrameOf(Message m, std::optional<Bytes> key = {}) {
    const Bytes& mac_key =
        key ? *key : (m.mti() == 0x0800 && m.Has(62) && !m.Has(53) ? tmk_ : working_mac_key_);
    auto prepared = crypto::MacKey::Create(mac_key);
    EXPECT_TRUE(prepared.ok());
    iso8583::Sign(m, *prepared);
    const Bytes framed = iso8583::EncodeFrame({{0x0003, 0x0000}, header_, m});
    return Bytes(framed.begin() + 2, framed.end());
  }
  // The terminal's reading of an answer to `request`.
  Answer Read(const GatewayReply& reply, const Message& request) {
    Answer a;
    a.reply = reply;
    if (!reply.frame) {
      ADD_FAILURE() << "no answer";
      return a;
    }
    auto parsed = iso8583::ParseFrame(*reply.frame);
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.error().message;
      return a;
    }
    a.frame = *parsed;
    EXPECT_EQ(a.frame.tpdu, (iso8583::Tpdu{0x0000, 0x0003}));  // NIIs swapped
    EXPECT_EQ(a.frame.header.terminal_status, header_.terminal_status);
    Status valid = iso8583::ValidateResponse(a.message(), &request);
    EXPECT_TRUE(valid.ok()) << valid.error().message << " " << a.message().ToString();
    a.code = *iso8583::ParseResponseCode(*a.message().GetText(39));
    a.has_mac = a.message().Has(64);
    if (a.has_mac) {
      const bool sign_on = request.mti() == 0x0800 && !request.Has(53);
      auto key = crypto::MacKey::Create(sign_on ? tmk_ : working_mac_key_);
      Status mac = iso8583::VerifyMac(a.message(), *key);
      EXPECT_TRUE(mac.ok()) << "the answer's MAC: " << mac.error().message;
    }
    return a;
  }
  Answer Send(const Message& request, std::optional<Bytes> key = {}) {
    return Read(gateway_->Handle(FrameOf(request, key)), request);
  }
  // Sign-on as a terminal does it: unwraps each key with its TMK and checks each KCV.
  void SignOn(std::uint16_t network_code = iso8583::kNetworkSignOn) {
    Message m = SignOnRequest();
    EXPECT_TRUE(m.SetDigits(60, *iso8583::Field60{0, batch_, network_code}.Encode()).ok());
    Answer a = Send(m);
    ASSERT_EQ(a.code, ResponseCode::kApproved);
    ASSERT_TRUE(a.has_mac);
    auto keys = iso8583::WorkingKeys::Parse(*a.message().GetBytes(62));
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    EXPECT_EQ(keys->data_key.has_value(), network_code == iso8583::kNetworkSignOnWithDataKey);
    std::vector<iso8583::KeyCryptogram> all{keys->pin_key, keys->mac_key};
    if (keys->data_key) all.push_back(*keys->data_key);
    for (const auto& entry : all) {
      auto key = crypto::DecryptKeyFromTransport(tmk_, entry.cryptogram);
      ASSERT_TRUE(key.ok());
      EXPECT_EQ(*crypto::Kcv(*key), entry.kcv);
    }
    EXPECT_NE(all[0].cryptogram, all[1].cryptogram);
    working_mac_key_ = *crypto::DecryptKeyFromTransport(tmk_, keys->mac_key.cryptogram);
    working_pin_key_ = *crypto::DecryptKeyFromTransport(tmk_, keys->pin_key.cryptogram);
    key_version_ = iso8583::SecurityControl::Parse(*a.message().GetDigits(53))->key_version;
  }
  Answer Echo(std::optional<std::uint32_t> trace = {}) {
    return Send(Request(iso8583::Transaction::kEchoTest, trace));
  }

  // Online loads through the gateway, as the terminal's purse flow asks for them.
  class GatewayIssuer final : public terminal::LoadAuthoriser {
   public:
    explicit GatewayIssuer(GatewayTest& test) : t_(test) {}
    Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
      Message m = t_.Request(iso8583::Transaction::kLoad);
      load_trace = static_cast<std::uint32_t>(*m.GetNumber(11));
      EXPECT_TRUE(m.SetNumber(4, init.amount).ok());
      EXPECT_TRUE(m.SetDigits(22, "052").ok());
      EXPECT_TRUE(m.SetDigits(25, "00").ok());
      EXPECT_TRUE(m.SetText(49, "156").ok());
      iso8583::LoadRequest load{
          init.asn,         init.terminal_number, init.old_balance, init.online_serial,
          init.key_version, init.alg_id,          init.random,      init.mac1};
      EXPECT_TRUE(m.SetBytes(62, *load.Encode()).ok());
      load_request = m;
      load_frame = t_.FrameOf(m);
      Answer a = t_.Read(t_.gateway_->Handle(load_frame), m);
      load_answer = a;
      if (a.code != ResponseCode::kApproved) {
        return MakeError("refused " + iso8583::ResponseCodeText(a.code));
      }
      auto authorisation = iso8583::LoadAuthorisation::Parse(*a.message().GetBytes(62));
      EXPECT_TRUE(authorisation.ok());
      return authorisation->mac2;
    }
    Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override {
      tac_ = Bytes(tac.begin(), tac.end());
      if (!confirm) return Status::Ok();
      confirmation = t_.Send(t_.Confirmation(init.asn, init.amount, load_trace, tac_));
      return Status::Ok();
    }
    GatewayTest& t_;
    bool confirm = true;
    std::uint32_t load_trace = 0;
    Message load_request;
    Bytes load_frame;
    Answer load_answer, confirmation;
    Bytes tac_;
  };
  Message Confirmation(ByteView asn, std::uint32_t amount, std::uint32_t load_trace, ByteView tac) {
    Message m = Request(iso8583::Transaction::kLoadConfirmation);
    EXPECT_TRUE(m.SetNumber(4, amount).ok());
    EXPECT_TRUE(m.SetDigits(25, "00").ok());
    EXPECT_TRUE(m.SetText(49, "156").ok());
    EXPECT_TRUE(
        m.SetDigits(61, *iso8583::OriginalTransaction{batch_, load_trace, 11, 25}.Encode()).ok());
    EXPECT_TRUE(m.SetBytes(62, *iso8583::LoadConfirmation{Bytes(asn.begin(), asn.end()),
                                                          Bytes(tac.begin(), tac.end())}
                                    .Encode())
                    .ok());
    return m;
  }
  Message Reversal(std::uint32_t amount, std::uint32_t load_trace) {
    Message m = Request(iso8583::Transaction::kLoadReversal);
    EXPECT_TRUE(m.SetNumber(4, amount).ok());
    EXPECT_TRUE(m.SetDigits(25, "00").ok());
    EXPECT_TRUE(m.SetText(39, "98").ok());
    EXPECT_TRUE(m.SetText(49, "156").ok());
    EXPECT_TRUE(
        m.SetDigits(61, *iso8583::OriginalTransaction{batch_, load_trace, 0, 0}.Encode()).ok());
    EXPECT_TRUE(m.SetBytes(62, *iso8583::CardReference{asn_}.Encode()).ok());
    return m;
  }
  Result<terminal::LoadResult> Load(GatewayIssuer& issuer, std::uint32_t amount) {
    return terminal::Load(*cardholder_.reader, issuer, cardholder_.app,
                          {terminal::Wallet::kEd, amount, terminal_number_, date_, time_});
  }
  terminal::PurchaseResult Purchase(std::uint32_t amount) {
    auto p = terminal::Purchase(*cardholder_.reader, *psam_.reader, cardholder_.app,
                                {terminal::Wallet::kEd, amount, date_, {10, 0, 0}});
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? *p : terminal::PurchaseResult{};
  }
  Message Upload(const std::vector<terminal::PurchaseResult>& purchases) {
    iso8583::PurchaseBatch batch;
    for (const auto& p : purchases) {
      batch.purchases.push_back({p.asn, p.type, p.amount, p.card_offline_serial, p.terminal_number,
                                 p.terminal_serial, p.date, p.time, 1, p.tac, p.mac2,
                                 p.balance_before, p.balance_after});
    }
    Message m = Request(iso8583::Transaction::kBatchUpload);
    EXPECT_TRUE(m.SetBytes(62, *batch.Encode()).ok());
    return m;
  }
  Bytes Challenge() {
    Answer a = Send(Request(iso8583::Transaction::kSettlementChallenge));
    EXPECT_EQ(a.code, ResponseCode::kApproved);
    auto challenge = iso8583::ParseSettlementChallenge(*a.message().GetBytes(62));
    EXPECT_TRUE(challenge.ok());
    return challenge.ok() ? *challenge : Bytes{};
  }
  Bytes GetSamTotals(const Bytes& challenge) {
    auto totals = reader::Send(*psam_.reader,
                               iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge, 22));
    EXPECT_TRUE(totals.ok() && totals->ok());
    return totals.ok() ? totals->data : Bytes{};
  }
  Message Settlement(const Bytes& challenge, const Bytes& totals, iso8583::BatchTotals reported) {
    Message m = Request(iso8583::Transaction::kSettlement);
    EXPECT_TRUE(m.SetDigits(48, *reported.Encode()).ok());
    EXPECT_TRUE(m.SetText(49, "156").ok());
    iso8583::SamTotals sam{psam_serial_,        1,
                           challenge,           ReadU32(totals, 0),
                           ReadU48(totals, 4),  ReadU32(totals, 10),
                           ReadU32(totals, 14), Bytes(totals.begin() + 18, totals.end())};
    EXPECT_TRUE(m.SetBytes(62, *sam.Encode()).ok());
    return m;
  }
  Balances Balance() {
    auto b = host_->BalanceInquiry(asn_);
    EXPECT_TRUE(b.ok()) << b.error().message;
    return b.ok() ? *b : Balances{};
  }
  std::int64_t Count(const std::string& sql) {
    auto rows = conn_->Query(sql);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
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
  std::unique_ptr<TerminalGateway> gateway_;
  std::int64_t now_us_ = TestClock();
  Bytes asn_ = HexToBytes("11000000000000000301");
  Bytes psam_serial_ = HexToBytes("50000000000000000301");
  Bytes terminal_number_ = HexToBytes("000000000301");
  Date date_{2026, 11, 25};
  TimeOfDay time_{9, 15, 0};
  test_support::TestCardholder cardholder_;
  test_support::TestPsam psam_;
  // The terminal's state.
  std::string terminal_id_ = kTerminalId;
  Bytes tmk_ = kTmk;
  iso8583::Header header_;
  std::uint32_t trace_ = 0;
  std::uint32_t batch_ = 1;
  std::uint16_t key_version_ = 0;
  Bytes working_mac_key_ = Bytes(16, 0);
  Bytes working_pin_key_ = Bytes(16, 0);

  // A second terminal of the same merchant: Swap() makes it the one the helpers speak for.
  void AddSecondTerminal() {
    ASSERT_TRUE(key_store_->ImportTestKey("tmk/000000000302", other_.tmk).ok());
    ASSERT_TRUE(host_
                    ->RegisterTerminal(
                        {other_.number, kMerchant, HexToBytes("50000000000000000302"), other_.id})
                    .ok());
  }
  struct OtherTerminal {
    std::string id = "POS00002";
    Bytes number = HexToBytes("000000000302");
    Bytes tmk = HexToBytes("FFEEDDCCBBAA99887766554433221100");
    std::uint32_t trace = 0;
    std::uint16_t key_version = 0;
    Bytes mac_key = Bytes(16, 0);
  } other_;
  void Swap() {
    std::swap(terminal_id_, other_.id);
    std::swap(terminal_number_, other_.number);
    std::swap(tmk_, other_.tmk);
    std::swap(trace_, other_.trace);
    std::swap(key_version_, other_.key_version);
    std::swap(working_mac_key_, other_.mac_key);
  }
};

TEST_P(GatewayTest, SignOnSendsKeysOnlyTheTmkUnwrapsAndTheirVersionCounts) {
  SignOn();
  EXPECT_EQ(key_version_, 1);
  Answer echo = Echo();
  EXPECT_EQ(echo.code, ResponseCode::kApproved);
  EXPECT_TRUE(echo.has_mac);
  EXPECT_EQ(*echo.message().GetDigits(12), "091500");
  EXPECT_EQ(*echo.message().GetDigits(13), "1125");
  // Only the cryptograms are stored, never a key: the row holds exactly what travelled.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_terminal_sessions WHERE key_version = 1"), 1);
  SignOn(iso8583::kNetworkSignOnWithDataKey);
  EXPECT_EQ(key_version_, 2);
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);
}

TEST_P(GatewayTest, AMessageUnderTheKeysOfAnEarlierSignOnIsRefusedA0) {
  SignOn();
  const Bytes old_key = working_mac_key_;
  const std::uint16_t old_version = key_version_;
  SignOn();
  // The old key with the old version, and the old key claiming the new version.
  Message stale = Request(iso8583::Transaction::kEchoTest);
  ASSERT_TRUE(stale.SetDigits(53, *iso8583::SecurityControl{false, old_version}.Encode()).ok());
  Answer a = Send(stale, old_key);
  EXPECT_EQ(a.code, ResponseCode::kMacError);
  EXPECT_FALSE(a.has_mac);
  EXPECT_EQ(a.frame.header.handling & iso8583::kHandleSignOn, iso8583::kHandleSignOn);
  Answer b = Send(Request(iso8583::Transaction::kEchoTest), old_key);
  EXPECT_EQ(b.code, ResponseCode::kMacError);
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);
}

TEST_P(GatewayTest, ABadMacIsRefusedA0AndLeavesNothingForTheRetry) {
  SignOn();
  Message m = Request(iso8583::Transaction::kEchoTest);
  Bytes forged = FrameOf(m);
  forged[forged.size() - 8] ^= 0x01;  // the MAC's first byte
  Answer a = Read(gateway_->Handle(forged), m);
  EXPECT_EQ(a.code, ResponseCode::kMacError);
  EXPECT_FALSE(a.has_mac);
  // The same trace with the right MAC is processed anew (a forgery cannot poison a trace).
  EXPECT_EQ(Send(m).code, ResponseCode::kApproved);
}

TEST_P(GatewayTest, UnknownTerminalsWrongMerchantsAndForeignTmksAreRefused) {
  Message unknown = SignOnRequest();
  ASSERT_TRUE(unknown.SetText(41, "POS00009").ok());
  Answer a = Send(unknown);
  EXPECT_EQ(a.code, ResponseCode::kTerminalNotRegistered);
  EXPECT_FALSE(a.has_mac);

  ASSERT_TRUE(host_->RegisterMerchant({"898440154110002", "Pharmacy", "pharmacy"}).ok());
  Message other_merchant = SignOnRequest();
  ASSERT_TRUE(other_merchant.SetText(42, "898440154110002").ok());
  EXPECT_EQ(Send(other_merchant).code, ResponseCode::kInvalidMerchant);

  // 62 names another terminal number than the registered one.
  EXPECT_EQ(Send(SignOnRequest(1, HexToBytes("000000000302"))).code,
            ResponseCode::kTerminalNotRegistered);
  // A TMK version the store does not hold, and a MAC under another key.
  EXPECT_EQ(Send(SignOnRequest(2)).code, ResponseCode::kMacError);
  EXPECT_EQ(Send(SignOnRequest(), Bytes(16, 0x42)).code, ResponseCode::kMacError);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_terminal_sessions"), 0);
}

TEST_P(GatewayTest, ABlockedTerminalIsRefused97UntilUnblockedAndNothingIsStored) {
  SignOn();
  ASSERT_EQ(key_version_, 1);
  const std::int64_t answers = Count("SELECT COUNT(*) FROM host_gateway_answers");
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "blocked").ok());

  // The refusals' log lines, read from the default logger.
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_st>(log)));
  Answer sign_on = Send(SignOnRequest());
  Answer echo = Echo();
  spdlog::set_default_logger(previous);

  EXPECT_EQ(sign_on.code, ResponseCode::kTerminalNotRegistered);
  EXPECT_FALSE(sign_on.has_mac);
  EXPECT_EQ(echo.code, ResponseCode::kTerminalNotRegistered);
  EXPECT_FALSE(echo.has_mac);
  EXPECT_THAT(log.str(), ::testing::HasSubstr("reason=terminal blocked"));
  EXPECT_THAT(log.str(), ::testing::HasSubstr("terminal=POS00001"));
  // No new keys for the blocked terminal, no answer kept for a retry.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_terminal_sessions WHERE key_version = 1"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_gateway_answers"), answers);

  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "active").ok());
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);  // the keys of its last sign-on still hold
  SignOn();
  EXPECT_EQ(key_version_, 2);
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);
}

TEST_P(GatewayTest, ABlockedTerminalsUploadLoadAndInquiryAre97AndNothingIsCleared) {
  SignOn();
  GatewayIssuer issuer(*this);
  ASSERT_TRUE(Load(issuer, 5000).ok());
  const auto purchase = Purchase(1200);
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "blocked").ok());
  const std::int64_t answers = Count("SELECT COUNT(*) FROM host_gateway_answers");
  Answer upload = Send(Upload({purchase}));
  EXPECT_EQ(upload.code, ResponseCode::kTerminalNotRegistered);
  EXPECT_FALSE(upload.has_mac);
  EXPECT_FALSE(Load(issuer, 1000).ok());
  EXPECT_EQ(issuer.load_answer.code, ResponseCode::kTerminalNotRegistered);
  Message inquiry = Request(iso8583::Transaction::kBalanceInquiry);
  ASSERT_TRUE(inquiry.SetDigits(22, "052").ok());
  ASSERT_TRUE(inquiry.SetDigits(25, "00").ok());
  ASSERT_TRUE(inquiry.SetText(49, "156").ok());
  ASSERT_TRUE(inquiry.SetBytes(62, *iso8583::CardReference{asn_}.Encode()).ok());
  EXPECT_EQ(Send(inquiry).code, ResponseCode::kTerminalNotRegistered);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_purchases"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_gateway_answers"), answers);
  EXPECT_EQ(Balance().medical_account, 95000);  // the refused load reserved nothing
  // Unblocked, the same upload clears.
  ASSERT_TRUE(host_->SetTerminalStatus(terminal_number_, "active").ok());
  EXPECT_EQ(Send(Upload({purchase})).code, ResponseCode::kApproved);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_purchases WHERE outcome = 'accepted'"), 1);
  ExpectHostClean();
}

TEST_P(GatewayTest, AfterSignOffEverythingButASignOnIs77) {
  key_version_ = 1;  // whatever the terminal believes, the host gave it no keys yet
  Answer never = Echo();
  EXPECT_EQ(never.code, ResponseCode::kSignOnRequired);
  EXPECT_FALSE(never.has_mac);
  SignOn();
  Answer off = Send(Request(iso8583::Transaction::kSignOff));
  EXPECT_EQ(off.code, ResponseCode::kApproved);
  EXPECT_TRUE(off.has_mac);
  Answer after = Echo();
  EXPECT_EQ(after.code, ResponseCode::kSignOnRequired);
  EXPECT_EQ(after.frame.header.handling & iso8583::kHandleSignOn, iso8583::kHandleSignOn);
  SignOn();
  EXPECT_EQ(key_version_, 2);
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);
}

TEST_P(GatewayTest, ARetryGetsTheFirstAnswerByteForByteAndNothingTwice) {
  SignOn();
  GatewayIssuer issuer(*this);
  issuer.confirm = false;
  auto loaded = Load(issuer, 30000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(Balance().medical_account, 70000);
  // The same frame again: the same answer bytes, nothing reserved twice.
  GatewayReply again = gateway_->Handle(issuer.load_frame);
  EXPECT_EQ(again.frame, issuer.load_answer.reply.frame);
  EXPECT_EQ(Balance().medical_account, 70000);
  // The same trace with other content: 94.
  Message replay = issuer.load_request;
  ASSERT_TRUE(replay.SetNumber(4, 100).ok());
  Answer a = Send(replay);
  EXPECT_EQ(a.code, ResponseCode::kDuplicateTransmission);
  EXPECT_TRUE(a.has_mac);
  EXPECT_EQ(Balance().medical_account, 70000);
  // A batch other than the open one: 94.
  batch_ = 7;
  EXPECT_EQ(Echo().code, ResponseCode::kDuplicateTransmission);
  ExpectHostClean();
}

TEST_P(GatewayTest, FramesThatDoNotParseAreRefusedAsSection96Says) {
  SignOn();
  // Too short for a TPDU: no answer, close.
  GatewayReply garbage = gateway_->Handle(HexToBytes("6000"));
  EXPECT_FALSE(garbage.frame);
  EXPECT_TRUE(garbage.close);
  // A well-formed MTI that is not a medcard request: no answer, close.
  Bytes echo = FrameOf(Request(iso8583::Transaction::kEchoTest));
  Bytes foreign = echo;
  foreign[11] = 0x09;  // MTI 0820 → 0920
  GatewayReply refused = gateway_->Handle(foreign);
  EXPECT_FALSE(refused.frame);
  EXPECT_TRUE(refused.close);
  // A frame above the maximum: close.
  EXPECT_TRUE(gateway_->Handle(Bytes(8193, 0x60)).close);
  // A readable catalogue MTI, then a broken field (a non-BCD trace): 30, TPDU swapped, no MAC,
  // the connection stays.
  Bytes broken = echo;
  broken[21] = 0xAB;  // field 11's first byte
  GatewayReply format = gateway_->Handle(broken);
  ASSERT_TRUE(format.frame);
  EXPECT_FALSE(format.close);
  auto parsed = iso8583::ParseFrame(*format.frame);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->tpdu, (iso8583::Tpdu{0x0000, 0x0003}));
  EXPECT_EQ(*parsed->message.GetText(39), "30");
  EXPECT_FALSE(parsed->message.Has(64));
  // ValidateRequest refuses (53 missing): 30, MACed with the terminal's working key.
  Message missing = Request(iso8583::Transaction::kEchoTest);
  missing.Remove(53);
  GatewayReply invalid = gateway_->Handle(FrameOf(missing));
  ASSERT_TRUE(invalid.frame);
  auto answer = iso8583::ParseFrame(*invalid.frame);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(*answer->message.GetText(39), "30");
  ASSERT_TRUE(answer->message.Has(64));
  EXPECT_TRUE(iso8583::VerifyMac(answer->message, *crypto::MacKey::Create(working_mac_key_)).ok());
}

TEST_P(GatewayTest, ALoadTheCardCompletesIsConfirmedByItsTac) {
  SignOn();
  GatewayIssuer issuer(*this);
  auto loaded = Load(issuer, 25000);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(issuer.load_answer.code, ResponseCode::kApproved);
  EXPECT_TRUE(issuer.load_answer.message().Has(37));
  EXPECT_EQ(*issuer.load_answer.message().GetDigits(13), "1125");
  EXPECT_EQ(issuer.confirmation.code, ResponseCode::kApproved);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 25000u);
  EXPECT_EQ(Balance().medical_account, 75000);
  EXPECT_EQ(Balance().card_ed, 25000);
  // A confirmation with a forged TAC of another load: 06; of an unknown load: 25.
  Bytes forged = issuer.tac_;
  forged[0] ^= 1;
  EXPECT_EQ(Send(Confirmation(asn_, 25000, 999, forged)).code, ResponseCode::kUnableToLocateRecord);
  EXPECT_EQ(Send(Confirmation(asn_, 24000, issuer.load_trace, issuer.tac_)).code,
            ResponseCode::kOriginalAmountIncorrect);
  // A completed load is not reversed (12).
  EXPECT_EQ(Send(Reversal(25000, issuer.load_trace)).code, ResponseCode::kInvalidTransaction);
  ExpectHostClean();
}

TEST_P(GatewayTest, AConfirmationWithAForgedTacIs06AndTheLoadStaysPending) {
  SignOn();
  GatewayIssuer issuer(*this);
  issuer.confirm = false;
  ASSERT_TRUE(Load(issuer, 3000).ok());
  Bytes forged = issuer.tac_;
  forged[0] ^= 1;
  Answer refused = Send(Confirmation(asn_, 3000, issuer.load_trace, forged));
  EXPECT_EQ(refused.code, ResponseCode::kError);
  EXPECT_TRUE(refused.has_mac);
  EXPECT_EQ(Balance().card_ed, 0);
  // Another ASN than the load's: 14. The right TAC: completed, and again 00 for a repeat.
  EXPECT_EQ(
      Send(Confirmation(HexToBytes("11000000000000000999"), 3000, issuer.load_trace, issuer.tac_))
          .code,
      ResponseCode::kInvalidCard);
  EXPECT_EQ(Send(Confirmation(asn_, 3000, issuer.load_trace, issuer.tac_)).code,
            ResponseCode::kApproved);
  EXPECT_EQ(Send(Confirmation(asn_, 3000, issuer.load_trace, issuer.tac_)).code,
            ResponseCode::kApproved);
  EXPECT_EQ(Balance().card_ed, 3000);
  ExpectHostClean();
}

TEST_P(GatewayTest, ATestStatusTerminalIsServedWithTestCardsAndItsStatusEchoed) {
  // This host's key store holds the published test key set: its cards are test cards.
  header_.terminal_status = iso8583::TerminalStatus::kTest;
  SignOn();
  GatewayIssuer issuer(*this);
  ASSERT_TRUE(Load(issuer, 1000).ok());
  EXPECT_EQ(issuer.load_answer.frame.header.terminal_status, iso8583::TerminalStatus::kTest);
}

TEST_P(GatewayTest, ATerminalIdDefaultsToTheLastEightDigitsOfItsNumber) {
  ASSERT_TRUE(host_->RegisterTerminal({HexToBytes("000012345678"), kMerchant, psam_serial_}).ok());
  auto rows =
      conn_->Query("SELECT terminal_id FROM host_terminals WHERE terminal_number = '000012345678'");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Text(0), "12345678");
  EXPECT_FALSE(
      host_->RegisterTerminal({HexToBytes("000012345679"), kMerchant, psam_serial_, "SHORT"}).ok());
}

TEST_P(GatewayTest, AReversalReleasesTheReservationAndBarsALateLoad) {
  SignOn();
  GatewayIssuer issuer(*this);
  issuer.confirm = false;
  ASSERT_TRUE(Load(issuer, 2000).ok());
  EXPECT_EQ(Balance().medical_account, 98000);
  Answer reversed = Send(Reversal(2000, issuer.load_trace));
  EXPECT_EQ(reversed.code, ResponseCode::kApproved);
  EXPECT_TRUE(reversed.has_mac);
  EXPECT_EQ(Balance().medical_account, 100000);
  // A reversal of a load the host never received: 00, and the load, arriving late, gets 12.
  const std::uint32_t late_trace = trace_ + 10;
  EXPECT_EQ(Send(Reversal(500, late_trace)).code, ResponseCode::kApproved);
  Message late = issuer.load_request;
  ASSERT_TRUE(late.SetNumber(11, late_trace).ok());
  EXPECT_EQ(Send(late).code, ResponseCode::kInvalidTransaction);
  EXPECT_EQ(Balance().medical_account, 100000);
  ExpectHostClean();
}

TEST_P(GatewayTest, LoadsBeyondTheLimitsAreRefused61) {
  SignOn();
  ASSERT_TRUE(
      conn_->Execute("UPDATE host_parameters SET value = '10000' WHERE name = 'load_limit'").ok());
  GatewayIssuer issuer(*this);
  EXPECT_FALSE(Load(issuer, 10001).ok());
  EXPECT_EQ(issuer.load_answer.code, ResponseCode::kExceedsLimit);
  EXPECT_TRUE(issuer.load_answer.has_mac);
  EXPECT_EQ(Balance().medical_account, 100000);
}

TEST_P(GatewayTest, UploadAndSettlementClearThePsamWithTheHostsMac) {
  SignOn();
  GatewayIssuer issuer(*this);
  ASSERT_TRUE(Load(issuer, 50000).ok());
  const auto first = Purchase(1250);
  const auto second = Purchase(8630);
  Answer uploaded = Send(Upload({first, second}));
  EXPECT_EQ(uploaded.code, ResponseCode::kApproved);
  // Uploading again is harmless.
  EXPECT_EQ(Send(Upload({second})).code, ResponseCode::kApproved);

  const Bytes challenge = Challenge();
  const Bytes totals = GetSamTotals(challenge);
  // 48 disagrees with the host (one load is missing from it): 95, and the challenge is used.
  Answer disagree = Send(Settlement(challenge, totals, {2, 1250 + 8630, 0, 0}));
  EXPECT_EQ(disagree.code, ResponseCode::kReconciliationError);
  EXPECT_TRUE(disagree.has_mac);
  EXPECT_EQ(Send(Settlement(challenge, totals, {2, 1250 + 8630, 1, 50000})).code,
            ResponseCode::kDuplicateTransmission);

  const Bytes fresh = Challenge();
  const Bytes signed_totals = GetSamTotals(fresh);
  Answer settled = Send(Settlement(fresh, signed_totals, {2, 1250 + 8630, 1, 50000}));
  ASSERT_EQ(settled.code, ResponseCode::kApproved);
  auto mac = iso8583::ParseClearTotalsMac(*settled.message().GetBytes(62));
  ASSERT_TRUE(mac.ok());
  auto cleared =
      reader::Send(*psam_.reader, iso7816::CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, *mac));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok()) << "the PSAM refused the host's CLEAR SAM TOTALS MAC";
  // The batch is closed: the next one is open, the old one is not.
  EXPECT_EQ(Echo().code, ResponseCode::kDuplicateTransmission);
  batch_ = 2;
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);
  ExpectHostClean();
}

TEST_P(GatewayTest, APurchaseMissingFromTheUploadIs95UntilItIsUploaded) {
  SignOn();
  GatewayIssuer issuer(*this);
  ASSERT_TRUE(Load(issuer, 10000).ok());
  const auto first = Purchase(100);
  const auto missing = Purchase(200);
  ASSERT_EQ(Send(Upload({first})).code, ResponseCode::kApproved);
  Bytes challenge = Challenge();
  EXPECT_EQ(Send(Settlement(challenge, GetSamTotals(challenge), {2, 300, 1, 10000})).code,
            ResponseCode::kReconciliationError);
  // The terminal uploads the whole batch again (duplicates are harmless) and settles anew.
  ASSERT_EQ(Send(Upload({first, missing})).code, ResponseCode::kApproved);
  challenge = Challenge();
  EXPECT_EQ(Send(Settlement(challenge, GetSamTotals(challenge), {2, 300, 1, 10000})).code,
            ResponseCode::kApproved);
  ExpectHostClean();
}

TEST_P(GatewayTest, AField48ThatDisagreesIsRecordedAsTheDaysSettlementException) {
  SignOn();
  GatewayIssuer issuer(*this);
  ASSERT_TRUE(Load(issuer, 10000).ok());
  ASSERT_EQ(Send(Upload({Purchase(1250)})).code, ResponseCode::kApproved);
  Bytes challenge = Challenge();
  // The PSAM and the uploads agree; 48 leaves out the load.
  Answer refused = Send(Settlement(challenge, GetSamTotals(challenge), {1, 1250, 0, 0}));
  EXPECT_EQ(refused.code, ResponseCode::kReconciliationError);
  auto settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok()) << settlements.error().message;
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "exception");
  EXPECT_EQ((*settlements)[0].day, "20261125");
  EXPECT_EQ((*settlements)[0].psam_count, 1);
  EXPECT_EQ((*settlements)[0].psam_amount, 1250);
  EXPECT_EQ(psam_.psam->Inspect().totals.count, 1u);
  // Settled again with the right 48: acknowledged.
  challenge = Challenge();
  EXPECT_EQ(Send(Settlement(challenge, GetSamTotals(challenge), {1, 1250, 1, 10000})).code,
            ResponseCode::kApproved);
  settlements = host_->Settlements(terminal_number_);
  ASSERT_TRUE(settlements.ok());
  ASSERT_EQ(settlements->size(), 1u);
  EXPECT_EQ((*settlements)[0].status, "acknowledged");
  ExpectHostClean();
}

TEST_P(GatewayTest, ALoadForACardPastItsLastValidDayIsRefused54) {
  ASSERT_TRUE(host_->RegisterCard({asn_, "holder-1", kPerson, Date{2026, 11, 24}}).ok());
  SignOn();
  GatewayIssuer issuer(*this);
  EXPECT_FALSE(Load(issuer, 1000).ok());
  EXPECT_EQ(issuer.load_answer.code, ResponseCode::kExpiredCard);
  EXPECT_TRUE(issuer.load_answer.has_mac);
  EXPECT_EQ(*terminal::GetBalance(*cardholder_.reader, terminal::Wallet::kEd), 0u);
  EXPECT_EQ(Balance().medical_account, 100000);
  // Renewed (a later expiry learnt from the issuance log): loads again.
  ASSERT_TRUE(host_->RegisterCard({asn_, "holder-1", kPerson, Date{2036, 11, 24}}).ok());
  ASSERT_TRUE(Load(issuer, 1000).ok());
  EXPECT_EQ(issuer.confirmation.code, ResponseCode::kApproved);
  ExpectHostClean();
}

TEST_P(GatewayTest, ARightTacForAReversedLoadCompletesItAgainForReview) {
  SignOn();
  GatewayIssuer issuer(*this);
  issuer.confirm = false;
  ASSERT_TRUE(Load(issuer, 2000).ok());  // the card is credited; the host hears nothing yet
  ASSERT_EQ(Send(Reversal(2000, issuer.load_trace)).code, ResponseCode::kApproved);
  EXPECT_EQ(Balance().medical_account, 100000);
  Bytes forged = issuer.tac_;
  forged[0] ^= 1;
  EXPECT_EQ(Send(Confirmation(asn_, 2000, issuer.load_trace, forged)).code, ResponseCode::kError);
  EXPECT_EQ(Balance().card_ed, 0);

  Answer confirmed = Send(Confirmation(asn_, 2000, issuer.load_trace, issuer.tac_));
  EXPECT_EQ(confirmed.code, ResponseCode::kApproved);
  EXPECT_TRUE(confirmed.has_mac);
  EXPECT_EQ(Balance().card_ed, 2000);
  EXPECT_EQ(Balance().medical_account, 98000);
  auto queue = host_->ReviewQueue();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  EXPECT_EQ((*queue)[0].reason, kReasonLoadAfterReversal);
  // Again 00; a reversal now is 12; the batch's settlement counts the load.
  EXPECT_EQ(Send(Confirmation(asn_, 2000, issuer.load_trace, issuer.tac_)).code,
            ResponseCode::kApproved);
  EXPECT_EQ(Send(Reversal(2000, issuer.load_trace)).code, ResponseCode::kInvalidTransaction);
  const Bytes challenge = Challenge();
  EXPECT_EQ(Send(Settlement(challenge, GetSamTotals(challenge), {0, 0, 1, 2000})).code,
            ResponseCode::kApproved);
  ExpectHostClean();
}

TEST_P(GatewayTest, TheBlacklistComesInPartsOf90AndThenAsChanges) {
  std::vector<Bytes> cards;
  for (int i = 0; i < 95; ++i) {
    char asn[32];
    std::snprintf(asn, sizeof asn, "220000000000000%05d", i);
    cards.push_back(HexToBytes(asn));
    ASSERT_TRUE(host_->RegisterCard({cards.back(), "h", "p" + std::to_string(i)}).ok());
    ASSERT_TRUE(host_->AddToBlacklist(cards.back(), "20261101000000").ok());
  }
  SignOn();
  auto download = [&](std::uint32_t from, std::uint32_t target, std::uint16_t part) {
    Message m = Request(iso8583::Transaction::kBlacklistDownload);
    EXPECT_TRUE(m.SetBytes(62, *iso8583::DownloadRequest{from, target, part}.Encode()).ok());
    return Send(m);
  };
  Answer first = download(0, 0, 0);
  ASSERT_EQ(first.code, ResponseCode::kApproved);
  EXPECT_TRUE(first.frame.header.handling & iso8583::kHandleBlacklist);
  auto part0 = iso8583::BlacklistPart::Parse(*first.message().GetBytes(62));
  ASSERT_TRUE(part0.ok());
  EXPECT_TRUE(part0->full);
  EXPECT_TRUE(part0->more);
  EXPECT_EQ(part0->entries.size(), 90u);
  Answer second = download(0, part0->version, 1);
  auto part1 = iso8583::BlacklistPart::Parse(*second.message().GetBytes(62));
  ASSERT_TRUE(part1.ok());
  EXPECT_FALSE(part1->more);
  EXPECT_EQ(part1->entries.size(), 5u);
  EXPECT_EQ(part1->entries.back().asn, cards.back());
  // The terminal now holds the latest list: no more blacklist flag.
  EXPECT_FALSE(second.frame.header.handling & iso8583::kHandleBlacklist);
  EXPECT_EQ(download(0, part0->version, 2).code, ResponseCode::kUnableToLocateRecord);

  // One card leaves the list: the change only, and an old target is gone (25).
  ASSERT_TRUE(host_->RemoveFromBlacklist(cards[3]).ok());
  Answer flagged = Echo();
  EXPECT_TRUE(flagged.frame.header.handling & iso8583::kHandleBlacklist);
  Answer delta = download(part0->version, 0, 0);
  auto changes = iso8583::BlacklistPart::Parse(*delta.message().GetBytes(62));
  ASSERT_TRUE(changes.ok());
  EXPECT_FALSE(changes->full);
  ASSERT_EQ(changes->entries.size(), 1u);
  EXPECT_EQ(changes->entries[0].asn, cards[3]);
  EXPECT_EQ(changes->entries[0].action, iso8583::BlacklistAction::kRemove);
  EXPECT_EQ(download(0, part0->version, 1).code, ResponseCode::kUnableToLocateRecord);
}

TEST_P(GatewayTest, AfterARestoreATerminalHoldingALostVersionGetsTheWholeList) {
  const Bytes a = HexToBytes("22000000000000000001"), b = HexToBytes("22000000000000000002"),
              c = HexToBytes("22000000000000000003");
  for (const Bytes& card : {a, b, c}) {
    ASSERT_TRUE(host_->RegisterCard({card, "h", "p-" + ToHex(card)}).ok());
  }
  SignOn();
  auto download = [&](std::uint32_t from) {
    Message m = Request(iso8583::Transaction::kBlacklistDownload);
    EXPECT_TRUE(m.SetBytes(62, *iso8583::DownloadRequest{from, 0, 0}.Encode()).ok());
    Answer answer = Send(m);
    EXPECT_EQ(answer.code, ResponseCode::kApproved);
    auto part = iso8583::BlacklistPart::Parse(*answer.message().GetBytes(62));
    EXPECT_TRUE(part.ok());
    return part.ok() ? *part : iso8583::BlacklistPart{};
  };
  auto cards_in = [](const iso8583::BlacklistPart& part) {
    std::vector<std::string> cards;
    for (const auto& e : part.entries) {
      cards.push_back(ToHex(e.asn) + (e.action == iso8583::BlacklistAction::kAdd ? "+" : "-"));
    }
    return cards;
  };
  std::int64_t clock_us = now_us_;
  Host host(*conn_, *key_store_, Host::Options{[&] { return clock_us; }});
  auto added_a = host.AddToBlacklist(a, "20261101000000");
  ASSERT_TRUE(added_a.ok());
  const std::uint32_t backed_up = download(0).version;  // the nightly backup holds A
  ASSERT_TRUE(host.AddToBlacklist(b, "20261101000000").ok());
  const iso8583::BlacklistPart lost = download(backed_up);  // the terminal takes B...
  EXPECT_THAT(cards_in(lost), ElementsAre(ToHex(b) + "+"));

  // ...and the host's database is restored from the backup: B's entry is gone.
  ASSERT_TRUE(conn_->Execute("DELETE FROM host_blacklist WHERE version > ?", {*added_a}).ok());
  ASSERT_TRUE(conn_
                  ->Execute("UPDATE host_cards SET status = 'active', blacklisted_at = NULL"
                            " WHERE asn = ?",
                            {ToHex(b)})
                  .ok());
  clock_us += 3600LL * 1'000'000;  // an hour later
  ASSERT_TRUE(host.AddToBlacklist(c, "20261101000000").ok());

  // The restored host's next version is not the one the terminal holds from before...
  const iso8583::BlacklistPart whole = download(lost.version);
  EXPECT_NE(whole.version, lost.version);
  // ...and that version names no state the host knows: the whole list, as the host has it.
  EXPECT_TRUE(whole.full);
  EXPECT_THAT(cards_in(whole), ElementsAre(ToHex(a) + "+", ToHex(c) + "+"));
  // A terminal that held the backup's version takes only the change since.
  const iso8583::BlacklistPart since_backup = download(backed_up);
  EXPECT_FALSE(since_backup.full);
  EXPECT_THAT(cards_in(since_backup), ElementsAre(ToHex(c) + "+"));
  EXPECT_EQ(since_backup.version, whole.version);
}

TEST_P(GatewayTest, ParametersAreOneCompleteSetWhoseVersionFollowsTheirValues) {
  SignOn();
  auto download = [&](std::uint32_t from) {
    Message m = Request(iso8583::Transaction::kParameterDownload);
    EXPECT_TRUE(m.SetBytes(62, *iso8583::DownloadRequest{from, 0, 0}.Encode()).ok());
    return Send(m);
  };
  Answer first = download(0);
  ASSERT_EQ(first.code, ResponseCode::kApproved);
  auto part = iso8583::ParameterPart::Parse(*first.message().GetBytes(62));
  ASSERT_TRUE(part.ok()) << part.error().message;
  EXPECT_TRUE(iso8583::CheckComplete(part->parameters).ok());
  EXPECT_EQ(part->parameters.merchant_name, "City Hospital");
  EXPECT_EQ(part->parameters.load_limit, 200000u);
  EXPECT_EQ(part->parameters.clock_date, date_);
  EXPECT_EQ(part->parameters.blacklist_version, 1u);
  EXPECT_FALSE(first.frame.header.handling & iso8583::kHandleParameters);
  // Up to date: the version and no records.
  auto same = iso8583::ParameterPart::Parse(*download(part->version).message().GetBytes(62));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, part->version);
  EXPECT_FALSE(same->parameters.load_limit.has_value());
  // The clock does not change the version; a limit does, and the terminal is told (flag 02).
  now_us_ += 3600LL * 1000000;
  EXPECT_FALSE(Echo().frame.header.handling & iso8583::kHandleParameters);
  ASSERT_TRUE(conn_
                  ->Execute("UPDATE host_parameters SET value = '150000' WHERE name = "
                            "'load_limit'")
                  .ok());
  EXPECT_TRUE(Echo().frame.header.handling & iso8583::kHandleParameters);
  auto changed = iso8583::ParameterPart::Parse(*download(part->version).message().GetBytes(62));
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(changed->version, part->version);
  EXPECT_EQ(changed->parameters.load_limit, 150000u);
}

TEST_P(GatewayTest, BalanceInquiryAnswersTheMedicalAccount) {
  SignOn();
  Message m = Request(iso8583::Transaction::kBalanceInquiry);
  ASSERT_TRUE(m.SetDigits(22, "052").ok());
  ASSERT_TRUE(m.SetDigits(25, "00").ok());
  ASSERT_TRUE(m.SetText(49, "156").ok());
  ASSERT_TRUE(m.SetBytes(62, *iso8583::CardReference{asn_}.Encode()).ok());
  Answer a = Send(m);
  ASSERT_EQ(a.code, ResponseCode::kApproved);
  auto balance = iso8583::AvailableBalance::Parse(*a.message().GetText(54));
  ASSERT_TRUE(balance.ok());
  EXPECT_EQ(balance->amount, 100000u);
  Message unknown = Request(iso8583::Transaction::kBalanceInquiry);
  ASSERT_TRUE(unknown.SetDigits(22, "052").ok());
  ASSERT_TRUE(unknown.SetDigits(25, "00").ok());
  ASSERT_TRUE(unknown.SetText(49, "156").ok());
  ASSERT_TRUE(
      unknown.SetBytes(62, *iso8583::CardReference{HexToBytes("11000000000000000999")}.Encode())
          .ok());
  EXPECT_EQ(Send(unknown).code, ResponseCode::kInvalidCard);
  // A blacklisted card: 41.
  ASSERT_TRUE(host_->AddToBlacklist(asn_, "20261101000000").ok());
  Message lost = m;
  ASSERT_TRUE(lost.SetNumber(11, ++trace_).ok());
  EXPECT_EQ(Send(lost).code, ResponseCode::kLostCard);
}

// ---- Online PIN (9.8) -------------------------------------------------------------------------

class GatewayPinTest : public GatewayTest {
 protected:
  static constexpr char kPan[] = "4100000089999985";
  void SetUp() override {
    GatewayTest::SetUp();
    if (HasFatalFailure()) return;
    // The issuer's PIN verification key, shared with the host: the test set's pvk/CARDS.
    ASSERT_TRUE(
        host_->RegisterCard({card_, "holder-2", kPerson, std::nullopt, PinValue(kPan, "739515")})
            .ok());
  }
  std::optional<PinVerificationValue> PinValue(std::string_view pan, std::string_view pin) {
    auto pvk = key_store_->Find(keys::kCardPinVerificationKey);
    EXPECT_TRUE(pvk.ok());
    auto offset = key_store_->PinOffset(*pvk, pan, pin);
    EXPECT_TRUE(offset.ok()) << offset.error().message;
    return PinVerificationValue{std::string(keys::kCardPinVerificationKey), 1, *offset};
  }
  // A balance inquiry with the PIN as the terminal's PIN pad sends it: format 0 for the PAN,
  // under the working PIN key of the last sign-on.
  Message Inquiry(std::string_view pin, const Bytes& asn, std::string_view pan) {
    Message m = Request(iso8583::Transaction::kBalanceInquiry);
    EXPECT_TRUE(m.SetDigits(2, pan).ok());
    EXPECT_TRUE(m.SetDigits(22, "051").ok());
    EXPECT_TRUE(m.SetDigits(25, "00").ok());
    EXPECT_TRUE(m.SetDigits(26, "12").ok());
    EXPECT_TRUE(m.SetText(49, "156").ok());
    const Bytes block =
        crypto::BlockCipher::Des(working_pin_key_)
            ->EncryptEcb(*crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, pan));
    EXPECT_TRUE(m.SetBytes(52, block).ok());
    EXPECT_TRUE(m.SetDigits(53, *iso8583::SecurityControl{true, key_version_}.Encode()).ok());
    EXPECT_TRUE(m.SetBytes(62, *iso8583::CardReference{asn}.Encode()).ok());
    return m;
  }
  ResponseCode Ask(std::string_view pin) { return Send(Inquiry(pin, card_, kPan)).code; }
  std::int64_t FailedTries() {
    return Count("SELECT failed_tries FROM host_card_pins WHERE asn = '" + ToHex(card_) + "'");
  }
  const Bytes card_ = HexToBytes("00004100000089999985");
};

TEST_P(GatewayPinTest, TheRightPinGetsTheBalanceAndAWrongOne55) {
  SignOn();
  Answer right = Send(Inquiry("739515", card_, kPan));
  ASSERT_EQ(right.code, ResponseCode::kApproved);
  EXPECT_EQ(iso8583::AvailableBalance::Parse(*right.message().GetText(54))->amount, 100000u);
  Answer wrong = Send(Inquiry("739516", card_, kPan));
  EXPECT_EQ(wrong.code, ResponseCode::kIncorrectPin);
  EXPECT_TRUE(wrong.has_mac);
  EXPECT_FALSE(wrong.message().Has(54));
  EXPECT_EQ(FailedTries(), 1);
  // A block under other keys (a terminal with stale PIN keys) is a wrong PIN too.
  SignOn();
  EXPECT_EQ(Ask("739515"), ResponseCode::kApproved);  // and a right PIN resets the count
  EXPECT_EQ(FailedTries(), 0);
  working_pin_key_ = crypto::RandomBytes(16);
  EXPECT_EQ(Ask("739515"), ResponseCode::kIncorrectPin);
  ExpectHostClean();
}

TEST_P(GatewayPinTest, TriesAreCountedPerCardUntil75AndAPinResetStartsAgain) {
  SignOn();
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_st>(log)));
  EXPECT_EQ(Ask("111111"), ResponseCode::kIncorrectPin);
  // A retry of the same frame gets the first answer and is not counted again (9.4).
  const Message wrong = Inquiry("222222", card_, kPan);
  const Bytes frame = FrameOf(wrong);
  EXPECT_EQ(Read(gateway_->Handle(frame), wrong).code, ResponseCode::kIncorrectPin);
  EXPECT_EQ(Read(gateway_->Handle(frame), wrong).code, ResponseCode::kIncorrectPin);
  EXPECT_EQ(FailedTries(), 2);
  EXPECT_EQ(Ask("333333"), ResponseCode::kPinTriesExceeded);  // the third wrong PIN
  EXPECT_EQ(Ask("739515"), ResponseCode::kPinTriesExceeded);  // the right one no longer helps
  EXPECT_EQ(FailedTries(), 3);
  spdlog::set_default_logger(previous);
  EXPECT_THAT(log.str(), ::testing::HasSubstr("code=55"));
  EXPECT_THAT(log.str(), ::testing::HasSubstr("code=75"));
  EXPECT_THAT(log.str(), ::testing::HasSubstr("wrong PIN, 2 of 3 wrong PINs"));
  for (const char* secret : {"111111", "222222", "333333", "739515"}) {
    EXPECT_THAT(log.str(), ::testing::Not(::testing::HasSubstr(secret)));
  }
  EXPECT_THAT(log.str(), ::testing::Not(::testing::HasSubstr(ToHex(*wrong.GetBytes(52)))));

  // The branch resets the PIN: a new value, the count back to 0, the old PIN wrong.
  ASSERT_TRUE(host_->ReplacePinVerificationValue(card_, *PinValue(kPan, "864200")).ok());
  EXPECT_EQ(FailedTries(), 0);
  EXPECT_EQ(Ask("739515"), ResponseCode::kIncorrectPin);
  EXPECT_EQ(Ask("864200"), ResponseCode::kApproved);
  EXPECT_EQ(FailedTries(), 0);
  // Another card's count is its own.
  ASSERT_TRUE(host_
                  ->RegisterCard({HexToBytes("00004100000089999993"), "holder-3", kPerson,
                                  std::nullopt, PinValue("4100000089999993", "123789")})
                  .ok());
  EXPECT_EQ(Send(Inquiry("123789", HexToBytes("00004100000089999993"), "4100000089999993")).code,
            ResponseCode::kApproved);
}

TEST_P(GatewayPinTest, APinForACardWithoutAValueIs12AndForAnUnknownOrLostCard14Or41) {
  SignOn();
  const Bytes no_value = HexToBytes("00004100000089999977");
  ASSERT_TRUE(host_->RegisterCard({no_value, "holder-4", kPerson}).ok());
  EXPECT_EQ(Send(Inquiry("739515", no_value, "4100000089999977")).code,
            ResponseCode::kInvalidTransaction);
  EXPECT_EQ(Send(Inquiry("739515", HexToBytes("00004100000089999969"), "4100000089999969")).code,
            ResponseCode::kInvalidCard);
  ASSERT_TRUE(host_->AddToBlacklist(card_, "20261101000000").ok());
  EXPECT_EQ(Ask("111111"), ResponseCode::kLostCard);
  EXPECT_EQ(FailedTries(), 0);  // a lost card's PIN is not tried
  // The host refuses a value that is not one.
  EXPECT_EQ(host_->ReplacePinVerificationValue(card_, {"purchase", 1, "123456"}).error().code,
            ResponseCode::kFormatError);
  EXPECT_EQ(host_->ReplacePinVerificationValue(no_value, {"pvk/CARDS", 1, "12a456"}).error().code,
            ResponseCode::kFormatError);
  EXPECT_EQ(host_
                ->ReplacePinVerificationValue(HexToBytes("00004100000089999969"),
                                              {"pvk/CARDS", 1, "123456"})
                .error()
                .code,
            ResponseCode::kInvalidCard);
}

INSTANTIATE_TEST_SUITE_P(Engines, GatewayPinTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST_P(GatewayTest, ARetriedSignOnGetsTheSameKeys) {
  Message m = SignOnRequest();
  const Bytes frame = FrameOf(m);
  GatewayReply first = gateway_->Handle(frame);
  GatewayReply again = gateway_->Handle(frame);
  ASSERT_TRUE(first.frame);
  EXPECT_EQ(first.frame, again.frame);
  EXPECT_EQ(Read(again, m).code, ResponseCode::kApproved);
  EXPECT_EQ(Count("SELECT key_version FROM host_terminal_sessions"), 1);
}

TEST_P(GatewayTest, AGroupIsOneTransactionWithASavepointPerRequest) {
  SignOn();
  Message echo = Request(iso8583::Transaction::kEchoTest);
  Message forged = Request(iso8583::Transaction::kEchoTest);
  Bytes forged_frame = FrameOf(forged);
  forged_frame[forged_frame.size() - 8] ^= 0x01;
  Message off = Request(iso8583::Transaction::kSignOff);
  // The second terminal's frames between them: its sign-on and an echo test under its new keys
  // cannot be made before its sign-on is answered, so it signs on first, then joins the group.
  AddSecondTerminal();
  Swap();
  SignOn();
  Message other_echo = Request(iso8583::Transaction::kEchoTest);
  const Bytes other_frame = FrameOf(other_echo);
  Swap();
  const std::vector<Bytes> group{FrameOf(echo), forged_frame, other_frame, HexToBytes("60"),
                                 FrameOf(off)};
  auto replies = gateway_->HandleGroup(group);
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(Read(replies[0], echo).code, ResponseCode::kApproved);
  EXPECT_EQ(Read(replies[1], forged).code, ResponseCode::kMacError);
  Swap();
  EXPECT_EQ(Read(replies[2], other_echo).code, ResponseCode::kApproved);
  Swap();
  EXPECT_TRUE(replies[3].close);
  EXPECT_EQ(Read(replies[4], off).code, ResponseCode::kApproved);
  EXPECT_EQ(Echo().code, ResponseCode::kSignOnRequired);
  Swap();
  EXPECT_EQ(Echo().code, ResponseCode::kApproved);  // the other terminal's keys stay
  Swap();

  // One request's statement fails (not retryable): that request alone gets 96 and leaves
  // nothing, the rest of the group commits. Statements: BEGIN, SAVEPOINT, the registry query.
  Swap();
  Message first = Request(iso8583::Transaction::kEchoTest);
  Message second = Request(iso8583::Transaction::kEchoTest);
  const Bytes first_frame = FrameOf(first);
  conn_->InjectFault(3);
  auto partly = gateway_->HandleGroup(std::vector<Bytes>{first_frame, FrameOf(second)});
  ASSERT_EQ(partly.size(), 2u);
  EXPECT_EQ(Read(partly[0], first).code, ResponseCode::kSystemMalfunction);
  EXPECT_EQ(Read(partly[1], second).code, ResponseCode::kApproved);
  EXPECT_EQ(Read(gateway_->Handle(first_frame), first).code, ResponseCode::kApproved);
  Swap();

  // A group that cannot commit: every request 96, nothing of it stays (the sign-on's keys).
  const std::uint16_t version = key_version_;
  conn_->InjectFault(1);  // BEGIN fails
  Message sign_on = SignOnRequest();
  auto failed = gateway_->HandleGroup(std::vector<Bytes>{FrameOf(sign_on)});
  ASSERT_EQ(failed.size(), 1u);
  ASSERT_TRUE(failed[0].frame);
  auto parsed = iso8583::ParseFrame(*failed[0].frame);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed->message.GetText(39), "96");
  EXPECT_EQ(Count("SELECT key_version FROM host_terminal_sessions"), version);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM host_gateway_answers WHERE trace = " +
                  std::to_string(*sign_on.GetNumber(11))),
            0);
}

TEST_P(GatewayTest, ManyFramesOfOneGroupAreAnsweredInTheirOrder) {
  SignOn();
  std::vector<Message> requests;
  std::vector<Bytes> frames;
  for (int i = 0; i < 100; ++i) {
    requests.push_back(Request(iso8583::Transaction::kEchoTest));
    frames.push_back(FrameOf(requests.back()));
  }
  auto replies = gateway_->HandleGroup(frames);
  ASSERT_EQ(replies.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    Answer a = Read(replies[i], requests[i]);
    EXPECT_EQ(a.code, ResponseCode::kApproved);
    EXPECT_EQ(*a.message().GetNumber(11), *requests[i].GetNumber(11));
  }
  // Each alone afterwards: the same answers (a group changes nothing but the commits).
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Echo().code, ResponseCode::kApproved);
}

INSTANTIATE_TEST_SUITE_P(Engines, GatewayTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::host
