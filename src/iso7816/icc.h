// The integrated circuit card as a device: what a reader powers and talks to. The card OS and
// the PSAM implement it; readers (in-process, vpcd bridge) drive it.
#pragma once

#include "common/bytes.h"

namespace medcard::iso7816 {

class Icc {
 public:
  virtual ~Icc() = default;
  // Cold or warm reset: clears all volatile state (selected files, security status, pending
  // purse transactions) and returns the ATR.
  virtual Bytes PowerOn() = 0;
  virtual void PowerOff() = 0;
  // The ATR the card would answer now (also between APDUs).
  virtual Bytes Atr() const = 0;
  // One C-APDU in, one R-APDU (data || SW1 SW2) out. Never throws; malformed input answers a
  // status word. REQUIRES: powered on (else answers 6F00... callers power on first).
  virtual Bytes Transmit(ByteView command_apdu) = 0;
};

}  // namespace medcard::iso7816
