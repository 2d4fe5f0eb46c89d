#include "branch/script_runner.h"

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"
#include "iso7816/tlv.h"

namespace medcard::branch {
namespace {

using iso7816::CommandApdu;
using iso7816::ResponseApdu;
using iso7816::StatusWord;

const Bytes kMedicalAid = HexToBytes("D15600000503");
constexpr std::uint8_t kSfi15 = 0x15;
constexpr std::size_t kSfi15Size = 30;

enum class AppState { kActive, kTemporarilyBlocked };

struct SelectedCard {
  AppState state = AppState::kActive;
  Bytes sfi15;
};

std::string Hex4(StatusWord sw) { return ToHex(Bytes{sw.sw1(), sw.sw2()}); }

// What a status word means for a script (docs/card-commands.md, the block/PIN/SM commands).
std::string ScriptRefusal(StatusWord sw) {
  const std::string hex = Hex4(sw);
  switch (sw.value) {
    case 0x6988:
      return hex + " wrong MAC (a script for another card or an old challenge)";
    case 0x6984:
      return hex + " no challenge (the script did not follow its GET CHALLENGE)";
    case 0x6983:
      return hex + " the card's key is locked (the card goes back to the issuer)";
    case 0x6A80:
      return hex + " wrong data";
    case 0x6A81:
      return hex + " application blocked";
    case 0x6A88:
      return hex + " the card has no such key or PIN";
    case 0x6985:
      return hex + " conditions not satisfied";
    case 0x9303:
      return hex + " application permanently blocked";
    default:
      return hex;
  }
}

Result<ResponseApdu> Exchange(reader::Reader& reader, const CommandApdu& command,
                              std::string_view step) {
  auto response = reader::Send(reader, command);
  if (!response.ok()) {
    return MakeError("card script: " + std::string(step) + ": " + response.error().message);
  }
  return response;
}

// SELECT by name; the FCI carries SFI 15 (tag 9F0C) also when the application is temporarily
// blocked (6A81).
Result<SelectedCard> SelectMedicalApplication(reader::Reader& reader) {
  auto response =
      Exchange(reader, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kMedicalAid, 256), "SELECT");
  if (!response.ok()) return response.error();
  SelectedCard card;
  switch (response->sw.value) {
    case 0x9000:
      card.state = AppState::kActive;
      break;
    case 0x6A81:
      card.state = AppState::kTemporarilyBlocked;
      break;
    case 0x9303:
      return MakeError(
          "card script: the application is permanently blocked; the card goes back to the "
          "issuer");
    case 0x6A82:
      return MakeError("card script: not a medcard card (no medical-account application)");
    default:
      return MakeError("card script: SELECT of the medical-account application answered " +
                       Hex4(response->sw));
  }
  auto fci = iso7816::ParseBerTlv(response->data);
  const iso7816::Tlv* sfi15 = fci.ok() ? iso7816::FindTag(*fci, 0x9F0C) : nullptr;
  if (sfi15 == nullptr || sfi15->value.size() != kSfi15Size) {
    return MakeError("card script: the application's FCI carries no SFI 15 (not a medcard card)");
  }
  card.sfi15 = sfi15->value;
  return card;
}

Result<ScriptContext> ContextOf(ScriptKind kind, const SelectedCard& card) {
  const ByteView sfi15(card.sfi15);
  ScriptContext context;
  context.kind = kind;
  context.asn.assign(sfi15.begin() + 10, sfi15.begin() + 20);
  auto start = DecodeBcdDate(sfi15.subspan(20, 4));
  auto expiry = DecodeBcdDate(sfi15.subspan(24, 4));
  if (!start || !expiry) return MakeError("card script: the card's SFI 15 dates are not BCD dates");
  context.start_date = *start;
  context.expiry_date = *expiry;
  return context;
}

// The operation must fit the application's state before anything is sent.
Status CheckState(ScriptKind kind, AppState state) {
  const bool blocked = state == AppState::kTemporarilyBlocked;
  switch (kind) {
    case ScriptKind::kApplicationUnblock:
      if (!blocked) return MakeError("card script: the application is not blocked");
      return Status::Ok();
    case ScriptKind::kApplicationBlock:
    case ScriptKind::kApplicationBlockPermanent:
      // A temporarily blocked application takes no block command (6A81): unblock it first.
      if (blocked) return MakeError("card script: the application is already blocked");
      return Status::Ok();
    case ScriptKind::kChangeExpiry:
    case ScriptKind::kPinReset:
      if (blocked) {
        return MakeError("card script: the application is blocked; unblock it before a " +
                         std::string(ScriptKindName(kind)));
      }
      return Status::Ok();
  }
  return Status::Ok();
}

// After the script: what the card now shows.
Result<ScriptOutcome> Confirm(reader::Reader& reader, const ScriptContext& context,
                              const CardScript& script) {
  ScriptOutcome outcome;
  outcome.kind = script.kind;
  outcome.asn = context.asn;
  switch (script.kind) {
    case ScriptKind::kApplicationUnblock:
    case ScriptKind::kApplicationBlock:
    case ScriptKind::kApplicationBlockPermanent: {
      auto response = Exchange(reader, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kMedicalAid, 256),
                               "SELECT after the script");
      if (!response.ok()) return response.error();
      const std::uint16_t want = script.kind == ScriptKind::kApplicationUnblock ? 0x9000
                                 : script.kind == ScriptKind::kApplicationBlock ? 0x6A81
                                                                                : 0x9303;
      if (response->sw.value != want) {
        return MakeError("card script: the card accepted the " +
                         std::string(ScriptKindName(script.kind)) + " but SELECT answers " +
                         Hex4(response->sw));
      }
      outcome.message = script.kind == ScriptKind::kApplicationUnblock ? "application unblocked"
                        : script.kind == ScriptKind::kApplicationBlock
                            ? "application blocked (temporary)"
                            : "application blocked permanently";
      return outcome;
    }
    case ScriptKind::kChangeExpiry: {
      auto response =
          Exchange(reader, CommandApdu::Case2(0x00, 0xB0, 0x80 | kSfi15, 0x00, kSfi15Size),
                   "READ BINARY SFI 15");
      if (!response.ok()) return response.error();
      if (!response->ok() || response->data.size() != kSfi15Size) {
        return MakeError("card script: READ BINARY SFI 15 after the validity change answered " +
                         Hex4(response->sw));
      }
      auto expiry = DecodeBcdDate(ByteView(response->data).subspan(24, 4));
      if (!expiry || !script.new_expiry || *expiry != *script.new_expiry) {
        return MakeError(
            "card script: the card accepted the validity change but SFI 15 does not show the "
            "new expiry date");
      }
      outcome.expiry = *expiry;
      outcome.message = "expiry changed to " + expiry->ToString();
      return outcome;
    }
    case ScriptKind::kPinReset: {
      // VERIFY without data: 63Cx, x = tries left, when the PIN is not verified.
      auto response =
          Exchange(reader, CommandApdu::Case1(0x00, 0x20, 0x00, 0x00), "VERIFY (PIN state)");
      if (!response.ok()) return response.error();
      if (response->sw.sw1() != 0x63 || (response->sw.sw2() & 0xF0) != 0xC0) {
        return MakeError("card script: after the PIN reset the PIN state is " + Hex4(response->sw));
      }
      outcome.pin_tries = response->sw.sw2() & 0x0F;
      outcome.message = "PIN reset: tries " + std::to_string(*outcome.pin_tries);
      return outcome;
    }
  }
  return MakeError("card script: unknown kind");
}

Result<ScriptOutcome> RunInTransaction(reader::Reader& reader, ScriptKind kind,
                                       const ScriptSource& source) {
  auto selected = SelectMedicalApplication(reader);
  if (!selected.ok()) return selected.error();
  if (Status ok = CheckState(kind, selected->state); !ok.ok()) return ok.error();
  auto context = ContextOf(kind, *selected);
  if (!context.ok()) return context.error();

  auto challenge = Exchange(reader, CommandApdu::Case2(0x00, 0x84, 0x00, 0x00, 4), "GET CHALLENGE");
  if (!challenge.ok()) return challenge.error();
  if (!challenge->ok() || challenge->data.size() != 4) {
    return MakeError("card script: GET CHALLENGE answered " + Hex4(challenge->sw));
  }
  context->challenge = challenge->data;

  auto script = source(*context);
  if (!script.ok()) return script.error();
  if (script->kind != kind) {
    return MakeError("card script: asked for a " + std::string(ScriptKindName(kind)) +
                     " script, got a " + std::string(ScriptKindName(script->kind)) +
                     " one; nothing sent");
  }
  auto parsed = CommandApdu::Parse(script->command);
  if (!std::holds_alternative<CommandApdu>(parsed)) {
    return MakeError("card script: the script's command is not a well-formed APDU; nothing sent");
  }
  auto answer = Exchange(reader, std::get<CommandApdu>(parsed), ScriptKindName(kind));
  if (!answer.ok()) return answer.error();
  if (!answer->ok()) {
    return MakeError("card script: card refused the " + std::string(ScriptKindName(kind)) + ": " +
                     ScriptRefusal(answer->sw));
  }
  return Confirm(reader, *context, *script);
}

}  // namespace

Result<ScriptOutcome> RunCardScript(reader::Reader& reader, ScriptKind kind,
                                    const ScriptSource& source) {
  if (!reader.Connected()) {
    if (auto atr = reader.Connect(); !atr.ok()) {
      return MakeError("card script: " + atr.error().message);
    }
  }
  auto transaction = reader::Transaction::Begin(reader);
  if (!transaction.ok()) return MakeError("card script: " + transaction.error().message);
  auto outcome = RunInTransaction(reader, kind, source);
  (void)transaction->End();
  return outcome;
}

Result<Bytes> EncryptPinBlockAtPinPad(ByteView pin_encryption_key, std::string_view pin,
                                      ByteView asn) {
  auto pan = PinBlockPan(asn);
  if (!pan.ok()) return pan.error();
  auto cipher = crypto::BlockCipher::Des(pin_encryption_key);
  if (!cipher.ok()) return cipher.error();
  auto block = crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, *pan);
  if (!block.ok()) return block.error();
  Bytes encrypted = cipher->EncryptEcb(*block);
  SecureWipe(*block);
  return encrypted;
}

}  // namespace medcard::branch
