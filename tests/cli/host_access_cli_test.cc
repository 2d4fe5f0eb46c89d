// `medcard host users ...` and `medcard host audit ...` through the real binary: the bootstrap
// administrator from stdin, users listed, locked and unlocked, passwords never on the command
// line or in any output, and the audit log verified, exported and journaled.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>

#include "cli_run.h"
#include "store/store.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminPassword[] = "admin password 2026";

class HostAccessCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-access-cli");
    ASSERT_FALSE(dir_.empty());
    data_ = (dir_ / "host").string();
    CliRun init = Medcard("host init --test-keys --data " + data_);
    ASSERT_EQ(init.exit_code, 0) << init.err;
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Medcard(const std::string& args, std::optional<std::string> input = std::nullopt) {
    return test_support::RunCli(
        {.binary = MEDCARD_CLI,
         .environment = "MEDCARD_KEYSTORE_TEST_KDF=fast MEDCARD_PASSWORD_TEST_KDF=fast "
                        "MEDCARD_KEYSTORE_PASSPHRASE='access cli test' ",
         .args = args,
         .input = std::move(input)},
        dir_);
  }
  CliRun Host(const std::string& command, std::optional<std::string> input = std::nullopt) {
    return Medcard("host " + command + " --data " + data_, std::move(input));
  }

  fs::path dir_;
  std::string data_;
};

TEST_F(HostAccessCliTest, BootstrapsAnAdministratorAndManagesUsers) {
  CliRun admin = Host("users add --login admin --role administrator --name 'First Admin'",
                      std::string(kAdminPassword) + "\n");
  ASSERT_EQ(admin.exit_code, 0) << admin.err;
  EXPECT_THAT(admin.out, HasSubstr("user admin added: administrator"));
  CliRun teller = Host("users add --login t01 --role teller --branch B001", "teller password 1\n");
  ASSERT_EQ(teller.exit_code, 0) << teller.err;
  EXPECT_THAT(teller.out, HasSubstr("user t01 added: teller at branch B001"));

  CliRun list = Host("users list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("admin"));
  EXPECT_THAT(list.out, HasSubstr("First Admin"));
  EXPECT_THAT(list.out, HasSubstr("t01"));
  EXPECT_THAT(list.out, HasSubstr("B001"));
  EXPECT_THAT(list.out, Not(HasSubstr("scrypt")));

  CliRun locked = Host("users lock --login t01");
  ASSERT_EQ(locked.exit_code, 0) << locked.err;
  EXPECT_THAT(locked.out, HasSubstr("user t01 is locked"));
  EXPECT_THAT(Host("users list").out, HasSubstr("locked"));
  CliRun unlocked = Host("users unlock --login t01");
  ASSERT_EQ(unlocked.exit_code, 0) << unlocked.err;
  EXPECT_THAT(unlocked.out, HasSubstr("user t01 is active"));
  CliRun passwd = Host("users passwd --login t01", "another password 2\n");
  ASSERT_EQ(passwd.exit_code, 0) << passwd.err;
  EXPECT_THAT(passwd.out, HasSubstr("password of t01 changed"));
  CliRun disabled = Host("users disable --login t01");
  ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  EXPECT_THAT(disabled.out, HasSubstr("user t01 is disabled"));

  // Every change is in the audit log, and no password is anywhere in it.
  CliRun exported = Host("audit export --format jsonl");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  for (const char* action :
       {"user.add", "user.lock", "user.unlock", "user.passwd", "user.disable"}) {
    EXPECT_THAT(exported.out, HasSubstr(std::string("\"action\":\"") + action + "\"")) << action;
  }
  EXPECT_THAT(exported.out, HasSubstr("\"from\":\"cli\""));
  EXPECT_THAT(exported.out, Not(HasSubstr("password 2")));
  EXPECT_THAT(exported.out, Not(HasSubstr(kAdminPassword)));
}

TEST_F(HostAccessCliTest, RefusesBadUsersWithClearMessages) {
  CliRun no_password = Host("users add --login admin --role administrator", "");
  EXPECT_EQ(no_password.exit_code, 1);
  EXPECT_THAT(no_password.err, HasSubstr("no password"));
  CliRun short_password = Host("users add --login admin --role administrator", "short\n");
  EXPECT_EQ(short_password.exit_code, 1);
  EXPECT_THAT(short_password.err, HasSubstr("at least 10 characters"));
  CliRun bad_role = Host("users add --login admin --role root", "long enough 123\n");
  EXPECT_EQ(bad_role.exit_code, 1);
  EXPECT_THAT(bad_role.err, HasSubstr("unknown role 'root'"));
  CliRun no_branch = Host("users add --login t01 --role teller", "long enough 123\n");
  EXPECT_EQ(no_branch.exit_code, 1);
  EXPECT_THAT(no_branch.err, HasSubstr("bound to a branch"));
  CliRun bad_login = Host("users add --login 'Bad Login' --role auditor", "long enough 123\n");
  EXPECT_EQ(bad_login.exit_code, 1);
  EXPECT_THAT(bad_login.err, HasSubstr("login"));
  CliRun unknown = Host("users lock --login nobody");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no user nobody"));
  // There is no password flag at all.
  CliRun flag = Host("users add --login admin --role administrator --password x1234567890");
  EXPECT_NE(flag.exit_code, 0);
  CliRun list = Host("users list");
  ASSERT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.out, Not(HasSubstr("admin")));
  CliRun nowhere = Medcard("host users list --data " + (dir_ / "nowhere").string());
  EXPECT_EQ(nowhere.exit_code, 1);
  EXPECT_THAT(nowhere.err, HasSubstr("medcard host init"));
}

TEST_F(HostAccessCliTest, VerifiesExportsAndJournalsTheAuditLog) {
  CliRun empty = Host("audit verify");
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_THAT(empty.out, HasSubstr("audit log intact: 0 entries, head 0000"));
  ASSERT_EQ(Host("users add --login admin --role administrator", "long enough 123\n").exit_code, 0);
  ASSERT_EQ(Host("users add --login a01 --role auditor", "long enough 456\n").exit_code, 0);
  CliRun verify = Host("audit verify");
  ASSERT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_THAT(verify.out, HasSubstr("audit log intact: 2 entries, head "));
  const std::string head = verify.out.substr(verify.out.find("head ") + 5, 64);
  CliRun expected = Host("audit verify --expect-head " + head);
  EXPECT_EQ(expected.exit_code, 0) << expected.err;
  CliRun unknown_head = Host("audit verify --expect-head " + std::string(64, 'a'));
  EXPECT_EQ(unknown_head.exit_code, 1);
  EXPECT_THAT(unknown_head.err, HasSubstr("audit log BROKEN at entry 3 (deleted)"));

  CliRun csv = Host("audit export --format csv --action user.");
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_THAT(csv.out, HasSubstr("sequence,at,at_us,actor,authorised_by,action,target"));
  EXPECT_THAT(csv.out, HasSubstr(",host,,user.add,user:a01,"));
  const fs::path out = dir_ / "audit.jsonl";
  CliRun file = Host("audit export --format jsonl --target user:admin --out " + out.string());
  ASSERT_EQ(file.exit_code, 0) << file.err;
  const std::string text = test_support::ReadText(out);
  EXPECT_THAT(text, HasSubstr("\"target\":\"user:admin\""));
  EXPECT_THAT(text, Not(HasSubstr("user:a01")));
  CliRun xml = Host("audit export --format xml");
  EXPECT_EQ(xml.exit_code, 1);
  EXPECT_THAT(xml.err, HasSubstr("csv or jsonl"));

  CliRun journal = Host("audit journal --day 2000-01-01");
  ASSERT_EQ(journal.exit_code, 0) << journal.err;
  EXPECT_THAT(journal.out, HasSubstr("journal of 2000-01-01"));
  EXPECT_THAT(journal.out, HasSubstr("cards issued 0, lost 0, replaced 0, closed 0"));
  CliRun bad_day = Host("audit journal --day 2026-13-01");
  EXPECT_EQ(bad_day.exit_code, 1);
  EXPECT_THAT(bad_day.err, HasSubstr("YYYY-MM-DD"));
}

TEST_F(HostAccessCliTest, VerifyNamesATamperedEntry) {
  ASSERT_EQ(Host("users add --login admin --role administrator", "long enough 123\n").exit_code, 0);
  ASSERT_EQ(Host("users add --login a01 --role auditor", "long enough 456\n").exit_code, 0);
  {
    // A tamperer with the database owner's rights drops the trigger and edits entry 1.
    auto database = store::Database::Open(store::SqliteUrlForDataDir(data_));
    ASSERT_TRUE(database.ok());
    auto connection = (*database)->Connect();
    ASSERT_TRUE(connection.ok());
    ASSERT_TRUE((*connection)->ExecuteScript("DROP TRIGGER audit_entries_no_update").ok());
    ASSERT_TRUE((*connection)
                    ->Execute("UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 1")
                    .ok());
  }
  CliRun verify = Host("audit verify");
  EXPECT_EQ(verify.exit_code, 1);
  EXPECT_THAT(verify.err, HasSubstr("audit log BROKEN at entry 1 (edited)"));
}

}  // namespace
}  // namespace medcard
