// ISO 7816-3/4 command and response APDUs: cases 1-4, short and extended length.
// Parsing is strict: a malformed APDU yields the status word the card would answer
// (6700 wrong length, ...), never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/status.h"

namespace medcard::iso7816 {

struct CommandApdu {
  std::uint8_t cla = 0, ins = 0, p1 = 0, p2 = 0;
  Bytes data;                       // Lc = data.size(); empty for cases 1 and 2
  std::optional<std::uint32_t> le;  // Ne: 1..256 short (256 encoded as 00), 1..65536 extended
  bool extended = false;            // encode with extended length fields

  // Case 1: no data, no Le. 2: Le only. 3: data only. 4: data and Le.
  int Case() const;
  // Short form unless `extended` is set or the sizes need it (data > 255 bytes or Le > 256).
  // REQUIRES: data.size() <= 65535; le, when set, in 1..65536.
  Bytes Serialize() const;
  // "80 50 01 02 0B ..." style hex of Serialize(). The data field of commands that carry a PIN
  // or key (VERIFY, CHANGE/RELOAD PIN, PIN UNBLOCK, RESET RETRY COUNTER, WRITE KEY) is replaced
  // by "<n bytes hidden>" so that logging an APDU never leaks a secret.
  std::string ToString() const;

  // Strict parse. Error status words: 6700 for any length inconsistency (including Lc=0 in
  // short form and bodies shorter or longer than the length fields say).
  static std::variant<CommandApdu, StatusWord> Parse(ByteView raw);

  // Builders for readable call sites.
  static CommandApdu Case1(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2);
  static CommandApdu Case2(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                           std::uint32_t le);
  static CommandApdu Case3(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                           Bytes data);
  static CommandApdu Case4(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                           Bytes data, std::uint32_t le);

  bool operator==(const CommandApdu&) const = default;
};

struct ResponseApdu {
  Bytes data;
  StatusWord sw;

  bool ok() const { return sw.ok(); }
  Bytes Serialize() const;  // data || SW1 SW2
  // Error when shorter than 2 bytes.
  static Result<ResponseApdu> Parse(ByteView raw);

  bool operator==(const ResponseApdu&) const = default;
};

// Builds an R-APDU.
inline Bytes Respond(StatusWord sw) { return {sw.sw1(), sw.sw2()}; }
Bytes Respond(ByteView data, StatusWord sw);

// Addressing helpers (ISO 7816-4 §7.2 / §7.3).
// READ/UPDATE BINARY P1: bit 8 set means P1 bits 5..1 are an SFI (1..30) and P2 the offset;
// bits 7-6 are then RFU and must be 0. Bit 8 clear: P1P2 is a 15-bit offset in the current EF.
// nullopt (the card answers 6A86) for SFI 0 or 31 or RFU bits set.
struct BinaryAddress {
  std::optional<std::uint8_t> sfi;  // set when addressed by short file identifier
  std::uint16_t offset = 0;         // 15-bit offset when no SFI, else 8-bit
};
std::optional<BinaryAddress> DecodeBinaryAddress(std::uint8_t p1, std::uint8_t p2);

// READ/UPDATE/APPEND RECORD P2: bits 8..4 SFI (0 = current EF), bits 3..1 the reference mode
// (100 = record number in P1, 000..011 = by identifier; medcard uses 100 and, for SSSE TLV
// records, "record number" = the tag).
// SFI 31 (P2 F8..FF, RFU in ISO 7816-4) is passed through: no file has it, so the card answers
// 6A82.
struct RecordAddress {
  std::optional<std::uint8_t> sfi;  // nullopt: current EF
  std::uint8_t mode = 4;            // P2 bits 3..1
};
RecordAddress DecodeRecordAddress(std::uint8_t p2);

}  // namespace medcard::iso7816
