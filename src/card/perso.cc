// medcard's personalisation commands: CREATE FILE, WRITE KEY, SET PIN, END PERSONALISATION.
// Only in personalisation state; afterwards they answer 6985 forever
// (docs/card-commands.md, "Personalisation commands").
#include <algorithm>
#include <set>

#include "card/engine.h"
#include "crypto/crypto.h"
#include "iso7816/tlv.h"

namespace medcard::card::internal {

namespace sw = iso7816::sw;

namespace {

bool ValidEfType(FileType t) {
  return t == FileType::kTransparent || t == FileType::kLinearFixed || t == FileType::kCyclic ||
         t == FileType::kTlvRecords;
}

std::optional<AccessCondition> ParseAc(std::uint8_t kind, std::uint8_t ref) {
  AccessCondition ac{static_cast<AccessKind>(kind), ref};
  switch (ac.kind) {
    case AccessKind::kFree:
    case AccessKind::kPin:
    case AccessKind::kNever:
      if (ref != 0) return std::nullopt;
      return ac;
    case AccessKind::kSecureMessaging:
      if (!KeyUsageFromByte(ref)) return std::nullopt;
      return ac;
    case AccessKind::kExternalAuth:
      return ac;
  }
  return std::nullopt;
}

// CREATE FILE data: 62 L {82 83 [84] [88] [80] [86] [A5] [C0]} (docs/card-commands.md).
std::optional<FileSpec> ParseFcp(ByteView data) {
  auto parsed = iso7816::ParseBerTlv(data);
  if (!parsed.ok() || parsed->size() != 1 || (*parsed)[0].tag != 0x62) return std::nullopt;
  FileSpec spec;
  std::set<std::uint32_t> seen;
  bool have_type = false, have_fid = false, have_size = false, have_ac = false;
  for (const iso7816::Tlv& t : (*parsed)[0].children) {
    if (!seen.insert(t.tag).second) return std::nullopt;
    const Bytes& v = t.value;
    switch (t.tag) {
      case 0x82:
        if (v.size() != 1 && v.size() != 3) return std::nullopt;
        spec.type = static_cast<FileType>(v[0]);
        if (v.size() == 3) {
          spec.record_length = v[1];
          spec.record_count = v[2];
        }
        have_type = true;
        break;
      case 0x83:
        if (v.size() != 2) return std::nullopt;
        spec.fid = ReadU16(View(v));
        have_fid = true;
        break;
      case 0x84:
        if (v.empty() || v.size() > 16) return std::nullopt;
        spec.df_name = v;
        break;
      case 0x88:
        if (v.size() != 1 || v[0] == 0 || v[0] > 30) return std::nullopt;
        spec.sfi = v[0];
        break;
      case 0x80:
        if (v.size() != 2) return std::nullopt;
        spec.size = ReadU16(View(v));
        have_size = true;
        break;
      case 0x86: {
        if (v.size() != 4) return std::nullopt;
        const auto read = ParseAc(v[0], v[1]);
        const auto write = ParseAc(v[2], v[3]);
        if (!read || !write) return std::nullopt;
        spec.read = *read;
        spec.write = *write;
        have_ac = true;
        break;
      }
      case 0xA5:
        if (v.size() > kMaxFciProprietary) return std::nullopt;
        spec.fci_proprietary = v;
        break;
      case 0xC0: {
        if (v.size() != 12) return std::nullopt;
        PurseParameters purse;
        purse.app_type = v[0];
        purse.ed_max_balance = ReadU32(View(v), 1);
        purse.ep_max_balance = ReadU32(View(v), 5);
        purse.ed_overdraw_limit = ReadU24(View(v), 9);
        if (purse.app_type < kAppTypeEd || purse.app_type > kAppTypeEdEp) return std::nullopt;
        spec.purse = purse;
        break;
      }
      default:
        return std::nullopt;
    }
  }
  if (!have_type || !have_fid) return std::nullopt;
  if (spec.fid == 0x3F00 || spec.fid == 0x3FFF || spec.fid == 0xFFFF) return std::nullopt;
  const bool three_byte_descriptor = spec.record_length != 0 || spec.record_count != 0;
  if (spec.type == FileType::kDf) {
    if (three_byte_descriptor || seen.count(0x88) || have_size || have_ac) return std::nullopt;
    return spec;
  }
  if (!ValidEfType(spec.type) || !have_ac || seen.count(0x84) || seen.count(0xA5) || spec.purse) {
    return std::nullopt;
  }
  switch (spec.type) {
    case FileType::kTransparent:
      if (three_byte_descriptor || !have_size || spec.size == 0 ||
          spec.size > kMaxTransparentSize) {
        return std::nullopt;
      }
      break;
    case FileType::kTlvRecords:
      if (three_byte_descriptor || !have_size || spec.size == 0 || spec.size > kMaxTlvCapacity) {
        return std::nullopt;
      }
      break;
    case FileType::kLinearFixed:
    case FileType::kCyclic:
      if (have_size || spec.record_length == 0 || spec.record_count == 0 ||
          spec.record_length == 0xFF || spec.record_count == 0xFF) {
        return std::nullopt;
      }
      break;
    case FileType::kDf:
      break;
  }
  return spec;
}

// Key lengths the card accepts for each usage: purse and maintenance keys are 2-key 3DES.
bool ValidKeyLength(KeyUsage usage, std::size_t length) {
  if (usage == KeyUsage::kExternalAuth || usage == KeyUsage::kInternalAuth) {
    return length == 8 || length == 16;
  }
  return length == 16;
}

}  // namespace

Reply Engine::CreateFile(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.empty()) return Sw(sw::kWrongLength);
  const auto spec = ParseFcp(View(a.data));
  if (!spec) return Sw(sw::kWrongData);
  const int parent = sel_.current_df;
  if (file(parent).fid == spec->fid) return Sw(sw::kFileExists);
  for (int child : state_.children[static_cast<std::size_t>(parent)]) {
    const File& sibling = file(child);
    if (sibling.fid == spec->fid) return Sw(sw::kFileExists);
    if (spec->sfi != 0 && !sibling.is_df() && sibling.sfi == spec->sfi) {
      return Sw(sw::kFileExists);
    }
  }
  if (!spec->df_name.empty()) {
    for (const File& f : state_.files) {
      if (f.is_df() && f.df_name == spec->df_name) return Sw(sw::kFileExists);
    }
  }
  if (state_.files.size() >= kMaxFiles) return Sw(sw::kNotEnoughMemory);
  if (spec->type == FileType::kDf) {
    int depth = 1;
    for (int f = parent; f != 0; f = file(f).parent) ++depth;
    if (depth > kMaxDfDepth) return Sw(sw::kNotEnoughMemory);
  }

  File f;
  f.type = spec->type;
  f.fid = spec->fid;
  f.parent = parent;
  f.sfi = spec->sfi;
  f.df_name = spec->df_name;
  f.read = spec->read;
  f.write = spec->write;
  f.size = spec->size;
  f.record_length = spec->record_length;
  f.record_count = spec->record_count;
  f.fci_proprietary = spec->fci_proprietary;
  switch (f.type) {
    case FileType::kTransparent:
      f.data.assign(f.size, 0x00);
      break;
    case FileType::kLinearFixed:
      f.records_used = f.record_count;
      f.data.assign(std::size_t{f.record_count} * f.record_length, 0x00);
      break;
    default:
      break;
  }
  if (spec->purse) {
    Purse purse;
    purse.app_type = spec->purse->app_type;
    purse.ed.max_balance = spec->purse->ed_max_balance;
    purse.ed.overdraw_limit = spec->purse->ed_overdraw_limit;
    purse.ep.max_balance = spec->purse->ep_max_balance;
    f.purse = purse;
  }
  state_.files.push_back(std::move(f));
  state_.Index();
  const int created = static_cast<int>(state_.files.size() - 1);
  // ISO 7816-4: the created file becomes the current one.
  if (spec->type == FileType::kDf) {
    sel_.current_df = created;
    sel_.current_ef = kNoFile;
    ClearSecurity();
  } else {
    sel_.current_ef = created;
  }
  MarkDirty();
  return Sw(sw::kOk);
}

Reply Engine::WriteKey(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  // keyHeader(5) ‖ cryptogram(8, 16 or 24: 3DES-ECB under the transport key) ‖ MAC(4)
  const std::size_t n = a.data.size();
  if (n != 5 + 8 + 4 && n != 5 + 16 + 4 && n != 5 + 24 + 4) return Sw(sw::kWrongLength);
  const ByteView data = View(a.data);
  const ByteView header = data.first(5);
  const ByteView cryptogram = data.subspan(5, n - 9);
  if (const StatusWord s = VerifyTransportMac(ctx, data.first(n - 4), data.last(4)); !s.ok()) {
    return Sw(s);
  }
  const auto usage = KeyUsageFromByte(header[0]);
  if (!usage || header[1] == 0 || header[3] != kAlgTdes || header[4] > 15) {
    return Sw(sw::kWrongData);
  }
  auto value = crypto::DecryptKeyFromTransport(View(state_.transport_key), cryptogram);
  if (!value.ok()) return Sw(sw::kWrongData);
  if (!ValidKeyLength(*usage, value->size())) {
    SecureWipe(*value);
    return Sw(sw::kWrongData);
  }
  Key key;
  key.usage = *usage;
  key.index = header[1];
  key.version = header[2];
  key.alg_id = header[3];
  key.error_limit = header[4];
  key.value = std::move(value).value();
  std::vector<Key>& keys = df().keys;
  const auto at = std::find_if(keys.begin(), keys.end(), [&](const Key& k) {
    return k.usage > key.usage || (k.usage == key.usage && k.index >= key.index);
  });
  if (at != keys.end() && at->usage == key.usage && at->index == key.index) {
    SecureWipe(at->value);
    *at = std::move(key);
  } else {
    if (keys.size() >= kMaxKeysPerDf) return Sw(sw::kNotEnoughMemory);
    keys.insert(at, std::move(key));
  }
  MarkDirty();
  return Sw(sw::kOk);
}

Reply Engine::SetPinCommand(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 13) return Sw(sw::kWrongLength);  // tryLimit ‖ enciphered PIN ‖ MAC
  const ByteView data = View(a.data);
  if (const StatusWord s = VerifyTransportMac(ctx, data.first(9), data.last(4)); !s.ok()) {
    return Sw(s);
  }
  const std::uint8_t try_limit = data[0];
  const auto digits = ParseEncipheredPin(View(state_.transport_key), data.subspan(1, 8));
  if (try_limit == 0 || try_limit > 15 || !digits || digits->size() != 6) {
    return Sw(sw::kWrongData);
  }
  Pin pin;
  pin.try_limit = try_limit;
  SetPin(pin, *digits);
  df().pin = pin;
  return Sw(sw::kOk);
}

Reply Engine::EndPersonalisation(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 != 0x00 || a.p2 != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.size() != 4) return Sw(sw::kWrongLength);
  if (const StatusWord s = VerifyTransportMac(ctx, {}, View(a.data)); !s.ok()) return Sw(s);
  // A half-personalised purse never becomes usable: every purse ADF needs its SFI 15 basic
  // data, its SFI 18 log and a PIN.
  for (std::size_t i = 0; i < state_.files.size(); ++i) {
    const File& app = state_.files[i];
    if (!app.purse) continue;
    const int basic = FindChildEf(static_cast<int>(i), kPublicDataSfi);
    const int log = FindChildEf(static_cast<int>(i), kLogSfi);
    const bool complete = basic != kNoFile && file(basic).type == FileType::kTransparent &&
                          file(basic).size == kPublicDataLength && log != kNoFile &&
                          file(log).type == FileType::kCyclic &&
                          file(log).record_length == kLogRecordLength && app.pin.has_value();
    if (!complete) return Sw(sw::kConditionsNotSatisfied);
  }
  SecureWipe(state_.transport_key);
  state_.transport_key.clear();
  state_.transport_key_errors = 0;
  state_.lifecycle = Lifecycle::kOperational;
  ClearSecurity();
  MarkDirty();
  return Sw(sw::kOk);
}

}  // namespace medcard::card::internal
