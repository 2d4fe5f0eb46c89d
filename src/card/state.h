// The card's persistent state and its image encoding (docs/card-image-content.md). Internal to
// the card component.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "card/card.h"
#include "common/bytes.h"
#include "common/result.h"

namespace medcard::card::internal {

inline constexpr std::uint8_t kImageFormatVersion = 1;
inline constexpr int kNoFile = -1;

// Capacities of the chip (a CREATE FILE or WRITE KEY beyond them answers 6A84).
inline constexpr std::size_t kMaxFiles = 64;
inline constexpr int kMaxDfDepth = 4;  // MF is depth 0
inline constexpr std::size_t kMaxKeysPerDf = 16;
inline constexpr std::size_t kMaxTransparentSize = 4096;
inline constexpr std::size_t kMaxTlvCapacity = 1024;
inline constexpr std::size_t kMaxFciProprietary = 64;
inline constexpr std::size_t kMaxProofs = 10;
inline constexpr std::size_t kLogRecordLength = 23;
inline constexpr std::uint8_t kLogSfi = 0x18;
inline constexpr std::uint8_t kPublicDataSfi = 0x15;
inline constexpr std::size_t kPublicDataLength = 30;

struct Key {
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 0, version = 0, alg_id = kAlgTdes;
  std::uint8_t error_limit = 0;  // 0: never locks
  std::uint8_t error_count = 0;
  Bytes value;  // 8 or 16 bytes

  bool locked() const { return error_limit != 0 && error_count >= error_limit; }
};

struct Pin {
  std::uint8_t try_limit = 3;
  std::uint8_t tries_left = 3;
  std::array<std::uint8_t, 16> salt{};
  std::array<std::uint8_t, 32> hash{};  // SHA-256(salt ‖ packed PIN)
};

struct Wallet {
  std::uint32_t balance = 0;
  std::uint16_t online_serial = 0;
  std::uint16_t offline_serial = 0;
  std::uint32_t max_balance = 0xFFFFFFFF;
  std::uint32_t overdraw_limit = 0;  // 24 bits; ED only
  std::uint32_t overdraw_used = 0;   // 24 bits, <= overdraw_limit
};

struct Proof {
  std::uint8_t type = 0;
  std::uint16_t serial = 0;
  std::array<std::uint8_t, 4> mac2{};  // zero for load, unload, overdraw update
  std::array<std::uint8_t, 4> tac{};
};

struct Purse {
  std::uint8_t app_type = kAppTypeEdEp;
  Wallet ed, ep;
  std::vector<Proof> proofs;  // newest first, at most kMaxProofs
};

struct TlvRecord {
  std::uint8_t tag = 0;
  Bytes value;
};

struct File {
  FileType type = FileType::kDf;
  std::uint16_t fid = 0;
  int parent = kNoFile;  // index in CardState::files; kNoFile for the MF
  std::uint8_t sfi = 0;
  Bytes df_name;
  AccessCondition read, write;
  // Transparent: size bytes of content. Linear fixed: record_count records. Cyclic:
  // records_used records, newest first. TLV: capacity in `size`, objects in `tlv`.
  std::uint16_t size = 0;
  std::uint8_t record_length = 0, record_count = 0, records_used = 0;
  Bytes data;
  std::vector<TlvRecord> tlv;
  // DF only.
  Bytes fci_proprietary;
  AppBlock block = AppBlock::kNone;
  std::vector<Key> keys;
  std::optional<Pin> pin;
  std::optional<Purse> purse;

  bool is_df() const { return type == FileType::kDf; }
  bool is_record_file() const {
    return type == FileType::kLinearFixed || type == FileType::kCyclic;
  }
  std::size_t TlvBytesUsed() const;
};

struct CardState {
  Lifecycle lifecycle = Lifecycle::kPersonalisation;
  std::array<std::uint8_t, 8> chip_serial{};
  Bytes transport_key;  // 16 bytes until END PERSONALISATION, then empty
  std::uint8_t transport_key_errors = 0;
  std::vector<File> files;  // files[0] is the MF; a parent always precedes its children

  // Derived, rebuilt by Index(): children of each file, in creation order.
  std::vector<std::vector<int>> children;
  void Index();
};

inline constexpr std::uint8_t kTransportKeyErrorLimit = 3;

// The read-only view `medcard card show` prints (inspect.cc).
CardSummary Summarize(const CardState& state);

// Appends the image encoding of `state` to `out` (cleared first; capacity is kept).
void SerializeState(const CardState& state, Bytes& out);
// Strict: every length checked, every invariant the card relies on verified.
Result<CardState> ParseState(ByteView image);

}  // namespace medcard::card::internal
