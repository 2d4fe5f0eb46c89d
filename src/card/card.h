// The medcard card OS: an ISO 7816-4 file system with the PBOC ED/EP application and the
// social-security (SSSE) files, as a card vendor would ship it (pboc-ed-ep.md, card-profile.md).
// Every command, byte for byte, every status word and every choice the standard left open:
// docs/card-commands.md. The persistent image format: docs/card-image-content.md.
//
// The whole persistent state is one image in nvm::AtomicImage. A command that changes it
// commits the new image before the response leaves the card; when that commit fails (power
// cut) the card is dead: mute until reopened from its medium, which then holds exactly the
// state before or after the command.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/icc.h"
#include "nvm/nvm.h"

namespace medcard::card {

// What a key is for: byte 1 of the WRITE KEY key header. Numbering is medcard's
// (docs/card-commands.md, "Keys"); each card key is diversified by ASN from its own issuer
// master key.
enum class KeyUsage : std::uint8_t {
  kPurchase = 0x01,        // DPK: purchase and cash withdraw (MAC1, MAC2)
  kLoad = 0x02,            // DLK: load (MAC1, MAC2)
  kTac = 0x03,             // DTK: TAC of every purse transaction
  kUnload = 0x04,          // DULK: unload
  kOverdrawUpdate = 0x05,  // DUK: overdraw-limit update
  kPinUnblock = 0x06,      // DPUK: PIN UNBLOCK
  kPinReload = 0x07,       // DRPK: RELOAD PIN
  kMaintenance = 0x08,     // DAMK: application block/unblock, card block, SM file updates
  kVisitRecord = 0x09,     // SSSE EF08 visit records (APPEND RECORD with SM) and nothing else
  kExternalAuth = 0x0A,    // EXTERNAL AUTHENTICATE
  kInternalAuth = 0x0B,    // INTERNAL AUTHENTICATE
};
std::optional<KeyUsage> KeyUsageFromByte(std::uint8_t b);
std::string_view KeyUsageName(KeyUsage usage);  // "purchase", "load", ...

// Algorithm identifier of a key (WRITE KEY header, INITIALIZE answers): 2-key 3DES.
inline constexpr std::uint8_t kAlgTdes = 0x00;

// ISO 7816-4 file descriptor byte (CREATE FILE tag 82).
enum class FileType : std::uint8_t {
  kDf = 0x38,
  kTransparent = 0x01,
  kLinearFixed = 0x02,
  kCyclic = 0x06,
  kTlvRecords = 0x3A,  // SIMPLE-TLV records addressed by tag (the SSSE files)
};
std::string_view FileTypeName(FileType type);

// Access condition of one operation (read, or write = update/append) on an EF.
enum class AccessKind : std::uint8_t {
  kFree = 0x00,
  kPin = 0x01,              // the PIN of the file's DF verified since the DF was selected
  kSecureMessaging = 0x02,  // CLA 04 with a MAC under the DF's key of usage `key_ref`
  kExternalAuth = 0x03,     // EXTERNAL AUTHENTICATE with the DF's key index `key_ref`
  kNever = 0xFF,
};
struct AccessCondition {
  AccessKind kind = AccessKind::kFree;
  std::uint8_t key_ref = 0;  // SM: a KeyUsage byte; external auth: the key index
  bool operator==(const AccessCondition&) const = default;
  static AccessCondition Free() { return {}; }
  static AccessCondition Pin() { return {AccessKind::kPin, 0}; }
  static AccessCondition Sm(KeyUsage usage) {
    return {AccessKind::kSecureMessaging, static_cast<std::uint8_t>(usage)};
  }
  static AccessCondition ExternalAuth(std::uint8_t key_index) {
    return {AccessKind::kExternalAuth, key_index};
  }
  static AccessCondition Never() { return {AccessKind::kNever, 0}; }
};
std::string AccessConditionName(const AccessCondition& ac);  // "free", "SM(maintenance)", ...

enum class Lifecycle : std::uint8_t {
  kPersonalisation = 0x01,  // as the chip factory delivers it: only the MF and transport key
  kOperational = 0x02,      // after END PERSONALISATION; the transport key is gone
  kBlocked = 0x03,          // after CARD BLOCK: every command answers 6A81, forever
};
std::string_view LifecycleName(Lifecycle lifecycle);

enum class AppBlock : std::uint8_t { kNone = 0x00, kTemporary = 0x01, kPermanent = 0x02 };
std::string_view AppBlockName(AppBlock block);

// Purse application types (SFI 15 byte 9, CREATE FILE tag C0).
inline constexpr std::uint8_t kAppTypeEd = 0x01;
inline constexpr std::uint8_t kAppTypeEp = 0x02;
inline constexpr std::uint8_t kAppTypeEdEp = 0x03;

// PBOC transaction type identifiers (pboc-ed-ep.md).
inline constexpr std::uint8_t kTxnEdLoad = 0x01;
inline constexpr std::uint8_t kTxnEpLoad = 0x02;
inline constexpr std::uint8_t kTxnUnload = 0x03;
inline constexpr std::uint8_t kTxnCashWithdraw = 0x04;
inline constexpr std::uint8_t kTxnEdPurchase = 0x05;
inline constexpr std::uint8_t kTxnEpPurchase = 0x06;
inline constexpr std::uint8_t kTxnOverdrawUpdate = 0x07;

struct ManufactureInfo {
  Bytes chip_serial;    // 8 bytes
  Bytes transport_key;  // 16 bytes (diversified from the transport master key by chip serial)
};

// Test seams. Production code passes the default.
struct CardOptions {
  // Source of every card random (GET CHALLENGE, INITIALIZE); default crypto::RandomBytes. The
  // known-answer tests fix it to replay published vectors.
  std::function<Bytes(std::size_t)> random;
};

// ---- Read-only inspection (`medcard card show`). Never a key value or the PIN. ------------

struct KeySummary {
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 0, version = 0, alg_id = kAlgTdes;
  std::uint8_t error_limit = 0;  // 0: never locks
  std::uint8_t error_count = 0;  // consecutive failures
  bool locked = false;
  bool operator==(const KeySummary&) const = default;
};

struct PinSummary {
  std::uint8_t try_limit = 0;
  std::uint8_t tries_left = 0;
  bool operator==(const PinSummary&) const = default;
};

struct FileSummary {
  std::string path;  // FIDs from the MF, e.g. "3F00/1001/0018"
  std::uint16_t fid = 0;
  FileType type = FileType::kDf;
  std::uint8_t sfi = 0;  // 0: none
  Bytes df_name;
  // EF
  AccessCondition read, write;
  std::uint16_t size = 0;  // transparent: bytes; TLV records: capacity
  std::uint8_t record_length = 0, record_count = 0;
  bool readable = false;       // read is free: the contents below are filled
  Bytes content;               // transparent
  std::vector<Bytes> records;  // record 1 first (cyclic: newest first); TLV: tag‖len‖value
  // DF
  AppBlock block = AppBlock::kNone;
  std::vector<KeySummary> keys;
  std::optional<PinSummary> pin;
  bool operator==(const FileSummary&) const = default;
};

struct LogEntry {  // SFI 18 record (pboc-ed-ep.md "Files in the ED/EP application")
  std::uint16_t serial = 0;
  std::uint32_t overdraw_limit = 0;
  std::uint32_t amount = 0;
  std::uint8_t type = 0;
  Bytes terminal;    // 6
  Bytes date, time;  // BCD as stored
  bool operator==(const LogEntry&) const = default;
};

struct WalletSummary {
  std::uint32_t balance = 0;
  std::uint16_t online_serial = 0, offline_serial = 0;
  std::uint32_t max_balance = 0;
  std::uint32_t overdraw_limit = 0;  // ED only
  std::uint32_t overdraw_used = 0;   // the part of the limit a purchase has spent
  bool operator==(const WalletSummary&) const = default;
};

struct ProofSummary {  // what GET TRANSACTION PROVE answers for one transaction
  std::uint8_t type = 0;
  std::uint16_t serial = 0;
  Bytes mac2, tac;
  bool operator==(const ProofSummary&) const = default;
};

struct PurseSummary {
  std::string path;
  Bytes aid;
  std::uint8_t app_type = 0;
  AppBlock block = AppBlock::kNone;
  Bytes asn;  // from SFI 15, when present
  WalletSummary ed, ep;
  std::optional<PinSummary> pin;
  std::vector<LogEntry> log;         // newest first
  std::vector<ProofSummary> proofs;  // newest first
  bool operator==(const PurseSummary&) const = default;
};

struct CardSummary {
  Lifecycle lifecycle = Lifecycle::kPersonalisation;
  Bytes chip_serial;
  bool transport_key_present = false;
  std::uint8_t transport_key_errors = 0;
  std::vector<FileSummary> files;  // depth first from the MF
  std::vector<PurseSummary> purses;
  bool operator==(const CardSummary&) const = default;
};
nlohmann::json ToJson(const CardSummary& summary);

// ---- The card -----------------------------------------------------------------------------

// Thread-compatible: one caller at a time (readers serialise access to a card).
class Card final : public iso7816::Icc {
 public:
  // A blank card as the chip factory delivers it: chip serial, transport key, the MF and
  // nothing else, in personalisation state. Error if the medium is not empty.
  static Result<std::unique_ptr<Card>> Manufacture(std::unique_ptr<nvm::Medium> medium,
                                                   const ManufactureInfo& info,
                                                   CardOptions options = {});
  // Loads a card from its medium (after a power cut: what survived). Error when the medium is
  // empty, not a card image, or corrupt.
  static Result<std::unique_ptr<Card>> Open(std::unique_ptr<nvm::Medium> medium,
                                            CardOptions options = {});

  ~Card() override;
  Card(const Card&) = delete;
  Card& operator=(const Card&) = delete;

  // A dead card answers nothing: empty ATR, empty responses.
  Bytes PowerOn() override;
  void PowerOff() override;
  Bytes Atr() const override;
  // Before PowerOn: 6F00.
  Bytes Transmit(ByteView command_apdu) override;

  // True once a commit failed (power lost mid-write): mute until reopened from the medium.
  bool dead() const;
  CardSummary Inspect() const;

 private:
  struct Impl;
  explicit Card(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The ATR every medcard card answers: T=1, historical bytes naming medcard.
Bytes CardAtr();

}  // namespace medcard::card
