// The agency's HTTPS/JSON API (docs/api/si-openapi.yaml, docs/insurance.md "The agency's API"):
// the registry, the monthly run, payments, allocation batches, policy and claim checks, the
// books' check, stored claims, CSV imports, the bank's consumption detail, reports, forecasts and
// the audit log, for insurance officers and auditors. It runs on the AGENCY's database (never the
// bank's): its users, sessions, audit log and idempotency keys live there, so a session opened at
// the bank is not valid here. Sessions, roles and Idempotency-Key are the layer both APIs share
// (session_layer.h); request ids, body limits, content type and errors are the bank API's
// (routes.h, docs/api.md).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "access/directory.h"
#include "api/routes.h"
#include "api/session_layer.h"
#include "insurance/allocation_batch.h"
#include "insurance/policy.h"
#include "store/store.h"

namespace medcard::api {

// The migration sets the agency's database needs for SiApi, in order: insurance, audit, access,
// api (idempotency keys).
std::vector<const store::MigrationSet*> SiMigrationSets();

struct SiApiServices {
  const store::Database* database = nullptr;
  const access::Directory* directory = nullptr;
  const insurance::PolicyBook* policies = nullptr;
  // The allocation batches' HMAC key; nullopt: the allocation endpoints answer 422.
  std::optional<insurance::BatchKey> batch_key;
  std::function<std::int64_t()> clock_us;  // default: the system clock
};

// Every endpoint of docs/api/si-openapi.yaml on one Router. Thread-safe like Api.
class SiApi {
 public:
  explicit SiApi(SiApiServices services);
  SiApi(const SiApi&) = delete;
  SiApi& operator=(const SiApi&) = delete;

  HttpResponse Handle(const HttpRequest& request) const { return router_.Dispatch(request); }
  std::vector<RouteInfo> Routes() const { return router_.Routes(); }

  struct Context;
  using Handler = std::function<HttpResponse(Context&)>;

 private:
  // A route that needs a session whose role may perform `operation`; the body is checked with
  // `schema` (nullptr: no body, or `raw_body` for a document parsed by its own strict parser).
  void AddAuthed(std::string method, std::string pattern, std::string operation,
                 const Schema* schema, bool raw_body, Handler handler);

  void AddSessionRoutes();
  void AddRegistryRoutes();
  void AddMoneyRoutes();
  void AddCheckRoutes();
  void AddClaimRoutes();
  void AddImportRoutes();
  void AddReportRoutes();
  void AddSpendingReportRoutes();

  SiApiServices services_;
  mutable ConnectionPool pool_;
  SessionLayer layer_;
  Router router_;
};

}  // namespace medcard::api
