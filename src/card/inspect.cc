// Read-only inspection of a card (`medcard card show`): every persistent fact except secrets.
#include <nlohmann/json.hpp>

#include "card/state.h"

namespace medcard::card {

namespace internal {

namespace {

std::string FidHex(std::uint16_t fid) {
  Bytes b;
  AppendU16(b, fid);
  return ToHex(View(b));
}

std::optional<PinSummary> PinOf(const File& f) {
  if (!f.pin) return std::nullopt;
  return PinSummary{f.pin->try_limit, f.pin->tries_left};
}

WalletSummary WalletOf(const Wallet& w) {
  return WalletSummary{w.balance,     w.online_serial,  w.offline_serial,
                       w.max_balance, w.overdraw_limit, w.overdraw_used};
}

int ChildEf(const CardState& state, int df, std::uint8_t sfi) {
  for (int child : state.children[static_cast<std::size_t>(df)]) {
    const File& f = state.files[static_cast<std::size_t>(child)];
    if (!f.is_df() && f.sfi == sfi) return child;
  }
  return kNoFile;
}

void Visit(const CardState& state, int index, const std::string& parent_path, CardSummary& out) {
  const File& f = state.files[static_cast<std::size_t>(index)];
  FileSummary s;
  s.path = parent_path.empty() ? FidHex(f.fid) : parent_path + "/" + FidHex(f.fid);
  s.fid = f.fid;
  s.type = f.type;
  s.sfi = f.sfi;
  s.df_name = f.df_name;
  if (f.is_df()) {
    s.block = f.block;
    for (const Key& k : f.keys) {
      s.keys.push_back(KeySummary{k.usage, k.index, k.version, k.alg_id, k.error_limit,
                                  k.error_count, k.locked()});
    }
    s.pin = PinOf(f);
  } else {
    s.read = f.read;
    s.write = f.write;
    s.size = f.size;
    s.record_length = f.record_length;
    s.record_count = f.record_count;
    s.readable = f.read.kind == AccessKind::kFree;
    if (s.readable) {
      if (f.type == FileType::kTransparent) s.content = f.data;
      if (f.is_record_file()) {
        for (std::size_t r = 0; r < f.records_used; ++r) {
          const auto begin = f.data.begin() + static_cast<std::ptrdiff_t>(r * f.record_length);
          s.records.emplace_back(begin, begin + f.record_length);
        }
      }
      if (f.type == FileType::kTlvRecords) {
        for (const TlvRecord& t : f.tlv) {
          Bytes object{t.tag, static_cast<std::uint8_t>(t.value.size())};
          Append(object, View(t.value));
          s.records.push_back(std::move(object));
        }
      }
    }
  }
  const std::string path = s.path;
  out.files.push_back(std::move(s));

  if (f.purse) {
    PurseSummary p;
    p.path = path;
    p.aid = f.df_name;
    p.app_type = f.purse->app_type;
    p.block = f.block;
    const int basic = ChildEf(state, index, kPublicDataSfi);
    if (basic != kNoFile && state.files[static_cast<std::size_t>(basic)].size == 30) {
      const Bytes& data = state.files[static_cast<std::size_t>(basic)].data;
      p.asn.assign(data.begin() + 10, data.begin() + 20);
    }
    p.ed = WalletOf(f.purse->ed);
    p.ep = WalletOf(f.purse->ep);
    p.pin = PinOf(f);
    const int log = ChildEf(state, index, kLogSfi);
    if (log != kNoFile) {
      const File& l = state.files[static_cast<std::size_t>(log)];
      if (l.type == FileType::kCyclic && l.record_length == kLogRecordLength) {
        for (std::size_t r = 0; r < l.records_used; ++r) {
          const ByteView rec = View(l.data).subspan(r * kLogRecordLength, kLogRecordLength);
          LogEntry e;
          e.serial = ReadU16(rec, 0);
          e.overdraw_limit = ReadU24(rec, 2);
          e.amount = ReadU32(rec, 5);
          e.type = rec[9];
          e.terminal.assign(rec.begin() + 10, rec.begin() + 16);
          e.date.assign(rec.begin() + 16, rec.begin() + 20);
          e.time.assign(rec.begin() + 20, rec.begin() + 23);
          p.log.push_back(std::move(e));
        }
      }
    }
    for (const Proof& proof : f.purse->proofs) {
      p.proofs.push_back(ProofSummary{proof.type, proof.serial,
                                      Bytes(proof.mac2.begin(), proof.mac2.end()),
                                      Bytes(proof.tac.begin(), proof.tac.end())});
    }
    out.purses.push_back(std::move(p));
  }

  for (int child : state.children[static_cast<std::size_t>(index)]) {
    Visit(state, child, path, out);
  }
}

}  // namespace

CardSummary Summarize(const CardState& state) {
  CardSummary summary;
  summary.lifecycle = state.lifecycle;
  summary.chip_serial.assign(state.chip_serial.begin(), state.chip_serial.end());
  summary.transport_key_present = !state.transport_key.empty();
  summary.transport_key_errors = state.transport_key_errors;
  Visit(state, 0, "", summary);
  return summary;
}

}  // namespace internal

namespace {

nlohmann::json PinJson(const std::optional<PinSummary>& pin) {
  if (!pin) return nullptr;
  return {{"try_limit", pin->try_limit}, {"tries_left", pin->tries_left}};
}

nlohmann::json WalletJson(const WalletSummary& w) {
  return {{"balance", w.balance},
          {"online_serial", w.online_serial},
          {"offline_serial", w.offline_serial},
          {"max_balance", w.max_balance},
          {"overdraw_limit", w.overdraw_limit},
          {"overdraw_used", w.overdraw_used}};
}

std::string BcdString(const Bytes& b) { return ToHex(View(b)); }

}  // namespace

nlohmann::json ToJson(const CardSummary& summary) {
  nlohmann::json files = nlohmann::json::array();
  for (const FileSummary& f : summary.files) {
    nlohmann::json j = {{"path", f.path},
                        {"fid", internal::FidHex(f.fid)},
                        {"type", std::string(FileTypeName(f.type))}};
    if (!f.df_name.empty()) j["name"] = ToHex(View(f.df_name));
    if (f.type == FileType::kDf) {
      j["block"] = std::string(AppBlockName(f.block));
      nlohmann::json keys = nlohmann::json::array();
      for (const KeySummary& k : f.keys) {
        keys.push_back({{"usage", std::string(KeyUsageName(k.usage))},
                        {"index", k.index},
                        {"version", k.version},
                        {"alg_id", k.alg_id},
                        {"error_limit", k.error_limit},
                        {"error_count", k.error_count},
                        {"locked", k.locked}});
      }
      j["keys"] = std::move(keys);
      j["pin"] = PinJson(f.pin);
    } else {
      if (f.sfi != 0) j["sfi"] = f.sfi;
      j["read"] = AccessConditionName(f.read);
      j["write"] = AccessConditionName(f.write);
      if (f.type == FileType::kTransparent || f.type == FileType::kTlvRecords) {
        j["size"] = f.size;
      } else {
        j["record_length"] = f.record_length;
        j["record_count"] = f.record_count;
      }
      if (f.readable) {
        if (f.type == FileType::kTransparent) {
          j["content"] = ToHex(View(f.content));
        } else {
          nlohmann::json records = nlohmann::json::array();
          for (const Bytes& r : f.records) records.push_back(ToHex(View(r)));
          j["records"] = std::move(records);
        }
      }
    }
    files.push_back(std::move(j));
  }
  nlohmann::json purses = nlohmann::json::array();
  for (const PurseSummary& p : summary.purses) {
    nlohmann::json log = nlohmann::json::array();
    for (const LogEntry& e : p.log) {
      log.push_back({{"serial", e.serial},
                     {"overdraw_limit", e.overdraw_limit},
                     {"amount", e.amount},
                     {"type", e.type},
                     {"terminal", ToHex(View(e.terminal))},
                     {"date", BcdString(e.date)},
                     {"time", BcdString(e.time)}});
    }
    nlohmann::json proofs = nlohmann::json::array();
    for (const ProofSummary& pr : p.proofs) {
      proofs.push_back({{"type", pr.type},
                        {"serial", pr.serial},
                        {"mac2", ToHex(View(pr.mac2))},
                        {"tac", ToHex(View(pr.tac))}});
    }
    purses.push_back({{"path", p.path},
                      {"aid", ToHex(View(p.aid))},
                      {"app_type", p.app_type},
                      {"block", std::string(AppBlockName(p.block))},
                      {"asn", ToHex(View(p.asn))},
                      {"ed", WalletJson(p.ed)},
                      {"ep", WalletJson(p.ep)},
                      {"pin", PinJson(p.pin)},
                      {"log", std::move(log)},
                      {"proofs", std::move(proofs)}});
  }
  return {{"lifecycle", std::string(LifecycleName(summary.lifecycle))},
          {"chip_serial", ToHex(View(summary.chip_serial))},
          {"transport_key_present", summary.transport_key_present},
          {"transport_key_errors", summary.transport_key_errors},
          {"files", std::move(files)},
          {"purses", std::move(purses)}};
}

}  // namespace medcard::card
