// The terminal's host link without a host: a scripted host in process (FakeHost) that checks
// every request the way the bank host does (ValidateRequest, the MAC recomputed with the clear
// keys through crypto, not the key store) and answers as docs/protocol.md section 7 says; then the
// TCP and TLS transport against a local server.
#include "terminal/host_link.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "crypto/crypto.h"
#include "iso8583/messages.h"

namespace medcard::terminal {
namespace {

namespace fs = std::filesystem;
using iso8583::Message;
using iso8583::ResponseCode;
using iso8583::Transaction;
using ::testing::HasSubstr;

constexpr char kTerminalId[] = "POS00001";
constexpr char kMerchantId[] = "898440154110001";
constexpr char kTerminalNumberHex[] = "000001000050";
constexpr char kTmkHex[] = "404142434445464748494A4B4C4D4E4F";
constexpr char kPinKeyHex[] = "112233445566778899AABBCCDDEEFF00";
constexpr char kMacKeyHex[] = "0123456789ABCDEFFEDCBA9876543210";
constexpr char kAsnHex[] = "00004100000089999985";  // PAN 4100000089999985

template <typename T>
T Must(Result<T> result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  if (!result.ok()) std::abort();
  return std::move(result).value();
}

Message SignWith(Message message, const std::string& key_hex) {
  iso8583::Sign(message, Must(crypto::MacKey::Create(HexToBytes(key_hex))));
  return message;
}

// A host that answers from a script. Every request must be valid and correctly MACed (the test
// fails otherwise); answers are approved and MACed unless a test changes that.
class FakeHost final : public Transport {
 public:
  // Per request; nullopt: the default approved answer. Signed afterwards unless unsigned_answer.
  std::function<std::optional<Message>(const Message& request)> script;
  int drop_answers = 0;          // the next N requests time out
  int wrong_mac_answers = 0;     // the next N answers carry a wrong MAC
  bool unsigned_answer = false;  // answers carry no field 64
  std::uint8_t handling = 0;     // header byte 4 of every answer
  std::uint16_t key_version = 7;
  Bytes pin_kcv_override;     // a wrong KCV for the PIN key
  std::vector<Bytes> frames;  // every frame received
  std::vector<Message> requests;
  int resets = 0;
  // Parameter and blacklist downloads: the parts, in order.
  std::vector<iso8583::ParameterPart> parameter_parts;
  std::vector<iso8583::BlacklistPart> blacklist_parts;

  Result<Bytes> Exchange(ByteView frame) override {
    frames.emplace_back(frame.begin(), frame.end());
    auto parsed = iso8583::ParseFrame(frame);
    if (!parsed.ok()) {
      ADD_FAILURE() << "the host cannot parse the request: " << parsed.error().message;
      return MakeError("unparseable");
    }
    const Message& request = parsed->message;
    requests.push_back(request);
    ResponseCode code{};
    Status valid = iso8583::ValidateRequest(request, &code);
    EXPECT_TRUE(valid.ok()) << valid.error().message;
    const bool sign_on = request.mti() == 0x0800 && IsSignOn(request);
    Status mac = iso8583::VerifyMac(
        request, Must(crypto::MacKey::Create(HexToBytes(sign_on ? kTmkHex : kMacKeyHex))));
    EXPECT_TRUE(mac.ok()) << "request MAC: " << (mac.ok() ? "" : mac.error().message);
    if (drop_answers > 0) {
      --drop_answers;
      return MakeError("no answer from the host within 60 s");
    }
    std::optional<Message> scripted = script ? script(request) : std::nullopt;
    Message response = scripted ? *scripted : DefaultAnswer(request);
    if (!unsigned_answer) response = SignWith(response, sign_on ? kTmkHex : kMacKeyHex);
    if (wrong_mac_answers > 0) {
      --wrong_mac_answers;
      response = SignWith(response, "00000000000000001111111111111111");
    }
    iso8583::Frame answer{
        parsed->tpdu.Reply(), {parsed->header.terminal_status, handling}, response};
    Bytes encoded = iso8583::EncodeFrame(answer);
    return Bytes(encoded.begin() + 2, encoded.end());
  }
  void Reset() override { ++resets; }

  static bool IsSignOn(const Message& request) {
    auto field60 = iso8583::Field60::Parse(request.GetDigits(60).value());
    return field60.ok() && (field60->network_code == iso8583::kNetworkSignOn ||
                            field60->network_code == iso8583::kNetworkSignOnWithDataKey);
  }

  static iso8583::KeyCryptogram Cryptogram(const std::string& key_hex) {
    const Bytes key = HexToBytes(key_hex);
    return {Must(crypto::EncryptKeyForTransport(HexToBytes(kTmkHex), key)), Must(crypto::Kcv(key))};
  }

  Message DefaultAnswer(const Message& request) {
    Message m = Must(iso8583::StartResponse(request, ResponseCode::kApproved));
    auto transaction = Must(iso8583::Identify(request))->transaction;
    auto clock = [&m] {
      EXPECT_TRUE(m.SetDigits(12, "103015").ok());
      EXPECT_TRUE(m.SetDigits(13, "1125").ok());
    };
    switch (transaction) {
      case Transaction::kSignOn: {
        clock();
        EXPECT_TRUE(
            m.SetDigits(53, Must(iso8583::SecurityControl{false, key_version}.Encode())).ok());
        iso8583::WorkingKeys keys{Cryptogram(kPinKeyHex), Cryptogram(kMacKeyHex), std::nullopt};
        if (!pin_kcv_override.empty()) keys.pin_key.kcv = pin_kcv_override;
        EXPECT_TRUE(m.SetBytes(62, Must(keys.Encode())).ok());
        break;
      }
      case Transaction::kEchoTest:
        clock();
        break;
      case Transaction::kParameterDownload: {
        auto asked = Must(iso8583::DownloadRequest::Parse(request.GetBytes(62).value()));
        EXPECT_LT(asked.part, parameter_parts.size());
        EXPECT_TRUE(m.SetBytes(62, Must(parameter_parts.at(asked.part).Encode())).ok());
        break;
      }
      case Transaction::kBlacklistDownload: {
        auto asked = Must(iso8583::DownloadRequest::Parse(request.GetBytes(62).value()));
        EXPECT_TRUE(m.SetBytes(62, Must(blacklist_parts.at(asked.part).Encode())).ok());
        break;
      }
      case Transaction::kSettlementChallenge:
        EXPECT_TRUE(m.SetBytes(62, HexToBytes("1122334455667788")).ok());
        break;
      case Transaction::kBalanceInquiry:
        EXPECT_TRUE(m.SetText(54, Must(iso8583::AvailableBalance{false, 123456}.Encode())).ok());
        break;
      case Transaction::kLoad: {
        clock();
        EXPECT_TRUE(m.SetText(37, "000000004711").ok());
        iso8583::LoadAuthorisation authorisation{HexToBytes("A1B2C3D4"), Date{2026, 11, 25},
                                                 TimeOfDay{10, 30, 15}};
        EXPECT_TRUE(m.SetBytes(62, Must(authorisation.Encode())).ok());
        break;
      }
      case Transaction::kLoadConfirmation:
        EXPECT_TRUE(m.SetText(37, "000000004712").ok());
        break;
      case Transaction::kSettlement:
        EXPECT_TRUE(m.SetBytes(62, HexToBytes("5A6B7C8D")).ok());
        break;
      case Transaction::kSignOff:
      case Transaction::kLoadReversal:
      case Transaction::kBatchUpload:
        break;
    }
    return m;
  }
};

Message Refuse(const Message& request, ResponseCode code) {
  return Must(iso8583::StartResponse(request, code));
}

class HostLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = fs::temp_directory_path() /
           ("medcard-host-link-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    key_store_ = Must(keys::CreateSoftwareKeyStore((dir_ / "keys").string(), "terminal", true));
    ASSERT_TRUE(
        key_store_->ImportTestKey(std::string("tmk/") + kTerminalNumberHex, HexToBytes(kTmkHex))
            .ok());
    config_.terminal_id = kTerminalId;
    config_.merchant_id = kMerchantId;
    config_.terminal_number = HexToBytes(kTerminalNumberHex);
    config_.tmk_version = 1;
    config_.sleep = [this](std::chrono::milliseconds delay) { sleeps_.push_back(delay); };
  }
  void TearDown() override {
    link_.reset();
    key_store_.reset();
    fs::remove_all(dir_);
  }

  HostLink& Link(LinkState state = {}) {
    link_ = std::make_unique<HostLink>(config_, host_, *key_store_, state,
                                       [this](const LinkState& s) { saved_.push_back(s); });
    return *link_;
  }
  HostLink& SignedOnLink(LinkState state = {}) {
    HostLink& link = Link(state);
    auto reply = link.SignOn();
    EXPECT_TRUE(reply.ok() && reply->approved());
    return link;
  }

  LoadInitialisation Init() const {
    LoadInitialisation init;
    init.asn = HexToBytes(kAsnHex);
    init.type = 0x02;
    init.amount = 7223;
    init.terminal_number = HexToBytes(kTerminalNumberHex);
    init.old_balance = 500;
    init.online_serial = 3;
    init.key_version = 1;
    init.alg_id = 0;
    init.random = HexToBytes("CDEF4F20");
    init.mac1 = HexToBytes("06B1BEF5");
    init.date = Date{2026, 11, 25};
    init.time = TimeOfDay{10, 30, 15};
    return init;
  }

  static PurchaseResult Purchase(std::uint32_t serial) {
    PurchaseResult p;
    p.asn = HexToBytes(kAsnHex);
    p.type = 0x06;
    p.amount = 100 + serial;
    p.balance_before = 100000;
    p.balance_after = 100000 - p.amount;
    p.card_offline_serial = static_cast<std::uint16_t>(serial);
    p.terminal_serial = 1000 + serial;
    p.terminal_number = HexToBytes(kTerminalNumberHex);
    p.tac = HexToBytes("44A8E04A");
    p.mac2 = HexToBytes("350AC480");
    p.date = Date{2026, 11, 25};
    p.time = TimeOfDay{9, 0, 0};
    p.key_version = 1;
    return p;
  }

  fs::path dir_;
  std::unique_ptr<keys::KeyStore> key_store_;
  HostLinkConfig config_;
  FakeHost host_;
  std::vector<LinkState> saved_;
  std::vector<std::chrono::milliseconds> sleeps_;
  std::unique_ptr<HostLink> link_;
};

// ---- Sign-on and working keys -----------------------------------------------------------------

TEST_F(HostLinkTest, SignOnIsMacedUnderTheTmkAndInstallsTheWorkingKeys) {
  HostLink& link = Link();
  EXPECT_FALSE(link.signed_on());
  auto reply = link.SignOn("001");
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->approved());
  EXPECT_EQ(reply->key_version, 7);
  EXPECT_TRUE(link.signed_on());
  EXPECT_EQ(link.key_version(), 7);

  const Message& request = host_.requests.at(0);
  EXPECT_EQ(request.mti(), 0x0800);
  EXPECT_EQ(request.GetText(41).value(), kTerminalId);
  EXPECT_EQ(request.GetText(42).value(), kMerchantId);
  EXPECT_EQ(request.GetText(63).value(), "001");
  EXPECT_EQ(request.GetDigits(60).value(), "00000001003");
  EXPECT_EQ(ToHex(request.GetBytes(62).value()), std::string(kTerminalNumberHex) + "01");
  // The MAC, recomputed independently with the clear TMK.
  EXPECT_TRUE(iso8583::VerifyMac(request, Must(crypto::MacKey::Create(HexToBytes(kTmkHex)))).ok());

  // The next request is MACed with the MAC key the host sent and names its version.
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
  EXPECT_EQ(echo->host_time, "1125103015");
  const Message& echo_request = host_.requests.at(1);
  EXPECT_EQ(echo_request.GetDigits(53).value(), "0600070000000000");
  EXPECT_TRUE(
      iso8583::VerifyMac(echo_request, Must(crypto::MacKey::Create(HexToBytes(kMacKeyHex)))).ok());
}

TEST_F(HostLinkTest, AWrongKeyCheckValueInstallsNoKeyAndKeepsTheOldOnes) {
  HostLink& link = SignedOnLink();
  host_.key_version = 8;
  host_.pin_kcv_override = HexToBytes("000000");
  auto reply = link.SignOn();
  ASSERT_FALSE(reply.ok());
  EXPECT_THAT(reply.error().message, HasSubstr("PIN key does not match its check value"));
  EXPECT_EQ(link.key_version(), 7);
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(host_.requests.back().GetDigits(53).value(), "0600070000000000");
}

TEST_F(HostLinkTest, NothingButASignOnGoesOutBeforeTheFirstSignOn) {
  HostLink& link = Link();
  auto echo = link.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("not signed on"));
  EXPECT_TRUE(host_.frames.empty());
}

TEST_F(HostLinkTest, SignOffDropsTheWorkingKeys) {
  HostLink& link = SignedOnLink();
  auto reply = link.SignOff();
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->approved());
  EXPECT_FALSE(link.signed_on());
  EXPECT_EQ(host_.requests.back().GetDigits(60).value(), "00000001002");
}

TEST_F(HostLinkTest, HeaderFlagsAndSignOnCodesAreExposed) {
  HostLink& link = SignedOnLink();
  host_.handling = iso8583::kHandleParameters | iso8583::kHandleBlacklist;
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok());
  EXPECT_TRUE(echo->parameters_due());
  EXPECT_TRUE(echo->blacklist_due());
  EXPECT_FALSE(echo->sign_on_required());

  host_.handling = iso8583::kHandleSignOn;
  host_.script = [](const Message& r) { return Refuse(r, ResponseCode::kSignOnRequired); };
  echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(echo->code, ResponseCode::kSignOnRequired);
  EXPECT_TRUE(echo->sign_on_required());
}

TEST_F(HostLinkTest, TestModeSetsTheHeaderStatus) {
  config_.test_mode = true;
  HostLink& link = Link();
  ASSERT_TRUE(link.SignOn().ok());
  auto frame = Must(iso8583::ParseFrame(host_.frames.at(0)));
  EXPECT_EQ(frame.header.terminal_status, iso8583::TerminalStatus::kTest);
  EXPECT_EQ(frame.tpdu, (iso8583::Tpdu{0x0003, 0x0000}));
}

// ---- Trace and batch numbers (9.3) ------------------------------------------------------------

TEST_F(HostLinkTest, TraceNumbersIncreaseWrapAfter999999AndAreSavedBeforeSending) {
  HostLink& link = SignedOnLink(LinkState{.last_trace = 999'997, .batch_number = 4});
  ASSERT_TRUE(link.EchoTest().ok());
  ASSERT_TRUE(link.EchoTest().ok());
  ASSERT_TRUE(link.EchoTest().ok());
  std::vector<std::uint64_t> traces;
  for (const Message& r : host_.requests) traces.push_back(r.GetNumber(11).value());
  EXPECT_EQ(traces, (std::vector<std::uint64_t>{999'998, 999'999, 1, 2}));
  ASSERT_EQ(saved_.size(), 4u);
  EXPECT_EQ(saved_.back(), (LinkState{.last_trace = 2, .batch_number = 4}));
  EXPECT_EQ(host_.requests.back().GetDigits(60).value(), "00000004301");
}

TEST_F(HostLinkTest, ARestoredStateContinuesItsNumbers) {
  HostLink& link = Link(LinkState{.last_trace = 41, .batch_number = 12});
  ASSERT_TRUE(link.SignOn().ok());
  EXPECT_EQ(host_.requests.at(0).GetNumber(11).value(), 42u);
  EXPECT_EQ(host_.requests.at(0).GetDigits(60).value(), "00000012003");
}

// ---- Retries (9.4) and unusable answers (9.6) -------------------------------------------------

TEST_F(HostLinkTest, ARetryResendsTheVerySameBytesWithBackOff) {
  HostLink& link = SignedOnLink();
  host_.drop_answers = 2;
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
  ASSERT_EQ(host_.frames.size(), 4u);  // sign-on + the echo three times
  EXPECT_EQ(host_.frames[1], host_.frames[2]);
  EXPECT_EQ(host_.frames[2], host_.frames[3]);
  EXPECT_EQ(host_.resets, 2);
  EXPECT_EQ(sleeps_, (std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(1000),
                                                             std::chrono::milliseconds(2000)}));
  EXPECT_EQ(link.state().last_trace, 2u);  // no new trace for a retry
}

TEST_F(HostLinkTest, NoAnswerAfterTheRetriesIsAnError) {
  HostLink& link = SignedOnLink();
  host_.drop_answers = 3;
  auto echo = link.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("no answer from the host after 3 attempts"));
  EXPECT_EQ(host_.frames.size(), 4u);
}

TEST_F(HostLinkTest, AnAnswerWithAWrongMacIsNoAnswer) {
  HostLink& link = SignedOnLink();
  host_.wrong_mac_answers = 3;
  auto echo = link.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("answer MAC wrong"));
  EXPECT_TRUE(link.last_answer_mac_wrong());
  // One wrong answer, then a good one: the retry gets it.
  host_.wrong_mac_answers = 1;
  echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
}

TEST_F(HostLinkTest, AnAnswerThatDoesNotEchoTheRequestIsNoAnswer) {
  HostLink& link = SignedOnLink();
  host_.script = [this](const Message& request) -> std::optional<Message> {
    Message answer = host_.DefaultAnswer(request);
    EXPECT_TRUE(answer.SetNumber(11, request.GetNumber(11).value() + 1).ok());
    return answer;
  };
  auto echo = link.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("answer refused"));
  EXPECT_THAT(echo.error().message, HasSubstr("11"));
}

TEST_F(HostLinkTest, AnUnmacedRefusalCountsOnlyForALoad) {
  HostLink& link = SignedOnLink();
  host_.unsigned_answer = true;
  host_.script = [](const Message& r) { return Refuse(r, ResponseCode::kMacError); };
  auto echo = link.EchoTest();
  ASSERT_FALSE(echo.ok());
  EXPECT_THAT(echo.error().message, HasSubstr("without a MAC"));

  auto load = link.AuthoriseLoad(Init());
  ASSERT_TRUE(load.ok()) << load.error().message;
  EXPECT_EQ(load->code, ResponseCode::kMacError);
  EXPECT_FALSE(load->authenticated);
  EXPECT_TRUE(load->sign_on_required());
}

// ---- Downloads (7.3) --------------------------------------------------------------------------

iso8583::ParameterPart ParameterPart(std::uint32_t version, std::uint16_t part, bool more) {
  iso8583::ParameterPart p;
  p.version = version;
  p.part = part;
  p.more = more;
  if (part == 0) {
    p.parameters.merchant_name = "City Hospital";
    p.parameters.purchase_limit = 50000;
    p.parameters.load_limit = 100000;
    p.parameters.ep_balance_limit = 100000;
  } else {
    p.parameters.card_key_versions = {1, 2};
    p.parameters.clock_date = Date{2026, 11, 25};
    p.parameters.clock_time = TimeOfDay{10, 30, 0};
    p.parameters.upload_threshold = 20;
    p.parameters.blacklist_version = 9;
  }
  return p;
}

TEST_F(HostLinkTest, ParametersComeInPartsAndAreAppliedAtOnce) {
  HostLink& link = SignedOnLink();
  host_.parameter_parts = {ParameterPart(5, 0, true), ParameterPart(5, 1, false)};
  auto reply = link.DownloadParameters(3);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->approved());
  EXPECT_EQ(reply->version, 5u);
  EXPECT_FALSE(reply->up_to_date);
  EXPECT_EQ(reply->parameters.merchant_name, "City Hospital");
  EXPECT_EQ(reply->parameters.upload_threshold, 20);
  EXPECT_EQ(reply->parameters.card_key_versions, (std::vector<std::uint8_t>{1, 2}));
  ASSERT_EQ(host_.requests.size(), 3u);
  EXPECT_EQ(Must(iso8583::DownloadRequest::Parse(host_.requests[1].GetBytes(62).value())),
            (iso8583::DownloadRequest{3, 0, 0}));
  EXPECT_EQ(Must(iso8583::DownloadRequest::Parse(host_.requests[2].GetBytes(62).value())),
            (iso8583::DownloadRequest{3, 5, 1}));
}

TEST_F(HostLinkTest, ParametersAlreadyHeldAreUpToDate) {
  HostLink& link = SignedOnLink();
  iso8583::ParameterPart same;
  same.version = 5;
  host_.parameter_parts = {same};
  auto reply = link.DownloadParameters(5);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->up_to_date);
  EXPECT_EQ(reply->version, 5u);
}

TEST_F(HostLinkTest, AnIncompleteParameterSetIsRefused) {
  HostLink& link = SignedOnLink();
  host_.parameter_parts = {ParameterPart(5, 0, false)};
  auto reply = link.DownloadParameters(0);
  ASSERT_FALSE(reply.ok());
  EXPECT_THAT(reply.error().message, HasSubstr("parameter download incomplete"));
}

TEST_F(HostLinkTest, AVersionGoneMidDownloadStartsAgainFromPartZero) {
  HostLink& link = SignedOnLink();
  host_.parameter_parts = {ParameterPart(5, 0, true), ParameterPart(5, 1, false)};
  bool gone_once = false;
  host_.script = [&](const Message& request) -> std::optional<Message> {
    auto asked = Must(iso8583::DownloadRequest::Parse(request.GetBytes(62).value()));
    if (asked.part == 1 && !gone_once) {
      gone_once = true;
      return Refuse(request, ResponseCode::kUnableToLocateRecord);
    }
    return std::nullopt;
  };
  auto reply = link.DownloadParameters(0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->version, 5u);
  EXPECT_EQ(host_.requests.size(), 5u);  // sign-on, 0, 1 (25), 0, 1
}

TEST_F(HostLinkTest, TheBlacklistComesInPartsFullOrAsChanges) {
  HostLink& link = SignedOnLink();
  iso8583::BlacklistPart first{.version = 9, .more = true, .full = true, .part = 0, .entries = {}};
  for (int i = 0; i < 90; ++i) {
    Bytes asn = HexToBytes(kAsnHex);
    asn.back() = static_cast<std::uint8_t>(i);
    first.entries.push_back({asn, iso8583::BlacklistAction::kAdd});
  }
  iso8583::BlacklistPart second{.version = 9,
                                .more = false,
                                .full = true,
                                .part = 1,
                                .entries = {{HexToBytes(kAsnHex), iso8583::BlacklistAction::kAdd}}};
  host_.blacklist_parts = {first, second};
  auto reply = link.DownloadBlacklist(0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->version, 9u);
  EXPECT_TRUE(reply->full);
  EXPECT_EQ(reply->entries.size(), 91u);
  EXPECT_EQ(ToHex(reply->entries.back().asn), kAsnHex);

  iso8583::BlacklistPart delta{
      .version = 10,
      .more = false,
      .full = false,
      .part = 0,
      .entries = {{HexToBytes(kAsnHex), iso8583::BlacklistAction::kRemove}}};
  host_.blacklist_parts = {delta};
  reply = link.DownloadBlacklist(9);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_FALSE(reply->full);
  ASSERT_EQ(reply->entries.size(), 1u);
  EXPECT_EQ(reply->entries[0].action, iso8583::BlacklistAction::kRemove);
}

// ---- Balance inquiry with a PIN (7.5, 9.8) ----------------------------------------------------

TEST_F(HostLinkTest, TheBalanceInquiryPinBlockIsFormat0UnderThePinKey) {
  HostLink& link = SignedOnLink();
  auto reply = link.BalanceInquiry(HexToBytes(kAsnHex), std::string("123456"));
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->balance.amount, 123456u);
  const Message& request = host_.requests.back();
  EXPECT_EQ(request.GetDigits(2).value(), "4100000089999985");
  EXPECT_EQ(request.GetDigits(22).value(), "051");
  EXPECT_EQ(request.GetDigits(26).value(), "12");
  EXPECT_EQ(request.GetDigits(53).value(), "1600070000000000");
  auto pin_key = Must(crypto::BlockCipher::Des(HexToBytes(kPinKeyHex)));
  const Bytes clear = pin_key.DecryptEcb(request.GetBytes(52).value());
  EXPECT_EQ(
      Must(crypto::ParsePinBlock(crypto::PinBlockFormat::kFormat0, clear, "4100000089999985")),
      "123456");

  reply = link.BalanceInquiry(HexToBytes(kAsnHex));
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_FALSE(host_.requests.back().Has(52));
  EXPECT_EQ(host_.requests.back().GetDigits(22).value(), "052");

  auto no_pan = link.BalanceInquiry(HexToBytes("A0000000000000000001"), std::string("1234"));
  ASSERT_FALSE(no_pan.ok());
  EXPECT_THAT(no_pan.error().message, HasSubstr("no PAN"));
}

// ---- The load (7.6 .. 7.8, 9.5) ---------------------------------------------------------------

TEST_F(HostLinkTest, ALoadItsConfirmationAndReversalNameTheLoad) {
  HostLink& link = SignedOnLink(LinkState{.last_trace = 9, .batch_number = 3});
  auto load = link.AuthoriseLoad(Init());
  ASSERT_TRUE(load.ok()) << load.error().message;
  ASSERT_TRUE(load->approved());
  EXPECT_EQ(ToHex(load->authorisation.mac2), "A1B2C3D4");
  EXPECT_EQ(load->authorisation.date, (Date{2026, 11, 25}));
  EXPECT_EQ(load->reference, "000000004711");
  EXPECT_EQ(load->load, (LoadReference{.batch_number = 3,
                                       .trace = 11,
                                       .month = 11,
                                       .day = 25,
                                       .type = 0x02,
                                       .amount = 7223,
                                       .asn = HexToBytes(kAsnHex)}));
  const Message& request = host_.requests.back();
  EXPECT_EQ(request.GetDigits(3).value(), "600002");
  EXPECT_EQ(request.GetNumber(4).value(), 7223u);
  EXPECT_EQ(request.GetDigits(60).value(), "10000003000");
  auto sent = Must(iso8583::LoadRequest::Parse(request.GetBytes(62).value()));
  EXPECT_EQ(sent.balance, 500u);
  EXPECT_EQ(sent.online_serial, 3);
  EXPECT_EQ(ToHex(sent.mac1), "06B1BEF5");

  auto confirmed = link.ConfirmLoad(load->load, HexToBytes("ED0F8755"));
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  EXPECT_TRUE(confirmed->approved());
  EXPECT_EQ(confirmed->reference, "000000004712");
  const Message& confirmation = host_.requests.back();
  EXPECT_EQ(confirmation.mti(), 0x0220);
  EXPECT_EQ(confirmation.GetNumber(11).value(), 12u);  // its own trace
  EXPECT_EQ(confirmation.GetDigits(61).value(), "0000030000111125");
  EXPECT_EQ(ToHex(confirmation.GetBytes(62).value()), std::string(kAsnHex) + "ED0F8755");

  auto reversed = link.ReverseLoad(load->load, ResponseCode::kError);
  ASSERT_TRUE(reversed.ok()) << reversed.error().message;
  const Message& reversal = host_.requests.back();
  EXPECT_EQ(reversal.mti(), 0x0400);
  EXPECT_EQ(reversal.GetText(39).value(), "06");
  EXPECT_EQ(reversal.GetDigits(61).value(), "0000030000111125");
  EXPECT_FALSE(link.ReverseLoad(load->load, ResponseCode::kApproved).ok());
}

TEST_F(HostLinkTest, TheAuthoriserReversesALoadThatGotNoAnswer) {
  HostLink& link = SignedOnLink();
  HostLoadAuthoriser authoriser(link);
  host_.drop_answers = 3;
  auto approval = authoriser.Approve(Init());
  ASSERT_FALSE(approval.ok());
  EXPECT_THAT(approval.error().message, HasSubstr("reversed"));
  const Message& reversal = host_.requests.back();
  EXPECT_EQ(reversal.mti(), 0x0400);
  EXPECT_EQ(reversal.GetText(39).value(), "98");
  EXPECT_EQ(reversal.GetDigits(61).value(), "0000010000020000");  // trace 2, no answer date
}

TEST_F(HostLinkTest, TheAuthoriserSendsNothingBeforeTheSignOn) {
  HostLoadAuthoriser authoriser(Link());
  auto approval = authoriser.Approve(Init());
  ASSERT_FALSE(approval.ok());
  EXPECT_THAT(approval.error().message, HasSubstr("not signed on"));
  EXPECT_TRUE(host_.frames.empty());
}

TEST_F(HostLinkTest, TheAuthoriserReversesALoadWhoseAnswerHadAWrongMacWithA0) {
  HostLink& link = SignedOnLink();
  HostLoadAuthoriser authoriser(link);
  host_.wrong_mac_answers = 3;
  ASSERT_FALSE(authoriser.Approve(Init()).ok());
  EXPECT_EQ(host_.requests.back().GetText(39).value(), "A0");
}

TEST_F(HostLinkTest, TheAuthoriserPassesTheHostsDateAndTimeAndConfirms) {
  HostLink& link = SignedOnLink();
  HostLoadAuthoriser authoriser(link);
  LoadInitialisation init = Init();
  init.time = TimeOfDay{10, 29, 59};  // the terminal's clock: MAC2 covers the host's
  auto approval = authoriser.Approve(init);
  ASSERT_TRUE(approval.ok()) << approval.error().message;
  EXPECT_EQ(approval->time, (TimeOfDay{10, 30, 15}));
  auto mac2_only = authoriser.Authorise(init);
  ASSERT_FALSE(mac2_only.ok());
  EXPECT_THAT(mac2_only.error().message, HasSubstr("differ"));
  EXPECT_EQ(host_.requests.back().mti(), 0x0400);

  ASSERT_TRUE(authoriser.Approve(Init()).ok());
  ASSERT_TRUE(authoriser.Confirm(Init(), HexToBytes("ED0F8755")).ok());
  EXPECT_EQ(host_.requests.back().mti(), 0x0220);
  ASSERT_TRUE(authoriser.last_confirmation().has_value());

  host_.script = [](const Message& r) { return Refuse(r, ResponseCode::kInsufficientFunds); };
  auto refused = authoriser.Approve(Init());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("51"));
  EXPECT_EQ(authoriser.last_load()->code, ResponseCode::kInsufficientFunds);
}

// ---- Batch upload and settlement (7.9, 7.10) --------------------------------------------------

TEST_F(HostLinkTest, PurchasesGoUpSixteenPerMessage) {
  HostLink& link = SignedOnLink();
  std::vector<PurchaseResult> purchases;
  for (std::uint32_t i = 1; i <= 20; ++i) purchases.push_back(Purchase(i));
  auto reply = link.UploadPurchases(purchases);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->approved());
  EXPECT_EQ(reply->uploaded, 20u);
  ASSERT_EQ(host_.requests.size(), 3u);
  auto first = Must(iso8583::PurchaseBatch::Parse(host_.requests[1].GetBytes(62).value()));
  auto second = Must(iso8583::PurchaseBatch::Parse(host_.requests[2].GetBytes(62).value()));
  ASSERT_EQ(first.purchases.size(), 16u);
  ASSERT_EQ(second.purchases.size(), 4u);
  EXPECT_EQ(second.purchases.back().terminal_serial, 1020u);
  EXPECT_EQ(second.purchases.back().amount, 120u);
  EXPECT_EQ(ToHex(second.purchases.back().mac2), "350AC480");

  int messages = 0;
  host_.script = [&](const Message& r) -> std::optional<Message> {
    if (++messages == 2) return Refuse(r, ResponseCode::kSystemMalfunction);
    return std::nullopt;
  };
  reply = link.UploadPurchases(purchases);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->code, ResponseCode::kSystemMalfunction);
  EXPECT_EQ(reply->uploaded, 16u);
}

TEST_F(HostLinkTest, AnApprovedSettlementOpensTheNextBatch) {
  HostLink& link = SignedOnLink(LinkState{.last_trace = 50, .batch_number = 999'999});
  auto challenge = link.SettlementChallenge();
  ASSERT_TRUE(challenge.ok()) << challenge.error().message;
  EXPECT_EQ(ToHex(challenge->challenge), "1122334455667788");
  PsamTotals psam{.psam_serial = HexToBytes("31000000000000000001"),
                  .key_version = 1,
                  .challenge = challenge->challenge,
                  .totals_answer = HexToBytes("00000003 000000001356 000003E9 000003EB A1B2C3D4")};
  const iso8583::BatchTotals totals{3, 0x1356, 1, 7223};

  host_.script = [](const Message& r) { return Refuse(r, ResponseCode::kReconciliationError); };
  auto refused = link.Settle(totals, psam);
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  EXPECT_EQ(refused->code, ResponseCode::kReconciliationError);
  EXPECT_EQ(link.state().batch_number, 999'999u);

  host_.script = nullptr;
  auto settled = link.Settle(totals, psam);
  ASSERT_TRUE(settled.ok()) << settled.error().message;
  EXPECT_TRUE(settled->approved());
  EXPECT_EQ(ToHex(settled->clear_totals_mac), "5A6B7C8D");
  EXPECT_EQ(link.state().batch_number, 1u);
  EXPECT_EQ(saved_.back().batch_number, 1u);
  const Message& request = host_.requests.back();
  EXPECT_EQ(Must(iso8583::BatchTotals::Parse(request.GetDigits(48).value())), totals);
  auto sam = Must(iso8583::SamTotals::Parse(request.GetBytes(62).value()));
  EXPECT_EQ(sam.count, 3u);
  EXPECT_EQ(sam.amount, 0x1356u);
  EXPECT_EQ(sam.first_serial, 1001u);
  EXPECT_EQ(sam.last_serial, 1003u);
  EXPECT_EQ(ToHex(sam.TotalsAnswer()), ToHex(psam.totals_answer));
  EXPECT_EQ(request.GetDigits(60).value(), "30999999000");
}

// ---- TCP and TLS transport --------------------------------------------------------------------

// A local server on 127.0.0.1 answering each frame with `answer` (nullopt: stay silent; the
// connection is closed after a frame when close_after_read).
class LocalServer {
 public:
  using Handler = std::function<std::optional<Bytes>(ByteView frame)>;
  explicit LocalServer(Handler handler, SSL_CTX* tls = nullptr)
      : handler_(std::move(handler)), tls_(tls) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), size), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~LocalServer() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }
  int connections() const { return connections_; }
  bool close_after_read = false;
  bool one_byte_writes = false;

 private:
  void Serve() {
    while (!stop_) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      ++connections_;
      SSL* ssl = nullptr;
      if (tls_ != nullptr) {
        ssl = SSL_new(tls_);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
          SSL_free(ssl);
          ::close(fd);
          continue;
        }
      }
      ServeConnection(fd, ssl);
      if (ssl != nullptr) SSL_free(ssl);
      ::close(fd);
    }
  }
  void ServeConnection(int fd, SSL* ssl) {
    iso8583::Deframer deframer;
    for (;;) {
      std::uint8_t buffer[4096];
      const long got = ssl != nullptr ? SSL_read(ssl, buffer, sizeof buffer)
                                      : ::recv(fd, buffer, sizeof buffer, 0);
      if (got <= 0) return;
      if (!deframer.Feed(ByteView(buffer, static_cast<std::size_t>(got))).ok()) return;
      while (auto frame = deframer.Next()) {
        if (close_after_read) return;
        std::optional<Bytes> answer = handler_(*frame);
        if (!answer) continue;
        Bytes out;
        AppendU16(out, static_cast<std::uint16_t>(answer->size()));
        Append(out, *answer);
        const std::size_t step = one_byte_writes ? 1 : out.size();
        for (std::size_t at = 0; at < out.size(); at += step) {
          const int n = static_cast<int>(std::min(step, out.size() - at));
          if (ssl != nullptr) {
            SSL_write(ssl, out.data() + at, n);
          } else {
            ::send(fd, out.data() + at, static_cast<std::size_t>(n), MSG_NOSIGNAL);
          }
        }
      }
    }
  }

  Handler handler_;
  SSL_CTX* tls_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TcpConfig LocalConfig(std::uint16_t port, std::chrono::milliseconds timeout) {
  TcpConfig config;
  config.host = "127.0.0.1";
  config.port = port;
  config.timeout = timeout;
  return config;
}

TEST(TcpTransport, FramesTravelWithTheirLengthInAnySplit) {
  LocalServer server([](ByteView frame) {
    Bytes answer(frame.begin(), frame.end());
    std::reverse(answer.begin(), answer.end());
    return answer;
  });
  server.one_byte_writes = true;
  auto transport = Must(MakeTcpTransport(LocalConfig(server.port(), std::chrono::seconds(5))));
  auto answer = transport->Exchange(HexToBytes("0102030405"));
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_EQ(ToHex(*answer), "0504030201");
  answer = transport->Exchange(HexToBytes("AABB"));
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_EQ(ToHex(*answer), "BBAA");
  EXPECT_EQ(server.connections(), 1);  // one connection for both requests
}

TEST(TcpTransport, ASilentHostTimesOutAndAClosingHostIsABrokenConnection) {
  LocalServer silent([](ByteView) { return std::nullopt; });
  auto transport =
      Must(MakeTcpTransport(LocalConfig(silent.port(), std::chrono::milliseconds(200))));
  const auto start = std::chrono::steady_clock::now();
  auto answer = transport->Exchange(HexToBytes("01"));
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.error().message, HasSubstr("no answer from host 127.0.0.1"));
  EXPECT_THAT(answer.error().message, HasSubstr("within 200 ms"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));

  LocalServer closing([](ByteView frame) { return Bytes(frame.begin(), frame.end()); });
  closing.close_after_read = true;
  transport = Must(MakeTcpTransport(LocalConfig(closing.port(), std::chrono::seconds(5))));
  answer = transport->Exchange(HexToBytes("01"));
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.error().message, HasSubstr("closed the connection"));
}

TEST(TcpTransport, NobodyListeningIsAnError) {
  std::uint16_t port = 0;
  {
    LocalServer gone([](ByteView) { return std::nullopt; });
    port = gone.port();
  }
  auto transport = Must(MakeTcpTransport(LocalConfig(port, std::chrono::seconds(2))));
  auto answer = transport->Exchange(HexToBytes("01"));
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.error().message, HasSubstr("cannot connect"));
}

TEST_F(HostLinkTest, TheLinkRetriesOverTcpOnANewConnection) {
  int seen = 0;
  LocalServer server([&](ByteView frame) -> std::optional<Bytes> {
    auto answer = host_.Exchange(frame);
    if (++seen == 2) return std::nullopt;  // the echo's first answer is lost
    return answer.ok() ? std::optional<Bytes>(*answer) : std::nullopt;
  });
  auto transport =
      Must(MakeTcpTransport(LocalConfig(server.port(), std::chrono::milliseconds(300))));
  HostLink link(config_, *transport, *key_store_);
  ASSERT_TRUE(link.SignOn().ok());
  auto echo = link.EchoTest();
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_TRUE(echo->approved());
  EXPECT_EQ(server.connections(), 2);
  ASSERT_EQ(host_.frames.size(), 3u);
  EXPECT_EQ(host_.frames[1], host_.frames[2]);
}

// A self-signed certificate for "host.medcard.test", written as PEM files.
struct TestCertificate {
  std::string cert_file, key_file;
  explicit TestCertificate(const fs::path& dir) {
    fs::create_directories(dir);
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("host.medcard.test"), -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, "DNS:host.medcard.test");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(cert, key, EVP_sha256());
    cert_file = (dir / "host.pem").string();
    key_file = (dir / "host.key").string();
    FILE* out = std::fopen(cert_file.c_str(), "w");
    PEM_write_X509(out, cert);
    std::fclose(out);
    out = std::fopen(key_file.c_str(), "w");
    PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(out);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

TEST(TlsTransport, TheHostCertificateIsVerifiedByCaAndName) {
  const fs::path dir =
      fs::temp_directory_path() / ("medcard-host-link-tls-" + std::to_string(::getpid()));
  TestCertificate certificate(dir);
  SSL_CTX* server_tls = SSL_CTX_new(TLS_server_method());
  ASSERT_EQ(
      SSL_CTX_use_certificate_file(server_tls, certificate.cert_file.c_str(), SSL_FILETYPE_PEM), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(server_tls, certificate.key_file.c_str(), SSL_FILETYPE_PEM),
            1);
  {
    LocalServer server([](ByteView frame) { return Bytes(frame.begin(), frame.end()); },
                       server_tls);
    TcpConfig config = LocalConfig(server.port(), std::chrono::seconds(5));
    config.tls = TlsConfig{certificate.cert_file, "host.medcard.test"};
    auto transport = Must(MakeTcpTransport(config));
    auto answer = transport->Exchange(HexToBytes("600003000060010000000008"));
    ASSERT_TRUE(answer.ok()) << answer.error().message;
    EXPECT_EQ(ToHex(*answer), "600003000060010000000008");

    config.tls = TlsConfig{certificate.cert_file, "other.medcard.test"};
    transport = Must(MakeTcpTransport(config));
    answer = transport->Exchange(HexToBytes("01"));
    ASSERT_FALSE(answer.ok());
    EXPECT_THAT(answer.error().message, HasSubstr("not trusted"));
  }
  EXPECT_FALSE(MakeTcpTransport([&] {
                 TcpConfig config = LocalConfig(1, std::chrono::seconds(1));
                 config.tls = TlsConfig{(dir / "missing.pem").string(), "host.medcard.test"};
                 return config;
               }())
                   .ok());
  SSL_CTX_free(server_tls);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medcard::terminal
