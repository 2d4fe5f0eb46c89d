#include "cli/host_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Error FieldError(const std::string& field, const std::string& what) {
  return MakeError("host configuration: \"" + field + "\" " + what);
}

Result<std::string> TextField(const json& object, const std::string& name, std::string value) {
  if (!object.contains(name)) return value;
  if (!object[name].is_string()) return FieldError(name, "must be a string");
  return object[name].get<std::string>();
}

Result<std::uint64_t> NumberField(const json& object, const std::string& name, std::uint64_t value,
                                  std::uint64_t min, std::uint64_t max) {
  if (!object.contains(name)) return value;
  if (!object[name].is_number_unsigned()) {
    return FieldError(name, "must be a whole number");
  }
  const auto number = object[name].get<std::uint64_t>();
  if (number < min || number > max) {
    return FieldError(name,
                      "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return number;
}

}  // namespace

HostConfig DefaultHostConfig(const std::string& data_dir) {
  HostConfig config;
  config.data_dir = data_dir;
  config.database = store::SqliteUrlForDataDir(data_dir);
  config.key_store = (fs::path(data_dir) / "keys").string();
  config.log_file = (fs::path(data_dir) / "host.log").string();
  return config;
}

std::string HostConfigPath(const std::string& data_dir) {
  return (fs::path(data_dir) / "host.json").string();
}

std::string HostConfigToJson(const HostConfig& config) {
  json out = {
      {"database", config.database},
      {"key_store", config.key_store},
      {"pkcs11_module", config.pkcs11_module},
      {"listen_address", config.listen_address},
      {"port", config.port},
      {"tls_certificate", config.tls_certificate},
      {"tls_private_key", config.tls_private_key},
      {"max_frame", config.max_frame},
      {"idle_timeout_seconds", config.idle_timeout.count()},
      {"read_timeout_seconds", config.read_timeout.count()},
      {"max_group", config.max_group},
      {"max_connections", config.max_connections},
      {"log_file", config.log_file},
      {"log_level", config.log_level},
      {"transfer_interval_seconds", config.transfer_interval.count()},
      {"api",
       {{"enabled", config.api_enabled},
        {"listen_address", config.api_listen_address},
        {"port", config.api_port},
        {"tls_certificate", config.api_tls_certificate},
        {"tls_private_key", config.api_tls_private_key},
        {"threads", config.api_threads}}},
  };
  return out.dump(2) + "\n";
}

namespace {

// The "api" object (docs/api.md "Running"): every field optional, unknown ones refused.
Status ParseApiConfig(const json& object, HostConfig& config) {
  auto it = object.find("api");
  if (it == object.end()) return Status::Ok();
  const json& api = *it;
  if (!api.is_object()) return FieldError("api", "must be an object");
  static const std::set<std::string> kKnown = {"enabled",         "listen_address",  "port",
                                               "tls_certificate", "tls_private_key", "threads"};
  for (const auto& item : api.items()) {
    if (!kKnown.contains(item.key()))
      return FieldError("api." + item.key(), "is not a known setting");
  }
  if (auto enabled = api.find("enabled"); enabled != api.end()) {
    if (!enabled->is_boolean()) return FieldError("api.enabled", "must be true or false");
    config.api_enabled = enabled->get<bool>();
  }
  for (auto [name, target] : {std::pair{"listen_address", &config.api_listen_address},
                              {"tls_certificate", &config.api_tls_certificate},
                              {"tls_private_key", &config.api_tls_private_key}}) {
    auto field = api.find(name);
    if (field == api.end()) continue;
    if (!field->is_string()) return FieldError(std::string("api.") + name, "must be a string");
    *target = field->get<std::string>();
  }
  if (config.api_listen_address.empty()) {
    return FieldError("api.listen_address", "must not be empty");
  }
  if (config.api_tls_certificate.empty() != config.api_tls_private_key.empty()) {
    return FieldError("api.tls_certificate", "and \"api.tls_private_key\" go together");
  }
  auto port = NumberField(api, "port", config.api_port, 1, 65535);
  if (!port.ok()) return FieldError("api.port", "must be an integer 1..65535");
  config.api_port = static_cast<std::uint16_t>(*port);
  auto threads = NumberField(api, "threads", config.api_threads, 1, 256);
  if (!threads.ok()) return FieldError("api.threads", "must be an integer 1..256");
  config.api_threads = *threads;
  return Status::Ok();
}

}  // namespace

Result<HostConfig> ParseHostConfig(std::string_view text, const std::string& data_dir) {
  json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return MakeError("host configuration: not valid JSON");
  if (!object.is_object()) return MakeError("host configuration: must be a JSON object");
  static const std::set<std::string> kKnown = {"database",
                                               "key_store",
                                               "pkcs11_module",
                                               "listen_address",
                                               "port",
                                               "tls_certificate",
                                               "tls_private_key",
                                               "max_frame",
                                               "max_group",
                                               "idle_timeout_seconds",
                                               "read_timeout_seconds",
                                               "max_connections",
                                               "log_file",
                                               "log_level",
                                               "transfer_interval_seconds",
                                               "api"};
  for (const auto& item : object.items()) {
    if (!kKnown.contains(item.key())) return FieldError(item.key(), "is not a known setting");
  }
  HostConfig config = DefaultHostConfig(data_dir);
  auto text_field = [&](const char* name, std::string& target) -> Status {
    auto value = TextField(object, name, target);
    if (!value.ok()) return value.error();
    target = *value;
    return Status::Ok();
  };
  for (auto [name, target] : {std::pair{"database", &config.database},
                              {"key_store", &config.key_store},
                              {"pkcs11_module", &config.pkcs11_module},
                              {"listen_address", &config.listen_address},
                              {"tls_certificate", &config.tls_certificate},
                              {"tls_private_key", &config.tls_private_key},
                              {"log_file", &config.log_file},
                              {"log_level", &config.log_level}}) {
    if (auto status = text_field(name, *target); !status.ok()) return status.error();
  }
  if (config.database.empty()) return FieldError("database", "must not be empty");
  if (config.key_store.empty()) return FieldError("key_store", "must not be empty");
  if (config.listen_address.empty()) return FieldError("listen_address", "must not be empty");
  if (config.tls_certificate.empty() != config.tls_private_key.empty()) {
    return FieldError("tls_certificate", "and \"tls_private_key\" go together");
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "off"};
  if (!kLevels.contains(config.log_level)) {
    return FieldError("log_level", "must be one of trace, debug, info, warn, error, off");
  }

  auto port = NumberField(object, "port", config.port, 1, 65535);
  if (!port.ok()) return port.error();
  config.port = static_cast<std::uint16_t>(*port);
  auto max_frame = NumberField(object, "max_frame", config.max_frame, 64, 65535);
  if (!max_frame.ok()) return max_frame.error();
  config.max_frame = *max_frame;
  auto max_group = NumberField(object, "max_group", config.max_group, 1, 100'000);
  if (!max_group.ok()) return max_group.error();
  config.max_group = *max_group;
  auto max_connections =
      NumberField(object, "max_connections", config.max_connections, 1, 1'000'000);
  if (!max_connections.ok()) return max_connections.error();
  config.max_connections = *max_connections;
  auto idle = NumberField(object, "idle_timeout_seconds",
                          static_cast<std::uint64_t>(config.idle_timeout.count()), 1, 86'400);
  if (!idle.ok()) return idle.error();
  config.idle_timeout = std::chrono::seconds(static_cast<std::int64_t>(*idle));
  auto read = NumberField(object, "read_timeout_seconds",
                          static_cast<std::uint64_t>(config.read_timeout.count()), 1, 3'600);
  if (!read.ok()) return read.error();
  config.read_timeout = std::chrono::seconds(static_cast<std::int64_t>(*read));
  auto transfer_interval =
      NumberField(object, "transfer_interval_seconds",
                  static_cast<std::uint64_t>(config.transfer_interval.count()), 0, 86'400);
  if (!transfer_interval.ok()) return transfer_interval.error();
  config.transfer_interval = std::chrono::seconds(static_cast<std::int64_t>(*transfer_interval));
  if (auto api = ParseApiConfig(object, config); !api.ok()) return api.error();
  return config;
}

Result<HostConfig> LoadHostConfig(const std::string& path, const std::string& data_dir) {
  std::ifstream in(path);
  if (!in) return MakeError("cannot read the host configuration " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseHostConfig(text.str(), data_dir);
  if (!config.ok()) return MakeError(path + ": " + config.error().message);
  return config;
}

}  // namespace medcard::cli
