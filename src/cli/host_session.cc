#include "cli/host_session.h"

#include <filesystem>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "ledger/ledger.h"

namespace medcard::cli {

HostSession::HostSession(HostConfig config, std::unique_ptr<store::Database> database,
                         std::unique_ptr<store::Connection> connection,
                         std::unique_ptr<keys::KeyStore> key_store)
    : config_(std::move(config)),
      database_(std::move(database)),
      connection_(std::move(connection)),
      key_store_(std::move(key_store)),
      host_(std::make_unique<host::Host>(*connection_, *key_store_)) {}

HostSession OpenHostSession(const std::string& data_dir) {
  const std::string path = HostConfigPath(data_dir);
  if (!std::filesystem::exists(path)) {
    throw CommandFailed("no host in " + data_dir +
                        " (no host.json): run medcard host init --data " + data_dir);
  }
  HostConfig config = Check(LoadHostConfig(path, data_dir), "reading the configuration");
  store::OpenOptions open;
  open.create_if_missing = false;
  auto database =
      Check(Result<std::unique_ptr<store::Database>>(store::Database::Open(config.database, open)),
            "opening the database");
  auto connection =
      Check(Result<std::unique_ptr<store::Connection>>(database->Connect()), "connecting");
  // A newer program migrates the schema forward (migrations are versioned and idempotent).
  Check(Result<int>(store::Migrate(*connection, ledger::Migrations())), "migrating the ledger");
  Check(Result<int>(store::Migrate(*connection, host::Migrations())), "migrating the host");
  Check(Result<int>(store::Migrate(*connection, audit::Migrations())), "migrating the audit log");
  Check(Result<int>(store::Migrate(*connection, access::Migrations())), "migrating the users");
  auto key_store = OpenKeyStore(KeyStoreLocation{config.key_store, config.pkcs11_module});
  return HostSession(std::move(config), std::move(database), std::move(connection),
                     std::move(key_store));
}

}  // namespace medcard::cli
