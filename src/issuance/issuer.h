// The production issuer: card and PSAM personalisation with every key inside a keys::KeyStore
// (software store or HSM), the issuance log, ASN allocation and the PIN mailer
// (docs/issuance.md).
//
//   KeyStoreCardWrapper / KeyStorePsamWrapper   card::KeyWrapper / psam::KeyWrapper over the
//                        store: keys leave it only as cryptograms and MACs under the device's
//                        transport key. The issuer never holds a clear key.
//   ManufactureBlankCard / ManufactureBlankPsam  the chip factory (virtual devices only): the one
//                        place a clear key exists, because the emulated chip must be given its
//                        transport key the way a real factory injects it.
//   IssuanceLog          append-only JSON lines, fsync'd; ASNs and PSAM serials reserved there
//                        before personalisation, so a number is never used twice.
//   Issuer               probes a device in a reader, reserves its number, personalises it,
//                        logs the outcome.
//   KeyStoreIssuerHost   the issuer's side of loads, purchase TACs and PSAM totals over
//                        keys/pboc.h (what the bank host does; tests and benchmarks use it).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "card/card.h"
#include "card/personalize.h"
#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "issuance/holder.h"
#include "keys/key_store.h"
#include "nvm/nvm.h"
#include "psam/personalize.h"
#include "psam/psam.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard::issuance {

// ---- Key store wrappers ---------------------------------------------------------------------

// The key store role a layout key name is diversified from: "ssse_maintenance" → "maintenance",
// "internal_auth" → "card_master", an issuer role → itself. Error "unknown role ..." otherwise.
Result<std::string> StoreRoleForLayoutKey(std::string_view layout_key_name);

// The latest stored version of `name`; error naming the store when it holds no such key.
Result<std::uint8_t> LatestVersion(keys::KeyStore& store, std::string_view name);

// The key version a new card gets: the latest version of every role its layout uses, which must
// be the same for all of them (a card's INITIALIZE answers one key version, and the host derives
// every card key from that version). Error naming the roles when a rotation is half done.
Result<std::uint8_t> CardKeyVersion(keys::KeyStore& store, const card::CardLayout& layout);

// card::KeyWrapper over a KeyStore. The card's transport key = Diversify(transport master
// (latest version), chip serial) lives in the store as a transient key, released on destruction.
class KeyStoreCardWrapper final : public card::KeyWrapper {
 public:
  static Result<std::unique_ptr<KeyStoreCardWrapper>> Create(keys::KeyStore& store,
                                                             ByteView chip_serial, ByteView asn);
  ~KeyStoreCardWrapper() override;
  KeyStoreCardWrapper(const KeyStoreCardWrapper&) = delete;
  KeyStoreCardWrapper& operator=(const KeyStoreCardWrapper&) = delete;

  // store.Wrap(card transport key, Diversify(master `key.master_key` v`key.version`, ASN)).
  Result<Bytes> WrapKey(const card::KeySpec& key) override;
  // store.Encrypt(card transport key, len ‖ packed PIN ‖ 80 00..) (docs/card-commands.md SET PIN).
  Result<Bytes> WrapPin(std::string_view pin) override;
  Result<Bytes> TransportMac(ByteView data, ByteView iv) override;

 private:
  KeyStoreCardWrapper(keys::KeyStore& store, keys::KeyRef transport, Bytes asn)
      : store_(store), transport_(transport), asn_(std::move(asn)) {}
  keys::KeyStore& store_;
  keys::KeyRef transport_;
  Bytes asn_;
};

// psam::KeyWrapper over a KeyStore. Labels are store roles: "purchase", "maintenance" and
// "visit_record" travel as the master key itself (version = the header's), "settlement" as
// Diversify(settlement master, PSAM serial's rightmost 8 bytes).
class KeyStorePsamWrapper final : public psam::KeyWrapper {
 public:
  static Result<std::unique_ptr<KeyStorePsamWrapper>> Create(keys::KeyStore& store,
                                                             ByteView chip_serial,
                                                             ByteView psam_serial);
  ~KeyStorePsamWrapper() override;
  KeyStorePsamWrapper(const KeyStorePsamWrapper&) = delete;
  KeyStorePsamWrapper& operator=(const KeyStorePsamWrapper&) = delete;

  Result<Bytes> WrapKey(const psam::KeyHeader& header, std::string_view label,
                        ByteView challenge) override;
  Result<Bytes> EndPersonalisationMac(ByteView challenge) override;

 private:
  KeyStorePsamWrapper(keys::KeyStore& store, keys::KeyRef transport, Bytes psam_serial)
      : store_(store), transport_(transport), psam_serial_(std::move(psam_serial)) {}
  keys::KeyStore& store_;
  keys::KeyRef transport_;
  Bytes psam_serial_;
};

// ---- The chip factory (virtual devices) ---------------------------------------------------

// The device transport key a chip factory injects: Diversify(transport master, chip serial),
// computed as the store's Encrypt of D ‖ ~D under the transport master. Returned in clear for
// Card/Psam::Manufacture only; the caller wipes it.
Result<Bytes> ChipFactoryTransportKey(keys::KeyStore& store, ByteView chip_serial);
// A blank card (lifecycle personalisation, MF only) with that transport key.
Result<std::unique_ptr<card::Card>> ManufactureBlankCard(keys::KeyStore& store,
                                                         std::unique_ptr<nvm::Medium> medium,
                                                         ByteView chip_serial,
                                                         card::CardOptions options = {});
Result<std::unique_ptr<psam::Psam>> ManufactureBlankPsam(keys::KeyStore& store,
                                                         std::unique_ptr<nvm::Medium> medium,
                                                         ByteView chip_serial);

// ---- Configuration and the issuance log ----------------------------------------------------

// issuance.json in the log directory (all fields optional; unknown fields are errors):
// {"asn_prefix": "HEX", "psam_serial_prefix": "HEX", "issuer_id": "16 HEX", "validity_years": N}
struct IssuanceConfig {
  std::string asn_prefix;          // upper-case hex, 1..16 digits; empty: none configured
  std::string psam_serial_prefix;  // likewise
  Bytes issuer_id = HexToBytes("4D45444341524431");  // "MEDCARD1"
  int validity_years = 10;                           // 1..30
  static constexpr char kFileName[] = "issuance.json";
  // The defaults when the file does not exist.
  static Result<IssuanceConfig> Load(const std::string& dir);
  static Result<IssuanceConfig> Parse(std::string_view json_text);
};

enum class DeviceKind { kCard, kPsam };
const char* DeviceKindName(DeviceKind kind);  // "card" / "psam"

// The log of one personalisation station: DIR/issuance-log.jsonl, one JSON object per line,
// appended and fsync'd, never rewritten (docs/issuance.md, "The issuance log"). Every
// operation takes an exclusive flock on the file, so stations (processes) sharing the
// directory serialise. Lines a crash tore (no newline, not JSON) are skipped and counted.
class IssuanceLog {
 public:
  static constexpr char kFileName[] = "issuance-log.jsonl";
  // Creates DIR (0700) and the log (0600) when missing.
  static Result<std::unique_ptr<IssuanceLog>> Open(const std::string& dir);
  ~IssuanceLog();
  IssuanceLog(const IssuanceLog&) = delete;
  IssuanceLog& operator=(const IssuanceLog&) = delete;

  const std::string& path() const { return path_; }

  // Reserves a number before personalisation: `serial` itself when given (error when any
  // record already has it, or another one has the same rightmost 8 bytes — the key
  // diversification factor), else the next free one under `prefix` (hex; prefix ‖ a decimal
  // counter zero-padded to 20 hex digits; numbers are never reused, failed ones included).
  // Appends a "reserved" record with `context` (operator, time, ...) and fsyncs before it
  // returns.
  Result<Bytes> Reserve(DeviceKind kind, const std::optional<Bytes>& serial,
                        std::string_view prefix, const nlohmann::json& context);
  // Appends one record (a JSON object) as a line and fsyncs.
  Status Append(const nlohmann::json& record);
  // Every record in order.
  Result<std::vector<nlohmann::json>> ReadAll();
  std::size_t skipped_lines() const { return skipped_lines_; }

 private:
  IssuanceLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  // REQUIRES: the flock held. Reads what other processes appended since the last call.
  Status CatchUp();
  Status AppendLocked(const nlohmann::json& record);
  void Index(const nlohmann::json& record);

  std::string path_;
  int fd_ = -1;
  std::uint64_t read_offset_ = 0;
  std::size_t skipped_lines_ = 0;
  struct Numbers {
    std::set<std::string> serials;  // upper-case hex
    std::set<std::string> factors;  // rightmost 16 hex digits
  } numbers_[2];
};

// ---- Issuing -------------------------------------------------------------------------------

// What a device in a reader is, before issuing it.
enum class DeviceState {
  kBlank,             // personalisation state, nothing personalised yet
  kHalfPersonalised,  // personalisation state with files/data: an interrupted issuance
  kPersonalised,      // operational
  kBlocked,           // card blocked (6A81 to everything)
};
const char* DeviceStateName(DeviceState state);
struct DeviceProbe {
  std::optional<Bytes> chip_serial;  // GET DATA 80 CA 00 01 08, when the device answers it
  DeviceState state = DeviceState::kBlank;
};
// Read-only: GET DATA, then a personalisation command with invalid P1P2 (6985 when operational,
// 6A86 before: docs/card-commands.md "Order of checks"), then SELECT of the profile's files.
Result<DeviceProbe> ProbeCard(reader::Reader& reader);
// Likewise for a PSAM: UPDATE BINARY with invalid P1, then EF 15 (all zero until personalised).
Result<DeviceProbe> ProbePsam(reader::Reader& reader);

struct KeyUse {  // what the issuance log records of each key: never a value
  std::string name;
  std::uint8_t version = 0;
  std::string kcv;
  bool operator==(const KeyUse&) const = default;
};

struct CardIssueRequest {
  Holder holder;
  std::optional<Bytes> asn;  // 10 bytes; else allocated
  std::string asn_prefix;    // overrides issuance.json's
  std::string pin;           // 6 digits (RandomPin() unless the operator chose one)
};
struct IssuedCard {
  Bytes asn, chip_serial;
  bool test_card = false;
  std::uint8_t key_version = 1;
  std::vector<KeyUse> keys;
};

struct PsamIssueRequest {
  Bytes terminal_number;             // 6
  std::optional<Bytes> psam_serial;  // 10; else allocated
  std::string serial_prefix;         // overrides issuance.json's
  std::optional<Bytes> chip_serial;  // for a PSAM that does not answer GET DATA
};
struct IssuedPsam {
  Bytes psam_serial, chip_serial, terminal_number;
  bool test_psam = false;
  std::vector<KeyUse> keys;
};

// The issued card record's "pin_verification" (docs/issuance.md): {"method": "ibm3624",
// "key": "pvk/CARDS", "version": N, "offset": "DIGITS"} — the PIN's IBM 3624 offset under the
// latest version of keys::kCardPinVerificationKey, for the bank host's online PIN check. Null
// when the card has no PAN or the store holds no such key. Never the PIN.
inline constexpr char kPinVerificationMethod[] = "ibm3624";
Result<nlohmann::json> PinVerificationRecord(keys::KeyStore& store, ByteView asn,
                                             std::string_view pin);

class Issuer {
 public:
  // `operator_name` goes into every record. The store and log outlive the issuer.
  Issuer(keys::KeyStore& store, IssuanceLog& log, IssuanceConfig config, std::string operator_name);
  void set_issue_date(const Date& date) { issue_date_ = date; }

  // Personalises the blank card in `reader` (connected or not) for the holder. Refuses a card
  // that is personalised, half-personalised or blocked. A test store (test_only) issues a test
  // card (SFI 15 issuer data "TE"). The PIN goes nowhere but onto the card.
  Result<IssuedCard> IssueCard(reader::Reader& reader, const CardIssueRequest& request);
  // Personalises the blank PSAM in `reader` for a terminal: every version of the purchase,
  // maintenance and visit-record master keys, the latest settlement key diversified by the PSAM
  // serial.
  Result<IssuedPsam> IssuePsam(reader::Reader& reader, const PsamIssueRequest& request);

 private:
  nlohmann::json Context() const;
  // The log's view of (name, version) pairs: with their check values from the store.
  Result<std::vector<KeyUse>> KeyUses(
      const std::vector<std::pair<std::string, std::uint8_t>>& used);

  keys::KeyStore& store_;
  IssuanceLog& log_;
  IssuanceConfig config_;
  std::string operator_;
  Date issue_date_;
};

// A random 6-digit PIN, uniform over the PINs that are not a trivial pattern (one digit
// repeated, or digits counting up or down by one).
std::string RandomPin();
bool IsTrivialPin(std::string_view pin);
// The PIN mailer's text: the holder's name, the card (ASN), the PIN. Nothing else.
std::string PinMailerText(const Holder& holder, ByteView asn, std::string_view pin,
                          const Date& issue_date);

// ---- The issuer's side of transactions (keys/pboc.h) ---------------------------------------

class KeyStoreIssuerHost final : public terminal::LoadAuthoriser {
 public:
  explicit KeyStoreIssuerHost(keys::KeyStore& store) : store_(store) {}
  Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override;
  Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override;
  // `key_version`: the card's (the issuance log records it; the card answers it in INITIALIZE).
  Status VerifyPurchaseTac(const terminal::PurchaseResult& purchase, std::uint8_t key_version);
  Result<Bytes> AcknowledgeSamTotals(ByteView psam_serial, ByteView challenge,
                                     ByteView totals_answer, std::uint8_t settlement_version);

 private:
  keys::KeyStore& store_;
};

}  // namespace medcard::issuance
