// The PBOC ED/EP purse: INITIALIZE, CREDIT, DEBIT, overdraw-limit update, GET BALANCE,
// GET TRANSACTION PROVE (pboc-ed-ep.md "Card commands" and "Cryptography";
// docs/card-commands.md, "Purse").
#include <algorithm>

#include "card/engine.h"
#include "common/bcd.h"
#include "crypto/crypto.h"

namespace medcard::card::internal {

namespace sw = iso7816::sw;

namespace {

// A PBOC MAC as 4 bytes; empty only if the key has a wrong length (never for a stored key).
Bytes Mac4(ByteView key, ByteView data) {
  auto mac = crypto::PbocMac(key, data);
  return mac.ok() ? std::move(mac).value() : Bytes{};
}

Bytes Tac(const Key& dtk, ByteView data) {
  auto tac_key = crypto::TacKey(View(dtk.value));
  if (!tac_key.ok()) return {};
  Bytes tac = Mac4(View(*tac_key), data);
  SecureWipe(*tac_key);
  return tac;
}

std::array<std::uint8_t, 4> ToArray4(const Bytes& b) {
  std::array<std::uint8_t, 4> out{};
  std::copy_n(b.begin(), std::min<std::size_t>(b.size(), 4), out.begin());
  return out;
}

bool ValidDateTime(ByteView date, ByteView time) {
  return DecodeBcdDate(date).has_value() && DecodeBcdTime(time).has_value();
}

KeyUsage UsageOf(PendingKind kind) {
  switch (kind) {
    case PendingKind::kLoad:
      return KeyUsage::kLoad;
    case PendingKind::kPurchase:
    case PendingKind::kCashWithdraw:
      return KeyUsage::kPurchase;
    case PendingKind::kUnload:
      return KeyUsage::kUnload;
    case PendingKind::kOverdrawUpdate:
      return KeyUsage::kOverdrawUpdate;
  }
  return KeyUsage::kPurchase;
}

std::uint32_t AvailableOverdraw(const Wallet& w) { return w.overdraw_limit - w.overdraw_used; }

// A credit first repays the overdraft, then raises the balance.
void Credit(Wallet& w, std::uint32_t amount) {
  const std::uint32_t repay = std::min(amount, w.overdraw_used);
  w.overdraw_used -= repay;
  w.balance += amount - repay;
}

// A debit first spends the balance, then the overdraw limit (ED).
void Spend(Wallet& w, std::uint32_t amount) {
  if (amount <= w.balance) {
    w.balance -= amount;
  } else {
    w.overdraw_used += amount - w.balance;
    w.balance = 0;
  }
}

}  // namespace

void Engine::Record(const Pending& p, std::uint16_t serial, std::uint32_t overdraw_limit,
                    std::uint32_t amount, ByteView date, ByteView time, const Proof& proof) {
  // SFI 18 record: serial(2) ‖ overdrawLimit(3) ‖ amount(4) ‖ type(1) ‖ termNo(6) ‖ date(4) ‖
  // time(3) (pboc-ed-ep.md, "Files in the ED/EP application").
  const int log = FindChildEf(sel_.current_df, kLogSfi);
  if (log != kNoFile && file(log).type == FileType::kCyclic &&
      file(log).record_length == kLogRecordLength) {
    Bytes record;
    record.reserve(kLogRecordLength);
    AppendU16(record, serial);
    AppendU24(record, overdraw_limit);
    AppendU32(record, amount);
    record.push_back(p.type);
    Append(record, ByteView(p.terminal));
    Append(record, date);
    Append(record, time);
    File& f = file(log);
    if (f.records_used == f.record_count) {
      f.data.resize(f.data.size() - f.record_length);
    } else {
      ++f.records_used;
    }
    f.data.insert(f.data.begin(), record.begin(), record.end());
  }
  auto& proofs = df().purse->proofs;
  proofs.insert(proofs.begin(), proof);
  if (proofs.size() > kMaxProofs) proofs.pop_back();
  MarkDirty();
}

Reply Engine::Initialize(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  Pending p;
  switch (a.p1) {
    case 0x00:
      p.kind = PendingKind::kLoad;
      break;
    case 0x01:
      p.kind = PendingKind::kPurchase;
      break;
    case 0x02:
      p.kind = PendingKind::kCashWithdraw;
      break;
    case 0x04:
      p.kind = PendingKind::kOverdrawUpdate;
      break;
    case 0x05:
      p.kind = PendingKind::kUnload;
      break;
    default:
      return Sw(sw::kWrongP1P2);
  }
  const bool ed_only = p.kind == PendingKind::kCashWithdraw || p.kind == PendingKind::kUnload ||
                       p.kind == PendingKind::kOverdrawUpdate;
  if (ed_only ? a.p2 != 0x01 : (a.p2 != 0x01 && a.p2 != 0x02)) return Sw(sw::kWrongP1P2);
  const bool update = p.kind == PendingKind::kOverdrawUpdate;
  // Load, purchase, cash, unload: keyIndex(1) ‖ amount(4) ‖ termNo(6). Update: keyIndex ‖ termNo.
  if (a.data.size() != (update ? 7u : 11u)) return Sw(sw::kWrongLength);
  if (!df().purse) return Sw(sw::kConditionsNotSatisfied);
  p.ed = a.p2 == 0x01;
  Purse& purse = *df().purse;
  if ((purse.app_type & (p.ed ? kAppTypeEd : kAppTypeEp)) == 0) {
    return Sw(sw::kFunctionNotSupported);
  }
  // medcard profile: ED needs the PIN for everything, EP for load only.
  if ((p.ed || p.kind == PendingKind::kLoad) && !sel_.pin_verified) {
    return Sw(sw::kSecurityNotSatisfied);
  }
  const ByteView data = View(a.data);
  p.key_index = data[0];
  const Key* key = FindKey(sel_.current_df, UsageOf(p.kind), p.key_index);
  const Key* dtk = FindKey(sel_.current_df, KeyUsage::kTac, p.key_index);
  if (key == nullptr || dtk == nullptr) return Sw(sw::kKeyIndexNotSupported);
  if (key->locked()) return Sw(sw::kBlocked);
  if (!update) p.amount = ReadU32(data, 1);
  const ByteView terminal = data.subspan(update ? 1 : 5, 6);
  std::copy(terminal.begin(), terminal.end(), p.terminal.begin());
  if (!update && p.amount == 0) return Sw(sw::kWrongData);

  Wallet& w = p.ed ? purse.ed : purse.ep;
  switch (p.kind) {
    case PendingKind::kLoad:
      p.type = p.ed ? kTxnEdLoad : kTxnEpLoad;
      if (w.online_serial == 0xFFFF) return Sw(sw::kCounterAtMaximum);
      if (std::uint64_t{w.balance} + (p.amount - std::min(p.amount, w.overdraw_used)) >
          w.max_balance) {
        return Sw(sw::kConditionsNotSatisfied);
      }
      p.serial = w.online_serial;
      break;
    case PendingKind::kPurchase:
    case PendingKind::kCashWithdraw:
      p.type = p.kind == PendingKind::kCashWithdraw ? kTxnCashWithdraw
               : p.ed                               ? kTxnEdPurchase
                                                    : kTxnEpPurchase;
      if (p.amount > std::uint64_t{w.balance} + AvailableOverdraw(w)) {
        return Sw(sw::kInsufficientFunds);
      }
      if (w.offline_serial == 0xFFFF) return Sw(sw::kCounterAtMaximum);
      p.serial = w.offline_serial;
      break;
    case PendingKind::kUnload:
      p.type = kTxnUnload;
      if (p.amount > w.balance) return Sw(sw::kInsufficientFunds);
      if (w.online_serial == 0xFFFF) return Sw(sw::kCounterAtMaximum);
      p.serial = w.online_serial;
      break;
    case PendingKind::kOverdrawUpdate:
      p.type = kTxnOverdrawUpdate;
      if (w.online_serial == 0xFFFF) return Sw(sw::kCounterAtMaximum);
      p.serial = w.online_serial;
      break;
  }

  const Bytes random = Random(4);
  std::copy(random.begin(), random.end(), p.random.begin());
  Bytes serial;
  AppendU16(serial, p.serial);
  Bytes out;
  AppendU32(out, w.balance);
  Append(out, View(serial));
  if (p.kind == PendingKind::kPurchase || p.kind == PendingKind::kCashWithdraw) {
    // balance ‖ offlineSerial ‖ overdrawLimit(3, what is left of it) ‖ keyVersion ‖ algId ‖
    // random. The session key needs the terminal's serial: DEBIT derives it.
    AppendU24(out, AvailableOverdraw(w));
    Append(out, {key->version, key->alg_id});
    Append(out, View(random));
    pending_ = std::move(p);
    return Reply{std::move(out), sw::kOk};
  }
  // Load, unload, update: SESLK/SESULK/SESUK = 3DES(key, random ‖ onlineSerial ‖ 8000).
  auto session = crypto::LoadSessionKey(View(key->value), View(random), View(serial));
  if (!session.ok()) return Sw(sw::kUnknown);
  p.session_key = std::move(session).value();
  Bytes mac1_input;
  AppendU32(mac1_input, w.balance);
  if (update) {
    AppendU24(mac1_input, w.overdraw_limit);
    AppendU24(out, w.overdraw_limit);
  } else {
    AppendU32(mac1_input, p.amount);
  }
  mac1_input.push_back(p.type);
  Append(mac1_input, ByteView(p.terminal));
  const Bytes mac1 = Mac4(View(p.session_key), View(mac1_input));
  Append(out, {key->version, key->alg_id});
  Append(out, View(random));
  Append(out, View(mac1));
  pending_ = std::move(p);
  return Reply{std::move(out), sw::kOk};
}

Reply Engine::CreditForLoad(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 11) return Sw(sw::kWrongLength);  // date ‖ time ‖ MAC2
  if (!ctx.pending || ctx.pending->kind != PendingKind::kLoad) {
    return Sw(sw::kConditionsNotSatisfied);
  }
  const Pending& p = *ctx.pending;
  const ByteView data = View(a.data);
  const ByteView date = data.first(4), time = data.subspan(4, 3);
  if (!ValidDateTime(date, time)) return Sw(sw::kWrongData);
  Key& key = *FindKey(sel_.current_df, KeyUsage::kLoad, p.key_index);
  const Key& dtk = *FindKey(sel_.current_df, KeyUsage::kTac, p.key_index);
  if (key.locked()) return Sw(sw::kBlocked);
  // MAC2 = MAC(SESLK, amount ‖ type ‖ termNo ‖ date ‖ time)
  Bytes input;
  AppendU32(input, p.amount);
  input.push_back(p.type);
  Append(input, ByteView(p.terminal));
  Append(input, date);
  Append(input, time);
  if (!CheckMac(key, View(Mac4(View(p.session_key), View(input))), data.subspan(7, 4))) {
    return Sw(sw::kMacInvalid);
  }
  Wallet& w = p.ed ? df().purse->ed : df().purse->ep;
  Credit(w, p.amount);
  ++w.online_serial;
  // TAC = MAC(DTK_L xor DTK_R, newBalance ‖ onlineSerial ‖ amount ‖ type ‖ termNo ‖ date ‖ time)
  Bytes tac_input;
  AppendU32(tac_input, w.balance);
  AppendU16(tac_input, p.serial);
  Append(tac_input, View(input).first(11));  // amount ‖ type ‖ termNo
  Append(tac_input, date);
  Append(tac_input, time);
  const Bytes tac = Tac(dtk, View(tac_input));
  Record(p, p.serial, p.ed ? w.overdraw_limit : 0, p.amount, date, time,
         Proof{p.type, p.serial, {}, ToArray4(tac)});
  return Reply{tac, sw::kOk};
}

Reply Engine::Debit(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if ((a.p1 != 0x01 && a.p1 != 0x03) || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  const bool unload = a.p1 == 0x03;
  // Purchase/cash: termTxnSerial(4) ‖ date ‖ time ‖ MAC1. Unload: date ‖ time ‖ MAC2.
  if (a.data.size() != (unload ? 11u : 15u)) return Sw(sw::kWrongLength);
  const bool matches = ctx.pending && (unload ? ctx.pending->kind == PendingKind::kUnload
                                              : (ctx.pending->kind == PendingKind::kPurchase ||
                                                 ctx.pending->kind == PendingKind::kCashWithdraw));
  if (!matches) return Sw(sw::kConditionsNotSatisfied);
  const Pending& p = *ctx.pending;
  const ByteView data = View(a.data);
  const ByteView date = data.subspan(unload ? 0 : 4, 4);
  const ByteView time = data.subspan(unload ? 4 : 8, 3);
  if (!ValidDateTime(date, time)) return Sw(sw::kWrongData);
  Key& key = *FindKey(sel_.current_df, UsageOf(p.kind), p.key_index);
  const Key& dtk = *FindKey(sel_.current_df, KeyUsage::kTac, p.key_index);
  if (key.locked()) return Sw(sw::kBlocked);
  Wallet& w = p.ed ? df().purse->ed : df().purse->ep;

  // amount ‖ type ‖ termNo: the common head of every MAC input below.
  Bytes head;
  AppendU32(head, p.amount);
  head.push_back(p.type);
  Append(head, ByteView(p.terminal));

  if (unload) {
    // MAC2 = MAC(SESULK, amount ‖ 03 ‖ termNo ‖ date ‖ time)
    Bytes input = head;
    Append(input, date);
    Append(input, time);
    if (!CheckMac(key, View(Mac4(View(p.session_key), View(input))), data.subspan(7, 4))) {
      return Sw(sw::kMacInvalid);
    }
    w.balance -= p.amount;  // INITIALIZE checked amount <= balance; nothing ran since
    ++w.online_serial;
    // TAC as for load (medcard profile): newBalance ‖ onlineSerial ‖ amount ‖ 03 ‖ termNo ‖
    // date ‖ time.
    Bytes tac_input;
    AppendU32(tac_input, w.balance);
    AppendU16(tac_input, p.serial);
    Append(tac_input, View(input));
    const Bytes tac = Tac(dtk, View(tac_input));
    Record(p, p.serial, w.overdraw_limit, p.amount, date, time,
           Proof{p.type, p.serial, {}, ToArray4(tac)});
    return Reply{tac, sw::kOk};
  }

  const ByteView terminal_serial = data.first(4);
  // SESPK = 3DES(DPK, random ‖ offlineSerial ‖ termTxnSerial[2..3])
  Bytes serial;
  AppendU16(serial, p.serial);
  auto session = crypto::PurchaseSessionKey(View(key.value), ByteView(p.random), View(serial),
                                            terminal_serial);
  if (!session.ok()) return Sw(sw::kUnknown);
  // MAC1 = MAC(SESPK, amount ‖ type ‖ termNo ‖ date ‖ time)
  Bytes input = head;
  Append(input, date);
  Append(input, time);
  const bool mac1_ok = CheckMac(key, View(Mac4(View(*session), View(input))), data.subspan(11, 4));
  if (!mac1_ok) {
    SecureWipe(*session);
    return Sw(sw::kMacInvalid);
  }
  // MAC2 = MAC(SESPK, amount); TAC = MAC(DTK_L xor DTK_R, amount ‖ type ‖ termNo ‖
  // termTxnSerial ‖ date ‖ time)
  const Bytes mac2 = Mac4(View(*session), View(head).first(4));
  SecureWipe(*session);
  Bytes tac_input = head;
  Append(tac_input, terminal_serial);
  Append(tac_input, date);
  Append(tac_input, time);
  const Bytes tac = Tac(dtk, View(tac_input));
  Spend(w, p.amount);
  ++w.offline_serial;
  Record(p, p.serial, p.ed ? w.overdraw_limit : 0, p.amount, date, time,
         Proof{p.type, p.serial, ToArray4(mac2), ToArray4(tac)});
  return Reply{Concat({View(tac), View(mac2)}), sw::kOk};
}

Reply Engine::UpdateOverdrawLimit(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 14) return Sw(sw::kWrongLength);  // newLimit(3) ‖ date ‖ time ‖ MAC2
  if (!ctx.pending || ctx.pending->kind != PendingKind::kOverdrawUpdate) {
    return Sw(sw::kConditionsNotSatisfied);
  }
  const Pending& p = *ctx.pending;
  const ByteView data = View(a.data);
  const std::uint32_t new_limit = ReadU24(data, 0);
  const ByteView date = data.subspan(3, 4), time = data.subspan(7, 3);
  if (!ValidDateTime(date, time)) return Sw(sw::kWrongData);
  Wallet& w = df().purse->ed;
  // The overdraft already spent must stay covered.
  if (new_limit < w.overdraw_used) return Sw(sw::kConditionsNotSatisfied);
  Key& key = *FindKey(sel_.current_df, KeyUsage::kOverdrawUpdate, p.key_index);
  const Key& dtk = *FindKey(sel_.current_df, KeyUsage::kTac, p.key_index);
  if (key.locked()) return Sw(sw::kBlocked);
  // MAC2 = MAC(SESUK, newLimit(3) ‖ 07 ‖ termNo ‖ date ‖ time)
  Bytes input;
  AppendU24(input, new_limit);
  input.push_back(p.type);
  Append(input, ByteView(p.terminal));
  Append(input, date);
  Append(input, time);
  if (!CheckMac(key, View(Mac4(View(p.session_key), View(input))), data.subspan(10, 4))) {
    return Sw(sw::kMacInvalid);
  }
  w.overdraw_limit = new_limit;
  ++w.online_serial;
  // TAC = MAC(DTK_L xor DTK_R, balance ‖ onlineSerial ‖ newLimit(3) ‖ 07 ‖ termNo ‖ date ‖ time)
  Bytes tac_input;
  AppendU32(tac_input, w.balance);
  AppendU16(tac_input, p.serial);
  Append(tac_input, View(input));
  const Bytes tac = Tac(dtk, View(tac_input));
  Record(p, p.serial, new_limit, 0, date, time, Proof{p.type, p.serial, {}, ToArray4(tac)});
  return Reply{tac, sw::kOk};
}

Reply Engine::GetBalance(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || (a.p2 != 0x01 && a.p2 != 0x02)) return Sw(sw::kWrongP1P2);
  if (!a.data.empty()) return Sw(sw::kWrongLength);
  if (!df().purse) return Sw(sw::kConditionsNotSatisfied);
  const bool ed = a.p2 == 0x01;
  const Purse& purse = *df().purse;
  if ((purse.app_type & (ed ? kAppTypeEd : kAppTypeEp)) == 0) {
    return Sw(sw::kFunctionNotSupported);
  }
  if (ed && !sel_.pin_verified) return Sw(sw::kSecurityNotSatisfied);
  Bytes out;
  AppendU32(out, (ed ? purse.ed : purse.ep).balance);
  return Reply{std::move(out), sw::kOk};
}

Reply Engine::GetTransactionProve(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 == 0x00 || a.p2 > kTxnOverdrawUpdate) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 2) return Sw(sw::kWrongLength);
  if (!df().purse) return Sw(sw::kConditionsNotSatisfied);
  const std::uint16_t serial = ReadU16(View(a.data));
  for (const Proof& proof : df().purse->proofs) {
    if (proof.type == a.p2 && proof.serial == serial) {
      return Reply{Concat({ByteView(proof.mac2), ByteView(proof.tac)}), sw::kOk};
    }
  }
  return Sw(sw::kMacTacNotAvailable);
}

}  // namespace medcard::card::internal
