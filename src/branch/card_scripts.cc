#include "branch/card_scripts.h"

#include <algorithm>

#include "keys/pboc.h"

namespace medcard::branch {
namespace {

constexpr std::uint8_t kSfi15 = 0x15;
constexpr std::uint8_t kExpiryOffset = 24;  // issuerId(8) appType appVersion ASN(10) start(4)

Status CheckContext(const ScriptContext& context) {
  if (context.asn.size() != 10) {
    return MakeError("card script: an ASN is 10 bytes, got " + std::to_string(context.asn.size()));
  }
  if (context.challenge.size() != 4 && context.challenge.size() != 8) {
    return MakeError("card script: a card challenge is 4 or 8 bytes, got " +
                     std::to_string(context.challenge.size()));
  }
  return Status::Ok();
}

// Secure messaging IV (docs/card-commands.md "Secure messaging"): the challenge padded with
// zeros to 8 bytes.
Bytes SecureMessagingIv(ByteView challenge) {
  Bytes iv(challenge.begin(), challenge.end());
  iv.resize(8, 0x00);
  return iv;
}

}  // namespace

std::string_view ScriptKindName(ScriptKind kind) {
  switch (kind) {
    case ScriptKind::kApplicationUnblock:
      return "application unblock";
    case ScriptKind::kApplicationBlock:
      return "application block";
    case ScriptKind::kApplicationBlockPermanent:
      return "permanent application block";
    case ScriptKind::kChangeExpiry:
      return "validity change";
    case ScriptKind::kPinReset:
      return "PIN reset";
  }
  return "card script";
}

Result<std::string> PinBlockPan(ByteView asn) {
  const std::string digits = ToHex(asn);
  if (asn.size() != 10 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return MakeError("card script: the ASN " + digits +
                     " is not 10 bytes of decimal digits; it gives no PIN block PAN");
  }
  // A PAN has at most 19 digits and format 0 uses the 12 before its check digit: the ASN's
  // last 18 digits and a 0 in the check digit's place make those 12 the ASN's last 12.
  return digits.substr(2) + "0";
}

Result<Bytes> CardScriptBuilder::MaintenanceCommand(const ScriptContext& context, std::uint8_t cla,
                                                    std::uint8_t ins, std::uint8_t p1,
                                                    std::uint8_t p2, ByteView payload) {
  if (Status ok = CheckContext(context); !ok.ok()) return ok.error();
  auto damk = keys::CardKey(store_, "maintenance", context.asn, key_version_);
  if (!damk.ok()) return damk.error();
  keys::ScopedKey scoped(store_, *damk);
  // Lc counts the 4 MAC bytes; the MAC covers the header with that Lc and the payload.
  Bytes command = {cla, ins, p1, p2, static_cast<std::uint8_t>(payload.size() + 4)};
  Append(command, payload);
  auto mac = store_.Mac(scoped.get(), command, SecureMessagingIv(context.challenge));
  if (!mac.ok()) return mac.error();
  Append(command, *mac);
  return command;
}

Result<CardScript> CardScriptBuilder::ApplicationUnblock(const ScriptContext& context) {
  auto command = MaintenanceCommand(context, 0x84, 0x18, 0x00, 0x00, {});
  if (!command.ok()) return command.error();
  return CardScript{ScriptKind::kApplicationUnblock, std::move(command).value(), std::nullopt};
}

Result<CardScript> CardScriptBuilder::ApplicationBlock(const ScriptContext& context,
                                                       bool permanent) {
  auto command = MaintenanceCommand(context, 0x84, 0x1E, 0x00, permanent ? 0x01 : 0x00, {});
  if (!command.ok()) return command.error();
  return CardScript{
      permanent ? ScriptKind::kApplicationBlockPermanent : ScriptKind::kApplicationBlock,
      std::move(command).value(), std::nullopt};
}

Result<CardScript> CardScriptBuilder::ChangeExpiry(const ScriptContext& context,
                                                   const Date& new_expiry) {
  if (!IsValidDate(new_expiry)) {
    return MakeError("card script: the new expiry date is not a calendar date");
  }
  if (IsValidDate(context.start_date) && new_expiry <= context.start_date) {
    return MakeError("card script: the new expiry date " + new_expiry.ToString() +
                     " is not after the card's start date " + context.start_date.ToString());
  }
  const Bytes date = EncodeBcdDate(new_expiry);
  // UPDATE BINARY with an SFI: P1 = 80 | SFI, P2 = offset.
  auto command = MaintenanceCommand(context, 0x04, 0xD6, static_cast<std::uint8_t>(0x80 | kSfi15),
                                    kExpiryOffset, date);
  if (!command.ok()) return command.error();
  return CardScript{ScriptKind::kChangeExpiry, std::move(command).value(), new_expiry};
}

Result<CardScript> CardScriptBuilder::PinReset(const ScriptContext& context,
                                               std::string_view pin_key_name,
                                               ByteView encrypted_pin_block) {
  if (Status ok = CheckContext(context); !ok.ok()) return ok.error();
  auto pan = PinBlockPan(context.asn);
  if (!pan.ok()) return pan.error();
  if (!keys::IsPinEncryptionKeyName(pin_key_name)) {
    return MakeError("card script: \"" + std::string(pin_key_name) +
                     "\" is not a PIN encryption key name (pek/<workstation>)");
  }
  auto pek = store_.Find(pin_key_name);
  if (!pek.ok()) return pek.error();
  keys::ScopedKey scoped_pek(store_, *pek);
  auto dpuk = keys::CardKey(store_, "pin_unblock", context.asn, key_version_);
  if (!dpuk.ok()) return dpuk.error();
  keys::ScopedKey scoped_dpuk(store_, *dpuk);
  auto data = store_.TranslatePinForCard(scoped_pek.get(), encrypted_pin_block, *pan,
                                         scoped_dpuk.get(), context.challenge);
  if (!data.ok()) return data.error();
  Bytes command = {0x84, 0x24, 0x00, 0x00, 0x0C};
  Append(command, *data);
  return CardScript{ScriptKind::kPinReset, std::move(command), std::nullopt};
}

Result<CardScript> CardScriptBuilder::Build(const ScriptContext& context,
                                            std::optional<Date> new_expiry,
                                            std::string_view pin_key_name,
                                            ByteView encrypted_pin_block) {
  switch (context.kind) {
    case ScriptKind::kApplicationUnblock:
      return ApplicationUnblock(context);
    case ScriptKind::kApplicationBlock:
      return ApplicationBlock(context, false);
    case ScriptKind::kApplicationBlockPermanent:
      return ApplicationBlock(context, true);
    case ScriptKind::kChangeExpiry:
      if (!new_expiry) return MakeError("card script: a validity change needs the new date");
      return ChangeExpiry(context, *new_expiry);
    case ScriptKind::kPinReset:
      return PinReset(context, pin_key_name, encrypted_pin_block);
  }
  return MakeError("card script: unknown kind");
}

}  // namespace medcard::branch
