// Challenge, authentication, PIN management and blocking (docs/card-commands.md, "Security").
#include <algorithm>

#include "card/engine.h"
#include "common/bcd.h"
#include "crypto/crypto.h"

namespace medcard::card::internal {

namespace sw = iso7816::sw;

namespace {

constexpr std::size_t kPinDigits = 6;  // pboc-ed-ep.md, medcard profile rules

// A PIN field: packed BCD, F-padded to whole bytes and no longer than that.
std::optional<std::string> ParsePinField(ByteView field) {
  auto digits = UnpackDigitsFPadded(field);
  if (!digits || digits->empty() || field.size() != (digits->size() + 1) / 2) {
    return std::nullopt;
  }
  return digits;
}

// PIN UNBLOCK / SET PIN block: len(1, bytes of packed PIN) ‖ packed PIN ‖ 80 00.. (8 bytes).
std::optional<std::string> ParsePinBlock(ByteView block) {
  if (block.size() != 8) return std::nullopt;
  const std::size_t length = block[0];
  if (length == 0 || length > 6) return std::nullopt;
  if (block[1 + length] != 0x80) return std::nullopt;
  for (std::size_t i = 2 + length; i < block.size(); ++i) {
    if (block[i] != 0x00) return std::nullopt;
  }
  return ParsePinField(block.subspan(1, length));
}

}  // namespace

std::optional<std::string> ParseEncipheredPin(ByteView key, ByteView cryptogram) {
  auto cipher = crypto::BlockCipher::Des(key);
  if (!cipher.ok() || cryptogram.size() != 8) return std::nullopt;
  Bytes block = cipher->DecryptEcb(cryptogram);
  auto pin = ParsePinBlock(View(block));
  SecureWipe(block);
  return pin;
}

Reply Engine::GetChallenge(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (!a.data.empty() || !a.le || (*a.le != 4 && *a.le != 8)) return Sw(sw::kWrongLength);
  Bytes challenge = Random(*a.le);
  challenge_ = challenge;
  return Reply{std::move(challenge), sw::kOk};
}

// GET DATA 80 CA 00 01 08 (medcard): the chip serial, so a personalisation station can derive
// the card's transport key for a blank card in its reader. Free in every lifecycle state.
Reply Engine::GetData(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x01) return Sw(sw::kReferencedDataNotFound);
  if (!a.data.empty() || !a.le) return Sw(sw::kWrongLength);
  return Answer(a, Bytes(state_.chip_serial.begin(), state_.chip_serial.end()));
}

Reply Engine::ExternalAuthenticate(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 8) return Sw(sw::kWrongLength);
  Key* key = FindKey(sel_.current_df, KeyUsage::kExternalAuth, a.p2);
  if (key == nullptr) return Sw(sw::kReferencedDataNotFound);
  if (key->locked()) return Sw(sw::kBlocked);
  if (!ctx.challenge) return Sw(sw::kRandomInvalid);
  // cryptogram = 3DES(key, challenge padded with zeros to 8 bytes)
  Bytes block = *ctx.challenge;
  block.resize(8, 0x00);
  auto cipher = crypto::BlockCipher::Des(View(key->value));
  if (!cipher.ok()) return Sw(sw::kUnknown);
  const Bytes expected = cipher->EncryptEcb(View(block));
  if (!CheckMac(*key, View(expected), View(a.data))) {
    // 63Cx: x more tries before the key locks; 6300 for a key without an error limit.
    if (key->error_limit == 0) return Sw(StatusWord(0x6300));
    return Sw(sw::PinWrong(std::max(key->error_limit - key->error_count, 0)));
  }
  sel_.external_auth.set(a.p2);
  return Sw(sw::kOk);
}

Reply Engine::InternalAuthenticate(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 8) return Sw(sw::kWrongLength);
  Key* key = FindKey(sel_.current_df, KeyUsage::kInternalAuth, a.p2);
  if (key == nullptr) return Sw(sw::kReferencedDataNotFound);
  if (key->locked()) return Sw(sw::kBlocked);
  auto cipher = crypto::BlockCipher::Des(View(key->value));
  if (!cipher.ok()) return Sw(sw::kUnknown);
  return Answer(a, cipher->EncryptEcb(View(a.data)));
}

Reply Engine::Verify(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (!a.data.empty() && (a.data.size() < 2 || a.data.size() > 6)) {
    return Sw(sw::kWrongLength);
  }
  if (!df().pin) return Sw(sw::kReferencedDataNotFound);
  Pin& pin = *df().pin;
  if (a.data.empty()) {  // ISO 7816-4: VERIFY without data asks for the state
    if (pin.tries_left == 0) return Sw(sw::kBlocked);
    return Sw(sel_.pin_verified ? sw::kOk : sw::PinWrong(pin.tries_left));
  }
  const auto digits = ParsePinField(View(a.data));
  if (!digits) return Sw(sw::kWrongData);
  if (pin.tries_left == 0) return Sw(sw::kBlocked);
  if (!PinMatches(pin, *digits)) {
    --pin.tries_left;
    sel_.pin_verified = false;
    MarkDirty();
    return Sw(sw::PinWrong(pin.tries_left));
  }
  if (pin.tries_left != pin.try_limit) {
    pin.tries_left = pin.try_limit;
    MarkDirty();
  }
  sel_.pin_verified = true;
  return Sw(sw::kOk);
}

Reply Engine::ChangeOrReloadPin(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 > 0x01 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  const ByteView data = View(a.data);
  if (a.p1 == 0x01) {
    // CHANGE PIN: oldPIN ‖ FF ‖ newPIN
    if (data.size() < 5 || data.size() > 13) return Sw(sw::kWrongLength);
    if (!df().pin) return Sw(sw::kReferencedDataNotFound);
    const auto separator = std::find(data.begin(), data.end(), 0xFF);
    if (separator == data.end()) return Sw(sw::kWrongData);
    const std::size_t split = static_cast<std::size_t>(separator - data.begin());
    const auto old_pin = ParsePinField(data.first(split));
    const auto new_pin = ParsePinField(data.subspan(split + 1));
    if (!old_pin || !new_pin || new_pin->size() != kPinDigits) return Sw(sw::kWrongData);
    Pin& pin = *df().pin;
    if (pin.tries_left == 0) return Sw(sw::kBlocked);
    if (!PinMatches(pin, *old_pin)) {
      --pin.tries_left;
      sel_.pin_verified = false;
      MarkDirty();
      return Sw(sw::PinWrong(pin.tries_left));
    }
    SetPin(pin, *new_pin);
    sel_.pin_verified = true;
    return Sw(sw::kOk);
  }
  // RELOAD PIN: newPIN ‖ MAC(DRPK_L xor DRPK_R, IV 0, over newPIN)
  if (data.size() < 6 || data.size() > 10) return Sw(sw::kWrongLength);
  if (!df().pin) return Sw(sw::kReferencedDataNotFound);
  const ByteView field = data.first(data.size() - 4);
  const auto new_pin = ParsePinField(field);
  if (!new_pin || new_pin->size() != kPinDigits) return Sw(sw::kWrongData);
  Key* key = FirstKey(sel_.current_df, KeyUsage::kPinReload);
  if (key == nullptr) return Sw(sw::kReferencedDataNotFound);
  if (key->locked()) return Sw(sw::kBlocked);
  auto mac_key = crypto::TacKey(View(key->value));  // the same L xor R fold as the TAC key
  if (!mac_key.ok()) return Sw(sw::kUnknown);
  auto expected = crypto::PbocMac(View(*mac_key), field);
  SecureWipe(*mac_key);
  if (!expected.ok()) return Sw(sw::kUnknown);
  if (!CheckMac(*key, View(*expected), data.last(4))) return Sw(sw::kMacInvalid);
  SetPin(*df().pin, *new_pin);
  return Sw(sw::kOk);
}

Reply Engine::PinUnblock(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 12) return Sw(sw::kWrongLength);
  if (!df().pin) return Sw(sw::kReferencedDataNotFound);
  Key* key = FirstKey(sel_.current_df, KeyUsage::kPinUnblock);
  if (key == nullptr) return Sw(sw::kReferencedDataNotFound);
  const ByteView data = View(a.data);
  if (const StatusWord s = VerifySm(ctx, *key, data.first(8), data.last(4)); !s.ok()) {
    return Sw(s);
  }
  const auto pin = ParseEncipheredPin(View(key->value), data.first(8));
  if (!pin || pin->size() != kPinDigits) return Sw(sw::kWrongData);
  SetPin(*df().pin, *pin);
  return Sw(sw::kOk);
}

Reply Engine::ApplicationBlock(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 > 0x01) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 4) return Sw(sw::kWrongLength);
  if (sel_.current_df == 0) return Sw(sw::kConditionsNotSatisfied);  // the MF is no application
  if (const StatusWord s =
          VerifySmWithUsage(ctx, sel_.current_df, KeyUsage::kMaintenance, {}, View(a.data));
      !s.ok()) {
    return Sw(s);
  }
  df().block = a.p2 == 0x00 ? AppBlock::kTemporary : AppBlock::kPermanent;
  ClearSecurity();
  MarkDirty();
  return Sw(sw::kOk);
}

Reply Engine::ApplicationUnblock(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 4) return Sw(sw::kWrongLength);
  if (const StatusWord s =
          VerifySmWithUsage(ctx, sel_.current_df, KeyUsage::kMaintenance, {}, View(a.data));
      !s.ok()) {
    return Sw(s);
  }
  // The issuer's unblock also lifts every key lock of the application (pboc-ed-ep.md: a key
  // locked by MAC failures stays locked "until APPLICATION UNBLOCK").
  File& app = df();
  app.block = AppBlock::kNone;
  for (Key& key : app.keys) key.error_count = 0;
  MarkDirty();
  return Sw(sw::kOk);
}

Reply Engine::CardBlock(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 4) return Sw(sw::kWrongLength);
  if (const StatusWord s =
          VerifySmWithUsage(ctx, sel_.current_df, KeyUsage::kMaintenance, {}, View(a.data));
      !s.ok()) {
    return Sw(s);
  }
  state_.lifecycle = Lifecycle::kBlocked;
  MarkDirty();
  return Sw(sw::kOk);
}

}  // namespace medcard::card::internal
