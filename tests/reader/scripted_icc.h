// A scripted card for reader tests: answers APDU patterns, plays the T=0 transport games (61xx,
// 6Cxx), counts power-ons and records every C-APDU. Thread-safe (the vpcd bridge drives it from
// its own thread while the test inspects it).
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "iso7816/icc.h"

namespace medcard::reader::testing {

// ATR of a T=1 card (ISO 7816-3 §8.2: TS=3B, T0 with TD1 and K historical bytes, TD1=80 -> TD2,
// TD2=01 -> T=1, then the historical bytes and TCK).
Bytes T1Atr(std::string_view historical_bytes);
// ATR of a T=0-only card: TS=3B, T0 = 0K, historical bytes, no TCK.
Bytes T0Atr(std::string_view historical_bytes);

class ScriptedIcc : public iso7816::Icc {
 public:
  explicit ScriptedIcc(Bytes atr = T1Atr("MEDCARD"));

  // Every C-APDU starting with `prefix_hex` is answered `response_hex` (data || SW).
  // Rules are tried in the order they were added, before the built-in behaviours below.
  void On(std::string_view prefix_hex, std::string_view response_hex);
  // Answers `data` through GET RESPONSE: first 61xx announcing min(size, chunk), then each
  // GET RESPONSE (00 C0 00 00 Le) gives up to Le bytes followed by 61xx (more) or 9000.
  void OnChunked(std::string_view prefix_hex, Bytes data, std::size_t chunk);
  // Answers 6C xx (xx = size, 00 for 256) unless the command's Le equals data.size(), then
  // data || 9000.
  void OnExactLe(std::string_view prefix_hex, Bytes data);

  // Built in, after the rules: GET RESPONSE (00 C0) after a chunked answer; ECHO (80 EE P1 P2):
  // case 1 -> 9000; case 2 -> Le bytes 00 01 02 ...; cases 3 and 4 -> the command data || 9000.
  // Anything else: 6D00.

  // From now on the card is dead: empty ATR, empty R-APDUs.
  void Kill();
  void Revive();

  // iso7816::Icc
  Bytes PowerOn() override;
  void PowerOff() override;
  Bytes Atr() const override;
  Bytes Transmit(ByteView command_apdu) override;

  int power_ons() const;
  int power_offs() const;
  bool powered() const;
  std::vector<Bytes> commands() const;  // every C-APDU received, in order

 private:
  enum class Kind { kFixed, kChunked, kExactLe };
  struct Rule {
    Bytes prefix;
    Kind kind;
    Bytes payload;  // response for kFixed, data for the others
    std::size_t chunk = 0;
  };
  Bytes Answer(ByteView command_apdu);  // REQUIRES: mutex_ held
  Bytes TakePending(std::size_t max);   // REQUIRES: mutex_ held

  mutable std::mutex mutex_;
  const Bytes atr_;
  std::vector<Rule> rules_;
  std::vector<Bytes> commands_;
  Bytes pending_;  // what GET RESPONSE hands out next
  bool powered_ = false;
  bool dead_ = false;
  int power_ons_ = 0;
  int power_offs_ = 0;
};

}  // namespace medcard::reader::testing
