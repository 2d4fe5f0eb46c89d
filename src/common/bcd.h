// Dates and times as the card standard encodes them: packed BCD at the edge, typed values inside.
// PBOC date: YYYYMMDD in 4 bytes; time: hhmmss in 3 bytes (pboc-ed-ep.md, Conventions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/bytes.h"

namespace medcard {

struct Date {
  int year = 0;   // 0..9999
  int month = 0;  // 1..12
  int day = 0;    // 1..31, valid for the month
  bool operator==(const Date&) const = default;
  auto operator<=>(const Date&) const = default;
  std::string ToString() const;  // YYYY-MM-DD
};

struct TimeOfDay {
  int hour = 0, minute = 0, second = 0;
  bool operator==(const TimeOfDay&) const = default;
  auto operator<=>(const TimeOfDay&) const = default;
  std::string ToString() const;  // hh:mm:ss
};

bool IsValidDate(const Date& d);
// 4 bytes YYYYMMDD. REQUIRES: IsValidDate(d).
Bytes EncodeBcdDate(const Date& d);
// nullopt unless exactly 4 bytes of valid BCD forming a real calendar date.
std::optional<Date> DecodeBcdDate(ByteView bcd);
// 3 bytes hhmmss.
Bytes EncodeBcdTime(const TimeOfDay& t);
std::optional<TimeOfDay> DecodeBcdTime(ByteView bcd);

// Packed BCD of a decimal digit string, left-aligned and padded with F (PIN, card numbers).
std::optional<Bytes> PackDigitsFPadded(std::string_view digits);
// Inverse: digits up to the first F nibble; nullopt on a non-digit, non-F nibble.
std::optional<std::string> UnpackDigitsFPadded(ByteView bcd);

// The local wall clock, for terminals and the demo; tests pass their own dates.
Date Today();
TimeOfDay Now();

}  // namespace medcard
