#include "api/si_routes.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>

#include "audit/audit_log.h"
#include "insurance/charts.h"
#include "insurance/claims.h"
#include "insurance/claims_store.h"
#include "insurance/consumption.h"
#include "insurance/forecast.h"
#include "insurance/imports.h"
#include "insurance/monthly_run.h"
#include "insurance/registry.h"
#include "insurance/reports.h"

namespace medcard::api {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using nlohmann::json;
namespace ins = insurance;

constexpr std::string_view kLogName = "si api";
constexpr std::int64_t kMaxFen = std::int64_t{1'000'000'000'000};

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

// {"<name>": "<a file's text>"}: the file has newlines, which the Schema strings refuse, so such a
// body is checked here (one object, that one field, a non-empty string); the file's own parser
// checks everything in it. The allocation acknowledgement and the CSV imports come this way.
access::ServiceResult<std::string> SingleTextField(std::string_view body, const std::string& name,
                                                   const std::string& what) {
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeServiceError(ErrorCode::kInvalid, "the body must be one JSON object");
  }
  for (const auto& [field, value] : parsed.items()) {
    if (field != name) return MakeServiceError(ErrorCode::kInvalid, "unknown field", field);
  }
  if (!parsed.contains(name) || !parsed[name].is_string() ||
      parsed[name].get_ref<const std::string&>().empty()) {
    return MakeServiceError(ErrorCode::kInvalid, what, name);
  }
  return parsed[name].get<std::string>();
}

json StoredClaimJson(const ins::StoredClaim& c) {
  json doc = {{"id", c.id},
              {"facility", c.facility},
              {"claim_id", c.claim.claim_id},
              {"person_id", c.claim.person_id},
              {"kind", ins::ToString(c.claim.kind)},
              {"admission", c.claim.admission.ToString()},
              {"discharge", c.claim.discharge.ToString()},
              {"diagnosis_icd10", c.claim.diagnosis_icd10},
              {"total_billed_fen", c.claim.TotalBilledFen()},
              {"state", ins::ToString(c.state)},
              {"reasons", c.reasons},
              {"decided_by", c.decided_by.empty() ? json(nullptr) : json(c.decided_by)},
              {"submitted_at", FormatUtc(c.submitted_at_us)},
              {"paid_at", c.paid_at_us ? json(FormatUtc(*c.paid_at_us)) : json(nullptr)},
              {"adjudication", nullptr}};
  if (c.adjudication) doc["adjudication"] = json::parse(ins::AdjudicationToJson(*c.adjudication));
  return doc;
}

// A claim id in the path: 1 to 18 digits, not 0.
access::ServiceResult<std::int64_t> ClaimId(const std::string& text) {
  if (text.empty() || text.size() > 18 || !MatchesPattern(text, Pattern::kDecimal) ||
      text.find_first_not_of('0') == std::string::npos) {
    return MakeServiceError(ErrorCode::kInvalid, "the agency's claim id: a positive number", "id");
  }
  return std::stoll(text);
}

enum class ReportFormat { kJson, kCsv, kSvg };

struct ReportRange {
  ins::YearMonth from;
  ins::YearMonth to;
  ReportFormat format = ReportFormat::kJson;
  std::string Label() const { return ins::MonthText(from) + " to " + ins::MonthText(to); }
  json Wrap(const char* name, json items) const {
    return {{"from", ins::MonthText(from)}, {"to", ins::MonthText(to)}, {name, std::move(items)}};
  }
};

// ?from=YYYY-MM&to=YYYY-MM (from ≤ to) and ?format=json (default), csv or svg; nothing else.
access::ServiceResult<ReportRange> ReportRangeOf(const HttpRequest& request) {
  for (const auto& [name, value] : request.query) {
    if (name != "from" && name != "to" && name != "format") {
      return MakeServiceError(ErrorCode::kInvalid, "unknown parameter", name);
    }
  }
  ReportRange range;
  for (const char* name : {"from", "to"}) {
    auto month = ins::ParseMonthText(QueryValue(request, name).value_or(""));
    if (!month) return MakeServiceError(ErrorCode::kInvalid, "a month YYYY-MM", name);
    (std::string_view(name) == "from" ? range.from : range.to) = *month;
  }
  if (range.to < range.from) {
    return MakeServiceError(ErrorCode::kInvalid, "the last month is before the first", "to");
  }
  const std::string format = QueryValue(request, "format").value_or("json");
  if (format == "csv") {
    range.format = ReportFormat::kCsv;
  } else if (format == "svg") {
    range.format = ReportFormat::kSvg;
  } else if (format != "json") {
    return MakeServiceError(ErrorCode::kInvalid, "json, csv or svg", "format");
  }
  return range;
}

// ?from= and ?to= as days YYYY-MM-DD or whole months YYYY-MM (from's first day, to's last), as
// `medcard si report facilities|diagnoses|top` take them; ?format= as ReportRangeOf; and the
// report's own parameters (`extra`), nothing else.
struct DayRange {
  Date from;
  Date to;
  ReportFormat format = ReportFormat::kJson;
  std::string Label() const { return from.ToString() + " to " + to.ToString(); }
  json Wrap(const char* name, json items, json totals) const {
    return {{"from", from.ToString()},
            {"to", to.ToString()},
            {name, std::move(items)},
            {"totals", std::move(totals)}};
  }
};

std::optional<Date> DayOrMonth(const std::string& text, bool last_day) {
  if (auto month = ins::ParseMonthText(text)) {
    Date day{month->year, month->month, last_day ? 31 : 1};
    while (!IsValidDate(day)) --day.day;
    return day;
  }
  return ins::ParseIsoDate(text);
}

access::ServiceResult<ReportFormat> FormatOf(const HttpRequest& request) {
  const std::string format = QueryValue(request, "format").value_or("json");
  if (format == "csv") return ReportFormat::kCsv;
  if (format == "svg") return ReportFormat::kSvg;
  if (format != "json") return MakeServiceError(ErrorCode::kInvalid, "json, csv or svg", "format");
  return ReportFormat::kJson;
}

access::ServiceResult<DayRange> DayRangeOf(const HttpRequest& request,
                                           std::initializer_list<std::string_view> extra) {
  for (const auto& [name, value] : request.query) {
    if (name != "from" && name != "to" && name != "format" &&
        std::find(extra.begin(), extra.end(), name) == extra.end()) {
      return MakeServiceError(ErrorCode::kInvalid, "unknown parameter", name);
    }
  }
  DayRange range;
  auto from = DayOrMonth(QueryValue(request, "from").value_or(""), false);
  if (!from)
    return MakeServiceError(ErrorCode::kInvalid, "a day YYYY-MM-DD or month YYYY-MM", "from");
  auto to = DayOrMonth(QueryValue(request, "to").value_or(""), true);
  if (!to) return MakeServiceError(ErrorCode::kInvalid, "a day YYYY-MM-DD or month YYYY-MM", "to");
  if (*to < *from) {
    return MakeServiceError(ErrorCode::kInvalid, "the last day is before the first", "to");
  }
  range.from = *from;
  range.to = *to;
  auto format = FormatOf(request);
  if (!format) return format.error();
  range.format = *format;
  return range;
}

json TotalsJson(const ins::SpendingTotals& t) {
  return {{"claims", t.claims},
          {"people", t.people},
          {"billed_fen", t.billed_fen},
          {"pooled_fund_fen", t.pooled_fund_fen},
          {"personal_account_fen", t.personal_account_fen},
          {"self_pay_fen", t.self_pay_fen},
          {"card_purchases", t.card_purchases},
          {"card_spent_fen", t.card_spent_fen}};
}

json BandJson(const ins::BalanceBand& b) {
  return {{"band", ins::BandLabel(b)},
          {"from_fen", b.from_fen},
          {"to_fen", b.to_fen ? json(*b.to_fen) : json(nullptr)},
          {"people", b.people},
          {"total_fen", b.total_fen}};
}

HttpResponse CsvResponse(std::string csv) {
  HttpResponse response;
  response.content_type = "text/csv; charset=utf-8";
  response.body = std::move(csv);
  return response;
}

HttpResponse SvgResponse(std::string svg) {
  HttpResponse response;
  response.content_type = "image/svg+xml";
  response.body = std::move(svg);
  return response;
}

const Schema& NoFieldsSchema() {
  static const Schema schema;
  return schema;
}

// A body that carries whole documents (a forecast's scenario and proposed policy): one JSON
// object, no key twice in any object, nested no deeper than a policy file needs. The documents
// inside are checked again by their own strict parsers.
constexpr int kMaxDocumentDepth = kMaxJsonDepth + 4;
access::ServiceResult<json> StrictDocument(std::string_view body) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDocumentDepth) too_deep = true;
    if (event == json::parse_event_t::object_start) {
      keys_per_object.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys_per_object.empty()) keys_per_object.pop_back();
    } else if (event == json::parse_event_t::key && !keys_per_object.empty() &&
               parsed.is_string()) {
      if (!keys_per_object.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  json parsed = json::parse(body.begin(), body.end(), callback, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeServiceError(ErrorCode::kInvalid, "the body must be one JSON object");
  }
  if (too_deep)
    return MakeServiceError(ErrorCode::kInvalid, "the request body is nested too deeply");
  if (!duplicate.empty())
    return MakeServiceError(ErrorCode::kInvalid, "duplicate field", duplicate);
  return parsed;
}

// A document's parser error ("claims[0].from_age: ...") as a 400 naming the field inside the
// request: "scenario.claims[0].from_age".
HttpResponse NestedDocumentError(const std::string& name, const std::string& message) {
  const auto colon = message.find(": ");
  if (colon != std::string::npos && colon < 120 && message.find(' ') == colon + 1) {
    return ErrorResponse(400, "invalid", name + "." + message,
                         name + "." + message.substr(0, colon));
  }
  return ErrorResponse(400, "invalid", name + ": " + message, name);
}

// The month after the one `micros` (UTC) falls in: the forecast's default start, as the CLI's.
ins::YearMonth MonthAfter(std::int64_t micros) {
  const std::chrono::sys_days day = std::chrono::floor<std::chrono::days>(
      std::chrono::sys_time<std::chrono::microseconds>(std::chrono::microseconds(micros)));
  const std::chrono::year_month_day date(day);
  ins::YearMonth month{static_cast<int>(date.year()), static_cast<int>(unsigned(date.month())) + 1};
  if (month.month > 12) month = {month.year + 1, 1};
  return month;
}

json ForecastYearsJson(const ins::Forecast& forecast) {
  json years = json::array();
  for (const auto& y : forecast.years) {
    years.push_back({{"year", y.year},
                     {"first_month", ins::MonthText(y.first_month)},
                     {"contributors", y.contributors},
                     {"retirees", y.retirees},
                     {"retirements", y.retirements},
                     {"employer_fen", y.employer_fen},
                     {"employee_fen", y.employee_fen},
                     {"personal_account_fen", y.personal_account_fen},
                     {"retiree_allowance_fen", y.retiree_allowance_fen},
                     {"pooled_income_fen", y.pooled_income_fen},
                     {"admissions", y.admissions},
                     {"claims_fen", y.claims_fen},
                     {"pooled_fund_closing_fen", y.pooled_fund_closing_fen},
                     {"personal_accounts_spent_fen", y.personal_accounts_spent_fen},
                     {"personal_accounts_closing_fen", y.personal_accounts_closing_fen}});
  }
  return years;
}

}  // namespace

std::vector<const store::MigrationSet*> SiMigrationSets() {
  return {&ins::Migrations(), &audit::Migrations(), &access::Migrations(), &api::Migrations()};
}

// A signed-in request to one of the agency's routes: the session layer's checks passed.
struct SiApi::Context {
  const HttpRequest& request;
  const PathParams& params;
  store::Connection& connection;
  const access::Principal& principal;
  const std::optional<JsonRequest>& body;
  std::int64_t now_us = 0;
  // The session layer's: stores the Idempotency-Key's answer inside a transaction (or empty).
  const std::function<Status(store::Connection&, const HttpResponse&)>& record_answer;

  const std::string& from() const { return request.remote_address; }
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
  audit::Entry EntryFor(const std::string& action, const std::string& target,
                        const json& details) const {
    audit::Entry entry;
    entry.actor = principal.login;
    entry.action = action;
    entry.target = target;
    entry.details = DumpJson(details);
    entry.from = from();
    return entry;
  }

  // Records a mutation that a service has committed in its own transaction (the monthly run,
  // payments, allocation batches, claims, imports): the entry follows in a transaction of its
  // own. A failure to record it is a 500: the client is told even though the change stays.
  HttpResponse Audited(HttpResponse response, const std::string& action, const std::string& target,
                       const json& details) {
    const audit::Entry entry = EntryFor(action, target, details);
    auto recorded = store::RunTransaction(connection, store::TransactionMode::kWrite,
                                          [&](store::Connection& c) -> store::DbStatus {
                                            auto appended = audit::AppendDb(c, entry, now_us);
                                            if (!appended) return appended.error();
                                            return store::Done{};
                                          });
    if (!recorded) {
      spdlog::error("{}: {} on {} done but not audited: {}", kLogName, action, target,
                    recorded.error().message);
      return ErrorResponse(500, "internal", "the change was made but could not be audited");
    }
    return response;
  }

  // A registry change, its audit entry and (with an Idempotency-Key) its stored answer in ONE
  // write transaction: `change` runs the insurance::Registry call on the transaction's
  // connection (the registry joins an open transaction, registry.cc) and says what to record.
  // An answer that is not 2xx rolls the change back and records nothing; an entry that cannot
  // be appended undoes the change (500).
  struct Change {
    HttpResponse response;
    std::string target;
    json details;
  };
  HttpResponse ChangeAudited(const std::string& action,
                             const std::function<Change(store::Connection&)>& change) {
    HttpResponse answer;
    bool refused = false;
    auto status = store::RunTransaction(
        connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
          Change made = change(c);
          answer = std::move(made.response);
          refused = answer.status < 200 || answer.status >= 300;
          if (refused) return store::MakeDbError(store::ErrorKind::kOther, "refused: roll back");
          auto appended = audit::AppendDb(c, EntryFor(action, made.target, made.details), now_us);
          if (!appended) return appended.error();
          // With an Idempotency-Key, its answer commits with the change too.
          if (record_answer) {
            if (Status stored = record_answer(c, answer); !stored.ok()) {
              return store::MakeDbError(store::ErrorKind::kOther, stored.error().message);
            }
          }
          return store::Done{};
        });
    if (refused) return answer;
    if (!status) return InternalError(kLogName, status.error());
    return answer;
  }
};

SiApi::SiApi(SiApiServices services)
    : services_(std::move(services)),
      pool_(*services_.database),
      layer_(*services_.directory, pool_, {std::string(kLogName), services_.clock_us}) {
  AddSessionRoutes();
  AddRegistryRoutes();
  AddMoneyRoutes();
  AddCheckRoutes();
  AddClaimRoutes();
  AddImportRoutes();
  AddReportRoutes();
  AddSpendingReportRoutes();
}

void SiApi::AddAuthed(std::string method, std::string pattern, std::string operation,
                      const Schema* schema, bool raw_body, Handler handler) {
  router_.Add(std::move(method), std::move(pattern),
              [this, route = SessionRoute{std::move(operation), schema, raw_body},
               handler = std::move(handler)](const HttpRequest& request, const PathParams& params) {
                return layer_.Run(request, route, [&](SessionRequest& session) {
                  Context context{
                      request,      params,         session.connection,   session.principal,
                      session.body, session.now_us, session.record_answer};
                  return handler(context);
                });
              });
}

// ---- Sessions.

void SiApi::AddSessionRoutes() {
  router_.Add("POST", "/v1/sessions", [this](const HttpRequest& request, const PathParams&) {
    return layer_.SignIn(request);
  });
  // Signing out needs only a live session, whatever the role.
  AddAuthed("DELETE", "/v1/sessions/current", "", nullptr, false, [this](Context& c) {
    auto done = services_.directory->SignOut(c.connection, BearerToken(c.request), c.from());
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
    return c.ChangeAudited("si.unit.add", [&](store::Connection& tx) -> Context::Change {
      ins::Registry registry(tx, {[&c] { return c.now_us; }});
      auto added = registry.AddUnit(unit);
      if (!added) return {ErrorResponse(added.error()), {}, {}};
      return {JsonOk(UnitJson(unit), 201), "unit:" + unit.code, body.json()};
    });
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
    return JsonOk({{"items", items}, {"next", next}});
  });
  AddAuthed("GET", "/v1/units/{code}", "si.read", nullptr, false, [](Context& c) {
    ins::Registry registry(c.connection);
    auto unit = registry.FindUnit(c.Param("code"));
    if (!unit) return ErrorResponse(unit.error());
    return JsonOk(UnitJson(*unit));
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
    return c.ChangeAudited("si.person.enrol", [&](store::Connection& tx) -> Context::Change {
      ins::Registry registry(tx, {[&c] { return c.now_us; }});
      auto state = registry.Enrol(enrolment);
      if (!state) return {ErrorResponse(state.error()), {}, {}};
      return {JsonOk(PersonJson(*state), 201),
              "person:" + state->ssn,
              {{"unit_code", state->unit_code},
               {"category", ins::ToString(state->category)},
               {"effective", state->effective.ToString()}}};
    });
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
    return JsonOk({{"current", history->empty() ? json(nullptr) : PersonJson(history->back())},
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
        return c.ChangeAudited("si.person." + event, [&](store::Connection& tx) -> Context::Change {
          ins::Registry registry(tx, {[&c] { return c.now_us; }});
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
          if (!state) return {ErrorResponse(state.error()), {}, {}};
          return {JsonOk(PersonJson(*state), 201), "person:" + ssn, body.json()};
        });
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
              if (summary->already_finished) return JsonOk(SummaryJson(*summary));
              return c.Audited(JsonOk(SummaryJson(*summary)), "si.month.run",
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
    return JsonOk({{"month", ins::MonthText(*month)}, {"units", units}, {"totals", totals}});
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
    return c.Audited(JsonOk(answer, 201), "si.payment.add", "unit:" + payment.unit_code,
                     body.json());
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

  AddAuthed(
      "POST", "/v1/allocations/acknowledgements", "si.allocation.reconcile", nullptr, true,
      [this](Context& c) {
        if (!services_.batch_key) {
          return ErrorResponse(422, "unprocessable",
                               "the server has no allocation batch key (" +
                                   std::string(ins::kBatchKeyEnvironment) + ")");
        }
        auto text =
            SingleTextField(c.request.body, "acknowledgement", "the acknowledgement file's text");
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
        if (report->already_reconciled) return JsonOk(answer);
        return c.Audited(JsonOk(answer), "si.allocation.reconcile", "batch:" + report->batch_id,
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
    return JsonOk({{"valid", true},
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
    return JsonOk({{"ok", problems->empty()}, {"problems", *problems}, {"balances", accounts}});
  });

  AddAuthed("GET", "/v1/audit", "audit.read", nullptr, false,
            [](Context& c) { return AuditPage(c.connection, c.request, kLogName); });
}

// ---- Stored claims (docs/insurance.md "Stored claims").
// A facility's claim is stored, adjudicated against the policy and the registry, approved or
// rejected by the signed-in officer (recorded as decided_by), and paid; each step is the claim
// store's own transaction and is audited right after it (si.claim.<step>).

void SiApi::AddClaimRoutes() {
  AddAuthed("POST", "/v1/claims", "si.claim.adjudicate", nullptr, true, [this](Context& c) {
    auto facility = QueryValue(c.request, "facility");
    if (!facility || !ins::IsFacilityCode(*facility)) {
      return ErrorResponse(400, "invalid", "the facility's code: 1 to 20 letters, digits or '-'",
                           "facility");
    }
    auto file = ins::ParseClaimJson(c.request.body);
    if (!file) return DocumentError(file.error().message);
    ins::ClaimStore claims(c.connection, *services_.policies, {[&c] { return c.now_us; }});
    auto stored = claims.Submit(*facility, file->claim);
    if (!stored) return ErrorResponse(stored.error());
    return c.Audited(JsonOk(StoredClaimJson(*stored), 201), "si.claim.submit",
                     "claim:" + std::to_string(stored->id),
                     {{"facility", stored->facility},
                      {"claim_id", stored->claim.claim_id},
                      {"person_id", stored->claim.person_id},
                      {"total_billed_fen", stored->claim.TotalBilledFen()}});
  });
  AddAuthed("GET", "/v1/claims", "si.read", nullptr, false, [this](Context& c) {
    auto page = ParsePage(c.request);
    if (!page) return ErrorResponse(page.error());
    std::optional<ins::ClaimState> state;
    if (auto text = QueryValue(c.request, "state")) {
      state = ins::ParseClaimState(*text);
      if (!state) {
        return ErrorResponse(400, "invalid", "submitted, adjudicated, approved, paid or rejected",
                             "state");
      }
    }
    const std::string person = QueryValue(c.request, "person").value_or("");
    if (!person.empty() && !ins::IsValidSocialSecurityNumber(person)) {
      return ErrorResponse(400, "invalid", "not a valid 18-character identity number", "person");
    }
    ins::ClaimStore claims(c.connection, *services_.policies);
    auto listed = claims.List(state, person);
    if (!listed) return ErrorResponse(listed.error());
    // The cursor is the last claim id of the page (claims come in id order).
    const std::int64_t after = page->after.value_or(0);
    json items = json::array();
    std::optional<std::int64_t> last;
    bool more = false;
    for (const auto& claim : *listed) {
      if (claim.id <= after) continue;
      if (static_cast<std::int64_t>(items.size()) == page->limit) {
        more = true;
        break;
      }
      items.push_back(StoredClaimJson(claim));
      last = claim.id;
    }
    return JsonOk({{"items", items}, {"next", more ? json(std::to_string(*last)) : json(nullptr)}});
  });
  AddAuthed("GET", "/v1/claims/{id}", "si.read", nullptr, false, [this](Context& c) {
    auto id = ClaimId(c.Param("id"));
    if (!id) return ErrorResponse(id.error());
    ins::ClaimStore claims(c.connection, *services_.policies);
    auto found = claims.Find(*id);
    if (!found) return ErrorResponse(found.error());
    return JsonOk(StoredClaimJson(*found));
  });

  // adjudicate, approve, reject and pay: the claim after the step.
  using Step =
      std::function<ins::ServiceResult<ins::StoredClaim>(ins::ClaimStore&, std::int64_t, Context&)>;
  auto add_step = [this](const std::string& step, const Schema* schema, Step run) {
    AddAuthed("POST", "/v1/claims/{id}/" + step, "si.claim.adjudicate", schema, false,
              [this, step, run = std::move(run)](Context& c) {
                auto id = ClaimId(c.Param("id"));
                if (!id) return ErrorResponse(id.error());
                ins::ClaimStore claims(c.connection, *services_.policies,
                                       {[&c] { return c.now_us; }});
                auto before = claims.Find(*id);
                if (!before) return ErrorResponse(before.error());
                auto after = run(claims, *id, c);
                if (!after) return ErrorResponse(after.error());
                // Paying a paid claim again shows it and changes nothing: nothing to record.
                if (after->state == before->state) return JsonOk(StoredClaimJson(*after));
                json details = {{"state", ins::ToString(after->state)}};
                if (after->adjudication) {
                  details["pooled_fund_fen"] = after->adjudication->pooled_fund_fen;
                  details["personal_account_fen"] = after->adjudication->personal_account_fen;
                  details["self_pay_fen"] = after->adjudication->self_pay_fen;
                }
                if (c.body && c.body->Has("reason")) details["reason"] = c.body->String("reason");
                return c.Audited(JsonOk(StoredClaimJson(*after)), "si.claim." + step,
                                 "claim:" + std::to_string(*id), details);
              });
  };
  add_step("adjudicate", &NoFieldsSchema(), [](ins::ClaimStore& claims, std::int64_t id, Context&) {
    return claims.Adjudicate(id);
  });
  add_step("approve", &NoFieldsSchema(), [](ins::ClaimStore& claims, std::int64_t id, Context& c) {
    return claims.Approve(id, c.principal.login);
  });
  static const Schema reject = Schema().String("reason", Presence::kRequired, 1, 100);
  add_step("reject", &reject, [](ins::ClaimStore& claims, std::int64_t id, Context& c) {
    return claims.Reject(id, c.principal.login, c.body->String("reason"));
  });
  add_step("pay", &NoFieldsSchema(),
           [](ins::ClaimStore& claims, std::int64_t id, Context&) { return claims.Pay(id); });
}

// ---- CSV imports (docs/insurance.md "Imports"): all or nothing.

void SiApi::AddImportRoutes() {
  AddAuthed("POST", "/v1/imports/{kind}", "si.registry.change", nullptr, true, [](Context& c) {
    auto kind = ins::ParseImportKind(c.Param("kind"));
    if (!kind) return ErrorResponse(400, "invalid", "units, people or wages", "kind");
    auto csv = SingleTextField(c.request.body, "csv", "the CSV file's text");
    if (!csv) return ErrorResponse(csv.error());
    auto report = ins::Import(c.connection, *kind, *csv, [&c] { return c.now_us; });
    if (!report) return ErrorResponse(report.error());
    if (!report->applied) {
      // Every bad row, with its line and column; nothing of the file was applied.
      json problems = json::array();
      for (const auto& problem : report->problems) {
        problems.push_back({{"line", problem.line},
                            {"field", problem.field.empty() ? json(nullptr) : json(problem.field)},
                            {"message", problem.message}});
      }
      std::string message =
          std::to_string(report->problems.size()) + " problem(s); nothing was imported";
      if (!report->problems.empty()) {
        const auto& first = report->problems.front();
        message += ". First: line " + std::to_string(first.line) +
                   (first.field.empty() ? "" : ", " + first.field) + ": " + first.message;
      }
      json answer = {{"error", {{"code", "unprocessable"}, {"message", message}, {"field", "csv"}}},
                     {"problems", problems}};
      return JsonOk(answer, 422);
    }
    json answer = {{"kind", ins::ToString(*kind)}, {"rows", report->rows}, {"applied", true}};
    return c.Audited(JsonOk(answer), "si.import." + std::string(ins::ToString(*kind)),
                     "import:" + std::string(ins::ToString(*kind)), {{"rows", report->rows}});
  });

  // The bank's signed daily consumption detail (docs/insurance.md "Consumption detail"), as
  // `medcard si consumption import`: {"detail": "<the file's text>"}. Refused whole when it does
  // not authenticate or check; a day is imported once (the same file again changes nothing, another
  // file for that day is a 409). The bank's signed files come in under si.allocation.reconcile.
  // A file over the 64 KiB body limit (some 300 purchases) is refused with 413 before it is read:
  // such a day is imported with the CLI.
  AddAuthed(
      "POST", "/v1/consumption", "si.allocation.reconcile", nullptr, true, [this](Context& c) {
        if (!services_.batch_key) {
          return ErrorResponse(
              422, "unprocessable",
              "the server has no batch key (" + std::string(ins::kBatchKeyEnvironment) + ")");
        }
        auto text = SingleTextField(c.request.body, "detail", "the consumption detail file's text");
        if (!text) return ErrorResponse(text.error());
        auto imported = ins::ImportConsumption(c.connection, *text, *services_.batch_key,
                                               [&c] { return c.now_us; });
        if (!imported) {
          access::ServiceError error = imported.error();
          if (error.field.empty() || error.field == "file") error.field = "detail";
          return ErrorResponse(error);
        }
        json answer = {{"day", imported->day.ToString()},
                       {"count", imported->count},
                       {"total_fen", imported->total_fen},
                       {"already_imported", imported->already_imported}};
        if (imported->already_imported) return JsonOk(answer);
        return c.Audited(JsonOk(answer), "si.consumption.import", "day:" + imported->day.ToString(),
                         {{"count", imported->count}, {"total_fen", imported->total_fen}});
      });
}

// ---- Reports (docs/insurance.md "Reports"): ?from=YYYY-MM&to=YYYY-MM&format=json|csv|svg.

void SiApi::AddReportRoutes() {
  AddAuthed("GET", "/v1/reports/fund", "si.read", nullptr, false, [](Context& c) {
    auto range = ReportRangeOf(c.request);
    if (!range) return ErrorResponse(range.error());
    auto months = ins::FundByMonth(c.connection, range->from, range->to);
    if (!months) return ErrorResponse(months.error());
    if (range->format == ReportFormat::kCsv) return CsvResponse(ins::FundByMonthCsv(*months));
    if (range->format == ReportFormat::kSvg) {
      ins::BarChart chart{"Pooled-fund income by month, " + range->Label(), "yuan", {}};
      for (const auto& m : *months)
        chart.bars.push_back({ins::MonthText(m.month), m.pooled_fund_fen});
      return SvgResponse(ins::BarChartSvg(chart));
    }
    json items = json::array();
    for (const auto& m : *months) {
      items.push_back({{"month", ins::MonthText(m.month)},
                       {"people", m.people},
                       {"employer_fen", m.employer_fen},
                       {"employee_fen", m.employee_fen},
                       {"billed_fen", m.billed_fen},
                       {"collected_fen", m.collected_fen},
                       {"arrears_fen", m.arrears_fen},
                       {"personal_account_fen", m.personal_account_fen},
                       {"retiree_allowance_fen", m.retiree_allowance_fen},
                       {"pooled_fund_fen", m.pooled_fund_fen}});
    }
    return JsonOk(range->Wrap("months", items));
  });
  AddAuthed("GET", "/v1/reports/arrears", "si.read", nullptr, false, [](Context& c) {
    auto range = ReportRangeOf(c.request);
    if (!range) return ErrorResponse(range.error());
    auto units = ins::ArrearsByUnit(c.connection, range->from, range->to);
    if (!units) return ErrorResponse(units.error());
    if (range->format == ReportFormat::kCsv) return CsvResponse(ins::ArrearsByUnitCsv(*units));
    if (range->format == ReportFormat::kSvg) {
      ins::BarChart chart{"Arrears by unit, " + range->Label(), "yuan", {}};
      for (const auto& u : *units) chart.bars.push_back({u.unit_code, u.arrears_fen});
      return SvgResponse(ins::BarChartSvg(chart));
    }
    json items = json::array();
    for (const auto& u : *units) {
      items.push_back({{"unit_code", u.unit_code},
                       {"unit_name", u.unit_name},
                       {"months", u.months},
                       {"billed_fen", u.billed_fen},
                       {"paid_fen", u.paid_fen},
                       {"arrears_fen", u.arrears_fen}});
    }
    return JsonOk(range->Wrap("units", items));
  });
  AddAuthed("GET", "/v1/reports/balances", "si.read", nullptr, false, [](Context& c) {
    auto range = ReportRangeOf(c.request);
    if (!range) return ErrorResponse(range.error());
    auto bands = ins::AllocationDistribution(c.connection, range->from, range->to,
                                             ins::DefaultBalanceBandEdges());
    if (!bands) return ErrorResponse(bands.error());
    if (range->format == ReportFormat::kCsv) {
      return CsvResponse(ins::AllocationDistributionCsv(*bands));
    }
    if (range->format == ReportFormat::kSvg) {
      ins::BarChart chart{
          "Personal-account allocation per person, " + range->Label(), "people", {}};
      for (const auto& b : *bands) chart.bars.push_back({ins::BandLabel(b), b.people});
      return SvgResponse(ins::HistogramSvg(chart));
    }
    json items = json::array();
    for (const auto& b : *bands) {
      items.push_back(BandJson(b));
    }
    return JsonOk(range->Wrap("bands", items));
  });
}

// Spending from the stored claims and the bank's consumption detail (docs/insurance.md
// "Spending reports"), and the personal accounts' estimated balances.
void SiApi::AddSpendingReportRoutes() {
  AddAuthed("GET", "/v1/reports/facilities", "si.read", nullptr, false, [](Context& c) {
    auto range = DayRangeOf(c.request, {});
    if (!range) return ErrorResponse(range.error());
    auto report = ins::SpendingByFacility(c.connection, range->from, range->to);
    if (!report) return ErrorResponse(report.error());
    if (range->format == ReportFormat::kCsv)
      return CsvResponse(ins::SpendingByFacilityCsv(*report));
    if (range->format == ReportFormat::kSvg) {
      return SvgResponse(ins::BarChartSvg(ins::SpendingByFacilityChart(*report, range->Label())));
    }
    json items = json::array();
    for (const auto& f : report->rows) {
      items.push_back({{"facility", f.facility},
                       {"grade", f.grade == 0 ? json(nullptr) : json(f.grade)},
                       {"claims", f.claims},
                       {"billed_fen", f.billed_fen},
                       {"pooled_fund_fen", f.pooled_fund_fen},
                       {"personal_account_fen", f.personal_account_fen},
                       {"self_pay_fen", f.self_pay_fen},
                       {"card_purchases", f.card_purchases},
                       {"card_spent_fen", f.card_spent_fen}});
    }
    return JsonOk(range->Wrap("facilities", items, TotalsJson(report->totals)));
  });
  AddAuthed("GET", "/v1/reports/diagnoses", "si.read", nullptr, false, [](Context& c) {
    auto range = DayRangeOf(c.request, {"level"});
    if (!range) return ErrorResponse(range.error());
    const std::string level = QueryValue(c.request, "level").value_or("chapter");
    if (level != "chapter" && level != "category") {
      return ErrorResponse(400, "invalid", "chapter or category", "level");
    }
    auto report = ins::SpendingByDiagnosis(
        c.connection, range->from, range->to,
        level == "chapter" ? ins::DiagnosisLevel::kChapter : ins::DiagnosisLevel::kCategory);
    if (!report) return ErrorResponse(report.error());
    if (range->format == ReportFormat::kCsv)
      return CsvResponse(ins::SpendingByDiagnosisCsv(*report));
    if (range->format == ReportFormat::kSvg) {
      return SvgResponse(ins::BarChartSvg(ins::SpendingByDiagnosisChart(*report, range->Label())));
    }
    json items = json::array();
    for (const auto& d : report->rows) {
      items.push_back({{"code", d.code},
                       {"title", d.title},
                       {"claims", d.claims},
                       {"people", d.people},
                       {"billed_fen", d.billed_fen},
                       {"pooled_fund_fen", d.pooled_fund_fen},
                       {"personal_account_fen", d.personal_account_fen},
                       {"self_pay_fen", d.self_pay_fen}});
    }
    json answer = range->Wrap("diagnoses", items, TotalsJson(report->totals));
    answer["level"] = level;
    return JsonOk(answer);
  });
  AddAuthed("GET", "/v1/reports/top-consumers", "si.read", nullptr, false, [](Context& c) {
    auto range = DayRangeOf(c.request, {"limit"});
    if (!range) return ErrorResponse(range.error());
    std::int64_t limit = 20;
    if (auto text = QueryValue(c.request, "limit")) {
      if (text->empty() || text->size() > 4 || !MatchesPattern(*text, Pattern::kDecimal) ||
          std::stoll(*text) < 1 || std::stoll(*text) > 1000) {
        return ErrorResponse(400, "invalid", "1 to 1000 people", "limit");
      }
      limit = std::stoll(*text);
    }
    auto report = ins::TopConsumers(c.connection, range->from, range->to, limit);
    if (!report) return ErrorResponse(report.error());
    if (range->format == ReportFormat::kCsv) return CsvResponse(ins::TopConsumersCsv(*report));
    if (range->format == ReportFormat::kSvg) {
      return SvgResponse(ins::BarChartSvg(ins::TopConsumersChart(*report, range->Label())));
    }
    json items = json::array();
    for (const auto& p : report->rows) {
      items.push_back({{"person_id", p.person_id},
                       {"name", p.name},
                       {"claims", p.claims},
                       {"billed_fen", p.billed_fen},
                       {"pooled_fund_fen", p.pooled_fund_fen},
                       {"claims_personal_account_fen", p.claims_personal_account_fen},
                       {"self_pay_fen", p.self_pay_fen},
                       {"card_purchases", p.card_purchases},
                       {"card_spent_fen", p.card_spent_fen},
                       {"total_fen", p.total_fen}});
    }
    json totals = TotalsJson(report->totals);
    totals["total_fen"] = report->total_fen;
    return JsonOk(range->Wrap("people", items, totals));
  });
  AddAuthed("GET", "/v1/reports/personal-accounts", "si.read", nullptr, false, [](Context& c) {
    for (const auto& [name, value] : c.request.query) {
      if (name != "as_of" && name != "format") {
        return ErrorResponse(400, "invalid", "unknown parameter", name);
      }
    }
    auto as_of = ins::ParseIsoDate(QueryValue(c.request, "as_of").value_or(""));
    if (!as_of) return ErrorResponse(400, "invalid", "a day YYYY-MM-DD", "as_of");
    auto format = FormatOf(c.request);
    if (!format) return ErrorResponse(format.error());
    auto distribution =
        ins::PersonalAccountBalances(c.connection, *as_of, ins::DefaultBalanceBandEdges());
    if (!distribution) return ErrorResponse(distribution.error());
    if (*format == ReportFormat::kCsv) {
      return CsvResponse(ins::PersonalAccountBalancesCsv(*distribution));
    }
    if (*format == ReportFormat::kSvg) {
      return SvgResponse(
          ins::HistogramSvg(ins::PersonalAccountBalancesChart(*distribution, *as_of)));
    }
    json bands = json::array();
    for (const auto& b : distribution->bands) bands.push_back(BandJson(b));
    return JsonOk({{"as_of", as_of->ToString()},
                   {"bands", bands},
                   {"overdrawn_people", distribution->overdrawn_people},
                   {"overdrawn_fen", distribution->overdrawn_fen},
                   {"people", distribution->people},
                   {"total_fen", distribution->total_fen}});
  });

  // Card spending from the imported consumption detail, per person or per facility (merchant),
  // largest first, as `medcard si consumption show`: ?from=&to= (days or months) and ?by=.
  AddAuthed("GET", "/v1/consumption", "si.read", nullptr, false, [](Context& c) {
    for (const auto& [name, value] : c.request.query) {
      if (name != "from" && name != "to" && name != "by") {
        return ErrorResponse(400, "invalid", "unknown parameter", name);
      }
    }
    auto from = DayOrMonth(QueryValue(c.request, "from").value_or(""), false);
    if (!from) return ErrorResponse(400, "invalid", "a day YYYY-MM-DD or month YYYY-MM", "from");
    auto to = DayOrMonth(QueryValue(c.request, "to").value_or(""), true);
    if (!to) return ErrorResponse(400, "invalid", "a day YYYY-MM-DD or month YYYY-MM", "to");
    if (*to < *from) return ErrorResponse(400, "invalid", "the last day is before the first", "to");
    const std::string by = QueryValue(c.request, "by").value_or("person");
    if (by != "person" && by != "facility") {
      return ErrorResponse(400, "invalid", "person or facility", "by");
    }
    auto totals = ins::ConsumptionTotals(
        c.connection, by == "person" ? ins::ConsumptionBy::kPerson : ins::ConsumptionBy::kMerchant,
        *from, *to);
    if (!totals) return ErrorResponse(totals.error());
    json items = json::array();
    std::int64_t count = 0;
    ins::Fen total_fen = 0;
    for (const auto& t : *totals) {
      items.push_back({{by == "person" ? "person_id" : "facility", t.key},
                       {"count", t.count},
                       {"total_fen", t.total_fen}});
      count += t.count;
      total_fen += t.total_fen;
    }
    return JsonOk({{"from", from->ToString()},
                   {"to", to->ToString()},
                   {"by", by},
                   {"items", items},
                   {"totals", {{"count", count}, {"total_fen", total_fen}}}});
  });

  // The forecast and the what-if (docs/insurance.md "Forecast"), as `medcard si forecast`:
  // {"years": 1..5, "start": "YYYY-MM" (default: next month), "scenario": {the scenario file},
  // "policy": {a proposed policy file}}; ?format=json|csv|svg. It reads the registry and the
  // books and changes nothing, so auditors may run it too.
  AddAuthed("POST", "/v1/forecast", "si.read", nullptr, true, [this](Context& c) {
    for (const auto& [name, value] : c.request.query) {
      if (name != "format") return ErrorResponse(400, "invalid", "unknown parameter", name);
    }
    auto format = FormatOf(c.request);
    if (!format) return ErrorResponse(format.error());
    auto document = StrictDocument(c.request.body);
    if (!document) return ErrorResponse(document.error());
    for (const auto& [field, value] : document->items()) {
      if (field != "years" && field != "start" && field != "scenario" && field != "policy") {
        return ErrorResponse(400, "invalid", "unknown field", field);
      }
    }
    const json& body = *document;
    if (!body.contains("years") || !body["years"].is_number_integer() ||
        body["years"].get<std::int64_t>() < 1 || body["years"].get<std::int64_t>() > 5) {
      return ErrorResponse(400, "invalid", "1 to 5 years, a whole number", "years");
    }
    const int years = body["years"].get<int>();
    ins::YearMonth start = MonthAfter(c.now_us);
    if (body.contains("start")) {
      auto month = body["start"].is_string()
                       ? ins::ParseMonthText(body["start"].get_ref<const std::string&>())
                       : std::nullopt;
      if (!month) return ErrorResponse(400, "invalid", "a month YYYY-MM", "start");
      start = *month;
    }
    ins::Scenario scenario;
    if (body.contains("scenario")) {
      if (!body["scenario"].is_object()) {
        return ErrorResponse(400, "invalid", "the scenario: a JSON object", "scenario");
      }
      auto parsed = ins::ParseScenarioJson(body["scenario"].dump());
      if (!parsed) return NestedDocumentError("scenario", parsed.error().message);
      scenario = *parsed;
    }
    std::optional<ins::Policy> proposed;
    if (body.contains("policy")) {
      if (!body["policy"].is_object()) {
        return ErrorResponse(400, "invalid", "the proposed policy: a JSON object", "policy");
      }
      auto parsed = ins::ParsePolicyJson(body["policy"].dump());
      if (!parsed) return NestedDocumentError("policy", parsed.error().message);
      proposed = *parsed;
    }
    auto what_if = ins::ForecastFromRegistry(c.connection, *services_.policies, scenario, start,
                                             years, proposed);
    if (!what_if) return ErrorResponse(what_if.error());
    if (*format == ReportFormat::kCsv) {
      return CsvResponse(ins::ForecastCsv(*what_if, proposed.has_value()));
    }
    if (*format == ReportFormat::kSvg) {
      // The CLI's chart: the pooled fund under each policy and the personal accounts.
      ins::LineChart chart{
          "Pooled-fund balance forecast from " + ins::MonthText(start), "yuan", {}, {}};
      ins::LineSeries current{"current policy", {}};
      ins::LineSeries accounts{"personal accounts (current policy)", {}};
      ins::LineSeries changed{"proposed policy " + (proposed ? proposed->name : ""), {}};
      for (std::size_t i = 0; i < what_if->current.years.size(); ++i) {
        chart.x_labels.push_back("year " + std::to_string(i + 1));
        current.values_fen.push_back(what_if->current.years[i].pooled_fund_closing_fen);
        accounts.values_fen.push_back(what_if->current.years[i].personal_accounts_closing_fen);
        if (proposed) {
          changed.values_fen.push_back(what_if->proposed.years[i].pooled_fund_closing_fen);
        }
      }
      chart.series.push_back(current);
      if (proposed) chart.series.push_back(changed);
      chart.series.push_back(accounts);
      return SvgResponse(ins::LineChartSvg(chart));
    }
    return JsonOk(
        {{"start", ins::MonthText(start)},
         {"years", years},
         {"opening_pooled_fund_fen", what_if->current.opening_pooled_fund_fen},
         {"opening_personal_accounts_fen", what_if->current.opening_personal_accounts_fen},
         {"current", ForecastYearsJson(what_if->current)},
         {"proposed", proposed ? ForecastYearsJson(what_if->proposed) : json(nullptr)},
         {"pooled_fund_change_fen",
          proposed ? json(what_if->pooled_fund_change_fen) : json(nullptr)}});
  });
}

}  // namespace medcard::api
