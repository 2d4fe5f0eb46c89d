// medcard si serve | si users add (docs/insurance.md "The agency's API"): the agency's
// HTTPS/JSON API (docs/api/si-openapi.yaml) on the agency's data directory, and its users. The
// users, sessions, audit log and idempotency keys live in the AGENCY's database, never the
// bank's. Passwords come from stdin, never from a flag; the batch key from
// MEDCARD_ALLOCATION_KEY.
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "access/directory.h"
#include "api/server.h"
#include "api/si_routes.h"
#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "cli/si_session.h"
#include "insurance/allocation_batch.h"
#include "insurance/policy.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

void AddServe(CLI::App& si) {
  struct Options {
    std::string data_dir;
    std::string listen = "127.0.0.1:8444";
    std::string tls_certificate, tls_private_key;
  };
  auto o = std::make_shared<Options>();
  CLI::App* serve = si.add_subcommand(
      "serve", "Serve the agency's HTTPS/JSON API (plain HTTP only on a loopback address)");
  serve->add_option("--data", o->data_dir, "The agency's data directory")->required();
  serve->add_option("--listen", o->listen, "ADDRESS:PORT (default 127.0.0.1:8444; port 0: any)");
  serve->add_option("--tls-cert", o->tls_certificate, "The server certificate (PEM)");
  serve->add_option("--tls-key", o->tls_private_key, "The server's private key (PEM)");
  serve->callback([o] {
    const auto colon = o->listen.rfind(':');
    const char* digits = colon == std::string::npos ? "" : o->listen.c_str() + colon + 1;
    char* end = nullptr;
    const unsigned long port = std::strtoul(digits, &end, 10);
    if (colon == std::string::npos || colon == 0 || *digits < '0' || *digits > '9' ||
        *end != '\0' || port > 65535) {
      throw CommandFailed("--listen takes ADDRESS:PORT (port 0..65535)", 2);
    }
    if (o->tls_certificate.empty() != o->tls_private_key.empty()) {
      throw CommandFailed("--tls-cert and --tls-key go together", 2);
    }
    // Taken by sigwait below: blocked before any thread starts.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    SiSession session = SiSession::Open(o->data_dir, api::SiMigrationSets());
    const insurance::PolicyBook& policies = session.policies();
    const access::Directory directory;
    api::SiApiServices services;
    services.database = &session.database();
    services.directory = &directory;
    services.policies = &policies;
    if (const char* hex = std::getenv(insurance::kBatchKeyEnvironment); hex != nullptr) {
      services.batch_key =
          Check(insurance::BatchKey::FromHex(hex), std::string(insurance::kBatchKeyEnvironment));
    }
    const bool has_batch_key = services.batch_key.has_value();
    const api::SiApi endpoints(std::move(services));
    api::ServerOptions options;
    options.listen_address = o->listen.substr(0, colon);
    options.port = static_cast<std::uint16_t>(port);
    options.tls_certificate = o->tls_certificate;
    options.tls_private_key = o->tls_private_key;
    auto server = api::Server::Start(options, [&endpoints](const api::HttpRequest& request) {
      return endpoints.Handle(request);
    });
    if (!server.ok()) throw CommandFailed("starting the API: " + server.error().message);
    std::printf("medcard agency API listening on %s:%u (%s)%s\nCtrl-C stops it\n",
                options.listen_address.c_str(), static_cast<unsigned>((*server)->port()),
                (*server)->tls() ? "HTTPS" : "plain HTTP, loopback only",
                has_batch_key ? "" : "; no MEDCARD_ALLOCATION_KEY: allocation batches refused");
    std::fflush(stdout);
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    (*server)->Stop();
    std::printf("stopped\n");
  });
}

void AddUsers(CLI::App& si) {
  CLI::App* users = si.add_subcommand("users", "The agency's users (insurance officers, auditors)");
  users->require_subcommand(1);
  struct Options {
    std::string data_dir, login, role, name;
  };
  auto o = std::make_shared<Options>();
  CLI::App* add = users->add_subcommand(
      "add", "Add a user; the password is read from stdin (never a flag, never echoed)");
  add->add_option("--data", o->data_dir, "The agency's data directory")->required();
  add->add_option("--login", o->login, "The login: 3-32 of a-z 0-9 . _ -")->required();
  add->add_option("--role", o->role, "insurance_officer | auditor")->required();
  add->add_option("--name", o->name, "The display name (default: the login)");
  add->callback([o] {
    const auto role = access::ParseRole(o->role);
    if (!role || (*role != access::Role::kInsuranceOfficer && *role != access::Role::kAuditor)) {
      throw CommandFailed("--role: insurance_officer or auditor", 2);
    }
    SecretString password;
    if (!ReadSecretLine("new password for " + o->login + ": ", password) ||
        password.value.empty()) {
      throw CommandFailed("no password on stdin");
    }
    SiSession session = SiSession::Open(o->data_dir, api::SiMigrationSets());
    const access::Directory directory;
    auto user = directory.AddUser(
        session.connection(), access::SystemPrincipal("si"),
        {o->login, o->name.empty() ? o->login : o->name, *role, "", password.value}, "cli");
    if (!user.ok()) {
      std::string message = "adding " + o->login + ": " + user.error().message;
      if (!user.error().field.empty()) message += " (" + user.error().field + ")";
      throw CommandFailed(message);
    }
    std::printf("user %s added: %s\n", user->login.c_str(),
                std::string(access::RoleName(user->role)).c_str());
  });
}

}  // namespace

void AddSiServeCommands(CLI::App& si) {
  AddServe(si);
  AddUsers(si);
}

}  // namespace medcard::cli
