// Human-readable renderings for the terminal (the --json forms come from the components).
#pragma once

#include <cstdint>
#include <string>

#include "card/card.h"
#include "psam/psam.h"

namespace medcard::cli {

std::string RenderCard(const card::CardSummary& summary);
std::string RenderPsam(const psam::Inspection& inspection);

}  // namespace medcard::cli
