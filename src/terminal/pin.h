// The cardholder's PIN at a terminal: the format check done before anything is sent, CHANGE PIN
// (`80 5E 01 00 oldPIN ‖ FF ‖ newPIN`, docs/card-commands.md) and the PIN state query
// (VERIFY without data), each with a typed outcome so a terminal can tell a wrong PIN (tries
// left) from a blocked one.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "reader/reader.h"

namespace medcard::terminal {

// 4 to 12 decimal digits (ISO 9564). The medcard card itself sets only 6-digit PINs.
Status CheckPinFormat(std::string_view pin);

enum class PinFailure {
  kNone,       // done
  kFormat,     // refused before anything was sent (or 6A80: the card's format rule)
  kWrongPin,   // 63Cx: tries_left says how many remain (0: now blocked)
  kBlocked,    // 6983: no try left; the issuer must unblock or reload it
  kCardError,  // another status word, or the reader failed
};

struct PinOutcome {
  PinFailure failure = PinFailure::kNone;
  int tries_left = -1;  // after kWrongPin: the tries the card reports (0: now blocked)
  std::string message;  // empty when ok; never contains a PIN
  bool ok() const { return failure == PinFailure::kNone; }
  Status ToStatus() const;
};

// CHANGE PIN in the current application (REQUIRES: SelectMedicalApplication). Both PINs are
// checked first (4..12 digits; the new one differs from the old one); a new PIN the card does
// not take (the medcard card: 6 digits) is kFormat. Success leaves the new PIN verified.
PinOutcome ChangePin(reader::Reader& card, const std::string& old_pin, const std::string& new_pin);

// The PIN's state from VERIFY without data (ISO 7816-4 state query): nothing is tried or counted.
struct PinState {
  bool verified = false;  // since the application was selected
  bool blocked = false;
  int tries_left = -1;  // when neither verified nor blocked: the tries the card reports
};
// REQUIRES: SelectMedicalApplication. Errors: the reader, or a status word other than
// 9000 / 63Cx / 6983.
Result<PinState> QueryPinState(reader::Reader& card);

}  // namespace medcard::terminal
