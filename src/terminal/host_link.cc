#include "terminal/host_link.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>
#include <utility>

#include "crypto/crypto.h"

namespace medcard::terminal {

namespace {

using iso8583::Message;
using iso8583::ResponseCode;
using iso8583::Transaction;

constexpr std::uint32_t kMaxNumber = 999'999;  // trace and batch numbers (9.3)

std::uint32_t NextNumber(std::uint32_t number) { return number % kMaxNumber + 1; }

// Collects the first failure of a run of message setters.
class Builder {
 public:
  void operator()(const Status& status) {
    if (status_.ok() && !status.ok()) status_ = status;
  }
  template <typename T>
  std::optional<T> operator()(Result<T> result) {
    if (result.ok()) return std::move(result).value();
    (*this)(Status(result.error()));
    return std::nullopt;
  }
  const Status& status() const { return status_; }

 private:
  Status status_;
};

std::string Digits(const Message& message, int field) {
  auto digits = message.GetDigits(field);
  return digits.ok() ? *digits : std::string();
}

bool IsLoadRequest(const Message& request) {
  return request.mti() == 0x0200 && Digits(request, 3).starts_with("6000");
}

// A transaction's reply with the common part filled in.
template <typename Derived>
Derived Extend(const Reply& common) {
  Derived reply;
  static_cast<Reply&>(reply) = common;
  return reply;
}

std::string ProcessingCodeOfLoad(std::uint8_t type) { return type == 0x01 ? "600001" : "600002"; }

// The part loop of a download (7.3): part 0 names the version, later parts continue it until one
// says no more; a later part of a version the host no longer has (25) starts again at part 0
// (7.3 step 3). The link's steps come as callables (start, secure, exchange, reply_of: HostLink's
// own); take_part(result, part, field 62, target) checks and keeps one part, sets target from
// part 0 and says whether more parts follow. A refusal is returned as it is; an approved result
// has its version set.
template <typename DownloadReply, typename StartRequest, typename Secure, typename ExchangeRequest,
          typename ReplyOfAnswer, typename TakePart>
Result<DownloadReply> DownloadInParts(const std::string& what, std::uint32_t from_version,
                                      StartRequest start, Secure secure, ExchangeRequest exchange,
                                      ReplyOfAnswer reply_of, TakePart take_part) {
  constexpr int kMaxRestarts = 3;
  for (int restart = 0; restart <= kMaxRestarts; ++restart) {
    DownloadReply result;
    std::uint32_t target = 0;
    bool restart_needed = false;
    for (std::uint16_t part = 0;; ++part) {
      Message request = start();
      if (Status s = secure(request); !s.ok()) return s.error();
      Builder build;
      if (auto block = build(iso8583::DownloadRequest{from_version, target, part}.Encode())) {
        build(request.SetBytes(62, *block));
      }
      if (!build.status().ok()) return build.status().error();
      auto answer = exchange(request);
      if (!answer.ok()) return answer.error();
      static_cast<Reply&>(result) = reply_of(*answer, request);
      if (!result.approved()) {
        if (part > 0 && result.code == ResponseCode::kUnableToLocateRecord) {
          restart_needed = true;
          break;
        }
        return result;
      }
      auto more = take_part(result, part, answer->message.GetBytes(62).value(), target);
      if (!more.ok()) return more.error();
      if (!*more) break;
      if (part == 0xFFFF) return MakeError(what + ": too many parts");
    }
    if (restart_needed) continue;
    result.version = target;
    return result;
  }
  return MakeError(what + ": the host kept replacing the version being downloaded");
}

}  // namespace

bool Reply::sign_on_required() const {
  return (handling & iso8583::kHandleSignOn) != 0 || code == ResponseCode::kMacError ||
         code == ResponseCode::kSignOnRequired;
}

HostLink::HostLink(HostLinkConfig config, Transport& transport, keys::KeyStore& key_store,
                   LinkState state, std::function<void(const LinkState&)> on_change)
    : config_(std::move(config)),
      transport_(transport),
      key_store_(key_store),
      state_(state),
      on_change_(std::move(on_change)) {
  if (state_.batch_number == 0 || state_.batch_number > kMaxNumber) state_.batch_number = 1;
  if (state_.last_trace > kMaxNumber) state_.last_trace = 0;
  if (!config_.sleep) {
    config_.sleep = [](std::chrono::milliseconds delay) { std::this_thread::sleep_for(delay); };
  }
}

HostLink::~HostLink() { ReleaseWorkingKeys(); }

void HostLink::Save() {
  if (on_change_) on_change_(state_);
}

void HostLink::ReleaseWorkingKeys() {
  if (!working_) return;
  key_store_.Release(working_->pin);
  key_store_.Release(working_->mac);
  if (working_->data) key_store_.Release(*working_->data);
  working_.reset();
}

Result<keys::KeyRef> HostLink::Tmk() {
  if (config_.terminal_number.size() != iso8583::kTerminalNumberSize) {
    return MakeError("host link: the terminal number must be 6 bytes");
  }
  return key_store_.Find("tmk/" + ToHex(config_.terminal_number), config_.tmk_version);
}

// Every request: a new trace number (9.3), 41, 42 and 60 with the open batch.
Message HostLink::Start(Transaction transaction, std::uint16_t network_code) {
  const iso8583::TransactionSpec& spec = iso8583::SpecOf(transaction);
  state_.last_trace = NextNumber(state_.last_trace);
  Save();
  Message message(spec.request_mti);
  // Errors (a malformed terminal id, ...) leave the field out; ValidateRequest names it before
  // anything is sent.
  (void)message.SetNumber(11, state_.last_trace);
  // 41 and 42 are fixed length (ans 8, ans 15): a shorter id is padded with spaces, as the
  // host strips them (docs/protocol.md 4).
  std::string terminal_id = config_.terminal_id, merchant_id = config_.merchant_id;
  if (terminal_id.size() < 8) terminal_id.resize(8, ' ');
  if (merchant_id.size() < 15) merchant_id.resize(15, ' ');
  (void)message.SetText(41, terminal_id);
  (void)message.SetText(42, merchant_id);
  auto field60 = iso8583::Field60{spec.message_type, state_.batch_number, network_code}.Encode();
  if (field60.ok()) (void)message.SetDigits(60, *field60);
  return message;
}

Status HostLink::AddSecurity(Message& message, bool pin_block) const {
  if (!working_) return MakeError("host link: not signed on (no working keys)");
  auto digits = iso8583::SecurityControl{pin_block, working_->version}.Encode();
  if (!digits.ok()) return digits.error();
  return message.SetDigits(53, *digits);
}

Result<HostLink::Answer> HostLink::Exchange(Message& request) {
  auto spec = iso8583::Identify(request);
  if (!spec.ok()) return spec.error();
  keys::KeyRef mac_key;
  if ((*spec)->mac_key == iso8583::MacKeyUse::kTerminalMasterKey) {
    auto tmk = Tmk();
    if (!tmk.ok()) return tmk.error();
    mac_key = *tmk;
  } else {
    if (!working_) return MakeError("host link: not signed on (no working keys)");
    mac_key = working_->mac;
  }
  auto mac = key_store_.Mac(mac_key, iso8583::MacInput(request));
  if (!mac.ok()) return mac.error();
  if (Status set = iso8583::SetMac(request, *mac); !set.ok()) return set.error();
  iso8583::ResponseCode refusal{};
  if (Status valid = iso8583::ValidateRequest(request, &refusal); !valid.ok()) {
    return MakeError("host link: request not sent: " + valid.error().message);
  }

  iso8583::Frame frame;
  frame.tpdu = {config_.host_nii, config_.terminal_nii};
  frame.header.terminal_status =
      config_.test_mode ? iso8583::TerminalStatus::kTest : iso8583::TerminalStatus::kNormal;
  frame.message = request;
  const Bytes framed = iso8583::EncodeFrame(frame);
  const ByteView body = ByteView(framed).subspan(2);  // the transport adds the length

  // 9.4: the very same bytes — same trace, same MAC — until a usable answer or the retries end.
  std::string last_failure;
  last_answer_mac_wrong_ = false;
  std::chrono::milliseconds backoff = config_.retry_backoff;
  for (int attempt = 0; attempt <= config_.max_retries; ++attempt) {
    if (attempt > 0) {
      config_.sleep(backoff);
      backoff *= 2;
    }
    auto received = transport_.Exchange(body);
    last_answer_mac_wrong_ = false;
    if (!received.ok()) {
      last_failure = received.error().message;
      transport_.Reset();
      continue;
    }
    Answer answer;
    if (Status usable = CheckAnswer(*received, request, mac_key, answer, last_answer_mac_wrong_);
        !usable.ok()) {
      // An answer that cannot be trusted is no answer (9.6): the connection starts afresh.
      last_failure = usable.error().message;
      transport_.Reset();
      continue;
    }
    return answer;
  }
  return MakeError("no answer from the host after " + std::to_string(config_.max_retries + 1) +
                   " attempts (trace " + std::to_string(state_.last_trace) + "): " + last_failure);
}

Status HostLink::CheckAnswer(ByteView received, const Message& request, keys::KeyRef mac_key,
                             Answer& answer, bool& mac_wrong) const {
  auto frame = iso8583::ParseFrame(received);
  if (!frame.ok()) return MakeError("unreadable answer: " + frame.error().message);
  const iso8583::Tpdu expected_tpdu = iso8583::Tpdu{config_.host_nii, config_.terminal_nii}.Reply();
  if (frame->tpdu != expected_tpdu) return MakeError("answer with the wrong TPDU addresses");
  const auto status =
      config_.test_mode ? iso8583::TerminalStatus::kTest : iso8583::TerminalStatus::kNormal;
  if (frame->header.terminal_status != status) {
    return MakeError("answer with another terminal status than the request's");
  }
  if (Status valid = iso8583::ValidateResponse(frame->message, &request); !valid.ok()) {
    return MakeError("answer refused: " + valid.error().message);
  }
  auto code_text = frame->message.GetText(39);
  auto code = code_text.ok() ? iso8583::ParseResponseCode(*code_text) : std::nullopt;
  if (!code) return MakeError("answer with an unknown response code");
  answer.header = frame->header;
  answer.authenticated = true;
  if (frame->message.Has(64)) {
    auto mac = iso8583::MacOf(frame->message);
    if (!mac.ok()) return MakeError("answer refused: " + mac.error().message);
    Status verified = key_store_.VerifyMac(mac_key, iso8583::MacInput(frame->message), *mac);
    if (!verified.ok()) {
      mac_wrong = true;
      return MakeError("answer MAC wrong");
    }
  } else if (*code == ResponseCode::kApproved) {
    return MakeError("approved answer without a MAC");
  } else if (IsLoadRequest(request)) {
    // Section 6: an unauthenticated refusal of a load is still "not authorised".
    answer.authenticated = false;
  } else {
    return MakeError("refusal " + iso8583::ResponseCodeText(*code) + " without a MAC");
  }
  answer.message = std::move(frame->message);
  return Status::Ok();
}

Reply HostLink::ReplyOf(const Answer& answer, const Message& request) const {
  Reply reply;
  reply.code = *iso8583::ParseResponseCode(answer.message.GetText(39).value());
  reply.handling = answer.header.handling;
  auto trace = request.GetNumber(11);
  reply.trace = trace.ok() ? static_cast<std::uint32_t>(*trace) : 0;
  reply.authenticated = answer.authenticated;
  return reply;
}

// ---- 7.1 Sign-on ------------------------------------------------------------------------------
Result<SignOnReply> HostLink::SignOn(std::string_view operator_number) {
  auto tmk = Tmk();
  if (!tmk.ok()) return tmk.error();
  const std::uint16_t network =
      config_.with_data_key ? iso8583::kNetworkSignOnWithDataKey : iso8583::kNetworkSignOn;
  Message request = Start(Transaction::kSignOn, network);
  Builder build;
  if (auto block =
          build(iso8583::SignOnRequest{config_.terminal_number, config_.tmk_version}.Encode())) {
    build(request.SetBytes(62, *block));
  }
  if (!operator_number.empty()) build(request.SetText(63, operator_number));
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<SignOnReply>(ReplyOf(*answer, request));
  if (!reply.approved()) return reply;

  auto keys = iso8583::WorkingKeys::Parse(answer->message.GetBytes(62).value());
  if (!keys.ok()) return keys.error();
  if (keys->data_key.has_value() != config_.with_data_key) {
    return MakeError("sign-on: the host sent another number of working keys than asked for");
  }
  auto security = iso8583::SecurityControl::Parse(Digits(answer->message, 53));
  if (!security.ok()) return security.error();

  // 5.6.2: all keys unwrapped and their KCVs right, or none installed.
  std::vector<keys::KeyRef> unwrapped;
  auto release = [&] {
    for (keys::KeyRef ref : unwrapped) key_store_.Release(ref);
  };
  auto install = [&](const iso8583::KeyCryptogram& cryptogram, const char* name) -> Status {
    auto ref = key_store_.Unwrap(*tmk, cryptogram.cryptogram);
    if (!ref.ok()) return MakeError(std::string("sign-on: ") + name + ": " + ref.error().message);
    unwrapped.push_back(*ref);
    auto kcv = key_store_.Kcv(*ref);
    if (!kcv.ok()) return kcv.error();
    if (*kcv != cryptogram.kcv) {
      return MakeError(std::string("sign-on: the ") + name +
                       " does not match its check value: working keys not installed");
    }
    return Status::Ok();
  };
  Status pin = install(keys->pin_key, "PIN key");
  Status mac = pin.ok() ? install(keys->mac_key, "MAC key") : pin;
  Status data = mac.ok() && keys->data_key ? install(*keys->data_key, "data key") : mac;
  if (!data.ok()) {
    release();
    return data.error();
  }
  ReleaseWorkingKeys();
  working_ = WorkingKeys{.pin = unwrapped[0],
                         .mac = unwrapped[1],
                         .data = unwrapped.size() > 2 ? std::optional(unwrapped[2]) : std::nullopt,
                         .version = security->key_version};
  reply.key_version = security->key_version;
  return reply;
}

// ---- 7.2 Sign-off and echo test ---------------------------------------------------------------
Result<Reply> HostLink::SignOff() {
  Message request = Start(Transaction::kSignOff, iso8583::kNetworkSignOff);
  if (Status s = AddSecurity(request, false); !s.ok()) return s.error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  Reply reply = ReplyOf(*answer, request);
  if (reply.approved()) ReleaseWorkingKeys();
  return reply;
}

Result<EchoReply> HostLink::EchoTest() {
  Message request = Start(Transaction::kEchoTest, iso8583::kNetworkEchoTest);
  if (Status s = AddSecurity(request, false); !s.ok()) return s.error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<EchoReply>(ReplyOf(*answer, request));
  if (answer->message.Has(12) && answer->message.Has(13)) {
    reply.host_time = Digits(answer->message, 13) + Digits(answer->message, 12);
  }
  return reply;
}

// ---- 7.3 Downloads ----------------------------------------------------------------------------
Result<ParametersReply> HostLink::DownloadParameters(std::uint32_t from_version) {
  auto take_part = [](ParametersReply& result, std::uint16_t part, ByteView block,
                      std::uint32_t& target) -> Result<bool> {
    auto received = iso8583::ParameterPart::Parse(block);
    if (!received.ok()) return received.error();
    if (received->part != part || (part > 0 && received->version != target)) {
      return MakeError("parameter download: the host answered part " +
                       std::to_string(received->part) + " of version " +
                       std::to_string(received->version) + " for part " + std::to_string(part) +
                       " of version " + std::to_string(target));
    }
    if (part == 0) target = received->version;
    if (Status merged = iso8583::Merge(result.parameters, received->parameters); !merged.ok()) {
      return merged.error();
    }
    return received->more;
  };
  auto result = DownloadInParts<ParametersReply>(
      "parameter download", from_version,
      [this] { return Start(Transaction::kParameterDownload, iso8583::kNetworkParameterDownload); },
      [this](Message& request) { return AddSecurity(request, false); },
      [this](Message& request) { return Exchange(request); },
      [this](const auto& answer, const Message& request) { return ReplyOf(answer, request); },
      take_part);
  if (!result.ok() || !result->approved()) return result;
  result->up_to_date =
      result->version == from_version && result->parameters == iso8583::Parameters{};
  if (!result->up_to_date) {
    if (Status complete = iso8583::CheckComplete(result->parameters); !complete.ok()) {
      return MakeError("parameter download incomplete: " + complete.error().message);
    }
  }
  return result;
}

Result<BlacklistReply> HostLink::DownloadBlacklist(std::uint32_t from_version) {
  auto take_part = [](BlacklistReply& result, std::uint16_t part, ByteView block,
                      std::uint32_t& target) -> Result<bool> {
    auto received = iso8583::BlacklistPart::Parse(block);
    if (!received.ok()) return received.error();
    if (received->part != part || (part > 0 && received->version != target) ||
        (part > 0 && received->full != result.full)) {
      return MakeError("blacklist download: part " + std::to_string(received->part) +
                       " of version " + std::to_string(received->version) +
                       " does not continue the download of version " + std::to_string(target));
    }
    if (part == 0) {
      target = received->version;
      result.full = received->full;
    }
    result.entries.insert(result.entries.end(), received->entries.begin(), received->entries.end());
    return received->more;
  };
  return DownloadInParts<BlacklistReply>(
      "blacklist download", from_version,
      [this] { return Start(Transaction::kBlacklistDownload, iso8583::kNetworkBlacklistDownload); },
      [this](Message& request) { return AddSecurity(request, false); },
      [this](Message& request) { return Exchange(request); },
      [this](const auto& answer, const Message& request) { return ReplyOf(answer, request); },
      take_part);
}

// ---- 7.4 Settlement challenge -----------------------------------------------------------------
Result<ChallengeReply> HostLink::SettlementChallenge() {
  Message request = Start(Transaction::kSettlementChallenge, iso8583::kNetworkSettlementChallenge);
  if (Status s = AddSecurity(request, false); !s.ok()) return s.error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<ChallengeReply>(ReplyOf(*answer, request));
  if (!reply.approved()) return reply;
  auto challenge = iso8583::ParseSettlementChallenge(answer->message.GetBytes(62).value());
  if (!challenge.ok()) return challenge.error();
  reply.challenge = *challenge;
  return reply;
}

// ---- 7.5 Balance inquiry ----------------------------------------------------------------------
Result<BalanceReply> HostLink::BalanceInquiry(ByteView asn, std::optional<std::string> pin) {
  Message request = Start(Transaction::kBalanceInquiry);
  Builder build;
  build(AddSecurity(request, pin.has_value()));
  build(request.SetDigits(3, "310000"));
  build(request.SetDigits(22, pin ? "051" : "052"));
  build(request.SetDigits(25, "00"));
  build(request.SetText(49, iso8583::kCurrencyCny));
  if (auto block = build(iso8583::CardReference{Bytes(asn.begin(), asn.end())}.Encode())) {
    build(request.SetBytes(62, *block));
  }
  if (pin && build.status().ok()) {
    // 9.8: format 0 with the PAN of field 2, encrypted under the working PIN key.
    const std::optional<std::string> pan = iso8583::PanFromAsn(asn);
    if (!pan) return MakeError("balance inquiry: this card has no PAN, so no online PIN");
    auto clear = crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, *pin, *pan);
    if (!clear.ok()) return clear.error();
    auto encrypted = key_store_.Encrypt(working_->pin, *clear);
    SecureWipe(clear.value());
    if (!encrypted.ok()) return encrypted.error();
    build(request.SetDigits(2, *pan));
    build(request.SetDigits(26, "12"));
    build(request.SetBytes(52, *encrypted));
  }
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<BalanceReply>(ReplyOf(*answer, request));
  if (!reply.approved()) return reply;
  auto balance = iso8583::AvailableBalance::Parse(answer->message.GetText(54).value());
  if (!balance.ok()) return balance.error();
  reply.balance = *balance;
  return reply;
}

// ---- 7.6 .. 7.8 The load ----------------------------------------------------------------------
Result<LoadReply> HostLink::AuthoriseLoad(const LoadInitialisation& init) {
  if (init.type != 0x01 && init.type != 0x02) return MakeError("load: type must be 01 or 02");
  Message request = Start(Transaction::kLoad);
  LoadReply reply;
  reply.trace = state_.last_trace;
  reply.load = LoadReference{.batch_number = state_.batch_number,
                             .trace = state_.last_trace,
                             .type = init.type,
                             .amount = init.amount,
                             .asn = init.asn};
  Builder build;
  build(AddSecurity(request, false));
  build(request.SetDigits(3, ProcessingCodeOfLoad(init.type)));
  build(request.SetNumber(4, init.amount));
  build(request.SetDigits(22, "052"));
  build(request.SetDigits(25, "00"));
  build(request.SetText(49, iso8583::kCurrencyCny));
  const iso8583::LoadRequest load{.asn = init.asn,
                                  .terminal_number = init.terminal_number,
                                  .balance = init.old_balance,
                                  .online_serial = init.online_serial,
                                  .key_version = init.key_version,
                                  .algorithm_id = init.alg_id,
                                  .random = init.random,
                                  .mac1 = init.mac1};
  if (auto block = build(load.Encode())) build(request.SetBytes(62, *block));
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  static_cast<Reply&>(reply) = ReplyOf(*answer, request);
  if (answer->message.Has(13)) {
    const std::string mmdd = Digits(answer->message, 13);
    reply.load.month = std::stoi(mmdd.substr(0, 2));
    reply.load.day = std::stoi(mmdd.substr(2, 2));
  }
  if (!reply.approved()) return reply;
  auto authorisation = iso8583::LoadAuthorisation::Parse(answer->message.GetBytes(62).value());
  if (!authorisation.ok()) return authorisation.error();
  reply.authorisation = *authorisation;
  // 61's date is the answer's month-day; 5.6.4 makes it equal to the authorisation's date.
  reply.load.month = authorisation->date.month;
  reply.load.day = authorisation->date.day;
  reply.reference = answer->message.GetText(37).value();
  return reply;
}

Result<ConfirmReply> HostLink::ConfirmLoad(const LoadReference& load, ByteView tac) {
  Message request = Start(Transaction::kLoadConfirmation);
  Builder build;
  build(AddSecurity(request, false));
  build(request.SetDigits(3, ProcessingCodeOfLoad(load.type)));
  build(request.SetNumber(4, load.amount));
  build(request.SetDigits(25, "00"));
  build(request.SetText(49, iso8583::kCurrencyCny));
  if (auto original =
          build(iso8583::OriginalTransaction{load.batch_number, load.trace, load.month, load.day}
                    .Encode())) {
    build(request.SetDigits(61, *original));
  }
  if (auto block =
          build(iso8583::LoadConfirmation{load.asn, Bytes(tac.begin(), tac.end())}.Encode())) {
    build(request.SetBytes(62, *block));
  }
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<ConfirmReply>(ReplyOf(*answer, request));
  if (reply.approved()) reply.reference = answer->message.GetText(37).value();
  return reply;
}

Result<Reply> HostLink::ReverseLoad(const LoadReference& load, ResponseCode reason) {
  if (reason != ResponseCode::kNoResponse && reason != ResponseCode::kMacError &&
      reason != ResponseCode::kError) {
    return MakeError("load reversal: the reason is 98, A0 or 06");
  }
  Message request = Start(Transaction::kLoadReversal);
  Builder build;
  build(AddSecurity(request, false));
  build(request.SetDigits(3, ProcessingCodeOfLoad(load.type)));
  build(request.SetNumber(4, load.amount));
  build(request.SetDigits(25, "00"));
  build(request.SetText(39, iso8583::ResponseCodeText(reason)));
  build(request.SetText(49, iso8583::kCurrencyCny));
  if (auto original =
          build(iso8583::OriginalTransaction{load.batch_number, load.trace, load.month, load.day}
                    .Encode())) {
    build(request.SetDigits(61, *original));
  }
  if (auto block = build(iso8583::CardReference{load.asn}.Encode())) {
    build(request.SetBytes(62, *block));
  }
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  return ReplyOf(*answer, request);
}

// ---- 7.9 Batch upload -------------------------------------------------------------------------
Result<UploadReply> HostLink::UploadPurchases(std::span<const PurchaseResult> purchases) {
  if (purchases.empty()) return MakeError("batch upload: no purchases");
  UploadReply reply;
  for (std::size_t first = 0; first < purchases.size(); first += iso8583::kMaxPurchasesPerUpload) {
    const std::size_t count = std::min(iso8583::kMaxPurchasesPerUpload, purchases.size() - first);
    iso8583::PurchaseBatch batch;
    for (const PurchaseResult& p : purchases.subspan(first, count)) {
      batch.purchases.push_back({.asn = p.asn,
                                 .type = p.type,
                                 .amount = p.amount,
                                 .card_offline_serial = p.card_offline_serial,
                                 .terminal_number = p.terminal_number,
                                 .terminal_serial = p.terminal_serial,
                                 .date = p.date,
                                 .time = p.time,
                                 .key_version = p.key_version,
                                 .tac = p.tac,
                                 .mac2 = p.mac2,
                                 .balance_before = p.balance_before,
                                 .balance_after = p.balance_after});
    }
    auto block = batch.Encode();
    if (!block.ok()) return block.error();
    Message request = Start(Transaction::kBatchUpload);
    Builder build;
    build(AddSecurity(request, false));
    build(request.SetBytes(62, *block));
    if (!build.status().ok()) return build.status().error();
    auto answer = Exchange(request);
    if (!answer.ok()) return answer.error();
    static_cast<Reply&>(reply) = ReplyOf(*answer, request);
    if (!reply.approved()) return reply;
    reply.uploaded += count;
  }
  return reply;
}

// ---- 7.10 Settlement --------------------------------------------------------------------------
Result<SettleReply> HostLink::Settle(const iso8583::BatchTotals& totals, const PsamTotals& psam) {
  constexpr std::size_t kTotalsAnswerSize = 22;
  if (psam.totals_answer.size() != kTotalsAnswerSize) {
    return MakeError("settlement: the GET SAM TOTALS answer must be 22 bytes");
  }
  const ByteView answer_bytes(psam.totals_answer);
  const iso8583::SamTotals sam{.psam_serial = psam.psam_serial,
                               .key_version = psam.key_version,
                               .challenge = psam.challenge,
                               .count = ReadU32(answer_bytes, 0),
                               .amount = ReadU48(answer_bytes, 4),
                               .first_serial = ReadU32(answer_bytes, 10),
                               .last_serial = ReadU32(answer_bytes, 14),
                               .mac = Bytes(answer_bytes.begin() + 18, answer_bytes.end())};
  Message request = Start(Transaction::kSettlement);
  Builder build;
  build(AddSecurity(request, false));
  if (auto digits = build(totals.Encode())) build(request.SetDigits(48, *digits));
  build(request.SetText(49, iso8583::kCurrencyCny));
  if (auto block = build(sam.Encode())) build(request.SetBytes(62, *block));
  if (!build.status().ok()) return build.status().error();
  auto answer = Exchange(request);
  if (!answer.ok()) return answer.error();
  auto reply = Extend<SettleReply>(ReplyOf(*answer, request));
  if (!reply.approved()) return reply;
  auto mac = iso8583::ParseClearTotalsMac(answer->message.GetBytes(62).value());
  if (!mac.ok()) return mac.error();
  reply.clear_totals_mac = *mac;
  state_.batch_number = NextNumber(state_.batch_number);  // 9.3: the next batch opens
  Save();
  return reply;
}

// ---- terminal::Load through the host ----------------------------------------------------------
Result<LoadApproval> HostLoadAuthoriser::Approve(const LoadInitialisation& init) {
  last_load_.reset();
  last_confirmation_.reset();
  last_tac_.reset();
  // Only a load that went out is reversed: without working keys nothing is sent.
  if (!link_.signed_on()) return MakeError("load not authorised: not signed on");
  const std::uint32_t batch = link_.state().batch_number;
  auto reply = link_.AuthoriseLoad(init);
  if (!reply.ok()) {
    // 9.5 step 2: no usable answer, so the card never got MAC2 — reverse the load (the reversal
    // names the trace the load just used).
    LoadReference load{.batch_number = batch,
                       .trace = link_.state().last_trace,
                       .type = init.type,
                       .amount = init.amount,
                       .asn = init.asn};
    const bool mac_wrong = link_.last_answer_mac_wrong();
    auto reversed = link_.ReverseLoad(
        load, mac_wrong ? iso8583::ResponseCode::kMacError : iso8583::ResponseCode::kNoResponse);
    std::string outcome = reversed.ok() && reversed->approved() ? "reversed"
                          : reversed.ok()
                              ? "reversal refused " + iso8583::ResponseCodeText(reversed->code)
                              : "reversal unanswered: " + reversed.error().message;
    return MakeError("load not authorised: " + reply.error().message + " (" + outcome + ")");
  }
  last_load_ = *reply;
  if (!reply->approved()) {
    return MakeError("load refused by the host: " + iso8583::ResponseCodeText(reply->code) + " " +
                     std::string(iso8583::ResponseCodeName(reply->code)));
  }
  return LoadApproval{reply->authorisation.mac2, reply->authorisation.date,
                      reply->authorisation.time};
}

Result<Bytes> HostLoadAuthoriser::Authorise(const LoadInitialisation& init) {
  auto approval = Approve(init);
  if (!approval.ok()) return approval.error();
  if (approval->date != init.date || approval->time != init.time) {
    // MAC2 covers the host's date and time, not the ones this caller would send to the card.
    auto reversed = link_.ReverseLoad(last_load_->load, iso8583::ResponseCode::kError);
    (void)reversed;
    return MakeError("load: the host's date and time differ from the terminal's; use Approve");
  }
  return approval->mac2;
}

Status HostLoadAuthoriser::Confirm(const LoadInitialisation&, ByteView tac) {
  if (!last_load_ || !last_load_->approved()) {
    return MakeError("load confirmation: no approved load");
  }
  last_tac_ = Bytes(tac.begin(), tac.end());
  auto reply = link_.ConfirmLoad(last_load_->load, tac);
  if (!reply.ok()) return reply.error();
  last_confirmation_ = *reply;
  if (!reply->approved()) {
    return MakeError("load confirmation refused by the host: " +
                     iso8583::ResponseCodeText(reply->code));
  }
  return Status::Ok();
}

Result<Bytes> InProcessTransport::Exchange(ByteView frame) {
  std::optional<Bytes> answer = handle_(frame);
  if (!answer) return MakeError("the host closed the connection without answering");
  return std::move(*answer);
}

// ---- TCP / TLS transport ----------------------------------------------------------------------
namespace {

using Clock = std::chrono::steady_clock;

std::string OpenSslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "no detail" : text;
}

// Writing to a connection the host closed raises SIGPIPE inside OpenSSL's socket BIO; the link
// reports a broken connection instead, without touching the process's signal disposition.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending_before_);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeBlock() {
    if (!sigismember(&pending_before_, SIGPIPE)) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE)) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const timespec zero{};
        (void)sigtimedwait(&pipe, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_{}, pending_before_{};
};

class TcpTransport final : public Transport {
 public:
  TcpTransport(TcpConfig config, SSL_CTX* context) : config_(std::move(config)), tls_(context) {}
  ~TcpTransport() override {
    Reset();
    if (tls_ != nullptr) SSL_CTX_free(tls_);
  }
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  Result<Bytes> Exchange(ByteView frame) override {
    if (frame.empty() || frame.size() > config_.max_frame_size) {
      return MakeError("host link: frame of " + std::to_string(frame.size()) +
                       " bytes cannot be sent");
    }
    const Clock::time_point deadline = Clock::now() + config_.timeout;
    if (fd_ < 0) {
      if (Status connected = Connect(deadline); !connected.ok()) {
        Reset();
        return connected.error();
      }
    }
    Bytes out;
    AppendU16(out, static_cast<std::uint16_t>(frame.size()));
    Append(out, frame);
    if (Status written = WriteAll(out, deadline); !written.ok()) {
      Reset();
      return written.error();
    }
    iso8583::Deframer deframer(config_.max_frame_size);
    for (;;) {
      if (auto whole = deframer.Next()) return std::move(*whole);
      std::uint8_t buffer[4096];
      auto count = ReadSome(buffer, sizeof buffer, deadline);
      if (!count.ok()) {
        Reset();
        return count.error();
      }
      if (Status fed = deframer.Feed(ByteView(buffer, *count)); !fed.ok()) {
        Reset();
        return MakeError(Where() + ": " + fed.error().message);
      }
    }
  }

  void Reset() override {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  std::string Where() const { return "host " + config_.host + ":" + std::to_string(config_.port); }

  Error TimedOut() const {
    const auto ms = config_.timeout.count();
    return MakeError(
        "no answer from " + Where() + " within " +
        (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms"));
  }

  // Waits until fd_ is ready for `events` or the deadline passes.
  Status Wait(short events, Clock::time_point deadline) const {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return TimedOut();
      pollfd p{fd_, events, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
      if (ready > 0) return Status::Ok();
      if (ready < 0 && errno != EINTR) {
        return MakeError(Where() + ": poll: " + std::strerror(errno));
      }
    }
  }

  Status Connect(Clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(config_.port);
    if (int rc = ::getaddrinfo(config_.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return MakeError(Where() + ": " + ::gai_strerror(rc));
    }
    std::string failure = "no address";
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd_ < 0) {
        failure = std::strerror(errno);
        continue;
      }
      if (::connect(fd_, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
        failure = std::strerror(errno);
        Reset();
        continue;
      }
      if (Status ready = Wait(POLLOUT, deadline); !ready.ok()) {
        ::freeaddrinfo(found);
        return ready;
      }
      int error = 0;
      socklen_t size = sizeof error;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size);
      if (error != 0) {
        failure = std::strerror(error);
        Reset();
      }
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) return MakeError("cannot connect to " + Where() + ": " + failure);
    const int on = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return tls_ != nullptr ? Handshake(deadline) : Status::Ok();
  }

  Status Handshake(Clock::time_point deadline) {
    ERR_clear_error();
    ssl_ = SSL_new(tls_);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
      return MakeError(Where() + ": TLS: " + OpenSslErrors());
    }
    const std::string& name = config_.tls->server_name;
    if (SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(name.c_str())) != 1 ||
        SSL_set1_host(ssl_, name.c_str()) != 1) {
      return MakeError(Where() + ": TLS server name: " + OpenSslErrors());
    }
    for (;;) {
      SigpipeBlock no_sigpipe;
      const int rc = SSL_connect(ssl_);
      if (rc == 1) return Status::Ok();
      const int error = SSL_get_error(ssl_, rc);
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        if (Status ready = Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            !ready.ok()) {
          return ready;
        }
        continue;
      }
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        return MakeError(Where() + ": TLS: the host's certificate is not trusted: " +
                         X509_verify_cert_error_string(verify));
      }
      return MakeError(Where() + ": TLS handshake failed: " + OpenSslErrors());
    }
  }

  Status WriteAll(ByteView out, Clock::time_point deadline) {
    std::size_t done = 0;
    while (done < out.size()) {
      if (ssl_ != nullptr) {
        SigpipeBlock no_sigpipe;
        ERR_clear_error();
        std::size_t written = 0;
        if (SSL_write_ex(ssl_, out.data() + done, out.size() - done, &written) == 1) {
          done += written;
          continue;
        }
        const int error = SSL_get_error(ssl_, 0);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
          if (Status ready = Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
              !ready.ok()) {
            return ready;
          }
          continue;
        }
        return MakeError(Where() + ": connection broken while sending");
      }
      const ssize_t written = ::send(fd_, out.data() + done, out.size() - done, MSG_NOSIGNAL);
      if (written >= 0) {
        done += static_cast<std::size_t>(written);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (Status ready = Wait(POLLOUT, deadline); !ready.ok()) return ready;
      } else if (errno != EINTR) {
        return MakeError(Where() + ": connection broken while sending: " + std::strerror(errno));
      }
    }
    return Status::Ok();
  }

  Result<std::size_t> ReadSome(std::uint8_t* buffer, std::size_t size, Clock::time_point deadline) {
    for (;;) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        std::size_t got = 0;
        SigpipeBlock no_sigpipe;
        if (SSL_read_ex(ssl_, buffer, size, &got) == 1) return got;
        const int error = SSL_get_error(ssl_, 0);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
          if (Status ready = Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
              !ready.ok()) {
            return ready.error();
          }
          continue;
        }
        return MakeError(Where() + " closed the connection before answering");
      }
      const ssize_t got = ::recv(fd_, buffer, size, 0);
      if (got > 0) return static_cast<std::size_t>(got);
      if (got == 0) return MakeError(Where() + " closed the connection before answering");
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (Status ready = Wait(POLLIN, deadline); !ready.ok()) return ready.error();
      } else if (errno != EINTR) {
        return MakeError(Where() + ": connection broken: " + std::strerror(errno));
      }
    }
  }

  TcpConfig config_;
  SSL_CTX* tls_ = nullptr;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<Transport>> MakeTcpTransport(const TcpConfig& config) {
  if (config.host.empty() || config.port == 0) return MakeError("host link: no host or port");
  if (config.timeout.count() <= 0) return MakeError("host link: the timeout must be positive");
  SSL_CTX* context = nullptr;
  if (config.tls) {
    if (config.tls->ca_file.empty() || config.tls->server_name.empty()) {
      return MakeError("host link: TLS needs a CA file and the host's server name");
    }
    ERR_clear_error();
    context = SSL_CTX_new(TLS_client_method());
    if (context == nullptr) return MakeError("host link: TLS: " + OpenSslErrors());
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(context, config.tls->ca_file.c_str(), nullptr) != 1) {
      SSL_CTX_free(context);
      return MakeError("host link: TLS: cannot load CA file " + config.tls->ca_file + ": " +
                       OpenSslErrors());
    }
  }
  return std::unique_ptr<Transport>(std::make_unique<TcpTransport>(config, context));
}

}  // namespace medcard::terminal
