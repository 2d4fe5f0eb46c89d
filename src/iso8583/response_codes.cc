// Response codes (field 39; docs/protocol.md "Response codes"): CUP POS meanings, medcard uses.
#include <array>
#include <string>

#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

namespace {

struct CodeName {
  ResponseCode code;
  std::string_view name;
};

constexpr std::array kCodes = {
    CodeName{ResponseCode::kApproved, "approved"},
    CodeName{ResponseCode::kInvalidMerchant, "invalid merchant"},
    CodeName{ResponseCode::kError, "error"},
    CodeName{ResponseCode::kInvalidTransaction, "invalid transaction"},
    CodeName{ResponseCode::kInvalidAmount, "invalid amount"},
    CodeName{ResponseCode::kInvalidCard, "invalid card"},
    CodeName{ResponseCode::kUnableToLocateRecord, "unable to locate record"},
    CodeName{ResponseCode::kFormatError, "format error"},
    CodeName{ResponseCode::kLostCard, "lost card"},
    CodeName{ResponseCode::kInsufficientFunds, "insufficient funds"},
    CodeName{ResponseCode::kExpiredCard, "expired card"},
    CodeName{ResponseCode::kIncorrectPin, "incorrect PIN"},
    CodeName{ResponseCode::kExceedsLimit, "exceeds amount limit"},
    CodeName{ResponseCode::kOriginalAmountIncorrect, "original amount incorrect"},
    CodeName{ResponseCode::kPinTriesExceeded, "allowable PIN tries exceeded"},
    CodeName{ResponseCode::kSignOnRequired, "sign-on required"},
    CodeName{ResponseCode::kDuplicateTransmission, "duplicate transmission"},
    CodeName{ResponseCode::kReconciliationError, "reconciliation error"},
    CodeName{ResponseCode::kSystemMalfunction, "system malfunction"},
    CodeName{ResponseCode::kTerminalNotRegistered, "terminal not registered"},
    CodeName{ResponseCode::kNoResponse, "no response"},
    CodeName{ResponseCode::kMacError, "MAC error"},
};

constexpr std::array<ResponseCode, kCodes.size()> CodesOnly() {
  std::array<ResponseCode, kCodes.size()> out{};
  for (std::size_t i = 0; i < kCodes.size(); ++i) out[i] = kCodes[i].code;
  return out;
}
constexpr auto kAllCodes = CodesOnly();

}  // namespace

std::string ResponseCodeText(ResponseCode code) {
  const auto v = static_cast<std::uint16_t>(code);
  return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

std::string_view ResponseCodeName(ResponseCode code) {
  for (const CodeName& c : kCodes) {
    if (c.code == code) return c.name;
  }
  return "unknown";
}

std::optional<ResponseCode> ParseResponseCode(std::string_view text) {
  if (text.size() != 2) return std::nullopt;
  const auto v = static_cast<std::uint16_t>(static_cast<std::uint8_t>(text[0]) << 8 |
                                            static_cast<std::uint8_t>(text[1]));
  for (const CodeName& c : kCodes) {
    if (static_cast<std::uint16_t>(c.code) == v) return c.code;
  }
  return std::nullopt;
}

std::span<const ResponseCode> AllResponseCodes() { return kAllCodes; }

}  // namespace medcard::iso8583
