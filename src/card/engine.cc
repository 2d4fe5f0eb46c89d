// Command dispatch and the machinery every command shares: keys, MACs, secure messaging,
// access conditions, PIN hashing (docs/card-commands.md, "Processing order").
#include "card/engine.h"

#include <openssl/evp.h>

#include <algorithm>
#include <utility>

#include "crypto/crypto.h"

namespace medcard::card::internal {

namespace sw = iso7816::sw;

namespace {

// CLA bytes the card knows, as bits of Command::classes.
constexpr std::uint8_t kClaIso = 0x01;     // 00
constexpr std::uint8_t kClaIsoSm = 0x02;   // 04
constexpr std::uint8_t kClaProp = 0x04;    // 80
constexpr std::uint8_t kClaPropSm = 0x08;  // 84

std::uint8_t ClassBit(std::uint8_t cla) {
  switch (cla) {
    case 0x00:
      return kClaIso;
    case 0x04:
      return kClaIsoSm;
    case 0x80:
      return kClaProp;
    case 0x84:
      return kClaPropSm;
    default:
      return 0;
  }
}

enum class Phase { kAny, kOperational, kPersonalisation };

}  // namespace

struct Engine::Command {
  std::uint8_t ins;
  std::uint8_t classes;
  Phase phase;
  bool allowed_when_app_blocked;  // temporarily blocked application (pboc-ed-ep.md)
  Handler handler;
};

const Engine::Command* Engine::Lookup(std::uint8_t ins) {
  static constexpr Command kCommands[] = {
      {0xA4, kClaIso, Phase::kAny, true, &Engine::Select},
      {0xB0, kClaIso | kClaIsoSm, Phase::kAny, false, &Engine::ReadBinary},
      {0xD6, kClaIso | kClaIsoSm, Phase::kAny, false, &Engine::UpdateBinary},
      {0xB2, kClaIso | kClaIsoSm, Phase::kAny, false, &Engine::ReadRecord},
      {0xDC, kClaIso | kClaIsoSm, Phase::kAny, false, &Engine::UpdateRecord},
      {0xE2, kClaIso | kClaIsoSm, Phase::kAny, false, &Engine::AppendRecord},
      {0x84, kClaIso, Phase::kAny, true, &Engine::GetChallenge},
      {0xCA, kClaProp, Phase::kAny, true, &Engine::GetData},
      {0x82, kClaIso, Phase::kAny, false, &Engine::ExternalAuthenticate},
      {0x88, kClaIso, Phase::kAny, false, &Engine::InternalAuthenticate},
      {0x20, kClaIso, Phase::kAny, false, &Engine::Verify},
      {0x5E, kClaProp, Phase::kOperational, false, &Engine::ChangeOrReloadPin},
      {0x24, kClaPropSm, Phase::kOperational, false, &Engine::PinUnblock},
      {0x1E, kClaPropSm, Phase::kOperational, false, &Engine::ApplicationBlock},
      {0x18, kClaPropSm, Phase::kOperational, true, &Engine::ApplicationUnblock},
      {0x16, kClaPropSm, Phase::kOperational, false, &Engine::CardBlock},
      {0x50, kClaProp, Phase::kOperational, false, &Engine::Initialize},
      {0x52, kClaProp, Phase::kOperational, false, &Engine::CreditForLoad},
      {0x54, kClaProp, Phase::kOperational, false, &Engine::Debit},
      {0x58, kClaProp, Phase::kOperational, false, &Engine::UpdateOverdrawLimit},
      {0x5A, kClaProp, Phase::kOperational, false, &Engine::GetTransactionProve},
      {0x5C, kClaProp, Phase::kOperational, false, &Engine::GetBalance},
      {0xE0, kClaProp, Phase::kPersonalisation, false, &Engine::CreateFile},
      {0xD4, kClaPropSm, Phase::kPersonalisation, false, &Engine::WriteKey},
      {0xD8, kClaPropSm, Phase::kPersonalisation, false, &Engine::SetPinCommand},
      {0xEE, kClaPropSm, Phase::kPersonalisation, false, &Engine::EndPersonalisation},
  };
  for (const Command& c : kCommands) {
    if (c.ins == ins) return &c;
  }
  return nullptr;
}

std::optional<std::size_t> FixedAnswerLength(const CommandApdu& apdu) {
  switch (apdu.ins) {
    case 0x88:  // INTERNAL AUTHENTICATE
    case 0x5A:  // GET TRANSACTION PROVE
      return 8;
    case 0x52:  // CREDIT FOR LOAD
    case 0x58:  // UPDATE OVERDRAW LIMIT
    case 0x5C:  // GET BALANCE
      return 4;
    case 0x54:  // DEBIT: purchase/cash TAC ‖ MAC2, unload TAC
      if (apdu.p1 == 0x01) return 8;
      if (apdu.p1 == 0x03) return 4;
      return std::nullopt;
    case 0x50:  // INITIALIZE
      switch (apdu.p1) {
        case 0x00:  // load
        case 0x05:  // unload
          return 16;
        case 0x01:  // purchase
        case 0x02:  // cash withdraw
          return 15;
        case 0x04:  // overdraw-limit update
          return 19;
        default:
          return std::nullopt;
      }
    default:
      return std::nullopt;
  }
}

Engine::Engine(CardState state, std::function<Bytes(std::size_t)> random)
    : state_(std::move(state)), random_(std::move(random)) {}

void Engine::CancelVolatile() {
  pending_.reset();
  challenge_.reset();
}

void Engine::PowerCycle() {
  sel_ = Selection{};
  saved_sel_ = sel_;
  CancelVolatile();
}

Status Engine::Rollback(ByteView committed) {
  auto restored = ParseState(committed);
  if (!restored.ok()) return restored.error();
  state_ = std::move(restored).value();
  sel_ = saved_sel_;
  dirty_ = false;
  return Status::Ok();
}

Reply Engine::Execute(const CommandApdu& apdu) {
  saved_sel_ = sel_;
  auto refuse = [this](StatusWord word) {
    CancelVolatile();
    return Sw(word);
  };
  if (state_.lifecycle == Lifecycle::kBlocked) return refuse(sw::kFunctionNotSupported);
  // The ATR announces no extended length fields.
  if (apdu.extended) return refuse(sw::kWrongLength);
  const std::uint8_t cla_bit = ClassBit(apdu.cla);
  if (cla_bit == 0) return refuse(sw::kClaNotSupported);
  const Command* command = Lookup(apdu.ins);
  if (command == nullptr) return refuse(sw::kInsNotSupported);
  if ((command->classes & cla_bit) == 0) return refuse(sw::kClaNotSupported);

  // pboc-ed-ep.md: a temporarily blocked application still takes SELECT, GET CHALLENGE and
  // APPLICATION UNBLOCK; a permanently blocked one answers 9303 to everything but SELECT.
  const AppBlock block = df().block;
  if (block == AppBlock::kPermanent && apdu.ins != 0xA4) {
    return refuse(sw::kAppPermanentlyBlocked);
  }
  if (block == AppBlock::kTemporary && !command->allowed_when_app_blocked) {
    return refuse(sw::kFunctionNotSupported);
  }
  if (command->phase == Phase::kOperational && state_.lifecycle != Lifecycle::kOperational) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  if (command->phase == Phase::kPersonalisation &&
      state_.lifecycle != Lifecycle::kPersonalisation) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  // 6Cxx asks the terminal to resend the same command with the right Le: nothing is executed
  // and nothing volatile is lost, so the resent DEBIT still finds its INITIALIZE.
  if (const auto length = FixedAnswerLength(apdu); length && apdu.le && *apdu.le < *length) {
    return Sw(sw::WrongLe(static_cast<std::uint8_t>(*length)));
  }

  Ctx ctx{apdu, std::exchange(pending_, std::nullopt), std::exchange(challenge_, std::nullopt)};
  return (this->*(command->handler))(ctx);
}

Reply Engine::Answer(const CommandApdu& apdu, Bytes data) {
  if (apdu.le && *apdu.le < data.size()) {
    // 256 and more is what Le 00 asks for; the card never answers more than 256 bytes.
    return Sw(sw::WrongLe(static_cast<std::uint8_t>(data.size() & 0xFF)));
  }
  return Reply{std::move(data), sw::kOk};
}

Bytes Engine::Random(std::size_t n) {
  Bytes out = random_ ? random_(n) : crypto::RandomBytes(n);
  out.resize(n, 0x00);
  return out;
}

Key* Engine::FindKey(int df_index, KeyUsage usage, std::uint8_t index) {
  for (Key& key : file(df_index).keys) {
    if (key.usage == usage && key.index == index) return &key;
  }
  return nullptr;
}

Key* Engine::FirstKey(int df_index, KeyUsage usage) {
  // The key file is kept sorted by (usage, index): the first match has the lowest index.
  for (Key& key : file(df_index).keys) {
    if (key.usage == usage) return &key;
  }
  return nullptr;
}

bool Engine::CheckMac(Key& key, ByteView expected, ByteView got) {
  if (ConstantTimeEqual(expected, got)) {
    if (key.error_count != 0) {
      key.error_count = 0;
      MarkDirty();
    }
    return true;
  }
  if (key.error_count < 0xFF) ++key.error_count;
  MarkDirty();
  return false;
}

StatusWord Engine::VerifySm(Ctx& ctx, Key& key, ByteView payload, ByteView mac) {
  if (key.locked()) return sw::kBlocked;
  if (!ctx.challenge) return sw::kRandomInvalid;
  Bytes input{ctx.apdu.cla, ctx.apdu.ins, ctx.apdu.p1, ctx.apdu.p2,
              static_cast<std::uint8_t>(ctx.apdu.data.size())};
  Append(input, payload);
  Bytes iv = *ctx.challenge;
  iv.resize(8, 0x00);
  auto expected = crypto::PbocMac(View(key.value), View(input), View(iv));
  if (!expected.ok()) return sw::kUnknown;
  return CheckMac(key, View(*expected), mac) ? sw::kOk : sw::kSmMacWrong;
}

StatusWord Engine::VerifySmWithUsage(Ctx& ctx, int df_index, KeyUsage usage, ByteView payload,
                                     ByteView mac) {
  Key* key = FirstKey(df_index, usage);
  if (key == nullptr) return sw::kReferencedDataNotFound;
  return VerifySm(ctx, *key, payload, mac);
}

StatusWord Engine::VerifyTransportMac(Ctx& ctx, ByteView payload, ByteView mac) {
  if (state_.transport_key.empty()) return sw::kConditionsNotSatisfied;
  if (state_.transport_key_errors >= kTransportKeyErrorLimit) return sw::kBlocked;
  if (!ctx.challenge) return sw::kRandomInvalid;
  Bytes input{ctx.apdu.cla, ctx.apdu.ins, ctx.apdu.p1, ctx.apdu.p2,
              static_cast<std::uint8_t>(ctx.apdu.data.size())};
  Append(input, payload);
  Bytes iv = *ctx.challenge;
  iv.resize(8, 0x00);
  auto expected = crypto::PbocMac(View(state_.transport_key), View(input), View(iv));
  if (!expected.ok()) return sw::kUnknown;
  if (!ConstantTimeEqual(View(*expected), mac)) {
    ++state_.transport_key_errors;
    MarkDirty();
    return sw::kSmMacWrong;
  }
  if (state_.transport_key_errors != 0) {
    state_.transport_key_errors = 0;
    MarkDirty();
  }
  return sw::kOk;
}

StatusWord Engine::CheckAccess(Ctx& ctx, const AccessCondition& ac, bool write, ByteView payload,
                               ByteView mac) {
  if (ctx.sm()) {
    // A MAC proves knowledge of the key the access condition names; no other key will do.
    if (ac.kind != AccessKind::kSecureMessaging) return sw::kSecurityNotSatisfied;
    return VerifySmWithUsage(ctx, sel_.current_df, static_cast<KeyUsage>(ac.key_ref), payload, mac);
  }
  // Personalisation writes initial contents freely (docs/card-commands.md).
  if (write && state_.lifecycle == Lifecycle::kPersonalisation) return sw::kOk;
  switch (ac.kind) {
    case AccessKind::kFree:
      return sw::kOk;
    case AccessKind::kPin:
      return sel_.pin_verified ? sw::kOk : sw::kSecurityNotSatisfied;
    case AccessKind::kSecureMessaging:
      return sw::kSmMissing;
    case AccessKind::kExternalAuth:
      return sel_.external_auth.test(ac.key_ref) ? sw::kOk : sw::kSecurityNotSatisfied;
    case AccessKind::kNever:
      return sw::kSecurityNotSatisfied;
  }
  return sw::kSecurityNotSatisfied;
}

int Engine::FindChildEf(int df_index, std::uint8_t sfi) {
  for (int child : state_.children[static_cast<std::size_t>(df_index)]) {
    const File& f = file(child);
    if (!f.is_df() && f.sfi == sfi) return child;
  }
  return kNoFile;
}

int Engine::FindSfi(std::uint8_t sfi) { return FindChildEf(sel_.current_df, sfi); }

void Engine::ClearSecurity() {
  sel_.pin_verified = false;
  sel_.external_auth.reset();
}

namespace {

std::array<std::uint8_t, 32> PinHash(const std::array<std::uint8_t, 16>& salt,
                                     std::string_view digits) {
  std::array<std::uint8_t, 32> hash{};
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  const bool ok = md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(md, salt.data(), salt.size()) == 1 &&
                  EVP_DigestUpdate(md, digits.data(), digits.size()) == 1 &&
                  EVP_DigestFinal_ex(md, hash.data(), nullptr) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) hash.fill(0);  // OpenSSL out of memory: PinMatches refuses an all-zero digest
  return hash;
}

}  // namespace

bool Engine::PinMatches(const Pin& pin, std::string_view digits) const {
  const auto hash = PinHash(pin.salt, digits);
  const bool computed = std::any_of(hash.begin(), hash.end(), [](std::uint8_t b) { return b; });
  return computed && ConstantTimeEqual(ByteView(hash), ByteView(pin.hash));
}

void Engine::SetPin(Pin& pin, std::string_view digits) {
  const Bytes salt = Random(pin.salt.size());
  std::copy(salt.begin(), salt.end(), pin.salt.begin());
  pin.hash = PinHash(pin.salt, digits);
  pin.tries_left = pin.try_limit;
  MarkDirty();
}

}  // namespace medcard::card::internal
