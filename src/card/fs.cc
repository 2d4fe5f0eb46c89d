// ISO 7816-4 file system commands: SELECT, READ/UPDATE BINARY, READ/UPDATE/APPEND RECORD,
// plain (CLA 00) and with secure messaging (CLA 04). docs/card-commands.md, "File system".
#include <algorithm>

#include "card/engine.h"
#include "iso7816/tlv.h"

namespace medcard::card::internal {

namespace sw = iso7816::sw;

namespace {

constexpr StatusWord kIncompatibleFileStructure{0x6981};
constexpr std::uint8_t kModeRecordNumber = 0x04;  // P2 bits 3..1 = 100
constexpr std::uint8_t kModeFirstOccurrence = 0x00;

FileSpec SpecOf(const File& f) {
  FileSpec spec;
  spec.type = f.type;
  spec.fid = f.fid;
  spec.sfi = f.sfi;
  spec.df_name = f.df_name;
  spec.read = f.read;
  spec.write = f.write;
  spec.size = f.size;
  spec.record_length = f.record_length;
  spec.record_count = f.record_count;
  return spec;
}

// Record n (1-based) of a linear-fixed or cyclic EF (cyclic: 1 = newest), or empty.
ByteView RecordAt(const File& f, std::uint8_t n) {
  const std::uint8_t present = f.type == FileType::kLinearFixed ? f.record_count : f.records_used;
  if (n == 0 || n > present) return {};
  return View(f.data).subspan(std::size_t{n - 1u} * f.record_length, f.record_length);
}

TlvRecord* FindTlv(File& f, std::uint8_t tag) {
  for (TlvRecord& r : f.tlv) {
    if (r.tag == tag) return &r;
  }
  return nullptr;
}

}  // namespace

Engine::SmSplit Engine::SplitSm(const Ctx& ctx) {
  const ByteView data = View(ctx.apdu.data);
  if (!ctx.sm()) return SmSplit{data, {}, std::nullopt};
  if (data.size() < 4) return SmSplit{{}, {}, sw::kSmMissing};
  return SmSplit{data.first(data.size() - 4), data.last(4), std::nullopt};
}

// ---- SELECT ---------------------------------------------------------------------------------

int Engine::FindByFid(std::uint16_t fid) {
  if (fid == 0x3F00) return 0;
  const int current = sel_.current_df;
  for (int child : state_.children[static_cast<std::size_t>(current)]) {
    if (file(child).fid == fid) return child;
  }
  if (file(current).fid == fid) return current;
  const int parent = file(current).parent;
  if (parent != kNoFile) {
    if (file(parent).fid == fid) return parent;
    for (int sibling : state_.children[static_cast<std::size_t>(parent)]) {
      if (file(sibling).is_df() && file(sibling).fid == fid) return sibling;
    }
  }
  return kNoFile;
}

Bytes Engine::Fci(int df_index) {
  const File& f = file(df_index);
  Bytes inner;
  if (!f.df_name.empty()) {
    Append(inner, View(iso7816::BuildTlv(0x84, View(f.df_name))));
  } else {
    Bytes fid;
    AppendU16(fid, f.fid);
    Append(inner, View(iso7816::BuildTlv(0x83, View(fid))));
  }
  Bytes proprietary = f.fci_proprietary;
  if (f.purse) {
    // pboc-ed-ep.md: the ADF FCI carries 9F08 (application version, SFI 15 byte 10) and 9F0C
    // (the 30 bytes of SFI 15).
    const int basic = FindChildEf(df_index, kPublicDataSfi);
    if (basic != kNoFile && file(basic).type == FileType::kTransparent &&
        file(basic).size == kPublicDataLength) {
      const Bytes& data = file(basic).data;
      const std::uint8_t version[] = {data[9]};
      Append(proprietary, View(iso7816::BuildTlv(0x9F08, ByteView(version))));
      Append(proprietary, View(iso7816::BuildTlv(0x9F0C, View(data))));
    }
  }
  if (!proprietary.empty()) Append(inner, View(iso7816::BuildTlv(0xA5, View(proprietary))));
  return iso7816::BuildTlv(0x6F, View(inner));
}

Bytes Engine::Fcp(int ef_index) { return EncodeFcp(SpecOf(file(ef_index))); }

Reply Engine::Select(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  if (a.p1 == 0x00) {  // by file identifier
    if (a.p2 != 0x00 && a.p2 != 0x0C) return Sw(sw::kWrongP1P2);
    if (a.data.size() != 2) return Sw(sw::kWrongLength);
    const int target = FindByFid(ReadU16(View(a.data)));
    if (target == kNoFile) return Sw(sw::kFileNotFound);
    return SelectFile(ctx, target);
  }
  if (a.p1 == 0x04) {  // by DF name, P2 00 first / 02 next occurrence
    if (a.p2 != 0x00 && a.p2 != 0x02) return Sw(sw::kWrongP1P2);
    if (a.data.empty() || a.data.size() > 16) return Sw(sw::kWrongLength);
    const std::size_t start =
        a.p2 == 0x02 && sel_.last_name_match != kNoFile ? sel_.last_name_match + 1u : 0u;
    for (std::size_t i = start; i < state_.files.size(); ++i) {
      const File& f = state_.files[i];
      if (f.is_df() && f.df_name.size() >= a.data.size() &&
          std::equal(a.data.begin(), a.data.end(), f.df_name.begin())) {
        sel_.last_name_match = static_cast<int>(i);
        return SelectFile(ctx, static_cast<int>(i));
      }
    }
    return Sw(sw::kFileNotFound);
  }
  return Sw(sw::kWrongP1P2);
}

Reply Engine::SelectFile(Ctx& ctx, int index) {
  const CommandApdu& a = ctx.apdu;
  const bool no_answer = a.p1 == 0x00 && a.p2 == 0x0C;
  const File& f = file(index);
  if (!f.is_df()) {
    sel_.current_ef = index;
    if (no_answer) return Sw(sw::kOk);
    return Answer(a, Fcp(index));
  }
  // A new SELECT of a DF clears its security states, even when it is the current one.
  sel_.current_df = index;
  sel_.current_ef = kNoFile;
  ClearSecurity();
  if (f.block == AppBlock::kPermanent) return Sw(sw::kAppPermanentlyBlocked);
  if (no_answer) {
    return Sw(f.block == AppBlock::kTemporary ? sw::kFunctionNotSupported : sw::kOk);
  }
  Reply reply = Answer(a, Fci(index));
  if (f.block == AppBlock::kTemporary && reply.sw == sw::kOk) {
    reply.sw = sw::kFunctionNotSupported;  // FCI + 6A81
  }
  return reply;
}

// ---- Transparent EFs ------------------------------------------------------------------------

Reply Engine::ReadBinary(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  const auto address = iso7816::DecodeBinaryAddress(a.p1, a.p2);
  if (!address) return Sw(sw::kWrongP1P2);
  // Plain: no data. SM: exactly the 4-byte MAC.
  if (ctx.sm() ? a.data.size() > 4 : !a.data.empty()) return Sw(sw::kWrongLength);
  if (!a.le) return Sw(sw::kWrongLength);
  const SmSplit split = SplitSm(ctx);
  if (split.error) return Sw(*split.error);
  const int ef = address->sfi ? FindSfi(*address->sfi) : sel_.current_ef;
  if (ef == kNoFile) {
    return Sw(address->sfi ? sw::kFileNotFound : sw::kCommandNotAllowedNoEf);
  }
  if (file(ef).type != FileType::kTransparent) return Sw(kIncompatibleFileStructure);
  sel_.current_ef = ef;
  if (address->offset >= file(ef).size) return Sw(sw::kWrongOffset);
  if (const StatusWord s = CheckAccess(ctx, file(ef).read, false, split.payload, split.mac);
      !s.ok()) {
    return Sw(s);
  }
  const File& f = file(ef);
  const std::size_t n = std::min<std::size_t>(*a.le, f.size - address->offset);
  const auto begin = f.data.begin() + address->offset;
  return Reply{Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)), sw::kOk};
}

Reply Engine::UpdateBinary(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  const auto address = iso7816::DecodeBinaryAddress(a.p1, a.p2);
  if (!address) return Sw(sw::kWrongP1P2);
  if (a.data.empty()) return Sw(sw::kWrongLength);
  const SmSplit split = SplitSm(ctx);
  if (split.error) return Sw(*split.error);
  if (split.payload.empty()) return Sw(sw::kWrongLength);
  const int ef = address->sfi ? FindSfi(*address->sfi) : sel_.current_ef;
  if (ef == kNoFile) {
    return Sw(address->sfi ? sw::kFileNotFound : sw::kCommandNotAllowedNoEf);
  }
  if (file(ef).type != FileType::kTransparent) return Sw(kIncompatibleFileStructure);
  sel_.current_ef = ef;
  if (address->offset >= file(ef).size) return Sw(sw::kWrongOffset);
  if (address->offset + split.payload.size() > file(ef).size) return Sw(sw::kWrongLength);
  if (const StatusWord s = CheckAccess(ctx, file(ef).write, true, split.payload, split.mac);
      !s.ok()) {
    return Sw(s);
  }
  File& f = file(ef);
  std::copy(split.payload.begin(), split.payload.end(), f.data.begin() + address->offset);
  MarkDirty();
  return Sw(sw::kOk);
}

// ---- Record EFs -----------------------------------------------------------------------------

Reply Engine::ReadRecord(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  const iso7816::RecordAddress address = iso7816::DecodeRecordAddress(a.p2);
  if (address.mode != kModeRecordNumber && address.mode != kModeFirstOccurrence) {
    return Sw(sw::kWrongP1P2);
  }
  if (a.p1 == 0x00) return Sw(sw::kWrongP1P2);  // "current record" is not supported
  if (ctx.sm() ? a.data.size() > 4 : !a.data.empty()) return Sw(sw::kWrongLength);
  if (!a.le) return Sw(sw::kWrongLength);
  const SmSplit split = SplitSm(ctx);
  if (split.error) return Sw(*split.error);
  const int ef = address.sfi ? FindSfi(*address.sfi) : sel_.current_ef;
  if (ef == kNoFile) return Sw(address.sfi ? sw::kFileNotFound : sw::kCommandNotAllowedNoEf);
  const FileType type = file(ef).type;
  if (type != FileType::kLinearFixed && type != FileType::kCyclic &&
      type != FileType::kTlvRecords) {
    return Sw(kIncompatibleFileStructure);
  }
  // Records are addressed by number (mode 100), TLV records by tag (P1 = tag, mode 000 or 100).
  if (type != FileType::kTlvRecords && address.mode != kModeRecordNumber) {
    return Sw(sw::kWrongP1P2);
  }
  sel_.current_ef = ef;
  if (const StatusWord s = CheckAccess(ctx, file(ef).read, false, split.payload, split.mac);
      !s.ok()) {
    return Sw(s);
  }
  File& f = file(ef);
  if (type == FileType::kTlvRecords) {
    const TlvRecord* record = FindTlv(f, a.p1);
    if (record == nullptr) return Sw(sw::kRecordNotFound);
    Bytes out{record->tag, static_cast<std::uint8_t>(record->value.size())};
    Append(out, View(record->value));
    return Answer(a, std::move(out));
  }
  const ByteView record = RecordAt(f, a.p1);
  if (record.empty()) return Sw(sw::kRecordNotFound);
  return Answer(a, Bytes(record.begin(), record.end()));
}

Reply Engine::UpdateRecord(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  const iso7816::RecordAddress address = iso7816::DecodeRecordAddress(a.p2);
  if (address.mode != kModeRecordNumber && address.mode != kModeFirstOccurrence) {
    return Sw(sw::kWrongP1P2);
  }
  if (a.p1 == 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.empty()) return Sw(sw::kWrongLength);
  const SmSplit split = SplitSm(ctx);
  if (split.error) return Sw(*split.error);
  if (split.payload.empty()) return Sw(sw::kWrongLength);
  const int ef = address.sfi ? FindSfi(*address.sfi) : sel_.current_ef;
  if (ef == kNoFile) return Sw(address.sfi ? sw::kFileNotFound : sw::kCommandNotAllowedNoEf);
  const FileType type = file(ef).type;
  if (type != FileType::kLinearFixed && type != FileType::kCyclic &&
      type != FileType::kTlvRecords) {
    return Sw(kIncompatibleFileStructure);
  }
  if (type != FileType::kTlvRecords && address.mode != kModeRecordNumber) {
    return Sw(sw::kWrongP1P2);
  }
  sel_.current_ef = ef;
  const ByteView payload = split.payload;
  if (type == FileType::kTlvRecords) {
    // The data is the whole object: tag (= P1) ‖ length ‖ value.
    if (payload.size() < 2 || payload[0] != a.p1 || payload[1] != payload.size() - 2 ||
        a.p1 == 0xFF) {
      return Sw(sw::kWrongData);
    }
    const File& f = file(ef);
    std::size_t used = f.TlvBytesUsed() + payload.size();
    for (const TlvRecord& r : f.tlv) {
      if (r.tag == a.p1) used -= 2 + r.value.size();
    }
    if (used > f.size) return Sw(sw::kNotEnoughMemory);
  } else {
    if (RecordAt(file(ef), a.p1).empty()) return Sw(sw::kRecordNotFound);
    if (payload.size() != file(ef).record_length) return Sw(sw::kWrongLength);
  }
  if (const StatusWord s = CheckAccess(ctx, file(ef).write, true, split.payload, split.mac);
      !s.ok()) {
    return Sw(s);
  }
  File& f = file(ef);
  if (type == FileType::kTlvRecords) {
    const Bytes value(payload.begin() + 2, payload.end());
    if (TlvRecord* existing = FindTlv(f, a.p1)) {
      existing->value = value;
    } else {
      const auto at = std::find_if(f.tlv.begin(), f.tlv.end(),
                                   [&](const TlvRecord& r) { return r.tag > a.p1; });
      f.tlv.insert(at, TlvRecord{a.p1, value});
    }
  } else {
    std::copy(payload.begin(), payload.end(),
              f.data.begin() + static_cast<std::ptrdiff_t>((a.p1 - 1u) * f.record_length));
  }
  MarkDirty();
  return Sw(sw::kOk);
}

Reply Engine::AppendRecord(Ctx& ctx) {
  const CommandApdu& a = ctx.apdu;
  const iso7816::RecordAddress address = iso7816::DecodeRecordAddress(a.p2);
  if (a.p1 != 0x00 || address.mode != 0x00) return Sw(sw::kWrongP1P2);
  if (a.data.empty()) return Sw(sw::kWrongLength);
  const SmSplit split = SplitSm(ctx);
  if (split.error) return Sw(*split.error);
  const int ef = address.sfi ? FindSfi(*address.sfi) : sel_.current_ef;
  if (ef == kNoFile) return Sw(address.sfi ? sw::kFileNotFound : sw::kCommandNotAllowedNoEf);
  if (file(ef).type != FileType::kCyclic) return Sw(kIncompatibleFileStructure);
  sel_.current_ef = ef;
  if (split.payload.size() != file(ef).record_length) return Sw(sw::kWrongLength);
  if (const StatusWord s = CheckAccess(ctx, file(ef).write, true, split.payload, split.mac);
      !s.ok()) {
    return Sw(s);
  }
  File& f = file(ef);
  // The new record becomes record 1; when the file is full the oldest one goes.
  if (f.records_used == f.record_count) {
    f.data.resize(f.data.size() - f.record_length);
  } else {
    ++f.records_used;
  }
  f.data.insert(f.data.begin(), split.payload.begin(), split.payload.end());
  MarkDirty();
  return Sw(sw::kOk);
}

}  // namespace medcard::card::internal
