#include "common/money.h"

#include <limits>

namespace medcard {

std::string FormatFen(std::int64_t fen) {
  // The magnitude in unsigned arithmetic: -INT64_MIN does not fit an int64.
  const std::uint64_t magnitude =
      fen < 0 ? 0 - static_cast<std::uint64_t>(fen) : static_cast<std::uint64_t>(fen);
  const std::uint64_t cents = magnitude % 100;
  std::string text = fen < 0 ? "-" : "";
  text += std::to_string(magnitude / 100);
  text += '.';
  text += static_cast<char>('0' + cents / 10);
  text += static_cast<char>('0' + cents % 10);
  return text;
}

Result<std::int64_t> ParseYuan(std::string_view text) {
  const auto fail = [text](const char* why) {
    return MakeError("amount \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return fail("empty; expected yuan like 12.50");
  const std::size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view decimals =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  const auto all_digits = [](std::string_view s) {
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  if (!all_digits(whole) || !all_digits(decimals)) {
    return fail("not a number of yuan like 12.50 (digits and one '.' only)");
  }
  if (whole.empty()) return fail("no yuan before the '.' (write 0.50)");
  if (dot != std::string_view::npos && decimals.empty()) return fail("no digits after the '.'");
  if (decimals.size() > 2) return fail("at most 2 decimals (fen)");

  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t yuan = 0;
  for (char c : whole) {
    const int digit = c - '0';
    if (yuan > (kMax - digit) / 10) return fail("too large");
    yuan = yuan * 10 + digit;
  }
  std::int64_t cents = 0;
  for (char c : decimals) cents = cents * 10 + (c - '0');
  if (decimals.size() == 1) cents *= 10;
  if (yuan > (kMax - cents) / 100) return fail("too large");
  return yuan * 100 + cents;
}

}  // namespace medcard
