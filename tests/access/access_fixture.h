// A fresh database per test with the audit and access schemas, a Directory on a clock the test
// moves, and helpers to add users and read the audit log.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "test_database.h"

namespace medcard::access::testing {

inline const bool kFastKdf = [] {
  setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
  return true;
}();

// 2026-11-25 09:00 UTC.
inline constexpr std::int64_t kStart = 1'795'597'200'000'000;
inline constexpr std::int64_t kMinute = 60'000'000;

class AccessTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    auto db = store::Database::Open(*url);
    ASSERT_TRUE(db.ok()) << db.error().message;
    database_ = std::move(*db);
    auto c = database_->Connect();
    ASSERT_TRUE(c.ok());
    connection_ = std::move(*c);
    for (const store::MigrationSet* set : {&audit::Migrations(), &Migrations()}) {
      auto migrated = store::Migrate(*connection_, *set);
      ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    }
    DirectoryOptions options;
    options.clock = [this] { return now_.load(); };
    directory_ = std::make_unique<Directory>(options);
  }

  void Add(const std::string& login, Role role, const std::string& branch = "B001") {
    auto added = directory_->AddUser(
        *connection_, admin_,
        {login, "User " + login, role, RoleNeedsBranch(role) ? branch : "", PasswordOf(login)},
        "cli");
    ASSERT_TRUE(added.ok()) << added.error().message;
  }
  static std::string PasswordOf(const std::string& login) { return login + "-password-2026"; }

  std::vector<audit::Record> AuditOf(const std::string& action) {
    audit::Filter filter;
    filter.action = action;
    filter.limit = 1000;
    auto records = audit::Read(*connection_, filter);
    EXPECT_TRUE(records.ok());
    return records.ok() ? *records : std::vector<audit::Record>{};
  }

  void Advance(std::int64_t us) { now_ += us; }

  std::atomic<std::int64_t> now_{kStart};
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<Directory> directory_;
  Principal admin_ = SystemPrincipal("host");
};

}  // namespace medcard::access::testing
