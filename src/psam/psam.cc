#include "psam/psam.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/bcd.h"
#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"
#include "iso7816/tlv.h"
#include "psam/image.h"

namespace medcard::psam {

using internal::PendingSession;
using internal::State;
using internal::StoredKey;
using iso7816::CommandApdu;
using iso7816::StatusWord;
namespace sw = iso7816::sw;

namespace {

constexpr std::uint8_t kClaIso = 0x00;
constexpr std::uint8_t kClaProprietary = 0x80;
constexpr std::uint8_t kClaProprietaryMac = 0x84;

constexpr std::uint8_t kInsSelect = 0xA4;
constexpr std::uint8_t kInsReadBinary = 0xB0;
constexpr std::uint8_t kInsUpdateBinary = 0xD6;
constexpr std::uint8_t kInsGetChallenge = 0x84;
constexpr std::uint8_t kInsGetData = 0xCA;
constexpr std::uint8_t kInsInitSamForPurchase = 0x70;
constexpr std::uint8_t kInsCreditSamForPurchase = 0x72;
constexpr std::uint8_t kInsGetSamTotals = 0x7A;
constexpr std::uint8_t kInsClearSamTotals = 0x7C;
constexpr std::uint8_t kInsDeliveryKey = 0x1A;
constexpr std::uint8_t kInsDesCrypt = 0xFA;
constexpr std::uint8_t kInsWriteKey = 0xD4;
constexpr std::uint8_t kInsEndPersonalisation = 0xEE;

// DES CRYPT P1 (docs/psam-commands.md): b3 = an IV leads the data, b2 = more blocks follow,
// b1 = MAC (not encryption).
constexpr std::uint8_t kDesCryptEncrypt = 0x00;
constexpr std::uint8_t kDesCryptMacWithIv = 0x05;
constexpr std::uint8_t kDesCryptMacFirst = 0x07;
constexpr std::uint8_t kDesCryptMacNext = 0x03;
constexpr std::uint8_t kDesCryptMacLast = 0x01;

constexpr std::uint16_t kFidMf = 0x3F00;
constexpr std::uint16_t kFidPurchaseDf = 0x1001;

// INIT_SAM_FOR_PURCHASE data before the factors: random(4) ‖ offlineSerial(2) ‖ amount(4) ‖
// type(1) ‖ date(4) ‖ time(3) ‖ keyVersion(1) ‖ algId(1) (pboc-ed-ep.md, "PSAM commands").
constexpr std::size_t kInitFixedSize = 20;
constexpr std::size_t kFactorSize = 8;
constexpr std::size_t kMaxFactors = 3;
constexpr std::size_t kMacSize = 4;

struct ElementaryFile {
  std::uint8_t sfi;
  std::uint16_t fid;
  Bytes State::*content;
};
constexpr ElementaryFile kFiles[] = {
    {0x15, 0x0015, &State::ef15},
    {0x16, 0x0016, &State::ef16},
    {0x17, 0x0017, &State::ef17},
};
const ElementaryFile* FileBySfi(std::uint8_t sfi) {
  for (const ElementaryFile& f : kFiles) {
    if (f.sfi == sfi) return &f;
  }
  return nullptr;
}
const ElementaryFile* FileByFid(std::uint16_t fid) {
  for (const ElementaryFile& f : kFiles) {
    if (f.fid == fid) return &f;
  }
  return nullptr;
}

// T=1 ATR: TA1 13, TD1 81 (T=1, TD2 follows), TD2 31 (TA3 TB3, T=1), IFSC FE, BWI/CWI 45;
// historical bytes: category 80, compact TLV 5C = card issuer's data "MEDCARD-PSAM"; TCK.
Bytes MakeAtr() {
  Bytes atr = {0x3B, 0x9E, 0x13, 0x81, 0x31, 0xFE, 0x45, 0x80, 0x5C, 'M', 'E',
               'D',  'C',  'A',  'R',  'D',  '-',  'P',  'S',  'A',  'M'};
  std::uint8_t tck = 0;
  for (std::size_t i = 1; i < atr.size(); ++i) tck ^= atr[i];
  atr.push_back(tck);
  return atr;
}

struct Reply {
  Bytes data;
  StatusWord sw = sw::kOk;
};
Reply Answer(StatusWord s) { return Reply{{}, s}; }

// ISO 7816-4: an Le smaller than the answer gets 6Cxx with the exact length, and the command
// is not executed (the terminal resends it).
std::optional<StatusWord> LeTooSmall(const CommandApdu& c, std::size_t answer_size) {
  if (c.le && *c.le < answer_size) return sw::WrongLe(static_cast<std::uint8_t>(answer_size));
  return std::nullopt;
}

bool IsPurchaseType(std::uint8_t type) {
  // 04 cash withdraw, 05 ED purchase, 06 EP purchase, 09 composite purchase: the transactions
  // DEBIT FOR PURCHASE / CASH WITHDRAW completes (pboc-ed-ep.md, transaction types).
  return type == 0x04 || type == 0x05 || type == 0x06 || type == 0x09;
}

// The APDU carries the card's (ASN) factor first, then the issuer levels upward; the key is
// derived from the top level down to the card.
Result<Bytes> DeriveFromFactors(ByteView master_key, ByteView factors) {
  Bytes key(master_key.begin(), master_key.end());
  for (std::size_t i = factors.size() / kFactorSize; i-- > 0;) {
    auto next = crypto::Diversify(View(key), factors.subspan(i * kFactorSize, kFactorSize));
    SecureWipe(key);
    if (!next) return next.error();
    key = std::move(next).value();
  }
  return key;
}

// IV of the transport-key MAC: the challenge, zero-padded to 8 bytes (challenge(4) ‖ 00000000).
Bytes ChallengeIv(const Bytes& challenge) {
  Bytes iv = challenge;
  iv.resize(8, 0x00);
  return iv;
}

}  // namespace

struct Psam::Impl {
  Impl(nvm::AtomicImage i, State s) : image(std::move(i)), state(std::move(s)) {}
  ~Impl() {
    ResetVolatile();
    WipeSecrets(state);
  }

  static void WipeSecrets(State& s) {
    SecureWipe(s.transport_key);
    for (StoredKey& k : s.keys) SecureWipe(k.value);
    for (PendingSession& p : s.pending) SecureWipe(p.session_key);
  }

  void ResetVolatile() {
    df_selected = false;
    current_ef.reset();
    challenge.reset();
    current_session.reset();
    SecureWipe(delivered_key);
    delivered_key.clear();
    mac_chain.reset();
  }

  // All or nothing: on failure the PSAM is dead and the in-memory state untouched.
  bool Commit(State next) {
    if (next == state) return true;
    Bytes encoded = internal::EncodeImage(next);
    const Status status = image.Commit(View(encoded));
    SecureWipe(encoded);
    if (!status.ok()) {
      WipeSecrets(next);
      dead = true;
      ResetVolatile();
      return false;
    }
    WipeSecrets(state);
    state = std::move(next);
    return true;
  }

  const StoredKey* FindKey(KeyUsage usage, std::uint8_t version) const {
    for (const StoredKey& k : state.keys) {
      if (k.usage == usage && k.version == version) return &k;
    }
    return nullptr;
  }
  std::optional<std::size_t> SettlementKeyIndex() const {
    for (std::size_t i = 0; i < state.keys.size(); ++i) {
      if (state.keys[i].usage == KeyUsage::kSettlement) return i;
    }
    return std::nullopt;
  }
  bool operational() const { return state.lifecycle == Lifecycle::kOperational; }

  Reply Dispatch(const CommandApdu& c, const std::optional<Bytes>& challenge_for_this);
  Reply Select(const CommandApdu& c);
  Reply ReadBinary(const CommandApdu& c);
  Reply UpdateBinary(const CommandApdu& c);
  Reply GetChallenge(const CommandApdu& c);
  Reply GetData(const CommandApdu& c);
  Reply InitSamForPurchase(const CommandApdu& c);
  Reply CreditSamForPurchase(const CommandApdu& c);
  Reply GetSamTotals(const CommandApdu& c);
  Reply ClearSamTotals(const CommandApdu& c);
  Reply DeliveryKey(const CommandApdu& c);
  Reply DesCrypt(const CommandApdu& c);
  std::optional<Reply> CheckTransportMac(const CommandApdu& c, ByteView mac,
                                         const std::optional<Bytes>& challenge_for_this,
                                         State& next);
  Reply WriteKey(const CommandApdu& c, const std::optional<Bytes>& challenge_for_this);
  Reply EndPersonalisation(const CommandApdu& c, const std::optional<Bytes>& challenge_for_this);

  nvm::AtomicImage image;
  State state;
  bool dead = false;
  bool powered = false;

  // Volatile: cleared by power-off and reset.
  bool df_selected = false;
  std::optional<std::uint8_t> current_ef;  // SFI of the current EF
  std::optional<Bytes> challenge;          // valid for the next command only
  std::optional<std::uint32_t> current_session;
  Bytes delivered_key;             // DELIVERY KEY result
  std::optional<Bytes> mac_chain;  // DES CRYPT chained MAC: CBC value under K_L
};

Reply Psam::Impl::Dispatch(const CommandApdu& c, const std::optional<Bytes>& challenge_for_this) {
  const auto with_cla = [&](std::uint8_t expected, auto&& handler) -> Reply {
    if (c.cla != expected) return Answer(sw::kClaNotSupported);
    return handler();
  };
  switch (c.ins) {
    case kInsSelect:
      return with_cla(kClaIso, [&] { return Select(c); });
    case kInsReadBinary:
      return with_cla(kClaIso, [&] { return ReadBinary(c); });
    case kInsUpdateBinary:
      return with_cla(kClaIso, [&] { return UpdateBinary(c); });
    case kInsGetChallenge:
      return with_cla(kClaIso, [&] { return GetChallenge(c); });
    case kInsGetData:
      return with_cla(kClaProprietary, [&] { return GetData(c); });
    case kInsInitSamForPurchase:
      return with_cla(kClaProprietary, [&] { return InitSamForPurchase(c); });
    case kInsCreditSamForPurchase:
      return with_cla(kClaProprietary, [&] { return CreditSamForPurchase(c); });
    case kInsGetSamTotals:
      return with_cla(kClaProprietary, [&] { return GetSamTotals(c); });
    case kInsClearSamTotals:
      return with_cla(kClaProprietary, [&] { return ClearSamTotals(c); });
    case kInsDeliveryKey:
      return with_cla(kClaProprietary, [&] { return DeliveryKey(c); });
    case kInsDesCrypt:
      return with_cla(kClaProprietary, [&] { return DesCrypt(c); });
    case kInsWriteKey:
      return with_cla(kClaProprietaryMac, [&] { return WriteKey(c, challenge_for_this); });
    case kInsEndPersonalisation:
      return with_cla(kClaProprietaryMac,
                      [&] { return EndPersonalisation(c, challenge_for_this); });
    default:
      if (c.cla != kClaIso && c.cla != kClaProprietary && c.cla != kClaProprietaryMac) {
        return Answer(sw::kClaNotSupported);
      }
      return Answer(sw::kInsNotSupported);
  }
}

Reply Psam::Impl::Select(const CommandApdu& c) {
  if (c.p2 != 0x00 && c.p2 != 0x0C) return Answer(sw::kWrongP1P2);
  enum class Target { kMf, kDf, kEf } target = Target::kMf;
  const ElementaryFile* ef = nullptr;
  if (c.p1 == 0x00) {  // by file identifier
    if (c.data.size() != 2) return Answer(sw::kWrongLength);
    const std::uint16_t fid = ReadU16(View(c.data));
    if (fid == kFidMf) {
      target = Target::kMf;
    } else if (fid == kFidPurchaseDf) {
      target = Target::kDf;
    } else if ((ef = FileByFid(fid)) != nullptr) {
      target = Target::kEf;
    } else {
      return Answer(sw::kFileNotFound);
    }
  } else if (c.p1 == 0x04) {  // by DF name
    if (c.data.empty() || c.data.size() > 16) return Answer(sw::kWrongLength);
    if (!std::equal(c.data.begin(), c.data.end(), kPurchaseDfAid.begin(), kPurchaseDfAid.end())) {
      return Answer(sw::kFileNotFound);
    }
    target = Target::kDf;
  } else {
    return Answer(sw::kWrongP1P2);
  }

  Bytes fci;
  if (target == Target::kDf && c.p2 == 0x00) {
    const std::uint8_t version = state.ef15[10];
    const Bytes proprietary = iso7816::BuildTlv(0x9F08, ByteView(&version, 1));
    fci = iso7816::BuildTlv(0x6F,
                            View(Concat({View(iso7816::BuildTlv(0x84, ByteView(kPurchaseDfAid))),
                                         View(iso7816::BuildTlv(0xA5, View(proprietary)))})));
  }
  if (auto s = LeTooSmall(c, fci.size())) return Answer(*s);
  switch (target) {
    case Target::kMf:
      df_selected = false;
      current_ef.reset();
      break;
    case Target::kDf:
      df_selected = true;
      current_ef.reset();
      break;
    case Target::kEf:
      current_ef = ef->sfi;
      break;
  }
  return Reply{std::move(fci), sw::kOk};
}

Reply Psam::Impl::ReadBinary(const CommandApdu& c) {
  if (!c.data.empty()) return Answer(sw::kWrongLength);
  const auto address = iso7816::DecodeBinaryAddress(c.p1, c.p2);
  if (!address) return Answer(sw::kWrongP1P2);
  const ElementaryFile* ef = nullptr;
  if (address->sfi) {
    ef = FileBySfi(*address->sfi);
    if (ef == nullptr) return Answer(sw::kFileNotFound);
  } else {
    if (!current_ef) return Answer(sw::kCommandNotAllowedNoEf);
    ef = FileBySfi(*current_ef);
  }
  const Bytes& content = state.*(ef->content);
  if (address->offset >= content.size()) return Answer(sw::kWrongOffset);
  const std::size_t remaining = content.size() - address->offset;
  std::size_t n = remaining;
  // Le absent or 00: everything up to the end. Otherwise exactly Le bytes, or 6Cxx naming
  // what is left when Le asks for more.
  if (c.le && *c.le != 256) {
    if (*c.le > remaining) return Answer(sw::WrongLe(static_cast<std::uint8_t>(remaining)));
    n = *c.le;
  }
  current_ef = ef->sfi;
  const auto begin = content.begin() + address->offset;
  return Reply{Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)), sw::kOk};
}

Reply Psam::Impl::UpdateBinary(const CommandApdu& c) {
  if (operational()) return Answer(sw::kConditionsNotSatisfied);
  const auto address = iso7816::DecodeBinaryAddress(c.p1, c.p2);
  if (!address) return Answer(sw::kWrongP1P2);
  if (c.data.empty() || c.le) return Answer(sw::kWrongLength);
  const ElementaryFile* ef = nullptr;
  if (address->sfi) {
    ef = FileBySfi(*address->sfi);
    if (ef == nullptr) return Answer(sw::kFileNotFound);
  } else {
    if (!current_ef) return Answer(sw::kCommandNotAllowedNoEf);
    ef = FileBySfi(*current_ef);
  }
  const std::size_t size = (state.*(ef->content)).size();
  if (address->offset >= size) return Answer(sw::kWrongOffset);
  if (address->offset + c.data.size() > size) return Answer(sw::kWrongLength);
  State next = state;
  std::copy(c.data.begin(), c.data.end(), (next.*(ef->content)).begin() + address->offset);
  if (!Commit(std::move(next))) return {};
  current_ef = ef->sfi;
  return Answer(sw::kOk);
}

Reply Psam::Impl::GetChallenge(const CommandApdu& c) {
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  if (!c.data.empty() || !c.le || (*c.le != 4 && *c.le != 8)) return Answer(sw::kWrongLength);
  challenge = crypto::RandomBytes(*c.le);
  return Reply{*challenge, sw::kOk};
}

// GET DATA 80 CA 00 01 08 (medcard, as on the card): the chip serial, so a personalisation
// station can derive a blank PSAM's transport key. Free in every lifecycle state.
Reply Psam::Impl::GetData(const CommandApdu& c) {
  if (c.p1 != 0x00 || c.p2 != 0x01) return Answer(sw::kReferencedDataNotFound);
  if (!c.data.empty() || !c.le) return Answer(sw::kWrongLength);
  if (auto s = LeTooSmall(c, state.chip_serial.size())) return Answer(*s);
  return Reply{state.chip_serial, sw::kOk};
}

Reply Psam::Impl::InitSamForPurchase(const CommandApdu& c) {
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  const std::size_t n = c.data.size();
  if (n < kInitFixedSize + kFactorSize || n > kInitFixedSize + kMaxFactors * kFactorSize ||
      (n - kInitFixedSize) % kFactorSize != 0) {
    return Answer(sw::kWrongLength);
  }
  if (auto s = LeTooSmall(c, 8)) return Answer(*s);

  const ByteView d = View(c.data);
  const ByteView card_random = Sub(d, 0, 4);
  const ByteView offline_serial = Sub(d, 4, 2);
  const ByteView amount = Sub(d, 6, 4);
  const ByteView type = Sub(d, 10, 1);
  const ByteView date = Sub(d, 11, 4);
  const ByteView time = Sub(d, 15, 3);
  const std::uint8_t key_version = d[18];
  const std::uint8_t alg_id = d[19];
  const ByteView factors = d.subspan(kInitFixedSize);

  const auto txn_date = DecodeBcdDate(date);
  if (!IsPurchaseType(type[0]) || !txn_date || !DecodeBcdTime(time)) {
    return Answer(sw::kWrongData);
  }
  const StoredKey* mpk = FindKey(KeyUsage::kPurchase, key_version);
  if (mpk == nullptr || mpk->alg_id != alg_id) return Answer(sw::kKeyIndexNotSupported);
  const auto valid_from = DecodeBcdDate(Sub(View(state.ef17), 1, 4));
  const auto valid_to = DecodeBcdDate(Sub(View(state.ef17), 5, 4));
  if (!valid_from || !valid_to || *txn_date < *valid_from || *txn_date > *valid_to) {
    return Answer(sw::kConditionsNotSatisfied);
  }
  if (state.terminal_serial == std::numeric_limits<std::uint32_t>::max()) {
    return Answer(sw::kCounterAtMaximum);
  }

  const std::uint32_t serial = state.terminal_serial + 1;
  Bytes serial_bytes;
  AppendU32(serial_bytes, serial);
  auto dpk = DeriveFromFactors(View(mpk->value), factors);
  if (!dpk) return Answer(sw::kUnknown);
  auto sespk =
      crypto::PurchaseSessionKey(View(*dpk), card_random, offline_serial, View(serial_bytes));
  SecureWipe(*dpk);
  if (!sespk) return Answer(sw::kUnknown);
  // MAC1 = MAC(SESPK, amount ‖ type ‖ termNo ‖ date ‖ time) (pboc-ed-ep.md, "Purchase").
  const auto mac1 =
      crypto::PbocMac(View(*sespk), Concat({amount, type, View(state.ef16), date, time}));
  if (!mac1) return Answer(sw::kUnknown);

  State next = state;
  next.terminal_serial = serial;
  if (next.pending.size() == internal::kMaxPendingSessions) {
    SecureWipe(next.pending.front().session_key);
    next.pending.erase(next.pending.begin());
  }
  next.pending.push_back(PendingSession{serial, ReadU32(amount), std::move(*sespk)});
  if (!Commit(std::move(next))) return {};
  current_session = serial;
  return Reply{Concat({View(serial_bytes), View(*mac1)}), sw::kOk};
}

Reply Psam::Impl::CreditSamForPurchase(const CommandApdu& c) {
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  const ByteView d = View(c.data);
  std::uint32_t serial = 0;
  ByteView mac2;
  if (d.size() == kMacSize) {  // the current session
    if (!current_session) return Answer(sw::kConditionsNotSatisfied);
    serial = *current_session;
    mac2 = d;
  } else if (d.size() == 4 + kMacSize) {  // torn-purchase completion by terminal serial
    serial = ReadU32(d);
    mac2 = Sub(d, 4, kMacSize);
  } else {
    return Answer(sw::kWrongLength);
  }

  const auto pending = std::find_if(state.pending.begin(), state.pending.end(),
                                    [&](const PendingSession& p) { return p.serial == serial; });
  if (pending == state.pending.end()) {
    const bool completed =
        std::find(state.completed.begin(), state.completed.end(), serial) != state.completed.end();
    // Never count one twice: a completed session answers 6985, an unknown one 6A88.
    if (completed || d.size() == kMacSize) return Answer(sw::kConditionsNotSatisfied);
    return Answer(sw::kReferencedDataNotFound);
  }
  Bytes amount;
  AppendU32(amount, pending->amount);
  const auto expected = crypto::PbocMac(View(pending->session_key), View(amount));
  if (!expected) return Answer(sw::kUnknown);
  if (!ConstantTimeEqual(View(*expected), mac2)) return Answer(sw::kMacInvalid);
  if (state.totals.count == std::numeric_limits<std::uint32_t>::max() ||
      state.totals.amount + pending->amount > internal::kMaxAmount) {
    return Answer(sw::kCounterAtMaximum);
  }

  State next = state;
  SamTotals& t = next.totals;
  if (t.count == 0) t.first_serial = serial;
  t.last_serial = serial;
  ++t.count;
  t.amount += pending->amount;
  const auto index = pending - state.pending.begin();
  SecureWipe(next.pending[static_cast<std::size_t>(index)].session_key);
  next.pending.erase(next.pending.begin() + index);
  if (next.completed.size() == internal::kMaxCompletedSerials) {
    next.completed.erase(next.completed.begin());
  }
  next.completed.push_back(serial);
  if (!Commit(std::move(next))) return {};
  if (current_session == serial) current_session.reset();
  return Answer(sw::kOk);
}

Reply Psam::Impl::GetSamTotals(const CommandApdu& c) {
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  if (c.data.size() != 8) return Answer(sw::kWrongLength);
  if (auto s = LeTooSmall(c, internal::kTotalsSize + kMacSize)) return Answer(*s);
  const auto key_index = SettlementKeyIndex();
  if (!key_index) return Answer(sw::kReferencedDataNotFound);
  const StoredKey& key = state.keys[*key_index];
  if (key.locked()) return Answer(sw::kBlocked);

  const Bytes totals = internal::EncodeTotals(state.totals);
  const auto mac = crypto::PbocMac(View(key.value), View(Concat({View(c.data), View(totals)})));
  if (!mac) return Answer(sw::kUnknown);
  State next = state;
  next.signed_totals = internal::SignedTotals{c.data, state.totals};
  if (!Commit(std::move(next))) return {};
  return Reply{Concat({View(totals), View(*mac)}), sw::kOk};
}

Reply Psam::Impl::ClearSamTotals(const CommandApdu& c) {
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  if (c.data.size() != kMacSize) return Answer(sw::kWrongLength);
  const auto key_index = SettlementKeyIndex();
  if (!key_index) return Answer(sw::kReferencedDataNotFound);
  if (state.keys[*key_index].locked()) return Answer(sw::kBlocked);
  if (!state.signed_totals) return Answer(sw::kConditionsNotSatisfied);

  // The leading 7C keeps the PSAM's own GET SAM TOTALS signature from serving as the host's
  // acknowledgement.
  const std::uint8_t ins = kInsClearSamTotals;
  const auto expected =
      crypto::PbocMac(View(state.keys[*key_index].value),
                      View(Concat({ByteView(&ins, 1), View(state.signed_totals->challenge),
                                   View(internal::EncodeTotals(state.signed_totals->totals))})));
  if (!expected) return Answer(sw::kUnknown);

  State next = state;
  StoredKey& key = next.keys[*key_index];
  if (!ConstantTimeEqual(View(*expected), View(c.data))) {
    ++key.failures;  // the failure that reaches the limit still answers 9302, later ones 6983
    if (!Commit(std::move(next))) return {};
    return Answer(sw::kMacInvalid);
  }
  key.failures = 0;
  if (state.totals != state.signed_totals->totals) {
    if (!Commit(std::move(next))) return {};
    return Answer(sw::kConditionsNotSatisfied);
  }
  next.totals = SamTotals{};
  next.signed_totals.reset();
  if (!Commit(std::move(next))) return {};
  return Answer(sw::kOk);
}

Reply Psam::Impl::DeliveryKey(const CommandApdu& c) {
  // A failed DELIVERY KEY leaves no key behind: DES CRYPT never runs under a stale one.
  SecureWipe(delivered_key);
  delivered_key.clear();
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  const std::size_t levels = c.p1 >> 5;
  const auto usage = KeyUsageFromByte(c.p1 & 0x1F);
  if (levels < 1 || levels > kMaxFactors || !usage) return Answer(sw::kWrongP1P2);
  // Purchase and settlement keys never leave their own commands: with DES CRYPT a terminal
  // could compute SESPK and forge MAC2, or sign its own totals.
  if (*usage != KeyUsage::kMaintenance && *usage != KeyUsage::kVisitRecord) {
    return Answer(sw::kConditionsNotSatisfied);
  }
  if (c.data.size() != levels * kFactorSize) return Answer(sw::kWrongLength);
  const StoredKey* master = FindKey(*usage, c.p2);
  if (master == nullptr) return Answer(sw::kReferencedDataNotFound);
  auto key = DeriveFromFactors(View(master->value), View(c.data));
  if (!key) return Answer(sw::kUnknown);
  delivered_key = std::move(key).value();
  return Answer(sw::kOk);
}

Reply Psam::Impl::DesCrypt(const CommandApdu& c) {
  if (!operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p2 != 0 ||
      (c.p1 != kDesCryptEncrypt && c.p1 != kDesCryptMacWithIv && c.p1 != kDesCryptMacFirst &&
       c.p1 != kDesCryptMacNext && c.p1 != kDesCryptMacLast)) {
    return Answer(sw::kWrongP1P2);
  }
  if (delivered_key.empty()) return Answer(sw::kConditionsNotSatisfied);
  const ByteView d = View(c.data);

  if (c.p1 == kDesCryptEncrypt) {
    if (d.empty() || d.size() % 8 != 0) return Answer(sw::kWrongLength);
    if (auto s = LeTooSmall(c, d.size())) return Answer(*s);
    auto cipher = crypto::BlockCipher::Des(View(delivered_key));
    if (!cipher) return Answer(sw::kUnknown);
    return Reply{cipher->EncryptEcb(d), sw::kOk};
  }
  if (c.p1 == kDesCryptMacWithIv || c.p1 == kDesCryptMacLast) {
    ByteView iv;
    ByteView message;
    if (c.p1 == kDesCryptMacWithIv) {
      if (d.size() < 8) return Answer(sw::kWrongLength);
      iv = Sub(d, 0, 8);
      message = d.subspan(8);
    } else {
      if (!mac_chain) return Answer(sw::kConditionsNotSatisfied);
      iv = View(*mac_chain);
      message = d;
    }
    if (auto s = LeTooSmall(c, kMacSize)) return Answer(*s);
    auto mac_key = crypto::MacKey::Create(View(delivered_key));
    if (!mac_key) return Answer(sw::kUnknown);
    const auto mac = mac_key->Mac4(message, iv);
    mac_chain.reset();
    return Reply{Bytes(mac.begin(), mac.end()), sw::kOk};
  }
  // First or next block of a chained MAC: whole blocks, CBC under K_L carried between APDUs;
  // the last block (P1 01) pads and finishes it exactly as a one-shot MAC would.
  ByteView iv;
  ByteView blocks;
  if (c.p1 == kDesCryptMacFirst) {
    if (d.size() < 8 || d.size() % 8 != 0) return Answer(sw::kWrongLength);
    iv = Sub(d, 0, 8);
    blocks = d.subspan(8);
  } else {
    if (!mac_chain) return Answer(sw::kConditionsNotSatisfied);
    if (d.empty() || d.size() % 8 != 0) return Answer(sw::kWrongLength);
    iv = View(*mac_chain);
    blocks = d;
  }
  Bytes chain(iv.begin(), iv.end());
  if (!blocks.empty()) {
    auto left = crypto::BlockCipher::Des(Sub(View(delivered_key), 0, 8));
    if (!left) return Answer(sw::kUnknown);
    const Bytes cbc = left->EncryptCbc(blocks, iv);
    chain.assign(cbc.end() - 8, cbc.end());
  }
  mac_chain = std::move(chain);
  return Answer(sw::kOk);
}

// The transport-key MAC of WRITE KEY and END PERSONALISATION: PBOC MAC with IV = challenge ‖ 0..,
// over `CLA INS P1 P2 Lc ‖ data without the MAC` (the card's layout, docs/psam-commands.md).
// Three consecutive wrong MACs lock the transport key (6983), like the card's. nullopt: the MAC
// is right and `next` has the failure count reset; otherwise the answer to give (a failure is
// committed).
std::optional<Reply> Psam::Impl::CheckTransportMac(const CommandApdu& c, ByteView mac,
                                                   const std::optional<Bytes>& challenge_for_this,
                                                   State& next) {
  if (state.transport_key_errors >= internal::kTransportKeyErrorLimit) {
    return Answer(sw::kBlocked);
  }
  if (!challenge_for_this) return Answer(sw::kRandomInvalid);
  const Bytes mac_input =
      Concat({View(Bytes{c.cla, c.ins, c.p1, c.p2, static_cast<std::uint8_t>(c.data.size())}),
              Sub(View(c.data), 0, c.data.size() - mac.size())});
  const auto expected = crypto::PbocMac(View(state.transport_key), View(mac_input),
                                        View(ChallengeIv(*challenge_for_this)));
  if (!expected) return Answer(sw::kUnknown);
  if (!ConstantTimeEqual(View(*expected), mac)) {
    State failed = state;
    ++failed.transport_key_errors;
    if (!Commit(std::move(failed))) return Reply{};
    return Answer(sw::kSmMacWrong);
  }
  next.transport_key_errors = 0;
  return std::nullopt;
}

Reply Psam::Impl::WriteKey(const CommandApdu& c, const std::optional<Bytes>& challenge_for_this) {
  if (operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  // header(5) ‖ cryptogram(8·k, k ≥ 1) ‖ MAC(4)
  const std::size_t n = c.data.size();
  if (n < 5 + 8 + kMacSize || (n - 5 - kMacSize) % 8 != 0) return Answer(sw::kWrongLength);
  const ByteView d = View(c.data);
  State next = state;
  if (auto refused =
          CheckTransportMac(c, Sub(d, n - kMacSize, kMacSize), challenge_for_this, next)) {
    return *refused;
  }
  // The MAC was right: whatever the answer, the reset failure count is kept.
  const auto refuse = [&](StatusWord s) -> Reply {
    if (!Commit(next)) return {};
    return Answer(s);
  };
  const ByteView header = Sub(d, 0, 5);
  const ByteView cryptogram = Sub(d, 5, n - 5 - kMacSize);
  const auto usage = KeyUsageFromByte(header[0]);
  if (!usage || header[1] == 0 || header[3] != kAlgTdes || header[4] == 0 ||
      header[4] > internal::kMaxErrorLimit) {
    return refuse(sw::kWrongData);
  }
  auto key = crypto::DecryptKeyFromTransport(View(state.transport_key), cryptogram);
  if (!key) return refuse(sw::kWrongData);
  if (key->size() != internal::kKeySize) {
    SecureWipe(*key);
    return refuse(sw::kWrongData);
  }

  StoredKey stored{*usage, header[1], header[2], header[3], header[4], 0, std::move(*key)};
  // One key per (usage, version); the PSAM has one settlement key whatever its version.
  const auto same = std::find_if(next.keys.begin(), next.keys.end(), [&](const StoredKey& k) {
    return k.usage == stored.usage &&
           (k.version == stored.version || stored.usage == KeyUsage::kSettlement);
  });
  if (same != next.keys.end()) {
    SecureWipe(same->value);
    *same = std::move(stored);
  } else if (next.keys.size() == internal::kMaxKeys) {
    SecureWipe(stored.value);
    return refuse(sw::kNotEnoughMemory);
  } else {
    next.keys.push_back(std::move(stored));
  }
  if (!Commit(std::move(next))) return {};
  return Answer(sw::kOk);
}

Reply Psam::Impl::EndPersonalisation(const CommandApdu& c,
                                     const std::optional<Bytes>& challenge_for_this) {
  if (operational()) return Answer(sw::kConditionsNotSatisfied);
  if (c.p1 != 0 || c.p2 != 0) return Answer(sw::kWrongP1P2);
  if (c.data.size() != kMacSize) return Answer(sw::kWrongLength);
  State next = state;
  if (auto refused = CheckTransportMac(c, View(c.data), challenge_for_this, next)) {
    return *refused;
  }
  // A PSAM leaves personalisation only complete: valid dates, a purchase and a settlement key.
  const auto from = DecodeBcdDate(Sub(View(state.ef17), 1, 4));
  const auto to = DecodeBcdDate(Sub(View(state.ef17), 5, 4));
  const bool has_purchase_key =
      std::any_of(state.keys.begin(), state.keys.end(),
                  [](const StoredKey& k) { return k.usage == KeyUsage::kPurchase; });
  if (!from || !to || *from > *to || !has_purchase_key || !SettlementKeyIndex()) {
    if (!Commit(std::move(next))) return {};
    return Answer(sw::kConditionsNotSatisfied);
  }
  next.lifecycle = Lifecycle::kOperational;
  SecureWipe(next.transport_key);
  next.transport_key.clear();
  if (!Commit(std::move(next))) return {};
  return Answer(sw::kOk);
}

// ---------------------------------------------------------------------------------------------

Psam::Psam(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Psam::~Psam() = default;

Result<std::unique_ptr<Psam>> Psam::Manufacture(std::unique_ptr<nvm::Medium> medium,
                                                const ManufactureInfo& info) {
  if (!medium) return MakeError("no medium to manufacture the PSAM on");
  if (info.chip_serial.size() != internal::kChipSerialSize) {
    return MakeError("chip serial must be 8 bytes");
  }
  if (info.transport_key.size() != internal::kTransportKeySize) {
    return MakeError("transport key must be 16 bytes");
  }
  auto image = nvm::AtomicImage::Open(std::move(medium));
  if (!image) return MakeError("opening the PSAM medium: " + image.error().message);
  if (!image->image().empty()) {
    return MakeError("the medium already holds an image: a PSAM is manufactured only once");
  }
  State state;
  state.chip_serial = info.chip_serial;
  state.transport_key = info.transport_key;
  Bytes encoded = internal::EncodeImage(state);
  const Status status = image->Commit(View(encoded));
  SecureWipe(encoded);
  if (!status.ok()) return MakeError("writing the first PSAM image: " + status.error().message);
  return std::unique_ptr<Psam>(
      new Psam(std::make_unique<Impl>(std::move(image).value(), std::move(state))));
}

Result<std::unique_ptr<Psam>> Psam::Open(std::unique_ptr<nvm::Medium> medium) {
  if (!medium) return MakeError("no medium to open the PSAM from");
  auto image = nvm::AtomicImage::Open(std::move(medium));
  if (!image) return MakeError("opening the PSAM medium: " + image.error().message);
  if (image->image().empty()) return MakeError("the medium holds no PSAM (never manufactured)");
  auto state = internal::DecodeImage(View(image->image()));
  if (!state) return state.error();
  return std::unique_ptr<Psam>(
      new Psam(std::make_unique<Impl>(std::move(image).value(), std::move(state).value())));
}

Bytes Psam::PowerOn() {
  if (impl_->dead) return {};
  impl_->ResetVolatile();
  impl_->powered = true;
  return MakeAtr();
}

void Psam::PowerOff() {
  impl_->ResetVolatile();
  impl_->powered = false;
}

Bytes Psam::Atr() const { return impl_->dead ? Bytes{} : MakeAtr(); }

bool Psam::dead() const { return impl_->dead; }

Bytes Psam::Transmit(ByteView command_apdu) {
  Impl& m = *impl_;
  if (m.dead) return {};
  if (!m.powered) return iso7816::Respond(sw::kUnknown);
  // A challenge serves only the command right after GET CHALLENGE; a chained MAC only its
  // own continuation blocks.
  const std::optional<Bytes> challenge = std::exchange(m.challenge, std::nullopt);
  auto parsed = CommandApdu::Parse(command_apdu);
  if (const StatusWord* error = std::get_if<StatusWord>(&parsed)) {
    m.mac_chain.reset();
    return iso7816::Respond(*error);
  }
  const CommandApdu& c = std::get<CommandApdu>(parsed);
  const bool continues_chain = c.cla == kClaProprietary && c.ins == kInsDesCrypt &&
                               (c.p1 == kDesCryptMacNext || c.p1 == kDesCryptMacLast);
  if (!continues_chain) m.mac_chain.reset();
  if (c.extended) return iso7816::Respond(sw::kWrongLength);  // short APDUs only
  const Reply reply = m.Dispatch(c, challenge);
  if (m.dead) return {};
  return iso7816::Respond(View(reply.data), reply.sw);
}

Inspection Psam::Inspect() const {
  const State& s = impl_->state;
  Inspection out;
  out.chip_serial = s.chip_serial;
  out.lifecycle = s.lifecycle;
  out.transport_key_present = !s.transport_key.empty();
  out.transport_key_failures = s.transport_key_errors;
  const ByteView ef15 = View(s.ef15);
  out.psam_serial.assign(ef15.begin(), ef15.begin() + 10);
  out.psam_version = ef15[10];
  out.key_type = ef15[11];
  out.issuer_data.assign(ef15.begin() + 12, ef15.end());
  out.terminal_number = s.ef16;
  out.purchase_key_index = s.ef17[0];
  out.valid_from.assign(s.ef17.begin() + 1, s.ef17.begin() + 5);
  out.valid_to.assign(s.ef17.begin() + 5, s.ef17.end());
  for (const StoredKey& k : s.keys) {
    out.keys.push_back(
        KeyInfo{k.usage, k.index, k.version, k.alg_id, k.error_limit, k.failures, k.locked()});
  }
  out.terminal_transaction_serial = s.terminal_serial;
  out.totals = s.totals;
  if (s.signed_totals) {
    out.signed_challenge = s.signed_totals->challenge;
    out.signed_totals = s.signed_totals->totals;
  }
  for (const PendingSession& p : s.pending) {
    out.pending_purchases.push_back(PendingPurchase{p.serial, p.amount});
  }
  out.completed_serials = s.completed;
  return out;
}

}  // namespace medcard::psam
