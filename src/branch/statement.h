// A card's statement for a period (docs/branch.md "Statements"): its movements as CSV (UTF-8,
// money in yuan with two decimals, dates ISO) or as a one-font PDF 1.4 document.
#pragma once

#include <string>
#include <string_view>

#include "branch/services.h"

namespace medcard::branch {

// from_day, to_day: "YYYY-MM-DD", inclusive, local time (the History lines' `when`).
struct StatementRequest {
  std::string asn = {};
  std::string from_day = {};
  std::string to_day = {};
};

// Header "date,time,wallet,kind,amount,balance,merchant_id,merchant,reference", one line per
// movement, then "opening" and "closing" lines per wallet. RFC 4180 quoting.
ServiceResult<std::string> StatementCsv(BranchServices& services, const StatementRequest& request);

// The same lines on A4 pages (Courier; a merchant name outside Latin-1 is shown by its id).
ServiceResult<std::string> StatementPdf(BranchServices& services, const StatementRequest& request);

}  // namespace medcard::branch
