// The medcard PSAM: the terminal's secure access module (card-profile.md "PSAM", pboc-ed-ep.md
// "PSAM commands"). It holds the issuer's purchase master keys, derives each card's DPK, computes
// MAC1, checks the card's MAC2, numbers the terminal's transactions and keeps signed settlement
// totals. Every command, byte for byte, and the image format: docs/psam-commands.md.
//
// All persistent state is one image in nvm::AtomicImage; a command that changes it commits
// before answering. A commit that fails (power cut) leaves the PSAM dead: mute until reopened
// from the medium, which then holds exactly the state before or after the command.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/icc.h"
#include "nvm/nvm.h"

namespace medcard::psam {

// What a key is for: byte 1 of the WRITE KEY key header and the key type of DELIVERY KEY
// (P1 bits 5..1). Numbering is medcard's (docs/psam-commands.md, "Keys").
enum class KeyUsage : std::uint8_t {
  kPurchase = 0x01,     // purchase master key MPK, one per key version; INIT_SAM_FOR_PURCHASE
  kSettlement = 0x02,   // settlement key (already diversified by the PSAM serial); SAM TOTALS
  kMaintenance = 0x03,  // card application maintenance master key (DAMK); DELIVERY KEY
  kVisitRecord = 0x04,  // card SSSE EF08 visit-history SM master key; DELIVERY KEY
};
std::optional<KeyUsage> KeyUsageFromByte(std::uint8_t b);
std::string_view KeyUsageName(KeyUsage usage);  // "purchase", "settlement", ...

// Algorithm identifier (WRITE KEY header, INIT_SAM_FOR_PURCHASE algId): 2-key 3DES.
inline constexpr std::uint8_t kAlgTdes = 0x00;

enum class Lifecycle : std::uint8_t {
  kPersonalisation = 0x01,  // only personalisation commands; transport key present
  kOperational = 0x02,      // after END PERSONALISATION; transport key erased
};

// The purchase DF: FID 1001, AID D156000005 ‖ "PSAM" (distinct from the card's D15600000503).
inline constexpr std::array<std::uint8_t, 9> kPurchaseDfAid = {0xD1, 0x56, 0x00, 0x00, 0x05,
                                                               0x50, 0x53, 0x41, 0x4D};

struct ManufactureInfo {
  Bytes chip_serial;    // 8 bytes
  Bytes transport_key;  // 16 bytes; keys arrive encrypted under it until END PERSONALISATION
};

// The settlement accumulator since the last CLEAR SAM TOTALS.
struct SamTotals {
  std::uint32_t count = 0;
  std::uint64_t amount = 0;  // fen, 6 bytes on the wire
  std::uint32_t first_serial = 0;
  std::uint32_t last_serial = 0;
  bool operator==(const SamTotals&) const = default;
};

// A key as Inspect() shows it: never its value or check value.
struct KeyInfo {
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 0;
  std::uint8_t version = 0;
  std::uint8_t alg_id = kAlgTdes;
  std::uint8_t error_limit = 0;  // consecutive MAC failures that lock it (settlement key)
  std::uint8_t failures = 0;
  bool locked = false;
  bool operator==(const KeyInfo&) const = default;
};

// An INIT_SAM_FOR_PURCHASE not yet completed by a right MAC2 (the PSAM keeps the last 8).
struct PendingPurchase {
  std::uint32_t terminal_serial = 0;
  std::uint32_t amount = 0;
  bool operator==(const PendingPurchase&) const = default;
};

// Every persistent fact of the PSAM except secrets.
struct Inspection {
  Bytes chip_serial;
  Lifecycle lifecycle = Lifecycle::kPersonalisation;
  bool transport_key_present = false;
  std::uint8_t transport_key_failures = 0;  // consecutive wrong WRITE KEY / END MACs (3 lock)
  // EF 15
  Bytes psam_serial;
  std::uint8_t psam_version = 0;
  std::uint8_t key_type = 0;
  Bytes issuer_data;
  // EF 16
  Bytes terminal_number;
  // EF 17 (dates as stored, packed BCD)
  std::uint8_t purchase_key_index = 0;
  Bytes valid_from;
  Bytes valid_to;

  std::vector<KeyInfo> keys;
  std::uint32_t terminal_transaction_serial = 0;
  SamTotals totals;
  // The last GET SAM TOTALS answer, which CLEAR SAM TOTALS acknowledges.
  std::optional<Bytes> signed_challenge;
  std::optional<SamTotals> signed_totals;
  std::vector<PendingPurchase> pending_purchases;  // oldest first
  std::vector<std::uint32_t> completed_serials;    // the last 8 completed, oldest first
  bool operator==(const Inspection&) const = default;
};
nlohmann::json ToJson(const Inspection& inspection);

class Psam final : public iso7816::Icc {
 public:
  // A new PSAM on an empty medium, in personalisation state. Error if the medium holds anything.
  static Result<std::unique_ptr<Psam>> Manufacture(std::unique_ptr<nvm::Medium> medium,
                                                   const ManufactureInfo& info);
  // Reopens a PSAM from its medium (after a power cut: the surviving content). Error when the
  // medium is empty, not a PSAM image, or corrupt.
  static Result<std::unique_ptr<Psam>> Open(std::unique_ptr<nvm::Medium> medium);

  ~Psam() override;
  Psam(const Psam&) = delete;
  Psam& operator=(const Psam&) = delete;

  // A dead PSAM answers nothing: empty ATR, empty responses.
  Bytes PowerOn() override;
  void PowerOff() override;
  Bytes Atr() const override;
  Bytes Transmit(ByteView command_apdu) override;

  // True once a commit failed (power lost mid-write): mute until reopened from the medium.
  bool dead() const;
  Inspection Inspect() const;

 private:
  struct Impl;
  explicit Psam(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace medcard::psam
