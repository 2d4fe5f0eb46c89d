#include "api/si_routes.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "common/bytes.h"
#include "insurance/claims.h"
#include "insurance/monthly_run.h"
#include "insurance/registry.h"

namespace medcard::api {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using nlohmann::json;
namespace ins = insurance;

constexpr std::int64_t kMaxFen = std::int64_t{1'000'000'000'000};

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpResponse Ok(const json& value, int status = 200) { return JsonResponse(status, Dump(value)); }

HttpResponse Internal(const Error& error) {
  spdlog::error("si api: internal error: {}", error.message);
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

bool IsJsonContent(const HttpResponse& response) {
  return response.content_type.rfind("application/json", 0) == 0;
}

// The strict parsers' errors start with the field path: "benefits.annual_cap_bp: ...".
HttpResponse DocumentError(const std::string& message) {
  const auto colon = message.find(": ");
  std::string field;
  if (colon != std::string::npos && colon < 120 &&
      message.find(' ') == colon + 1) {  // a path has no spaces
    field = message.substr(0, colon);
  }
  return ErrorResponse(400, "invalid", message, field);
}

json UnitJson(const ins::Unit& unit) {
  return {{"code", unit.code},
          {"name", unit.name},
          {"bank_account", unit.bank_account},
          {"area", unit.area}};
}

json PersonJson(const ins::PersonState& state) {
  return {{"ssn", state.ssn},
          {"name", state.name},
          {"birth_date", state.birth_date.ToString()},
          {"unit_code", state.unit_code},
          {"wage_base_fen", state.wage_base_fen},
          {"category", ins::ToString(state.category)},
          {"status", ins::ToString(state.status)},
          {"effective", state.effective.ToString()},
          {"event", state.event},
          {"note", state.note}};
}

json SummaryJson(const ins::MonthlyRunSummary& summary) {
  return {{"month", ins::MonthText(summary.month)},
          {"already_finished", summary.already_finished},
          {"resumed", summary.resumed},
          {"people", summary.people},
          {"units", summary.units},
          {"employer_fen", summary.employer_fen},
          {"employee_fen", summary.employee_fen},
          {"personal_account_fen", summary.personal_account_fen},
          {"retiree_allowance_fen", summary.retiree_allowance_fen},
          {"pooled_fund_fen", summary.pooled_fund_fen}};
}

json RecordJson(const audit::Record& record) {
  return {{"sequence", record.sequence},   {"at", FormatUtc(record.at_us)},
          {"actor", record.entry.actor},   {"action", record.entry.action},
          {"target", record.entry.target}, {"details", record.entry.details},
          {"from", record.entry.from},     {"hash", record.hash}};
}

const Schema& UnitSchema() {
  static const Schema schema =
      Schema()
          .String("code", Presence::kRequired, 1, 20)
          .String("name", Presence::kRequired, 1, 200)
          .String("bank_account", Presence::kRequired, 8, 32, Pattern::kDecimal)
          .String("area", Presence::kRequired, 6, 6, Pattern::kDecimal);
  return schema;
}

const Schema& EnrolSchema() {
  static const Schema schema =
      Schema()
          .String("ssn", Presence::kRequired, 18, 18)
          .String("name", Presence::kRequired, 1, 100)
          .String("birth_date", Presence::kOptional, 10, 10, Pattern::kDate)
          .String("unit_code", Presence::kRequired, 1, 20)
          .Money("wage_base_fen", Presence::kRequired, ins::kMaxWageBaseFen)
          .String("category", Presence::kRequired, 1, 16)
          .String("effective", Presence::kRequired, 10, 10, Pattern::kDate);
  return schema;
}

const Schema& EventSchema() {
  static const Schema schema =
      Schema()
          .String("event", Presence::kRequired, 1, 16)
          .String("effective", Presence::kRequired, 10, 10, Pattern::kDate)
          .String("unit_code", Presence::kOptional, 1, 20)
          .Money("wage_base_fen", Presence::kOptional, ins::kMaxWageBaseFen)
          .String("reason", Presence::kOptional, 1, 100);
  return schema;
}

const Schema& PaymentSchema() {
  static const Schema schema = Schema()
                                   .String("unit_code", Presence::kRequired, 1, 20)
                                   .String("month", Presence::kRequired, 7, 7)
                                   .Money("amount_fen", Presence::kRequired, kMaxFen)
                                   .String("paid_on", Presence::kRequired, 10, 10, Pattern::kDate);
  return schema;
}

// {"acknowledgement": "<the file>"}: the file has newlines, which the Schema strings refuse, so
// this one body is checked here (one object, that one field, a string); the file's own parser
// authenticates and checks everything in it.
access::ServiceResult<std::string> AcknowledgementText(std::string_view body) {
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeServiceError(ErrorCode::kInvalid, "the body must be one JSON object");
  }
  for (const auto& [name, value] : parsed.items()) {
    if (name != "acknowledgement")
      return MakeServiceError(ErrorCode::kInvalid, "unknown field", name);
  }
  if (!parsed.contains("acknowledgement") || !parsed["acknowledgement"].is_string() ||
      parsed["acknowledgement"].get_ref<const std::string&>().empty()) {
    return MakeServiceError(ErrorCode::kInvalid, "the acknowledgement file's text",
                            "acknowledgement");
  }
  return parsed["acknowledgement"].get<std::string>();
}

const Schema& NoFieldsSchema() {
  static const Schema schema;
  return schema;
}

std::optional<std::string> QueryValue(const HttpRequest& request, const std::string& name) {
  auto it = request.query.find(name);
  if (it == request.query.end()) return std::nullopt;
  return it->second;
}

}  // namespace

std::vector<const store::MigrationSet*> SiMigrationSets() {
  return {&ins::Migrations(), &audit::Migrations(), &access::Migrations(), &api::Migrations()};
}

struct SiApi::Context {
  const HttpRequest& request;
  const PathParams& params;
  store::Connection& connection;
  access::Principal principal;
  std::optional<JsonRequest> body;
  std::int64_t now_us = 0;

  const std::string& from() const { return request.remote_address; }
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
  // Records a mutation that has committed (the insurance services commit their own
  // transactions, so the entry follows in a transaction of its own). A failure to record it is
  // a 500: the client is told even though the change stays.
  HttpResponse Audited(HttpResponse response, const std::string& action, const std::string& target,
                       const json& details) {
    audit::Entry entry;
    entry.actor = principal.login;
    entry.action = action;
    entry.target = target;
    entry.details = Dump(details);
    entry.from = from();
    auto recorded = store::RunTransaction(connection, store::TransactionMode::kWrite,
                                          [&](store::Connection& c) -> store::DbStatus {
                                            auto appended = audit::AppendDb(c, entry, now_us);
                                            if (!appended) return appended.error();
                                            return store::Done{};
                                          });
    if (!recorded) {
      spdlog::error("si api: {} on {} done but not audited: {}", action, target,
                    recorded.error().message);
      return ErrorResponse(500, "internal", "the change was made but could not be audited");
    }
    return response;
  }
};

SiApi::SiApi(SiApiServices services) : services_(std::move(services)), pool_(*services_.database) {
  AddSessionRoutes();
  AddRegistryRoutes();
  AddMoneyRoutes();
  AddCheckRoutes();
}

std::int64_t SiApi::Now() const {
  return services_.clock_us ? services_.clock_us() : access::SystemClockMicros();
}

void SiApi::AddAuthed(std::string method, std::string pattern, std::string operation,
                      const Schema* schema, bool raw_body, Handler handler) {
  router_.Add(std::move(method), std::move(pattern),
              [this, operation = std::move(operation), schema, raw_body,
               handler = std::move(handler)](const HttpRequest& request, const PathParams& params) {
                return RunAuthed(request, params, operation, schema, raw_body, handler);
              });
}

HttpResponse SiApi::RunAuthed(const HttpRequest& request, const PathParams& params,
                              const std::string& operation, const Schema* schema, bool raw_body,
                              const Handler& handler) const {
  const std::string token = BearerToken(request);
  if (token.empty()) {
    return ErrorResponse(401, "unauthenticated", "sign in first: Authorization: Bearer <token>");
  }
  auto lease = pool_.Acquire();
  if (!lease) return Internal(lease.error());
  store::Connection& connection = **lease;
  auto principal = services_.directory->Authenticate(connection, token);
  if (!principal) return ErrorResponse(principal.error());
  const std::string login = principal->login;
  auto refuse = [&](HttpResponse response) {
    response.user = login;
    return response;
  };
  if (auto allowed = access::Require(*principal, operation); !allowed) {
    return refuse(ErrorResponse(allowed.error()));
  }

  std::optional<JsonRequest> body;
  if (schema != nullptr) {
    auto parsed = ParseJsonRequest(request.body, *schema);
    if (!parsed) return refuse(ErrorResponse(parsed.error()));
    body = std::move(*parsed);
  } else if (!raw_body && !request.body.empty()) {
    return refuse(ErrorResponse(400, "invalid", "this request takes no body"));
  }
  Context context{request, params, connection, *principal, std::move(body), Now()};
  auto run = [&] {
    HttpResponse response = handler(context);
    response.user = login;
    return response;
  };

  const std::string key = request.Header("idempotency-key");
  if (request.method == "GET" || key.empty()) return run();
  if (!IsSaneRequestId(key)) {
    return refuse(ErrorResponse(400, "invalid", "1 to 64 of A-Z a-z 0-9 . _ -", "Idempotency-Key"));
  }
  // docs/api.md "Replays", as the bank's API: reserve the key, act, store the answer.
  const std::string hash = Sha256Hex(request.method + "\n" + request.path + "\n" + request.body);
  std::optional<store::Row> existing;
  auto reserved = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        existing.reset();
        auto rows = c.Query(
            "SELECT request_hash, status, response FROM api_idempotency "
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
            {login, key, hash, context.now_us});
        if (!inserted) return inserted.error();
        return store::Done{};
      });
  auto conflict = [&](std::string_view message) {
    return refuse(ErrorResponse(409, "conflict", message, "Idempotency-Key"));
  };
  if (!reserved) {
    if (reserved.error().kind != store::ErrorKind::kUniqueViolation) {
      return Internal(reserved.error());
    }
    return conflict("a request with this Idempotency-Key is in progress");
  }
  if (existing) {
    if (existing->Text("request_hash") != hash) {
      return conflict("this Idempotency-Key was used for another request");
    }
    if (existing->Int("status") == 0) {
      return conflict("a request with this Idempotency-Key is in progress");
    }
    HttpResponse replay =
        JsonResponse(static_cast<int>(existing->Int("status")), existing->Text("response"));
    replay.headers.emplace_back("Idempotent-Replayed", "true");
    return refuse(std::move(replay));
  }
  HttpResponse response = run();
  // A 5xx changed nothing, and a download (the allocation batch) is idempotent by itself: the
  // key is released rather than replaying a non-JSON body as JSON.
  auto stored =
      response.status >= 500 || !IsJsonContent(response)
          ? connection.Execute(
                "DELETE FROM api_idempotency WHERE login = ? AND idempotency_key = ?", {login, key})
          : connection.Execute(
                "UPDATE api_idempotency SET status = ?, response = ? "
                "WHERE login = ? AND idempotency_key = ?",
                {response.status, response.body, login, key});
  if (!stored) spdlog::error("si api: idempotency key not recorded: {}", stored.error().message);
  return response;
}

// ---- Sessions.

void SiApi::AddSessionRoutes() {
  router_.Add("POST", "/v1/sessions", [this](const HttpRequest& request, const PathParams&) {
    static const Schema schema = Schema()
                                     .String("login", Presence::kRequired, 1, 64)
                                     .String("password", Presence::kRequired, 1, 200);
    auto body = ParseJsonRequest(request.body, schema);
    if (!body) return ErrorResponse(body.error());
    auto lease = pool_.Acquire();
    if (!lease) return Internal(lease.error());
    auto session = services_.directory->SignIn(**lease, body->String("login"),
                                               body->String("password"), request.remote_address);
    if (!session) return ErrorResponse(session.error());
    HttpResponse response =
        Ok({{"token", session->token},
            {"login", session->principal.login},
            {"role", access::RoleName(session->principal.role)},
            {"expires_at", FormatUtc(session->idle_expires_at_us)},
            {"absolute_expires_at", FormatUtc(session->absolute_expires_at_us)}},
           201);
    response.user = session->principal.login;
    return response;
  });
  // Signing out needs only a live session, whatever the role.
  router_.Add("DELETE", "/v1/sessions/current",
              [this](const HttpRequest& request, const PathParams&) {
                const std::string token = BearerToken(request);
                if (token.empty()) {
                  return ErrorResponse(401, "unauthenticated", "sign in first");
                }
                if (!request.body.empty()) {
                  return ErrorResponse(400, "invalid", "this request takes no body");
                }
                auto lease = pool_.Acquire();
                if (!lease) return Internal(lease.error());
                auto done = services_.directory->SignOut(**lease, token, request.remote_address);
                if (!done) return ErrorResponse(done.error());
                HttpResponse response;
                response.status = 204;
                return response;
              });
}

// ---- Units and people.

void SiApi::AddRegistryRoutes() {
  AddAuthed("POST", "/v1/units", "si.registry.change", &UnitSchema(), false, [](Context& c) {
    const JsonRequest& body = *c.body;
    ins::Unit unit{body.String("code"), body.String("name"), body.String("bank_account"),
                   body.String("area")};
    ins::Registry registry(c.connection, {[&c] { return c.now_us; }});
    auto added = registry.AddUnit(unit);
    if (!added) return ErrorResponse(added.error());
    return c.Audited(Ok(UnitJson(unit), 201), "si.unit.add", "unit:" + unit.code, body.json());
  });
  AddAuthed("GET", "/v1/units", "si.read", nullptr, false, [](Context& c) {
    auto page = ParsePage(c.request);
    if (!page) return ErrorResponse(page.error());
    ins::Registry registry(c.connection);
    auto units = registry.Units();
    if (!units) return ErrorResponse(units.error());
    // The cursor is the position in code order.
    const std::size_t start = static_cast<std::size_t>(page->after.value_or(0));
    json items = json::array();
    std::size_t i = start;
    for (; i < units->size() && items.size() < static_cast<std::size_t>(page->limit); ++i) {
      items.push_back(UnitJson((*units)[i]));
    }
    json next = i < units->size() ? json(std::to_string(i)) : json(nullptr);
    return Ok({{"items", items}, {"next", next}});
  });
  AddAuthed("GET", "/v1/units/{code}", "si.read", nullptr, false, [](Context& c) {
    ins::Registry registry(c.connection);
    auto unit = registry.FindUnit(c.Param("code"));
    if (!unit) return ErrorResponse(unit.error());
    return Ok(UnitJson(*unit));
  });

  AddAuthed("POST", "/v1/people", "si.registry.change", &EnrolSchema(), false, [](Context& c) {
    const JsonRequest& body = *c.body;
    ins::Enrolment enrolment;
    enrolment.ssn = body.String("ssn");
    if (!ins::IsValidSocialSecurityNumber(enrolment.ssn)) {
      return ErrorResponse(400, "invalid", "not a valid 18-character identity number", "ssn");
    }
    auto category = ins::ParsePersonCategory(body.String("category"));
    if (!category) {
      return ErrorResponse(400, "invalid", "employee, retiree or flexible", "category");
    }
    enrolment.name = body.String("name");
    enrolment.birth_date = ins::BirthDateOfSsn(enrolment.ssn);
    if (auto birth = body.OptionalString("birth_date")) {
      enrolment.birth_date = *ins::ParseIsoDate(*birth);
    }
    enrolment.unit_code = body.String("unit_code");
    enrolment.wage_base_fen = body.Integer("wage_base_fen");
    enrolment.category = *category;
    enrolment.effective = *ins::ParseIsoDate(body.String("effective"));
    ins::Registry registry(c.connection, {[&c] { return c.now_us; }});
    auto state = registry.Enrol(enrolment);
    if (!state) return ErrorResponse(state.error());
    return c.Audited(Ok(PersonJson(*state), 201), "si.person.enrol", "person:" + state->ssn,
                     {{"unit_code", state->unit_code},
                      {"category", ins::ToString(state->category)},
                      {"effective", state->effective.ToString()}});
  });
  AddAuthed("GET", "/v1/people/{ssn}", "si.read", nullptr, false, [](Context& c) {
    const std::string ssn = c.Param("ssn");
    if (!ins::IsValidSocialSecurityNumber(ssn)) {
      return ErrorResponse(400, "invalid", "not a valid 18-character identity number", "ssn");
    }
    ins::Registry registry(c.connection);
    auto history = registry.History(ssn);
    if (!history) return ErrorResponse(history.error());
    json events = json::array();
    for (const auto& state : *history) events.push_back(PersonJson(state));
    return Ok({{"current", history->empty() ? json(nullptr) : PersonJson(history->back())},
               {"history", events}});
  });
  AddAuthed(
      "POST", "/v1/people/{ssn}/events", "si.registry.change", &EventSchema(), false,
      [](Context& c) {
        const std::string ssn = c.Param("ssn");
        if (!ins::IsValidSocialSecurityNumber(ssn)) {
          return ErrorResponse(400, "invalid", "not a valid 18-character identity number", "ssn");
        }
        const JsonRequest& body = *c.body;
        const std::string event = body.String("event");
        const Date effective = *ins::ParseIsoDate(body.String("effective"));
        // Each event takes exactly the fields it needs.
        const bool wants_unit = event == "transfer";
        const bool wants_wage = event == "wage";
        const bool wants_reason = event == "close";
        if (body.Has("unit_code") != wants_unit) {
          return ErrorResponse(400, "invalid",
                               wants_unit ? "a transfer names the new unit" : "only for a transfer",
                               "unit_code");
        }
        if (body.Has("wage_base_fen") != wants_wage) {
          return ErrorResponse(400, "invalid",
                               wants_wage ? "a wage change gives the new wage" : "only for wage",
                               "wage_base_fen");
        }
        if (body.Has("reason") != wants_reason) {
          return ErrorResponse(400, "invalid",
                               wants_reason ? "a close gives its reason" : "only for close",
                               "reason");
        }
        ins::Registry registry(c.connection, {[&c] { return c.now_us; }});
        ins::ServiceResult<ins::PersonState> state = MakeServiceError(
            ErrorCode::kInvalid, "transfer, wage, suspend, resume, retire or close", "event");
        if (event == "transfer") {
          state = registry.Transfer(ssn, body.String("unit_code"), effective);
        } else if (event == "wage") {
          state = registry.ChangeWageBase(ssn, body.Integer("wage_base_fen"), effective);
        } else if (event == "suspend") {
          state = registry.Suspend(ssn, effective);
        } else if (event == "resume") {
          state = registry.Resume(ssn, effective);
        } else if (event == "retire") {
          state = registry.Retire(ssn, effective);
        } else if (event == "close") {
          state = registry.Close(ssn, effective, body.String("reason"));
        }
        if (!state) return ErrorResponse(state.error());
        return c.Audited(Ok(PersonJson(*state), 201), "si.person." + event, "person:" + ssn,
                         body.json());
      });
}

// ---- Months, payments, allocation batches.

void SiApi::AddMoneyRoutes() {
  auto month_of = [](Context& c) { return ins::ParseMonthText(c.Param("month")); };
  AddAuthed("POST", "/v1/months/{month}/run", "si.month.run", &NoFieldsSchema(), false,
            [this, month_of](Context& c) {
              auto month = month_of(c);
              if (!month) return ErrorResponse(400, "invalid", "a month YYYY-MM", "month");
              ins::MonthlyRunOptions options;
              options.clock_us = [&c] { return c.now_us; };
              auto summary = ins::RunMonth(c.connection, *services_.policies, *month, options);
              if (!summary) return ErrorResponse(summary.error());
              if (summary->already_finished) return Ok(SummaryJson(*summary));
              return c.Audited(Ok(SummaryJson(*summary)), "si.month.run",
                               "month:" + ins::MonthText(*month), SummaryJson(*summary));
            });
  AddAuthed("GET", "/v1/months/{month}", "si.read", nullptr, false, [month_of](Context& c) {
    auto month = month_of(c);
    if (!month) return ErrorResponse(400, "invalid", "a month YYYY-MM", "month");
    auto bills = ins::UnitBills(c.connection, *month);
    if (!bills) return ErrorResponse(bills.error());
    json units = json::array();
    json totals = {{"people", 0},
                   {"billed_fen", 0},
                   {"personal_account_fen", 0},
                   {"paid_fen", 0},
                   {"arrears_fen", 0}};
    for (const auto& bill : *bills) {
      units.push_back({{"unit_code", bill.unit_code},
                       {"people", bill.people},
                       {"employer_fen", bill.employer_fen},
                       {"employee_fen", bill.employee_fen},
                       {"billed_fen", bill.billed_fen},
                       {"personal_account_fen", bill.personal_account_fen},
                       {"paid_fen", bill.paid_fen},
                       {"arrears_fen", bill.arrears_fen}});
      totals["people"] = totals["people"].get<std::int64_t>() + bill.people;
      totals["billed_fen"] = totals["billed_fen"].get<std::int64_t>() + bill.billed_fen;
      totals["personal_account_fen"] =
          totals["personal_account_fen"].get<std::int64_t>() + bill.personal_account_fen;
      totals["paid_fen"] = totals["paid_fen"].get<std::int64_t>() + bill.paid_fen;
      totals["arrears_fen"] = totals["arrears_fen"].get<std::int64_t>() + bill.arrears_fen;
    }
    return Ok({{"month", ins::MonthText(*month)}, {"units", units}, {"totals", totals}});
  });

  AddAuthed("POST", "/v1/payments", "si.payment.add", &PaymentSchema(), false, [](Context& c) {
    const JsonRequest& body = *c.body;
    auto month = ins::ParseMonthText(body.String("month"));
    if (!month) return ErrorResponse(400, "invalid", "a month YYYY-MM", "month");
    if (body.Integer("amount_fen") <= 0) {
      return ErrorResponse(400, "invalid", "a positive amount in fen", "amount_fen");
    }
    ins::Payment payment{body.String("unit_code"), *month, body.Integer("amount_fen"),
                         *ins::ParseIsoDate(body.String("paid_on"))};
    auto id = ins::AddPayment(c.connection, payment, [&c] { return c.now_us; });
    if (!id) return ErrorResponse(id.error());
    json answer = body.json();
    answer["id"] = *id;
    return c.Audited(Ok(answer, 201), "si.payment.add", "unit:" + payment.unit_code, body.json());
  });

  AddAuthed("POST", "/v1/months/{month}/allocations", "si.allocation.export", &NoFieldsSchema(),
            false, [this, month_of](Context& c) {
              auto month = month_of(c);
              if (!month) return ErrorResponse(400, "invalid", "a month YYYY-MM", "month");
              if (!services_.batch_key) {
                return ErrorResponse(422, "unprocessable",
                                     "the server has no allocation batch key (" +
                                         std::string(ins::kBatchKeyEnvironment) + ")");
              }
              auto batch = ins::ExportAllocations(c.connection, *month, *services_.batch_key,
                                                  [&c] { return c.now_us; });
              if (!batch) return ErrorResponse(batch.error());
              HttpResponse response;
              response.body = batch->text;
              response.content_type = "application/x-ndjson";
              response.headers.emplace_back(
                  "Content-Disposition", "attachment; filename=\"" + batch->batch_id + ".jsonl\"");
              response.headers.emplace_back("X-Batch-Id", batch->batch_id);
              if (batch->already_exported) return response;
              return c.Audited(std::move(response), "si.allocation.export",
                               "batch:" + batch->batch_id,
                               {{"count", batch->count}, {"total_fen", batch->total_fen}});
            });

  AddAuthed("POST", "/v1/allocations/acknowledgements", "si.allocation.reconcile", nullptr, true,
            [this](Context& c) {
              if (!services_.batch_key) {
                return ErrorResponse(422, "unprocessable",
                                     "the server has no allocation batch key (" +
                                         std::string(ins::kBatchKeyEnvironment) + ")");
              }
              auto text = AcknowledgementText(c.request.body);
              if (!text) return ErrorResponse(text.error());
              auto report = ins::ReconcileAcknowledgement(c.connection, *text, *services_.batch_key,
                                                          [&c] { return c.now_us; });
              if (!report) {
                access::ServiceError error = report.error();
                if (error.field.empty()) error.field = "acknowledgement";
                return ErrorResponse(error);
              }
              json refused = json::array();
              for (const auto& line : report->refused) {
                refused.push_back({{"line", line.allocation.line},
                                   {"person_id", line.allocation.person_id},
                                   {"amount_fen", line.allocation.amount_fen},
                                   {"reason", line.reason}});
              }
              json answer = {{"batch_id", report->batch_id},
                             {"month", ins::MonthText(report->month)},
                             {"credited_count", report->credited_count},
                             {"credited_fen", report->credited_fen},
                             {"refused_fen", report->refused_fen},
                             {"refused", refused},
                             {"already_reconciled", report->already_reconciled}};
              if (report->already_reconciled) return Ok(answer);
              return c.Audited(Ok(answer), "si.allocation.reconcile", "batch:" + report->batch_id,
                               {{"credited_count", report->credited_count},
                                {"credited_fen", report->credited_fen},
                                {"refused_fen", report->refused_fen}});
            });
}

// ---- Policy and claim checks, the books, the audit log.

void SiApi::AddCheckRoutes() {
  AddAuthed("POST", "/v1/policy/check", "si.policy.check", nullptr, true, [](Context& c) {
    auto policy = ins::ParsePolicyJson(c.request.body);
    if (!policy) return DocumentError(policy.error().message);
    return Ok({{"valid", true},
               {"area_code", policy->area_code},
               {"name", policy->name},
               {"effective_from", policy->effective_from.ToString()},
               {"average_monthly_wage_fen", policy->AverageMonthlyWageFen()},
               {"deductible_first_admission_fen", policy->DeductibleFen(true)},
               {"deductible_later_admission_fen", policy->DeductibleFen(false)},
               {"annual_cap_fen", policy->AnnualCapFen()}});
  });
  // A preview: the claim file (docs/insurance.md "Claim file") adjudicated under the policy in
  // force in ?area= on the admission date; nothing is recorded.
  AddAuthed(
      "POST", "/v1/claims/adjudication", "si.claim.adjudicate", nullptr, true, [this](Context& c) {
        auto area = QueryValue(c.request, "area");
        if (!area || area->size() != 6 || !MatchesPattern(*area, Pattern::kDecimal)) {
          return ErrorResponse(400, "invalid", "the pooling area: 6 digits", "area");
        }
        auto file = ins::ParseClaimJson(c.request.body);
        if (!file) return DocumentError(file.error().message);
        auto policy = services_.policies->For(*area, file->claim.admission);
        if (!policy) {
          return ErrorResponse(422, "unprocessable", policy.error().message, "area");
        }
        return JsonResponse(200, ins::AdjudicationToJson(
                                     ins::Adjudicate(**policy, file->claim, file->year_so_far)));
      });

  AddAuthed("GET", "/v1/books/check", "si.check", nullptr, false, [](Context& c) {
    auto problems = ins::CheckBooks(c.connection);
    if (!problems) return ErrorResponse(problems.error());
    auto balances = ins::BookBalances(c.connection);
    if (!balances) return ErrorResponse(balances.error());
    json accounts = json::array();
    for (const auto& balance : *balances) {
      accounts.push_back({{"account", balance.account}, {"balance_fen", balance.balance_fen}});
    }
    return Ok({{"ok", problems->empty()}, {"problems", *problems}, {"balances", accounts}});
  });

  AddAuthed("GET", "/v1/audit", "audit.read", nullptr, false, [](Context& c) {
    auto page = ParsePage(c.request);
    if (!page) return ErrorResponse(page.error());
    audit::Filter filter;
    for (const char* name : {"actor", "action", "target"}) {
      auto value = QueryValue(c.request, name);
      if (!value) continue;
      if (value->empty() || value->size() > 200 || !MatchesPattern(*value, Pattern::kAny)) {
        return ErrorResponse(400, "invalid", "1 to 200 printable characters", name);
      }
      (std::string_view(name) == "actor"    ? filter.actor
       : std::string_view(name) == "action" ? filter.action
                                            : filter.target) = *value;
    }
    filter.after_sequence = page->after.value_or(0);
    filter.limit = page->limit;
    auto records = audit::Read(c.connection, filter);
    if (!records) return Internal(records.error());
    json items = json::array();
    for (const auto& record : *records) items.push_back(RecordJson(record));
    json next = static_cast<std::int64_t>(records->size()) == page->limit
                    ? json(std::to_string(records->back().sequence))
                    : json(nullptr);
    return Ok({{"items", items}, {"next", next}});
  });
}

}  // namespace medcard::api
