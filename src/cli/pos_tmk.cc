#include "cli/pos_tmk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/host_session.h"
#include "cli/key_delivery.h"
#include "host/host.h"
#include "keys/pboc.h"

namespace medcard::cli {
namespace {

using nlohmann::json;

Error DeliveryError(const std::string& what) { return MakeError("TMK delivery: " + what); }

struct ExportOptions {
  std::string data_dir, terminal_number, out;
};

void RunExportTmk(const ExportOptions& options) {
  auto number = FromHex(options.terminal_number);
  if (!number || number->size() != 6) {
    throw CommandFailed("--terminal-no must be 12 hex digits", 2);
  }
  HostSession session = OpenHostSession(options.data_dir);
  auto terminals = session.host().Terminals();
  if (!terminals.ok()) throw CommandFailed("reading the terminals: " + terminals.error().message);
  const std::string hex = ToHex(*number);
  auto terminal =
      std::find_if(terminals->begin(), terminals->end(),
                   [&](const host::TerminalInfo& t) { return t.terminal_number == hex; });
  if (terminal == terminals->end()) {
    throw CommandFailed("terminal " + hex +
                        " is not registered (medcard host terminals add ... first)");
  }
  TmkDelivery delivery = Check(ExportTmk(session.key_store(), *number), "exporting the TMK");
  delivery.merchant_id = terminal->merchant_id;
  delivery.terminal_id = terminal->terminal_id;
  delivery.psam_serial = HexToBytes(terminal->psam_serial);
  WriteAuditedDelivery(session, options.out, delivery.ToJson(), "terminal.export_tmk",
                       "terminal:" + hex,
                       json{{"key", delivery.key_name()},
                            {"version", delivery.tmk_version},
                            {"kcv", ToHex(delivery.tmk_kcv)},
                            {"tkek_kcv", ToHex(delivery.tkek_kcv)}});
  std::printf("TMK %s v%u for terminal %s (merchant %s, terminal id %s) written to %s\n",
              delivery.key_name().c_str(), delivery.tmk_version, hex.c_str(),
              delivery.merchant_id.c_str(), delivery.terminal_id.c_str(), options.out.c_str());
  std::printf("  encrypted under tkek (KCV %s); TMK KCV %s%s\n", ToHex(delivery.tkek_kcv).c_str(),
              ToHex(delivery.tmk_kcv).c_str(), delivery.test_keys ? " (TEST keys)" : "");
}

}  // namespace

std::string TmkDelivery::key_name() const { return "tmk/" + ToHex(terminal_number); }

std::string TmkDelivery::ToJson() const {
  json out = {
      {"medcard_tmk_delivery", kTmkDeliveryFormat},
      {"terminal_number", ToHex(terminal_number)},
      {"merchant_id", merchant_id},
      {"terminal_id", terminal_id},
      {"psam_serial", ToHex(psam_serial)},
      {"tmk_version", tmk_version},
      {"tmk_cryptogram", ToHex(cryptogram)},
      {"tmk_kcv", ToHex(tmk_kcv)},
      {"wrapping_key", std::string(keys::kTerminalKeyExchangeKey)},
      {"tkek_kcv", ToHex(tkek_kcv)},
      {"test_keys", test_keys},
      {"created", created},
  };
  return out.dump(2) + "\n";
}

Result<TmkDelivery> TmkDelivery::Parse(std::string_view text) {
  json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) return DeliveryError("not a JSON object");
  if (!object.contains("medcard_tmk_delivery") ||
      !object["medcard_tmk_delivery"].is_number_unsigned()) {
    return DeliveryError("not a medcard TMK delivery file");
  }
  if (object["medcard_tmk_delivery"].get<std::uint64_t>() != kTmkDeliveryFormat) {
    return DeliveryError("format " +
                         std::to_string(object["medcard_tmk_delivery"].get<std::uint64_t>()) +
                         "; this medcard reads format " + std::to_string(kTmkDeliveryFormat));
  }
  // is_string first: json::value() throws on a field of another type (found by pos_tmk_fuzz).
  if (!object.contains("wrapping_key") || !object["wrapping_key"].is_string() ||
      object["wrapping_key"].get<std::string>() != keys::kTerminalKeyExchangeKey) {
    return DeliveryError("\"wrapping_key\" must be \"tkek\"");
  }
  TmkDelivery d;
  auto number = DeliveryHexField(object, "terminal_number", 6, "TMK delivery");
  if (!number.ok()) return number.error();
  d.terminal_number = *number;
  auto cryptogram = DeliveryHexField(object, "tmk_cryptogram", 16, "TMK delivery");
  if (!cryptogram.ok()) return cryptogram.error();
  d.cryptogram = *cryptogram;
  auto tmk_kcv = DeliveryHexField(object, "tmk_kcv", 3, "TMK delivery");
  if (!tmk_kcv.ok()) return tmk_kcv.error();
  d.tmk_kcv = *tmk_kcv;
  auto tkek_kcv = DeliveryHexField(object, "tkek_kcv", 3, "TMK delivery");
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  d.tkek_kcv = *tkek_kcv;
  if (!object.contains("tmk_version") || !object["tmk_version"].is_number_unsigned() ||
      object["tmk_version"].get<std::uint64_t>() == 0 ||
      object["tmk_version"].get<std::uint64_t>() > 255) {
    return DeliveryError("\"tmk_version\" must be 1..255");
  }
  d.tmk_version = static_cast<std::uint8_t>(object["tmk_version"].get<std::uint64_t>());
  if (!object.contains("test_keys") || !object["test_keys"].is_boolean()) {
    return DeliveryError("\"test_keys\" must be true or false");
  }
  d.test_keys = object["test_keys"].get<bool>();
  // Optional (files exported before it was added have none): pos init then cannot compare.
  if (object.contains("psam_serial") &&
      !(object["psam_serial"].is_string() && object["psam_serial"].get<std::string>().empty())) {
    auto serial = DeliveryHexField(object, "psam_serial", 10, "TMK delivery");
    if (!serial.ok()) return serial.error();
    d.psam_serial = *serial;
  }
  for (auto [name, target] : {std::pair{"merchant_id", &d.merchant_id},
                              {"terminal_id", &d.terminal_id},
                              {"created", &d.created}}) {
    if (object.contains(name) && object[name].is_string()) *target = object[name];
  }
  return d;
}

Result<TmkDelivery> ReadTmkDelivery(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError("cannot read the TMK delivery " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto delivery = TmkDelivery::Parse(text.str());
  if (!delivery.ok()) return MakeError(path + ": " + delivery.error().message);
  return delivery;
}

Result<TmkDelivery> ExportTmk(keys::KeyStore& store, ByteView terminal_number) {
  TmkDelivery d;
  d.terminal_number.assign(terminal_number.begin(), terminal_number.end());
  auto latest = LatestKeyVersion(store, d.key_name());
  if (!latest.ok()) return latest.error();
  if (latest->first == 0) {
    return MakeError("no " + d.key_name() + " in " + store.Describe() +
                     " (medcard host terminals add makes it)");
  }
  auto tkek = store.Find(keys::kTerminalKeyExchangeKey);
  if (!tkek.ok()) {
    return MakeError(tkek.error().message +
                     ": hold the terminal key-exchange key ceremony first (medcard keys "
                     "ceremony --role tkek; docs/pos.md)");
  }
  keys::ScopedKey tkek_ref(store, *tkek);
  auto tmk = store.Find(d.key_name(), latest->first);
  if (!tmk.ok()) return tmk.error();
  keys::ScopedKey tmk_ref(store, *tmk);
  auto cryptogram = store.Wrap(*tkek, *tmk);
  if (!cryptogram.ok()) return cryptogram.error();
  auto tmk_kcv = store.Kcv(*tmk);
  if (!tmk_kcv.ok()) return tmk_kcv.error();
  auto tkek_kcv = store.Kcv(*tkek);
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  d.tmk_version = latest->first;
  d.cryptogram = *cryptogram;
  d.tmk_kcv = *tmk_kcv;
  d.tkek_kcv = *tkek_kcv;
  d.test_keys = store.test_only();
  d.created = UtcNowIso8601();
  return d;
}

Result<std::uint8_t> ImportTmk(keys::KeyStore& store, const TmkDelivery& delivery) {
  if (delivery.test_keys && !store.test_only()) {
    return DeliveryError("it holds a TEST terminal master key; refused into " + store.Describe() +
                         ", which is not a test key store");
  }
  auto tkek = store.Find(keys::kTerminalKeyExchangeKey);
  if (!tkek.ok()) {
    return MakeError(tkek.error().message +
                     ": hold the terminal key-exchange key ceremony at installation first "
                     "(medcard keys ceremony --role tkek; docs/pos.md)");
  }
  keys::ScopedKey tkek_ref(store, *tkek);
  auto tkek_kcv = store.Kcv(*tkek);
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  if (*tkek_kcv != delivery.tkek_kcv) {
    return DeliveryError("encrypted under a tkek with KCV " + ToHex(delivery.tkek_kcv) +
                         ", this terminal's tkek has KCV " + ToHex(*tkek_kcv) +
                         " (the key ceremonies used different components)");
  }
  auto latest = LatestKeyVersion(store, delivery.key_name());
  if (!latest.ok()) return latest.error();
  if (latest->first != 0 && latest->second == ToHex(delivery.tmk_kcv)) return latest->first;
  // The bank's version number, so that the terminal's sign-on names the TMK as the bank does.
  auto info = store.ImportWrapped(delivery.key_name(), *tkek, delivery.cryptogram, delivery.tmk_kcv,
                                  delivery.tmk_version);
  if (!info.ok()) return info.error();
  return info->version;
}

void AddExportTmkCommand(CLI::App& terminals) {
  auto options = std::make_shared<ExportOptions>();
  CLI::App* cmd = terminals.add_subcommand(
      "export-tmk",
      "Write a terminal's TMK encrypted under the terminal key-exchange key (tkek) for "
      "`medcard pos init --tmk FILE` (docs/pos.md)");
  cmd->add_option("--data", options->data_dir,
                  "The host's data directory (made by medcard host init)")
      ->required();
  cmd->add_option("--terminal-no", options->terminal_number,
                  "The PSAM's terminal number, 12 hex digits")
      ->required();
  cmd->add_option("--out", options->out, "The delivery file to write (JSON, mode 0600)")
      ->required();
  cmd->callback([options] { RunExportTmk(*options); });
}

}  // namespace medcard::cli
