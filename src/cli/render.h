// Human-readable renderings for the terminal (the --json forms come from the components).
#pragma once

#include <cstdint>
#include <string>

#include "card/card.h"
#include "psam/psam.h"

namespace medcard::cli {

// 1250 → "12.50" (fen to yuan, exact: integer arithmetic only).
std::string Yuan(std::int64_t fen);
// "12.50" / "12.5" / "12" → 1250; rejects negatives, more than 2 decimals, junk, overflow.
Result<std::int64_t> ParseYuan(const std::string& text);

std::string RenderCard(const card::CardSummary& summary);
std::string RenderPsam(const psam::Inspection& inspection);

}  // namespace medcard::cli
