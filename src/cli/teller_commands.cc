// medcard teller ...: the teller workstation, a client of the host's HTTPS/JSON API
// (docs/teller.md, docs/api.md). Sign-in keeps the session token in a file only the user can
// read; every card command is one API call (two for an issuer script run on the teller's reader).
// Secrets — the teller's and the authoriser's passwords, the new PIN — come from stdin or a
// no-echo prompt, never from a flag, and are never printed.
#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "branch/card_scripts.h"
#include "branch/script_runner.h"
#include "card/card.h"
#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "cli/teller_pek.h"
#include "common/bytes.h"
#include "common/money.h"
#include "crypto/crypto.h"
#include "nvm/nvm.h"
#include "reader/reader.h"

namespace medcard::cli {
namespace {

using json = nlohmann::json;

// What every teller command shares.
struct TellerOptions {
  std::string session_file;  // empty: ~/.medcard/teller-session
  bool json_output = false;
  bool verbose = false;
};

// The session file's content (JSON): where the host is and the bearer token.
struct TellerSession {
  std::string host;  // http(s)://host:port
  std::string ca;    // CA certificate file for HTTPS; empty: the system's
  std::string token;
  std::string login;
  std::string role;
  std::string expires_at;
};

std::filesystem::path SessionPath(const TellerOptions& options) {
  if (!options.session_file.empty()) return options.session_file;
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    throw CommandFailed("HOME is not set: give the session file with --session FILE");
  }
  return std::filesystem::path(home) / ".medcard" / "teller-session";
}

// Written with mode 0600 from the start (never readable by others, not even for a moment).
void SaveSession(const std::filesystem::path& path, const TellerSession& session) {
  if (path.has_parent_path() && !std::filesystem::exists(path.parent_path())) {
    std::error_code error;
    std::filesystem::create_directories(path.parent_path(), error);
    if (error)
      throw CommandFailed("creating " + path.parent_path().string() + ": " + error.message());
    ::chmod(path.parent_path().c_str(), 0700);
  }
  const std::string text =
      json{{"host", session.host},   {"ca", session.ca},     {"token", session.token},
           {"login", session.login}, {"role", session.role}, {"expires_at", session.expires_at}}
          .dump(2) +
      "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw CommandFailed("writing the session file " + path.string());
  // An existing file keeps its old mode through O_CREAT: make it 0600 too.
  const bool written = ::fchmod(fd, 0600) == 0 &&
                       ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written) throw CommandFailed("writing the session file " + path.string());
}

TellerSession LoadSession(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in)
    throw CommandFailed("not signed in (no session in " + path.string() +
                        "): run `medcard teller login`");
  struct stat status {};
  if (::stat(path.c_str(), &status) == 0 && (status.st_mode & 077) != 0) {
    throw CommandFailed("the session file " + path.string() +
                        " is readable by others: sign in again");
  }
  const json content = json::parse(in, nullptr, false);
  if (!content.is_object() || !content.contains("token") || !content["token"].is_string() ||
      !content.contains("host") || !content["host"].is_string()) {
    throw CommandFailed("the session file " + path.string() + " is damaged: sign in again");
  }
  TellerSession session;
  session.host = content["host"].get<std::string>();
  session.token = content["token"].get<std::string>();
  auto text = [&](const char* name) {
    return content.contains(name) && content[name].is_string() ? content[name].get<std::string>()
                                                               : std::string();
  };
  session.ca = text("ca");
  session.login = text("login");
  session.role = text("role");
  session.expires_at = text("expires_at");
  return session;
}

// http://host[:port] or https://host[:port], without a path. Plain HTTP only to a loopback host:
// a password must not cross a network in clear (the server refuses the same, docs/api.md).
std::string CheckHostUrl(std::string url) {
  while (url.ends_with('/')) url.pop_back();
  const bool https = url.starts_with("https://");
  if (!https && !url.starts_with("http://")) {
    throw CommandFailed("--host: http://HOST:PORT or https://HOST:PORT, not '" + url + "'");
  }
  std::string authority = url.substr(https ? 8 : 7);
  if (authority.empty() || authority.find('/') != std::string::npos) {
    throw CommandFailed("--host: http://HOST:PORT or https://HOST:PORT, without a path");
  }
  if (!https) {
    std::string host_name = authority;
    if (host_name.starts_with('[')) {
      host_name = host_name.substr(1, host_name.find(']') - 1);
    } else if (auto colon = host_name.rfind(':'); colon != std::string::npos) {
      host_name.resize(colon);
    }
    const bool loopback =
        host_name == "localhost" || host_name == "::1" || host_name.starts_with("127.");
    if (!loopback) {
      throw CommandFailed("--host: plain HTTP only to a loopback address; use https://");
    }
  }
  return url;
}

struct ApiAnswer {
  int status = 0;
  std::string body;
  std::string content_type;
  bool replayed = false;
};

// One HTTP request to the API. Network failures are CommandFailed naming the host.
ApiAnswer SendToApi(const TellerSession& session, const std::string& method,
                    const std::string& path, const std::optional<json>& body,
                    const std::string& idempotency_key = {}) {
  httplib::Client client(session.host);
  if (!client.is_valid()) throw CommandFailed("cannot use the host address " + session.host);
  client.set_connection_timeout(10);
  client.set_read_timeout(40);  // the server's own timeout is 30 s
  client.set_write_timeout(30);
  if (session.host.starts_with("https://")) {
    client.enable_server_certificate_verification(true);
    if (!session.ca.empty()) client.set_ca_cert_path(session.ca.c_str());
  }
  httplib::Headers headers;
  if (!session.token.empty()) headers.emplace("Authorization", "Bearer " + session.token);
  if (!idempotency_key.empty()) headers.emplace("Idempotency-Key", idempotency_key);
  const std::string payload = body ? body->dump() : std::string();
  httplib::Result result = [&] {
    if (method == "GET") return client.Get(path, headers);
    if (method == "POST") return client.Post(path, headers, payload, "application/json");
    return client.Delete(path, headers, payload, "application/json");
  }();
  if (!result) {
    std::string reason = httplib::to_string(result.error());
    if (result.error() == httplib::Error::SSLServerVerification) {
      reason += " (the host's certificate is not trusted: give its CA with --ca FILE at login)";
    }
    throw CommandFailed("cannot reach the host at " + session.host + ": " + reason);
  }
  ApiAnswer answer;
  answer.status = result->status;
  answer.body = result->body;
  answer.content_type = result->get_header_value("Content-Type");
  answer.replayed = result->get_header_value("Idempotent-Replayed") == "true";
  return answer;
}

// An error answer as "message (code[, field])" — main prints it after "medcard: ".
[[noreturn]] void FailWith(const ApiAnswer& answer) {
  const json body = json::parse(answer.body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& error = body["error"];
    auto text = [&](const char* name) {
      return error.contains(name) && error[name].is_string() ? error[name].get<std::string>()
                                                             : std::string();
    };
    std::string message = text("message") + " (" + text("code");
    if (!text("field").empty()) message += ", " + text("field");
    throw CommandFailed(message + ")");
  }
  throw CommandFailed("the host answered HTTP " + std::to_string(answer.status));
}

json ParseAnswer(const ApiAnswer& answer) {
  if (answer.status < 200 || answer.status >= 300) FailWith(answer);
  if (answer.body.empty()) return json::object();
  json body = json::parse(answer.body, nullptr, false);
  if (body.is_discarded()) throw CommandFailed("the host's answer is not JSON");
  return body;
}

std::string NewIdempotencyKey() { return ToHex(crypto::RandomBytes(16)); }

// Reads the authoriser's password (one line of stdin, or a no-echo prompt) into the body.
void AddAuthorisation(json& body, const std::string& authoriser) {
  if (authoriser.empty()) return;
  SecretString password;
  if (!ReadSecretLine("password of the authoriser " + authoriser + ": ", password) ||
      password.value.empty()) {
    throw CommandFailed("no password for the authoriser " + authoriser + " on stdin");
  }
  body["authorisation"] = {{"login", authoriser}, {"password", password.value}};
}

std::string Text(const json& value, const char* name) {
  if (!value.contains(name) || value[name].is_null()) return "-";
  if (value[name].is_string()) return value[name].get<std::string>();
  return value[name].dump();
}

std::string Fen(const json& value, const char* name) {
  if (!value.contains(name) || !value[name].is_number_integer()) return "-";
  return FormatFen(value[name].get<std::int64_t>());
}

void PrintCard(const json& card) {
  std::printf("card %s: %s (version %s)\n", Text(card, "asn").c_str(), Text(card, "state").c_str(),
              Text(card, "version").c_str());
  std::printf("  person %s, holder %s, branch %s, valid to %s\n", Text(card, "person_id").c_str(),
              Text(card, "holder_reference").c_str(), Text(card, "branch").c_str(),
              Text(card, "valid_to").c_str());
  if (!card["blacklisted_at"].is_null()) {
    std::printf("  blacklisted at %s\n", Text(card, "blacklisted_at").c_str());
  }
  if (!card["replaces"].is_null()) std::printf("  replaces %s\n", Text(card, "replaces").c_str());
  if (!card["replaced_by"].is_null()) {
    std::printf("  replaced by %s\n", Text(card, "replaced_by").c_str());
  }
  if (card.contains("balances") && card["balances"].is_object()) {
    const json& balances = card["balances"];
    std::printf("  medical account %s, card float ED %s, EP %s\n",
                Fen(balances, "medical_account").c_str(), Fen(balances, "card_ed").c_str(),
                Fen(balances, "card_ep").c_str());
  }
}

void PrintTransfer(const json& transfer) {
  std::printf("  float transfer %s (%s) due %s\n", Text(transfer, "kind").c_str(),
              Text(transfer, "state").c_str(), Text(transfer, "due_at").c_str());
}

void Print(const TellerOptions& options, const json& answer, void (*human)(const json&)) {
  if (options.json_output) {
    std::printf("%s\n", answer.dump(2).c_str());
  } else {
    human(answer);
  }
}

std::string CardPath(const std::string& asn, const std::string& tail = {}) {
  if (asn.size() != 20 || !FromHex(asn))
    throw CommandFailed("ASN: 20 hex digits, not '" + asn + "'");
  return "/v1/cards/" + asn + tail;
}

// A mutating card request: its Idempotency-Key (new unless given), the authoriser if any.
struct MutationOptions {
  std::string idempotency_key;
  std::string authoriser;
  std::string reason;
  std::optional<std::int64_t> expected_version;
};

void AddMutationOptions(CLI::App* command, MutationOptions& options, bool dual_control) {
  command
      ->add_option("--idempotency-key", options.idempotency_key,
                   "Reuse this key (a retry after a timeout is answered once); default: a new one")
      ->check([](const std::string& key) -> std::string {
        const bool sane =
            !key.empty() && key.size() <= 64 &&
            key.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
                std::string::npos;
        return sane ? std::string() : "1 to 64 of A-Z a-z 0-9 . _ -";
      });
  command->add_option("--authoriser", options.authoriser,
                      dual_control ? "The senior teller or supervisor authorising (dual control); "
                                     "their password is read from stdin"
                                   : "An authoriser, when the operation needs one (dual control); "
                                     "their password is read from stdin");
  command->add_option("--reason", options.reason, "A note for the audit log (no personal data)");
  command->add_option("--expected-version", options.expected_version,
                      "The card version the teller saw (a newer one is refused: conflict)");
}

json Mutate(const TellerOptions& options, const MutationOptions& mutation,
            const std::string& method, const std::string& path, json body) {
  const TellerSession session = LoadSession(SessionPath(options));
  if (!mutation.reason.empty()) body["reason"] = mutation.reason;
  if (mutation.expected_version) body["expected_version"] = *mutation.expected_version;
  AddAuthorisation(body, mutation.authoriser);
  const std::string key =
      mutation.idempotency_key.empty() ? NewIdempotencyKey() : mutation.idempotency_key;
  if (options.verbose) std::fprintf(stderr, "Idempotency-Key: %s\n", key.c_str());
  const ApiAnswer answer = SendToApi(session, method, path, body, key);
  if (options.verbose && answer.replayed) {
    std::fprintf(stderr,
                 "the host answered this key before: its first answer, nothing done again\n");
  }
  return ParseAnswer(answer);
}

void AddSessionCommands(CLI::App& teller, std::shared_ptr<TellerOptions> options) {
  {
    struct Login {
      std::string host, ca, login;
    };
    auto o = std::make_shared<Login>();
    CLI::App* cmd = teller.add_subcommand(
        "login", "Sign in; the password is read from stdin (never a flag, never echoed)");
    cmd->add_option("--host", o->host, "The host's API: https://HOST:PORT (http:// on loopback)")
        ->required();
    cmd->add_option("--ca", o->ca, "The CA certificate (PEM) the host's certificate chains to")
        ->check(CLI::ExistingFile);
    cmd->add_option("--login", o->login, "Your login")->required();
    cmd->callback([o, options] {
      TellerSession session;
      session.host = CheckHostUrl(o->host);
      if (!o->ca.empty()) session.ca = std::filesystem::absolute(o->ca).string();
      SecretString password;
      if (!ReadSecretLine("password for " + o->login + ": ", password) || password.value.empty()) {
        throw CommandFailed("no password on stdin");
      }
      const json body = {{"login", o->login}, {"password", password.value}};
      const json answer = ParseAnswer(SendToApi(session, "POST", "/v1/sessions", body));
      session.token = answer.value("token", "");
      session.login = answer.value("login", o->login);
      session.role = answer.value("role", "");
      session.expires_at = answer.value("expires_at", "");
      if (session.token.empty()) throw CommandFailed("the host's answer has no token");
      const auto path = SessionPath(*options);
      SaveSession(path, session);
      if (options->json_output) {
        std::printf("%s\n", json{{"login", session.login},
                                 {"role", session.role},
                                 {"expires_at", session.expires_at},
                                 {"absolute_expires_at", answer.value("absolute_expires_at", "")},
                                 {"session_file", path.string()}}
                                .dump(2)
                                .c_str());
      } else {
        std::printf("signed in as %s (%s) at %s; the session ends after 15 minutes idle (%s)\n",
                    session.login.c_str(), session.role.c_str(), session.host.c_str(),
                    session.expires_at.c_str());
      }
    });
  }
  {
    CLI::App* cmd = teller.add_subcommand("logout", "Sign out and remove the session file");
    cmd->callback([options] {
      const auto path = SessionPath(*options);
      const TellerSession session = LoadSession(path);
      const ApiAnswer answer = SendToApi(session, "DELETE", "/v1/sessions/current", std::nullopt);
      // The local token goes in any case: an expired session is signed out already.
      std::filesystem::remove(path);
      if (answer.status != 204 && answer.status != 401) FailWith(answer);
      std::printf("signed out %s\n", session.login.c_str());
    });
  }
  {
    CLI::App* cmd = teller.add_subcommand(
        "whoami", "Show the signed-in teller (from the session file; the host is not asked)");
    cmd->callback([options] {
      const TellerSession session = LoadSession(SessionPath(*options));
      if (options->json_output) {
        std::printf("%s\n", json{{"login", session.login},
                                 {"role", session.role},
                                 {"host", session.host},
                                 {"expires_at", session.expires_at}}
                                .dump(2)
                                .c_str());
      } else {
        std::printf("%s (%s) at %s; idle expiry was %s at the last sign-in\n",
                    session.login.c_str(), session.role.c_str(), session.host.c_str(),
                    session.expires_at.c_str());
      }
    });
  }
}

// The card actions that take only the common body: activate, loss, cancel loss, capture.
void AddSimpleCardAction(CLI::App& card, std::shared_ptr<TellerOptions> options, const char* name,
                         const char* description, const char* method, const char* tail) {
  auto asn = std::make_shared<std::string>();
  auto mutation = std::make_shared<MutationOptions>();
  CLI::App* cmd = card.add_subcommand(name, description);
  cmd->add_option("ASN", *asn, "The card's ASN (20 hex digits)")->required();
  AddMutationOptions(cmd, *mutation, false);
  cmd->callback([=] {
    const json answer = Mutate(*options, *mutation, method, CardPath(*asn, tail), json::object());
    Print(*options, answer, PrintCard);
  });
}

void AddCardRequests(CLI::App& card, std::shared_ptr<TellerOptions> options) {
  {
    auto asn = std::make_shared<std::string>();
    CLI::App* cmd = card.add_subcommand(
        "show", "The card: state, version, validity, loss report, host-side balances");
    cmd->add_option("ASN", *asn, "The card's ASN (20 hex digits)")->required();
    cmd->callback([=] {
      const TellerSession session = LoadSession(SessionPath(*options));
      const json answer = ParseAnswer(SendToApi(session, "GET", CardPath(*asn), std::nullopt));
      Print(*options, answer, PrintCard);
    });
  }
  AddSimpleCardAction(card, options, "activate", "Activate an issued card", "POST", "/activate");
  AddSimpleCardAction(card, options, "report-loss",
                      "Report the card lost: blacklisted at once (POS terminals at their next "
                      "download; purchases after now are refused at clearing)",
                      "POST", "/loss");
  AddSimpleCardAction(card, options, "cancel-loss", "Cancel the loss report (off the blacklist)",
                      "DELETE", "/loss");
  AddSimpleCardAction(card, options, "capture", "Record a retained card (blacklisted)", "POST",
                      "/capture");
  {
    auto asn = std::make_shared<std::string>();
    auto to = std::make_shared<std::string>();
    auto mutation = std::make_shared<MutationOptions>();
    CLI::App* cmd = card.add_subcommand(
        "validity", "Record a new last valid day in the host (the card itself: set-validity)");
    cmd->add_option("ASN", *asn, "The card's ASN (20 hex digits)")->required();
    cmd->add_option("--to", *to, "The new last valid day, YYYY-MM-DD")->required();
    AddMutationOptions(cmd, *mutation, false);
    cmd->callback([=] {
      const json answer =
          Mutate(*options, *mutation, "POST", CardPath(*asn, "/validity"), {{"valid_to", *to}});
      Print(*options, answer, PrintCard);
    });
  }
  {
    auto asn = std::make_shared<std::string>();
    auto branch = std::make_shared<std::string>();
    auto mutation = std::make_shared<MutationOptions>();
    CLI::App* cmd = card.add_subcommand(
        "replace",
        "Replace the card: the old one blacklisted, a new application for the same person; its "
        "float moves after the clearing window (dual control)");
    cmd->add_option("ASN", *asn, "The old card's ASN (20 hex digits)")->required();
    cmd->add_option("--branch", *branch, "The branch taking the new application (default: yours)");
    AddMutationOptions(cmd, *mutation, true);
    cmd->callback([=] {
      json body = json::object();
      if (!branch->empty()) body["branch"] = *branch;
      const json answer =
          Mutate(*options, *mutation, "POST", CardPath(*asn, "/replacement"), std::move(body));
      Print(*options, answer, [](const json& result) {
        PrintCard(result["old_card"]);
        std::printf(
            "new application %s for person %s: %s (personalise the new card, then issue "
            "it)\n",
            Text(result["new_card"], "application_id").c_str(),
            Text(result["new_card"], "person_id").c_str(),
            Text(result["new_card"], "state").c_str());
        PrintTransfer(result["transfer"]);
      });
    });
  }
  {
    auto asn = std::make_shared<std::string>();
    auto payee = std::make_shared<std::string>();
    auto mutation = std::make_shared<MutationOptions>();
    CLI::App* cmd = card.add_subcommand(
        "close",
        "Close the card: blacklisted; the float and the medical account are refunded to the payee "
        "after the clearing window (dual control)");
    cmd->add_option("ASN", *asn, "The card's ASN (20 hex digits)")->required();
    cmd->add_option("--payee", *payee, "The bank account reference the refund is paid to")
        ->required();
    AddMutationOptions(cmd, *mutation, true);
    cmd->callback([=] {
      const json answer = Mutate(*options, *mutation, "POST", CardPath(*asn, "/closure"),
                                 {{"payee_reference", *payee}});
      Print(*options, answer, [](const json& result) {
        PrintCard(result["card"]);
        PrintTransfer(result["transfer"]);
      });
    });
  }
  {
    auto asn = std::make_shared<std::string>();
    auto limit = std::make_shared<int>(50);
    auto after = std::make_shared<std::string>();
    CLI::App* cmd = card.add_subcommand(
        "history", "The card's movements, oldest first: loads, purchases (with merchants), ...");
    cmd->add_option("ASN", *asn, "The card's ASN (20 hex digits)")->required();
    cmd->add_option("--limit", *limit, "At most this many lines (1-500)")
        ->check(CLI::Range(1, 500))
        ->capture_default_str();
    cmd->add_option("--after", *after, "Continue after this cursor (printed as 'next')");
    cmd->callback([=] {
      const TellerSession session = LoadSession(SessionPath(*options));
      std::string path = CardPath(*asn, "/transactions") + "?limit=" + std::to_string(*limit);
      if (!after->empty()) {
        if (after->find_first_not_of("0123456789") != std::string::npos) {
          throw CommandFailed("--after: the cursor printed as 'next'");
        }
        path += "&after=" + *after;
      }
      const json answer = ParseAnswer(SendToApi(session, "GET", path, std::nullopt));
      Print(*options, answer, [](const json& page) {
        std::printf("%-19s %-9s %-3s %10s %10s  %s\n", "when", "kind", "wal", "amount", "balance",
                    "merchant / reference");
        for (const json& line : page["items"]) {
          std::string where = Text(line, "merchant_name");
          if (where == "-" || where.empty()) where = Text(line, "reference");
          std::printf("%-19s %-9s %-3s %10s %10s  %s\n", Text(line, "when").c_str(),
                      Text(line, "kind").c_str(), Text(line, "wallet").c_str(),
                      Fen(line, "amount").c_str(), Fen(line, "balance_after").c_str(),
                      where.c_str());
        }
        if (page["items"].empty()) std::printf("(no movements)\n");
        if (!page["next"].is_null()) {
          std::printf("more: --after %s\n", page["next"].get<std::string>().c_str());
        }
      });
    });
  }
  {
    struct Statement {
      std::string asn, from, to, out;
    };
    auto o = std::make_shared<Statement>();
    CLI::App* cmd =
        card.add_subcommand("statement", "The card's statement for a period (CSV or PDF)");
    cmd->add_option("ASN", o->asn, "The card's ASN (20 hex digits)")->required();
    cmd->add_option("--from", o->from, "First day, YYYY-MM-DD (local time)")->required();
    cmd->add_option("--to", o->to, "Last day, YYYY-MM-DD (inclusive)")->required();
    cmd->add_option("--out", o->out, "Write to FILE.csv or FILE.pdf (default: CSV to stdout)");
    cmd->callback([o, options] {
      const bool pdf = o->out.ends_with(".pdf");
      if (!o->out.empty() && !pdf && !o->out.ends_with(".csv")) {
        throw CommandFailed("--out: a file name ending in .csv or .pdf");
      }
      for (const std::string* day : {&o->from, &o->to}) {
        if (day->size() != 10 || day->find_first_not_of("0123456789-") != std::string::npos) {
          throw CommandFailed("--from/--to: YYYY-MM-DD, not '" + *day + "'");
        }
      }
      const TellerSession session = LoadSession(SessionPath(*options));
      const ApiAnswer answer = SendToApi(session, "GET",
                                         CardPath(o->asn, "/statement") + "?from=" + o->from +
                                             "&to=" + o->to + (pdf ? "&format=pdf" : ""),
                                         std::nullopt);
      if (answer.status != 200) FailWith(answer);
      if (o->out.empty()) {
        std::fwrite(answer.body.data(), 1, answer.body.size(), stdout);
        return;
      }
      std::ofstream out(o->out, std::ios::binary | std::ios::trunc);
      out << answer.body;
      if (!out.flush()) throw CommandFailed("writing " + o->out);
      std::printf("statement of %s from %s to %s written to %s (%zu bytes)\n", o->asn.c_str(),
                  o->from.c_str(), o->to.c_str(), o->out.c_str(), answer.body.size());
    });
  }
}

// ---- Issuer scripts on the card in the teller's reader (docs/teller.md "The card in the
// reader"; docs/branch.md "Card scripts").

// "image:PATH": a card image in this process (its state written back to the file, for tests and
// training); anything else a PC/SC reader (exact name, index or unique part of the name).
std::unique_ptr<reader::Reader> OpenTellerReader(const std::string& spec) {
  constexpr std::string_view kImage = "image:";
  if (spec.starts_with(kImage)) {
    const std::string path = spec.substr(kImage.size());
    if (!std::filesystem::exists(path)) throw CommandFailed("--reader: no card image " + path);
    auto medium = nvm::OpenFileMedium(path);
    if (!medium.ok()) throw CommandFailed(path + ": " + medium.error().message);
    auto card = card::Card::Open(std::move(medium).value());
    if (!card.ok()) throw CommandFailed(path + ": " + card.error().message);
    return std::make_unique<reader::InProcessReader>(spec, std::move(card).value());
  }
  auto pcsc = reader::PcscReader::Open(spec);
  if (!pcsc.ok()) throw CommandFailed("--reader: " + pcsc.error().message);
  auto present = (*pcsc)->CardPresent();
  if (!present.ok()) throw CommandFailed("reader " + spec + ": " + present.error().message);
  if (!*present) throw CommandFailed("no card in the reader " + (*pcsc)->Name());
  return std::move(pcsc).value();
}

std::string Day(const Date& date) {
  char text[11];
  std::snprintf(text, sizeof text, "%04d-%02d-%02d", date.year, date.month, date.day);
  return text;
}

// What a script command needs besides the card: the teller's session and the reader.
struct ScriptOptions {
  std::string asn;
  std::string reader;
  MutationOptions mutation;  // --authoriser, --reason (the validity record), ...
};

void AddScriptOptions(CLI::App* command, ScriptOptions& options, bool dual_control) {
  command->add_option("ASN", options.asn, "The card's ASN (20 hex digits)")->required();
  command
      ->add_option("--reader", options.reader,
                   "The reader with the card: a PC/SC reader (name, index or unique part of the "
                   "name), or image:PATH for a card image")
      ->required();
  command->add_option("--authoriser", options.mutation.authoriser,
                      dual_control ? "The senior teller or supervisor authorising (dual control); "
                                     "their password is read from stdin"
                                   : "An authoriser, when the operation needs one (dual control); "
                                     "their password is read from stdin");
}

// Runs the script of `kind` on the card in the reader: SELECT and SFI 15 (RunCardScript), GET
// CHALLENGE, POST /v1/cards/{asn}/scripts/<route> with `extra` and the authoriser, the answer's
// command to the card, its check. The card in the reader must be the card named.
branch::ScriptOutcome RunScriptOnReader(const TellerOptions& options, const ScriptOptions& script,
                                        branch::ScriptKind kind, const std::string& route,
                                        const json& extra, const json& authorisation) {
  const std::string path = CardPath(script.asn, "/scripts/" + route);
  const TellerSession session = LoadSession(SessionPath(options));
  auto card_reader = OpenTellerReader(script.reader);
  const Bytes asn = *FromHex(script.asn);
  auto source = [&](const branch::ScriptContext& context) -> Result<branch::CardScript> {
    if (context.asn != asn) {
      return MakeError("the card in the reader is " + ToHex(context.asn) + ", not " + script.asn +
                       "; nothing sent");
    }
    json body = extra;
    body["challenge"] = ToHex(context.challenge);
    body["start_date"] = Day(context.start_date);
    body["expiry_date"] = Day(context.expiry_date);
    if (!authorisation.is_null()) body["authorisation"] = authorisation;
    try {
      const json answer = ParseAnswer(SendToApi(session, "POST", path, body));
      branch::CardScript made;
      made.kind = kind;
      if (Text(answer, "kind") != branch::ScriptKindName(kind)) {
        return MakeError("the host answered a " + Text(answer, "kind") + " script; nothing sent");
      }
      auto command = FromHex(Text(answer, "command"));
      if (!command) return MakeError("the host's script is not hex; nothing sent");
      made.command = *command;
      if (answer.contains("new_expiry") && answer["new_expiry"].is_string()) {
        const std::string day = answer["new_expiry"];
        made.new_expiry = Date{std::stoi(day.substr(0, 4)), std::stoi(day.substr(5, 2)),
                               std::stoi(day.substr(8, 2))};
      }
      return made;
    } catch (const CommandFailed& failed) {
      // Inside the reader's transaction: an error value, so the runner ends it.
      return MakeError(failed.what());
    }
  };
  auto outcome = branch::RunCardScript(*card_reader, kind, source);
  (void)card_reader->Disconnect();
  if (!outcome.ok()) throw CommandFailed(outcome.error().message);
  return std::move(outcome).value();
}

// The authoriser's credentials, read once (a command may send them twice).
json Authorisation(const std::string& authoriser) {
  json body = json::object();
  AddAuthorisation(body, authoriser);
  return body.contains("authorisation") ? body["authorisation"] : json();
}

void PrintOutcome(const TellerOptions& options, const branch::ScriptOutcome& outcome,
                  const std::string& note, json extra = json::object()) {
  if (options.json_output) {
    extra["asn"] = ToHex(outcome.asn);
    extra["kind"] = branch::ScriptKindName(outcome.kind);
    extra["message"] = outcome.message;
    if (outcome.expiry) extra["card_expiry"] = Day(*outcome.expiry);
    if (outcome.pin_tries) extra["pin_tries"] = *outcome.pin_tries;
    std::printf("%s\n", extra.dump(2).c_str());
    return;
  }
  std::printf("card %s: %s\n", ToHex(outcome.asn).c_str(), outcome.message.c_str());
  if (!note.empty()) std::printf("  %s\n", note.c_str());
}

// The new PIN from the cardholder, twice: one line each from stdin with --pin-stdin (scripts,
// tests), else typed at a no-echo prompt on the terminal. Never a flag.
void ReadNewPin(bool from_stdin, SecretString& pin) {
  if (!from_stdin && ::isatty(STDIN_FILENO) != 1) {
    throw CommandFailed("the PIN pad reads the new PIN on a terminal (or give --pin-stdin)");
  }
  SecretString again;
  if (!ReadSecretLine("new PIN (6 digits): ", pin) || !ReadSecretLine("new PIN again: ", again)) {
    throw CommandFailed("the new PIN was not entered twice");
  }
  if (pin.value != again.value) throw CommandFailed("the two PIN entries differ: nothing done");
}

// Apply and issue (POST /v1/cards/applications, .../{id}/issue): the application, then the
// card `medcard issue card` personalised for it registered with the host.
void AddApplyAndIssue(CLI::App& card, std::shared_ptr<TellerOptions> options) {
  {
    struct Apply {
      std::string person, holder, branch;
      MutationOptions mutation;
    };
    auto o = std::make_shared<Apply>();
    CLI::App* cmd = card.add_subcommand(
        "apply", "A card application for a person (then personalise the card and issue it)");
    cmd->add_option("--person", o->person, "The person's id (the medical account's key)")
        ->required();
    cmd->add_option("--holder-ref", o->holder,
                    "The reference of the cardholder data (no personal data here)")
        ->required();
    cmd->add_option("--branch", o->branch, "The branch taking the application (default: yours)");
    AddMutationOptions(cmd, o->mutation, false);
    // The application has no version yet and takes no reason.
    cmd->remove_option(cmd->get_option("--reason"));
    cmd->remove_option(cmd->get_option("--expected-version"));
    cmd->callback([o, options] {
      json body = {{"person_id", o->person}, {"holder_reference", o->holder}};
      if (!o->branch.empty()) body["branch"] = o->branch;
      const json answer =
          Mutate(*options, o->mutation, "POST", "/v1/cards/applications", std::move(body));
      Print(*options, answer, [](const json& application) {
        std::printf("application %s for person %s at branch %s: %s (version %s)\n",
                    Text(application, "application_id").c_str(),
                    Text(application, "person_id").c_str(), Text(application, "branch").c_str(),
                    Text(application, "state").c_str(), Text(application, "version").c_str());
        std::printf(
            "  personalise the card (medcard issue card), then: medcard teller card issue %s "
            "--asn ASN\n",
            Text(application, "application_id").c_str());
      });
    });
  }
  {
    struct Issue {
      std::string application, asn, valid_to;
      MutationOptions mutation;
    };
    auto o = std::make_shared<Issue>();
    CLI::App* cmd = card.add_subcommand(
        "issue", "Register the card personalised for an application with the host (issued)");
    cmd->add_option("APPLICATION", o->application, "The application's number")->required();
    cmd->add_option("--asn", o->asn, "The personalised card's ASN (20 hex digits)")->required();
    cmd->add_option("--valid-to", o->valid_to, "The card's last valid day, YYYY-MM-DD");
    AddMutationOptions(cmd, o->mutation, false);
    cmd->remove_option(cmd->get_option("--reason"));
    cmd->callback([o, options] {
      if (o->application.empty() || o->application.size() > 15 ||
          o->application.find_first_not_of("0123456789") != std::string::npos) {
        throw CommandFailed("APPLICATION: the application's number, not '" + o->application + "'");
      }
      CardPath(o->asn);  // 20 hex digits
      json body = {{"asn", o->asn}};
      if (!o->valid_to.empty()) body["valid_to"] = o->valid_to;
      const json answer =
          Mutate(*options, o->mutation, "POST",
                 "/v1/cards/applications/" + o->application + "/issue", std::move(body));
      Print(*options, answer, PrintCard);
    });
  }
}

void AddCardScripts(CLI::App& card, std::shared_ptr<TellerOptions> options) {
  {
    auto o = std::make_shared<ScriptOptions>();
    CLI::App* cmd = card.add_subcommand(
        "unblock",
        "Unblock the card's blocked application: an issuer script from the host run on the card "
        "in the reader (dual control)");
    AddScriptOptions(cmd, *o, true);
    cmd->callback([o, options] {
      const json authorisation = Authorisation(o->mutation.authoriser);
      const auto outcome = RunScriptOnReader(*options, *o, branch::ScriptKind::kApplicationUnblock,
                                             "unblock", json::object(), authorisation);
      PrintOutcome(*options, outcome,
                   "the medical-account application answers SELECT again: the card can be used");
    });
  }
  {
    auto o = std::make_shared<ScriptOptions>();
    auto to = std::make_shared<std::string>();
    CLI::App* cmd = card.add_subcommand(
        "set-validity",
        "Change the expiry date on the card in the reader (SFI 15, an issuer script with secure "
        "messaging), then record it in the host");
    AddScriptOptions(cmd, *o, false);
    cmd->add_option("--to", *to, "The new expiry date (last valid day), YYYY-MM-DD")->required();
    cmd->add_option("--reason", o->mutation.reason, "A note for the audit log (no personal data)");
    cmd->add_option("--expected-version", o->mutation.expected_version,
                    "The card version the teller saw (a newer one is refused: conflict)");
    cmd->callback([o, to, options] {
      const json authorisation = Authorisation(o->mutation.authoriser);
      const auto outcome = RunScriptOnReader(*options, *o, branch::ScriptKind::kChangeExpiry,
                                             "validity", {{"new_expiry", *to}}, authorisation);
      // The host records the date only now that the card holds it (docs/teller.md).
      json body = {{"valid_to", *to}};
      if (!o->mutation.reason.empty()) body["reason"] = o->mutation.reason;
      if (o->mutation.expected_version) body["expected_version"] = *o->mutation.expected_version;
      if (!authorisation.is_null()) body["authorisation"] = authorisation;
      const std::string key = NewIdempotencyKey();
      if (options->verbose) std::fprintf(stderr, "Idempotency-Key: %s\n", key.c_str());
      json record;
      try {
        const TellerSession session = LoadSession(SessionPath(*options));
        record = ParseAnswer(SendToApi(session, "POST", CardPath(o->asn, "/validity"), body, key));
      } catch (const CommandFailed& failed) {
        // Unreachable: the host may have recorded it, so the retry reuses the key (answered
        // once). Refused: the host recorded nothing and kept that answer under the key.
        const bool unknown = std::string_view(failed.what()).starts_with("cannot reach the host");
        throw CommandFailed("the card now expires on " + *to +
                            " but the host did not record it: " + failed.what() +
                            "; record it with `medcard teller card validity " + o->asn + " --to " +
                            *to + (unknown ? " --idempotency-key " + key : std::string()) +
                            "` (the card needs no new script)");
      }
      PrintOutcome(*options, outcome,
                   "the host records valid to " + Text(record, "valid_to") + " (card version " +
                       Text(record, "version") + ")",
                   {{"card", record}});
    });
  }
  {
    auto o = std::make_shared<ScriptOptions>();
    auto pin_stdin = std::make_shared<bool>(false);
    auto pinpad = std::make_shared<KeyStoreLocation>();
    auto workstation = std::make_shared<std::string>();
    CLI::App* cmd = card.add_subcommand(
        "pin-reset",
        "Set a new PIN on the card in the reader: the cardholder types it on the PIN pad (twice); "
        "it travels only encrypted; the card's PIN tries are reset (dual control)");
    AddScriptOptions(cmd, *o, true);
    AddKeyStoreOptions(cmd, *pinpad);
    cmd->get_option("--store")->description(
        "The PIN pad's key store (holding pek/<workstation>: medcard teller pinpad init)");
    cmd->add_option("--workstation", *workstation,
                    "This workstation's name (default: the one PEK in the PIN pad's store)");
    cmd->add_flag("--pin-stdin", *pin_stdin,
                  "Read the new PIN from stdin (two lines: the PIN and again), for scripts; "
                  "the authoriser's password follows");
    cmd->callback([o, pin_stdin, pinpad, workstation, options] {
      CardPath(o->asn);  // a bad ASN before anyone types a PIN
      // The PIN pad: the PIN becomes an encrypted block at once and is forgotten.
      json extra;
      {
        auto store = OpenKeyStore(*pinpad);
        const std::string pek = Check(PinPadKeyName(*store, *workstation), "the PIN pad");
        SecretString pin;
        ReadNewPin(*pin_stdin, pin);
        const Bytes block =
            Check(PinPadBlock(*store, pek, pin.value, *FromHex(o->asn)), "the PIN pad");
        extra = {{"workstation", pek.substr(4)}, {"encrypted_pin_block", ToHex(block)}};
      }
      const json authorisation = Authorisation(o->mutation.authoriser);
      const auto outcome = RunScriptOnReader(*options, *o, branch::ScriptKind::kPinReset,
                                             "pin-reset", extra, authorisation);
      PrintOutcome(*options, outcome, "the cardholder's new PIN is set on the card");
    });
  }
}

// medcard teller pinpad init: the workstation's PIN pad receives its PEK (teller_pek.h).
void AddPinPadCommands(CLI::App& teller) {
  CLI::App* pinpad = teller.add_subcommand("pinpad", "The workstation's PIN pad");
  pinpad->require_subcommand(1);
  auto store = std::make_shared<KeyStoreLocation>();
  auto file = std::make_shared<std::string>();
  CLI::App* init = pinpad->add_subcommand(
      "init",
      "Import this workstation's PIN encryption key from the bank's PEK delivery file (encrypted "
      "under tkek: hold the tkek ceremony on this store first)");
  AddKeyStoreOptions(init, *store);
  init->add_option("--pek", *file, "The delivery file (medcard host workstations export-pek)")
      ->required()
      ->check(CLI::ExistingFile);
  init->callback([store, file] {
    const PekDelivery delivery = Check(ReadPekDelivery(*file), "reading the PEK delivery");
    auto keys = OpenKeyStore(*store);
    const std::uint8_t version = Check(ImportPek(*keys, delivery), "importing the PEK");
    std::printf("PIN pad key %s v%u (KCV %s)%s in %s\n", delivery.key_name().c_str(), version,
                ToHex(delivery.pek_kcv).c_str(), delivery.test_keys ? " (TEST keys)" : "",
                keys->Describe().c_str());
  });
}

}  // namespace

void AddTellerCommands(CLI::App& app) {
  CLI::App* teller = app.add_subcommand(
      "teller", "The teller workstation: sign in to the host's API, card services at the counter");
  teller->require_subcommand(1);
  teller->fallthrough();  // --session, --json, --verbose also after the subcommand
  auto options = std::make_shared<TellerOptions>();
  teller->add_option("--session", options->session_file,
                     "The session file (default ~/.medcard/teller-session, mode 0600)");
  teller->add_flag("--json", options->json_output, "Print the API's answers as JSON");
  teller->add_flag("--verbose", options->verbose,
                   "Print the Idempotency-Key of each change (to retry it with --idempotency-key)");
  AddSessionCommands(*teller, options);
  CLI::App* card = teller->add_subcommand("card", "Card services at the counter");
  card->require_subcommand(1);
  card->fallthrough();
  AddCardRequests(*card, options);
  AddApplyAndIssue(*card, options);
  AddCardScripts(*card, options);
  AddPinPadCommands(*teller);
}

}  // namespace medcard::cli
