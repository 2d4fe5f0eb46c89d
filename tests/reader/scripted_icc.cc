#include "scripted_icc.h"

#include <algorithm>
#include <utility>
#include <variant>

#include "iso7816/apdu.h"
#include "iso7816/status.h"

namespace medcard::reader::testing {

namespace {

Bytes Historical(std::string_view text) { return Bytes(text.begin(), text.end()); }

bool StartsWith(ByteView data, ByteView prefix) {
  return data.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), data.begin());
}

Bytes WithSw(Bytes data, iso7816::StatusWord sw) {
  data.push_back(sw.sw1());
  data.push_back(sw.sw2());
  return data;
}

}  // namespace

Bytes T1Atr(std::string_view historical_bytes) {
  const Bytes history = Historical(historical_bytes);
  Bytes atr = {0x3B, static_cast<std::uint8_t>(0x80 | history.size()), 0x80, 0x01};
  Append(atr, View(history));
  std::uint8_t tck = 0;  // XOR of T0 .. last historical byte
  for (std::size_t i = 1; i < atr.size(); ++i) tck ^= atr[i];
  atr.push_back(tck);
  return atr;
}

Bytes T0Atr(std::string_view historical_bytes) {
  const Bytes history = Historical(historical_bytes);
  Bytes atr = {0x3B, static_cast<std::uint8_t>(history.size())};
  Append(atr, View(history));
  return atr;
}

ScriptedIcc::ScriptedIcc(Bytes atr) : atr_(std::move(atr)) {}

void ScriptedIcc::On(std::string_view prefix_hex, std::string_view response_hex) {
  std::lock_guard lock(mutex_);
  rules_.push_back({HexToBytes(prefix_hex), Kind::kFixed, HexToBytes(response_hex)});
}

void ScriptedIcc::OnChunked(std::string_view prefix_hex, Bytes data, std::size_t chunk) {
  std::lock_guard lock(mutex_);
  rules_.push_back({HexToBytes(prefix_hex), Kind::kChunked, std::move(data), chunk});
}

void ScriptedIcc::OnExactLe(std::string_view prefix_hex, Bytes data) {
  std::lock_guard lock(mutex_);
  rules_.push_back({HexToBytes(prefix_hex), Kind::kExactLe, std::move(data)});
}

void ScriptedIcc::Kill() {
  std::lock_guard lock(mutex_);
  dead_ = true;
}

void ScriptedIcc::Revive() {
  std::lock_guard lock(mutex_);
  dead_ = false;
}

Bytes ScriptedIcc::PowerOn() {
  std::lock_guard lock(mutex_);
  ++power_ons_;
  powered_ = true;
  pending_.clear();
  return dead_ ? Bytes{} : atr_;
}

void ScriptedIcc::PowerOff() {
  std::lock_guard lock(mutex_);
  ++power_offs_;
  powered_ = false;
  pending_.clear();
}

Bytes ScriptedIcc::Atr() const {
  std::lock_guard lock(mutex_);
  return dead_ ? Bytes{} : atr_;
}

Bytes ScriptedIcc::Transmit(ByteView command_apdu) {
  std::lock_guard lock(mutex_);
  commands_.emplace_back(command_apdu.begin(), command_apdu.end());
  if (dead_) return {};
  if (!powered_) return iso7816::Respond(iso7816::sw::kUnknown);
  return Answer(command_apdu);
}

Bytes ScriptedIcc::TakePending(std::size_t max) {
  const std::size_t n = std::min(max, pending_.size());
  Bytes out(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
  return out;
}

Bytes ScriptedIcc::Answer(ByteView command_apdu) {
  const auto parsed = iso7816::CommandApdu::Parse(command_apdu);
  if (const auto* sw = std::get_if<iso7816::StatusWord>(&parsed)) return iso7816::Respond(*sw);
  const auto& command = std::get<iso7816::CommandApdu>(parsed);

  const bool get_response = command.cla == 0x00 && command.ins == 0xC0;
  if (!get_response) pending_.clear();

  for (const Rule& rule : rules_) {
    if (!StartsWith(command_apdu, View(rule.prefix))) continue;
    switch (rule.kind) {
      case Kind::kFixed:
        return rule.payload;
      case Kind::kChunked: {
        pending_ = rule.payload;
        const auto first =
            static_cast<std::uint8_t>(std::min(rule.chunk, pending_.size()));  // 256 -> 00
        return iso7816::Respond(iso7816::sw::BytesAvailable(first));
      }
      case Kind::kExactLe:
        if (command.le && *command.le == rule.payload.size()) {
          return WithSw(rule.payload, iso7816::sw::kOk);
        }
        return iso7816::Respond(
            iso7816::sw::WrongLe(static_cast<std::uint8_t>(rule.payload.size())));
    }
  }

  // GET RESPONSE hands out what a 61xx announced.
  if (get_response) {
    if (pending_.empty()) return iso7816::Respond(iso7816::sw::kConditionsNotSatisfied);
    Bytes data = TakePending(command.le.value_or(256));
    if (pending_.empty()) return WithSw(std::move(data), iso7816::sw::kOk);
    const auto more = static_cast<std::uint8_t>(std::min<std::size_t>(pending_.size(), 256));
    return WithSw(std::move(data), iso7816::sw::BytesAvailable(more));
  }
  if (command.cla == 0x80 && command.ins == 0xEE) {  // ECHO
    if (!command.data.empty()) return WithSw(command.data, iso7816::sw::kOk);
    Bytes counting(command.le.value_or(0));
    for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i);
    return WithSw(std::move(counting), iso7816::sw::kOk);
  }
  return iso7816::Respond(iso7816::sw::kInsNotSupported);
}

int ScriptedIcc::power_ons() const {
  std::lock_guard lock(mutex_);
  return power_ons_;
}

int ScriptedIcc::power_offs() const {
  std::lock_guard lock(mutex_);
  return power_offs_;
}

bool ScriptedIcc::powered() const {
  std::lock_guard lock(mutex_);
  return powered_;
}

std::vector<Bytes> ScriptedIcc::commands() const {
  std::lock_guard lock(mutex_);
  return commands_;
}

}  // namespace medcard::reader::testing
