#include "psam/image.h"

#include <algorithm>
#include <string>

namespace medcard::psam::internal {

namespace {

constexpr std::uint8_t kMagic[4] = {'M', 'C', 'P', 'S'};

// Bounds-checked sequential reads; the first failure sticks and names the field.
class Reader {
 public:
  explicit Reader(ByteView in) : in_(in) {}

  bool Take(std::size_t n, ByteView& out, const char* field) {
    if (!error_.empty()) return false;
    if (in_.size() - pos_ < n) {
      error_ = std::string("image truncated at ") + field;
      return false;
    }
    out = in_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  std::uint8_t U8(const char* field) {
    ByteView v;
    return Take(1, v, field) ? v[0] : 0;
  }
  std::uint32_t U32(const char* field) {
    ByteView v;
    return Take(4, v, field) ? ReadU32(v) : 0;
  }
  std::uint64_t U48(const char* field) {
    ByteView v;
    return Take(6, v, field) ? ReadU48(v) : 0;
  }
  Bytes Raw(std::size_t n, const char* field) {
    ByteView v;
    return Take(n, v, field) ? Bytes(v.begin(), v.end()) : Bytes{};
  }
  void Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }
  bool ok() const { return error_.empty(); }
  bool at_end() const { return pos_ == in_.size(); }
  const std::string& error() const { return error_; }

 private:
  ByteView in_;
  std::size_t pos_ = 0;
  std::string error_;
};

SamTotals ReadTotals(Reader& r) {
  SamTotals t;
  t.count = r.U32("totals count");
  t.amount = r.U48("totals amount");
  t.first_serial = r.U32("totals first serial");
  t.last_serial = r.U32("totals last serial");
  return t;
}

}  // namespace

Bytes EncodeTotals(const SamTotals& totals) {
  Bytes out;
  AppendU32(out, totals.count);
  AppendU48(out, totals.amount);
  AppendU32(out, totals.first_serial);
  AppendU32(out, totals.last_serial);
  return out;
}

Bytes EncodeImage(const State& s) {
  Bytes out(std::begin(kMagic), std::end(kMagic));
  out.push_back(kImageFormatVersion);
  out.push_back(static_cast<std::uint8_t>(s.lifecycle));
  Append(out, View(s.chip_serial));
  out.push_back(static_cast<std::uint8_t>(s.transport_key.size()));
  Append(out, View(s.transport_key));
  out.push_back(s.transport_key_errors);
  Append(out, View(s.ef15));
  Append(out, View(s.ef16));
  Append(out, View(s.ef17));
  out.push_back(static_cast<std::uint8_t>(s.keys.size()));
  for (const StoredKey& k : s.keys) {
    Append(out, {static_cast<std::uint8_t>(k.usage), k.index, k.version, k.alg_id, k.error_limit,
                 k.failures, static_cast<std::uint8_t>(k.value.size())});
    Append(out, View(k.value));
  }
  AppendU32(out, s.terminal_serial);
  Append(out, View(EncodeTotals(s.totals)));
  out.push_back(s.signed_totals ? 1 : 0);
  if (s.signed_totals) {
    Append(out, View(s.signed_totals->challenge));
    Append(out, View(EncodeTotals(s.signed_totals->totals)));
  }
  out.push_back(static_cast<std::uint8_t>(s.pending.size()));
  for (const PendingSession& p : s.pending) {
    AppendU32(out, p.serial);
    AppendU32(out, p.amount);
    Append(out, View(p.session_key));
  }
  out.push_back(static_cast<std::uint8_t>(s.completed.size()));
  for (std::uint32_t serial : s.completed) AppendU32(out, serial);
  return out;
}

Result<State> DecodeImage(ByteView image) {
  Reader r(image);
  State s;
  const Bytes magic = r.Raw(sizeof kMagic, "magic");
  if (r.ok() && !std::equal(magic.begin(), magic.end(), std::begin(kMagic))) {
    return MakeError("not a medcard PSAM image (bad magic)");
  }
  const std::uint8_t version = r.U8("format version");
  if (r.ok() && version != kImageFormatVersion) {
    return MakeError("unsupported PSAM image format version " + std::to_string(version));
  }
  const std::uint8_t lifecycle = r.U8("lifecycle");
  if (lifecycle != static_cast<std::uint8_t>(Lifecycle::kPersonalisation) &&
      lifecycle != static_cast<std::uint8_t>(Lifecycle::kOperational)) {
    r.Fail("bad lifecycle byte");
  }
  s.lifecycle = static_cast<Lifecycle>(lifecycle);
  s.chip_serial = r.Raw(kChipSerialSize, "chip serial");
  const std::uint8_t tk_size = r.U8("transport key length");
  const bool personalising = s.lifecycle == Lifecycle::kPersonalisation;
  if (r.ok() && tk_size != (personalising ? kTransportKeySize : 0)) {
    r.Fail("transport key length inconsistent with lifecycle");
  }
  s.transport_key = r.Raw(tk_size, "transport key");
  s.transport_key_errors = r.U8("transport key failures");
  if (s.transport_key_errors > (personalising ? kTransportKeyErrorLimit : 0)) {
    r.Fail("bad transport key failure count");
  }
  s.ef15 = r.Raw(kEf15Size, "EF 15");
  s.ef16 = r.Raw(kEf16Size, "EF 16");
  s.ef17 = r.Raw(kEf17Size, "EF 17");

  const std::uint8_t key_count = r.U8("key count");
  if (key_count > kMaxKeys) r.Fail("too many keys");
  for (int i = 0; r.ok() && i < key_count; ++i) {
    StoredKey k;
    const auto usage = KeyUsageFromByte(r.U8("key usage"));
    k.index = r.U8("key index");
    k.version = r.U8("key version");
    k.alg_id = r.U8("key algorithm");
    k.error_limit = r.U8("key error limit");
    k.failures = r.U8("key failures");
    const std::uint8_t size = r.U8("key length");
    if (!usage || k.alg_id != kAlgTdes || k.error_limit == 0 || k.error_limit > kMaxErrorLimit ||
        k.failures > k.error_limit || size != kKeySize) {
      r.Fail("bad key entry");
      break;
    }
    k.usage = *usage;
    k.value = r.Raw(size, "key value");
    const bool duplicate = std::any_of(s.keys.begin(), s.keys.end(), [&](const StoredKey& o) {
      return o.usage == k.usage && (o.version == k.version || k.usage == KeyUsage::kSettlement);
    });
    if (duplicate) r.Fail("duplicate key");
    s.keys.push_back(std::move(k));
  }

  s.terminal_serial = r.U32("terminal transaction serial");
  s.totals = ReadTotals(r);
  const std::uint8_t has_signed = r.U8("signed totals flag");
  if (has_signed > 1) r.Fail("bad signed totals flag");
  if (r.ok() && has_signed == 1) {
    SignedTotals st;
    st.challenge = r.Raw(8, "signed challenge");
    st.totals = ReadTotals(r);
    s.signed_totals = std::move(st);
  }
  const std::uint8_t pending_count = r.U8("pending session count");
  if (pending_count > kMaxPendingSessions) r.Fail("too many pending sessions");
  for (int i = 0; r.ok() && i < pending_count; ++i) {
    PendingSession p;
    p.serial = r.U32("pending serial");
    p.amount = r.U32("pending amount");
    p.session_key = r.Raw(8, "pending session key");
    s.pending.push_back(std::move(p));
  }
  const std::uint8_t completed_count = r.U8("completed serial count");
  if (completed_count > kMaxCompletedSerials) r.Fail("too many completed serials");
  for (int i = 0; r.ok() && i < completed_count; ++i) {
    s.completed.push_back(r.U32("completed serial"));
  }
  if (r.ok() && !r.at_end()) r.Fail("trailing bytes after the image");
  if (!r.ok()) return MakeError("corrupt PSAM image: " + r.error());
  return s;
}

}  // namespace medcard::psam::internal
