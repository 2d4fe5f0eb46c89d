// ISO 7816-4 / PBOC status words: the two bytes every card answer ends with, with their names
// (pboc-ed-ep.md, "Status words").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace medcard::iso7816 {

struct StatusWord {
  std::uint16_t value = 0x9000;

  constexpr StatusWord() = default;
  constexpr explicit StatusWord(std::uint16_t v) : value(v) {}
  constexpr StatusWord(std::uint8_t sw1, std::uint8_t sw2)
      : value(static_cast<std::uint16_t>((sw1 << 8) | sw2)) {}

  constexpr std::uint8_t sw1() const { return static_cast<std::uint8_t>(value >> 8); }
  constexpr std::uint8_t sw2() const { return static_cast<std::uint8_t>(value); }
  constexpr bool ok() const { return value == 0x9000; }
  constexpr bool operator==(const StatusWord&) const = default;

  // "6982 security status not satisfied"; 63Cx names the tries left.
  std::string ToString() const;
  // The short name alone, e.g. "security status not satisfied".
  std::string Name() const;
};

namespace sw {
inline constexpr StatusWord kOk{0x9000};
inline constexpr StatusWord kWrongLength{0x6700};
inline constexpr StatusWord kSecurityNotSatisfied{0x6982};
inline constexpr StatusWord kBlocked{0x6983};  // key or PIN blocked
inline constexpr StatusWord kRandomInvalid{0x6984};
inline constexpr StatusWord kConditionsNotSatisfied{0x6985};
inline constexpr StatusWord kCommandNotAllowedNoEf{0x6986};
inline constexpr StatusWord kSmMissing{0x6987};
inline constexpr StatusWord kSmMacWrong{0x6988};
inline constexpr StatusWord kWrongData{0x6A80};
inline constexpr StatusWord kFunctionNotSupported{0x6A81};  // also: application blocked
inline constexpr StatusWord kFileNotFound{0x6A82};
inline constexpr StatusWord kRecordNotFound{0x6A83};
inline constexpr StatusWord kNotEnoughMemory{0x6A84};
inline constexpr StatusWord kWrongP1P2{0x6A86};
inline constexpr StatusWord kReferencedDataNotFound{0x6A88};
inline constexpr StatusWord kFileExists{0x6A89};
inline constexpr StatusWord kWrongOffset{0x6B00};
inline constexpr StatusWord kInsNotSupported{0x6D00};
inline constexpr StatusWord kClaNotSupported{0x6E00};
inline constexpr StatusWord kUnknown{0x6F00};
inline constexpr StatusWord kMacInvalid{0x9302};
inline constexpr StatusWord kAppPermanentlyBlocked{0x9303};
inline constexpr StatusWord kInsufficientFunds{0x9401};
inline constexpr StatusWord kCounterAtMaximum{0x9402};
inline constexpr StatusWord kKeyIndexNotSupported{0x9403};
inline constexpr StatusWord kMacTacNotAvailable{0x9406};
// 63Cx: wrong PIN, x tries left (x = 0..15).
constexpr StatusWord PinWrong(int tries_left) {
  return StatusWord(static_cast<std::uint16_t>(0x63C0 | (tries_left & 0x0F)));
}
// 61xx: more data available (T=0); 6Cxx: wrong Le, resend with xx.
constexpr StatusWord BytesAvailable(std::uint8_t n) { return StatusWord(0x61, n); }
constexpr StatusWord WrongLe(std::uint8_t n) { return StatusWord(0x6C, n); }
}  // namespace sw

}  // namespace medcard::iso7816
