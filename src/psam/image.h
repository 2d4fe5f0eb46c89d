// The PSAM's persistent state and its image format (docs/psam-commands.md, "Image format").
// Internal to src/psam (and its tests): other components use psam.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "psam/psam.h"

namespace medcard::psam::internal {

inline constexpr std::uint8_t kImageFormatVersion = 1;
inline constexpr std::size_t kChipSerialSize = 8;
inline constexpr std::size_t kTransportKeySize = 16;
inline constexpr std::size_t kKeySize = 16;
inline constexpr std::size_t kMaxKeys = 16;
inline constexpr std::size_t kMaxPendingSessions = 8;
inline constexpr std::size_t kMaxCompletedSerials = 8;
inline constexpr std::uint8_t kMaxErrorLimit = 15;
inline constexpr std::uint8_t kTransportKeyErrorLimit = 3;  // as the card's

// EF sizes (docs/psam-commands.md, "Files").
inline constexpr std::size_t kEf15Size = 14;  // serial(10) ‖ version(1) ‖ keyType(1) ‖ issuer(2)
inline constexpr std::size_t kEf16Size = 6;     // terminal number
inline constexpr std::size_t kEf17Size = 9;     // purchase key index(1) ‖ from(4) ‖ to(4)
inline constexpr std::size_t kTotalsSize = 18;  // count(4) ‖ amount(6) ‖ first(4) ‖ last(4)
inline constexpr std::uint64_t kMaxAmount = 0xFFFFFFFFFFFFULL;  // 6 bytes

struct StoredKey {
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 0;
  std::uint8_t version = 0;
  std::uint8_t alg_id = kAlgTdes;
  std::uint8_t error_limit = 3;
  std::uint8_t failures = 0;
  Bytes value;  // kKeySize bytes
  bool locked() const { return failures >= error_limit; }
  bool operator==(const StoredKey&) const = default;
};

struct SignedTotals {
  Bytes challenge;  // 8 bytes
  SamTotals totals;
  bool operator==(const SignedTotals&) const = default;
};

struct PendingSession {
  std::uint32_t serial = 0;
  std::uint32_t amount = 0;
  Bytes session_key;  // SESPK, 8 bytes
  bool operator==(const PendingSession&) const = default;
};

struct State {
  Lifecycle lifecycle = Lifecycle::kPersonalisation;
  Bytes chip_serial;                      // kChipSerialSize
  Bytes transport_key;                    // kTransportKeySize while personalising, empty after
  std::uint8_t transport_key_errors = 0;  // consecutive wrong transport-key MACs
  Bytes ef15 = Bytes(kEf15Size, 0);
  Bytes ef16 = Bytes(kEf16Size, 0);
  Bytes ef17 = Bytes(kEf17Size, 0);
  std::vector<StoredKey> keys;
  std::uint32_t terminal_serial = 0;
  SamTotals totals;
  std::optional<SignedTotals> signed_totals;
  std::vector<PendingSession> pending;   // oldest first
  std::vector<std::uint32_t> completed;  // oldest first
  bool operator==(const State&) const = default;
};

// count(4) ‖ amount(6) ‖ firstSerial(4) ‖ lastSerial(4), as GET SAM TOTALS answers them.
Bytes EncodeTotals(const SamTotals& totals);

Bytes EncodeImage(const State& state);
// Strict: wrong magic or version, any field out of range, inconsistent lifecycle, short or
// trailing bytes → error.
Result<State> DecodeImage(ByteView image);

}  // namespace medcard::psam::internal
