// The terminal's line to the bank host: the client side of docs/protocol.md. One request at a
// time (section 1); every request is MACed (section 6) with keys held in a keys::KeyStore, every
// answer is checked against its request (iso8583::ValidateResponse) and its MAC verified — an
// answer that fails either is treated as no answer (9.6). Retries resend the very same bytes
// (9.4); trace and batch numbers (9.3) live in a LinkState the caller persists.
//
// Used by the POS terminal, the load tests and the benchmarks. Synchronous and single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "keys/key_store.h"
#include "terminal/purse.h"

namespace medcard::terminal {

// ---- Transport --------------------------------------------------------------------------------
// Carries one frame (TPDU ‖ header ‖ message, without the 2-byte length) to the host and returns
// its answer (also without the length). An error means no answer: timeout, broken connection.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<Bytes> Exchange(ByteView frame) = 0;
  // Drops the connection (after a timeout or an unusable answer); the next Exchange reconnects.
  virtual void Reset() = 0;
};

// The host in the same process (tests, load tests, benchmarks): `handle` answers a frame the way
// host::TerminalGateway::Handle does — the answer frame, or nullopt when the host closes the
// connection without answering (which the link takes as no answer).
class InProcessTransport final : public Transport {
 public:
  using Handler = std::function<std::optional<Bytes>(ByteView frame)>;
  explicit InProcessTransport(Handler handle) : handle_(std::move(handle)) {}
  Result<Bytes> Exchange(ByteView frame) override;
  void Reset() override {}

 private:
  Handler handle_;
};

struct TlsConfig {
  std::string ca_file;      // PEM: the CA(s) the host's certificate must chain to
  std::string server_name;  // checked against the certificate; also sent as SNI
};

struct TcpConfig {
  std::string host;
  std::uint16_t port = 0;
  std::optional<TlsConfig> tls;
  std::chrono::milliseconds timeout{60'000};  // connect, and each request until its answer
  std::size_t max_frame_size = iso8583::kDefaultMaxFrameSize;
};

// TCP (optionally TLS 1.2+) with the 2-byte length framing (docs/protocol.md 1, 2). Connects on
// the first Exchange and after a Reset.
Result<std::unique_ptr<Transport>> MakeTcpTransport(const TcpConfig& config);

// ---- Link configuration and state -------------------------------------------------------------
struct HostLinkConfig {
  std::uint16_t host_nii = 0x0003;      // TPDU destination (protocol.md 2)
  std::uint16_t terminal_nii = 0x0000;  // TPDU source
  std::string terminal_id;              // field 41, 8 characters
  std::string merchant_id;              // field 42, 15 characters
  Bytes terminal_number;                // 6 bytes, the PSAM's; names the TMK "tmk/<hex>"
  std::uint8_t tmk_version = 1;
  bool test_mode = false;      // header terminal status 01: the host serves only test cards
  bool with_data_key = false;  // sign on with 60.3 004 (PIN + MAC + data keys) instead of 003
  // 9.4: after a timeout, a broken connection or an unusable answer, the same bytes are sent
  // again up to max_retries times, waiting retry_backoff, then twice as long each time.
  int max_retries = 2;
  std::chrono::milliseconds retry_backoff{1'000};
  // How the link waits between retries (tests replace it).
  std::function<void(std::chrono::milliseconds)> sleep;
};

// Trace and batch numbers (docs/protocol.md 9.3). The link calls on_change with the new state
// before it sends a request that uses it: the caller saves it (the POS journal) and passes it
// back at start-up, so a trace is never reused within a batch.
struct LinkState {
  std::uint32_t last_trace = 0;    // 0: none used yet; the next is 000001
  std::uint32_t batch_number = 1;  // the open batch, 000001..999999
  bool operator==(const LinkState&) const = default;
};

// ---- Answers ----------------------------------------------------------------------------------
// What every answer says. A Result error from a HostLink method means there was no usable answer
// (after the retries) or the request could not be made; a Reply with a code other than 00 is the
// host's refusal, and the typed payload of the derived reply is meaningful only when approved().
struct Reply {
  iso8583::ResponseCode code = iso8583::ResponseCode::kSystemMalfunction;
  std::uint8_t handling = 0;  // header byte 4: iso8583::kHandleSignOn | ...
  std::uint32_t trace = 0;    // the request's trace number
  bool authenticated = true;  // false only for an unMACed refusal of a load (protocol.md 6)
  bool approved() const { return code == iso8583::ResponseCode::kApproved; }
  // Header flag 01, or A0 / 77: sign on before anything else (9.2).
  bool sign_on_required() const;
  bool parameters_due() const { return (handling & iso8583::kHandleParameters) != 0; }
  bool blacklist_due() const { return (handling & iso8583::kHandleBlacklist) != 0; }
};

struct SignOnReply : Reply {
  std::uint16_t key_version = 0;  // the working keys now installed
};

struct EchoReply : Reply {
  std::optional<std::string> host_time;  // "MMDDhhmmss" from fields 13 and 12, when sent
};

struct ParametersReply : Reply {
  std::uint32_t version = 0;
  bool up_to_date = false;         // the terminal already holds `version`: nothing to apply
  iso8583::Parameters parameters;  // every tag (CheckComplete) unless up_to_date
};

struct BlacklistReply : Reply {
  std::uint32_t version = 0;
  bool full = false;  // replace the terminal's list with `entries`; else apply them as changes
  std::vector<iso8583::BlacklistEntry> entries;  // all parts, in order
};

struct ChallengeReply : Reply {
  Bytes challenge;  // 8
};

struct BalanceReply : Reply {
  iso8583::AvailableBalance balance;  // the medical account (field 54)
};

// What a confirmation or reversal needs to name its load (field 61) — the caller journals it.
struct LoadReference {
  std::uint32_t batch_number = 0;
  std::uint32_t trace = 0;
  int month = 0, day = 0;  // field 13 of the load's answer; 0/0 when none came
  std::uint8_t type = 0;   // 01 ED, 02 EP
  std::uint32_t amount = 0;
  Bytes asn;
  bool operator==(const LoadReference&) const = default;
};

struct LoadReply : Reply {
  LoadReference load;                        // always filled, also when refused or unanswered
  iso8583::LoadAuthorisation authorisation;  // MAC2, host date and time (5.6.4)
  std::string reference;                     // field 37
};

struct ConfirmReply : Reply {
  std::string reference;  // field 37
};

struct UploadReply : Reply {
  std::size_t uploaded = 0;  // purchases the host acknowledged (00), in order
};

struct SettleReply : Reply {
  Bytes clear_totals_mac;  // 4, for CLEAR SAM TOTALS
};

// The PSAM's part of a settlement (5.6.8): its GET SAM TOTALS answer for the host's challenge.
struct PsamTotals {
  Bytes psam_serial;  // 10
  std::uint8_t key_version = 1;
  Bytes challenge;      // 8, from SettlementChallenge
  Bytes totals_answer;  // 22: count ‖ amount ‖ first ‖ last ‖ MAC
};

// ---- The link ---------------------------------------------------------------------------------
class HostLink {
 public:
  // The TMK "tmk/<terminal number hex>" version config.tmk_version must be in key_store.
  HostLink(HostLinkConfig config, Transport& transport, keys::KeyStore& key_store,
           LinkState state = {}, std::function<void(const LinkState&)> on_change = {});
  ~HostLink();
  HostLink(const HostLink&) = delete;
  HostLink& operator=(const HostLink&) = delete;

  const LinkState& state() const { return state_; }
  bool signed_on() const { return working_.has_value(); }
  std::uint16_t key_version() const { return working_ ? working_->version : 0; }
  // After a method failed for want of a usable answer: the last attempt's answer came with a
  // wrong MAC (an unanswered load is then reversed with A0 rather than 98, protocol.md 9.5).
  bool last_answer_mac_wrong() const { return last_answer_mac_wrong_; }

  // 7.1: new working keys, unwrapped with the TMK and installed only when every KCV is right.
  Result<SignOnReply> SignOn(std::string_view operator_number = {});
  // 7.2. An approved sign-off drops the working keys.
  Result<Reply> SignOff();
  Result<EchoReply> EchoTest();
  // 7.3: every part, then the whole set at once. from_version: the version held (0: none).
  Result<ParametersReply> DownloadParameters(std::uint32_t from_version);
  Result<BlacklistReply> DownloadBlacklist(std::uint32_t from_version);
  // 7.4.
  Result<ChallengeReply> SettlementChallenge();
  // 7.5. With a PIN only for a card with a PAN (5.7); the PIN block goes under the PIN key.
  Result<BalanceReply> BalanceInquiry(ByteView asn, std::optional<std::string> pin = {});
  // 7.6.
  Result<LoadReply> AuthoriseLoad(const LoadInitialisation& init);
  // 7.7, with the TAC CREDIT FOR LOAD answered.
  Result<ConfirmReply> ConfirmLoad(const LoadReference& load, ByteView tac);
  // 7.8. reason: 98 no answer, A0 the answer's MAC was wrong, 06 the card was not credited.
  Result<Reply> ReverseLoad(const LoadReference& load, iso8583::ResponseCode reason);
  // 7.9: 16 purchases per message, in order, stopping at the first message not approved.
  Result<UploadReply> UploadPurchases(std::span<const PurchaseResult> purchases);
  // 7.10. When approved, the next batch is opened (state saved) and the reply carries the MAC
  // for CLEAR SAM TOTALS.
  Result<SettleReply> Settle(const iso8583::BatchTotals& totals, const PsamTotals& psam);

 private:
  struct WorkingKeys {
    keys::KeyRef pin, mac;
    std::optional<keys::KeyRef> data;
    std::uint16_t version = 0;
  };
  struct Answer {
    iso8583::Header header;
    iso8583::Message message;
    bool authenticated = true;
  };

  iso8583::Message Start(iso8583::Transaction transaction, std::uint16_t network_code = 0);
  Status AddSecurity(iso8583::Message& message, bool pin_block) const;
  Result<keys::KeyRef> Tmk();
  // Signs, frames and sends `request`; retries as 9.4 says; returns the first usable answer.
  Result<Answer> Exchange(iso8583::Message& request);
  Status CheckAnswer(ByteView frame, const iso8583::Message& request, keys::KeyRef mac_key,
                     Answer& answer, bool& mac_wrong) const;
  Reply ReplyOf(const Answer& answer, const iso8583::Message& request) const;
  void ReleaseWorkingKeys();
  void Save();

  HostLinkConfig config_;
  Transport& transport_;
  keys::KeyStore& key_store_;
  LinkState state_;
  std::function<void(const LinkState&)> on_change_;
  std::optional<WorkingKeys> working_;
  bool last_answer_mac_wrong_ = false;
};

// terminal::Load's issuer through the host: Approve sends the load (0200) and hands the card the
// host's MAC2, date and time; Confirm sends the card's TAC (0220). A load without a usable answer
// is reversed at once (0400, 98 or A0: the card never got MAC2). A confirmation without a usable
// answer makes terminal::Load fail although the card was credited: the caller keeps last_load()
// and last_tac() in its journal and sends ConfirmLoad again until it is answered (9.5 step 4).
class HostLoadAuthoriser final : public LoadAuthoriser {
 public:
  explicit HostLoadAuthoriser(HostLink& link) : link_(link) {}
  Result<Bytes> Authorise(const LoadInitialisation& init) override;
  Result<LoadApproval> Approve(const LoadInitialisation& init) override;
  Status Confirm(const LoadInitialisation& init, ByteView tac) override;

  const std::optional<LoadReply>& last_load() const { return last_load_; }
  const std::optional<ConfirmReply>& last_confirmation() const { return last_confirmation_; }
  const std::optional<Bytes>& last_tac() const { return last_tac_; }

 private:
  HostLink& link_;
  std::optional<LoadReply> last_load_;
  std::optional<ConfirmReply> last_confirmation_;
  std::optional<Bytes> last_tac_;
};

}  // namespace medcard::terminal
