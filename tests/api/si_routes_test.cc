// The agency's API without a network (SiApi::Handle), on SQLite and PostgreSQL: officers run the
// registry and the month, auditors read and check but change nothing, a session from another
// database (the bank's) is not valid here, bad input of every kind is refused with the right 4xx
// and changes nothing, and docs/api/si-openapi.yaml lists exactly the routes registered.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "access/directory.h"
#include "api/si_routes.h"
#include "audit/audit_log.h"
#include "insurance/monthly_run.h"
#include "insurance/policy.h"
#include "si_api_fixture.h"
#include "test_database.h"

namespace medcard::api {
namespace {

using nlohmann::json;
using si_test::kA;
using si_test::kB;
using si_test::SiApiTest;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

TEST_P(SiApiTest, OfficerRunsTheRegistryAndTheMonth) {
  const std::string officer = SignIn("officer1");
  Populate(officer);

  auto person = Call("GET", std::string("/v1/people/") + kA, {}, officer);
  ASSERT_EQ(person.status, 200) << person.body;
  EXPECT_EQ(Body(person)["current"]["unit_code"], "U001");
  EXPECT_EQ(Body(person)["history"].size(), 1u);

  auto units = Call("GET", "/v1/units", {}, officer);
  ASSERT_EQ(units.status, 200);
  EXPECT_EQ(Body(units)["items"][0]["name"], "Capital Steel");
  EXPECT_EQ(Call("GET", "/v1/units/U001", {}, officer).status, 200);
  EXPECT_EQ(Call("GET", "/v1/units/U999", {}, officer).status, 404);

  auto run = Call("POST", "/v1/months/2026-11/run", {}, officer);
  ASSERT_EQ(run.status, 200) << run.body;
  EXPECT_EQ(Body(run)["people"], 2);
  EXPECT_EQ(Body(run)["employer_fen"], 48'000 + 36'000);
  EXPECT_EQ(Body(run)["employee_fen"], 16'000 + 12'000);
  EXPECT_EQ(Body(run)["personal_account_fen"], 24'000 + 16'800);
  // The month is run once: again, nothing changes.
  auto again = Call("POST", "/v1/months/2026-11/run", {}, officer);
  EXPECT_TRUE(Body(again)["already_finished"].get<bool>());

  auto month = Call("GET", "/v1/months/2026-11", {}, officer);
  ASSERT_EQ(month.status, 200);
  EXPECT_EQ(Body(month)["totals"]["billed_fen"], 112'000);
  EXPECT_EQ(Body(month)["totals"]["arrears_fen"], 112'000);

  auto paid = Call("POST", "/v1/payments",
                   R"({"unit_code":"U001","month":"2026-11","amount_fen":100000,)"
                   R"("paid_on":"2026-11-20"})",
                   officer);
  ASSERT_EQ(paid.status, 201) << paid.body;
  EXPECT_EQ(Body(Call("GET", "/v1/months/2026-11", {}, officer))["totals"]["arrears_fen"], 12'000);

  auto moved = Call("POST", std::string("/v1/people/") + kB + "/events",
                    R"({"event":"wage","effective":"2026-12-01","wage_base_fen":900000})", officer);
  ASSERT_EQ(moved.status, 201) << moved.body;
  EXPECT_EQ(Body(moved)["wage_base_fen"], 900'000);

  // The allocation batch as a download, then the bank's acknowledgement reconciled.
  auto batch = Call("POST", "/v1/months/2026-11/allocations", {}, officer);
  ASSERT_EQ(batch.status, 200) << batch.body;
  EXPECT_EQ(batch.content_type, "application/x-ndjson");
  auto key = insurance::BatchKey::FromHex(std::string(64, 'a'));
  auto parsed = insurance::ParseAllocationBatch(batch.body, *key);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->total_fen(), 40'800);
  insurance::Acknowledgement ack{parsed->batch_id, parsed->month, {}};
  for (const auto& line : parsed->lines) ack.lines.push_back({line, {}, {}});
  ack.lines.back().outcome = insurance::LineOutcome::kRefused;
  ack.lines.back().reason = "no medical account";
  auto reconciled =
      Call("POST", "/v1/allocations/acknowledgements",
           json{{"acknowledgement", insurance::WriteAcknowledgement(ack, *key)}}.dump(), officer);
  ASSERT_EQ(reconciled.status, 200) << reconciled.body;
  EXPECT_EQ(Body(reconciled)["credited_count"], 1);
  EXPECT_EQ(Body(reconciled)["refused"].size(), 1u);

  auto books = Call("GET", "/v1/books/check", {}, SignIn("auditor1"));
  ASSERT_EQ(books.status, 200);
  EXPECT_TRUE(Body(books)["ok"].get<bool>()) << books.body;

  // Every mutation is in the audit log, which the auditor reads.
  auto audit = Call("GET", "/v1/audit?action=si.", {}, SignIn("auditor1"));
  ASSERT_EQ(audit.status, 200) << audit.body;
  std::set<std::string> actions;
  const json entries = Body(audit);
  for (const auto& item : entries["items"]) actions.insert(item["action"].get<std::string>());
  EXPECT_EQ(actions, (std::set<std::string>{"si.unit.add", "si.person.enrol", "si.month.run",
                                            "si.payment.add", "si.person.wage",
                                            "si.allocation.export", "si.allocation.reconcile"}));
}

TEST_P(SiApiTest, AMonthRunThroughTheApiEqualsTheLibrarysRun) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  // The same registry in a second database, run directly (as `medcard si month run` does).
  auto second = OpenDatabase();
  ASSERT_NE(second, nullptr);
  auto connection = second->Connect();
  ASSERT_TRUE(connection.ok());
  insurance::Registry registry(**connection);
  ASSERT_TRUE(registry.AddUnit({"U001", "Capital Steel", "6222020200112233", "110000"}).ok());
  for (auto [ssn, wage] : {std::pair{kA, 800'000}, std::pair{kB, 300'000}}) {
    insurance::Enrolment enrolment;
    enrolment.ssn = ssn;
    enrolment.name = "Person";
    enrolment.birth_date = insurance::BirthDateOfSsn(ssn);
    enrolment.unit_code = "U001";
    enrolment.wage_base_fen = wage;
    enrolment.effective = {2026, 1, 1};
    ASSERT_TRUE(registry.Enrol(enrolment).ok());
  }
  auto direct = insurance::RunMonth(**connection, policies_, {2026, 11});
  ASSERT_TRUE(direct.ok());
  auto through_api = Body(Call("POST", "/v1/months/2026-11/run", {}, officer));
  EXPECT_EQ(through_api["people"], direct->people);
  EXPECT_EQ(through_api["employer_fen"], direct->employer_fen);
  EXPECT_EQ(through_api["employee_fen"], direct->employee_fen);
  EXPECT_EQ(through_api["personal_account_fen"], direct->personal_account_fen);
  EXPECT_EQ(through_api["pooled_fund_fen"], direct->pooled_fund_fen);
  auto lines_direct = insurance::BillLines(**connection, {2026, 11});
  auto lines_api = insurance::BillLines(*connection_, {2026, 11});
  ASSERT_TRUE(lines_direct.ok() && lines_api.ok());
  ASSERT_EQ(lines_direct->size(), lines_api->size());
  for (std::size_t i = 0; i < lines_api->size(); ++i) {
    EXPECT_EQ((*lines_api)[i].personal_account_fen, (*lines_direct)[i].personal_account_fen);
    EXPECT_EQ((*lines_api)[i].employer_fen, (*lines_direct)[i].employer_fen);
  }
}

TEST_P(SiApiTest, RolesAndSessionsAreEnforced) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::string auditor = SignIn("auditor1");
  const std::string teller = SignIn("teller1");
  const std::int64_t audit_before = Count("audit_entries");
  const std::int64_t units_before = Count("si_units");

  const std::string unit =
      R"({"code":"U002","name":"X","bank_account":"6222020200112299","area":"110000"})";
  // No token, an unknown token (a bank session is a token this database never issued).
  EXPECT_EQ(Call("POST", "/v1/units", unit).status, 401);
  EXPECT_EQ(Call("POST", "/v1/units", unit, std::string(64, 'f')).status, 401);
  EXPECT_EQ(Call("GET", "/v1/units", {}, "Bearer-garbage").status, 401);
  // Auditors read and check but change nothing; tellers have no business here.
  EXPECT_EQ(Call("POST", "/v1/units", unit, auditor).status, 403);
  EXPECT_EQ(Call("POST", "/v1/months/2026-11/run", {}, auditor).status, 403);
  EXPECT_EQ(Call("GET", "/v1/units", {}, auditor).status, 200);
  EXPECT_EQ(Call("GET", "/v1/books/check", {}, auditor).status, 200);
  EXPECT_EQ(Call("GET", "/v1/units", {}, teller).status, 403);
  EXPECT_EQ(Call("GET", "/v1/audit", {}, teller).status, 403);
  EXPECT_EQ(Call("GET", "/v1/audit", {}, officer).status, 403);
  EXPECT_EQ(Count("si_units"), units_before);
  // Refusals are not mutations: only the sign-ins were recorded.
  EXPECT_EQ(Count("audit_entries"), audit_before);

  EXPECT_EQ(Call("DELETE", "/v1/sessions/current", {}, officer).status, 204);
  EXPECT_EQ(Call("GET", "/v1/units", {}, officer).status, 401);
}

TEST_P(SiApiTest, BadInputIsRefusedAndChangesNothing) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::int64_t audit_before = Count("audit_entries");
  const std::int64_t events_before = Count("si_person_events");

  struct Case {
    std::string method, path, body;
    int status;
    std::string field;
  };
  const std::string ssn = std::string("/v1/people/") + kA;
  const std::vector<Case> cases = {
      {"POST", "/v1/units", "{", 400, ""},
      {"POST", "/v1/units", "[]", 400, ""},
      {"POST", "/v1/units",
       R"({"code":"U3","name":"X","bank_account":6222020200112299,"area":"110000"})", 400,
       "bank_account"},
      {"POST", "/v1/units", R"({"code":"U3","name":"X","bank_account":"6222020200112299"})", 400,
       "area"},
      {"POST", "/v1/units",
       R"({"code":"U3","name":"X","bank_account":"6222020200112299","area":"110000","x":1})", 400,
       "x"},
      {"POST", "/v1/units",
       R"({"code":"U001","name":"Dup","bank_account":"6222020200112299","area":"110000"})", 409,
       ""},
      {"POST", "/v1/units",
       R"({"code":"U'; DROP TABLE si_units; --","name":"X","bank_account":"6222020200112299","area":"110000"})",
       400, "code"},
      {"POST", "/v1/people",
       json{{"ssn", "110101199001011230"},
            {"name", "P"},
            {"unit_code", "U001"},
            {"wage_base_fen", 1},
            {"category", "employee"},
            {"effective", "2026-01-01"}}
           .dump(),
       400, "ssn"},
      {"POST", "/v1/people",
       json{{"ssn", kA},
            {"name", "P"},
            {"unit_code", "U001"},
            {"wage_base_fen", 1.5},
            {"category", "employee"},
            {"effective", "2026-01-01"}}
           .dump(),
       400, "wage_base_fen"},
      {"POST", "/v1/people",
       json{{"ssn", kA},
            {"name", "P"},
            {"unit_code", "U001"},
            {"wage_base_fen", 1},
            {"category", "boss"},
            {"effective", "2026-01-01"}}
           .dump(),
       400, "category"},
      {"POST", "/v1/people",
       json{{"ssn", kA},
            {"name", "P"},
            {"unit_code", "U001"},
            {"wage_base_fen", 1},
            {"category", "employee"},
            {"effective", "2026-02-30"}}
           .dump(),
       400, "effective"},
      {"POST", ssn + "/events", R"({"event":"transfer","effective":"2026-12-01"})", 400,
       "unit_code"},
      {"POST", ssn + "/events", R"({"event":"explode","effective":"2026-12-01"})", 400, "event"},
      {"POST", ssn + "/events",
       R"({"event":"transfer","effective":"2026-12-01","unit_code":"U999"})", 404, ""},
      {"POST", ssn + "/events", R"({"event":"suspend","effective":"2025-12-01"})", 422, ""},
      {"POST", "/v1/people/1' OR '1'='1/events", R"({"event":"suspend","effective":"2026-12-01"})",
       400, "ssn"},
      {"GET", "/v1/people/110101195003103452", "", 404, ""},
      {"GET", "/v1/people/110101199001011238", "", 400, "ssn"},
      {"POST", "/v1/months/2026-13/run", "", 400, "month"},
      {"POST", "/v1/months/2026-11/run", R"({"x":1})", 400, "x"},
      {"POST", "/v1/payments",
       R"({"unit_code":"U001","month":"2026/11","amount_fen":1,"paid_on":"2026-11-20"})", 400,
       "month"},
      {"POST", "/v1/payments",
       R"({"unit_code":"U001","month":"2026-11","amount_fen":-5,"paid_on":"2026-11-20"})", 400,
       "amount_fen"},
      {"POST", "/v1/payments",
       R"({"unit_code":"U001","month":"2026-11","amount_fen":"5","paid_on":"2026-11-20"})", 400,
       "amount_fen"},
      {"POST", "/v1/allocations/acknowledgements", R"({"acknowledgement":"not a batch"})", 400,
       "acknowledgement"},
      {"POST", "/v1/allocations/acknowledgements", R"({"acknowledgement":5})", 400,
       "acknowledgement"},
      {"POST", "/v1/allocations/acknowledgements", R"({"acknowledgement":"x","y":1})", 400, "y"},
      {"GET", "/v1/audit?limit=0", "", 403, ""},
  };
  for (const auto& c : cases) {
    auto response = Call(c.method, c.path, c.body, officer);
    EXPECT_EQ(response.status, c.status)
        << c.method << " " << c.path << " " << c.body << " → " << response.body;
    if (!c.field.empty()) {
      EXPECT_EQ(ErrorField(response), c.field) << c.path << " " << c.body;
    }
  }
  EXPECT_EQ(Count("si_units"), 1);
  EXPECT_EQ(Count("si_person_events"), events_before);
  EXPECT_EQ(Count("audit_entries"), audit_before);
  // Not JSON at all.
  auto text = Call("POST", "/v1/units", "code=U3", officer, {{"content-type", "text/plain"}});
  EXPECT_EQ(text.status, 415);
}

TEST_P(SiApiTest, PolicyAndClaimChecks) {
  const std::string officer = SignIn("officer1");
  std::ifstream file(std::string(MEDCARD_TEST_DATA_DIR) +
                     "/../../config/policy/beijing-example.json");
  std::string policy((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto good = Call("POST", "/v1/policy/check", policy, officer);
  ASSERT_EQ(good.status, 200) << good.body;
  EXPECT_TRUE(Body(good)["valid"].get<bool>());
  EXPECT_EQ(Body(good)["area_code"], "110000");

  auto broken = json::parse(policy);
  broken["contributions"]["employer_rate_bp"] = -1;
  auto bad = Call("POST", "/v1/policy/check", broken.dump(), officer);
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(ErrorField(bad), "contributions.employer_rate_bp") << bad.body;
  EXPECT_EQ(Call("POST", "/v1/policy/check", "{", officer).status, 400);
  EXPECT_EQ(Call("POST", "/v1/policy/check", policy, SignIn("auditor1")).status, 403);

  EXPECT_EQ(Call("POST", "/v1/claims/adjudication", "{}", officer).status, 400);
  auto no_claim = Call("POST", "/v1/claims/adjudication?area=110000", "{}", officer);
  EXPECT_EQ(no_claim.status, 400) << no_claim.body;
}

TEST_P(SiApiTest, ReplayedRequestGetsTheFirstAnswer) {
  const std::string officer = SignIn("officer1");
  const std::string unit =
      R"({"code":"U002","name":"X","bank_account":"6222020200112299","area":"110000"})";
  auto first = Call("POST", "/v1/units", unit, officer, {{"idempotency-key", "k-1"}});
  ASSERT_EQ(first.status, 201) << first.body;
  auto replay = Call("POST", "/v1/units", unit, officer, {{"idempotency-key", "k-1"}});
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, first.body);
  auto other =
      Call("POST", "/v1/units",
           R"({"code":"U003","name":"X","bank_account":"6222020200112299","area":"110000"})",
           officer, {{"idempotency-key", "k-1"}});
  EXPECT_EQ(other.status, 409);
  EXPECT_EQ(Count("si_units"), 1);
}

TEST_P(SiApiTest, OpenApiDocumentListsEveryRoute) {
  if (GetParam() != store::Engine::kSqlite) GTEST_SKIP() << "engine-independent";
  std::ifstream file(std::string(MEDCARD_TEST_DATA_DIR) + "/../../docs/api/si-openapi.yaml");
  ASSERT_TRUE(file.good());
  std::set<std::string> documented;
  std::string line;
  std::string path;
  bool in_paths = false;
  const std::regex path_line(R"(^  (/[^:]*):\s*$)");
  const std::regex method_line(R"(^    (get|post|put|patch|delete):\s*$)");
  std::smatch match;
  while (std::getline(file, line)) {
    if (line.rfind("paths:", 0) == 0) {
      in_paths = true;
      continue;
    }
    if (in_paths && !line.empty() && line[0] != ' ' && line[0] != '#') in_paths = false;
    if (!in_paths) continue;
    if (std::regex_match(line, match, path_line)) {
      path = match[1];
    } else if (std::regex_match(line, match, method_line)) {
      std::string method = match[1];
      for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.insert(method + " " + path);
    }
  }
  std::set<std::string> registered;
  for (const auto& route : api_->Routes()) registered.insert(route.method + " " + route.pattern);
  EXPECT_EQ(documented, registered);
}

INSTANTIATE_TEST_SUITE_P(Engines, SiApiTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::api
