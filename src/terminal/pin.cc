#include "terminal/pin.h"

#include "common/bcd.h"
#include "iso7816/apdu.h"
#include "terminal/purse.h"

namespace medcard::terminal {

using iso7816::CommandApdu;

namespace {

PinOutcome Failed(PinFailure failure, std::string message, int tries_left = -1) {
  return PinOutcome{failure, tries_left, std::move(message)};
}

// The outcome of a PIN command's status word (docs/card-commands.md, VERIFY and CHANGE PIN).
PinOutcome FromStatusWord(const char* command, iso7816::StatusWord sw) {
  if (sw.ok()) return PinOutcome{};
  if ((sw.value & 0xFFF0) == 0x63C0) {
    const int left = sw.value & 0x0F;
    return Failed(PinFailure::kWrongPin,
                  left == 0 ? "wrong PIN, the PIN is now blocked"
                            : "wrong PIN, " + std::to_string(left) +
                                  (left == 1 ? " try left" : " tries left"),
                  left);
  }
  if (sw.value == iso7816::sw::kBlocked.value) {
    return Failed(PinFailure::kBlocked,
                  "the PIN is blocked: the card issuer must unblock it (6983)", 0);
  }
  return Failed(PinFailure::kCardError, CardError(command, sw).message);
}

}  // namespace

Status PinOutcome::ToStatus() const {
  if (ok()) return Status::Ok();
  return MakeError(message);
}

Status CheckPinFormat(std::string_view pin) {
  if (pin.size() < 4 || pin.size() > 12) return MakeError("a PIN is 4 to 12 digits");
  for (char c : pin) {
    if (c < '0' || c > '9') return MakeError("a PIN is digits only");
  }
  return Status::Ok();
}

PinOutcome ChangePin(reader::Reader& card, const std::string& old_pin, const std::string& new_pin) {
  if (Status s = CheckPinFormat(old_pin); !s.ok()) {
    return Failed(PinFailure::kFormat, "old PIN: " + s.error().message);
  }
  if (Status s = CheckPinFormat(new_pin); !s.ok()) {
    return Failed(PinFailure::kFormat, "new PIN: " + s.error().message);
  }
  if (old_pin == new_pin) {
    return Failed(PinFailure::kFormat, "the new PIN is the same as the old one");
  }
  // 80 5E 01 00 Lc oldPIN ‖ FF ‖ newPIN, each packed BCD, F-padded (docs/card-commands.md).
  auto old_packed = PackDigitsFPadded(old_pin);
  auto new_packed = PackDigitsFPadded(new_pin);
  Bytes data = *old_packed;
  data.push_back(0xFF);
  Append(data, View(*new_packed));
  SecureWipe(*old_packed);
  SecureWipe(*new_packed);
  CommandApdu command = CommandApdu::Case3(0x80, 0x5E, 0x01, 0x00, data);
  SecureWipe(data);
  auto response = reader::Send(card, command);
  SecureWipe(command.data);
  if (!response.ok()) {
    return Failed(PinFailure::kCardError, "CHANGE PIN: " + response.error().message);
  }
  if (response->sw.value == iso7816::sw::kWrongData.value) {
    return Failed(PinFailure::kFormat, "the card does not take that new PIN (it sets 6 digits)");
  }
  return FromStatusWord("CHANGE PIN", response->sw);
}

Result<PinState> QueryPinState(reader::Reader& card) {
  auto response = reader::Send(card, CommandApdu::Case1(0x00, 0x20, 0x00, 0x00));
  if (!response.ok()) return MakeError("VERIFY: " + response.error().message);
  PinState state;
  if (response->ok()) {
    state.verified = true;
  } else if ((response->sw.value & 0xFFF0) == 0x63C0) {
    state.tries_left = response->sw.value & 0x0F;
  } else if (response->sw.value == iso7816::sw::kBlocked.value) {
    state.blocked = true;
    state.tries_left = 0;
  } else {
    return CardError("VERIFY", response->sw);
  }
  return state;
}

}  // namespace medcard::terminal
