#include "api/session_layer.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <utility>

#include "common/bytes.h"

namespace medcard::api {

using nlohmann::json;

std::string DumpJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpResponse JsonOk(const json& value, int status) { return JsonResponse(status, DumpJson(value)); }

HttpResponse InternalError(std::string_view log_name, const Error& error) {
  spdlog::error("{}: internal error: {}", log_name, error.message);
  return ErrorResponse(500, "internal", "internal error; nothing was changed");
}

std::string BearerToken(const HttpRequest& request) {
  const std::string header = request.Header("authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() <= kPrefix.size() || header.compare(0, kPrefix.size(), kPrefix) != 0) {
    return {};
  }
  return header.substr(kPrefix.size());
}

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return ToHex(ByteView(digest, length));
}

std::string FormatUtc(std::int64_t micros) {
  const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::optional<std::string> QueryValue(const HttpRequest& request, const std::string& name) {
  auto it = request.query.find(name);
  if (it == request.query.end()) return std::nullopt;
  return it->second;
}

access::ServiceResult<audit::Filter> AuditFilterOf(const HttpRequest& request) {
  using access::ErrorCode;
  using access::MakeServiceError;
  audit::Filter filter;
  for (const char* name : {"actor", "action", "target"}) {
    auto value = QueryValue(request, name);
    if (!value) continue;
    if (value->empty() || value->size() > 200 || !MatchesPattern(*value, Pattern::kAny)) {
      return MakeServiceError(ErrorCode::kInvalid, "1 to 200 printable characters", name);
    }
    if (std::string_view(name) == "actor") filter.actor = *value;
    if (std::string_view(name) == "action") filter.action = *value;
    if (std::string_view(name) == "target") filter.target = *value;
  }
  if (auto from = QueryValue(request, "from")) {
    auto range = MatchesPattern(*from, Pattern::kDate) ? audit::DayRange(*from) : std::nullopt;
    if (!range) return MakeServiceError(ErrorCode::kInvalid, "a date YYYY-MM-DD", "from");
    filter.from_us = range->first;
  }
  if (auto to = QueryValue(request, "to")) {
    auto range = MatchesPattern(*to, Pattern::kDate) ? audit::DayRange(*to) : std::nullopt;
    if (!range) return MakeServiceError(ErrorCode::kInvalid, "a date YYYY-MM-DD", "to");
    filter.until_us = range->second;
  }
  auto page = ParsePage(request);
  if (!page) return page.error();
  filter.after_sequence = page->after.value_or(0);
  filter.limit = page->limit;
  return filter;
}

json AuditRecordJson(const audit::Record& record) {
  return {{"sequence", record.sequence},
          {"at", FormatUtc(record.at_us)},
          {"actor", record.entry.actor},
          {"authorised_by", record.entry.authorised_by},
          {"action", record.entry.action},
          {"target", record.entry.target},
          {"details", record.entry.details},
          {"from", record.entry.from},
          {"hash", record.hash}};
}

HttpResponse AuditPage(store::Connection& connection, const HttpRequest& request,
                       std::string_view log_name) {
  auto filter = AuditFilterOf(request);
  if (!filter) return ErrorResponse(filter.error());
  auto records = audit::Read(connection, *filter);
  if (!records) return InternalError(log_name, records.error());
  json items = json::array();
  for (const auto& record : *records) items.push_back(AuditRecordJson(record));
  json next = static_cast<std::int64_t>(records->size()) == filter->limit
                  ? json(std::to_string(records->back().sequence))
                  : json(nullptr);
  return JsonOk({{"items", items}, {"next", next}});
}

SessionLayer::SessionLayer(const access::Directory& directory, ConnectionPool& pool,
                           Options options)
    : directory_(directory), pool_(pool), options_(std::move(options)) {}

std::int64_t SessionLayer::Now() const {
  return options_.clock_us ? options_.clock_us() : access::SystemClockMicros();
}

HttpResponse SessionLayer::SignIn(const HttpRequest& request) const {
  static const Schema schema = Schema()
                                   .String("login", Presence::kRequired, 1, 64)
                                   .String("password", Presence::kRequired, 1, 200);
  auto body = ParseJsonRequest(request.body, schema);
  if (!body) return ErrorResponse(body.error());
  auto lease = pool_.Acquire();
  if (!lease) return InternalError(options_.log_name, lease.error());
  auto session = directory_.SignIn(**lease, body->String("login"), body->String("password"),
                                   request.remote_address);
  if (!session) return ErrorResponse(session.error());
  HttpResponse response =
      JsonOk({{"token", session->token},
              {"login", session->principal.login},
              {"role", access::RoleName(session->principal.role)},
              {"expires_at", FormatUtc(session->idle_expires_at_us)},
              {"absolute_expires_at", FormatUtc(session->absolute_expires_at_us)}},
             201);
  response.user = session->principal.login;
  return response;
}

HttpResponse SessionLayer::Run(const HttpRequest& request, const SessionRoute& route,
                               const std::function<HttpResponse(SessionRequest&)>& handler) const {
  const std::string token = BearerToken(request);
  if (token.empty()) {
    return ErrorResponse(401, "unauthenticated", "sign in first: Authorization: Bearer <token>");
  }
  auto lease = pool_.Acquire();
  if (!lease) return InternalError(options_.log_name, lease.error());
  auto principal = directory_.Authenticate(**lease, token);
  if (!principal) return ErrorResponse(principal.error());

  auto answer = [&]() -> HttpResponse {
    if (!route.operation.empty()) {
      if (auto allowed = access::Require(*principal, route.operation); !allowed) {
        return ErrorResponse(allowed.error());
      }
    }
    std::optional<JsonRequest> body;
    if (route.schema != nullptr) {
      auto parsed = ParseJsonRequest(request.body, *route.schema);
      if (!parsed) return ErrorResponse(parsed.error());
      body = std::move(*parsed);
    } else if (!route.raw_body && !request.body.empty()) {
      return ErrorResponse(400, "invalid", "this request takes no body");
    }
    SessionRequest session{**lease, *principal, std::move(body), Now(), {}};
    const std::string key = request.Header("idempotency-key");
    if (request.method == "GET" || key.empty()) return handler(session);
    return RunOnce(request, session, handler);
  };
  HttpResponse response = answer();
  response.user = principal->login;
  return response;
}

HttpResponse SessionLayer::RunOnce(
    const HttpRequest& request, SessionRequest& session,
    const std::function<HttpResponse(SessionRequest&)>& handler) const {
  const std::string key = request.Header("idempotency-key");
  if (!IsSaneRequestId(key)) {
    return ErrorResponse(400, "invalid", "1 to 64 of A-Z a-z 0-9 . _ -", "Idempotency-Key");
  }
  const std::string& login = session.principal.login;
  store::Connection& connection = session.connection;
  // A key names one request: the same key with another method, path or body is refused.
  const std::string hash = Sha256Hex(request.method + "\n" + request.path + "\n" + request.body);
  std::optional<store::Row> existing;
  auto reserved = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        existing.reset();
        auto rows = c.Query(
            "SELECT request_hash, status, response, created_at_us FROM api_idempotency "
            "WHERE login = ? AND idempotency_key = ?",
            {login, key});
        if (!rows) return rows.error();
        if (!rows->empty()) {
          existing = (*rows)[0];
          return store::Done{};
        }
        auto inserted = c.Execute(
            "INSERT INTO api_idempotency (login, idempotency_key, request_hash, status, "
            "response, created_at_us) VALUES (?, ?, ?, 0, '', ?)",
            {login, key, hash, session.now_us});
        if (!inserted) return inserted.error();
        return store::Done{};
      });
  auto conflict = [](std::string_view message) {
    return ErrorResponse(409, "conflict", message, "Idempotency-Key");
  };
  if (!reserved) {
    // Another request reserved the key between our look and our insert.
    if (reserved.error().kind == store::ErrorKind::kUniqueViolation) {
      return conflict("a request with this Idempotency-Key is in progress");
    }
    return InternalError(options_.log_name, reserved.error());
  }
  if (existing) {
    if (existing->Text("request_hash") != hash) {
      return conflict("this Idempotency-Key was used for another request");
    }
    if (existing->Int("status") == 0) {
      // No request runs this long: the server stopped while the first one ran. A route that
      // records its answer in the action's transaction did nothing then, but others may have
      // acted without recording it, so the client checks before it tries again.
      if (session.now_us - existing->Int("created_at_us") > kAbandonedReservationUs) {
        return conflict(
            "an earlier request with this Idempotency-Key did not finish (the server stopped "
            "while it ran): check its outcome, then send the request with a new key");
      }
      return conflict("a request with this Idempotency-Key is in progress");
    }
    HttpResponse replay =
        JsonResponse(static_cast<int>(existing->Int("status")), existing->Text("response"));
    replay.headers.emplace_back("Idempotent-Replayed", "true");
    return replay;
  }

  bool recorded_with_the_action = false;
  session.record_answer = [&](store::Connection& c, const HttpResponse& answer) -> Status {
    auto updated = c.Execute(
        "UPDATE api_idempotency SET status = ?, response = ? "
        "WHERE login = ? AND idempotency_key = ?",
        {answer.status, answer.body, login, key});
    if (!updated) return MakeError("idempotency record: " + updated.error().message);
    if (*updated != 1) return MakeError("idempotency record: the key's reservation is gone");
    recorded_with_the_action = true;
    return Status::Ok();
  };
  HttpResponse response = handler(session);
  session.record_answer = nullptr;
  // Recorded in the action's transaction, which committed (else the answer is a 5xx).
  if (recorded_with_the_action && response.status < 500) return response;
  // A 5xx changed nothing, and a download (an allocation batch, a report) is not replayed as
  // JSON: the key is released so that the client may send the request again.
  const bool keep =
      response.status < 500 && response.content_type.rfind("application/json", 0) == 0;
  auto stored = keep ? connection.Execute(
                           "UPDATE api_idempotency SET status = ?, response = ? "
                           "WHERE login = ? AND idempotency_key = ?",
                           {response.status, response.body, login, key})
                     : connection.Execute(
                           "DELETE FROM api_idempotency WHERE login = ? AND idempotency_key = ?",
                           {login, key});
  if (!stored) {
    spdlog::error("{}: idempotency key not recorded: {}", options_.log_name,
                  stored.error().message);
  }
  return response;
}

}  // namespace medcard::api
