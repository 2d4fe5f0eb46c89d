#include "card/state.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace medcard::card::internal {

namespace {

constexpr std::string_view kMagic = "MCOS";
constexpr std::uint16_t kNoParent = 0xFFFF;

void AppendBytes8(Bytes& out, ByteView bytes) {  // length(1) ‖ bytes
  out.push_back(static_cast<std::uint8_t>(bytes.size()));
  Append(out, bytes);
}

void AppendAc(Bytes& out, const AccessCondition& ac) {
  out.push_back(static_cast<std::uint8_t>(ac.kind));
  out.push_back(ac.key_ref);
}

void AppendWallet(Bytes& out, const Wallet& w) {
  AppendU32(out, w.balance);
  AppendU16(out, w.online_serial);
  AppendU16(out, w.offline_serial);
  AppendU32(out, w.max_balance);
  AppendU24(out, w.overdraw_limit);
  AppendU24(out, w.overdraw_used);
}

// Bounds-checked reading: after the first failure every read answers zero and ok() is false.
class Reader {
 public:
  explicit Reader(ByteView in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }

  ByteView Take(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    const ByteView out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint8_t U8() {
    const ByteView b = Take(1);
    return b.empty() ? 0 : b[0];
  }
  std::uint16_t U16() {
    const ByteView b = Take(2);
    return b.empty() ? 0 : ReadU16(b);
  }
  std::uint32_t U24() {
    const ByteView b = Take(3);
    return b.empty() ? 0 : ReadU24(b);
  }
  std::uint32_t U32() {
    const ByteView b = Take(4);
    return b.empty() ? 0 : ReadU32(b);
  }
  Bytes Bytes8() {  // length(1) ‖ bytes
    const ByteView b = Take(U8());
    return Bytes(b.begin(), b.end());
  }
  template <std::size_t N>
  void Array(std::array<std::uint8_t, N>& out) {
    const ByteView b = Take(N);
    if (!b.empty()) std::copy(b.begin(), b.end(), out.begin());
  }

 private:
  ByteView in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

bool ValidFileType(std::uint8_t b) {
  switch (static_cast<FileType>(b)) {
    case FileType::kDf:
    case FileType::kTransparent:
    case FileType::kLinearFixed:
    case FileType::kCyclic:
    case FileType::kTlvRecords:
      return true;
  }
  return false;
}

bool ValidAc(const AccessCondition& ac) {
  switch (ac.kind) {
    case AccessKind::kFree:
    case AccessKind::kPin:
    case AccessKind::kNever:
      return ac.key_ref == 0;
    case AccessKind::kSecureMessaging:
      return KeyUsageFromByte(ac.key_ref).has_value();
    case AccessKind::kExternalAuth:
      return true;
  }
  return false;
}

AccessCondition ReadAc(Reader& r) {
  AccessCondition ac;
  ac.kind = static_cast<AccessKind>(r.U8());
  ac.key_ref = r.U8();
  return ac;
}

Wallet ReadWallet(Reader& r) {
  Wallet w;
  w.balance = r.U32();
  w.online_serial = r.U16();
  w.offline_serial = r.U16();
  w.max_balance = r.U32();
  w.overdraw_limit = r.U24();
  w.overdraw_used = r.U24();
  return w;
}

Error Corrupt(const std::string& what) { return MakeError("card image corrupt: " + what); }

}  // namespace

std::size_t File::TlvBytesUsed() const {
  std::size_t used = 0;
  for (const TlvRecord& r : tlv) used += 2 + r.value.size();
  return used;
}

void CardState::Index() {
  children.assign(files.size(), {});
  for (std::size_t i = 1; i < files.size(); ++i) {
    children[static_cast<std::size_t>(files[i].parent)].push_back(static_cast<int>(i));
  }
}

void SerializeState(const CardState& state, Bytes& out) {
  out.clear();
  Append(out, ByteView(reinterpret_cast<const std::uint8_t*>(kMagic.data()), kMagic.size()));
  out.push_back(kImageFormatVersion);
  out.push_back(static_cast<std::uint8_t>(state.lifecycle));
  Append(out, ByteView(state.chip_serial));
  AppendBytes8(out, View(state.transport_key));
  out.push_back(state.transport_key_errors);
  AppendU16(out, static_cast<std::uint16_t>(state.files.size()));
  for (const File& f : state.files) {
    out.push_back(static_cast<std::uint8_t>(f.type));
    AppendU16(out, f.fid);
    AppendU16(out, f.parent == kNoFile ? kNoParent : static_cast<std::uint16_t>(f.parent));
    if (f.is_df()) {
      AppendBytes8(out, View(f.df_name));
      AppendBytes8(out, View(f.fci_proprietary));
      out.push_back(static_cast<std::uint8_t>(f.block));
      out.push_back(static_cast<std::uint8_t>(f.keys.size()));
      for (const Key& k : f.keys) {
        Append(out, {static_cast<std::uint8_t>(k.usage), k.index, k.version, k.alg_id,
                     k.error_limit, k.error_count});
        AppendBytes8(out, View(k.value));
      }
      out.push_back(f.pin ? 1 : 0);
      if (f.pin) {
        out.push_back(f.pin->try_limit);
        out.push_back(f.pin->tries_left);
        Append(out, ByteView(f.pin->salt));
        Append(out, ByteView(f.pin->hash));
      }
      out.push_back(f.purse ? 1 : 0);
      if (f.purse) {
        out.push_back(f.purse->app_type);
        AppendWallet(out, f.purse->ed);
        AppendWallet(out, f.purse->ep);
        out.push_back(static_cast<std::uint8_t>(f.purse->proofs.size()));
        for (const Proof& p : f.purse->proofs) {
          out.push_back(p.type);
          AppendU16(out, p.serial);
          Append(out, ByteView(p.mac2));
          Append(out, ByteView(p.tac));
        }
      }
      continue;
    }
    out.push_back(f.sfi);
    AppendAc(out, f.read);
    AppendAc(out, f.write);
    switch (f.type) {
      case FileType::kTransparent:
        AppendU16(out, f.size);
        Append(out, View(f.data));
        break;
      case FileType::kLinearFixed:
      case FileType::kCyclic:
        Append(out, {f.record_length, f.record_count, f.records_used});
        Append(out, View(f.data));
        break;
      case FileType::kTlvRecords:
        AppendU16(out, f.size);
        out.push_back(static_cast<std::uint8_t>(f.tlv.size()));
        for (const TlvRecord& r : f.tlv) {
          out.push_back(r.tag);
          AppendBytes8(out, View(r.value));
        }
        break;
      case FileType::kDf:
        break;
    }
  }
}

Result<CardState> ParseState(ByteView image) {
  Reader r(image);
  const ByteView magic = r.Take(kMagic.size());
  if (!r.ok() || !std::equal(magic.begin(), magic.end(), kMagic.begin())) {
    return MakeError("not a medcard card image");
  }
  if (const std::uint8_t version = r.U8(); version != kImageFormatVersion) {
    return MakeError("card image format version " + std::to_string(version) +
                     " is not supported (this card OS reads version " +
                     std::to_string(kImageFormatVersion) + ")");
  }
  CardState state;
  const std::uint8_t lifecycle = r.U8();
  if (lifecycle < 1 || lifecycle > 3) return Corrupt("lifecycle byte");
  state.lifecycle = static_cast<Lifecycle>(lifecycle);
  r.Array(state.chip_serial);
  state.transport_key = r.Bytes8();
  if (!state.transport_key.empty() && state.transport_key.size() != 16) {
    return Corrupt("transport key length");
  }
  state.transport_key_errors = r.U8();
  const std::uint16_t count = r.U16();
  if (!r.ok() || count == 0 || count > kMaxFiles) return Corrupt("file count");
  state.files.resize(count);
  std::vector<int> depth(count, 0);
  for (std::size_t i = 0; i < count; ++i) {
    File& f = state.files[i];
    const std::uint8_t type = r.U8();
    if (!ValidFileType(type)) return Corrupt("file type of file " + std::to_string(i));
    f.type = static_cast<FileType>(type);
    f.fid = r.U16();
    const std::uint16_t parent = r.U16();
    if (i == 0) {
      if (parent != kNoParent || !f.is_df() || f.fid != 0x3F00) return Corrupt("MF");
    } else {
      if (parent >= i || !state.files[parent].is_df()) {
        return Corrupt("parent of file " + std::to_string(i));
      }
      f.parent = parent;
      depth[i] = depth[parent] + (f.is_df() ? 1 : 0);
      if (depth[i] > kMaxDfDepth) return Corrupt("DF depth");
    }
    if (f.is_df()) {
      f.df_name = r.Bytes8();
      f.fci_proprietary = r.Bytes8();
      const std::uint8_t block = r.U8();
      if (block > 2) return Corrupt("block state");
      f.block = static_cast<AppBlock>(block);
      const std::uint8_t keys = r.U8();
      if (keys > kMaxKeysPerDf) return Corrupt("key count");
      f.keys.resize(keys);
      for (Key& k : f.keys) {
        const auto usage = KeyUsageFromByte(r.U8());
        if (!usage) return Corrupt("key usage");
        k.usage = *usage;
        k.index = r.U8();
        k.version = r.U8();
        k.alg_id = r.U8();
        k.error_limit = r.U8();
        k.error_count = r.U8();
        k.value = r.Bytes8();
        if (k.value.size() != 8 && k.value.size() != 16) return Corrupt("key length");
      }
      if (const std::uint8_t has_pin = r.U8(); has_pin == 1) {
        Pin pin;
        pin.try_limit = r.U8();
        pin.tries_left = r.U8();
        r.Array(pin.salt);
        r.Array(pin.hash);
        if (pin.try_limit == 0 || pin.try_limit > 15 || pin.tries_left > pin.try_limit) {
          return Corrupt("PIN counters");
        }
        f.pin = pin;
      } else if (has_pin != 0) {
        return Corrupt("PIN flag");
      }
      if (const std::uint8_t has_purse = r.U8(); has_purse == 1) {
        Purse purse;
        purse.app_type = r.U8();
        purse.ed = ReadWallet(r);
        purse.ep = ReadWallet(r);
        const std::uint8_t proofs = r.U8();
        if (purse.app_type < 1 || purse.app_type > 3 || proofs > kMaxProofs) {
          return Corrupt("purse");
        }
        for (const Wallet* w : {&purse.ed, &purse.ep}) {
          if (w->overdraw_used > w->overdraw_limit) return Corrupt("overdraw");
        }
        purse.proofs.resize(proofs);
        for (Proof& p : purse.proofs) {
          p.type = r.U8();
          p.serial = r.U16();
          r.Array(p.mac2);
          r.Array(p.tac);
        }
        f.purse = std::move(purse);
      } else if (has_purse != 0) {
        return Corrupt("purse flag");
      }
      if (f.df_name.size() > 16 || f.fci_proprietary.size() > kMaxFciProprietary) {
        return Corrupt("DF name or FCI");
      }
      continue;
    }
    f.sfi = r.U8();
    f.read = ReadAc(r);
    f.write = ReadAc(r);
    if (f.sfi > 30 || !ValidAc(f.read) || !ValidAc(f.write)) {
      return Corrupt("EF attributes of file " + std::to_string(i));
    }
    switch (f.type) {
      case FileType::kTransparent: {
        f.size = r.U16();
        if (f.size == 0 || f.size > kMaxTransparentSize) return Corrupt("transparent size");
        const ByteView data = r.Take(f.size);
        f.data.assign(data.begin(), data.end());
        break;
      }
      case FileType::kLinearFixed:
      case FileType::kCyclic: {
        f.record_length = r.U8();
        f.record_count = r.U8();
        f.records_used = r.U8();
        if (f.record_length == 0 || f.record_count == 0 || f.records_used > f.record_count ||
            (f.type == FileType::kLinearFixed && f.records_used != f.record_count)) {
          return Corrupt("record geometry");
        }
        const ByteView data = r.Take(std::size_t{f.records_used} * f.record_length);
        f.data.assign(data.begin(), data.end());
        break;
      }
      case FileType::kTlvRecords: {
        f.size = r.U16();
        if (f.size == 0 || f.size > kMaxTlvCapacity) return Corrupt("TLV capacity");
        f.tlv.resize(r.U8());
        for (TlvRecord& rec : f.tlv) {
          rec.tag = r.U8();
          rec.value = r.Bytes8();
          if (rec.tag == 0x00 || rec.tag == 0xFF || rec.value.size() > 254) {
            return Corrupt("TLV record");
          }
        }
        if (f.TlvBytesUsed() > f.size) return Corrupt("TLV records exceed capacity");
        break;
      }
      case FileType::kDf:
        break;
    }
  }
  if (!r.ok()) return Corrupt("truncated");
  if (!r.at_end()) return Corrupt("trailing bytes");
  state.Index();
  return state;
}

}  // namespace medcard::card::internal
