// The terminal gateway (docs/host.md "The terminal gateway"): docs/protocol.md section 9 in
// order — parse and validate, registry, keys, MAC, retry cache, then the transaction of section 7
// through the Host services — for a group of frames committed as one database transaction.
#include "host/gateway.h"

#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <utility>

#include <spdlog/spdlog.h>

#include "crypto/crypto.h"
#include "iso8583/messages.h"
#include "keys/pboc.h"

namespace medcard::host {
namespace {

using iso8583::Frame;
using iso8583::Message;
using iso8583::ResponseCode;
using iso8583::Transaction;
using store::DbError;
using store::DbResult;

constexpr char kSavepoint[] = "gateway_request";

// What a transaction decided: the response code and, for a refusal, why (for the log).
struct Verdict {
  ResponseCode code = ResponseCode::kApproved;
  std::string reason;
};
Verdict Approve() { return {}; }
Verdict Refuse(ResponseCode code, std::string reason) { return {code, std::move(reason)}; }

DbError InternalError(std::string message) {
  return store::MakeDbError(store::ErrorKind::kOther, std::move(message));
}

// A Host refusal is a verdict; its 96 (the database or the key store failed) is an error of the
// whole request, which the caller rolls back (and, when retryable, runs again with the group).
DbResult<Verdict> FromHost(const HostError& error) {
  if (error.code != ResponseCode::kSystemMalfunction) return Refuse(error.code, error.message);
  return store::MakeDbError(
      error.retryable ? store::ErrorKind::kRetryable : store::ErrorKind::kOther, error.message);
}

std::string Digest(ByteView bytes) {
  Bytes digest(SHA256_DIGEST_LENGTH);
  SHA256(bytes.data(), bytes.size(), digest.data());
  return ToHex(digest);
}

struct HostClock {
  Date date;
  TimeOfDay time;
};
HostClock ClockAt(std::int64_t us) {
  using namespace std::chrono;
  const sys_time<microseconds> t{microseconds{us}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{floor<seconds>(t - day)};
  return {{static_cast<int>(ymd.year()), static_cast<int>(static_cast<unsigned>(ymd.month())),
           static_cast<int>(static_cast<unsigned>(ymd.day()))},
          {static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
           static_cast<int>(hms.seconds().count())}};
}
std::string TimeDigits(const TimeOfDay& t) {
  char text[16];
  std::snprintf(text, sizeof text, "%02d%02d%02d", t.hour, t.minute, t.second);
  return text;
}
std::string MonthDayDigits(const Date& d) {
  char text[16];
  std::snprintf(text, sizeof text, "%02d%02d", d.month, d.day);
  return text;
}
std::string ReferenceNumber(std::int64_t id) {
  char text[24];
  std::snprintf(text, sizeof text, "%012lld", static_cast<long long>(id % 1000000000000LL));
  return text;
}

std::optional<std::int64_t> ParseInt(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A receipt's merchant name: at most 60 bytes of UTF-8 (5.6.12), cut at a character boundary.
std::string ReceiptName(std::string name) {
  for (char& c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
  }
  if (name.size() <= 60) return name;
  std::size_t cut = 60;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  return name.substr(0, cut);
}

}  // namespace

// The registry row and the gateway's session of the terminal a request names.
namespace gateway_internal {
struct Terminal {
  std::string number;  // hex, 12 digits
  Bytes number_bytes;
  std::string merchant_id;
  std::string merchant_name;
  std::string psam_serial;  // hex
  std::string status;       // host::kTerminalActive or kTerminalBlocked
  bool has_session = false;
  std::int64_t key_version = 0;
  std::int64_t tmk_version = 0;
  std::optional<std::string> mac_key_cryptogram;  // nullopt: never signed on, or signed off
  std::optional<std::int64_t> open_batch;
  std::optional<std::string> challenge;
  std::optional<std::int64_t> parameter_version, blacklist_version;
};

// One frame of a group.
struct Request {
  ByteView raw;
  Frame frame;
  const iso8583::TransactionSpec* spec = nullptr;
  std::optional<Verdict> invalid;  // ValidateRequest refused it
  std::optional<Terminal> terminal;
  std::optional<keys::KeyRef> mac_key;  // the key its answer is MACed with, once known
  std::uint32_t trace = 0, batch = 0;
  bool uses_database = false;
  std::optional<store::DbError> db_error;  // Process failed: rolled back, 96 or the group again
  GatewayReply reply;
};
}  // namespace gateway_internal

using gateway_internal::Request;
using gateway_internal::Terminal;

namespace gateway_internal {

// The host-wide parameters (host_parameters) and the terminal's merchant name: 5.6.12.
struct HostParameters {
  iso8583::Parameters parameters;  // without the clock
  std::int64_t blacklist_version = 1;
  std::uint32_t version = 1;  // the parameter version (the clock excluded)
};

// What every request of a group reads alike, read once per group (a load asks for the
// parameters twice: its limits and the header flags). No gateway request changes
// host_parameters or host_blacklist, so the group's first reading holds for all of it.
struct GroupCache {
  std::map<std::string, HostParameters> parameters_by_merchant_name;
};

}  // namespace gateway_internal

using gateway_internal::HostParameters;

TerminalGateway::TerminalGateway(store::Connection& connection, keys::KeyStore& key_store,
                                 GatewayOptions options)
    : connection_(connection),
      key_store_(key_store),
      options_(std::move(options)),
      host_(connection, key_store, Host::Options{options_.clock_us}),
      group_cache_(std::make_unique<gateway_internal::GroupCache>()) {}

TerminalGateway::~TerminalGateway() {
  for (const auto& [name, key] : mac_keys_) key_store_.Release(key);
}

std::int64_t TerminalGateway::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

GatewayReply TerminalGateway::Handle(ByteView frame) {
  const Bytes copy(frame.begin(), frame.end());
  auto replies = HandleGroup(std::span<const Bytes>(&copy, 1));
  return std::move(replies.front());
}

std::vector<GatewayReply> TerminalGateway::HandleGroup(std::span<const Bytes> frames) {
  const store::RetryPolicy policy;
  for (int attempt = 1;; ++attempt) {
    bool retry = false;
    auto replies = RunGroup(frames, &retry);
    if (!retry || attempt >= policy.max_attempts) return replies;
    store::BackOff(policy, attempt);
  }
}

// ---- Framing-level refusals (9.6) and answer encoding ----------------------------------------

namespace {

Bytes EncodeAnswer(const iso8583::Tpdu& request_tpdu, iso8583::Header header,
                   const Message& response) {
  const Bytes framed = iso8583::EncodeFrame({request_tpdu.Reply(), header, response});
  return Bytes(framed.begin() + 2, framed.end());  // the caller's transport adds the length
}

void LogRefusal(const Message& request, ResponseCode code, const std::string& reason) {
  auto terminal = request.GetText(41);
  auto trace = request.GetDigits(11);
  spdlog::warn("gateway: refused {} terminal={} trace={} code={} reason={}",
               iso8583::MtiText(request.mti()), terminal.ok() ? *terminal : "?",
               trace.ok() ? *trace : "?", iso8583::ResponseCodeText(code), reason);
}

}  // namespace

std::vector<GatewayReply> TerminalGateway::RunGroup(std::span<const Bytes> frames, bool* retry) {
  *group_cache_ = {};
  std::vector<Request> requests(frames.size());
  bool any_database = false;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    Request& r = requests[i];
    r.raw = frames[i];
    if (frames[i].size() > options_.max_frame || frames[i].empty()) {
      spdlog::warn("gateway: frame of {} bytes outside 1..{}: closing", frames[i].size(),
                   options_.max_frame);
      r.reply = {std::nullopt, true};
      continue;
    }
    iso8583::ParseFailure failure;
    auto parsed = iso8583::ParseFrame(frames[i], &failure);
    if (!parsed.ok()) {
      // 9.6: unreadable TPDU or MTI, or an MTI that is not a medcard request: no answer, close.
      auto refusal = iso8583::Refusal(failure.partial, ResponseCode::kFormatError);
      if (!failure.tpdu || !failure.mti_read || !refusal.ok()) {
        spdlog::warn("gateway: unanswerable frame ({}, code {}): closing", failure.reason,
                     iso8583::ResponseCodeText(failure.code));
        r.reply = {std::nullopt, true};
        continue;
      }
      LogRefusal(failure.partial, ResponseCode::kFormatError, failure.reason);
      iso8583::Header header = failure.header.value_or(iso8583::Header{});
      header.handling = 0;
      r.reply = {EncodeAnswer(*failure.tpdu, header, *refusal), false};
      continue;
    }
    r.frame = std::move(parsed).value();
    ResponseCode code = ResponseCode::kFormatError;
    Status valid = iso8583::ValidateRequest(r.frame.message, &code);
    if (!valid.ok()) {
      r.invalid = Refuse(code, valid.error().message);
    } else {
      r.spec = *iso8583::Identify(r.frame.message);
      r.trace = static_cast<std::uint32_t>(*r.frame.message.GetNumber(11));
      r.batch = iso8583::Field60::Parse(*r.frame.message.GetDigits(60))->batch_number;
    }
    r.uses_database = true;
    any_database = true;
  }
  if (!any_database) {
    std::vector<GatewayReply> replies;
    for (Request& r : requests) replies.push_back(std::move(r.reply));
    return replies;
  }

  // Every request that needs the database: one transaction, a savepoint each.
  auto fail_group = [&](const std::string& why) {
    spdlog::error("gateway: group of {} frames not committed: {}", frames.size(), why);
    std::vector<GatewayReply> replies;
    for (Request& r : requests) {
      if (!r.uses_database) {
        replies.push_back(std::move(r.reply));
        continue;
      }
      auto refusal = r.spec
                         ? iso8583::StartResponse(r.frame.message, ResponseCode::kSystemMalfunction)
                         : iso8583::Refusal(r.frame.message, ResponseCode::kSystemMalfunction);
      if (!refusal.ok()) {
        replies.push_back({std::nullopt, true});
        continue;
      }
      if (r.mac_key) {
        auto mac = key_store_.Mac(*r.mac_key, iso8583::MacInput(*refusal));
        if (mac.ok()) (void)iso8583::SetMac(*refusal, *mac);
      }
      iso8583::Header header = r.frame.header;
      header.handling = 0;
      replies.push_back({EncodeAnswer(r.frame.tpdu, header, *refusal), false});
    }
    return replies;
  };

  auto tx = store::Transaction::Begin(connection_);
  if (!tx.ok()) {
    if (tx.error().retryable()) *retry = true;
    return fail_group(tx.error().message);
  }
  for (Request& r : requests) {
    if (!r.uses_database) continue;
    auto saved = connection_.Execute(std::string("SAVEPOINT ") + kSavepoint);
    if (!saved.ok()) {
      tx->Rollback();
      if (saved.error().retryable()) *retry = true;
      return fail_group(saved.error().message);
    }
    Process(r);
    if (r.db_error) {
      const DbError error = *r.db_error;
      spdlog::error("gateway: {} terminal={} trace={}: {}", iso8583::MtiText(r.frame.message.mti()),
                    r.frame.message.GetText(41).ok() ? *r.frame.message.GetText(41) : "?", r.trace,
                    error.message);
      auto rolled = connection_.Execute(std::string("ROLLBACK TO SAVEPOINT ") + kSavepoint);
      if (error.retryable() || !rolled.ok()) {
        tx->Rollback();
        if (error.retryable() || (!rolled.ok() && rolled.error().retryable())) *retry = true;
        return fail_group(error.message);
      }
      // This request alone failed: 96, the others of the group go on.
      auto refusal = r.spec
                         ? iso8583::StartResponse(r.frame.message, ResponseCode::kSystemMalfunction)
                         : iso8583::Refusal(r.frame.message, ResponseCode::kSystemMalfunction);
      if (refusal.ok() && r.mac_key) {
        auto mac = key_store_.Mac(*r.mac_key, iso8583::MacInput(*refusal));
        if (mac.ok()) (void)iso8583::SetMac(*refusal, *mac);
      }
      iso8583::Header header = r.frame.header;
      header.handling = 0;
      r.reply = refusal.ok() ? GatewayReply{EncodeAnswer(r.frame.tpdu, header, *refusal), false}
                             : GatewayReply{std::nullopt, true};
    }
    auto released = connection_.Execute(std::string("RELEASE SAVEPOINT ") + kSavepoint);
    if (!released.ok()) {
      tx->Rollback();
      if (released.error().retryable()) *retry = true;
      return fail_group(released.error().message);
    }
  }
  auto committed = tx->Commit();
  if (!committed.ok()) {
    if (committed.error().retryable()) *retry = true;
    return fail_group(committed.error().message);
  }
  std::vector<GatewayReply> replies;
  for (Request& r : requests) replies.push_back(std::move(r.reply));
  return replies;
}

// ---- One request ------------------------------------------------------------------------------

namespace {

// Everything of one request's processing that talks to the database, the key store and Host.
class Handler {
 public:
  Handler(store::Connection& db, keys::KeyStore& key_store, Host& host,
          std::map<std::string, keys::KeyRef>& mac_keys, gateway_internal::GroupCache& group,
          std::int64_t now_us)
      : db_(db),
        keys_(key_store),
        host_(host),
        mac_keys_(mac_keys),
        group_(group),
        clock_(ClockAt(now_us)) {}

  // Step 3 (registry): nullopt with *verdict set when the terminal is unknown (97) or belongs to
  // another merchant (03).
  DbResult<std::optional<gateway_internal::Terminal>> FindTerminal(const Message& request,
                                                                   Verdict* verdict);
  // The working MAC key of the terminal's current keys (the session must hold one).
  Result<keys::KeyRef> WorkingMacKey(const gateway_internal::Terminal& terminal);
  DbResult<HostParameters> Parameters(const gateway_internal::Terminal& terminal);
  // Header flags 02 and 04 (9.7): the terminal's downloads are behind the host's versions.
  DbResult<std::uint8_t> Flags(const gateway_internal::Terminal& terminal);

  // Section 7, one function per transaction: the verdict, and on approval the fields to add.
  DbResult<Verdict> SignOn(gateway_internal::Request& r, keys::KeyRef tmk, Message& response);
  DbResult<Verdict> SignOff(gateway_internal::Request& r);
  DbResult<Verdict> Download(gateway_internal::Request& r, Message& response);
  DbResult<Verdict> Challenge(gateway_internal::Request& r, Message& response);
  DbResult<Verdict> Balance(gateway_internal::Request& r, Message& response);
  DbResult<Verdict> Load(gateway_internal::Request& r, Message& response);
  DbResult<Verdict> Confirm(gateway_internal::Request& r, Message& response);
  DbResult<Verdict> Reverse(gateway_internal::Request& r);
  DbResult<Verdict> Upload(gateway_internal::Request& r);
  DbResult<Verdict> Settle(gateway_internal::Request& r, Message& response);

  const HostClock& clock() const { return clock_; }

 private:
  DbResult<Verdict> VerifyPin(const gateway_internal::Request& r, ByteView asn);
  // A refusal for a card the terminal may not serve: a real card from a test-status terminal.
  std::optional<Verdict> TestCardRule(const gateway_internal::Request& r);

  store::Connection& db_;
  keys::KeyStore& keys_;
  Host& host_;
  std::map<std::string, keys::KeyRef>& mac_keys_;
  gateway_internal::GroupCache& group_;
  HostClock clock_;
};

DbResult<std::optional<gateway_internal::Terminal>> Handler::FindTerminal(const Message& request,
                                                                          Verdict* verdict) {
  using Terminal = gateway_internal::Terminal;
  auto id = request.GetText(41);
  auto merchant = request.GetText(42);
  if (!id.ok() || !merchant.ok()) {
    *verdict = Refuse(ResponseCode::kTerminalNotRegistered, "no terminal id or merchant id");
    return std::optional<Terminal>();
  }
  // The registry row and the session in one statement: every request after the first asks.
  auto rows = db_.Query(
      "SELECT t.terminal_number, t.merchant_id, t.psam_serial, m.name, t.status,"
      " s.terminal_number AS session_of, s.key_version, s.tmk_version, s.mac_key_cryptogram,"
      " s.open_batch, s.challenge, s.parameter_version, s.blacklist_version"
      " FROM host_terminals t JOIN host_merchants m ON m.id = t.merchant_id"
      " LEFT JOIN host_terminal_sessions s ON s.terminal_number = t.terminal_number"
      " WHERE t.terminal_id = ?",
      {*id});
  if (!rows.ok()) return rows.error();
  if (rows->empty()) {
    *verdict = Refuse(ResponseCode::kTerminalNotRegistered, "terminal id " + *id + " unknown");
    return std::optional<Terminal>();
  }
  // Merchants pad their 15-character id with spaces (4: fixed length, the sender pads).
  std::string merchant_id = *merchant;
  while (!merchant_id.empty() && merchant_id.back() == ' ') merchant_id.pop_back();
  const store::Row* row = nullptr;
  for (const store::Row& candidate : *rows) {
    if (candidate.Text(1) == merchant_id) row = &candidate;
  }
  if (row == nullptr) {
    *verdict = Refuse(ResponseCode::kInvalidMerchant,
                      "terminal " + *id + " is not registered with merchant " + merchant_id);
    return std::optional<Terminal>();
  }
  Terminal t;
  t.number = row->Text(0);
  t.number_bytes = HexToBytes(t.number);
  t.merchant_id = row->Text(1);
  t.psam_serial = row->Text(2);
  t.merchant_name = row->Text(3);
  t.status = row->Text(4);
  if (!row->IsNull("session_of")) {
    const store::Row& s = *row;
    t.has_session = true;
    t.key_version = s.Int("key_version");
    t.tmk_version = s.Int("tmk_version");
    t.mac_key_cryptogram = s.OptionalText("mac_key_cryptogram");
    t.open_batch = s.OptionalInt("open_batch");
    t.challenge = s.OptionalText("challenge");
    t.parameter_version = s.OptionalInt("parameter_version");
    t.blacklist_version = s.OptionalInt("blacklist_version");
  }
  return std::optional<Terminal>(std::move(t));
}

Result<keys::KeyRef> Handler::WorkingMacKey(const gateway_internal::Terminal& terminal) {
  const std::string cache_key = terminal.number + ":" + std::to_string(terminal.key_version) + ":" +
                                *terminal.mac_key_cryptogram;
  if (auto found = mac_keys_.find(cache_key); found != mac_keys_.end()) return found->second;
  auto tmk = keys_.Find("tmk/" + terminal.number, static_cast<std::uint8_t>(terminal.tmk_version));
  if (!tmk.ok()) return tmk.error();
  auto key = keys_.Unwrap(*tmk, HexToBytes(*terminal.mac_key_cryptogram));
  if (!key.ok()) return key.error();
  // Keys of the terminal's earlier sign-ons are of no use any more.
  for (auto it = mac_keys_.lower_bound(terminal.number + ":");
       it != mac_keys_.end() && it->first.starts_with(terminal.number + ":");) {
    keys_.Release(it->second);
    it = mac_keys_.erase(it);
  }
  mac_keys_.emplace(cache_key, *key);
  return *key;
}

DbResult<HostParameters> Handler::Parameters(const gateway_internal::Terminal& terminal) {
  auto& cached = group_.parameters_by_merchant_name;
  if (auto found = cached.find(terminal.merchant_name); found != cached.end()) {
    return found->second;
  }
  HostParameters p;
  auto rows = db_.Query("SELECT name, value FROM host_parameters");
  if (!rows.ok()) return rows.error();
  p.parameters.merchant_name = ReceiptName(terminal.merchant_name);
  for (const store::Row& row : *rows) {
    const std::string& name = row.Text(0);
    const std::string& value = row.Text(1);
    if (name == "card_key_versions") {
      std::size_t start = 0;
      while (start <= value.size()) {
        std::size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        auto v = ParseInt(std::string_view(value).substr(start, end - start));
        if (!v || *v < 1 || *v > 255)
          return InternalError("host_parameters: bad card_key_versions");
        p.parameters.card_key_versions.push_back(static_cast<std::uint8_t>(*v));
        start = end + 1;
      }
      continue;
    }
    auto v = ParseInt(value);
    if (!v || *v < 1 || *v > 0xFFFFFFFFLL) return InternalError("host_parameters: bad " + name);
    const auto u32 = static_cast<std::uint32_t>(*v);
    if (name == "purchase_limit") p.parameters.purchase_limit = u32;
    if (name == "load_limit") p.parameters.load_limit = u32;
    if (name == "ep_balance_ceiling") p.parameters.ep_balance_limit = u32;
    if (name == "upload_threshold") {
      p.parameters.upload_threshold =
          static_cast<std::uint16_t>(std::min<std::int64_t>(*v, 0xFFFF));
    }
  }
  if (!p.parameters.purchase_limit || !p.parameters.load_limit || !p.parameters.ep_balance_limit ||
      !p.parameters.upload_threshold || p.parameters.card_key_versions.empty()) {
    return InternalError("host_parameters lacks a parameter (see docs/host.md)");
  }
  // Blacklist versions on the wire (5.6.11, parameter 08): version v holds every host_blacklist
  // entry numbered below v, so the latest is the last entry's number + 1 and the empty list is 1
  // (a version is at least 1 on the wire; the host numbers its entries from 1).
  auto latest = db_.Query("SELECT MAX(version) FROM host_blacklist");
  if (!latest.ok()) return latest.error();
  p.blacklist_version = (*latest)[0].IsNull(0) ? 1 : (*latest)[0].Int(0) + 1;
  p.parameters.blacklist_version = static_cast<std::uint32_t>(p.blacklist_version);
  // The version: a digest of the whole set without the clock, so that it changes exactly when a
  // parameter does.
  auto encoded = iso8583::ParameterPart{1, false, 0, p.parameters}.Encode();
  if (!encoded.ok()) return InternalError("parameters do not encode: " + encoded.error().message);
  const Bytes digest = HexToBytes(Digest(*encoded));
  p.version = ReadU32(digest, 0);
  if (p.version == 0) p.version = 1;
  cached.emplace(terminal.merchant_name, p);
  return p;
}

DbResult<std::uint8_t> Handler::Flags(const gateway_internal::Terminal& terminal) {
  std::uint8_t flags = 0;
  auto p = Parameters(terminal);
  if (!p.ok()) return p.error();
  if (terminal.parameter_version != static_cast<std::int64_t>(p->version)) {
    flags |= iso8583::kHandleParameters;
  }
  if (terminal.blacklist_version != p->blacklist_version) flags |= iso8583::kHandleBlacklist;
  return flags;
}

std::optional<Verdict> Handler::TestCardRule(const gateway_internal::Request& r) {
  // Header status 01 serves only test cards (2). The host cannot tell a test card by its ASN; a
  // card's keys come from the key store, so with a production store every card is real.
  if (r.frame.header.terminal_status == iso8583::TerminalStatus::kTest && !keys_.test_only()) {
    return Refuse(ResponseCode::kInvalidCard, "a test-status terminal and a real card");
  }
  return std::nullopt;
}

DbResult<Verdict> Handler::SignOn(gateway_internal::Request& r, keys::KeyRef tmk,
                                  Message& response) {
  gateway_internal::Terminal& t = *r.terminal;
  const auto request = *iso8583::SignOnRequest::Parse(*r.frame.message.GetBytes(62));
  const auto field60 = *iso8583::Field60::Parse(*r.frame.message.GetDigits(60));
  const bool data_key = field60.network_code == iso8583::kNetworkSignOnWithDataKey;
  // New keys born in the store: key = D(TMK, R) for random R, so R is its cryptogram under the
  // TMK; only R is kept (7.1).
  std::vector<iso8583::KeyCryptogram> cryptograms;
  std::optional<keys::KeyRef> mac_key;
  for (int i = 0; i < (data_key ? 3 : 2); ++i) {
    Bytes random = crypto::RandomBytes(16);
    auto key = keys_.Unwrap(tmk, random);
    if (!key.ok()) return InternalError("sign-on: " + key.error().message);
    auto kcv = keys_.Kcv(*key);
    if (!kcv.ok()) {
      keys_.Release(*key);
      return InternalError("sign-on: " + kcv.error().message);
    }
    cryptograms.push_back({random, *kcv});
    if (i == 1) {
      mac_key = *key;
    } else {
      keys_.Release(*key);
    }
  }
  const std::int64_t version = t.key_version % 999 + 1;
  auto stored = db_.Execute(
      "INSERT INTO host_terminal_sessions (terminal_number, key_version, tmk_version,"
      " pin_key_cryptogram, mac_key_cryptogram, data_key_cryptogram, open_batch)"
      " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_number) DO UPDATE SET"
      " key_version = excluded.key_version, tmk_version = excluded.tmk_version,"
      " pin_key_cryptogram = excluded.pin_key_cryptogram,"
      " mac_key_cryptogram = excluded.mac_key_cryptogram,"
      " data_key_cryptogram = excluded.data_key_cryptogram, open_batch = excluded.open_batch,"
      " challenge = NULL",
      {t.number, version, static_cast<std::int64_t>(request.tmk_version),
       ToHex(cryptograms[0].cryptogram), ToHex(cryptograms[1].cryptogram),
       data_key ? std::optional<std::string>(ToHex(cryptograms[2].cryptogram)) : std::nullopt,
       static_cast<std::int64_t>(r.batch)});
  if (!stored.ok()) {
    keys_.Release(*mac_key);
    return stored.error();
  }
  auto registry =
      db_.Execute("UPDATE host_terminals SET working_key_version = ? WHERE terminal_number = ?",
                  {version, t.number});
  if (!registry.ok()) {
    keys_.Release(*mac_key);
    return registry.error();
  }
  keys_.Release(*mac_key);  // the cache unwraps it again from the stored cryptogram
  t.has_session = true;
  t.key_version = version;
  t.tmk_version = request.tmk_version;
  t.mac_key_cryptogram = ToHex(cryptograms[1].cryptogram);
  t.open_batch = r.batch;

  iso8583::WorkingKeys keys{cryptograms[0], cryptograms[1], std::nullopt};
  if (data_key) keys.data_key = cryptograms[2];
  auto security = iso8583::SecurityControl{false, static_cast<std::uint16_t>(version)}.Encode();
  auto block = keys.Encode();
  if (!security.ok() || !block.ok()) return InternalError("sign-on answer does not encode");
  if (!response.SetDigits(12, TimeDigits(clock_.time)).ok() ||
      !response.SetDigits(13, MonthDayDigits(clock_.date)).ok() ||
      !response.SetDigits(53, *security).ok() || !response.SetBytes(62, *block).ok()) {
    return InternalError("sign-on answer fields");
  }
  return Approve();
}

DbResult<Verdict> Handler::SignOff(gateway_internal::Request& r) {
  auto forgotten = db_.Execute(
      "UPDATE host_terminal_sessions SET pin_key_cryptogram = NULL, mac_key_cryptogram = NULL,"
      " data_key_cryptogram = NULL, challenge = NULL WHERE terminal_number = ?",
      {r.terminal->number});
  if (!forgotten.ok()) return forgotten.error();
  return Approve();
}

DbResult<Verdict> Handler::Download(gateway_internal::Request& r, Message& response) {
  gateway_internal::Terminal& t = *r.terminal;
  const auto request = *iso8583::DownloadRequest::Parse(*r.frame.message.GetBytes(62));
  auto p = Parameters(t);
  if (!p.ok()) return p.error();
  if (r.spec->transaction == Transaction::kParameterDownload) {
    if (request.target_version != 0 && request.target_version != p->version) {
      return Refuse(ResponseCode::kUnableToLocateRecord,
                    "parameter version " + std::to_string(request.target_version) + " is gone");
    }
    if (request.part != 0) {
      return Refuse(ResponseCode::kUnableToLocateRecord, "parameters are one part");
    }
    iso8583::ParameterPart part{p->version, false, 0, {}};
    if (request.from_version != p->version) {  // else: the terminal is up to date, no records
      part.parameters = p->parameters;
      part.parameters.clock_date = clock_.date;
      part.parameters.clock_time = clock_.time;
    }
    auto encoded = part.Encode();
    if (!encoded.ok()) return InternalError("parameter part: " + encoded.error().message);
    if (!response.SetBytes(62, *encoded).ok()) return InternalError("parameter part too long");
    auto reported = db_.Execute(
        "UPDATE host_terminal_sessions SET parameter_version = ? WHERE terminal_number = ?",
        {static_cast<std::int64_t>(p->version), t.number});
    if (!reported.ok()) return reported.error();
    t.parameter_version = p->version;
    return Approve();
  }

  // Blacklist (7.3, 5.6.11): the changes since `from`, or the full list from 0 (or from a
  // version the host never gave), in parts of 90.
  const std::int64_t latest = p->blacklist_version;
  if (request.target_version != 0 && request.target_version != latest) {
    return Refuse(ResponseCode::kUnableToLocateRecord,
                  "blacklist version " + std::to_string(request.target_version) + " is gone");
  }
  // A version the host never gave (or lost in a restore from a backup: entry numbers never
  // repeat, Host::InsertBlacklistEntry) names no state the host knows: the whole list then.
  bool full = request.from_version == 0 || request.from_version > latest;
  if (!full && request.from_version > 1) {
    auto given = db_.Query("SELECT 1 FROM host_blacklist WHERE version = ?",
                           {static_cast<std::int64_t>(request.from_version) - 1});
    if (!given.ok()) return given.error();
    full = given->empty();
  }
  auto entries = host_.BlacklistSince(full ? 0 : request.from_version - 1);
  if (!entries.ok()) return FromHost(entries.error()).error();
  // The last action per card, in the order of those last actions.
  std::map<std::string, std::pair<std::int64_t, bool>> last;
  for (const BlacklistEntry& e : *entries) last[e.asn] = {e.version, e.added};
  std::vector<std::pair<std::int64_t, iso8583::BlacklistEntry>> ordered;
  for (const auto& [asn, state] : last) {
    if (full && !state.second) continue;  // a full list holds only the cards on it
    ordered.push_back({state.first,
                       {HexToBytes(asn), state.second ? iso8583::BlacklistAction::kAdd
                                                      : iso8583::BlacklistAction::kRemove}});
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const std::size_t per_part = iso8583::kMaxBlacklistEntriesPerPart;
  const std::size_t first = std::size_t{request.part} * per_part;
  if (request.part > 0 && first >= ordered.size()) {
    return Refuse(ResponseCode::kUnableToLocateRecord,
                  "blacklist part " + std::to_string(request.part) + " does not exist");
  }
  iso8583::BlacklistPart part;
  part.version = static_cast<std::uint32_t>(latest);
  part.full = full;
  part.part = request.part;
  part.more = first + per_part < ordered.size();
  for (std::size_t i = first; i < std::min(ordered.size(), first + per_part); ++i) {
    part.entries.push_back(ordered[i].second);
  }
  auto encoded = part.Encode();
  if (!encoded.ok()) return InternalError("blacklist part: " + encoded.error().message);
  if (!response.SetBytes(62, *encoded).ok()) return InternalError("blacklist part too long");
  if (!part.more) {  // the terminal applies the download after its last part
    auto reported = db_.Execute(
        "UPDATE host_terminal_sessions SET blacklist_version = ? WHERE terminal_number = ?",
        {latest, t.number});
    if (!reported.ok()) return reported.error();
    t.blacklist_version = latest;
  }
  return Approve();
}

DbResult<Verdict> Handler::Challenge(gateway_internal::Request& r, Message& response) {
  const Bytes challenge = crypto::RandomBytes(8);
  auto stored =
      db_.Execute("UPDATE host_terminal_sessions SET challenge = ? WHERE terminal_number = ?",
                  {ToHex(challenge), r.terminal->number});
  if (!stored.ok()) return stored.error();
  if (!response.SetBytes(62, challenge).ok()) return InternalError("challenge field");
  return Approve();
}

DbResult<Verdict> Handler::Balance(gateway_internal::Request& r, Message& response) {
  if (auto refused = TestCardRule(r)) return *refused;
  const auto card = *iso8583::CardReference::Parse(*r.frame.message.GetBytes(62));
  auto status = db_.Query("SELECT status FROM host_cards WHERE asn = ?", {ToHex(card.asn)});
  if (!status.ok()) return status.error();
  if (!status->empty() && (*status)[0].Text(0) == "blacklisted") {
    return Refuse(ResponseCode::kLostCard, "card " + ToHex(card.asn) + " is blacklisted");
  }
  if (r.frame.message.Has(52)) {
    auto verified = VerifyPin(r, card.asn);
    if (!verified.ok() || verified->code != ResponseCode::kApproved) return verified;
  }
  auto balances = host_.BalanceInquiry(card.asn);
  if (!balances.ok()) return FromHost(balances.error());
  const std::int64_t available = balances->medical_account;
  auto text =
      iso8583::AvailableBalance{available < 0,
                                static_cast<std::uint64_t>(available < 0 ? -available : available)}
          .Encode();
  if (!text.ok() || !response.SetText(54, *text).ok()) return InternalError("balance field");
  return Approve();
}

// 9.8: the PIN block of field 52 under the terminal's working PIN key (unwrapped from its stored
// cryptogram for this one check) is verified inside the key store; the answer only says whether
// it matched. Logged without the PIN or the block (9.9).
DbResult<Verdict> Handler::VerifyPin(const gateway_internal::Request& r, ByteView asn) {
  const gateway_internal::Terminal& t = *r.terminal;
  auto session =
      db_.Query("SELECT pin_key_cryptogram FROM host_terminal_sessions WHERE terminal_number = ?",
                {t.number});
  if (!session.ok()) return session.error();
  if (session->empty() || (*session)[0].IsNull(0)) {
    return Refuse(ResponseCode::kSignOnRequired, "no working PIN key");
  }
  auto tmk = keys_.Find("tmk/" + t.number, static_cast<std::uint8_t>(t.tmk_version));
  if (!tmk.ok()) return InternalError(tmk.error().message);
  auto pin_key = keys_.Unwrap(*tmk, HexToBytes((*session)[0].Text(0)));
  keys_.Release(*tmk);
  if (!pin_key.ok()) return InternalError(pin_key.error().message);
  const Message& m = r.frame.message;
  auto verified = host_.VerifyOnlinePin(asn, *m.GetDigits(2), *pin_key, *m.GetBytes(52));
  keys_.Release(*pin_key);
  if (!verified.ok()) return FromHost(verified.error());
  spdlog::info("gateway: online PIN verified terminal={} trace={} card={}", t.number, r.trace,
               ToHex(asn));
  return Approve();
}

DbResult<Verdict> Handler::Load(gateway_internal::Request& r, Message& response) {
  const Message& m = r.frame.message;
  const gateway_internal::Terminal& t = *r.terminal;
  const auto card = *iso8583::LoadRequest::Parse(*m.GetBytes(62));
  const auto amount = static_cast<std::uint32_t>(*m.GetNumber(4));
  const auto type = static_cast<std::uint8_t>(*m.GetNumber(3) % 100);
  if (card.terminal_number != t.number_bytes) {
    return Refuse(ResponseCode::kTerminalNotRegistered,
                  "62 names terminal " + ToHex(card.terminal_number) + ", registered " + t.number);
  }
  // Host keys loads by terminal + trace; a trace number is reused in later batches, so the host
  // trace is this row's number, unique for ever. The row is there already when a reversal came
  // first (7.8): the load is refused for good. (One statement does both: the row is written
  // first and taken back when the load is refused.)
  auto row = db_.Query(
      "INSERT INTO host_gateway_loads (terminal_number, batch, trace, asn, amount)"
      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal_number, batch, trace) DO NOTHING"
      " RETURNING id",
      {t.number, static_cast<std::int64_t>(r.batch), static_cast<std::int64_t>(r.trace),
       ToHex(card.asn), static_cast<std::int64_t>(amount)});
  if (!row.ok()) return row.error();
  if (row->empty()) {
    return Refuse(ResponseCode::kInvalidTransaction, "the load was reversed before it arrived");
  }
  const std::int64_t id = (*row)[0].Int(0);
  auto forget = [&](DbResult<Verdict> verdict) -> DbResult<Verdict> {
    auto forgotten = db_.Execute("DELETE FROM host_gateway_loads WHERE id = ?", {id});
    if (!forgotten.ok()) return forgotten.error();
    return verdict;
  };
  if (auto refused = TestCardRule(r)) return forget(*refused);
  auto p = Parameters(t);
  if (!p.ok()) return p.error();
  const auto& versions = p->parameters.card_key_versions;
  if (std::find(versions.begin(), versions.end(), card.key_version) == versions.end()) {
    return forget(Refuse(ResponseCode::kInvalidCard,
                         "card key version " + std::to_string(card.key_version) + " not accepted"));
  }
  if (amount > *p->parameters.load_limit) {
    return forget(Refuse(ResponseCode::kExceedsLimit, "above the load limit"));
  }
  if (type == 0x02 &&
      std::uint64_t{card.balance} + amount > std::uint64_t{*p->parameters.ep_balance_limit}) {
    return forget(Refuse(ResponseCode::kExceedsLimit, "the EP would exceed its balance ceiling"));
  }
  LoadRequest load{.terminal_number = card.terminal_number,
                   .trace = static_cast<std::uint32_t>(id),
                   .asn = card.asn,
                   .type = type,
                   .amount = amount,
                   .old_balance = card.balance,
                   .online_serial = card.online_serial,
                   .key_version = card.key_version,
                   .random = card.random,
                   .mac1 = card.mac1,
                   .date = clock_.date,
                   .time = clock_.time};
  auto authorised = host_.AuthoriseLoad(load);
  if (!authorised.ok()) {
    auto verdict = FromHost(authorised.error());
    // 7.6: a MAC1 that does not verify is the card's cryptogram: 06.
    if (verdict.ok() && verdict->code == ResponseCode::kMacError)
      verdict->code = ResponseCode::kError;
    return forget(verdict);
  }
  auto set = db_.Execute("UPDATE host_gateway_loads SET host_trace = ? WHERE id = ?", {id, id});
  if (!set.ok()) return set.error();
  auto answer =
      iso8583::LoadAuthorisation{authorised->mac2, authorised->date, authorised->time}.Encode();
  if (!answer.ok() || !response.SetDigits(12, TimeDigits(authorised->time)).ok() ||
      !response.SetDigits(13, MonthDayDigits(authorised->date)).ok() ||
      !response.SetText(37, ReferenceNumber(id)).ok() || !response.SetBytes(62, *answer).ok()) {
    return InternalError("load answer fields");
  }
  return Approve();
}

DbResult<Verdict> Handler::Confirm(gateway_internal::Request& r, Message& response) {
  const Message& m = r.frame.message;
  const auto original = *iso8583::OriginalTransaction::Parse(*m.GetDigits(61));
  const auto confirmation = *iso8583::LoadConfirmation::Parse(*m.GetBytes(62));
  auto load = db_.Query(
      "SELECT id, host_trace, asn, amount FROM host_gateway_loads WHERE terminal_number = ? AND"
      " batch = ? AND trace = ? AND host_trace IS NOT NULL",
      {r.terminal->number, static_cast<std::int64_t>(original.batch_number),
       static_cast<std::int64_t>(original.trace)});
  if (!load.ok()) return load.error();
  if (load->empty()) return Refuse(ResponseCode::kUnableToLocateRecord, "no such load");
  const store::Row& row = (*load)[0];
  if (row.Int("amount") != static_cast<std::int64_t>(*m.GetNumber(4))) {
    return Refuse(ResponseCode::kOriginalAmountIncorrect, "amount differs from the load's");
  }
  if (row.Text("asn") != ToHex(confirmation.asn)) {
    return Refuse(ResponseCode::kInvalidCard, "ASN differs from the load's");
  }
  auto confirmed =
      host_.ConfirmLoad(r.terminal->number_bytes, static_cast<std::uint32_t>(row.Int("host_trace")),
                        confirmation.tac);
  if (!confirmed.ok()) {
    auto verdict = FromHost(confirmed.error());
    // 7.7: a TAC that does not verify is 06 (the load stays pending for review).
    if (verdict.ok() && verdict->code == ResponseCode::kMacError)
      verdict->code = ResponseCode::kError;
    return verdict;
  }
  if (!response.SetText(37, ReferenceNumber(row.Int("id"))).ok()) {
    return InternalError("reference field");
  }
  return Approve();
}

DbResult<Verdict> Handler::Reverse(gateway_internal::Request& r) {
  const Message& m = r.frame.message;
  const auto original = *iso8583::OriginalTransaction::Parse(*m.GetDigits(61));
  const auto card = *iso8583::CardReference::Parse(*m.GetBytes(62));
  const auto amount = static_cast<std::int64_t>(*m.GetNumber(4));
  auto load = db_.Query(
      "SELECT host_trace, asn, amount FROM host_gateway_loads WHERE terminal_number = ? AND"
      " batch = ? AND trace = ?",
      {r.terminal->number, static_cast<std::int64_t>(original.batch_number),
       static_cast<std::int64_t>(original.trace)});
  if (!load.ok()) return load.error();
  if (load->empty()) {
    // Never received: remember the reversal so that the load, should it still come, gets 12.
    auto recorded = db_.Execute(
        "INSERT INTO host_gateway_loads (terminal_number, batch, trace, asn, amount)"
        " VALUES (?, ?, ?, ?, ?)",
        {r.terminal->number, static_cast<std::int64_t>(original.batch_number),
         static_cast<std::int64_t>(original.trace), ToHex(card.asn), amount});
    if (!recorded.ok()) return recorded.error();
    return Approve();
  }
  const store::Row& row = (*load)[0];
  if (row.IsNull("host_trace")) return Approve();  // reversed before, never received
  if (row.Int("amount") != amount) {
    return Refuse(ResponseCode::kOriginalAmountIncorrect, "amount differs from the load's");
  }
  if (row.Text("asn") != ToHex(card.asn)) {
    return Refuse(ResponseCode::kInvalidCard, "ASN differs from the load's");
  }
  auto reversed = host_.ReverseLoad(r.terminal->number_bytes,
                                    static_cast<std::uint32_t>(row.Int("host_trace")));
  if (!reversed.ok()) return FromHost(reversed.error());
  return Approve();
}

DbResult<Verdict> Handler::Upload(gateway_internal::Request& r) {
  const auto batch = *iso8583::PurchaseBatch::Parse(*r.frame.message.GetBytes(62));
  std::vector<PurchaseUpload> uploads;
  for (const iso8583::OfflinePurchase& p : batch.purchases) {
    auto noted = db_.Execute(
        "INSERT INTO host_gateway_uploads (terminal_number, batch, asn, offline_serial, type,"
        " amount) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        {r.terminal->number, static_cast<std::int64_t>(r.batch), ToHex(p.asn),
         static_cast<std::int64_t>(p.card_offline_serial), static_cast<std::int64_t>(p.type),
         static_cast<std::int64_t>(p.amount)});
    if (!noted.ok()) return noted.error();
    uploads.push_back({.asn = p.asn,
                       .type = p.type,
                       .amount = p.amount,
                       .balance_before = p.balance_before,
                       .balance_after = p.balance_after,
                       .card_offline_serial = p.card_offline_serial,
                       .terminal_serial = p.terminal_serial,
                       .terminal_number = p.terminal_number,
                       .date = p.date,
                       .time = p.time,
                       .key_version = p.key_version,
                       .tac = p.tac});
  }
  // 7.9: stored once each; what clearing decides (suspense included) is the host's business.
  auto cleared = host_.ClearPurchases(uploads);
  if (!cleared.ok()) {
    auto verdict = FromHost(cleared.error());
    if (!verdict.ok()) return verdict;
  }
  return Approve();
}

DbResult<Verdict> Handler::Settle(gateway_internal::Request& r, Message& response) {
  const Message& m = r.frame.message;
  gateway_internal::Terminal& t = *r.terminal;
  const auto totals = *iso8583::SamTotals::Parse(*m.GetBytes(62));
  const auto reported = *iso8583::BatchTotals::Parse(*m.GetDigits(48));
  // 7.10: the last challenge given, unused; this settlement consumes it whatever it decides.
  if (!t.challenge || *t.challenge != ToHex(totals.challenge)) {
    return Refuse(ResponseCode::kDuplicateTransmission, "not the terminal's open challenge");
  }
  auto consumed = db_.Execute(
      "UPDATE host_terminal_sessions SET challenge = NULL WHERE terminal_number = ?", {t.number});
  if (!consumed.ok()) return consumed.error();
  t.challenge.reset();
  if (ToHex(totals.psam_serial) != t.psam_serial) {
    return Refuse(ResponseCode::kTerminalNotRegistered, "not the terminal's PSAM");
  }
  const Bytes answer = totals.TotalsAnswer();
  Status signed_by_psam = keys::VerifySamTotals(keys_, totals.psam_serial, totals.challenge, answer,
                                                totals.key_version);
  if (!signed_by_psam.ok()) return Refuse(ResponseCode::kError, signed_by_psam.error().message);

  auto uploaded = db_.Query(
      "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM host_gateway_uploads"
      " WHERE terminal_number = ? AND batch = ?",
      {t.number, static_cast<std::int64_t>(r.batch)});
  if (!uploaded.ok()) return uploaded.error();
  auto loads = db_.Query(
      "SELECT COUNT(*), COALESCE(SUM(l.amount), 0) FROM host_gateway_loads g JOIN host_loads l"
      " ON l.terminal_number = g.terminal_number AND l.trace = g.host_trace"
      " WHERE g.terminal_number = ? AND g.batch = ? AND l.state = 'completed'",
      {t.number, static_cast<std::int64_t>(r.batch)});
  if (!loads.ok()) return loads.error();
  const std::int64_t purchase_count = (*uploaded)[0].Int(0),
                     purchase_amount = (*uploaded)[0].Int(1);
  const std::int64_t load_count = (*loads)[0].Int(0), load_amount = (*loads)[0].Int(1);
  std::string disagreement;
  if (totals.count != purchase_count ||
      static_cast<std::int64_t>(totals.amount) != purchase_amount) {
    disagreement = "PSAM totals " + std::to_string(totals.count) + "/" +
                   std::to_string(totals.amount) + ", uploaded for the batch " +
                   std::to_string(purchase_count) + "/" + std::to_string(purchase_amount);
  } else if (reported.purchase_count != purchase_count ||
             static_cast<std::int64_t>(reported.purchase_amount) != purchase_amount ||
             reported.load_count != load_count ||
             static_cast<std::int64_t>(reported.load_amount) != load_amount) {
    disagreement = "48 says purchases " + std::to_string(reported.purchase_count) + "/" +
                   std::to_string(reported.purchase_amount) + " loads " +
                   std::to_string(reported.load_count) + "/" +
                   std::to_string(reported.load_amount) + ", host " +
                   std::to_string(purchase_count) + "/" + std::to_string(purchase_amount) +
                   " loads " + std::to_string(load_count) + "/" + std::to_string(load_amount);
  }
  if (!disagreement.empty()) {
    // Recorded as the day's settlement exception, as Host::Settle records its own mismatch (a
    // refusal keeps what the request wrote). Only a failing database makes it more than a 95.
    auto recorded =
        host_.RecordSettlementException(t.number_bytes, clock_.date, totals.challenge, answer);
    if (!recorded.ok()) {
      auto failed = FromHost(recorded.error());
      if (!failed.ok()) return failed;
    }
    return Refuse(ResponseCode::kReconciliationError, disagreement);
  }
  auto acknowledged = host_.Settle(t.number_bytes, clock_.date, totals.challenge, answer);
  if (!acknowledged.ok()) return FromHost(acknowledged.error());
  if (!response.SetBytes(62, *acknowledged).ok()) return InternalError("settlement answer");
  // The batch is closed: the terminal opens the next (9.3); the retry cache keeps only the
  // settled batch's answers (a retry of this settlement still finds its answer).
  const std::int64_t next = r.batch % 999999 + 1;
  auto opened =
      db_.Execute("UPDATE host_terminal_sessions SET open_batch = ? WHERE terminal_number = ?",
                  {next, t.number});
  if (!opened.ok()) return opened.error();
  auto pruned =
      db_.Execute("DELETE FROM host_gateway_answers WHERE terminal_number = ? AND batch <> ?",
                  {t.number, static_cast<std::int64_t>(r.batch)});
  if (!pruned.ok()) return pruned.error();
  t.open_batch = next;
  return Approve();
}

}  // namespace

void TerminalGateway::Process(Request& r) {
  const Message& m = r.frame.message;
  iso8583::Header header = r.frame.header;
  header.handling = 0;
  // An answer, MACed with r.mac_key when set.
  auto answer = [&](Message response, std::uint8_t flags) -> Result<Bytes> {
    if (r.mac_key) {
      auto mac = key_store_.Mac(*r.mac_key, iso8583::MacInput(response));
      if (!mac.ok()) return mac.error();
      Status set = iso8583::SetMac(response, *mac);
      if (!set.ok()) return set.error();
    }
    iso8583::Header h = header;
    h.handling = flags;
    return EncodeAnswer(r.frame.tpdu, h, response);
  };
  auto db_failed = [&](const DbError& error) { r.db_error = error; };
  // A refusal at steps 3..6 (nothing stored): logged, MACed when r.mac_key is set.
  auto refuse = [&](ResponseCode code, const std::string& reason, std::uint8_t flags) {
    LogRefusal(m, code, reason);
    auto refusal = r.spec ? iso8583::StartResponse(m, code) : iso8583::Refusal(m, code);
    auto bytes = refusal.ok() ? answer(*refusal, flags) : Result<Bytes>(refusal.error());
    r.reply = bytes.ok() ? GatewayReply{*bytes, false} : GatewayReply{std::nullopt, true};
  };

  Handler handler(connection_, key_store_, host_, mac_keys_, *group_cache_, Now());
  // Step 3: the registry.
  Verdict unknown;
  auto terminal = handler.FindTerminal(m, &unknown);
  if (!terminal.ok()) return db_failed(terminal.error());
  if (r.invalid) {
    // 9.6: ValidateRequest's code, MACed when the terminal is known and has working keys.
    if (*terminal && (*terminal)->mac_key_cryptogram) {
      auto key = handler.WorkingMacKey(**terminal);
      if (key.ok()) r.mac_key = *key;
    }
    return refuse(r.invalid->code, r.invalid->reason, 0);
  }
  if (!*terminal) return refuse(unknown.code, unknown.reason, 0);
  // Step 3 (9.1): a terminal the bank blocked is refused as an unregistered one, sign-on too.
  if ((*terminal)->status == kTerminalBlocked) {
    return refuse(ResponseCode::kTerminalNotRegistered, "terminal blocked", 0);
  }
  r.terminal = std::move(**terminal);
  Terminal& t = *r.terminal;

  // Steps 4 and 5: the key and the MAC.
  const bool sign_on = r.spec->transaction == Transaction::kSignOn;
  std::optional<keys::KeyRef> tmk;
  if (sign_on) {
    const auto request = *iso8583::SignOnRequest::Parse(*m.GetBytes(62));
    if (request.terminal_number != t.number_bytes) {
      return refuse(
          ResponseCode::kTerminalNotRegistered,
          "62 names terminal " + ToHex(request.terminal_number) + ", registered " + t.number, 0);
    }
    auto found = key_store_.Find("tmk/" + t.number, request.tmk_version);
    if (!found.ok()) {
      return refuse(ResponseCode::kMacError, found.error().message, iso8583::kHandleSignOn);
    }
    tmk = *found;
  } else {
    if (!t.mac_key_cryptogram) {
      return refuse(ResponseCode::kSignOnRequired, "no working keys", iso8583::kHandleSignOn);
    }
    const auto security = *iso8583::SecurityControl::Parse(*m.GetDigits(53));
    if (security.key_version != t.key_version) {
      return refuse(ResponseCode::kMacError,
                    "key version " + std::to_string(security.key_version) + ", current " +
                        std::to_string(t.key_version),
                    iso8583::kHandleSignOn);
    }
  }
  keys::KeyRef key;
  if (tmk) {
    key = *tmk;
  } else {
    auto working = handler.WorkingMacKey(t);
    if (!working.ok()) return db_failed(InternalError(working.error().message));
    key = *working;
  }
  auto mac = iso8583::MacOf(m);
  Status verified =
      mac.ok() ? key_store_.VerifyMac(key, iso8583::MacInput(m), *mac) : Status(mac.error());
  if (!verified.ok()) {
    return refuse(ResponseCode::kMacError, verified.error().message, iso8583::kHandleSignOn);
  }
  r.mac_key = key;

  // Step 6: the retry cache (9.4), then the open batch.
  const std::string digest = Digest(r.raw);
  auto cached = connection_.Query(
      "SELECT request_digest, answer FROM host_gateway_answers WHERE terminal_number = ? AND"
      " batch = ? AND trace = ?",
      {t.number, static_cast<std::int64_t>(r.batch), static_cast<std::int64_t>(r.trace)});
  if (!cached.ok()) return db_failed(cached.error());
  if (!cached->empty()) {
    if ((*cached)[0].Text(0) == digest) {
      r.reply = {HexToBytes((*cached)[0].Text(1)), false};  // a retry: the first answer again
      return;
    }
    auto flags = handler.Flags(t);
    if (!flags.ok()) return db_failed(flags.error());
    return refuse(ResponseCode::kDuplicateTransmission, "trace reused with other content", *flags);
  }
  if (!sign_on && t.open_batch && *t.open_batch != r.batch) {
    auto flags = handler.Flags(t);
    if (!flags.ok()) return db_failed(flags.error());
    return refuse(ResponseCode::kDuplicateTransmission,
                  "batch " + std::to_string(r.batch) + " is not the open batch " +
                      std::to_string(*t.open_batch),
                  *flags);
  }
  // Step 7: the transaction, and its answer stored with its effects (this savepoint).
  auto started = iso8583::StartResponse(m, ResponseCode::kApproved);
  if (!started.ok()) return db_failed(InternalError(started.error().message));
  Message response = *started;
  DbResult<Verdict> verdict = Approve();
  switch (r.spec->transaction) {
    case Transaction::kSignOn:
      verdict = handler.SignOn(r, *tmk, response);
      break;
    case Transaction::kSignOff:
      verdict = handler.SignOff(r);
      break;
    case Transaction::kEchoTest:
      if (!response.SetDigits(12, TimeDigits(handler.clock().time)).ok() ||
          !response.SetDigits(13, MonthDayDigits(handler.clock().date)).ok()) {
        verdict = InternalError("echo answer fields");
      }
      break;
    case Transaction::kParameterDownload:
    case Transaction::kBlacklistDownload:
      verdict = handler.Download(r, response);
      break;
    case Transaction::kSettlementChallenge:
      verdict = handler.Challenge(r, response);
      break;
    case Transaction::kBalanceInquiry:
      verdict = handler.Balance(r, response);
      break;
    case Transaction::kLoad:
      verdict = handler.Load(r, response);
      break;
    case Transaction::kLoadConfirmation:
      verdict = handler.Confirm(r, response);
      break;
    case Transaction::kLoadReversal:
      verdict = handler.Reverse(r);
      break;
    case Transaction::kBatchUpload:
      verdict = handler.Upload(r);
      break;
    case Transaction::kSettlement:
      verdict = handler.Settle(r, response);
      break;
  }
  if (!verdict.ok()) return db_failed(verdict.error());
  if (verdict->code != ResponseCode::kApproved) {
    LogRefusal(m, verdict->code, verdict->reason);
    auto refusal = iso8583::StartResponse(m, verdict->code);
    if (!refusal.ok()) return db_failed(InternalError(refusal.error().message));
    response = *refusal;
  }
  auto flags = handler.Flags(t);
  if (!flags.ok()) return db_failed(flags.error());
  auto bytes = answer(response, *flags);
  if (!bytes.ok()) return db_failed(InternalError(bytes.error().message));
  auto stored = connection_.Execute(
      "INSERT INTO host_gateway_answers (terminal_number, batch, trace, request_digest, answer,"
      " created_at_us) VALUES (?, ?, ?, ?, ?, ?)",
      {t.number, static_cast<std::int64_t>(r.batch), static_cast<std::int64_t>(r.trace), digest,
       ToHex(*bytes), Now()});
  if (!stored.ok()) return db_failed(stored.error());
  r.reply = {*bytes, false};
}

}  // namespace medcard::host
