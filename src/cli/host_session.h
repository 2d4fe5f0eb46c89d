// What the host's commands open: the configuration of a data directory (DIR/host.json), its
// database (migrated to this program's schema), its key store and the Host services on them.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_log.h"
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

// Who runs a host command, for the audit log (docs/audit.md "Host commands"): "os:<login>" — the
// login of the terminal session (getlogin(), so `sudo` still names the person), else the name of
// the effective user, else "os:uid:<number>".
std::string OperatingSystemActor();

// An entry of a host command (docs/audit.md "Host commands"); RunAudited sets actor and from.
audit::Entry HostCommandEntry(std::string action, std::string target, std::string details);

// What a host command changes and the audit entries that say so (docs/audit.md): `change` runs
// the Host services (each joins this transaction: host::Host takes a savepoint inside an open
// one) and returns the entries to append — their actor (OperatingSystemActor) and from ("cli")
// are set here. Change and entries are ONE write transaction: they commit or roll back together.
// A refusal (`change`'s error) appends nothing and throws CommandFailed("<context>: <message>",
// or the message alone when `context` is empty); a serialization failure (PostgreSQL) runs
// `change` again, so it must be safe to rerun.
using AuditedChange = std::function<host::HostResult<std::vector<audit::Entry>>()>;
void RunAudited(HostSession& session, const std::string& context, const AuditedChange& change);
// As RunAudited, but the refusal (or the database failure, kSystemMalfunction) is returned.
host::HostResult<store::Done> TryAudited(HostSession& session, const AuditedChange& change);

void AddHostRunCommand(CLI::App& host);  // host run (host_run.cc)

}  // namespace medcard::cli
