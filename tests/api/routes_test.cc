// The endpoints without a network (Api::Handle), on SQLite and PostgreSQL: sign-in, roles, dual
// control, replays, bad input of every kind (each leaves the card and the audit log unchanged),
// two tellers racing on one card, pagination, the audit endpoints, and docs/api/openapi.yaml
// listing exactly the routes the server registers.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "access/directory.h"
#include "api/routes.h"
#include "audit/audit_log.h"
#include "branch/card_scripts.h"
#include "branch/services.h"
#include "crypto/crypto.h"
#include "host/host.h"
#include "iso8583/messages.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::api {
namespace {

using nlohmann::json;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr char kAsn[] = "10000000000000000001";
constexpr char kBranch[] = "B001";
// 2026-11-25 09:00 UTC.
constexpr std::int64_t kStart = 1'795'597'200'000'000;
constexpr std::int64_t kMinute = 60'000'000;

std::string PasswordOf(const std::string& login) { return login + "-password-2026"; }

class ApiTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    ::setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-api");
    // Without the set's PIN verification key: a test adds one when it needs it.
    auto key_store = test_support::TestKeyStore((std::filesystem::path(dir_) / "keys").string(),
                                                "api test keys", keys::kCardPinVerificationKey);
    ASSERT_TRUE(key_store.ok()) << key_store.error().message;
    key_store_ = std::move(key_store).value();
    auto db = test_support::NewHostDatabase(GetParam());
    ASSERT_TRUE(db.ok()) << db.error().message;
    database_ = std::move(db->database);
    connection_ = std::move(db->connection);
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &branch::Migrations(), &api::Migrations()}) {
      auto migrated = store::Migrate(*connection_, *set);
      ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    }
    access::DirectoryOptions directory_options;
    directory_options.clock = [this] { return now_.load(); };
    directory_ = std::make_unique<access::Directory>(directory_options);
    ApiServices services;
    services.database = database_.get();
    services.key_store = key_store_.get();
    services.directory = directory_.get();
    services.branch_options.clock_us = [this] { return now_.load(); };
    api_ = std::make_unique<Api>(std::move(services));

    AddUser("admin1", access::Role::kAdministrator);
    AddUser("t01", access::Role::kTeller);
    AddUser("t02", access::Role::kTeller);
    AddUser("s01", access::Role::kSeniorTeller);
    AddUser("a01", access::Role::kAuditor);
    NewActiveCard(kAsn);
  }
  void TearDown() override {
    api_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  void AddUser(const std::string& login, access::Role role) {
    auto added =
        directory_->AddUser(*connection_, access::SystemPrincipal("host"),
                            {login, "User " + login, role,
                             access::RoleNeedsBranch(role) ? kBranch : "", PasswordOf(login)},
                            "cli");
    ASSERT_TRUE(added.ok()) << added.error().message;
  }

  void NewActiveCard(const std::string& asn) {
    branch::BranchServices services(*connection_, *key_store_, branch_options());
    branch::Actor teller;
    teller.login = "t01";
    teller.from = "cli";
    auto applied = services.Apply(teller, {"310101199001011234", "holder-1", kBranch});
    ASSERT_TRUE(applied.ok()) << applied.error().message;
    branch::CardIssue issue;
    issue.application_id = applied->application_id;
    issue.asn = asn;
    auto issued = services.Issue(teller, issue);
    ASSERT_TRUE(issued.ok()) << issued.error().message;
    branch::CardAction activate;
    activate.asn = asn;
    auto active = services.Activate(teller, activate);
    ASSERT_TRUE(active.ok()) << active.error().message;
  }
  branch::BranchServices::Options branch_options() {
    branch::BranchServices::Options options;
    options.clock_us = [this] { return now_.load(); };
    return options;
  }

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = {}, const std::string& token = {},
                    std::map<std::string, std::string> headers = {}) {
    HttpRequest request;
    request.method = method;
    const auto question = path.find('?');
    request.path = path.substr(0, question);
    if (question != std::string::npos) {
      std::string query = path.substr(question + 1);
      std::size_t start = 0;
      while (start < query.size()) {
        std::size_t end = query.find('&', start);
        if (end == std::string::npos) end = query.size();
        const std::string pair = query.substr(start, end - start);
        const auto eq = pair.find('=');
        request.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
        start = end + 1;
      }
    }
    request.body = body;
    request.remote_address = "10.0.0.7";
    if (!body.empty()) request.headers["content-type"] = "application/json";
    if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
    for (auto& [name, value] : headers) request.headers[name] = value;
    return api_->Handle(request);
  }

  std::string SignIn(const std::string& login) {
    auto response = Call("POST", "/v1/sessions",
                         json{{"login", login}, {"password", PasswordOf(login)}}.dump());
    EXPECT_EQ(response.status, 201) << response.body;
    auto body = json::parse(response.body, nullptr, false);
    return body.is_object() && body.contains("token") ? body["token"].get<std::string>() : "";
  }

  json Card(const std::string& asn = kAsn) {
    auto response = Call("GET", "/v1/cards/" + asn, {}, SignIn("t02"));
    EXPECT_EQ(response.status, 200) << response.body;
    return json::parse(response.body, nullptr, false);
  }

  std::int64_t AuditCount() {
    auto rows = connection_->Query("SELECT COUNT(*) FROM audit_entries");
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  static std::string ErrorCode(const HttpResponse& response) {
    auto body = json::parse(response.body, nullptr, false);
    if (!body.is_object() || !body.contains("error")) return "<no error body: " + response.body;
    return body["error"]["code"].get<std::string>();
  }
  static std::string HeaderOf(const HttpResponse& response, const std::string& name) {
    for (const auto& [header, value] : response.headers) {
      if (header == name) return value;
    }
    return "<no " + name + ">";
  }
  static std::string ErrorField(const HttpResponse& response) {
    auto body = json::parse(response.body, nullptr, false);
    if (!body.is_object() || !body.contains("error") || body["error"]["field"].is_null()) {
      return "";
    }
    return body["error"]["field"].get<std::string>();
  }

  std::string dir_;
  std::atomic<std::int64_t> now_{kStart};
  std::unique_ptr<keys::KeyStore> key_store_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<access::Directory> directory_;
  std::unique_ptr<Api> api_;
};

TEST_P(ApiTest, SignInUseAndSignOut) {
  const std::string token = SignIn("t01");
  ASSERT_EQ(token.size(), 64u);
  auto card = Call("GET", std::string("/v1/cards/") + kAsn, {}, token);
  EXPECT_EQ(card.status, 200) << card.body;
  EXPECT_EQ(card.user, "t01");
  auto body = json::parse(card.body);
  EXPECT_EQ(body["state"], "active");
  EXPECT_EQ(body["loss"]["reported"], false);
  EXPECT_EQ(Call("DELETE", "/v1/sessions/current", {}, token).status, 204);
  auto after = Call("GET", std::string("/v1/cards/") + kAsn, {}, token);
  EXPECT_EQ(after.status, 401);
  EXPECT_EQ(ErrorCode(after), "unauthenticated");
}

TEST_P(ApiTest, BadSignInsAreRefused) {
  auto wrong = Call("POST", "/v1/sessions", R"({"login": "t01", "password": "wrong-password"})");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(ErrorCode(wrong), "unauthenticated");
  auto malformed = Call("POST", "/v1/sessions", R"({"login": "t01", )");
  EXPECT_EQ(malformed.status, 400);
  auto unknown =
      Call("POST", "/v1/sessions", R"({"login": "t01", "password": "x", "remember": true})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(ErrorField(unknown), "remember");
  auto missing = Call("POST", "/v1/sessions", R"({"login": "t01"})");
  EXPECT_EQ(ErrorField(missing), "password");
  auto typed = Call("POST", "/v1/sessions", R"({"login": 1, "password": "x"})");
  EXPECT_EQ(ErrorField(typed), "login");
  // Five wrong passwords lock the account: 423 even with the right one.
  for (int i = 0; i < 5; ++i) {
    Call("POST", "/v1/sessions", R"({"login": "t02", "password": "wrong-password"})");
  }
  auto locked =
      Call("POST", "/v1/sessions", json{{"login", "t02"}, {"password", PasswordOf("t02")}}.dump());
  EXPECT_EQ(locked.status, 423) << locked.body;
}

TEST_P(ApiTest, EveryRouteButSignInNeedsAValidSession) {
  const std::int64_t audit_before = AuditCount();
  for (const auto& route : api_->Routes()) {
    if (route.pattern == "/v1/sessions") continue;
    std::string path = route.pattern;
    path = std::regex_replace(path, std::regex(R"(\{asn\})"), kAsn);
    path = std::regex_replace(path, std::regex(R"(\{login\})"), "t01");
    const std::string body = route.method == "POST" ? "{}" : "";
    auto none = Call(route.method, path, body);
    EXPECT_EQ(none.status, 401) << route.method << " " << route.pattern;
    EXPECT_EQ(ErrorCode(none), "unauthenticated");
    EXPECT_EQ(HeaderOf(none, "WWW-Authenticate"), "Bearer realm=\"medcard\"")
        << route.method << " " << route.pattern;
    auto forged = Call(route.method, path, body, std::string(64, 'a'));
    EXPECT_EQ(forged.status, 401) << route.method << " " << route.pattern;
    EXPECT_EQ(HeaderOf(forged, "WWW-Authenticate"), "Bearer realm=\"medcard\"");
  }
  EXPECT_EQ(Card()["state"], "active");
  // Only the sign-in Card() made was audited.
  EXPECT_EQ(AuditCount(), audit_before + 1);
}

TEST_P(ApiTest, ExpiredSessionIsRefused) {
  const std::string token = SignIn("t01");
  now_ += 16 * kMinute;  // the idle timeout is 15 minutes
  auto response = Call("POST", std::string("/v1/cards/") + kAsn + "/loss", "{}", token);
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(Card()["state"], "active");
}

TEST_P(ApiTest, WrongRoleIsForbiddenAndChangesNothing) {
  const std::int64_t version = Card()["version"];
  auto auditor_loss = Call("POST", std::string("/v1/cards/") + kAsn + "/loss", "{}", SignIn("a01"));
  EXPECT_EQ(auditor_loss.status, 403) << auditor_loss.body;
  EXPECT_EQ(ErrorCode(auditor_loss), "forbidden");
  EXPECT_EQ(Call("GET", "/v1/audit", {}, SignIn("t01")).status, 403);
  EXPECT_EQ(Call("GET", "/v1/users", {}, SignIn("t01")).status, 403);
  auto teller_adds = Call("POST", "/v1/users",
                          json{{"login", "t99"},
                               {"display_name", "X"},
                               {"role", "supervisor"},
                               {"password", "long-enough-password"}}
                              .dump(),
                          SignIn("t01"));
  EXPECT_EQ(teller_adds.status, 403);
  EXPECT_EQ(Card()["version"], version);
  EXPECT_EQ(Call("GET", "/v1/users/t99", {}, SignIn("admin1")).status, 404);
}

TEST_P(ApiTest, LossReportAndCancellation) {
  const std::string token = SignIn("t01");
  const std::int64_t version = Card()["version"];
  auto lost =
      Call("POST", std::string("/v1/cards/") + kAsn + "/loss",
           json{{"expected_version", version}, {"reason", "stolen at the market"}}.dump(), token);
  ASSERT_EQ(lost.status, 200) << lost.body;
  EXPECT_EQ(json::parse(lost.body)["state"], "lost");
  auto card = Card();
  EXPECT_EQ(card["loss"]["reported"], true);
  EXPECT_TRUE(card["blacklisted_at"].is_string());

  audit::Filter filter;
  filter.action = "card.report_loss";
  auto records = audit::Read(*connection_, filter);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].entry.actor, "t01");
  EXPECT_EQ((*records)[0].entry.from, "10.0.0.7");

  auto cancelled = Call("DELETE", std::string("/v1/cards/") + kAsn + "/loss", "", token);
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(Card()["state"], "active");
  // Cancelling again: the card is not lost.
  auto again = Call("DELETE", std::string("/v1/cards/") + kAsn + "/loss", "", token);
  EXPECT_EQ(again.status, 422) << again.body;
}

TEST_P(ApiTest, BadInputIsRefusedAndChangesNothing) {
  const std::string token = SignIn("t01");
  const std::string loss = std::string("/v1/cards/") + kAsn + "/loss";
  const json before = Card();
  const std::int64_t audit_before = AuditCount();
  struct Case {
    std::string body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {R"({"reason": "x")", 400, ""},
      {R"({"reason": 12})", 400, "reason"},
      {R"({"expected_version": "3"})", 400, "expected_version"},
      {R"({"expected_version": 3.5})", 400, "expected_version"},
      {R"({"expected_version": -1})", 400, "expected_version"},
      {R"({"reson": "typo"})", 400, "reson"},
      {R"({"reason": ")" + std::string(201, 'x') + R"("})", 400, "reason"},
      {R"({"authorisation": {"login": "s01"}})", 400, "authorisation.password"},
      {"[]", 400, ""},
      {R"({"expected_version": 999})", 409, ""},
  };
  for (const auto& c : cases) {
    auto response = Call("POST", loss, c.body, token);
    EXPECT_EQ(response.status, c.status) << c.body << " → " << response.body;
    EXPECT_EQ(ErrorField(response), c.field) << c.body;
  }
  auto oversized =
      Call("POST", loss, "{\"reason\": \"" + std::string(kMaxBodyBytes, 'x') + "\"}", token);
  EXPECT_EQ(oversized.status, 413);
  auto not_json = Call("POST", loss, "reason=x", token, {{"content-type", "text/plain"}});
  EXPECT_EQ(not_json.status, 415);
  auto bad_asn = Call("POST", "/v1/cards/1234/loss", "{}", token);
  EXPECT_EQ(bad_asn.status, 400);
  EXPECT_EQ(ErrorField(bad_asn), "asn");
  auto unknown_card = Call("POST", "/v1/cards/99999999999999999999/loss", "{}", token);
  EXPECT_EQ(unknown_card.status, 404) << unknown_card.body;
  auto body_on_get = Call("GET", std::string("/v1/cards/") + kAsn, "{}", token);
  EXPECT_EQ(body_on_get.status, 400);

  EXPECT_EQ(Card(), before);
  EXPECT_EQ(AuditCount(), audit_before + 1);  // Card()'s sign-in only
}

TEST_P(ApiTest, SqlMetacharactersAreDataNotSql) {
  const std::string evil = "x'); DROP TABLE branch_cards; -- \" ; DELETE FROM audit_entries; '";
  // In a sign-in: just a wrong login.
  auto sign_in = Call("POST", "/v1/sessions",
                      json{{"login", "t01' OR '1'='1' --"}, {"password", evil}}.dump());
  EXPECT_EQ(sign_in.status, 401) << sign_in.body;
  // In a login field with a pattern: refused before any SQL.
  const std::string admin = SignIn("admin1");
  auto bad_login = Call(
      "POST", "/v1/users",
      json{{"login", evil}, {"display_name", evil}, {"role", "auditor"}, {"password", evil}}.dump(),
      admin);
  EXPECT_EQ(bad_login.status, 400);
  EXPECT_EQ(ErrorField(bad_login), "login");
  // Stored verbatim where text is allowed.
  auto added =
      Call("POST", "/v1/users",
           json{{"login", "a02"}, {"display_name", evil}, {"role", "auditor"}, {"password", evil}}
               .dump(),
           admin);
  ASSERT_EQ(added.status, 201) << added.body;
  auto fetched = Call("GET", "/v1/users/a02", {}, admin);
  EXPECT_EQ(json::parse(fetched.body)["display_name"], evil);
  auto evil_sign_in =
      Call("POST", "/v1/sessions", json{{"login", "a02"}, {"password", evil}}.dump());
  EXPECT_EQ(evil_sign_in.status, 201);
  // In a reason, a payee reference, a path segment and query filters.
  const std::string token = SignIn("t01");
  auto lost = Call("POST", std::string("/v1/cards/") + kAsn + "/loss",
                   json{{"reason", evil}}.dump(), token);
  EXPECT_EQ(lost.status, 200) << lost.body;
  EXPECT_EQ(Call("GET", "/v1/cards/x'%20OR%20'1'='1", {}, token).status, 400);
  auto filtered = Call("GET", "/v1/audit?actor=" + std::string("x' OR '1'='1") + "&action=card.",
                       {}, SignIn("a01"));
  EXPECT_EQ(filtered.status, 200) << filtered.body;
  EXPECT_TRUE(json::parse(filtered.body)["items"].empty());

  // Every table is still there and the log still verifies.
  EXPECT_EQ(Card()["state"], "lost");
  auto verification = Call("GET", "/v1/audit/verification", {}, SignIn("a01"));
  ASSERT_EQ(verification.status, 200) << verification.body;
  EXPECT_EQ(json::parse(verification.body)["intact"], true);
}

TEST_P(ApiTest, ReplayedRequestGetsTheFirstAnswer) {
  const std::string token = SignIn("t01");
  const std::string loss = std::string("/v1/cards/") + kAsn + "/loss";
  const std::string body = R"({"reason": "lost on the bus"})";
  auto first = Call("POST", loss, body, token, {{"idempotency-key", "desk7-0001"}});
  ASSERT_EQ(first.status, 200) << first.body;
  const std::int64_t audit_after_first = AuditCount();
  auto replay = Call("POST", loss, body, token, {{"idempotency-key", "desk7-0001"}});
  EXPECT_EQ(replay.status, 200);
  EXPECT_EQ(replay.body, first.body);
  bool flagged = false;
  for (const auto& [name, value] : replay.headers) flagged |= name == "Idempotent-Replayed";
  EXPECT_TRUE(flagged);
  EXPECT_EQ(AuditCount(), audit_after_first);  // the action did not run again

  auto other_body =
      Call("POST", loss, R"({"reason": "another"})", token, {{"idempotency-key", "desk7-0001"}});
  EXPECT_EQ(other_body.status, 409);
  EXPECT_EQ(ErrorField(other_body), "Idempotency-Key");
  auto insane = Call("POST", loss, body, token, {{"idempotency-key", "has spaces"}});
  EXPECT_EQ(insane.status, 400);
  // Without a key the same request runs again: the card is already lost.
  EXPECT_EQ(Call("POST", loss, body, token).status, 422);
}

// docs/api.md "Replays": the answer under an Idempotency-Key commits in the action's own
// transaction. A database that refuses to record the answer (a trigger here) leaves the card,
// the blacklist and the audit log as they were, and releases the key.
TEST_P(ApiTest, IdempotencyRecordCommitsWithTheActionOrNothing) {
  const std::string token = SignIn("t01");
  const bool sqlite = GetParam() == store::Engine::kSqlite;
  auto refused = connection_->ExecuteScript(
      sqlite ? "CREATE TRIGGER refuse_answer BEFORE UPDATE ON api_idempotency "
               "WHEN NEW.status <> 0 BEGIN SELECT RAISE(ABORT, 'refused'); END"
             : "CREATE FUNCTION refuse_answer() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
               "'refused'; END $$ LANGUAGE plpgsql; "
               "CREATE TRIGGER refuse_answer BEFORE UPDATE ON api_idempotency FOR EACH ROW "
               "WHEN (NEW.status <> 0) EXECUTE FUNCTION refuse_answer()");
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  const std::string loss = std::string("/v1/cards/") + kAsn + "/loss";
  const std::int64_t audit_before = AuditCount();
  auto failed = Call("POST", loss, R"({"reason": "stolen"})", token, {{"idempotency-key", "k-1"}});
  EXPECT_EQ(failed.status, 500) << failed.body;
  EXPECT_EQ(AuditCount(), audit_before);  // no card.report_loss entry
  auto blacklisted = connection_->Query("SELECT COUNT(*) FROM host_blacklist");
  ASSERT_TRUE(blacklisted.ok()) << blacklisted.error().message;
  EXPECT_EQ((*blacklisted)[0].Int(0), 0);
  EXPECT_EQ(Card()["state"], "active");

  ASSERT_TRUE(connection_
                  ->ExecuteScript("DROP TRIGGER refuse_answer" +
                                  std::string(sqlite ? "" : " ON api_idempotency"))
                  .ok());
  // The key was released with the 500: the retry runs once and is then answered from the record.
  auto retried = Call("POST", loss, R"({"reason": "stolen"})", token, {{"idempotency-key", "k-1"}});
  ASSERT_EQ(retried.status, 200) << retried.body;
  auto stored = connection_->Query(
      "SELECT status, response FROM api_idempotency WHERE idempotency_key = 'k-1'");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].Int("status"), 200);
  EXPECT_EQ((*stored)[0].Text("response"), retried.body);
  EXPECT_EQ(Card()["state"], "lost");
}

TEST_P(ApiTest, TwoTellersOnTheSameCardOneWinsTheOtherGetsAConflict) {
  const std::int64_t version = Card()["version"];
  const std::string t01 = SignIn("t01");
  const std::string t02 = SignIn("t02");
  const std::string body = json{{"expected_version", version}}.dump();
  const std::string path = std::string("/v1/cards/") + kAsn;
  HttpResponse loss;
  HttpResponse capture;
  std::thread first([&] { loss = Call("POST", path + "/loss", body, t01); });
  std::thread second([&] { capture = Call("POST", path + "/capture", body, t02); });
  first.join();
  second.join();
  std::multiset<int> statuses = {loss.status, capture.status};
  EXPECT_EQ(statuses, (std::multiset<int>{200, 409})) << loss.body << " / " << capture.body;
  const json card = Card();
  EXPECT_EQ(card["version"], version + 1);
  EXPECT_EQ(card["state"], loss.status == 200 ? "lost" : "captured");
}

TEST_P(ApiTest, DualControlForClosure) {
  const std::string token = SignIn("t01");
  const std::string closure = std::string("/v1/cards/") + kAsn + "/closure";
  auto alone = Call("POST", closure, R"({"payee_reference": "6222-0001"})", token);
  EXPECT_EQ(alone.status, 403) << alone.body;
  auto self = Call("POST", closure,
                   json{{"payee_reference", "6222-0001"},
                        {"authorisation", {{"login", "t01"}, {"password", PasswordOf("t01")}}}}
                       .dump(),
                   token);
  EXPECT_EQ(self.status, 403) << self.body;
  auto wrong = Call("POST", closure,
                    json{{"payee_reference", "6222-0001"},
                         {"authorisation", {{"login", "s01"}, {"password", "not-it"}}}}
                        .dump(),
                    token);
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  EXPECT_EQ(Card()["state"], "active");
  auto closed = Call("POST", closure,
                     json{{"payee_reference", "6222-0001"},
                          {"authorisation", {{"login", "s01"}, {"password", PasswordOf("s01")}}}}
                         .dump(),
                     token);
  ASSERT_EQ(closed.status, 200) << closed.body;
  EXPECT_EQ(json::parse(closed.body)["card"]["state"], "closed");
  audit::Filter filter;
  filter.action = "card.close";
  auto records = audit::Read(*connection_, filter);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].entry.authorised_by, "s01");
}

TEST_P(ApiTest, ValidityChangeAndReplacement) {
  const std::string token = SignIn("t01");
  const std::string base = std::string("/v1/cards/") + kAsn;
  auto bad_date = Call("POST", base + "/validity", R"({"valid_to": "2031-02-30"})", token);
  EXPECT_EQ(ErrorField(bad_date), "valid_to");
  auto validity = Call("POST", base + "/validity", R"({"valid_to": "2031-12-31"})", token);
  ASSERT_EQ(validity.status, 200) << validity.body;
  EXPECT_EQ(json::parse(validity.body)["valid_to"], "2031-12-31");
  auto replaced = Call("POST", base + "/replacement",
                       json{{"reason", "damaged"},
                            {"authorisation", {{"login", "s01"}, {"password", PasswordOf("s01")}}}}
                           .dump(),
                       token);
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  auto body = json::parse(replaced.body);
  EXPECT_EQ(body["old_card"]["state"], "replaced");
  EXPECT_EQ(body["new_card"]["state"], "applied");
  EXPECT_EQ(body["transfer"]["kind"], "replacement");
}

TEST_P(ApiTest, CardScriptsNeedTheirAuthorityAndGiveACommand) {
  const std::string token = SignIn("t01");
  const std::string base = std::string("/v1/cards/") + kAsn + "/scripts/";
  const json context = {{"challenge", "0102030405060708"},
                        {"start_date", "2026-01-01"},
                        {"expiry_date", "2030-12-31"}};
  auto alone = Call("POST", base + "unblock", context.dump(), token);
  EXPECT_EQ(alone.status, 403) << alone.body;
  json authorised = context;
  authorised["authorisation"] = {{"login", "s01"}, {"password", PasswordOf("s01")}};
  auto unblock = Call("POST", base + "unblock", authorised.dump(), token);
  ASSERT_EQ(unblock.status, 200) << unblock.body;
  const std::string command = json::parse(unblock.body)["command"];
  EXPECT_EQ(command.substr(0, 8), "84180000");
  json validity = context;
  validity["new_expiry"] = "2032-12-31";
  auto expiry = Call("POST", base + "validity", validity.dump(), token);
  ASSERT_EQ(expiry.status, 200) << expiry.body;
  EXPECT_EQ(json::parse(expiry.body)["new_expiry"], "2032-12-31");
  json bad = context;
  bad["challenge"] = "01020";
  EXPECT_EQ(ErrorField(Call("POST", base + "unblock", bad.dump(), token)), "challenge");
  audit::Filter filter;
  filter.action = "card.unblock.script";
  auto records = audit::Read(*connection_, filter);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].entry.authorised_by, "s01");
}

// docs/branch.md "PIN reset and the online PIN": the reset gives the host the new PIN's value
// in the same transaction as its audit entry, and the host's wrong-PIN count starts again.
TEST_P(ApiTest, PinResetGivesTheHostTheNewPinsOnlineValueAndResetsItsTries) {
  // Cards whose numbers give a PAN (docs/protocol.md 5.7), so the host can check PINs online.
  constexpr char kStoredAsn[] = "01000000000000000042";  // has an online PIN value
  constexpr char kNewAsn[] = "01000000000000000043";     // has none yet
  NewActiveCard(kStoredAsn);
  NewActiveCard(kNewAsn);
  const Bytes pek = HexToBytes("4A5B6C7D8E9FA0B1C2D3E4F506172839");
  const Bytes pvk = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
  const Bytes tmk = HexToBytes("1C2D3E4F5061728394A5B6C7D8E9FA0B");
  const Bytes working_pin_key = HexToBytes("5D6E7F8091A2B3C4D5E6F708192A3B4C");
  ASSERT_TRUE(key_store_->ImportTestKey("pek/WS01", pek).ok());
  ASSERT_TRUE(key_store_->ImportTestKey("tmk/000000000301", tmk).ok());
  const std::string token = SignIn("t01");
  // The teller's PIN pad: a format 0 block for branch::PinBlockPan under pek/WS01.
  auto reset = [&](const std::string& asn, const std::string& pin) {
    const Bytes block = crypto::BlockCipher::Des(pek)->EncryptEcb(*crypto::MakePinBlock(
        crypto::PinBlockFormat::kFormat0, pin, *branch::PinBlockPan(HexToBytes(asn))));
    const json body = {{"challenge", "0102030405060708"},
                       {"start_date", "2026-01-01"},
                       {"expiry_date", "2030-12-31"},
                       {"workstation", "WS01"},
                       {"encrypted_pin_block", ToHex(block)},
                       {"authorisation", {{"login", "s01"}, {"password", PasswordOf("s01")}}}};
    return Call("POST", "/v1/cards/" + asn + "/scripts/pin-reset", body.dump(), token);
  };
  // A balance inquiry's PIN as a terminal sends it: under its working PIN key, for field 2's PAN.
  host::Host host(*connection_, *key_store_);
  auto received = key_store_->Unwrap(*key_store_->Find("tmk/000000000301"),
                                     *crypto::EncryptKeyForTransport(tmk, working_pin_key));
  ASSERT_TRUE(received.ok()) << received.error().message;
  auto online = [&](const std::string& asn, const std::string& pin) -> std::string {
    const Bytes card = HexToBytes(asn);
    const std::string pan = *iso8583::PanFromAsn(card);
    const Bytes block =
        crypto::BlockCipher::Des(working_pin_key)
            ->EncryptEcb(*crypto::MakePinBlock(crypto::PinBlockFormat::kFormat0, pin, pan));
    auto verified = host.VerifyOnlinePin(card, pan, *received, block);
    if (verified.ok()) return "00";
    const auto code = static_cast<std::uint16_t>(verified.error().code);
    return std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  };

  // No PIN verification key anywhere: the reset works as before, the host has no value (12).
  auto before_any_key = reset(kNewAsn, "205518");
  ASSERT_EQ(before_any_key.status, 200) << before_any_key.body;
  EXPECT_EQ(online(kNewAsn, "205518"), "12");

  ASSERT_TRUE(key_store_->ImportTestKey(std::string(keys::kCardPinVerificationKey), pvk).ok());
  keys::KeyRef pvk_ref = *key_store_->Find(keys::kCardPinVerificationKey);
  // The issued card's PIN 111111; three wrong PINs block the card online (75).
  const std::string pan = *iso8583::PanFromAsn(HexToBytes(kStoredAsn));
  ASSERT_TRUE(host.ReplacePinVerificationValue(HexToBytes(kStoredAsn),
                                               {std::string(keys::kCardPinVerificationKey), 1,
                                                *key_store_->PinOffset(pvk_ref, pan, "111111")})
                  .ok());
  EXPECT_EQ(online(kStoredAsn, "111111"), "00");
  EXPECT_EQ(online(kStoredAsn, "999999"), "55");
  EXPECT_EQ(online(kStoredAsn, "999999"), "55");
  EXPECT_EQ(online(kStoredAsn, "999999"), "75");
  EXPECT_EQ(online(kStoredAsn, "111111"), "75");

  auto response = reset(kStoredAsn, "482915");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(json::parse(response.body)["command"].get<std::string>().substr(0, 10), "842400000C");
  // The new PIN matches; the old one is a wrong PIN counted from zero again (55, not 75).
  EXPECT_EQ(online(kStoredAsn, "482915"), "00");
  EXPECT_EQ(online(kStoredAsn, "111111"), "55");
  EXPECT_EQ(online(kStoredAsn, "111111"), "55");
  EXPECT_EQ(online(kStoredAsn, "482915"), "00");
  // The stored value is the new PIN's offset, never the PIN.
  auto stored =
      connection_->Query("SELECT pin_offset, failed_tries FROM host_card_pins WHERE asn = ?",
                         {std::string(kStoredAsn)});
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].Text("pin_offset"), *key_store_->PinOffset(pvk_ref, pan, "482915"));
  EXPECT_EQ((*stored)[0].Int("failed_tries"), 0);

  // A card without a value gets one when the key store holds the card PVK.
  ASSERT_EQ(reset(kNewAsn, "730164").status, 200);
  EXPECT_EQ(online(kNewAsn, "730164"), "00");
  EXPECT_EQ(online(kNewAsn, "205518"), "55");

  // A block under another PIN pad key changes nothing: no script, no new value, no audit entry.
  const std::int64_t audited = AuditCount();
  ASSERT_TRUE(key_store_->ImportTestKey("pek/WS02", tmk).ok());
  json other = {
      {"challenge", "0102030405060708"},
      {"start_date", "2026-01-01"},
      {"expiry_date", "2030-12-31"},
      {"workstation", "WS02"},
      {"encrypted_pin_block", ToHex(crypto::BlockCipher::Des(pek)->EncryptEcb(*crypto::MakePinBlock(
                                  crypto::PinBlockFormat::kFormat0, "999000",
                                  *branch::PinBlockPan(HexToBytes(kStoredAsn)))))},
      {"authorisation", {{"login", "s01"}, {"password", PasswordOf("s01")}}}};
  auto refused = Call("POST", std::string("/v1/cards/") + kStoredAsn + "/scripts/pin-reset",
                      other.dump(), token);
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(AuditCount(), audited);
  EXPECT_EQ(online(kStoredAsn, "482915"), "00");

  // Each reset is audited with the key its online value is under (never the PIN or offset).
  audit::Filter filter;
  filter.action = "card.pin_reset.script";
  auto records = audit::Read(*connection_, filter);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 3u);
  int with_online_value = 0;
  for (const auto& record : *records) {
    if (record.entry.details.find("\"pvk/CARDS\"") != std::string::npos) ++with_online_value;
    EXPECT_EQ(record.entry.details.find("482915"), std::string::npos);
    EXPECT_EQ(record.entry.details.find("730164"), std::string::npos);
  }
  EXPECT_EQ(with_online_value, 2);
}

TEST_P(ApiTest, PaginationOfUsersAndTransactions) {
  const std::string admin = SignIn("admin1");
  auto first = Call("GET", "/v1/users?limit=2", {}, admin);
  ASSERT_EQ(first.status, 200) << first.body;
  auto page = json::parse(first.body);
  ASSERT_EQ(page["items"].size(), 2u);
  EXPECT_EQ(page["items"][0]["login"], "a01");
  ASSERT_TRUE(page["next"].is_string());
  auto second =
      Call("GET", "/v1/users?limit=10&after=" + page["next"].get<std::string>(), {}, admin);
  auto rest = json::parse(second.body);
  EXPECT_EQ(rest["items"].size(), 3u);  // 5 users in all
  EXPECT_TRUE(rest["next"].is_null());
  for (const char* query : {"limit=0", "limit=501", "limit=x", "after=-1", "after=abc"}) {
    auto refused = Call("GET", std::string("/v1/users?") + query, {}, admin);
    EXPECT_EQ(refused.status, 400) << query;
  }
  const std::string token = SignIn("t01");
  auto history = Call("GET", std::string("/v1/cards/") + kAsn + "/transactions?limit=5", {}, token);
  ASSERT_EQ(history.status, 200) << history.body;
  EXPECT_TRUE(json::parse(history.body)["items"].is_array());
  EXPECT_EQ(
      Call("GET", std::string("/v1/cards/") + kAsn + "/transactions?limit=501", {}, token).status,
      400);
  auto statement =
      Call("GET", std::string("/v1/cards/") + kAsn + "/statement?from=2026-11-01&to=2026-11-30", {},
           token);
  ASSERT_EQ(statement.status, 200) << statement.body;
  EXPECT_EQ(statement.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(statement.body.substr(0, 5), "date,");
  EXPECT_EQ(Call("GET", std::string("/v1/cards/") + kAsn + "/statement?from=2026-11-01", {}, token)
                .status,
            400);
}

TEST_P(ApiTest, UsersLockAndUnlock) {
  const std::string admin = SignIn("admin1");
  auto duplicate = Call("POST", "/v1/users",
                        json{{"login", "t01"},
                             {"display_name", "Again"},
                             {"role", "teller"},
                             {"branch", kBranch},
                             {"password", "long-enough-password"}}
                            .dump(),
                        admin);
  EXPECT_EQ(duplicate.status, 409) << duplicate.body;
  auto bad_role = Call("POST", "/v1/users",
                       json{{"login", "x01"},
                            {"display_name", "X"},
                            {"role", "king"},
                            {"password", "long-enough-password"}}
                           .dump(),
                       admin);
  EXPECT_EQ(ErrorField(bad_role), "role");
  auto locked = Call("POST", "/v1/users/t02/lock", "", admin);
  ASSERT_EQ(locked.status, 200) << locked.body;
  EXPECT_EQ(json::parse(locked.body)["state"], "locked");
  auto refused =
      Call("POST", "/v1/sessions", json{{"login", "t02"}, {"password", PasswordOf("t02")}}.dump());
  EXPECT_EQ(refused.status, 423);
  EXPECT_EQ(Call("POST", "/v1/users/t02/unlock", "", admin).status, 200);
  EXPECT_FALSE(SignIn("t02").empty());
  EXPECT_EQ(Call("POST", "/v1/users/nobody/lock", "", admin).status, 404);
}

TEST_P(ApiTest, AuditReadExportAndVerify) {
  Call("POST", std::string("/v1/cards/") + kAsn + "/loss", "{}", SignIn("t01"));
  const std::string auditor = SignIn("a01");
  auto read = Call("GET", "/v1/audit?action=card.report_loss", {}, auditor);
  ASSERT_EQ(read.status, 200) << read.body;
  auto items = json::parse(read.body)["items"];
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["actor"], "t01");
  EXPECT_EQ(items[0]["target"], std::string("card:") + kAsn);
  auto paged = Call("GET", "/v1/audit?limit=1", {}, auditor);
  EXPECT_TRUE(json::parse(paged.body)["next"].is_string());
  auto exported = Call("GET", "/v1/audit/export?format=csv&action=card.", {}, auditor);
  ASSERT_EQ(exported.status, 200) << exported.body;
  EXPECT_EQ(exported.content_type, "text/csv; charset=utf-8");
  EXPECT_NE(exported.body.find("card.report_loss"), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/audit/export?format=xml", {}, auditor).status, 400);
  EXPECT_EQ(Call("GET", "/v1/audit?from=2026-13-01", {}, auditor).status, 400);
  auto verified = Call("GET", "/v1/audit/verification", {}, auditor);
  ASSERT_EQ(verified.status, 200) << verified.body;
  EXPECT_EQ(json::parse(verified.body)["intact"], true);
}

// docs/api/openapi.yaml documents exactly the routes the server registers.
TEST_P(ApiTest, OpenApiDocumentListsEveryRoute) {
  if (GetParam() != store::Engine::kSqlite) GTEST_SKIP() << "engine-independent";
  std::ifstream file(std::string(MEDCARD_TEST_DATA_DIR) + "/../../docs/api/openapi.yaml");
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

TEST_P(ApiTest, ApplyAndIssueACardAndBadInputChangesNothing) {
  const std::string token = SignIn("t01");
  const std::string auditor = SignIn("a01");
  const std::int64_t audit_before = AuditCount();
  for (const std::string& body :
       {std::string(R"({"holder_reference": "h-2"})"), std::string(R"({"person_id": 7,)"),
        std::string(R"({"person_id": 7, "holder_reference": "h-2"})"),
        std::string(R"({"person_id": "P2", "holder_reference": "h-2", "colour": "red"})"),
        std::string(R"({"person_id": "P2'; DROP TABLE branch_cards; --", )"
                    R"("holder_reference": "h-2"})")}) {
    auto refused = Call("POST", "/v1/cards/applications", body, token);
    EXPECT_EQ(refused.status, 400) << body << " → " << refused.body;
  }
  EXPECT_EQ(Call("POST", "/v1/cards/applications",
                 R"({"person_id": "P2", "holder_reference": "h"})", auditor)
                .status,
            403);
  EXPECT_EQ(AuditCount(), audit_before);

  auto applied =
      Call("POST", "/v1/cards/applications",
           R"({"person_id": "310101199202021234", "holder_reference": "holder-2"})", token);
  ASSERT_EQ(applied.status, 201) << applied.body;
  const json application = json::parse(applied.body);
  EXPECT_EQ(application["state"], "applied");
  EXPECT_EQ(application["branch"], kBranch);
  const std::string id = std::to_string(application["application_id"].get<std::int64_t>());

  const std::string issue_path = "/v1/cards/applications/" + id + "/issue";
  EXPECT_EQ(ErrorField(Call("POST", "/v1/cards/applications/x1/issue",
                            R"({"asn": "10000000000000000002"})", token)),
            "application_id");
  EXPECT_EQ(ErrorField(Call("POST", issue_path, R"({"asn": "1000"})", token)), "asn");
  EXPECT_EQ(ErrorField(Call("POST", issue_path,
                            R"({"asn": "10000000000000000002", "valid_to": "2031-02-30"})", token)),
            "valid_to");
  EXPECT_EQ(Call("POST", "/v1/cards/applications/999999/issue",
                 R"({"asn": "10000000000000000002"})", token)
                .status,
            404);
  auto issued = Call("POST", issue_path,
                     R"({"asn": "10000000000000000002", "valid_to": "2031-11-30"})", token);
  ASSERT_EQ(issued.status, 200) << issued.body;
  EXPECT_EQ(json::parse(issued.body)["state"], "issued");
  EXPECT_EQ(Card("10000000000000000002")["valid_to"], "2031-11-30");
  // Issuing the same application again: its state does not allow it.
  EXPECT_EQ(Call("POST", issue_path, R"({"asn": "10000000000000000003"})", token).status, 422);
}

TEST_P(ApiTest, TellerJournalAndBranchDayReportNeedJournalRead) {
  EXPECT_EQ(Call("GET", "/v1/reports/teller-journal?day=2026-11-25", {}, SignIn("t01")).status,
            403);
  const std::string token = SignIn("s01");
  for (const char* bad : {"", "?day=2026-13-01", "?day=yesterday", "?day=2026-11-25%27"}) {
    auto refused = Call("GET", std::string("/v1/reports/teller-journal") + bad, {}, token);
    EXPECT_EQ(refused.status, 400) << bad;
    EXPECT_EQ(ErrorField(refused), "day");
  }
  auto journal = Call("GET", "/v1/reports/teller-journal?day=2026-11-25", {}, token);
  ASSERT_EQ(journal.status, 200) << journal.body;
  const json day = json::parse(journal.body);
  EXPECT_EQ(day["cards_issued"], 1);
  bool found = false;
  for (const auto& teller : day["tellers"]) {
    if (teller["login"] != "t01") continue;
    found = true;
    EXPECT_EQ(teller["by_action"]["card.issue"], 1);
  }
  EXPECT_TRUE(found) << journal.body;

  EXPECT_EQ(
      ErrorField(Call("GET", "/v1/reports/branch-day?from=2026-11-26&to=2026-11-25", {}, token)),
      "from");
  EXPECT_EQ(ErrorField(Call("GET", "/v1/reports/branch-day?from=2026-11-25", {}, token)), "to");
  auto report = Call("GET", "/v1/reports/branch-day?from=2026-11-25&to=2026-11-25", {}, token);
  ASSERT_EQ(report.status, 200) << report.body;
  const json items = json::parse(report.body)["items"];
  ASSERT_EQ(items.size(), 1u) << report.body;
  EXPECT_EQ(items[0]["branch"], kBranch);
  EXPECT_EQ(items[0]["applied"], 1);
  EXPECT_EQ(items[0]["issued"], 1);
  EXPECT_EQ(items[0]["activated"], 1);
  EXPECT_EQ(items[0]["lost"], 0);
}

TEST_P(ApiTest, RoleLimitsAreReadByStaffAndChangedByAnAdministratorOnly) {
  const std::string teller = SignIn("t01");
  const std::string senior = SignIn("s01");
  const std::string admin = SignIn("admin1");
  auto teller_limit = Call("GET", "/v1/roles/teller/limit", {}, teller);
  ASSERT_EQ(teller_limit.status, 200) << teller_limit.body;
  EXPECT_EQ(json::parse(teller_limit.body)["own_limit_fen"], 100000);
  EXPECT_TRUE(json::parse(teller_limit.body)["authorise_limit_fen"].is_null());
  EXPECT_EQ(Call("GET", "/v1/roles/janitor/limit", {}, teller).status, 404);

  const std::int64_t audit_before = AuditCount();
  EXPECT_EQ(Call("PUT", "/v1/roles/teller/limit", R"({"own_limit_fen": 900000})", senior).status,
            403);
  for (const char* body : {R"({"own_limit_fen": -1})", R"({"own_limit_fen": "100"})", R"({})",
                           R"({"own_limit_fen": 1, "extra": 2})", R"({"own_limit_fen": 1)"}) {
    EXPECT_EQ(Call("PUT", "/v1/roles/teller/limit", body, admin).status, 400) << body;
  }
  EXPECT_EQ(AuditCount(), audit_before);

  auto changed = Call("PUT", "/v1/roles/senior_teller/limit",
                      R"({"own_limit_fen": 600000, "authorise_limit_fen": 2500000})", admin);
  ASSERT_EQ(changed.status, 200) << changed.body;
  auto read = Call("GET", "/v1/roles/senior_teller/limit", {}, teller);
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(json::parse(read.body)["own_limit_fen"], 600000);
  EXPECT_EQ(json::parse(read.body)["authorise_limit_fen"], 2500000);
  EXPECT_EQ(AuditCount(), audit_before + 1);
}

INSTANTIATE_TEST_SUITE_P(Engines, ApiTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::api
