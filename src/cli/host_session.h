// What the host's commands open: the configuration of a data directory (DIR/host.json), its
// database (migrated to this program's schema), its key store and the Host services on them.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "cli/host_config.h"
#include "host/host.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::cli {

class HostSession {
 public:
  HostSession(HostConfig config, std::unique_ptr<store::Database> database,
              std::unique_ptr<store::Connection> connection,
              std::unique_ptr<keys::KeyStore> key_store);
  const HostConfig& config() const { return config_; }
  store::Database& database() { return *database_; }
  store::Connection& connection() { return *connection_; }
  keys::KeyStore& key_store() { return *key_store_; }
  host::Host& host() { return *host_; }

 private:
  HostConfig config_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<keys::KeyStore> key_store_;
  std::unique_ptr<host::Host> host_;
};

// CommandFailed when DIR has no host.json (run `medcard host init` first), the database cannot
// be opened, or the key store cannot (its passphrase / PIN from the environment or a prompt).
HostSession OpenHostSession(const std::string& data_dir);

void AddHostRunCommand(CLI::App& host);  // host run (host_run.cc)

}  // namespace medcard::cli
