// PBOC issuer computations through a KeyStore; the byte layouts are pboc-ed-ep.md,
// "Cryptography" (load, purchase) and card-profile.md, "PSAM" (signed totals).
#include "keys/pboc.h"

#include "crypto/crypto.h"

namespace medcard::keys {
namespace {

constexpr std::uint8_t kTxnEdLoad = 0x01, kTxnEpLoad = 0x02;
constexpr std::uint8_t kClearTotalsTag = 0x7C;  // the CLEAR SAM TOTALS instruction byte

// amount ‖ type ‖ termNo: the part every load MAC and TAC shares.
Bytes LoadCommonData(const LoadAuthorisationRequest& r) {
  Bytes d;
  AppendU32(d, r.amount);
  d.push_back(r.type);
  Append(d, r.terminal_number);
  return d;
}

Status CheckLoad(const LoadAuthorisationRequest& r) {
  if (r.type != kTxnEdLoad && r.type != kTxnEpLoad) {
    return MakeError("not a load (transaction type " + ToHex(Bytes{r.type}) + ")");
  }
  if (r.asn.size() != 10 || r.terminal_number.size() != 6 || r.random.size() != 4 ||
      r.mac1.size() != 4) {
    return MakeError("malformed load request");
  }
  if (!IsValidDate(r.date)) return MakeError("malformed load request: invalid date");
  return Status::Ok();
}

// `invalid` when `mac` is not the MAC of `data`; the store's own error when it cannot compute it.
Status CheckMac(KeyStore& store, KeyRef key, ByteView data, ByteView mac, const char* invalid) {
  auto expected = store.Mac(key, data);
  if (!expected.ok()) return expected.error();
  if (!ConstantTimeEqual(*expected, mac)) return MakeError(invalid);
  return Status::Ok();
}

// The TAC key DTK_L ⊕ DTK_R of the card.
Result<KeyRef> CardTacKey(KeyStore& store, ByteView asn, std::uint8_t key_version) {
  auto dtk = CardKey(store, "tac", asn, key_version);
  if (!dtk.ok()) return dtk.error();
  ScopedKey dtk_ref(store, *dtk);
  return store.DeriveTacKey(*dtk);
}

Result<KeyRef> SettlementKey(KeyStore& store, ByteView psam_serial, ByteView challenge,
                             ByteView totals_answer, std::uint8_t key_version) {
  if (psam_serial.size() != 10 || challenge.size() != 8 || totals_answer.size() != 22) {
    return MakeError("malformed SAM totals");
  }
  return CardKey(store, "settlement", psam_serial, key_version);
}

}  // namespace

Result<KeyRef> CardKey(KeyStore& store, std::string_view role, ByteView asn,
                       std::uint8_t key_version) {
  if (asn.size() != 10) {
    return MakeError("an ASN is 10 bytes, got " + std::to_string(asn.size()));
  }
  auto master = store.Find(role, key_version);
  if (!master.ok()) return master.error();
  ScopedKey master_ref(store, *master);
  return store.Diversify(*master, crypto::AsnFactor(asn));
}

Result<Bytes> AuthoriseLoad(KeyStore& store, const LoadAuthorisationRequest& r) {
  if (Status valid = CheckLoad(r); !valid.ok()) return valid.error();
  auto dlk = CardKey(store, "load", r.asn, r.key_version);
  if (!dlk.ok()) return dlk.error();
  ScopedKey dlk_ref(store, *dlk);
  // SESLK = 3DES(DLK, random ‖ onlineSerial ‖ 8000)
  Bytes session_data = r.random;
  AppendU16(session_data, r.online_serial);
  Append(session_data, {0x80, 0x00});
  auto seslk = store.DeriveSessionKey(*dlk, session_data);
  if (!seslk.ok()) return seslk.error();
  ScopedKey seslk_ref(store, *seslk);
  Bytes mac1_data;
  AppendU32(mac1_data, r.old_balance);
  Append(mac1_data, LoadCommonData(r));
  if (Status mac1 = CheckMac(store, *seslk, mac1_data, r.mac1, "MAC1 invalid: load refused");
      !mac1.ok()) {
    return mac1.error();
  }
  const Bytes mac2_data = Concat({LoadCommonData(r), EncodeBcdDate(r.date), EncodeBcdTime(r.time)});
  return store.Mac(*seslk, mac2_data);
}

Status VerifyLoadTac(KeyStore& store, const LoadAuthorisationRequest& r, ByteView tac) {
  return VerifyLoadTac(store, r, tac, 0);
}

Status VerifyLoadTac(KeyStore& store, const LoadAuthorisationRequest& r, ByteView tac,
                     std::uint32_t repaid) {
  if (Status valid = CheckLoad(r); !valid.ok()) return valid;
  if (repaid > r.amount) return MakeError("load TAC invalid: repaid more than the load");
  if (static_cast<std::uint64_t>(r.old_balance) + r.amount - repaid > 0xFFFFFFFFu) {
    return MakeError("load TAC invalid: the new balance overflows");
  }
  auto tac_key = CardTacKey(store, r.asn, r.key_version);
  if (!tac_key.ok()) return tac_key.error();
  ScopedKey tac_key_ref(store, *tac_key);
  Bytes data;
  AppendU32(data, r.old_balance + r.amount - repaid);
  AppendU16(data, r.online_serial);
  Append(data, LoadCommonData(r));
  Append(data, EncodeBcdDate(r.date));
  Append(data, EncodeBcdTime(r.time));
  return CheckMac(store, *tac_key, data, tac, "load TAC invalid");
}

namespace {

Status CheckPurchase(const PurchaseRecord& p) {
  if (p.asn.size() != 10 || p.terminal_number.size() != 6 || p.tac.size() != 4 ||
      !IsValidDate(p.date)) {
    return MakeError("malformed purchase record");
  }
  return Status::Ok();
}

// The purchase's TAC under its card's TAC key, DTK_L ⊕ DTK_R of `master` diversified by the ASN.
Status CheckPurchaseTac(KeyStore& store, KeyRef master, const PurchaseRecord& p) {
  auto dtk = store.Diversify(master, crypto::AsnFactor(p.asn));
  if (!dtk.ok()) return dtk.error();
  ScopedKey dtk_ref(store, *dtk);
  auto tac_key = store.DeriveTacKey(*dtk);
  if (!tac_key.ok()) return tac_key.error();
  ScopedKey tac_key_ref(store, *tac_key);
  Bytes data;
  data.reserve(22);
  AppendU32(data, p.amount);
  data.push_back(p.type);
  Append(data, p.terminal_number);
  AppendU32(data, p.terminal_serial);
  Append(data, EncodeBcdDate(p.date));
  Append(data, EncodeBcdTime(p.time));
  return CheckMac(store, *tac_key, data, p.tac, "purchase TAC invalid");
}

}  // namespace

Status VerifyPurchaseTac(KeyStore& store, const PurchaseRecord& p) {
  if (Status valid = CheckPurchase(p); !valid.ok()) return valid;
  auto master = store.Find("tac", p.key_version);
  if (!master.ok()) return master.error();
  ScopedKey master_ref(store, *master);
  return CheckPurchaseTac(store, *master, p);
}

PurchaseTacVerifier::~PurchaseTacVerifier() {
  for (const auto& [version, master] : masters_) store_.Release(master);
}

Status PurchaseTacVerifier::Verify(const PurchaseRecord& p) {
  if (Status valid = CheckPurchase(p); !valid.ok()) return valid;
  for (const auto& [version, master] : masters_) {
    if (version == p.key_version) return CheckPurchaseTac(store_, master, p);
  }
  auto master = store_.Find("tac", p.key_version);
  if (!master.ok()) return master.error();
  masters_.emplace_back(p.key_version, *master);
  return CheckPurchaseTac(store_, *master, p);
}

Status VerifySamTotals(KeyStore& store, ByteView psam_serial, ByteView challenge,
                       ByteView totals_answer, std::uint8_t key_version) {
  auto key = SettlementKey(store, psam_serial, challenge, totals_answer, key_version);
  if (!key.ok()) return key.error();
  ScopedKey key_ref(store, *key);
  const Bytes data = Concat({challenge, totals_answer.first(18)});
  return CheckMac(store, *key, data, totals_answer.subspan(18, 4),
                  "SAM totals MAC invalid: not signed by this PSAM");
}

Result<Bytes> AcknowledgeSamTotals(KeyStore& store, ByteView psam_serial, ByteView challenge,
                                   ByteView totals_answer, std::uint8_t key_version) {
  Status signed_by_psam =
      VerifySamTotals(store, psam_serial, challenge, totals_answer, key_version);
  if (!signed_by_psam.ok()) return signed_by_psam.error();
  auto key = SettlementKey(store, psam_serial, challenge, totals_answer, key_version);
  if (!key.ok()) return key.error();
  ScopedKey key_ref(store, *key);
  Bytes ack_data{kClearTotalsTag};
  Append(ack_data, challenge);
  Append(ack_data, totals_answer.first(18));
  return store.Mac(*key, ack_data);
}

}  // namespace medcard::keys
