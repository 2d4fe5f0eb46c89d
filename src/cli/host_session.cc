#include "cli/host_session.h"

#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

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

std::string OperatingSystemActor() {
  if (const char* login = getlogin(); login != nullptr && *login != '\0') {
    return std::string("os:") + login;
  }
  const uid_t uid = geteuid();
  if (const passwd* user = getpwuid(uid); user != nullptr && user->pw_name != nullptr) {
    return std::string("os:") + user->pw_name;
  }
  return "os:uid:" + std::to_string(uid);
}

audit::Entry HostCommandEntry(std::string action, std::string target, std::string details) {
  audit::Entry entry;
  entry.action = std::move(action);
  entry.target = std::move(target);
  entry.details = std::move(details);
  return entry;
}

host::HostResult<store::Done> TryAudited(HostSession& session, const AuditedChange& change) {
  const std::string actor = OperatingSystemActor();
  const store::RetryPolicy policy;
  store::Connection& connection = session.connection();
  for (int attempt = 1;; ++attempt) {
    // Set when this attempt failed: why, and whether to run it again (a database failure is
    // kSystemMalfunction, HostError's default code).
    std::optional<host::HostError> failure;
    auto database_failure = [](const std::string& what, const store::DbError& error) {
      host::HostError e;
      e.message = what + error.message;
      e.retryable = error.retryable();
      return e;
    };
    auto tx = store::Transaction::Begin(connection);
    if (!tx.ok()) {
      failure = database_failure("database: ", tx.error());
    } else {
      // An exception from `change` (CommandFailed) rolls the transaction back as it unwinds.
      auto entries = change();
      if (!entries.ok()) {
        failure = entries.error();
      } else {
        for (audit::Entry& entry : *entries) {
          entry.actor = actor;
          entry.from = "cli";
          auto appended = audit::AppendDb(connection, entry);
          if (!appended.ok()) {
            failure = database_failure("writing the audit log: ", appended.error());
            break;
          }
        }
      }
      if (failure) {
        tx->Rollback();
      } else if (auto committed = tx->Commit(); !committed.ok()) {
        failure = database_failure("database: ", committed.error());
      }
    }
    if (!failure) return store::Done{};
    if (!failure->retryable || attempt >= policy.max_attempts) return *failure;
    store::BackOff(policy, attempt);
  }
}

void RunAudited(HostSession& session, const std::string& context, const AuditedChange& change) {
  auto done = TryAudited(session, change);
  if (!done.ok()) {
    const std::string& message = done.error().message;
    throw CommandFailed(context.empty() ? message : context + ": " + message);
  }
}

}  // namespace medcard::cli
