#include "cli/teller_pek.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "branch/card_scripts.h"
#include "cli/commands.h"
#include "cli/host_session.h"
#include "cli/key_delivery.h"
#include "crypto/crypto.h"
#include "keys/pboc.h"

namespace medcard::cli {
namespace {

using nlohmann::json;

Error DeliveryError(const std::string& what) { return MakeError("PEK delivery: " + what); }

// docs/keys.md: pek/<1 to 32 upper-case letters, digits or ->.
bool IsWorkstationName(std::string_view name) {
  return keys::IsPinEncryptionKeyName("pek/" + std::string(name));
}

Error TkekMissing(const Error& error, std::string_view where) {
  return MakeError(error.message + ": hold the key-exchange key ceremony " + std::string(where) +
                   " first (medcard keys ceremony --role tkek; docs/teller.md)");
}

}  // namespace

std::string PekDelivery::key_name() const { return "pek/" + workstation; }

std::string PekDelivery::ToJson() const {
  json out = {
      {"medcard_pek_delivery", kPekDeliveryFormat},
      {"workstation", workstation},
      {"pek_version", pek_version},
      {"pek_cryptogram", ToHex(cryptogram)},
      {"pek_kcv", ToHex(pek_kcv)},
      {"wrapping_key", std::string(keys::kTerminalKeyExchangeKey)},
      {"tkek_kcv", ToHex(tkek_kcv)},
      {"test_keys", test_keys},
      {"created", created},
  };
  return out.dump(2) + "\n";
}

Result<PekDelivery> PekDelivery::Parse(std::string_view text) {
  json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) return DeliveryError("not a JSON object");
  if (!object.contains("medcard_pek_delivery") ||
      !object["medcard_pek_delivery"].is_number_unsigned()) {
    return DeliveryError("not a medcard PEK delivery file");
  }
  if (object["medcard_pek_delivery"].get<std::uint64_t>() != kPekDeliveryFormat) {
    return DeliveryError("format " +
                         std::to_string(object["medcard_pek_delivery"].get<std::uint64_t>()) +
                         "; this medcard reads format " + std::to_string(kPekDeliveryFormat));
  }
  if (!object.contains("wrapping_key") || !object["wrapping_key"].is_string() ||
      object["wrapping_key"].get<std::string>() != keys::kTerminalKeyExchangeKey) {
    return DeliveryError("\"wrapping_key\" must be \"tkek\"");
  }
  PekDelivery d;
  if (!object.contains("workstation") || !object["workstation"].is_string() ||
      !IsWorkstationName(object["workstation"].get<std::string>())) {
    return DeliveryError("\"workstation\" must be 1 to 32 of A-Z 0-9 -");
  }
  d.workstation = object["workstation"].get<std::string>();
  auto cryptogram = DeliveryHexField(object, "pek_cryptogram", 16, "PEK delivery");
  if (!cryptogram.ok()) return cryptogram.error();
  d.cryptogram = *cryptogram;
  auto pek_kcv = DeliveryHexField(object, "pek_kcv", 3, "PEK delivery");
  if (!pek_kcv.ok()) return pek_kcv.error();
  d.pek_kcv = *pek_kcv;
  auto tkek_kcv = DeliveryHexField(object, "tkek_kcv", 3, "PEK delivery");
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  d.tkek_kcv = *tkek_kcv;
  if (!object.contains("pek_version") || !object["pek_version"].is_number_unsigned() ||
      object["pek_version"].get<std::uint64_t>() == 0 ||
      object["pek_version"].get<std::uint64_t>() > 255) {
    return DeliveryError("\"pek_version\" must be 1..255");
  }
  d.pek_version = static_cast<std::uint8_t>(object["pek_version"].get<std::uint64_t>());
  if (!object.contains("test_keys") || !object["test_keys"].is_boolean()) {
    return DeliveryError("\"test_keys\" must be true or false");
  }
  d.test_keys = object["test_keys"].get<bool>();
  if (object.contains("created") && object["created"].is_string()) d.created = object["created"];
  return d;
}

Result<PekDelivery> ReadPekDelivery(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError("cannot read the PEK delivery " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto delivery = PekDelivery::Parse(text.str());
  if (!delivery.ok()) return MakeError(path + ": " + delivery.error().message);
  return delivery;
}

Result<PekDelivery> ExportPek(keys::KeyStore& store, std::string_view workstation,
                              bool* generated) {
  if (!IsWorkstationName(workstation)) {
    return MakeError("a workstation name is 1 to 32 of A-Z 0-9 -, not '" +
                     std::string(workstation) + "'");
  }
  PekDelivery d;
  d.workstation = std::string(workstation);
  auto tkek = store.Find(keys::kTerminalKeyExchangeKey);
  if (!tkek.ok()) return TkekMissing(tkek.error(), "at the bank");
  keys::ScopedKey tkek_ref(store, *tkek);
  auto latest = LatestKeyVersion(store, d.key_name());
  if (!latest.ok()) return latest.error();
  if (generated != nullptr) *generated = latest->first == 0;
  if (latest->first == 0) {
    auto made = store.Generate(d.key_name());
    if (!made.ok()) return made.error();
    latest->first = made->version;
  }
  auto pek = store.Find(d.key_name(), latest->first);
  if (!pek.ok()) return pek.error();
  keys::ScopedKey pek_ref(store, *pek);
  auto cryptogram = store.Wrap(*tkek, *pek);
  if (!cryptogram.ok()) return cryptogram.error();
  auto pek_kcv = store.Kcv(*pek);
  if (!pek_kcv.ok()) return pek_kcv.error();
  auto tkek_kcv = store.Kcv(*tkek);
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  d.pek_version = latest->first;
  d.cryptogram = *cryptogram;
  d.pek_kcv = *pek_kcv;
  d.tkek_kcv = *tkek_kcv;
  d.test_keys = store.test_only();
  d.created = UtcNowIso8601();
  return d;
}

Result<std::uint8_t> ImportPek(keys::KeyStore& store, const PekDelivery& delivery) {
  if (delivery.test_keys && !store.test_only()) {
    return DeliveryError("it holds a TEST PIN encryption key; refused into " + store.Describe() +
                         ", which is not a test key store");
  }
  auto tkek = store.Find(keys::kTerminalKeyExchangeKey);
  if (!tkek.ok()) return TkekMissing(tkek.error(), "at the workstation");
  keys::ScopedKey tkek_ref(store, *tkek);
  auto tkek_kcv = store.Kcv(*tkek);
  if (!tkek_kcv.ok()) return tkek_kcv.error();
  if (*tkek_kcv != delivery.tkek_kcv) {
    return DeliveryError("encrypted under a tkek with KCV " + ToHex(delivery.tkek_kcv) +
                         ", this workstation's tkek has KCV " + ToHex(*tkek_kcv) +
                         " (the key ceremonies used different components)");
  }
  auto latest = LatestKeyVersion(store, delivery.key_name());
  if (!latest.ok()) return latest.error();
  if (latest->first != 0 && latest->second == ToHex(delivery.pek_kcv)) return latest->first;
  auto info = store.ImportWrapped(delivery.key_name(), *tkek, delivery.cryptogram, delivery.pek_kcv,
                                  delivery.pek_version);
  if (!info.ok()) return info.error();
  return info->version;
}

Result<Bytes> PinPadBlock(keys::KeyStore& store, std::string_view pek_name, std::string_view pin,
                          ByteView asn) {
  if (pin.size() != 6 || pin.find_first_not_of("0123456789") != std::string_view::npos) {
    return MakeError("the new PIN must be 6 digits");
  }
  auto pan = branch::PinBlockPan(asn);
  if (!pan.ok()) return pan.error();
  auto pek = store.Find(pek_name);
  if (!pek.ok()) return pek.error();
  keys::ScopedKey pek_ref(store, *pek);
  auto block = crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, *pan);
  if (!block.ok()) return MakeError("the PIN pad cannot form the PIN block");
  auto encrypted = store.Encrypt(*pek, *block);
  SecureWipe(*block);
  if (!encrypted.ok()) return encrypted.error();
  return encrypted;
}

Result<std::string> PinPadKeyName(keys::KeyStore& store, std::string_view workstation) {
  if (!workstation.empty()) {
    if (!IsWorkstationName(workstation)) {
      return MakeError("--workstation: 1 to 32 of A-Z 0-9 -, not '" + std::string(workstation) +
                       "'");
    }
    return "pek/" + std::string(workstation);
  }
  auto listed = store.List();
  if (!listed.ok()) return listed.error();
  std::vector<std::string> names;
  for (const keys::KeyInfo& k : *listed) {
    if (k.name.starts_with("pek/") &&
        std::find(names.begin(), names.end(), k.name) == names.end()) {
      names.push_back(k.name);
    }
  }
  if (names.empty()) {
    return MakeError("the PIN pad's key store " + store.Describe() +
                     " holds no PIN encryption key: import the workstation's PEK delivery "
                     "(medcard teller pinpad init --pek FILE)");
  }
  if (names.size() > 1) {
    return MakeError(
        "the PIN pad's key store holds several PIN encryption keys: name one with "
        "--workstation");
  }
  return names[0];
}

namespace {

struct ExportOptions {
  std::string data_dir, workstation, out;
};

void RunExportPek(const ExportOptions& options) {
  HostSession session = OpenHostSession(options.data_dir);
  bool generated = false;
  PekDelivery delivery =
      Check(ExportPek(session.key_store(), options.workstation, &generated), "exporting the PEK");
  WriteAuditedDelivery(session, options.out, delivery.ToJson(), "workstation.export_pek",
                       "workstation:" + delivery.workstation,
                       json{{"key", delivery.key_name()},
                            {"version", delivery.pek_version},
                            {"kcv", ToHex(delivery.pek_kcv)},
                            {"tkek_kcv", ToHex(delivery.tkek_kcv)},
                            {"generated", generated}});
  std::printf("PEK %s v%u%s for workstation %s written to %s\n", delivery.key_name().c_str(),
              delivery.pek_version, generated ? " (generated now)" : "",
              delivery.workstation.c_str(), options.out.c_str());
  std::printf("  encrypted under tkek (KCV %s); PEK KCV %s%s\n", ToHex(delivery.tkek_kcv).c_str(),
              ToHex(delivery.pek_kcv).c_str(), delivery.test_keys ? " (TEST keys)" : "");
}

}  // namespace

void AddWorkstationCommands(CLI::App& host) {
  CLI::App* workstations =
      host.add_subcommand("workstations", "Teller workstations: their PIN pads' keys");
  workstations->require_subcommand(1);
  auto options = std::make_shared<ExportOptions>();
  CLI::App* cmd = workstations->add_subcommand(
      "export-pek",
      "Write a workstation's PIN encryption key (pek/NAME, generated when new) encrypted under "
      "tkek, for `medcard teller pinpad init` (no key in clear in the file)");
  cmd->add_option("--data", options->data_dir, "The host's data directory")->required();
  cmd->add_option("--workstation", options->workstation,
                  "The workstation's name, 1 to 32 of A-Z 0-9 - (e.g. BRANCH01-T03)")
      ->required();
  cmd->add_option("--out", options->out, "The delivery file to write")->required();
  cmd->callback([options] { RunExportPek(*options); });
}

}  // namespace medcard::cli
