// The agency's API for the last operations that were only on the CLI: the bank's signed daily
// consumption detail (imported once per day, refused whole when it does not authenticate or
// check, or when it is over the 64 KiB body limit) with its totals per person and per facility,
// and the forecast with its what-if (JSON, CSV and SVG). Figures are compared with what the
// library (and so the CLI) computes; bad input of every kind is refused with the right 4xx and
// changes nothing. On SQLite and PostgreSQL.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/si_routes.h"
#include "insurance/consumption.h"
#include "insurance/forecast.h"
#include "si_api_fixture.h"
#include "test_database.h"

namespace medcard::api {
namespace {

using nlohmann::json;
using si_test::kA;
using si_test::kB;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

insurance::BatchKey FixtureKey() { return *insurance::BatchKey::FromHex(std::string(64, 'a')); }

// 2026-11-02: A spends 25.00 at hospital H001 and 10.50 at pharmacy P002, B 400.00 at H001.
insurance::ConsumptionDetail Day() {
  return {{2026, 11, 2},
          {{1, "1000000000000001/EP/7", kA, "H001", 2500, "2026-11-02T09:15:00"},
           {2, "1000000000000002/EP/3", kB, "H001", 40000, "2026-11-02T12:00:00"},
           {3, "1000000000000001/EP/8", kA, "P002", 1050, "2026-11-02T18:01:02"}}};
}

std::string DetailBody(const std::string& file) { return json{{"detail", file}}.dump(); }

// Two admissions of 10,000.00 per 10 people a year; half of what the accounts receive is spent.
json ScenarioJson() {
  return {{"wage_growth_bp", 300},
          {"claims",
           {{{"from_age", 0}, {"admissions_per_1000", 100}, {"average_admission_fen", 1'000'000}}}},
          {"personal_account_spend_bp", 5000}};
}

class SiMoreApiTest : public si_test::SiApiTest {
 protected:
  std::int64_t CountWhere(const std::string& table, const std::string& where) {
    auto rows = connection_->Query("SELECT COUNT(*) FROM " + table + " WHERE " + where);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }
  std::string Header(const HttpResponse& response, const std::string& name) {
    for (const auto& [header, value] : response.headers) {
      if (header == name) return value;
    }
    return "";
  }
  // The example policy as the fixture's book holds it, with the employer paying 7% instead.
  insurance::Policy ProposedPolicy() {
    auto policy = insurance::LoadPolicyFile(std::string(MEDCARD_SOURCE_DIR) +
                                            "/config/policy/beijing-example.json");
    EXPECT_TRUE(policy.ok());
    policy->effective_from = {2026, 1, 1};
    policy->average_annual_wage_fen = 12'000'000;
    policy->contributions.employer_rate_bp = 700;
    return *policy;
  }
  // A and B enrolled, November 2026 run: the books hold a pooled-fund balance to start from.
  void PopulateAndRun(const std::string& officer) {
    Populate(officer);
    auto run = Call("POST", "/v1/months/2026-11/run", {}, officer);
    ASSERT_EQ(run.status, 200) << run.body;
  }
};

TEST_P(SiMoreApiTest, AConsumptionDayIsImportedOnceAndTotalledByPersonAndFacility) {
  const std::string officer = SignIn("officer1");
  const std::string file = insurance::WriteConsumptionDetail(Day(), FixtureKey());
  auto imported = Call("POST", "/v1/consumption", DetailBody(file), officer);
  ASSERT_EQ(imported.status, 200) << imported.body;
  EXPECT_EQ(
      Body(imported),
      (json{
          {"day", "2026-11-02"}, {"count", 3}, {"total_fen", 43550}, {"already_imported", false}}));
  auto entry = connection_->Query(
      "SELECT actor, target, details FROM audit_entries WHERE action = 'si.consumption.import'");
  ASSERT_TRUE(entry.ok() && entry->size() == 1);
  EXPECT_EQ((*entry)[0].Text(0), "officer1");
  EXPECT_EQ((*entry)[0].Text(1), "day:2026-11-02");
  EXPECT_NE((*entry)[0].Text(2).find("43550"), std::string::npos);

  // The same file again: nothing changes, nothing is audited twice.
  auto again = Call("POST", "/v1/consumption", DetailBody(file), officer);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Body(again)["already_imported"], true);
  EXPECT_EQ(Body(again)["total_fen"], 43550);
  EXPECT_EQ(CountWhere("audit_entries", "action = 'si.consumption.import'"), 1);
  // Other figures for a day already imported: 409, the first figures stay.
  insurance::ConsumptionDetail changed = Day();
  changed.lines[1].amount_fen = 39000;
  auto conflict =
      Call("POST", "/v1/consumption",
           DetailBody(insurance::WriteConsumptionDetail(changed, FixtureKey())), officer);
  EXPECT_EQ(conflict.status, 409) << conflict.body;
  EXPECT_EQ(ErrorField(conflict), "day");
  EXPECT_EQ(Count("si_consumption"), 3);

  // The totals, read by an auditor: per person, largest first, as the library (and the CLI's
  // `si consumption show`) give them.
  const std::string auditor = SignIn("auditor1");
  auto by_person = Call("GET", "/v1/consumption?from=2026-11-01&to=2026-11-30", {}, auditor);
  ASSERT_EQ(by_person.status, 200) << by_person.body;
  EXPECT_EQ(Body(by_person), (json{{"from", "2026-11-01"},
                                   {"to", "2026-11-30"},
                                   {"by", "person"},
                                   {"items",
                                    {{{"person_id", kB}, {"count", 1}, {"total_fen", 40000}},
                                     {{"person_id", kA}, {"count", 2}, {"total_fen", 3550}}}},
                                   {"totals", {{"count", 3}, {"total_fen", 43550}}}}));
  auto library = insurance::ConsumptionTotals(*connection_, insurance::ConsumptionBy::kPerson,
                                              {2026, 11, 1}, {2026, 11, 30});
  ASSERT_TRUE(library.ok());
  ASSERT_EQ(library->size(), 2u);
  EXPECT_EQ(Body(by_person)["items"][0]["total_fen"], (*library)[0].total_fen);

  auto by_facility =
      Call("GET", "/v1/consumption?from=2026-11&to=2026-11&by=facility", {}, officer);
  ASSERT_EQ(by_facility.status, 200) << by_facility.body;
  EXPECT_EQ(Body(by_facility)["items"],
            (json{{{"facility", "H001"}, {"count", 2}, {"total_fen", 42500}},
                  {{"facility", "P002"}, {"count", 1}, {"total_fen", 1050}}}));
  // A period without imported days: no rows, zero totals.
  auto empty = Call("GET", "/v1/consumption?from=2026-12-01&to=2026-12-31", {}, officer);
  ASSERT_EQ(empty.status, 200);
  EXPECT_TRUE(Body(empty)["items"].empty());
  EXPECT_EQ(Body(empty)["totals"]["total_fen"], 0);
}

TEST_P(SiMoreApiTest, BadConsumptionRequestsAreRefusedAndChangeNothing) {
  const std::string officer = SignIn("officer1");
  const std::string file = insurance::WriteConsumptionDetail(Day(), FixtureKey());
  const std::string good = DetailBody(file);

  EXPECT_EQ(Call("POST", "/v1/consumption", good).status, 401);
  EXPECT_EQ(Call("POST", "/v1/consumption", good, "not-a-token").status, 401);
  EXPECT_EQ(Call("POST", "/v1/consumption", good, SignIn("auditor1")).status, 403);
  EXPECT_EQ(Call("POST", "/v1/consumption", good, SignIn("teller1")).status, 403);
  EXPECT_EQ(Call("GET", "/v1/consumption?from=2026-11&to=2026-11", {}, SignIn("teller1")).status,
            403);
  EXPECT_EQ(Call("GET", "/v1/consumption?from=2026-11&to=2026-11").status, 401);

  EXPECT_EQ(Call("POST", "/v1/consumption", "{\"detail\": ", officer).status, 400);
  EXPECT_EQ(Call("POST", "/v1/consumption", "[1]", officer).status, 400);
  auto wrong_type = Call("POST", "/v1/consumption", R"({"detail": 5})", officer);
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_EQ(ErrorField(wrong_type), "detail");
  auto missing = Call("POST", "/v1/consumption", "{}", officer);
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(ErrorField(missing), "detail");
  auto unknown = Call("POST", "/v1/consumption",
                      json{{"detail", file}, {"day", "2026-11-02"}}.dump(), officer);
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(ErrorField(unknown), "day");

  // Signed with another key, or one amount changed after signing: refused whole.
  auto other_key = Call("POST", "/v1/consumption",
                        DetailBody(insurance::WriteConsumptionDetail(
                            Day(), *insurance::BatchKey::FromHex(std::string(64, 'b')))),
                        officer);
  EXPECT_EQ(other_key.status, 400) << other_key.body;
  EXPECT_EQ(ErrorField(other_key), "detail");
  std::string tampered = file;
  const auto amount = tampered.find("\"amount_fen\":40000");
  ASSERT_NE(amount, std::string::npos);
  tampered.replace(amount, 18, "\"amount_fen\":4000 ");
  auto bad_line = Call("POST", "/v1/consumption", DetailBody(tampered), officer);
  EXPECT_EQ(bad_line.status, 400) << bad_line.body;
  EXPECT_EQ(ErrorField(bad_line), "detail");
  auto not_a_file =
      Call("POST", "/v1/consumption", DetailBody("x'); DROP TABLE si_consumption; --"), officer);
  EXPECT_EQ(not_a_file.status, 400);

  // The totals' parameters: SQL metacharacters, unknown names, a reversed range.
  for (const std::string query :
       {"from=2026-11-01'%20OR%20'1'='1&to=2026-11-30",
        "from=2026-11-01&to=2026-11-30&by=person'%3B"
        "DROP%20TABLE%20si_consumption%3B--",
        "from=2026-11-01&to=2026-11-30&by=merchant", "from=2026-11-01", "to=2026-11-30",
        "from=2026-11-30&to=2026-11-01", "from=2026-11-01&to=2026-11-30&format=csv"}) {
    auto refused = Call("GET", "/v1/consumption?" + query, {}, officer);
    EXPECT_EQ(refused.status, 400) << query << ": " << refused.body;
    EXPECT_FALSE(ErrorField(refused).empty()) << query;
  }
  EXPECT_EQ(
      ErrorField(Call("GET", "/v1/consumption?from=2026-11-01&to=2026-11-30&by=x", {}, officer)),
      "by");

  // A server started without the batch key cannot authenticate the file: 422.
  SiApiServices keyless_services;
  keyless_services.database = database_.get();
  keyless_services.directory = directory_.get();
  keyless_services.policies = &policies_;
  keyless_services.clock_us = [] { return si_test::kStart; };
  SiApi keyless(std::move(keyless_services));
  auto no_key =
      keyless.Handle(TestRequest("POST", "/v1/consumption", good, officer, {}, "10.0.0.9"));
  EXPECT_EQ(no_key.status, 422) << no_key.body;

  EXPECT_EQ(Count("si_consumption"), 0);
  EXPECT_EQ(Count("si_consumption_days"), 0);
  EXPECT_EQ(CountWhere("audit_entries", "action = 'si.consumption.import'"), 0);
}

TEST_P(SiMoreApiTest, AConsumptionFileOverTheBodyLimitIsRefusedCleanly) {
  // 500 purchases on one day: some 80 KiB of signed detail, over the API's 64 KiB body limit.
  insurance::ConsumptionDetail busy{{2026, 11, 3}, {}};
  for (int i = 1; i <= 500; ++i) {
    busy.lines.push_back({i, "1000000000000001/EP/" + std::to_string(i), kA, "H001", 100 + i,
                          "2026-11-03T10:00:00"});
  }
  const std::string file = insurance::WriteConsumptionDetail(busy, FixtureKey());
  ASSERT_GT(DetailBody(file).size(), kMaxBodyBytes);
  auto refused = Call("POST", "/v1/consumption", DetailBody(file), SignIn("officer1"));
  EXPECT_EQ(refused.status, 413) << refused.body;
  EXPECT_EQ(Body(refused)["error"]["code"], "payload_too_large");
  EXPECT_EQ(Count("si_consumption"), 0);
  EXPECT_EQ(Count("si_consumption_days"), 0);
  EXPECT_EQ(CountWhere("audit_entries", "action = 'si.consumption.import'"), 0);
  // 300 purchases (docs/insurance.md: "about 300 purchases a day") still fit.
  insurance::ConsumptionDetail fits{{2026, 11, 4}, {}};
  for (int i = 1; i <= 300; ++i) {
    fits.lines.push_back({i, "1000000000000002/EP/" + std::to_string(i), kB, "H001", 100 + i,
                          "2026-11-04T10:00:00"});
  }
  auto accepted =
      Call("POST", "/v1/consumption",
           DetailBody(insurance::WriteConsumptionDetail(fits, FixtureKey())), SignIn("officer1"));
  ASSERT_EQ(accepted.status, 200) << accepted.body;
  EXPECT_EQ(Body(accepted)["count"], 300);
  EXPECT_EQ(Count("si_consumption"), 300);
  // The same file goes in whole through the library the CLI's `si consumption import` calls.
  auto imported = insurance::ImportConsumption(*connection_, file, FixtureKey());
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  EXPECT_EQ(imported->count, 500);
  EXPECT_EQ(Count("si_consumption"), 800);
}

TEST_P(SiMoreApiTest, AReplayedImportAndForecastGetTheFirstAnswer) {
  const std::string officer = SignIn("officer1");
  const std::string body = DetailBody(insurance::WriteConsumptionDetail(Day(), FixtureKey()));
  auto first = Call("POST", "/v1/consumption", body, officer, {{"idempotency-key", "c-1"}});
  ASSERT_EQ(first.status, 200) << first.body;
  auto replay = Call("POST", "/v1/consumption", body, officer, {{"idempotency-key", "c-1"}});
  EXPECT_EQ(replay.status, 200);
  EXPECT_EQ(replay.body, first.body);
  EXPECT_EQ(Body(replay)["already_imported"], false);  // the first answer, not a second import
  EXPECT_EQ(Header(replay, "Idempotent-Replayed"), "true");
  EXPECT_EQ(CountWhere("audit_entries", "action = 'si.consumption.import'"), 1);
  insurance::ConsumptionDetail other = Day();
  other.day = {2026, 11, 4};
  for (auto& line : other.lines) {
    line.reference += "x";
    line.time.replace(0, 10, "2026-11-04");
  }
  auto reused = Call("POST", "/v1/consumption",
                     DetailBody(insurance::WriteConsumptionDetail(other, FixtureKey())), officer,
                     {{"idempotency-key", "c-1"}});
  EXPECT_EQ(reused.status, 409) << reused.body;
  EXPECT_EQ(Count("si_consumption_days"), 1);

  PopulateAndRun(officer);
  const std::string forecast = json{{"years", 1}, {"start", "2027-01"}}.dump();
  auto projected = Call("POST", "/v1/forecast", forecast, officer, {{"idempotency-key", "f-1"}});
  ASSERT_EQ(projected.status, 200) << projected.body;
  auto projected_again =
      Call("POST", "/v1/forecast", forecast, officer, {{"idempotency-key", "f-1"}});
  EXPECT_EQ(projected_again.status, 200);
  EXPECT_EQ(projected_again.body, projected.body);
  EXPECT_EQ(Header(projected_again, "Idempotent-Replayed"), "true");
}

TEST_P(SiMoreApiTest, TheForecastAndWhatIfAreTheLibrarysFiguresAsJsonCsvAndSvg) {
  const std::string officer = SignIn("officer1");
  PopulateAndRun(officer);
  auto scenario = insurance::ParseScenarioJson(ScenarioJson().dump());
  ASSERT_TRUE(scenario.ok()) << scenario.error().message;
  const insurance::Policy proposed = ProposedPolicy();
  auto expected =
      insurance::ForecastFromRegistry(*connection_, policies_, *scenario, {2027, 1}, 3, proposed);
  ASSERT_TRUE(expected.ok()) << expected.error().message;

  const json request = {{"years", 3},
                        {"start", "2027-01"},
                        {"scenario", ScenarioJson()},
                        {"policy", json::parse(insurance::PolicyToJson(proposed))}};
  // An auditor may run it: it reads and changes nothing.
  const std::string auditor = SignIn("auditor1");
  const std::int64_t entries = Count("audit_entries");
  auto answer = Call("POST", "/v1/forecast", request.dump(), auditor);
  ASSERT_EQ(answer.status, 200) << answer.body;
  const json body = Body(answer);
  EXPECT_EQ(body["start"], "2027-01");
  EXPECT_EQ(body["years"], 3);
  EXPECT_EQ(body["opening_pooled_fund_fen"], expected->current.opening_pooled_fund_fen);
  ASSERT_EQ(body["current"].size(), 3u);
  ASSERT_EQ(body["proposed"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& want = expected->current.years[i];
    const json& got = body["current"][i];
    EXPECT_EQ(got["year"], want.year);
    EXPECT_EQ(got["first_month"], insurance::MonthText(want.first_month));
    EXPECT_EQ(got["contributors"], want.contributors);
    EXPECT_EQ(got["retirees"], want.retirees);
    EXPECT_EQ(got["employer_fen"], want.employer_fen);
    EXPECT_EQ(got["employee_fen"], want.employee_fen);
    EXPECT_EQ(got["personal_account_fen"], want.personal_account_fen);
    EXPECT_EQ(got["pooled_income_fen"], want.pooled_income_fen);
    EXPECT_EQ(got["admissions"], want.admissions);
    EXPECT_EQ(got["claims_fen"], want.claims_fen);
    EXPECT_EQ(got["pooled_fund_closing_fen"], want.pooled_fund_closing_fen);
    EXPECT_EQ(got["personal_accounts_closing_fen"], want.personal_accounts_closing_fen);
    EXPECT_EQ(body["proposed"][i]["pooled_fund_closing_fen"],
              expected->proposed.years[i].pooled_fund_closing_fen);
    EXPECT_EQ(body["proposed"][i]["employer_fen"], expected->proposed.years[i].employer_fen);
  }
  EXPECT_EQ(body["pooled_fund_change_fen"], json(expected->pooled_fund_change_fen));
  // A's and B's employers pay 1% more of the wage base (8,000.00 and the 6,000.00 floor): 140.00
  // a month, 1,680.00 a year more in the first year, less what goes to the accounts.
  EXPECT_GT(expected->pooled_fund_change_fen[0], 0);
  EXPECT_EQ(expected->proposed.years[0].employer_fen - expected->current.years[0].employer_fen,
            168'000);
  EXPECT_EQ(Count("audit_entries"), entries);

  auto csv = Call("POST", "/v1/forecast?format=csv", request.dump(), officer);
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(csv.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(csv.body, insurance::ForecastCsv(*expected, true));
  auto svg = Call("POST", "/v1/forecast?format=svg", request.dump(), officer);
  ASSERT_EQ(svg.status, 200) << svg.body;
  EXPECT_EQ(svg.content_type, "image/svg+xml");
  EXPECT_NE(svg.body.find("<svg"), std::string::npos);
  EXPECT_NE(svg.body.find("proposed policy"), std::string::npos);

  // Without a scenario, policy or start: the current policies only, from the next month
  // (the server's clock is 2026-11-25).
  auto plain = Call("POST", "/v1/forecast", R"({"years": 1})", officer);
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(Body(plain)["start"], "2026-12");
  EXPECT_TRUE(Body(plain)["proposed"].is_null());
  EXPECT_TRUE(Body(plain)["pooled_fund_change_fen"].is_null());
  auto plain_expected =
      insurance::ForecastFromRegistry(*connection_, policies_, {}, {2026, 12}, 1, std::nullopt);
  ASSERT_TRUE(plain_expected.ok());
  EXPECT_EQ(Body(plain)["current"][0]["pooled_fund_closing_fen"],
            plain_expected->current.years[0].pooled_fund_closing_fen);
  auto plain_csv = Call("POST", "/v1/forecast?format=csv", R"({"years": 1})", officer);
  EXPECT_EQ(plain_csv.body, insurance::ForecastCsv(*plain_expected, false));
}

TEST_P(SiMoreApiTest, BadForecastRequestsAreRefusedAndChangeNothing) {
  const std::string officer = SignIn("officer1");
  PopulateAndRun(officer);
  const std::string teller = SignIn("teller1");
  const std::int64_t entries = Count("audit_entries");
  const std::int64_t people = Count("si_people");
  const std::string good = R"({"years": 1})";
  EXPECT_EQ(Call("POST", "/v1/forecast", good).status, 401);
  EXPECT_EQ(Call("POST", "/v1/forecast", good, teller).status, 403);

  struct Case {
    std::string body;
    std::string field;
  };
  json other_area = json::parse(insurance::PolicyToJson(ProposedPolicy()));
  json wrong_scenario = ScenarioJson();
  wrong_scenario["wage_grwth_bp"] = 1;
  json bad_band = ScenarioJson();
  bad_band["claims"][0]["from_age"] = 10;
  json bad_policy = other_area;
  bad_policy["contributions"]["employer_rate_bp"] = -1;
  for (const Case& bad : std::vector<Case>{
           {"{\"years\": ", ""},
           {"[1]", ""},
           {"{}", "years"},
           {R"({"years": "2"})", "years"},
           {R"({"years": 2.5})", "years"},
           {R"({"years": true})", "years"},
           {R"({"years": 6})", "years"},
           {R"({"years": 0})", "years"},
           {R"({"years": 1, "years": 2})", "years"},
           {R"({"years": 1, "yeras": 2})", "yeras"},
           {R"({"years": 1, "start": "2027-13"})", "start"},
           {R"({"years": 1, "start": 202701})", "start"},
           {R"({"years": 1, "start": "2027-01'; DROP TABLE si_people; --"})", "start"},
           {R"({"years": 1, "scenario": "wage_growth_bp=300"})", "scenario"},
           {json{{"years", 1}, {"scenario", wrong_scenario}}.dump(), "scenario.wage_grwth_bp"},
           {json{{"years", 1}, {"scenario", bad_band}}.dump(), "scenario.claims[0].from_age"},
           {json{{"years", 1}, {"policy", bad_policy}}.dump(),
            "policy.contributions.employer_rate_bp"},
           {R"({"years": 1, "policy": []})", "policy"}}) {
    auto refused = Call("POST", "/v1/forecast", bad.body, officer);
    EXPECT_EQ(refused.status, 400) << bad.body << ": " << refused.body;
    EXPECT_EQ(ErrorField(refused), bad.field) << bad.body << ": " << refused.body;
  }
  // A proposed policy for an area nobody in the registry is in.
  other_area["area_code"] = "310000";
  auto elsewhere =
      Call("POST", "/v1/forecast", json{{"years", 1}, {"policy", other_area}}.dump(), officer);
  EXPECT_GE(elsewhere.status, 400) << elsewhere.body;
  EXPECT_LT(elsewhere.status, 500) << elsewhere.body;
  EXPECT_EQ(ErrorField(elsewhere), "policy");
  for (const std::string query : {"format=xml", "format=csv&area=110000", "years=2"}) {
    auto refused = Call("POST", "/v1/forecast?" + query, good, officer);
    EXPECT_EQ(refused.status, 400) << query << ": " << refused.body;
  }
  EXPECT_EQ(Call("GET", "/v1/forecast", {}, officer).status, 405);
  EXPECT_EQ(Count("audit_entries"), entries);
  EXPECT_EQ(Count("si_people"), people);
}

INSTANTIATE_TEST_SUITE_P(Engines, SiMoreApiTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::api
