// The agency's API for what was only on the CLI before: stored claims through their states,
// CSV imports (all or nothing, problems by line and field), the reports as JSON, CSV and SVG;
// bad input of every kind on each of those routes, and a registry change that commits with its
// audit entry or not at all. On SQLite and PostgreSQL.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api/si_routes.h"
#include "si_api_fixture.h"
#include "test_database.h"

namespace medcard::api {
namespace {

using nlohmann::json;
using si_test::kA;
using si_test::kB;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

// A's hospital stay in June 2026: 30,000.00 yuan of covered care at a grade-3 hospital.
json ClaimFile(const std::string& number = "BJ-2026-0001", const std::string& person = kA) {
  return {{"claim_id", number},
          {"person_id", person},
          {"category", "employee"},
          {"age", 36},
          {"facility_grade", 3},
          {"admission", "2026-06-01"},
          {"discharge", "2026-06-10"},
          {"diagnosis_icd10", "I21.0"},
          {"lines",
           {{{"code", "250101001"},
             {"description", "ward and nursing"},
             {"category", "covered"},
             {"amount_fen", 3'000'000}}}},
          {"year_so_far",
           {{"eligible_on_service_date", true},
            {"admissions_adjudicated", 0},
            {"pooled_fund_paid_fen", 0},
            {"personal_account_balance_fen", 0}}}};
}

class SiClaimsApiTest : public si_test::SiApiTest {
 protected:
  std::int64_t CountWhere(const std::string& table, const std::string& where) {
    auto rows = connection_->Query("SELECT COUNT(*) FROM " + table + " WHERE " + where);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }
  std::vector<std::string> AuditActions(const std::string& prefix) {
    auto rows = connection_->Query(
        "SELECT action FROM audit_entries WHERE action LIKE ? ORDER BY sequence", {prefix + "%"});
    EXPECT_TRUE(rows.ok());
    std::vector<std::string> actions;
    if (rows.ok()) {
      for (const auto& row : *rows) actions.push_back(row.Text(0));
    }
    return actions;
  }
  std::int64_t Submit(const std::string& officer, const json& file = ClaimFile()) {
    auto submitted = Call("POST", "/v1/claims?facility=H0001", file.dump(), officer);
    EXPECT_EQ(submitted.status, 201) << submitted.body;
    auto body = Body(submitted);
    return body.is_object() && body.contains("id") ? body["id"].get<std::int64_t>() : 0;
  }
};

TEST_P(SiClaimsApiTest, AClaimGoesFromSubmittedToPaidByTheSignedInOfficer) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::int64_t id = Submit(officer);
  ASSERT_GT(id, 0);
  const std::string claim = "/v1/claims/" + std::to_string(id);

  auto shown = Call("GET", claim, {}, SignIn("auditor1"));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["state"], "submitted");
  EXPECT_EQ(Body(shown)["facility"], "H0001");
  EXPECT_EQ(Body(shown)["total_billed_fen"], 3'000'000);
  EXPECT_TRUE(Body(shown)["adjudication"].is_null());

  // Steps out of order are refused and change nothing.
  EXPECT_EQ(Call("POST", claim + "/approve", {}, officer).status, 422);
  EXPECT_EQ(Call("POST", claim + "/pay", {}, officer).status, 422);

  auto adjudicated = Call("POST", claim + "/adjudicate", {}, officer);
  ASSERT_EQ(adjudicated.status, 200) << adjudicated.body;
  const json split = Body(adjudicated)["adjudication"];
  EXPECT_EQ(Body(adjudicated)["state"], "adjudicated");
  EXPECT_EQ(split["pooled_fund_fen"].get<std::int64_t>() +
                split["personal_account_fen"].get<std::int64_t>() +
                split["self_pay_fen"].get<std::int64_t>(),
            3'000'000);
  EXPECT_GT(split["pooled_fund_fen"].get<std::int64_t>(), 0);
  EXPECT_FALSE(split["steps"].empty());

  auto approved = Call("POST", claim + "/approve", {}, officer);
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(Body(approved)["state"], "approved");
  EXPECT_EQ(Body(approved)["decided_by"], "officer1");

  auto paid = Call("POST", claim + "/pay", {}, officer);
  ASSERT_EQ(paid.status, 200) << paid.body;
  EXPECT_EQ(Body(paid)["state"], "paid");
  EXPECT_FALSE(Body(paid)["paid_at"].is_null());
  EXPECT_EQ(CountWhere("si_book_entries", "kind = 'claim_pooled_fund'"), 1);
  // Paid again: the claim as it is, nothing booked, nothing audited twice.
  auto again = Call("POST", claim + "/pay", {}, officer);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(CountWhere("si_book_entries", "kind = 'claim_pooled_fund'"), 1);
  EXPECT_EQ(AuditActions("si.claim."),
            (std::vector<std::string>{"si.claim.submit", "si.claim.adjudicate", "si.claim.approve",
                                      "si.claim.pay"}));

  // A second claim is rejected by the officer, with the reason.
  const std::int64_t second = Submit(officer, ClaimFile("BJ-2026-0002"));
  auto rejected = Call("POST", "/v1/claims/" + std::to_string(second) + "/reject",
                       R"({"reason":"duplicate of BJ-2026-0001"})", officer);
  ASSERT_EQ(rejected.status, 200) << rejected.body;
  EXPECT_EQ(Body(rejected)["state"], "rejected");
  EXPECT_EQ(Body(rejected)["reasons"][0], "duplicate of BJ-2026-0001");
  EXPECT_EQ(Body(rejected)["decided_by"], "officer1");
  auto entry = connection_->Query(
      "SELECT actor, target, details FROM audit_entries WHERE action = 'si.claim.reject'");
  ASSERT_TRUE(entry.ok() && entry->size() == 1);
  EXPECT_EQ((*entry)[0].Text(0), "officer1");
  EXPECT_EQ((*entry)[0].Text(1), "claim:" + std::to_string(second));
  EXPECT_NE((*entry)[0].Text(2).find("duplicate of BJ-2026-0001"), std::string::npos);
}

TEST_P(SiClaimsApiTest, ClaimsAreListedByStateAndPersonInPages) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  for (int i = 1; i <= 5; ++i) Submit(officer, ClaimFile("N-" + std::to_string(i)));
  Submit(officer, ClaimFile("N-B", kB));
  ASSERT_EQ(Call("POST", "/v1/claims/1/adjudicate", {}, officer).status, 200);

  std::vector<std::string> seen;
  std::string next;
  int pages = 0;
  do {
    auto page =
        Call("GET", "/v1/claims?limit=2" + (next.empty() ? "" : "&after=" + next), {}, officer);
    ASSERT_EQ(page.status, 200) << page.body;
    const json body = Body(page);
    for (const auto& item : body["items"]) seen.push_back(item["claim_id"]);
    next = Body(page)["next"].is_null() ? "" : Body(page)["next"].get<std::string>();
    ++pages;
  } while (!next.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (std::vector<std::string>{"N-1", "N-2", "N-3", "N-4", "N-5", "N-B"}));

  auto submitted = Body(Call("GET", "/v1/claims?state=submitted", {}, officer));
  EXPECT_EQ(submitted["items"].size(), 5u);
  auto adjudicated = Body(Call("GET", "/v1/claims?state=adjudicated", {}, officer));
  ASSERT_EQ(adjudicated["items"].size(), 1u);
  EXPECT_EQ(adjudicated["items"][0]["claim_id"], "N-1");
  auto of_b = Body(Call("GET", std::string("/v1/claims?person=") + kB, {}, officer));
  ASSERT_EQ(of_b["items"].size(), 1u);
  EXPECT_EQ(of_b["items"][0]["person_id"], kB);
}

TEST_P(SiClaimsApiTest, BadClaimRequestsAreRefusedAndChangeNothing) {
  const std::string officer = SignIn("officer1");
  const std::string auditor = SignIn("auditor1");
  Populate(officer);
  const std::int64_t id = Submit(officer);
  const std::string claim = "/v1/claims/" + std::to_string(id);
  const std::int64_t audit_before = Count("audit_entries");
  const std::int64_t claims_before = Count("si_claims");

  json float_amount = ClaimFile("X-1");
  float_amount["lines"][0]["amount_fen"] = 10.5;
  json unknown = ClaimFile("X-2");
  unknown["surgeon"] = "Dr. X";
  json missing = ClaimFile("X-3");
  missing.erase("admission");
  json wrong_type = ClaimFile("X-4");
  wrong_type["facility_grade"] = "3";
  json injected = ClaimFile("1'); DELETE FROM si_claims; --");
  injected["diagnosis_icd10"] = "I21' OR '1'='1";

  struct Case {
    std::string method, path, body, token;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/claims?facility=H0001", "{", officer, 400, ""},
      {"POST", "/v1/claims?facility=H0001", "[1,2]", officer, 400, ""},
      {"POST", "/v1/claims?facility=H0001", float_amount.dump(), officer, 400,
       "lines[0].amount_fen"},
      {"POST", "/v1/claims?facility=H0001", unknown.dump(), officer, 400, "surgeon"},
      {"POST", "/v1/claims?facility=H0001", missing.dump(), officer, 400, "admission"},
      {"POST", "/v1/claims?facility=H0001", wrong_type.dump(), officer, 400, "facility_grade"},
      {"POST", "/v1/claims?facility=H0001", injected.dump(), officer, 400, "diagnosis_icd10"},
      {"POST", "/v1/claims", ClaimFile("X-5").dump(), officer, 400, "facility"},
      {"POST", "/v1/claims?facility=H'%20OR%201=1", ClaimFile("X-6").dump(), officer, 400,
       "facility"},
      // The same facility and claim number again.
      {"POST", "/v1/claims?facility=H0001", ClaimFile().dump(), officer, 409, ""},
      {"POST", "/v1/claims?facility=H0001", ClaimFile("X-7").dump(), auditor, 403, ""},
      {"POST", "/v1/claims?facility=H0001", ClaimFile("X-8").dump(), "", 401, ""},
      {"GET", "/v1/claims/0", "", officer, 400, "id"},
      {"GET", "/v1/claims/1;DROP", "", officer, 400, "id"},
      {"GET", "/v1/claims/99999", "", officer, 404, ""},
      {"GET", "/v1/claims?state=lost", "", officer, 400, "state"},
      {"GET", "/v1/claims?person=1'%20OR%201=1", "", officer, 400, "person"},
      {"GET", "/v1/claims?limit=0", "", officer, 400, "limit"},
      {"GET", "/v1/claims", "", SignIn("teller1"), 403, ""},
      {"GET", "/v1/claims", "", "", 401, ""},
      {"POST", claim + "/adjudicate", R"({"x":1})", officer, 400, "x"},
      {"POST", claim + "/adjudicate", "", auditor, 403, ""},
      {"POST", "/v1/claims/99999/adjudicate", "", officer, 404, ""},
      {"POST", claim + "/approve", "", officer, 422, ""},
      {"POST", claim + "/approve", R"({"officer":"someone-else"})", officer, 400, "officer"},
      {"POST", claim + "/reject", "", officer, 400, "reason"},
      {"POST", claim + "/reject", R"({"reason":5})", officer, 400, "reason"},
      {"POST", claim + "/reject", R"({"reason":"x","extra":true})", officer, 400, "extra"},
      {"POST", claim + "/reject", R"({"reason":"x"})", auditor, 403, ""},
      {"POST", claim + "/pay", "", officer, 422, ""},
      {"POST", claim + "/pay", "", "", 401, ""},
  };
  for (const auto& c : cases) {
    auto response = Call(c.method, c.path, c.body, c.token);
    EXPECT_EQ(response.status, c.status)
        << c.method << " " << c.path << " " << c.body << " → " << response.body;
    if (!c.field.empty()) {
      EXPECT_EQ(ErrorField(response), c.field) << c.path << " " << c.body;
    }
  }
  EXPECT_EQ(Count("si_claims"), claims_before);
  EXPECT_EQ(CountWhere("si_claims", "state = 'submitted'"), 1);
  EXPECT_EQ(Count("audit_entries"), audit_before + 1);  // the teller's sign-in
}

TEST_P(SiClaimsApiTest, AReplayedClaimStepGetsTheFirstAnswer) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  auto first = Call("POST", "/v1/claims?facility=H0001", ClaimFile().dump(), officer,
                    {{"idempotency-key", "claim-1"}});
  ASSERT_EQ(first.status, 201) << first.body;
  auto replay = Call("POST", "/v1/claims?facility=H0001", ClaimFile().dump(), officer,
                     {{"idempotency-key", "claim-1"}});
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, first.body);
  const std::string id = std::to_string(Body(first)["id"].get<std::int64_t>());
  // The same key for another request is refused.
  EXPECT_EQ(Call("POST", "/v1/claims/" + id + "/adjudicate", {}, officer,
                 {{"idempotency-key", "claim-1"}})
                .status,
            409);
  auto rejected = Call("POST", "/v1/claims/" + id + "/reject", R"({"reason":"no referral"})",
                       officer, {{"idempotency-key", "reject-1"}});
  ASSERT_EQ(rejected.status, 200);
  auto rejected_again = Call("POST", "/v1/claims/" + id + "/reject", R"({"reason":"no referral"})",
                             officer, {{"idempotency-key", "reject-1"}});
  EXPECT_EQ(rejected_again.status, 200);
  EXPECT_EQ(rejected_again.body, rejected.body);
  EXPECT_EQ(Count("si_claims"), 1);
  EXPECT_EQ(AuditActions("si.claim."),
            (std::vector<std::string>{"si.claim.submit", "si.claim.reject"}));
}

// ---- Imports.

TEST_P(SiClaimsApiTest, AGoodImportIsAppliedWhole) {
  const std::string officer = SignIn("officer1");
  const std::string units =
      "code,name,bank_account,area\n"
      "U010,\"Steel, Capital\",6222020200110010,110000\n"
      "U011,Harbour Works,6222020200110011,110000\n";
  auto imported = Call("POST", "/v1/imports/units", json{{"csv", units}}.dump(), officer);
  ASSERT_EQ(imported.status, 200) << imported.body;
  EXPECT_EQ(Body(imported)["rows"], 2);
  EXPECT_TRUE(Body(imported)["applied"].get<bool>());
  EXPECT_EQ(Body(Call("GET", "/v1/units/U010", {}, officer))["name"], "Steel, Capital");

  const std::string people = std::string("ssn,name,unit_code,wage_base,category,effective\n") + kA +
                             ",Li Lei,U010,8000.00,employee,2026-01-01\n" + kB +
                             ",Han Meimei,U011,3000.00,employee,2026-01-01\n";
  ASSERT_EQ(Call("POST", "/v1/imports/people", json{{"csv", people}}.dump(), officer).status, 200);
  const std::string wages = std::string("ssn,wage_base,effective\n") + kA + ",9000.00,2026-07-01\n";
  ASSERT_EQ(Call("POST", "/v1/imports/wages", json{{"csv", wages}}.dump(), officer).status, 200);
  auto person = Body(Call("GET", std::string("/v1/people/") + kA, {}, officer));
  EXPECT_EQ(person["current"]["wage_base_fen"], 900'000);
  EXPECT_EQ(person["history"].size(), 2u);
  EXPECT_EQ(AuditActions("si.import."),
            (std::vector<std::string>{"si.import.units", "si.import.people", "si.import.wages"}));
}

TEST_P(SiClaimsApiTest, ABadImportNamesEveryBadRowAndAppliesNothing) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::int64_t audit_before = Count("audit_entries");
  const std::int64_t events_before = Count("si_person_events");
  // Line 2 is good, line 3 has a bad account, line 4 an unknown unit... nothing may be applied.
  const std::string people = std::string("ssn,name,unit_code,wage_base,category,effective\n") +
                             "110101198001011232,Good Row,U001,5000.00,employee,2026-01-01\n" +
                             "110101198001011235,Bad Check,U001,5000.00,employee,2026-01-01\n" +
                             "110101197001011238,No Unit,U404,5000.00,employee,2026-01-01\n" +
                             "110101196001011233,Bad Wage,U001,50x0.00,boss,2026-01-01\n";
  auto refused = Call("POST", "/v1/imports/people", json{{"csv", people}}.dump(), officer);
  ASSERT_EQ(refused.status, 422) << refused.body;
  const json body = Body(refused);
  EXPECT_EQ(body["error"]["code"], "unprocessable");
  EXPECT_EQ(body["error"]["field"], "csv");
  std::set<std::pair<std::int64_t, std::string>> problems;
  for (const auto& p : body["problems"]) {
    problems.insert({p["line"].get<std::int64_t>(), p["field"].is_null() ? "" : p["field"]});
  }
  EXPECT_TRUE(problems.count({3, "ssn"})) << refused.body;
  EXPECT_TRUE(problems.count({4, "unit_code"})) << refused.body;
  EXPECT_TRUE(problems.count({5, "wage_base"})) << refused.body;
  EXPECT_FALSE(problems.count({2, "ssn"})) << refused.body;
  EXPECT_EQ(Count("si_person_events"), events_before);
  EXPECT_EQ(Count("si_people"), 2);

  struct Case {
    std::string path, body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"/v1/imports/units", "{", 400, ""},
      {"/v1/imports/units", R"({"csv":5})", 400, "csv"},
      {"/v1/imports/units", R"({"csv":""})", 400, "csv"},
      {"/v1/imports/units", R"({})", 400, "csv"},
      {"/v1/imports/units", R"({"csv":"code\n","kind":"units"})", 400, "kind"},
      {"/v1/imports/cars", json{{"csv", "code\n"}}.dump(), 400, "kind"},
      {"/v1/imports/units", json{{"csv", "code,name\nU1,X\n"}}.dump(), 422, "csv"},
      {"/v1/imports/units",
       json{{"csv",
             "code,name,bank_account,area\nU1'; DROP TABLE si_units; "
             "--,X,6222020200112299,110000\n"}}
           .dump(),
       422, "csv"},
      {"/v1/imports/units",
       json{{"csv", "code,name,bank_account,area\nU001,Again,6222020200112299,110000\n"}}.dump(),
       422, "csv"},
  };
  for (const auto& c : cases) {
    auto response = Call("POST", c.path, c.body, officer);
    EXPECT_EQ(response.status, c.status) << c.path << " " << c.body << " → " << response.body;
    EXPECT_EQ(ErrorField(response), c.field) << c.path << " " << c.body;
  }
  const std::string good =
      json{{"csv", "code,name,bank_account,area\nU9,X,6222020200112299,110000\n"}}.dump();
  EXPECT_EQ(Call("POST", "/v1/imports/units", good, SignIn("auditor1")).status, 403);
  EXPECT_EQ(Call("POST", "/v1/imports/units", good).status, 401);
  EXPECT_EQ(Count("si_units"), 1);
  EXPECT_EQ(Count("audit_entries"), audit_before + 1);  // the auditor's sign-in
  // A replay of a good import answers as the first time and imports once.
  auto first = Call("POST", "/v1/imports/units", good, officer, {{"idempotency-key", "imp-1"}});
  auto second = Call("POST", "/v1/imports/units", good, officer, {{"idempotency-key", "imp-1"}});
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(Count("si_units"), 2);
}

// ---- Reports.

TEST_P(SiClaimsApiTest, ReportsComeAsJsonCsvAndSvg) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  ASSERT_EQ(Call("POST", "/v1/months/2026-11/run", {}, officer).status, 200);
  ASSERT_EQ(Call("POST", "/v1/payments",
                 R"({"unit_code":"U001","month":"2026-11","amount_fen":100000,)"
                 R"("paid_on":"2026-11-20"})",
                 officer)
                .status,
            201);
  const std::string auditor = SignIn("auditor1");

  auto fund = Call("GET", "/v1/reports/fund?from=2026-01&to=2026-12", {}, auditor);
  ASSERT_EQ(fund.status, 200) << fund.body;
  ASSERT_EQ(Body(fund)["months"].size(), 1u);
  EXPECT_EQ(Body(fund)["months"][0]["month"], "2026-11");
  EXPECT_EQ(Body(fund)["months"][0]["billed_fen"], 112'000);
  EXPECT_EQ(Body(fund)["months"][0]["collected_fen"], 100'000);
  EXPECT_EQ(Body(fund)["months"][0]["personal_account_fen"], 40'800);

  auto csv = Call("GET", "/v1/reports/fund?from=2026-01&to=2026-12&format=csv", {}, auditor);
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.content_type.rfind("text/csv", 0), 0u);
  EXPECT_NE(csv.body.find("2026-11,2,"), std::string::npos) << csv.body;
  EXPECT_NE(csv.body.find("1120.00"), std::string::npos) << csv.body;

  auto arrears = Call("GET", "/v1/reports/arrears?from=2026-11&to=2026-11", {}, auditor);
  ASSERT_EQ(arrears.status, 200);
  EXPECT_EQ(Body(arrears)["units"][0]["unit_code"], "U001");
  EXPECT_EQ(Body(arrears)["units"][0]["arrears_fen"], 12'000);
  auto chart = Call("GET", "/v1/reports/arrears?from=2026-11&to=2026-11&format=svg", {}, auditor);
  ASSERT_EQ(chart.status, 200);
  EXPECT_EQ(chart.content_type, "image/svg+xml");
  EXPECT_EQ(chart.body.rfind("<svg", 0) == 0 || chart.body.rfind("<?xml", 0) == 0, true);
  EXPECT_NE(chart.body.find("class=\"bar\""), std::string::npos);

  auto balances = Call("GET", "/v1/reports/balances?from=2026-11&to=2026-11", {}, officer);
  ASSERT_EQ(balances.status, 200);
  std::int64_t people = 0;
  std::int64_t total = 0;
  const json bands = Body(balances);
  for (const auto& band : bands["bands"]) {
    people += band["people"].get<std::int64_t>();
    total += band["total_fen"].get<std::int64_t>();
  }
  EXPECT_EQ(people, 2);
  EXPECT_EQ(total, 40'800);
  EXPECT_EQ(Call("GET", "/v1/reports/balances?from=2026-11&to=2026-11&format=svg", {}, officer)
                .content_type,
            "image/svg+xml");

  struct Case {
    std::string path;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"/v1/reports/fund", 400, "from"},
      {"/v1/reports/fund?from=2026-01", 400, "to"},
      {"/v1/reports/fund?from=2026-13&to=2026-12", 400, "from"},
      {"/v1/reports/fund?from=2026-12&to=2026-01", 400, "to"},
      {"/v1/reports/fund?from=2026-01&to=2026-12&format=png", 400, "format"},
      {"/v1/reports/fund?from=2026-01&to=2026-12&unit=1'%20OR%201=1", 400, "unit"},
      {"/v1/reports/arrears?from='%3BDROP&to=2026-12", 400, "from"},
  };
  for (const auto& c : cases) {
    auto response = Call("GET", c.path, {}, auditor);
    EXPECT_EQ(response.status, c.status) << c.path << " → " << response.body;
    EXPECT_EQ(ErrorField(response), c.field) << c.path;
  }
  EXPECT_EQ(Call("GET", "/v1/reports/fund?from=2026-01&to=2026-12", {}, SignIn("teller1")).status,
            403);
  EXPECT_EQ(Call("GET", "/v1/reports/fund?from=2026-01&to=2026-12").status, 401);
  EXPECT_EQ(Call("GET", "/v1/reports/fund?from=2026-01&to=2026-12", "{}", auditor).status, 400);
}

TEST_P(SiClaimsApiTest, SpendingReportsByFacilityDiagnosisAndConsumer) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::int64_t id = Submit(officer);
  ASSERT_EQ(Call("POST", "/v1/claims/" + std::to_string(id) + "/adjudicate", {}, officer).status,
            200);
  Submit(officer, ClaimFile("left-out"));  // submitted only: not spending yet
  const json claim = Body(Call("GET", "/v1/claims/" + std::to_string(id), {}, officer));
  const std::int64_t pooled = claim["adjudication"]["pooled_fund_fen"];
  const std::string auditor = SignIn("auditor1");

  auto facilities = Call("GET", "/v1/reports/facilities?from=2026-06&to=2026-06", {}, auditor);
  ASSERT_EQ(facilities.status, 200) << facilities.body;
  const json by_facility = Body(facilities);
  EXPECT_EQ(by_facility["from"], "2026-06-01");
  EXPECT_EQ(by_facility["to"], "2026-06-30");
  ASSERT_EQ(by_facility["facilities"].size(), 1u);
  EXPECT_EQ(by_facility["facilities"][0]["facility"], "H0001");
  EXPECT_EQ(by_facility["facilities"][0]["claims"], 1);
  EXPECT_EQ(by_facility["facilities"][0]["billed_fen"], 3'000'000);
  EXPECT_EQ(by_facility["totals"]["pooled_fund_fen"], pooled);
  // Outside the period: nothing.
  EXPECT_TRUE(Body(Call("GET", "/v1/reports/facilities?from=2026-07-01&to=2026-12-31", {},
                        auditor))["facilities"]
                  .empty());

  const json chapters =
      Body(Call("GET", "/v1/reports/diagnoses?from=2026-01&to=2026-12", {}, auditor));
  ASSERT_EQ(chapters["diagnoses"].size(), 1u);
  EXPECT_EQ(chapters["diagnoses"][0]["code"], "IX");
  const json categories = Body(
      Call("GET", "/v1/reports/diagnoses?from=2026-01&to=2026-12&level=category", {}, auditor));
  EXPECT_EQ(categories["diagnoses"][0]["code"], "I21");

  const json top =
      Body(Call("GET", "/v1/reports/top-consumers?from=2026-01&to=2026-12&limit=5", {}, auditor));
  ASSERT_EQ(top["people"].size(), 1u);
  EXPECT_EQ(top["people"][0]["person_id"], kA);
  EXPECT_EQ(top["people"][0]["total_fen"], pooled);

  auto csv = Call("GET", "/v1/reports/facilities?from=2026-06&to=2026-06&format=csv", {}, auditor);
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.content_type.rfind("text/csv", 0), 0u);
  EXPECT_NE(csv.body.find("H0001"), std::string::npos) << csv.body;
  auto svg = Call("GET", "/v1/reports/diagnoses?from=2026-01&to=2026-12&format=svg", {}, auditor);
  ASSERT_EQ(svg.status, 200);
  EXPECT_EQ(svg.content_type, "image/svg+xml");
  EXPECT_NE(svg.body.find("class=\"bar\""), std::string::npos);

  // The personal accounts after November's allocation: A 240.00, B 168.00.
  ASSERT_EQ(Call("POST", "/v1/months/2026-11/run", {}, officer).status, 200);
  auto accounts = Call("GET", "/v1/reports/personal-accounts?as_of=2026-11-30", {}, auditor);
  ASSERT_EQ(accounts.status, 200) << accounts.body;
  EXPECT_EQ(Body(accounts)["people"], 2);
  EXPECT_EQ(Body(accounts)["total_fen"], 40'800);
  EXPECT_EQ(Call("GET", "/v1/reports/personal-accounts?as_of=2026-11-30&format=svg", {}, auditor)
                .content_type,
            "image/svg+xml");

  struct Case {
    std::string path;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"/v1/reports/facilities?to=2026-06-30", "from"},
      {"/v1/reports/facilities?from=2026-02-30&to=2026-06-30", "from"},
      {"/v1/reports/facilities?from=2026-06-30&to=2026-06-01", "to"},
      {"/v1/reports/facilities?from=2026-06&to=2026-06&level=chapter", "level"},
      {"/v1/reports/diagnoses?from=2026-06&to=2026-06&level=organ", "level"},
      {"/v1/reports/diagnoses?from=2026-06&to=2026-06&format=pdf", "format"},
      {"/v1/reports/top-consumers?from=2026-06&to=2026-06&limit=0", "limit"},
      {"/v1/reports/top-consumers?from=2026-06&to=2026-06&limit=1001", "limit"},
      {"/v1/reports/top-consumers?from=2026-06&to=2026-06&limit=1;DROP", "limit"},
      {"/v1/reports/personal-accounts", "as_of"},
      {"/v1/reports/personal-accounts?as_of=2026-11", "as_of"},
      {"/v1/reports/personal-accounts?as_of=2026-11-30&person=x", "person"},
  };
  for (const auto& c : cases) {
    auto response = Call("GET", c.path, {}, auditor);
    EXPECT_EQ(response.status, 400) << c.path << " → " << response.body;
    EXPECT_EQ(ErrorField(response), c.field) << c.path;
  }
  EXPECT_EQ(Call("GET", "/v1/reports/top-consumers?from=2026-06&to=2026-06", {}, SignIn("teller1"))
                .status,
            403);
  EXPECT_EQ(Call("GET", "/v1/reports/personal-accounts?as_of=2026-11-30").status, 401);
}

TEST_P(SiClaimsApiTest, TheAuditLogIsReadByDayAsAtTheBank) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  const std::string auditor = SignIn("auditor1");
  // The test clock is 2026-11-25 09:00 UTC.
  auto today = Call("GET", "/v1/audit?action=si.&from=2026-11-25&to=2026-11-25", {}, auditor);
  ASSERT_EQ(today.status, 200) << today.body;
  const json entries = Body(today);
  ASSERT_EQ(entries["items"].size(), 3u);  // the unit and two enrolments
  EXPECT_EQ(entries["items"][0]["actor"], "officer1");
  EXPECT_EQ(entries["items"][0]["from"], "10.0.0.9");
  EXPECT_TRUE(entries["items"][0].contains("authorised_by"));
  EXPECT_TRUE(Body(Call("GET", "/v1/audit?from=2026-11-26", {}, auditor))["items"].empty());
  auto bad = Call("GET", "/v1/audit?from=2026-11-31", {}, auditor);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ErrorField(bad), "from");
  EXPECT_EQ(ErrorField(Call("GET", "/v1/audit?limit=0", {}, auditor)), "limit");
}

// ---- A registry change and its audit entry are one transaction.

TEST_P(SiClaimsApiTest, ARegistryChangeThatCannotBeAuditedIsNotMade) {
  const std::string officer = SignIn("officer1");
  Populate(officer);
  // The audit log's table is away: appending the entry fails inside the change's transaction.
  ASSERT_TRUE(connection_->Execute("ALTER TABLE audit_entries RENAME TO audit_entries_away").ok());
  auto unit = Call("POST", "/v1/units",
                   R"({"code":"U777","name":"X","bank_account":"6222020200112299",)"
                   R"("area":"110000"})",
                   officer);
  auto wage = Call("POST", std::string("/v1/people/") + kA + "/events",
                   R"({"event":"wage","effective":"2026-12-01","wage_base_fen":900000})", officer);
  auto enrol = Call("POST", "/v1/people",
                    json{{"ssn", "110101198001011232"},
                         {"name", "P"},
                         {"unit_code", "U001"},
                         {"wage_base_fen", 500'000},
                         {"category", "employee"},
                         {"effective", "2026-01-01"}}
                        .dump(),
                    officer);
  ASSERT_TRUE(connection_->Execute("ALTER TABLE audit_entries_away RENAME TO audit_entries").ok());
  EXPECT_EQ(unit.status, 500) << unit.body;
  EXPECT_EQ(wage.status, 500) << wage.body;
  EXPECT_EQ(enrol.status, 500) << enrol.body;
  // Nothing of the three changes stayed: had they committed apart from their entries, they would.
  EXPECT_EQ(Call("GET", "/v1/units/U777", {}, officer).status, 404);
  EXPECT_EQ(Body(Call("GET", std::string("/v1/people/") + kA, {}, officer))["history"].size(), 1u);
  EXPECT_EQ(Call("GET", "/v1/people/110101198001011232", {}, officer).status, 404);
  // With the log back, the same change is made and recorded together.
  auto retried = Call("POST", "/v1/units",
                      R"({"code":"U777","name":"X","bank_account":"6222020200112299",)"
                      R"("area":"110000"})",
                      officer);
  EXPECT_EQ(retried.status, 201) << retried.body;
  EXPECT_EQ(CountWhere("audit_entries", "action = 'si.unit.add' AND target = 'unit:U777'"), 1);
}

INSTANTIATE_TEST_SUITE_P(Engines, SiClaimsApiTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::api
