#include "api/routes.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>
#include <variant>

#include "api/json_request.h"
#include "api/session_layer.h"
#include "audit/audit_log.h"
#include "branch/card_scripts.h"
#include "branch/pin_verification.h"
#include "branch/statement.h"
#include "common/bytes.h"

namespace medcard::api {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using nlohmann::json;

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> segments;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    segments.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return segments;
}

bool IsParameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool Matches(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
             PathParams* params) {
  if (pattern.size() != path.size()) return false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (IsParameter(pattern[i])) {
      if (path[i].empty()) return false;
      if (params != nullptr) (*params)[pattern[i].substr(1, pattern[i].size() - 2)] = path[i];
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  return true;
}

// "application/json" or "application/json; charset=utf-8" (any case).
bool IsJsonContentType(std::string_view value) {
  const std::size_t semicolon = value.find(';');
  std::string_view media = value.substr(0, semicolon);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  std::string lower(media);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower != "application/json") return false;
  if (semicolon == std::string_view::npos) return true;
  std::string parameters(value.substr(semicolon + 1));
  for (char& c : parameters) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return parameters.find("charset") == std::string::npos ||
         parameters.find("utf-8") != std::string::npos;
}

}  // namespace

std::string HttpRequest::Header(std::string_view lower_case_name) const {
  auto it = headers.find(std::string(lower_case_name));
  return it == headers.end() ? std::string() : it->second;
}

int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalid:
      return 400;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kForbidden:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kLocked:
      return 423;
    case ErrorCode::kUnprocessable:
      return 422;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message,
                           std::string_view field) {
  json error = {{"code", code}, {"message", message}, {"field", nullptr}};
  if (!field.empty()) error["field"] = field;
  HttpResponse response;
  response.status = status;
  response.body = json{{"error", error}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

HttpResponse ErrorResponse(const access::ServiceError& error) {
  return ErrorResponse(HttpStatus(error.code), access::ErrorCodeName(error.code), error.message,
                       error.field);
}

HttpResponse JsonResponse(int status, const std::string& json_text) {
  HttpResponse response;
  response.status = status;
  response.body = json_text;
  return response;
}

bool IsSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string NewRequestId() {
  Bytes random(16);
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    // The id only correlates log lines; a clock value is an acceptable fallback.
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return "t" + std::to_string(now);
  }
  std::string hex = ToHex(random);
  for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return hex;
}

access::ServiceResult<Page> ParsePage(const HttpRequest& request) {
  Page page;
  auto parse = [](const std::string& text, std::int64_t& out) {
    if (text.empty() || text.size() > 18) return false;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
    }
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && ptr == text.data() + text.size();
  };
  if (auto it = request.query.find("limit"); it != request.query.end()) {
    std::int64_t limit = 0;
    if (!parse(it->second, limit) || limit < 1 || limit > kMaxPageLimit) {
      return MakeServiceError(ErrorCode::kInvalid, "limit must be 1 to 500", "limit");
    }
    page.limit = limit;
  }
  if (auto it = request.query.find("after"); it != request.query.end()) {
    std::int64_t after = 0;
    if (!parse(it->second, after)) {
      return MakeServiceError(ErrorCode::kInvalid, "after must be a cursor from a previous page",
                              "after");
    }
    page.after = after;
  }
  return page;
}

void Router::Add(std::string method, std::string pattern, Handler handler) {
  Route route;
  route.segments = SplitPath(pattern);
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.handler = std::move(handler);
  routes_.push_back(std::move(route));
}

std::vector<RouteInfo> Router::Routes() const {
  std::vector<RouteInfo> routes;
  for (const auto& route : routes_) routes.push_back({route.method, route.pattern});
  return routes;
}

HttpResponse Router::Dispatch(const HttpRequest& request) const {
  const std::string client_id = request.Header("x-request-id");
  const std::string request_id = IsSaneRequestId(client_id) ? client_id : NewRequestId();
  auto finish = [&](HttpResponse response) {
    response.request_id = request_id;
    response.headers.emplace_back("X-Request-Id", request_id);
    response.headers.emplace_back("Cache-Control", "no-store");
    // RFC 6750 section 3: a 401 names the scheme the client must use.
    if (response.status == 401) {
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"medcard\"");
    }
    return response;
  };

  if (request.path.empty() || request.path.front() != '/') {
    return finish(ErrorResponse(404, "not_found", "no such resource"));
  }
  const auto segments = SplitPath(request.path);
  const Route* found = nullptr;
  PathParams params;
  std::string allowed;
  for (const auto& route : routes_) {
    if (!Matches(route.segments, segments, nullptr)) continue;
    if (route.method == request.method) {
      found = &route;
      Matches(route.segments, segments, &params);
      break;
    }
    allowed += (allowed.empty() ? "" : ", ") + route.method;
  }
  if (found == nullptr) {
    if (allowed.empty()) return finish(ErrorResponse(404, "not_found", "no such resource"));
    HttpResponse response = ErrorResponse(405, "method_not_allowed", "method not allowed here");
    response.headers.emplace_back("Allow", allowed);
    return finish(std::move(response));
  }
  if (request.body.size() > kMaxBodyBytes) {
    return finish(ErrorResponse(413, "payload_too_large", "the request body is too large"));
  }
  if (!request.body.empty() && !IsJsonContentType(request.Header("content-type"))) {
    return finish(
        ErrorResponse(415, "unsupported_media_type", "the request body must be application/json"));
  }
  try {
    return finish(found->handler(request, params));
  } catch (const std::exception&) {
    // Handlers report errors as values; this is the boundary for anything a library threw.
    return finish(ErrorResponse(500, "internal", "internal error"));
  }
}

ConnectionPool::Lease::~Lease() {
  if (connection_ == nullptr || pool_ == nullptr) return;
  if (connection_->InTransaction()) return;  // left in a bad state: drop it
  std::lock_guard lock(pool_->mutex_);
  if (pool_->idle_.size() < 32) pool_->idle_.push_back(std::move(connection_));
}

store::DbResult<ConnectionPool::Lease> ConnectionPool::Acquire() {
  {
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(connection));
    }
  }
  auto connection = database_.Connect();
  if (!connection) return connection.error();
  return Lease(this, std::move(*connection));
}

}  // namespace medcard::api

// ---------------------------------------------------------------------------------------------
// The endpoints.

namespace medcard::api {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using access::Principal;
using nlohmann::json;

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// The detail goes to the log, not to the client.
HttpResponse Internal(const Error& error) { return InternalError("api", error); }

json OptionalJson(const std::optional<std::string>& value) {
  return value ? json(*value) : json(nullptr);
}
json OptionalJson(const std::optional<std::int64_t>& value) {
  return value ? json(*value) : json(nullptr);
}

json CardJson(const branch::CardRecord& card) {
  return {{"asn", card.asn},
          {"application_id", card.application_id},
          {"person_id", card.person_id},
          {"holder_reference", card.holder_reference},
          {"branch", card.branch},
          {"state", branch::CardStateName(card.state)},
          {"version", card.version},
          {"valid_to", OptionalJson(card.valid_to)},
          {"blacklisted_at", OptionalJson(card.blacklisted_at)},
          {"replaces", OptionalJson(card.replaces)},
          {"replaced_by", OptionalJson(card.replaced_by)}};
}

json TransferJson(const branch::ScheduledTransfer& transfer) {
  return {{"id", transfer.id},
          {"asn", transfer.asn},
          {"kind", transfer.kind},
          {"due_at", FormatUtc(transfer.due_at_us)},
          {"state", transfer.state}};
}

json UserJson(const access::User& user) {
  return {{"login", user.login},
          {"display_name", user.display_name},
          {"role", access::RoleName(user.role)},
          {"branch", user.branch},
          {"state", access::UserStateName(user.state)},
          {"failed_sign_ins", user.failed_sign_ins},
          {"created_at", FormatUtc(user.created_at_us)}};
}

HttpResponse Ok(const json& value, int status = 200) { return JsonOk(value, status); }

// The session layer over the Api's directory and pool (it holds references only, so one is
// made where it is needed).
SessionLayer LayerOf(const ApiServices& services, ConnectionPool& pool) {
  return SessionLayer(*services.directory, pool, {"api", {}});
}

// The answers of the branch actions, from their results (also recorded under an
// Idempotency-Key inside the action's transaction).
HttpResponse CardAnswer(const branch::BranchServices::ActionResult& result) {
  return Ok(CardJson(std::get<branch::CardRecord>(result)));
}
HttpResponse CreatedCardAnswer(const branch::BranchServices::ActionResult& result) {
  return Ok(CardJson(std::get<branch::CardRecord>(result)), 201);
}
HttpResponse ReplacementAnswer(const branch::BranchServices::ActionResult& result) {
  const auto& replaced = std::get<branch::ReplacementResult>(result);
  return Ok({{"old_card", CardJson(replaced.old_card)},
             {"new_card", CardJson(replaced.new_card)},
             {"transfer", TransferJson(replaced.transfer)}});
}
HttpResponse ClosureAnswer(const branch::BranchServices::ActionResult& result) {
  const auto& closed = std::get<branch::ClosureResult>(result);
  return Ok({{"card", CardJson(closed.card)}, {"transfer", TransferJson(closed.transfer)}});
}

// Schemas of the request bodies (docs/api/openapi.yaml components).
const Schema& AuthorisationSchema() {
  static const Schema schema = Schema()
                                   .String("login", Presence::kRequired, 3, 32, Pattern::kLogin)
                                   .String("password", Presence::kRequired, 1, 200);
  return schema;
}

const Schema& CardActionSchema() {
  static const Schema schema =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("reason", Presence::kOptional, 0, 200)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  return schema;
}

// REQUIRES: MatchesPattern(day, Pattern::kDate).
Date ParseDay(const std::string& day) {
  Date date;
  date.year = std::stoi(day.substr(0, 4));
  date.month = std::stoi(day.substr(5, 2));
  date.day = std::stoi(day.substr(8, 2));
  return date;
}

std::optional<access::AuthoriserCredentials> Credentials(const JsonRequest& body) {
  auto object = body.OptionalObject("authorisation");
  if (!object) return std::nullopt;
  return access::AuthoriserCredentials{object->String("login"), object->String("password")};
}

}  // namespace

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{"api",
                                       {
                                           {1, "idempotency keys",
                                            R"sql(
CREATE TABLE api_idempotency (
  login TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status BIGINT NOT NULL,
  response TEXT NOT NULL,
  created_at_us BIGINT NOT NULL,
  PRIMARY KEY (login, idempotency_key)
))sql"},
                                       }};
  return set;
}

struct Api::Context {
  const HttpRequest& request;
  const PathParams& params;
  store::Connection& connection;
  Principal principal;
  std::optional<JsonRequest> body;
  // Set while an Idempotency-Key is reserved: records the answer under the key on `c`. A branch
  // action calls it inside its own transaction (BranchServices::SetCommitHook), so the action
  // and its answer commit together (docs/api.md "Replays").
  std::function<Status(store::Connection& c, const HttpResponse& answer)> record_answer;

  const std::string& from() const { return request.remote_address; }
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
};

Api::Api(ApiServices services)
    : services_(std::move(services)), authority_(*services_.directory), pool_(*services_.database) {
  AddSessionRoutes();
  AddUserRoutes();
  AddAuditRoutes();
  AddCardRoutes();
  AddBranchRoutes();
}

void Api::AddAuthed(std::string method, std::string pattern, const Schema* schema,
                    AuthedHandler handler) {
  router_.Add(std::move(method), std::move(pattern),
              [this, schema, handler = std::move(handler)](const HttpRequest& request,
                                                           const PathParams& params) {
                return RunAuthed(request, params, schema, handler);
              });
}

HttpResponse Api::RunAuthed(const HttpRequest& request, const PathParams& params,
                            const Schema* schema, const AuthedHandler& handler) const {
  // Authentication, the body and Idempotency-Key (docs/api.md "Replays") are the session
  // layer's, shared with the agency's API; the role is checked by the services each handler
  // calls (directory, branch), so the route names no operation.
  return LayerOf(services_, pool_).Run(request, {"", schema, false}, [&](SessionRequest& session) {
    Context context{request,
                    params,
                    session.connection,
                    session.principal,
                    std::move(session.body),
                    session.record_answer};
    return handler(context);
  });
}

// ---- Sessions.

void Api::AddSessionRoutes() {
  router_.Add("POST", "/v1/sessions", [this](const HttpRequest& request, const PathParams&) {
    return LayerOf(services_, pool_).SignIn(request);
  });
  AddAuthed("DELETE", "/v1/sessions/current", nullptr, [this](Context& context) {
    auto done = services_.directory->SignOut(context.connection, BearerToken(context.request),
                                             context.from());
    if (!done) return ErrorResponse(done.error());
    HttpResponse response;
    response.status = 204;
    return response;
  });
}

// ---- Users (administrators).

void Api::AddUserRoutes() {
  static const Schema user_change = Schema().String("reason", Presence::kOptional, 0, 200);
  static const Schema new_user = Schema()
                                     .String("login", Presence::kRequired, 3, 32, Pattern::kLogin)
                                     .String("display_name", Presence::kRequired, 1, 100)
                                     .String("role", Presence::kRequired, 1, 32)
                                     .String("branch", Presence::kOptional, 0, 16)
                                     .String("password", Presence::kRequired, 1, 200);
  AddAuthed("POST", "/v1/users", &new_user, [this](Context& context) {
    const JsonRequest& body = *context.body;
    auto role = access::ParseRole(body.String("role"));
    if (!role) return ErrorResponse(400, "invalid", "unknown role", "role");
    access::NewUser user{body.String("login"), body.String("display_name"), *role,
                         body.OptionalString("branch").value_or(""), body.String("password")};
    auto added =
        services_.directory->AddUser(context.connection, context.principal, user, context.from());
    if (!added) return ErrorResponse(added.error());
    return Ok(UserJson(*added), 201);
  });
  AddAuthed("GET", "/v1/users", nullptr, [this](Context& context) {
    auto page = ParsePage(context.request);
    if (!page) return ErrorResponse(page.error());
    auto users = services_.directory->ListUsers(context.connection, context.principal);
    if (!users) return ErrorResponse(users.error());
    // The cursor is the position in login order (the directory is small).
    const std::size_t start = static_cast<std::size_t>(page->after.value_or(0));
    json items = json::array();
    std::size_t i = start;
    for (; i < users->size() && items.size() < static_cast<std::size_t>(page->limit); ++i) {
      items.push_back(UserJson((*users)[i]));
    }
    json next = i < users->size() ? json(std::to_string(i)) : json(nullptr);
    return Ok({{"items", items}, {"next", next}});
  });
  AddAuthed("GET", "/v1/users/{login}", nullptr, [this](Context& context) {
    auto user =
        services_.directory->GetUser(context.connection, context.principal, context.Param("login"));
    if (!user) return ErrorResponse(user.error());
    return Ok(UserJson(*user));
  });
  AddAuthed("POST", "/v1/users/{login}/lock", &user_change, [this](Context& context) {
    auto user = services_.directory->Lock(context.connection, context.principal,
                                          context.Param("login"), context.from());
    if (!user) return ErrorResponse(user.error());
    return Ok(UserJson(*user));
  });
  AddAuthed("POST", "/v1/users/{login}/unlock", &user_change, [this](Context& context) {
    auto user = services_.directory->Unlock(context.connection, context.principal,
                                            context.Param("login"), context.from());
    if (!user) return ErrorResponse(user.error());
    return Ok(UserJson(*user));
  });
}

// ---- Audit (auditors).

void Api::AddAuditRoutes() {
  AddAuthed("GET", "/v1/audit", nullptr, [](Context& context) {
    if (auto allowed = access::Require(context.principal, "audit.read"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    return AuditPage(context.connection, context.request, "api");
  });
  AddAuthed("GET", "/v1/audit/export", nullptr, [](Context& context) {
    if (auto allowed = access::Require(context.principal, "audit.export"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    auto filter = AuditFilterOf(context.request);
    if (!filter) return ErrorResponse(filter.error());
    const std::string format_name = QueryValue(context.request, "format").value_or("csv");
    auto format = audit::ParseExportFormat(format_name);
    if (!format) return ErrorResponse(400, "invalid", "csv or jsonl", "format");
    std::ostringstream out;
    if (auto exported = audit::Export(context.connection, *filter, *format, out); !exported) {
      return Internal(exported.error());
    }
    HttpResponse response;
    response.body = out.str();
    response.content_type =
        *format == audit::ExportFormat::kCsv ? "text/csv; charset=utf-8" : "application/x-ndjson";
    return response;
  });
  AddAuthed("GET", "/v1/audit/verification", nullptr, [](Context& context) {
    if (auto allowed = access::Require(context.principal, "audit.verify"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    auto expected = QueryValue(context.request, "expected_head");
    if (expected && (expected->size() != 64 || !MatchesPattern(*expected, Pattern::kHex))) {
      return ErrorResponse(400, "invalid", "64 hex digits", "expected_head");
    }
    auto verification = audit::Verify(context.connection, expected);
    if (!verification) return Internal(verification.error());
    return Ok({{"intact", verification->intact},
               {"count", verification->count},
               {"head_hash", verification->head_hash},
               {"first_bad_sequence", verification->first_bad_sequence},
               {"problem", verification->problem},
               {"explanation", verification->explanation}});
  });
}

// ---- Cards (tellers).

void Api::AddCardRoutes() {
  // Checks the path's ASN, the role and the authoriser, then runs `action` on the branch
  // services with the actor (login, authorised_by, from) filled in.
  using CardHandler = std::function<HttpResponse(Context&, branch::BranchServices&,
                                                 const branch::Actor&, const std::string& asn)>;
  auto card_route = [this](std::string method, std::string pattern, const Schema* schema,
                           std::string operation, CardHandler handler) {
    AddAuthed(std::move(method), std::move(pattern), schema,
              [this, operation, handler = std::move(handler)](Context& context) {
                const std::string asn = context.Param("asn");
                if (!MatchesPattern(asn, Pattern::kAsn)) {
                  return ErrorResponse(400, "invalid", "20 hex digits", "asn");
                }
                std::optional<access::AuthoriserCredentials> credentials;
                if (context.body) credentials = Credentials(*context.body);
                auto authorised_by = authority_.Check(context.connection, context.principal,
                                                      operation, 0, credentials, context.from());
                if (!authorised_by) return ErrorResponse(authorised_by.error());
                branch::Actor actor;
                actor.login = context.principal.login;
                if (*authorised_by) actor.authorised_by = (*authorised_by)->login;
                actor.from = context.from();
                actor.branch = context.principal.branch;
                // The key store is thread-compatible only: one request at a time uses it.
                std::lock_guard key_store_lock(services_.key_store_mutex != nullptr
                                                   ? *services_.key_store_mutex
                                                   : key_store_mutex_);
                branch::BranchServices services(context.connection, *services_.key_store,
                                                services_.branch_options);
                return handler(context, services, actor, Upper(asn));
              });
  };
  // docs/api.md "Replays": with an Idempotency-Key the answer is recorded inside the action's
  // transaction, rendered from its result exactly as the route answers.
  using ActionResult = branch::BranchServices::ActionResult;
  using Render = HttpResponse (*)(const ActionResult&);
  auto answer_in_transaction = [](Context& context, branch::BranchServices& services,
                                  Render render) {
    if (!context.record_answer) return;
    services.SetCommitHook([&context, render](store::Connection& c, const ActionResult& result) {
      return context.record_answer(c, render(result));
    });
  };
  // Activate, report loss, cancel it, capture: the same body and answer.
  using Action = access::ServiceResult<branch::CardRecord> (branch::BranchServices::*)(
      const branch::Actor&, const branch::CardAction&);
  auto simple = [&](std::string method, std::string pattern, std::string operation, Action action) {
    card_route(std::move(method), std::move(pattern), &CardActionSchema(), std::move(operation),
               [action, answer_in_transaction](Context& context, branch::BranchServices& services,
                                               const branch::Actor& actor, const std::string& asn) {
                 const JsonRequest& body = *context.body;
                 branch::CardAction request{asn, body.OptionalInteger("expected_version"),
                                            body.OptionalString("reason").value_or("")};
                 answer_in_transaction(context, services, &CardAnswer);
                 auto card = (services.*action)(actor, request);
                 if (!card) return ErrorResponse(card.error());
                 return CardAnswer(*card);
               });
  };
  simple("POST", "/v1/cards/{asn}/activate", branch::kActionActivate,
         &branch::BranchServices::Activate);
  simple("POST", "/v1/cards/{asn}/loss", branch::kActionReportLoss,
         &branch::BranchServices::ReportLoss);
  simple("DELETE", "/v1/cards/{asn}/loss", branch::kActionCancelLoss,
         &branch::BranchServices::CancelLoss);
  simple("POST", "/v1/cards/{asn}/capture", branch::kActionCapture,
         &branch::BranchServices::Capture);

  card_route(
      "GET", "/v1/cards/{asn}", nullptr, "customer.read",
      [](Context&, branch::BranchServices& services, const branch::Actor&, const std::string& asn) {
        auto card = services.FindCard(asn);
        if (!card) return ErrorResponse(card.error());
        json answer = CardJson(*card);
        answer["loss"] = {{"reported", card->state == branch::CardState::kLost},
                          {"blacklisted_at", OptionalJson(card->blacklisted_at)}};
        answer["balances"] = nullptr;
        if (auto balances = services.Balances(asn); balances) {
          answer["balances"] = {{"medical_account", balances->medical_account},
                                {"card_ed", balances->card_ed},
                                {"card_ep", balances->card_ep}};
        }
        return Ok(answer);
      });

  static const Schema validity =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("valid_to", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("reason", Presence::kOptional, 0, 200)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  card_route("POST", "/v1/cards/{asn}/validity", &validity, branch::kActionChangeValidity,
             [answer_in_transaction](Context& context, branch::BranchServices& services,
                                     const branch::Actor& actor, const std::string& asn) {
               const JsonRequest& body = *context.body;
               const Date valid_to = ParseDay(body.String("valid_to"));
               answer_in_transaction(context, services, &CardAnswer);
               auto card = services.ChangeValidity(
                   actor, {asn, body.OptionalInteger("expected_version"), valid_to});
               if (!card) return ErrorResponse(card.error());
               return CardAnswer(*card);
             });

  static const Schema replacement =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("branch", Presence::kOptional, 1, 16)
          .String("reason", Presence::kOptional, 0, 200)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  card_route("POST", "/v1/cards/{asn}/replacement", &replacement, branch::kActionReplace,
             [answer_in_transaction](Context& context, branch::BranchServices& services,
                                     const branch::Actor& actor, const std::string& asn) {
               const JsonRequest& body = *context.body;
               answer_in_transaction(context, services, &ReplacementAnswer);
               branch::CardReplacement request{
                   asn, body.OptionalInteger("expected_version"),
                   body.OptionalString("branch").value_or(context.principal.branch),
                   body.OptionalString("reason").value_or("")};
               auto result = services.Replace(actor, request);
               if (!result) return ErrorResponse(result.error());
               return ReplacementAnswer(*result);
             });

  static const Schema closure =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("payee_reference", Presence::kRequired, 1, 64)
          .String("reason", Presence::kOptional, 0, 200)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  card_route("POST", "/v1/cards/{asn}/closure", &closure, branch::kActionClose,
             [answer_in_transaction](Context& context, branch::BranchServices& services,
                                     const branch::Actor& actor, const std::string& asn) {
               const JsonRequest& body = *context.body;
               branch::CardClosure request{asn, body.OptionalInteger("expected_version"),
                                           body.String("payee_reference"),
                                           body.OptionalString("reason").value_or("")};
               answer_in_transaction(context, services, &ClosureAnswer);
               auto result = services.Close(actor, request);
               if (!result) return ErrorResponse(result.error());
               return ClosureAnswer(*result);
             });

  // Card scripts (docs/api.md "Card scripts"): the teller's reader sends the card's challenge
  // and what it read from SFI 15; the answer is the one C-APDU to send next.
  auto script_route = [&](std::string name, std::string operation, branch::ScriptKind kind,
                          const Schema* schema) {
    card_route(
        "POST", "/v1/cards/{asn}/scripts/" + name, schema, operation,
        [this, kind, operation](Context& context, branch::BranchServices& services,
                                const branch::Actor& actor, const std::string& asn) {
          auto card = services.FindCard(asn);
          if (!card) return ErrorResponse(card.error());
          const JsonRequest& body = *context.body;
          branch::ScriptContext script_context;
          script_context.kind = kind;
          script_context.asn = *FromHex(asn);
          script_context.challenge = *FromHex(body.String("challenge"));
          script_context.start_date = ParseDay(body.String("start_date"));
          script_context.expiry_date = ParseDay(body.String("expiry_date"));
          std::optional<Date> new_expiry;
          if (auto day = body.OptionalString("new_expiry")) new_expiry = ParseDay(*day);
          std::string pin_key;
          Bytes pin_block;
          if (auto workstation = body.OptionalString("workstation")) {
            // docs/keys.md: pek/<1 to 32 of A-Z 0-9 ->.
            pin_key = "pek/" + *workstation;
            if (!keys::IsPinEncryptionKeyName(pin_key)) {
              return ErrorResponse(400, "invalid", "1 to 32 of A-Z 0-9 -", "workstation");
            }
          }
          if (auto block = body.OptionalString("encrypted_pin_block")) {
            pin_block = *FromHex(*block);
          }
          branch::CardScriptBuilder builder(*services_.key_store);
          auto script = builder.Build(script_context, new_expiry, pin_key, pin_block);
          if (!script) {
            return ErrorResponse(422, "unprocessable", script.error().message);
          }
          // Who asked for the script is audited. A PIN reset also gives the host's
          // online PIN the new PIN's value, made in the key store from the same block, in
          // the audit entry's transaction (docs/api.md "Card scripts", docs/branch.md).
          auto audited = store::RunTransaction(
              context.connection, store::TransactionMode::kWrite,
              [&](store::Connection& c) -> store::DbStatus {
                audit::Entry entry;
                entry.actor = actor.login;
                entry.authorised_by = actor.authorised_by;
                entry.action = operation + ".script";
                entry.target = "card:" + asn;
                entry.from = actor.from;
                std::optional<host::PinVerificationValue> pin_value;
                if (kind == branch::ScriptKind::kPinReset) {
                  auto value = branch::NewPinVerificationValue(
                      c, *services_.key_store, script_context.asn, pin_key, pin_block);
                  if (!value.ok()) {
                    return store::MakeDbError(store::ErrorKind::kOther, value.error().message);
                  }
                  pin_value = *value;
                  entry.details =
                      json{{"online_pin", pin_value ? json{{"key", pin_value->key_name},
                                                           {"version", pin_value->key_version}}
                                                    : json(nullptr)}}
                          .dump();
                }
                auto appended = audit::Append(c, entry);
                if (!appended) {
                  return store::MakeDbError(store::ErrorKind::kOther, appended.error().message);
                }
                if (pin_value) {
                  host::Host host(c, *services_.key_store);
                  auto replaced = host.ReplacePinVerificationValue(script_context.asn, *pin_value);
                  if (!replaced) {
                    return store::MakeDbError(replaced.error().retryable
                                                  ? store::ErrorKind::kRetryable
                                                  : store::ErrorKind::kOther,
                                              replaced.error().message);
                  }
                }
                return store::Done{};
              });
          if (!audited) return Internal(audited.error());
          json answer = {{"kind", branch::ScriptKindName(script->kind)},
                         {"command", ToHex(script->command)}};
          answer["new_expiry"] = nullptr;
          if (script->new_expiry) {
            char day[11];
            std::snprintf(day, sizeof day, "%04d-%02d-%02d", script->new_expiry->year,
                          script->new_expiry->month, script->new_expiry->day);
            answer["new_expiry"] = day;
          }
          return Ok(answer);
        });
  };
  static const Schema unblock_script =
      Schema()
          .String("challenge", Presence::kRequired, 8, 16, Pattern::kHex)
          .String("start_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("expiry_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  static const Schema validity_script =
      Schema()
          .String("challenge", Presence::kRequired, 8, 16, Pattern::kHex)
          .String("start_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("expiry_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("new_expiry", Presence::kRequired, 10, 10, Pattern::kDate)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  static const Schema pin_reset_script =
      Schema()
          .String("challenge", Presence::kRequired, 8, 16, Pattern::kHex)
          .String("start_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("expiry_date", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("workstation", Presence::kRequired, 1, 32, Pattern::kAny)
          .String("encrypted_pin_block", Presence::kRequired, 16, 16, Pattern::kHex)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  script_route("unblock", "card.unblock", branch::ScriptKind::kApplicationUnblock, &unblock_script);
  script_route("validity", "card.change_validity", branch::ScriptKind::kChangeExpiry,
               &validity_script);
  script_route("pin-reset", "card.pin_reset", branch::ScriptKind::kPinReset, &pin_reset_script);

  card_route("GET", "/v1/cards/{asn}/transactions", nullptr, "customer.read",
             [](Context& context, branch::BranchServices& services, const branch::Actor&,
                const std::string& asn) {
               auto page = ParsePage(context.request);
               if (!page) return ErrorResponse(page.error());
               auto history =
                   services.History(asn, page->after, static_cast<std::size_t>(page->limit));
               if (!history) return ErrorResponse(history.error());
               json items = json::array();
               for (const auto& line : history->lines) {
                 items.push_back({{"seq", line.seq},
                                  {"when", line.when},
                                  {"kind", line.kind},
                                  {"wallet", line.wallet},
                                  {"amount", line.amount},
                                  {"balance_after", line.balance_after},
                                  {"merchant_id", line.merchant_id},
                                  {"merchant_name", line.merchant_name},
                                  {"reference", line.reference}});
               }
               json next = history->next_cursor ? json(std::to_string(*history->next_cursor))
                                                : json(nullptr);
               return Ok({{"items", items}, {"next", next}});
             });

  card_route("GET", "/v1/cards/{asn}/statement", nullptr, "customer.read",
             [](Context& context, branch::BranchServices& services, const branch::Actor&,
                const std::string& asn) {
               branch::StatementRequest request{asn, {}, {}};
               for (const char* name : {"from", "to"}) {
                 auto value = QueryValue(context.request, name);
                 if (!value || !MatchesPattern(*value, Pattern::kDate)) {
                   return ErrorResponse(400, "invalid", "a date YYYY-MM-DD", name);
                 }
                 (std::string_view(name) == "from" ? request.from_day : request.to_day) = *value;
               }
               if (request.from_day > request.to_day) {
                 return ErrorResponse(400, "invalid", "from is after to", "from");
               }
               const std::string format = QueryValue(context.request, "format").value_or("csv");
               if (format != "csv" && format != "pdf") {
                 return ErrorResponse(400, "invalid", "csv or pdf", "format");
               }
               auto document = format == "csv" ? branch::StatementCsv(services, request)
                                               : branch::StatementPdf(services, request);
               if (!document) return ErrorResponse(document.error());
               HttpResponse response;
               response.body = std::move(*document);
               response.content_type =
                   format == "csv" ? "text/csv; charset=utf-8" : "application/pdf";
               return response;
             });
}

// ---- Applications and issue, day-end reports, role limits.

namespace {

// The actor of a branch action: the teller, the authoriser (if any), the workstation, the branch.
branch::Actor ActorOf(const Principal& principal, const std::optional<Principal>& authoriser,
                      const std::string& from) {
  branch::Actor actor;
  actor.login = principal.login;
  if (authoriser) actor.authorised_by = authoriser->login;
  actor.from = from;
  actor.branch = principal.branch;
  return actor;
}

json RoleLimitJson(const access::RoleLimit& limit) {
  return {{"role", access::RoleName(limit.role)},
          {"own_limit_fen", limit.own_limit_fen},
          {"authorise_limit_fen",
           limit.authorise_limit_fen ? json(*limit.authorise_limit_fen) : json(nullptr)}};
}

}  // namespace

void Api::AddBranchRoutes() {
  // Runs `action` on the branch services after the operation's role and dual-control check,
  // under the key store's lock (BranchServices holds it).
  using BranchAction =
      std::function<HttpResponse(Context&, branch::BranchServices&, const branch::Actor&)>;
  auto branch_action = [this](Context& context, std::string_view operation,
                              const BranchAction& action) {
    std::optional<access::AuthoriserCredentials> credentials;
    if (context.body) credentials = Credentials(*context.body);
    auto authorised_by = authority_.Check(context.connection, context.principal, operation, 0,
                                          credentials, context.from());
    if (!authorised_by) return ErrorResponse(authorised_by.error());
    std::lock_guard key_store_lock(services_.key_store_mutex != nullptr ? *services_.key_store_mutex
                                                                        : key_store_mutex_);
    branch::BranchServices services(context.connection, *services_.key_store,
                                    services_.branch_options);
    return action(context, services, ActorOf(context.principal, *authorised_by, context.from()));
  };

  // docs/branch.md "Apply and issue": the application (the card's "card.issue" permission), then
  // the personalised card registered to it.
  static const Schema application =
      Schema()
          .String("person_id", Presence::kRequired, 1, 32, Pattern::kAny)
          .String("holder_reference", Presence::kRequired, 1, 64, Pattern::kAny)
          .String("branch", Presence::kOptional, 1, 16, Pattern::kAny)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  AddAuthed("POST", "/v1/cards/applications", &application, [branch_action](Context& context) {
    return branch_action(
        context, "card.issue",
        [](Context& c, branch::BranchServices& services, const branch::Actor& actor) {
          const JsonRequest& body = *c.body;
          branch::CardApplication request{
              body.String("person_id"), body.String("holder_reference"),
              body.OptionalString("branch").value_or(c.principal.branch)};
          if (c.record_answer) {
            services.SetCommitHook([&c](store::Connection& connection,
                                        const branch::BranchServices::ActionResult& result) {
              return c.record_answer(connection, CreatedCardAnswer(result));
            });
          }
          auto card = services.Apply(actor, request);
          if (!card) return ErrorResponse(card.error());
          return CreatedCardAnswer(*card);
        });
  });
  static const Schema issue =
      Schema()
          .Integer("expected_version", Presence::kOptional, 0, std::int64_t{1} << 53)
          .String("asn", Presence::kRequired, 20, 20, Pattern::kAsn)
          .String("valid_to", Presence::kOptional, 10, 10, Pattern::kDate)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  AddAuthed(
      "POST", "/v1/cards/applications/{application_id}/issue", &issue,
      [branch_action](Context& context) {
        const std::string id_text = context.Param("application_id");
        if (id_text.empty() || id_text.size() > 15 || !MatchesPattern(id_text, Pattern::kDecimal)) {
          return ErrorResponse(400, "invalid", "the application's number", "application_id");
        }
        return branch_action(
            context, "card.issue",
            [&id_text](Context& c, branch::BranchServices& services, const branch::Actor& actor) {
              const JsonRequest& body = *c.body;
              branch::CardIssue request;
              request.application_id = std::stoll(id_text);
              request.expected_version = body.OptionalInteger("expected_version");
              request.asn = Upper(body.String("asn"));
              if (auto day = body.OptionalString("valid_to")) request.valid_to = ParseDay(*day);
              if (c.record_answer) {
                services.SetCommitHook([&c](store::Connection& connection,
                                            const branch::BranchServices::ActionResult& result) {
                  return c.record_answer(connection, CardAnswer(result));
                });
              }
              auto card = services.Issue(actor, request);
              if (!card) return ErrorResponse(card.error());
              return CardAnswer(*card);
            });
      });

  // The teller day-end journal of one UTC day (audit::DayJournal): operations per teller.
  AddAuthed("GET", "/v1/reports/teller-journal", nullptr, [](Context& context) {
    if (auto allowed = access::Require(context.principal, "journal.read"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    auto day = QueryValue(context.request, "day");
    if (!day || !MatchesPattern(*day, Pattern::kDate)) {
      return ErrorResponse(400, "invalid", "a date YYYY-MM-DD", "day");
    }
    auto journal = audit::DayJournal(context.connection, *day);
    if (!journal) return Internal(journal.error());
    json tellers = json::array();
    for (const audit::ActorDay& actor : journal->actors) {
      json by_action = json::object();
      for (const auto& [action, count] : actor.by_action) by_action[action] = count;
      tellers.push_back(
          {{"login", actor.actor}, {"operations", actor.operations}, {"by_action", by_action}});
    }
    return Ok({{"day", journal->day},
               {"tellers", tellers},
               {"cards_issued", journal->cards_issued},
               {"cards_lost", journal->cards_lost},
               {"cards_replaced", journal->cards_replaced},
               {"cards_closed", journal->cards_closed}});
  });

  // The branch day-end report (BranchServices::DayEndReport): cards per branch per local day.
  AddAuthed("GET", "/v1/reports/branch-day", nullptr, [this](Context& context) {
    if (auto allowed = access::Require(context.principal, "journal.read"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    std::string days[2];
    const char* names[2] = {"from", "to"};
    for (int i = 0; i < 2; ++i) {
      auto value = QueryValue(context.request, names[i]);
      if (!value || !MatchesPattern(*value, Pattern::kDate)) {
        return ErrorResponse(400, "invalid", "a date YYYY-MM-DD", names[i]);
      }
      days[i] = *value;
    }
    if (days[0] > days[1]) return ErrorResponse(400, "invalid", "from is after to", "from");
    branch::BranchServices services(context.connection, *services_.key_store,
                                    services_.branch_options);
    auto report = services.DayEndReport(days[0], days[1]);
    if (!report) return ErrorResponse(report.error());
    json items = json::array();
    for (const branch::DayEndLine& line : *report) {
      items.push_back({{"day", line.day},
                       {"branch", line.branch},
                       {"applied", line.applied},
                       {"issued", line.issued},
                       {"activated", line.activated},
                       {"lost", line.lost},
                       {"captured", line.captured},
                       {"replaced", line.replaced},
                       {"closed", line.closed}});
    }
    return Ok({{"items", items}});
  });

  // Role amount limits (docs/access.md "Dual control"): read by the roles with "limits.read";
  // changed by an administrator ("limits.change", with an authoriser when it is configured as a
  // dual-control operation), audited by Authority::SetLimit.
  AddAuthed("GET", "/v1/roles/{role}/limit", nullptr, [this](Context& context) {
    if (auto allowed = access::Require(context.principal, "limits.read"); !allowed) {
      return ErrorResponse(allowed.error());
    }
    auto role = access::ParseRole(context.Param("role"));
    if (!role) return ErrorResponse(404, "not_found", "no such role", "role");
    auto limits = authority_.Limits(context.connection);
    if (!limits) return ErrorResponse(limits.error());
    for (const access::RoleLimit& limit : *limits) {
      if (limit.role == *role) return Ok(RoleLimitJson(limit));
    }
    return ErrorResponse(404, "not_found", "no limit for this role", "role");
  });
  static const Schema limit_change =
      Schema()
          .Integer("own_limit_fen", Presence::kRequired, 0, std::int64_t{1} << 53)
          .Integer("authorise_limit_fen", Presence::kOptional, 0, std::int64_t{1} << 53)
          .Object("authorisation", Presence::kOptional, AuthorisationSchema());
  AddAuthed("PUT", "/v1/roles/{role}/limit", &limit_change, [this](Context& context) {
    auto role = access::ParseRole(context.Param("role"));
    if (!role) return ErrorResponse(404, "not_found", "no such role", "role");
    const JsonRequest& body = *context.body;
    auto authorised_by = authority_.Check(context.connection, context.principal, "limits.change", 0,
                                          Credentials(body), context.from());
    if (!authorised_by) return ErrorResponse(authorised_by.error());
    access::RoleLimit limit;
    limit.role = *role;
    limit.own_limit_fen = body.Integer("own_limit_fen");
    limit.authorise_limit_fen = body.OptionalInteger("authorise_limit_fen");
    auto set = authority_.SetLimit(context.connection, context.principal, limit, context.from());
    if (!set) return ErrorResponse(set.error());
    return Ok(RoleLimitJson(limit));
  });
}

}  // namespace medcard::api
