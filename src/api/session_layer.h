// What every signed-in request of the bank's API (routes.h) and the agency's API (si_routes.h)
// goes through before its handler (docs/api.md "Sessions", "Errors", "Replays"): the bearer
// token authenticated against the directory on the API's own database, the role checked for the
// route's operation, the body parsed strictly (or refused when the route takes none), and for a
// mutating request with an Idempotency-Key the key reserved, the handler run once and its answer
// stored and replayed. Plus the small answers both APIs share (JSON, 500s, times, query values).
//
//   SessionLayer layer(directory, pool, {.log_name = "si api"});
//   router.Add("POST", "/v1/units", [&](const HttpRequest& request, const PathParams&) {
//     return layer.Run(request, {.operation = "si.registry.change", .schema = &schema},
//                      [&](SessionRequest& session) { ... session.principal.login ... });
//   });
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "access/directory.h"
#include "api/json_request.h"
#include "api/routes.h"
#include "audit/audit_log.h"
#include "common/result.h"
#include "store/store.h"

namespace medcard::api {

// The compact JSON text of a value (invalid UTF-8 replaced, never thrown on).
std::string DumpJson(const nlohmann::json& value);
HttpResponse JsonOk(const nlohmann::json& value, int status = 200);
// A failure the client cannot fix: the detail goes to the log under `log_name`, the client gets
// 500 "internal error; nothing was changed".
HttpResponse InternalError(std::string_view log_name, const Error& error);

// The token of "Authorization: Bearer <token>", or "" when the header is missing or malformed.
std::string BearerToken(const HttpRequest& request);
std::string Sha256Hex(std::string_view text);  // lower-case hex
std::string FormatUtc(std::int64_t micros);    // "2026-11-25T09:00:00Z"
std::optional<std::string> QueryValue(const HttpRequest& request, const std::string& name);

// GET /v1/audit of both APIs (docs/api.md "Endpoints"): ?actor=, ?action= (exact, or a prefix
// ending in '.'), ?target= (1 to 200 printable characters), ?from=/?to= (days, UTC) and the
// page (?limit=, ?after= the last sequence). The caller checks "audit.read".
access::ServiceResult<audit::Filter> AuditFilterOf(const HttpRequest& request);
nlohmann::json AuditRecordJson(const audit::Record& record);
// {"items": [...], "next": "<sequence>" | null}, or the 400 / 500 to answer.
HttpResponse AuditPage(store::Connection& connection, const HttpRequest& request,
                       std::string_view log_name);

// A reservation older than this without an answer was left by a request that never finished.
inline constexpr std::int64_t kAbandonedReservationUs = 10LL * 60 * 1'000'000;

// A request that passed the layer's checks, as its handler sees it.
struct SessionRequest {
  store::Connection& connection;  // the request's own (from the API's pool)
  access::Principal principal;
  std::optional<JsonRequest> body;  // when the route has a schema
  std::int64_t now_us = 0;          // the layer's clock when the request came in
  // Set while an Idempotency-Key is reserved: records `answer` under the key on `c`. A handler
  // whose action runs in a transaction calls it inside that transaction (before the commit), so
  // the action and its stored answer commit together (docs/api.md "Replays"); otherwise the
  // layer stores the answer right after the handler returns.
  std::function<Status(store::Connection& c, const HttpResponse& answer)> record_answer;
};

// What a route asks of the layer.
struct SessionRoute {
  // access::Require(principal, operation) before anything else; empty: any live session (the
  // handler's service checks the role itself, as the bank's directory and branch services do).
  std::string operation;
  // The body's schema; nullptr: no body allowed, unless raw_body (a document the handler parses
  // with its own strict parser, e.g. a policy or claim file).
  const Schema* schema = nullptr;
  bool raw_body = false;
};

class SessionLayer {
 public:
  struct Options {
    std::string log_name = "api";            // prefixes the log lines: "api", "si api"
    std::function<std::int64_t()> clock_us;  // default: the system clock
  };
  // REQUIRES: directory and pool outlive the layer; the pool's database is migrated with the
  // access and api (idempotency keys) migration sets.
  SessionLayer(const access::Directory& directory, ConnectionPool& pool, Options options);

  // 401 without a valid session, 403 for a role without `route.operation`, 400 for a bad body
  // or Idempotency-Key, 409 for a key in use or used for another request; otherwise the
  // handler's answer (a stored answer replayed carries Idempotent-Replayed: true). Every answer
  // after authentication names the user (HttpResponse::user, for the log line).
  HttpResponse Run(const HttpRequest& request, const SessionRoute& route,
                   const std::function<HttpResponse(SessionRequest&)>& handler) const;

  // POST /v1/sessions: {"login", "password"} → 201 {"token", "login", "role", "expires_at",
  // "absolute_expires_at"}; a wrong password 401, a locked account 423 (docs/access.md).
  HttpResponse SignIn(const HttpRequest& request) const;

  std::int64_t Now() const;
  const std::string& log_name() const { return options_.log_name; }

 private:
  // docs/api.md "Replays": reserve the key, run the handler, store (or release) the answer.
  HttpResponse RunOnce(const HttpRequest& request, SessionRequest& session,
                       const std::function<HttpResponse(SessionRequest&)>& handler) const;

  const access::Directory& directory_;
  ConnectionPool& pool_;
  Options options_;
};

}  // namespace medcard::api
