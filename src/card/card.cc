// The card as a device: power, ATR, and the all-or-nothing execution of every command
// (DESIGN.md, Reliability; docs/card-image-content.md).
#include "card/card.h"

#include <utility>

#include "card/engine.h"
#include "card/state.h"
#include "iso7816/apdu.h"

namespace medcard::card {

namespace sw = iso7816::sw;
using internal::CardState;
using internal::Engine;
using internal::Reply;

std::optional<KeyUsage> KeyUsageFromByte(std::uint8_t b) {
  if (b >= static_cast<std::uint8_t>(KeyUsage::kPurchase) &&
      b <= static_cast<std::uint8_t>(KeyUsage::kInternalAuth)) {
    return static_cast<KeyUsage>(b);
  }
  return std::nullopt;
}

std::string_view KeyUsageName(KeyUsage usage) {
  switch (usage) {
    case KeyUsage::kPurchase:
      return "purchase";
    case KeyUsage::kLoad:
      return "load";
    case KeyUsage::kTac:
      return "tac";
    case KeyUsage::kUnload:
      return "unload";
    case KeyUsage::kOverdrawUpdate:
      return "overdraw";
    case KeyUsage::kPinUnblock:
      return "pin_unblock";
    case KeyUsage::kPinReload:
      return "pin_reload";
    case KeyUsage::kMaintenance:
      return "maintenance";
    case KeyUsage::kVisitRecord:
      return "visit_record";
    case KeyUsage::kExternalAuth:
      return "external_auth";
    case KeyUsage::kInternalAuth:
      return "internal_auth";
  }
  return "unknown";
}

std::string_view FileTypeName(FileType type) {
  switch (type) {
    case FileType::kDf:
      return "DF";
    case FileType::kTransparent:
      return "transparent";
    case FileType::kLinearFixed:
      return "linear-fixed";
    case FileType::kCyclic:
      return "cyclic";
    case FileType::kTlvRecords:
      return "tlv-records";
  }
  return "unknown";
}

std::string AccessConditionName(const AccessCondition& ac) {
  switch (ac.kind) {
    case AccessKind::kFree:
      return "free";
    case AccessKind::kPin:
      return "PIN";
    case AccessKind::kSecureMessaging: {
      const auto usage = KeyUsageFromByte(ac.key_ref);
      return "SM(" + std::string(usage ? KeyUsageName(*usage) : "?") + ")";
    }
    case AccessKind::kExternalAuth:
      return "external-auth(" + std::to_string(ac.key_ref) + ")";
    case AccessKind::kNever:
      return "never";
  }
  return "unknown";
}

std::string_view LifecycleName(Lifecycle lifecycle) {
  switch (lifecycle) {
    case Lifecycle::kPersonalisation:
      return "personalisation";
    case Lifecycle::kOperational:
      return "operational";
    case Lifecycle::kBlocked:
      return "blocked";
  }
  return "unknown";
}

std::string_view AppBlockName(AppBlock block) {
  switch (block) {
    case AppBlock::kNone:
      return "none";
    case AppBlock::kTemporary:
      return "temporary";
    case AppBlock::kPermanent:
      return "permanent";
  }
  return "unknown";
}

Bytes CardAtr() {
  // TS 3B (direct convention); T0 89: TD1 follows, 9 historical bytes; TD1 01: T=1, nothing
  // more. Historical bytes: 80 (compact-TLV follows), 57 "medcard" (tag 5 = card issuer's
  // data, 7 bytes). TCK: XOR of T0 .. the last historical byte (ISO 7816-3 §8.2.5).
  Bytes atr = {0x3B, 0x89, 0x01, 0x80, 0x57, 'm', 'e', 'd', 'c', 'a', 'r', 'd'};
  std::uint8_t tck = 0;
  for (std::size_t i = 1; i < atr.size(); ++i) tck ^= atr[i];
  atr.push_back(tck);
  return atr;
}

struct Card::Impl {
  Impl(nvm::AtomicImage image_in, CardState state, CardOptions options)
      : image(std::move(image_in)), engine(std::move(state), std::move(options.random)) {}

  nvm::AtomicImage image;
  Engine engine;
  bool powered = false;
  bool dead = false;
  Bytes scratch;  // the next image, reused so a command does not allocate a new one

  Bytes Transmit(ByteView raw);
};

Bytes Card::Impl::Transmit(ByteView raw) {
  if (dead) return {};
  if (!powered) return iso7816::Respond(sw::kUnknown);
  auto parsed = iso7816::CommandApdu::Parse(raw);
  Reply reply;
  if (const auto* word = std::get_if<iso7816::StatusWord>(&parsed)) {
    engine.CancelVolatile();
    reply = internal::Sw(*word);
  } else {
    reply = engine.Execute(std::get<iso7816::CommandApdu>(parsed));
  }
  if (engine.TakeDirty()) {
    internal::SerializeState(engine.state(), scratch);
    if (scratch.size() > nvm::AtomicImage::MaxImageSize()) {
      // The chip is full: the command did not happen.
      if (!engine.Rollback(View(image.image())).ok()) {
        dead = true;
        return {};
      }
      return iso7816::Respond(sw::kNotEnoughMemory);
    }
    if (Status committed = image.Commit(View(scratch)); !committed.ok()) {
      // Power lost mid-write: no answer leaves the card, and nothing of the command stays in
      // memory either. The medium holds the old or the new image; reopening tells which.
      static_cast<void>(engine.Rollback(View(image.image())));
      dead = true;
      return {};
    }
  }
  return iso7816::Respond(View(reply.data), reply.sw);
}

Card::Card(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Card::~Card() = default;

Result<std::unique_ptr<Card>> Card::Manufacture(std::unique_ptr<nvm::Medium> medium,
                                                const ManufactureInfo& info, CardOptions options) {
  if (info.chip_serial.size() != 8) return MakeError("card: the chip serial is 8 bytes");
  if (info.transport_key.size() != 16) return MakeError("card: the transport key is 16 bytes");
  auto image = nvm::AtomicImage::Open(std::move(medium));
  if (!image.ok()) return image.error();
  if (!image->image().empty()) return MakeError("card: the medium already holds a card image");
  CardState state;
  state.lifecycle = Lifecycle::kPersonalisation;
  std::copy(info.chip_serial.begin(), info.chip_serial.end(), state.chip_serial.begin());
  state.transport_key = info.transport_key;
  internal::File mf;
  mf.type = FileType::kDf;
  mf.fid = 0x3F00;
  state.files.push_back(std::move(mf));
  state.Index();
  Bytes encoded;
  internal::SerializeState(state, encoded);
  if (Status committed = image->Commit(View(encoded)); !committed.ok()) {
    return MakeError("card: writing the new card image: " + committed.error().message);
  }
  return std::unique_ptr<Card>(new Card(
      std::make_unique<Impl>(std::move(image).value(), std::move(state), std::move(options))));
}

Result<std::unique_ptr<Card>> Card::Open(std::unique_ptr<nvm::Medium> medium, CardOptions options) {
  auto image = nvm::AtomicImage::Open(std::move(medium));
  if (!image.ok()) return image.error();
  if (image->image().empty()) return MakeError("card: the medium holds no card image");
  auto state = internal::ParseState(View(image->image()));
  if (!state.ok()) return state.error();
  return std::unique_ptr<Card>(new Card(std::make_unique<Impl>(
      std::move(image).value(), std::move(state).value(), std::move(options))));
}

Bytes Card::PowerOn() {
  if (impl_->dead) return {};
  impl_->powered = true;
  impl_->engine.PowerCycle();
  return CardAtr();
}

void Card::PowerOff() {
  impl_->powered = false;
  impl_->engine.PowerCycle();
}

Bytes Card::Atr() const { return impl_->dead ? Bytes{} : CardAtr(); }

Bytes Card::Transmit(ByteView command_apdu) { return impl_->Transmit(command_apdu); }

bool Card::dead() const { return impl_->dead; }

CardSummary Card::Inspect() const { return internal::Summarize(impl_->engine.state()); }

}  // namespace medcard::card
