#include "cli/pos_config.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "common/money.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Error FieldError(const std::string& field, const std::string& what) {
  return MakeError("POS configuration: \"" + field + "\" " + what);
}

// Reader specs and files named relative to the configuration file's directory.
std::string Resolve(const std::string& value, const fs::path& base) {
  if (value.empty() || fs::path(value).is_absolute()) return value;
  return (base / value).lexically_normal().string();
}

std::string ResolveReader(const std::string& spec, const fs::path& base) {
  constexpr std::string_view kImage = "image:";
  if (!spec.starts_with(kImage)) return spec;
  return std::string(kImage) + Resolve(spec.substr(kImage.size()), base);
}

bool Printable(const std::string& text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

}  // namespace

std::optional<PosConfig::HostPort> PosConfig::host_port() const {
  if (host.empty()) return std::nullopt;
  const auto colon = host.rfind(':');
  HostPort out;
  out.host = host.substr(0, colon);
  const std::string port = host.substr(colon + 1);
  unsigned value = 0;
  std::from_chars(port.data(), port.data() + port.size(), value);
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

Result<PosConfig> ParsePosConfig(std::string_view text, const std::string& path) {
  json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return MakeError("POS configuration: not valid JSON");
  if (!object.is_object()) return MakeError("POS configuration: must be a JSON object");
  static const std::set<std::string> kKnown = {
      "card_reader", "psam_reader", "host",          "tls_ca",        "tls_server_name",
      "merchant_id", "terminal_id", "merchant_name", "facility_code", "terminal_number",
      "journal",     "key_store",   "pkcs11_module", "test_mode",     "host_timeout_seconds",
      "max_retries"};
  for (const auto& item : object.items()) {
    if (!kKnown.contains(item.key())) return FieldError(item.key(), "is not a known setting");
  }
  PosConfig config;
  config.path = path;
  const fs::path base = fs::absolute(fs::path(path)).parent_path();
  std::string terminal_number;
  for (auto [name, target] : {std::pair{"card_reader", &config.card_reader},
                              {"psam_reader", &config.psam_reader},
                              {"host", &config.host},
                              {"tls_ca", &config.tls_ca},
                              {"tls_server_name", &config.tls_server_name},
                              {"merchant_id", &config.merchant_id},
                              {"terminal_id", &config.terminal_id},
                              {"merchant_name", &config.merchant_name},
                              {"facility_code", &config.facility_code},
                              {"terminal_number", &terminal_number},
                              {"journal", &config.journal},
                              {"key_store", &config.key_store},
                              {"pkcs11_module", &config.pkcs11_module}}) {
    if (!object.contains(name)) continue;
    if (!object[name].is_string()) return FieldError(name, "must be a string");
    *target = object[name].get<std::string>();
  }
  if (object.contains("test_mode")) {
    if (!object["test_mode"].is_boolean()) return FieldError("test_mode", "must be true or false");
    config.test_mode = object["test_mode"].get<bool>();
  }
  for (auto [name, min, max] :
       {std::tuple{"host_timeout_seconds", 1, 600}, std::tuple{"max_retries", 0, 10}}) {
    if (!object.contains(name)) continue;
    if (!object[name].is_number_unsigned()) return FieldError(name, "must be a whole number");
    const auto value = object[name].get<std::uint64_t>();
    if (value < static_cast<std::uint64_t>(min) || value > static_cast<std::uint64_t>(max)) {
      return FieldError(name,
                        "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    if (std::string_view(name) == "max_retries") {
      config.max_retries = static_cast<int>(value);
    } else {
      config.host_timeout = std::chrono::seconds(static_cast<std::int64_t>(value));
    }
  }

  if (config.merchant_id.size() != 15 || !Printable(config.merchant_id)) {
    return FieldError("merchant_id", "must be 15 characters (field 42)");
  }
  if (config.terminal_id.size() != 8 || !Printable(config.terminal_id)) {
    return FieldError("terminal_id", "must be 8 characters (field 41)");
  }
  if (config.card_reader.empty()) return FieldError("card_reader", "must not be empty");
  if (config.psam_reader.empty()) return FieldError("psam_reader", "must not be empty");
  if (!terminal_number.empty()) {
    auto bytes = FromHex(terminal_number);
    if (!bytes || bytes->size() != 6) {
      return FieldError("terminal_number", "must be 12 hex digits (the PSAM's terminal number)");
    }
    config.terminal_number = *bytes;
  }
  if (!config.host.empty()) {
    const auto colon = config.host.rfind(':');
    unsigned port = 0;
    const std::string port_text = colon == std::string::npos ? "" : config.host.substr(colon + 1);
    auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (colon == std::string::npos || colon == 0 || port_text.empty() || error != std::errc() ||
        end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return FieldError("host", "must be HOST:PORT");
    }
  }
  config.card_reader = ResolveReader(config.card_reader, base);
  config.psam_reader = ResolveReader(config.psam_reader, base);
  config.tls_ca = Resolve(config.tls_ca, base);
  config.journal = Resolve(config.journal.empty() ? "pos-journal.db" : config.journal, base);
  if (!config.key_store.starts_with("pkcs11:")) {
    config.key_store = Resolve(config.key_store.empty() ? "keys" : config.key_store, base);
  }
  return config;
}

Result<PosConfig> LoadPosConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError("cannot read the POS configuration " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParsePosConfig(text.str(), path);
  if (!config.ok()) return MakeError(path + ": " + config.error().message);
  return config;
}

Result<std::uint32_t> ParseAmount(std::string_view text) {
  auto fen = ParseYuan(text);
  if (!fen.ok()) return fen.error();
  if (*fen <= 0) return MakeError("amount \"" + std::string(text) + "\" must be more than 0");
  if (*fen > std::numeric_limits<std::uint32_t>::max()) {
    return MakeError("amount \"" + std::string(text) + "\" is above " +
                     FormatFen(std::numeric_limits<std::uint32_t>::max()));
  }
  return static_cast<std::uint32_t>(*fen);
}

}  // namespace medcard::cli
