// medcard host run: the bank host's terminal server (docs/host.md "Running the host"). The
// server's one processing thread owns the database connection, the key store and the gateway;
// the main thread only waits for SIGINT/SIGTERM and then shuts the server down gracefully
// (requests already received are answered).
#include <pthread.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "access/directory.h"
#include "api/routes.h"
#include "api/server.h"
#include "audit/audit_log.h"
#include "branch/services.h"
#include "cli/commands.h"
#include "cli/host_session.h"
#include "host/gateway.h"
#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "server/server.h"

namespace medcard::cli {
namespace {

// Loads left pending — neither confirmed nor reversed, e.g. the terminal lost power — are decided
// from the card's later load requests (Host::ReconcileLoads, docs/host.md). On the processing
// thread, between groups, at most once a minute, for loads older than ten minutes.
class LoadReconciler {
 public:
  explicit LoadReconciler(host::Host& host) : host_(host) {}
  void MaybeRun() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_run_) return;
    next_run_ = now + std::chrono::minutes(1);
    const std::int64_t before_us =
        std::chrono::duration_cast<std::chrono::microseconds>(
            (std::chrono::system_clock::now() - std::chrono::minutes(10)).time_since_epoch())
            .count();
    auto decided = host_.ReconcileLoads(before_us);
    if (!decided.ok()) {
      spdlog::warn("load reconciliation failed reason=\"{}\"", decided.error().message);
      return;
    }
    for (const host::LoadReconciliation& load : *decided) {
      if (load.state == "pending") {
        spdlog::warn("load still pending terminal={} trace={:06} (no evidence from the card yet)",
                     load.terminal_number, load.trace);
      } else {
        spdlog::info("load reconciled terminal={} trace={:06} state={}", load.terminal_number,
                     load.trace, load.state);
      }
    }
  }

 private:
  host::Host& host_;
  std::chrono::steady_clock::time_point next_run_{};
};

// A replaced or closed card's float moves to the person's medical account (and a closure's
// refund is paid) only after the clearing window (docs/branch.md): this thread makes the
// transfers that are due at start and then every `interval`, on a database connection of its
// own, taking turns with the gateway and the API for the key store. Each one made is logged.
class TransferScheduler {
 public:
  TransferScheduler(std::unique_ptr<store::Connection> connection, keys::KeyStore& key_store,
                    std::mutex& key_store_mutex, std::chrono::seconds interval)
      : connection_(std::move(connection)),
        key_store_(key_store),
        key_store_mutex_(key_store_mutex),
        interval_(interval) {
    RunDue();
    thread_ = std::thread([this] { Loop(); });
  }
  TransferScheduler(const TransferScheduler&) = delete;
  TransferScheduler& operator=(const TransferScheduler&) = delete;
  ~TransferScheduler() {
    {
      std::lock_guard lock(stop_mutex_);
      stopping_ = true;
    }
    stop_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock lock(stop_mutex_);
    while (!stop_.wait_for(lock, interval_, [this] { return stopping_; })) {
      lock.unlock();
      RunDue();
      lock.lock();
    }
  }
  void RunDue() {
    std::lock_guard key_store_lock(key_store_mutex_);
    branch::BranchServices services(*connection_, key_store_);
    auto made = services.RunDueTransfers(services.Now());
    if (!made.ok()) {
      spdlog::warn("scheduled transfers failed reason=\"{}\"", made.error().message);
      return;
    }
    for (const branch::ScheduledTransfer& t : *made) {
      spdlog::info("transfer made asn={} kind={} state={} moved_ed={} moved_ep={} refunded={}",
                   t.asn, t.kind, t.state, t.moved_ed, t.moved_ep, t.refunded);
    }
  }

  std::unique_ptr<store::Connection> connection_;
  keys::KeyStore& key_store_;
  std::mutex& key_store_mutex_;
  std::chrono::seconds interval_;
  std::mutex stop_mutex_;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread thread_;
};

struct HostRunOptions {
  std::string data_dir;
  std::string listen;
  std::string api_listen;
  bool no_api = false;
  bool quiet = false;
  std::optional<std::int64_t> transfer_interval_seconds;
};

// Logs: one line per event, UTC time stamps, key=value fields; to stderr and the log file.
void ConfigureLogging(const HostConfig& config, bool quiet) {
  std::vector<spdlog::sink_ptr> sinks;
  if (!quiet) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!config.log_file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(config.log_file));
    } catch (const spdlog::spdlog_ex& e) {
      throw CommandFailed("cannot open the log file " + config.log_file + ": " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("host", sinks.begin(), sinks.end());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(config.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// One info line per answered request (docs/host.md "Running the host": what, terminal=, trace=,
// code=); at debug also both messages through Message::ToString(), which masks keys, PINs and
// PANs (docs/protocol.md 9.9). Refusals and unanswered frames the gateway logs itself.
void LogAnswer(const Bytes& request_frame, const host::GatewayReply& reply) {
  if (!reply.frame || !spdlog::should_log(spdlog::level::info)) return;
  auto request = iso8583::ParseFrame(request_frame);
  auto answer = iso8583::ParseFrame(*reply.frame);
  if (!request.ok() || !answer.ok()) return;
  auto spec = iso8583::Identify(request->message);
  const iso8583::Message& m = answer->message;
  auto or_dash = [](Result<std::string> value) { return value.ok() ? *value : std::string("-"); };
  spdlog::info("{} terminal={} trace={} code={}{}",
               spec.ok() ? std::string((*spec)->name) : iso8583::MtiText(request->message.mti()),
               or_dash(m.GetText(41)), or_dash(m.GetDigits(11)), or_dash(m.GetText(39)),
               reply.close ? " closing" : "");
  spdlog::debug("request {}", request->message.ToString());
  spdlog::debug("answer {}", answer->message.ToString());
}

void RunHost(const HostRunOptions& options) {
  // SIGINT/SIGTERM are taken by sigwait below: blocked from the start (a signal during start-up
  // then waits for it instead of killing a half-started host) and before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  HostSession session = OpenHostSession(options.data_dir);
  HostConfig config = session.config();
  if (!options.listen.empty()) {
    const auto colon = options.listen.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      throw CommandFailed("--listen takes ADDRESS:PORT", 2);
    }
    config.listen_address = options.listen.substr(0, colon);
    const char* digits = options.listen.c_str() + colon + 1;
    char* end = nullptr;
    const unsigned long port = std::strtoul(digits, &end, 10);
    if (*digits < '0' || *digits > '9' || *end != '\0' || port > 65535) {
      throw CommandFailed("--listen: bad port in " + options.listen + " (0..65535)", 2);
    }
    config.port = static_cast<std::uint16_t>(port);
  }
  ConfigureLogging(config, options.quiet);

  host::TerminalGateway gateway(session.connection(), session.key_store());
  server::Options server_options;
  server_options.address = config.listen_address;
  server_options.port = config.port;
  if (config.tls()) {
    server_options.tls = server::TlsOptions{config.tls_certificate, config.tls_private_key};
  }
  server_options.max_frame = config.max_frame;
  server_options.idle_timeout = config.idle_timeout;
  server_options.read_timeout = config.read_timeout;
  server_options.max_group = config.max_group;
  server_options.max_connections = config.max_connections;

  LoadReconciler reconciler(session.host());
  reconciler.MaybeRun();
  // The key store is thread-compatible only: the gateway and the API's card routes take turns.
  std::mutex key_store_mutex;
  auto server = server::Server::Start(server_options, [&](std::span<const Bytes> frames) {
    std::lock_guard key_store_lock(key_store_mutex);
    reconciler.MaybeRun();
    std::vector<host::GatewayReply> answers = gateway.HandleGroup(frames);
    std::vector<server::Reply> replies;
    replies.reserve(answers.size());
    for (std::size_t i = 0; i < answers.size(); ++i) {
      if (i < frames.size()) LogAnswer(frames[i], answers[i]);
      replies.push_back({std::move(answers[i].frame), answers[i].close});
    }
    return replies;
  });
  if (!server.ok()) throw CommandFailed("starting the server: " + server.error().message);

  spdlog::info("host started listen={}:{} tls={} database=\"{}\" key_store=\"{}\"",
               config.listen_address, (*server)->port(), config.tls() ? "on" : "off",
               session.database().description(), session.key_store().Describe());
  std::printf("medcard host listening on %s:%u (%s)\n", config.listen_address.c_str(),
              static_cast<unsigned>((*server)->port()), config.tls() ? "TLS" : "plain TCP");
  std::printf("  database   %s\n  key store  %s%s\n  log        %s\nCtrl-C stops it\n",
              session.database().description().c_str(), session.key_store().Describe().c_str(),
              session.key_store().test_only() ? " (TEST keys)" : "",
              config.log_file.empty() ? "stderr" : config.log_file.c_str());
  std::fflush(stdout);

  // The HTTPS/JSON API (docs/api.md) next to the ISO 8583 server: its own database connections,
  // the session's key store under key_store_mutex.
  std::unique_ptr<access::Directory> api_directory;
  std::unique_ptr<api::Api> api_endpoints;
  std::unique_ptr<api::Server> api_server;
  if (options.no_api) config.api_enabled = false;
  if (!options.api_listen.empty()) {
    const auto colon = options.api_listen.rfind(':');
    const char* digits = colon == std::string::npos ? "" : options.api_listen.c_str() + colon + 1;
    char* end = nullptr;
    const unsigned long port = std::strtoul(digits, &end, 10);
    if (colon == std::string::npos || colon == 0 || *digits < '0' || *digits > '9' ||
        *end != '\0' || port > 65535) {
      (*server)->Shutdown(std::chrono::seconds(1));
      throw CommandFailed("--api-listen takes ADDRESS:PORT (port 0..65535)", 2);
    }
    config.api_listen_address = options.api_listen.substr(0, colon);
    config.api_port = static_cast<std::uint16_t>(port);
  } else if (!options.listen.empty() && config.port == 0) {
    // "--listen ADDRESS:0" (any free port: tests, several hosts side by side) does the same for
    // the API, so two hosts never fight over its configured port.
    config.api_port = 0;
  }
  if (config.api_enabled) {
    // On a connection of its own: the ISO 8583 server's thread already uses the session's.
    auto migration_connection = session.database().Connect();
    if (!migration_connection.ok()) {
      (*server)->Shutdown(std::chrono::seconds(1));
      throw CommandFailed("connecting for the API: " + migration_connection.error().message);
    }
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &branch::Migrations(), &api::Migrations()}) {
      auto migrated = store::Migrate(**migration_connection, *set);
      if (!migrated.ok()) {
        (*server)->Shutdown(std::chrono::seconds(1));
        throw CommandFailed("migrating " + set->component + ": " + migrated.error().message);
      }
    }
    api_directory = std::make_unique<access::Directory>();
    api::ApiServices services;
    services.database = &session.database();
    services.key_store = &session.key_store();
    services.key_store_mutex = &key_store_mutex;
    services.directory = api_directory.get();
    api_endpoints = std::make_unique<api::Api>(std::move(services));
    api::ServerOptions api_options;
    api_options.listen_address = config.api_listen_address;
    api_options.port = config.api_port;
    api_options.tls_certificate = config.api_tls_certificate;
    api_options.tls_private_key = config.api_tls_private_key;
    api_options.threads = config.api_threads;
    auto started = api::Server::Start(api_options, [&](const api::HttpRequest& request) {
      return api_endpoints->Handle(request);
    });
    if (!started.ok()) {
      (*server)->Shutdown(std::chrono::seconds(1));
      throw CommandFailed("starting the API: " + started.error().message);
    }
    api_server = std::move(*started);
    spdlog::info("api started listen={}:{} tls={}", config.api_listen_address, api_server->port(),
                 api_server->tls() ? "on" : "off");
    std::printf("medcard API listening on %s:%u (%s)\n", config.api_listen_address.c_str(),
                static_cast<unsigned>(api_server->port()),
                api_server->tls() ? "HTTPS" : "plain HTTP, loopback only");
    std::fflush(stdout);
  }

  if (options.transfer_interval_seconds) {
    config.transfer_interval = std::chrono::seconds(*options.transfer_interval_seconds);
  }
  std::unique_ptr<TransferScheduler> transfers;
  if (config.transfer_interval.count() > 0) {
    auto connection = session.database().Connect();
    std::string failure = connection.ok() ? "" : connection.error().message;
    for (const store::MigrationSet* set : {&audit::Migrations(), &branch::Migrations()}) {
      if (!failure.empty()) break;
      auto migrated = store::Migrate(**connection, *set);
      if (!migrated.ok()) failure = "migrating " + set->component + ": " + migrated.error().message;
    }
    if (!failure.empty()) {
      if (api_server != nullptr) api_server->Stop();
      (*server)->Shutdown(std::chrono::seconds(1));
      throw CommandFailed("scheduled transfers: " + failure);
    }
    transfers = std::make_unique<TransferScheduler>(std::move(*connection), session.key_store(),
                                                    key_store_mutex, config.transfer_interval);
    spdlog::info("scheduled transfers every {}s", config.transfer_interval.count());
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("host stopping signal={} (answering requests in flight)", signal_number);
  transfers.reset();
  if (api_server != nullptr) api_server->Stop();
  (*server)->Shutdown(std::chrono::seconds(10));
  const server::Stats stats = (*server)->stats();
  spdlog::info("host stopped connections={} frames={} replies={} groups={}",
               stats.connections_accepted, stats.frames_received, stats.replies_sent, stats.groups);
  std::printf("medcard host stopped: %llu connection(s), %llu request(s) answered\n",
              static_cast<unsigned long long>(stats.connections_accepted),
              static_cast<unsigned long long>(stats.replies_sent));
}

}  // namespace

void AddHostRunCommand(CLI::App& host) {
  auto options = std::make_shared<HostRunOptions>();
  CLI::App* run = host.add_subcommand(
      "run", "Serve the POS terminals (ISO 8583 over TCP/TLS) until Ctrl-C or SIGTERM");
  run->add_option("--data", options->data_dir, "The host's data directory (host.json)")->required();
  run->add_option("--listen", options->listen,
                  "ADDRESS:PORT, overriding host.json (port 0: any free port, printed)");
  run->add_option("--api-listen", options->api_listen,
                  "ADDRESS:PORT of the HTTPS/JSON API, overriding host.json's api object");
  run->add_flag("--no-api", options->no_api, "Do not start the HTTPS/JSON API");
  run->add_flag("--quiet", options->quiet, "Log only to the log file");
  run->add_option("--transfer-interval", options->transfer_interval_seconds,
                  "Seconds between runs of the branch's due transfers, overriding host.json "
                  "(0: never)")
      ->check(CLI::Range(0, 86'400));
  run->callback([options] { RunHost(*options); });
}

}  // namespace medcard::cli
