// The bank host's configuration file (docs/host.md "Running the host"): JSON written by
// `medcard host init` into the data directory (DIR/host.json) and read by `medcard host run`.
// Every field has a default; unknown fields and bad values are refused with the field's name.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/result.h"

namespace medcard::cli {

inline constexpr std::uint16_t kDefaultHostPort = 8583;

struct HostConfig {
  std::string data_dir;       // where host.json, the SQLite database and the logs live
  std::string database;       // "sqlite:PATH" or "postgresql://..."
  std::string key_store;      // a software store directory or "pkcs11:<token label>"
  std::string pkcs11_module;  // for a pkcs11 store; empty: $MEDCARD_PKCS11_MODULE (else an error)
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = kDefaultHostPort;
  std::string tls_certificate;  // PEM chain; empty with tls_private_key: plain TCP
  std::string tls_private_key;  // PEM
  std::size_t max_frame = 8192;
  std::chrono::seconds idle_timeout{120};
  std::chrono::seconds read_timeout{30};
  std::size_t max_group = 256;
  std::size_t max_connections = 10'000;
  std::string log_file;  // empty: stderr only
  std::string log_level = "info";
  // The HTTPS/JSON API for tellers, auditors and administrators (docs/api.md), the "api"
  // object of host.json. Plain HTTP only on a loopback address; HTTPS with a certificate and key.
  bool api_enabled = true;
  std::string api_listen_address = "127.0.0.1";
  std::uint16_t api_port = 8080;
  std::string api_tls_certificate;  // PEM chain
  std::string api_tls_private_key;  // PEM
  std::size_t api_threads = 8;
  // How often `host run` makes the branch's scheduled transfers that are due (replaced and
  // closed cards' float, closure refunds; docs/branch.md): at start and then every this many
  // seconds. 0: never (another host process does it).
  std::chrono::seconds transfer_interval{60};

  bool tls() const { return !tls_certificate.empty(); }
};

// The defaults for a data directory: SQLite in DIR/medcard.db, the software key store in
// DIR/keys, logs in DIR/host.log.
HostConfig DefaultHostConfig(const std::string& data_dir);

std::string HostConfigPath(const std::string& data_dir);  // DIR/host.json
std::string HostConfigToJson(const HostConfig& config);
// Fields missing from the text keep DefaultHostConfig(data_dir)'s values.
Result<HostConfig> ParseHostConfig(std::string_view json, const std::string& data_dir);
Result<HostConfig> LoadHostConfig(const std::string& path, const std::string& data_dir);

}  // namespace medcard::cli
