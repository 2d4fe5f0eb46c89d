// The agency API's test fixture (tests/api/si_*_test.cc): SiApi on a throwaway SQLite or
// PostgreSQL database with the example policy, an officer, an auditor and a teller, and requests
// sent through SiApi::Handle as the HTTPS server would.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "access/directory.h"
#include "api/si_routes.h"
#include "insurance/policy.h"
#include "test_database.h"
#include "test_request.h"

namespace medcard::api::si_test {

using nlohmann::json;

// From tests/insurance/monthly_run_test.cc: on 2026-11-01, A (36, wage 8,000.00) is billed
// employer 480.00, employee 160.00, account 240.00; B (26, wage 3,000.00 → floor 6,000.00)
// employer 360.00, employee 120.00, account 168.00.
inline constexpr char kA[] = "110101199001011237";
inline constexpr char kB[] = "11010120000515234X";
// 2026-11-25 09:00 UTC.
inline constexpr std::int64_t kStart = 1'795'597'200'000'000;

inline std::string PasswordOf(const std::string& login) { return login + "-password-2026"; }

class SiApiTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
    auto policy = insurance::LoadPolicyFile(std::string(MEDCARD_TEST_DATA_DIR) +
                                            "/../../config/policy/beijing-example.json");
    ASSERT_TRUE(policy.ok()) << policy.error().message;
    policy->effective_from = {2026, 1, 1};
    policy->average_annual_wage_fen = 12'000'000;
    ASSERT_TRUE(policies_.Add(*policy).ok());

    database_ = OpenDatabase();
    ASSERT_NE(database_, nullptr);
    auto connection = database_->Connect();
    ASSERT_TRUE(connection.ok());
    connection_ = std::move(connection).value();
    access::DirectoryOptions options;
    options.clock = [] { return kStart; };
    directory_ = std::make_unique<access::Directory>(options);
    SiApiServices services;
    services.database = database_.get();
    services.directory = directory_.get();
    services.policies = &policies_;
    auto key = insurance::BatchKey::FromHex(std::string(64, 'a'));
    ASSERT_TRUE(key.ok());
    services.batch_key = *key;
    services.clock_us = [] { return kStart; };
    api_ = std::make_unique<SiApi>(std::move(services));

    AddUser(*connection_, "officer1", access::Role::kInsuranceOfficer);
    AddUser(*connection_, "auditor1", access::Role::kAuditor);
    AddUser(*connection_, "teller1", access::Role::kTeller);
  }

  std::unique_ptr<store::Database> OpenDatabase() {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    EXPECT_TRUE(url.ok());
    if (!url.ok()) return nullptr;
    auto db = store::Database::Open(*url);
    EXPECT_TRUE(db.ok());
    if (!db.ok()) return nullptr;
    auto connection = (*db)->Connect();
    EXPECT_TRUE(connection.ok());
    if (!connection.ok()) return nullptr;
    for (const store::MigrationSet* set : SiMigrationSets()) {
      auto migrated = store::Migrate(**connection, *set);
      EXPECT_TRUE(migrated.ok()) << migrated.error().message;
    }
    return std::move(db).value();
  }

  void AddUser(store::Connection& connection, const std::string& login, access::Role role) {
    auto added =
        directory_->AddUser(connection, access::SystemPrincipal("si"),
                            {login, "User " + login, role,
                             access::RoleNeedsBranch(role) ? "B001" : "", PasswordOf(login)},
                            "cli");
    ASSERT_TRUE(added.ok()) << added.error().message;
  }

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = {}, const std::string& token = {},
                    std::map<std::string, std::string> headers = {}) {
    return api_->Handle(TestRequest(method, path, body, token, headers, "10.0.0.9"));
  }

  std::string SignIn(const std::string& login) {
    auto response = Call("POST", "/v1/sessions",
                         json{{"login", login}, {"password", PasswordOf(login)}}.dump());
    EXPECT_EQ(response.status, 201) << response.body;
    auto body = json::parse(response.body, nullptr, false);
    return body.is_object() && body.contains("token") ? body["token"].get<std::string>() : "";
  }

  static json Body(const HttpResponse& response) {
    return json::parse(response.body, nullptr, false);
  }
  static std::string ErrorField(const HttpResponse& response) {
    auto body = Body(response);
    if (!body.is_object() || !body.contains("error") || body["error"]["field"].is_null()) {
      return "";
    }
    return body["error"]["field"].get<std::string>();
  }

  std::int64_t Count(const std::string& table) {
    auto rows = connection_->Query("SELECT COUNT(*) FROM " + table);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  // A unit with A and B enrolled on 2026-01-01.
  void Populate(const std::string& officer) {
    ASSERT_EQ(Call("POST", "/v1/units",
                   R"({"code":"U001","name":"Capital Steel","bank_account":"6222020200112233",)"
                   R"("area":"110000"})",
                   officer)
                  .status,
              201);
    for (auto [ssn, wage] : {std::pair{kA, 800'000}, std::pair{kB, 300'000}}) {
      auto enrolled = Call("POST", "/v1/people",
                           json{{"ssn", ssn},
                                {"name", "Person"},
                                {"unit_code", "U001"},
                                {"wage_base_fen", wage},
                                {"category", "employee"},
                                {"effective", "2026-01-01"}}
                               .dump(),
                           officer);
      ASSERT_EQ(enrolled.status, 201) << enrolled.body;
    }
  }

  insurance::PolicyBook policies_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<access::Directory> directory_;
  std::unique_ptr<SiApi> api_;
};

}  // namespace medcard::api::si_test
