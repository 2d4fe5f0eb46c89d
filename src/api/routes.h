// The API's requests and answers without the network (docs/api.md): a Router that checks what
// every request must satisfy (request id, body size, content type, method) and dispatches to the
// endpoint handlers. The HTTPS server (server.h) only moves bytes between cpp-httplib and
// Router::Dispatch, so tests and the fuzzer drive the whole request path without sockets.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "access/authority.h"
#include "access/directory.h"
#include "access/service_error.h"
#include "api/json_request.h"
#include "branch/services.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query: "/v1/cards/0123456789ABCDEF0123"
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string remote_address;  // the client's IP address, for the audit log

  std::string Header(std::string_view lower_case_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // For the log line only (never sent): who made the request, when known.
  std::string user;
  std::string request_id;
};

// HTTP status of each access::ErrorCode (docs/api.md "Errors").
int HttpStatus(access::ErrorCode code);
// {"error": {"code", "message", "field"}}; field is null when there is none.
HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message,
                           std::string_view field = {});
HttpResponse ErrorResponse(const access::ServiceError& error);
HttpResponse JsonResponse(int status, const std::string& json_text);

// A request id the client sent is echoed when sane (1..64 of [A-Za-z0-9._-]), else a new one.
bool IsSaneRequestId(std::string_view id);
std::string NewRequestId();  // 32 random hex digits

// Pagination (docs/api.md "Pagination"): ?limit=1..500 (default 50) and ?after=<cursor>.
inline constexpr std::int64_t kDefaultPageLimit = 50;
inline constexpr std::int64_t kMaxPageLimit = 500;
struct Page {
  std::int64_t limit = kDefaultPageLimit;
  std::optional<std::int64_t> after;  // cursors are decimal numbers (a sequence or row number)
};
access::ServiceResult<Page> ParsePage(const HttpRequest& request);

// Path parameters by name: "/v1/cards/{asn}" matched against "/v1/cards/0123..." gives asn.
using PathParams = std::map<std::string, std::string>;
using Handler = std::function<HttpResponse(const HttpRequest&, const PathParams&)>;

struct RouteInfo {
  std::string method;
  std::string pattern;  // "/v1/cards/{asn}/loss", as in docs/api/openapi.yaml
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler);
  // Every answer carries X-Request-Id. 404 for an unknown path, 405 (with Allow) for a known
  // path and another method, 413 above kMaxBodyBytes, 415 for a body that is not
  // application/json, 500 if a handler throws (nothing it started is committed).
  HttpResponse Dispatch(const HttpRequest& request) const;
  std::vector<RouteInfo> Routes() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

// Connections for request threads: one per request at a time, reused (store::Connection is not
// thread-safe). A connection that failed is dropped rather than returned.
class ConnectionPool {
 public:
  explicit ConnectionPool(const store::Database& database) : database_(database) {}
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<store::Connection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    store::Connection& operator*() { return *connection_; }
    store::Connection* operator->() { return connection_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<store::Connection> connection_;
  };
  store::DbResult<Lease> Acquire();

 private:
  const store::Database& database_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<store::Connection>> idle_;
};

// The API's own table (idempotency keys, docs/api.md "Replays"): migration set "api".
const store::MigrationSet& Migrations();

// What the endpoints run on. The database must be migrated with the ledger, host, audit,
// access, branch and api migration sets.
struct ApiServices {
  const store::Database* database = nullptr;
  // Thread-compatible only: used under key_store_mutex (the card routes).
  keys::KeyStore* key_store = nullptr;
  // Held while a request uses key_store; share it with the store's other users (the host's
  // ISO 8583 gateway). Null: the Api's own.
  std::mutex* key_store_mutex = nullptr;
  const access::Directory* directory = nullptr;
  branch::BranchServices::Options branch_options;
};

// Every endpoint of docs/api/openapi.yaml on one Router. Thread-safe: Handle may run on many
// request threads at once (each takes its own database connection).
class Api {
 public:
  explicit Api(ApiServices services);
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  HttpResponse Handle(const HttpRequest& request) const { return router_.Dispatch(request); }
  std::vector<RouteInfo> Routes() const { return router_.Routes(); }

 private:
  struct Context;
  using AuthedHandler = std::function<HttpResponse(Context&)>;
  // Adds a route that needs a session: authenticates the bearer token, parses the body with
  // `schema` (nullptr: no body allowed), and for mutating methods applies the Idempotency-Key.
  void AddAuthed(std::string method, std::string pattern, const Schema* schema,
                 AuthedHandler handler);
  HttpResponse RunAuthed(const HttpRequest& request, const PathParams& params, const Schema* schema,
                         const AuthedHandler& handler) const;

  void AddSessionRoutes();
  void AddUserRoutes();
  void AddAuditRoutes();
  void AddCardRoutes();
  // Card applications and issue, the day-end reports, role limits.
  void AddBranchRoutes();

  ApiServices services_;
  access::Authority authority_;
  mutable ConnectionPool pool_;
  mutable std::mutex key_store_mutex_;
  Router router_;
};

}  // namespace medcard::api
