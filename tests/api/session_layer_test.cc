// The session layer both APIs share (api/session_layer.h), on its own over SQLite and
// PostgreSQL: what a client sees before any handler runs (401, 403, 400) and the Idempotency-Key
// rules (one run, the first answer replayed, 409 for a key reused or in use, a 5xx or a download
// releasing the key).
#include "api/session_layer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "test_database.h"

namespace medcard::api {
namespace {

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

constexpr std::int64_t kNow = 1'795'597'200'000'000;  // 2026-11-25 09:00 UTC

class SessionLayerTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok());
    auto db = store::Database::Open(*url);
    ASSERT_TRUE(db.ok());
    database_ = std::move(db).value();
    auto connection = database_->Connect();
    ASSERT_TRUE(connection.ok());
    connection_ = std::move(connection).value();
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &api::Migrations()}) {
      ASSERT_TRUE(store::Migrate(*connection_, *set).ok());
    }
    access::DirectoryOptions options;
    options.clock = [] { return kNow; };
    directory_ = std::make_unique<access::Directory>(options);
    pool_ = std::make_unique<ConnectionPool>(*database_);
    layer_ = std::make_unique<SessionLayer>(*directory_, *pool_,
                                            SessionLayer::Options{"test api", [] { return kNow; }});
    for (auto [login, role] : {std::pair{"auditor1", access::Role::kAuditor},
                               std::pair{"officer1", access::Role::kInsuranceOfficer}}) {
      ASSERT_TRUE(directory_
                      ->AddUser(*connection_, access::SystemPrincipal("test"),
                                {login, login, role, "", std::string(login) + "-password-2026"},
                                "cli")
                      .ok());
    }
    auto session = directory_->SignIn(*connection_, "officer1", "officer1-password-2026", "t");
    ASSERT_TRUE(session.ok());
    officer_ = session->token;
  }

  static HttpRequest Request(const std::string& method, const std::string& body,
                             const std::string& token, const std::string& key = {}) {
    HttpRequest request;
    request.method = method;
    request.path = "/v1/things";
    request.body = body;
    if (!token.empty()) request.headers["authorization"] = "Bearer " + token;
    if (!key.empty()) request.headers["idempotency-key"] = key;
    return request;
  }

  // A handler that counts its runs and answers `status` with the run's number.
  HttpResponse Run(const HttpRequest& request, const SessionRoute& route, int status = 201,
                   std::string content_type = "application/json") {
    return layer_->Run(request, route, [&](SessionRequest& session) {
      ++runs_;
      last_login_ = session.principal.login;
      last_now_ = session.now_us;
      HttpResponse response = JsonResponse(status, "{\"run\":" + std::to_string(runs_) + "}");
      response.content_type = content_type;
      return response;
    });
  }

  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<access::Directory> directory_;
  std::unique_ptr<ConnectionPool> pool_;
  std::unique_ptr<SessionLayer> layer_;
  std::string officer_;
  int runs_ = 0;
  std::string last_login_;
  std::int64_t last_now_ = 0;
};

TEST_P(SessionLayerTest, ChecksComeBeforeTheHandler) {
  const SessionRoute route{"si.registry.change", nullptr, false};
  EXPECT_EQ(Run(Request("POST", "", ""), route).status, 401);
  EXPECT_EQ(Run(Request("POST", "", std::string(64, 'a')), route).status, 401);
  auto auditor = directory_->SignIn(*connection_, "auditor1", "auditor1-password-2026", "t");
  ASSERT_TRUE(auditor.ok());
  auto forbidden = Run(Request("POST", "", auditor->token), route);
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(forbidden.user, "auditor1");
  EXPECT_EQ(Run(Request("POST", R"({"x":1})", officer_), route).status, 400);
  EXPECT_EQ(runs_, 0);

  static const Schema schema = Schema().String("name", Presence::kRequired, 1, 10);
  EXPECT_EQ(Run(Request("POST", R"({"name":5})", officer_), {"", &schema, false}).status, 400);
  EXPECT_EQ(Run(Request("POST", R"({"name":"ok","x":1})", officer_), {"", &schema, false}).status,
            400);
  EXPECT_EQ(runs_, 0);
  auto ok = Run(Request("POST", R"({"name":"ok"})", officer_), {"", &schema, false});
  EXPECT_EQ(ok.status, 201);
  EXPECT_EQ(ok.user, "officer1");
  EXPECT_EQ(last_login_, "officer1");
  EXPECT_EQ(last_now_, kNow);
  // A document for the handler's own parser passes as it is.
  EXPECT_EQ(Run(Request("POST", "any text", officer_), {"", nullptr, true}).status, 201);
  EXPECT_EQ(runs_, 2);
}

TEST_P(SessionLayerTest, AnIdempotencyKeyRunsTheRequestOnce) {
  const SessionRoute route{"si.registry.change", nullptr, true};
  auto first = Run(Request("POST", "a", officer_, "key-1"), route);
  auto replay = Run(Request("POST", "a", officer_, "key-1"), route);
  EXPECT_EQ(first.status, 201);
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, first.body);
  ASSERT_EQ(replay.headers.size(), 1u);
  EXPECT_EQ(replay.headers[0].first, "Idempotent-Replayed");
  EXPECT_EQ(runs_, 1);
  // Another body under the same key, a malformed key.
  EXPECT_EQ(Run(Request("POST", "b", officer_, "key-1"), route).status, 409);
  EXPECT_EQ(Run(Request("POST", "a", officer_, "key 1!"), route).status, 400);
  EXPECT_EQ(runs_, 1);
  // GET is never reserved.
  Run(Request("GET", "", officer_, "key-1"), {"", nullptr, false}, 200);
  EXPECT_EQ(runs_, 2);
  // A key whose first request is still running (reserved, no answer yet), and one whose first
  // request never finished (reserved long ago: the server stopped).
  for (auto [key, reserved_at] :
       {std::pair{"key-busy", kNow - 1'000'000}, std::pair{"key-stale", std::int64_t{0}}}) {
    ASSERT_TRUE(connection_
                    ->Execute("INSERT INTO api_idempotency (login, idempotency_key, request_hash, "
                              "status, response, created_at_us) VALUES ('officer1', ?, ?, 0, "
                              "'', ?)",
                              {key, Sha256Hex("POST\n/v1/things\na"), reserved_at})
                    .ok());
  }
  auto busy = Run(Request("POST", "a", officer_, "key-busy"), route);
  EXPECT_EQ(busy.status, 409);
  EXPECT_NE(busy.body.find("is in progress"), std::string::npos) << busy.body;
  auto stale = Run(Request("POST", "a", officer_, "key-stale"), route);
  EXPECT_EQ(stale.status, 409);
  EXPECT_NE(stale.body.find("did not finish"), std::string::npos) << stale.body;
  EXPECT_EQ(runs_, 2);
}

TEST_P(SessionLayerTest, AFailureOrADownloadReleasesTheKey) {
  const SessionRoute route{"si.registry.change", nullptr, true};
  EXPECT_EQ(Run(Request("POST", "a", officer_, "key-2"), route, 500).status, 500);
  EXPECT_EQ(Run(Request("POST", "a", officer_, "key-2"), route, 201).status, 201);
  EXPECT_EQ(runs_, 2);
  Run(Request("POST", "d", officer_, "key-3"), route, 200, "text/csv");
  Run(Request("POST", "d", officer_, "key-3"), route, 200, "text/csv");
  EXPECT_EQ(runs_, 4);
  auto rows =
      connection_->Query("SELECT COUNT(*) FROM api_idempotency WHERE idempotency_key = 'key-3'");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

TEST_P(SessionLayerTest, AnAnswerRecordedInTheActionsTransactionCommitsWithIt) {
  ASSERT_TRUE(connection_->Execute("CREATE TABLE things (name TEXT NOT NULL)").ok());
  const SessionRoute route{"si.registry.change", nullptr, true};
  // The action and its answer in one transaction; `fail` rolls both back (a 5xx).
  auto act = [&](const std::string& key, bool fail) {
    return layer_->Run(Request("POST", "thing", officer_, key), route, [&](SessionRequest& s) {
      ++runs_;
      const HttpResponse answer = JsonResponse(201, R"({"made":"thing"})");
      auto done = store::RunTransaction(
          s.connection, store::TransactionMode::kWrite,
          [&](store::Connection& c) -> store::DbStatus {
            auto inserted = c.Execute("INSERT INTO things (name) VALUES ('thing')");
            if (!inserted) return inserted.error();
            if (s.record_answer) {
              if (Status stored = s.record_answer(c, answer); !stored.ok()) {
                return store::MakeDbError(store::ErrorKind::kOther, stored.error().message);
              }
            }
            if (fail) return store::MakeDbError(store::ErrorKind::kOther, "the action failed");
            return store::Done{};
          });
      return done ? answer : ErrorResponse(500, "internal", "nothing was changed");
    });
  };
  auto count = [&](const std::string& sql) {
    auto rows = connection_->Query(sql);
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  };
  EXPECT_EQ(act("key-tx", true).status, 500);
  EXPECT_EQ(count("SELECT COUNT(*) FROM things"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM api_idempotency WHERE idempotency_key = 'key-tx'"), 0);
  EXPECT_EQ(act("key-tx", false).status, 201);
  auto replay = act("key-tx", false);
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, R"({"made":"thing"})");
  EXPECT_EQ(runs_, 2);
  EXPECT_EQ(count("SELECT COUNT(*) FROM things"), 1);
}

INSTANTIATE_TEST_SUITE_P(Engines, SessionLayerTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::api
