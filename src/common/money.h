// Money as people read and type it: yuan with two decimals, exact (integer fen, never a float).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace medcard {

// 1250 → "12.50", 5 → "0.05", -1250 → "-12.50".
std::string FormatFen(std::int64_t fen);

// "12.50" / "12.5" / "12" / "0.05" → fen. Strict: decimal digits with at most one '.' followed
// by 1 or 2 digits; no sign, no spaces, no exponent, no empty integer part (".5"), no trailing
// '.' ("12."), nothing above INT64_MAX fen. Errors quote the text and say what is wrong.
Result<std::int64_t> ParseYuan(std::string_view text);

}  // namespace medcard
