// Users, sign-in and sessions, expiry on an injected clock, lock-out, state changes, passwords
// and the permission table, on both engines; every change leaves its audit entry.
#include "access/directory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "access_fixture.h"

namespace medcard::access {
namespace {

using testing::AccessTest;
using ::testing::HasSubstr;
using testing::kMinute;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

using DirectoryTest = AccessTest;

TEST_P(DirectoryTest, AddsAndListsUsersAndAuditsTheAddition) {
  Add("t01", Role::kTeller, "B001");
  Add("a01", Role::kAuditor);
  auto users = directory_->ListUsers(*connection_, admin_);
  ASSERT_TRUE(users.ok()) << users.error().message;
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].login, "a01");
  EXPECT_EQ((*users)[1].login, "t01");
  EXPECT_EQ((*users)[1].role, Role::kTeller);
  EXPECT_EQ((*users)[1].branch, "B001");
  EXPECT_EQ((*users)[1].state, UserState::kActive);
  EXPECT_EQ((*users)[1].created_at_us, testing::kStart);

  const auto added = AuditOf("user.add");
  ASSERT_EQ(added.size(), 2u);
  EXPECT_EQ(added[0].entry.actor, "host");
  EXPECT_EQ(added[0].entry.target, "user:t01");
  EXPECT_EQ(added[0].entry.from, "cli");
  EXPECT_THAT(added[0].entry.details, HasSubstr(R"("role":"teller")"));
  EXPECT_EQ(added[0].entry.details.find("password"), std::string::npos);
}

TEST_P(DirectoryTest, RefusesBadUsersNamingTheField) {
  Add("t01", Role::kTeller);
  struct Case {
    NewUser user;
    ErrorCode code;
    std::string field;
  };
  const std::string good = "long enough password";
  for (const Case& c : std::vector<Case>{
           {{"T01", "x", Role::kTeller, "B1", good}, ErrorCode::kInvalid, "login"},
           {{"ab", "x", Role::kTeller, "B1", good}, ErrorCode::kInvalid, "login"},
           {{"t'; DROP TABLE access_users; --", "x", Role::kTeller, "B1", good},
            ErrorCode::kInvalid,
            "login"},
           {{std::string(33, 'a'), "x", Role::kTeller, "B1", good}, ErrorCode::kInvalid, "login"},
           {{"t02", "", Role::kTeller, "B1", good}, ErrorCode::kInvalid, "display_name"},
           {{"t02", "x", Role::kTeller, "", good}, ErrorCode::kInvalid, "branch"},
           {{"t02", "x", Role::kTeller, "B1", "short"}, ErrorCode::kInvalid, "password"},
           {{"teller.0002", "x", Role::kTeller, "B1", "TELLER.0002"},
            ErrorCode::kInvalid,
            "password"},
           {{"t01", "x", Role::kTeller, "B1", good}, ErrorCode::kConflict, "login"},
       }) {
    auto added = directory_->AddUser(*connection_, admin_, c.user, "cli");
    ASSERT_FALSE(added.ok()) << c.user.login;
    EXPECT_EQ(added.error().code, c.code) << c.user.login;
    EXPECT_EQ(added.error().field, c.field) << c.user.login;
  }
  auto teller = directory_->AddUser(*connection_, Principal{"t01", Role::kTeller, "B001"},
                                    {"t09", "x", Role::kTeller, "B1", good}, "10.0.0.1");
  ASSERT_FALSE(teller.ok());
  EXPECT_EQ(teller.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(directory_->ListUsers(*connection_, admin_)->size(), 1u);
}

TEST_P(DirectoryTest, SignInAuthenticateSignOut) {
  Add("t01", Role::kTeller, "B007");
  auto session = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "10.0.0.7");
  ASSERT_TRUE(session.ok()) << session.error().message;
  EXPECT_EQ(session->token.size(), 64u);
  EXPECT_EQ(session->principal.login, "t01");
  EXPECT_EQ(session->idle_expires_at_us, testing::kStart + 15 * kMinute);
  EXPECT_EQ(session->absolute_expires_at_us, testing::kStart + 8 * 60 * kMinute);

  auto principal = directory_->Authenticate(*connection_, session->token);
  ASSERT_TRUE(principal.ok()) << principal.error().message;
  EXPECT_EQ(principal->login, "t01");
  EXPECT_EQ(principal->role, Role::kTeller);
  EXPECT_EQ(principal->branch, "B007");

  // Only the token's hash is stored.
  auto stored = connection_->Query("SELECT token_hash FROM access_sessions");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_NE((*stored)[0].Text(0), session->token);

  ASSERT_TRUE(directory_->SignOut(*connection_, session->token, "10.0.0.7").ok());
  auto after = directory_->Authenticate(*connection_, session->token);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(directory_->SignOut(*connection_, session->token, "10.0.0.7").error().code,
            ErrorCode::kUnauthenticated);
  for (const std::string& bad :
       {std::string(""), std::string(64, 'g'), session->token + "0", std::string(64, '0')}) {
    EXPECT_EQ(directory_->Authenticate(*connection_, bad).error().code,
              ErrorCode::kUnauthenticated);
  }
  ASSERT_EQ(AuditOf("user.sign_in").size(), 1u);
  EXPECT_EQ(AuditOf("user.sign_in")[0].entry.from, "10.0.0.7");
  ASSERT_EQ(AuditOf("user.sign_out").size(), 1u);
}

TEST_P(DirectoryTest, WrongPasswordAndUnknownLoginLookTheSameAndAreAudited) {
  Add("t01", Role::kTeller);
  auto wrong = directory_->SignIn(*connection_, "t01", "not the password", "10.0.0.7");
  auto unknown = directory_->SignIn(*connection_, "nobody", "not the password", "10.0.0.7");
  ASSERT_FALSE(wrong.ok());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(wrong.error().message, unknown.error().message);
  const auto failed = AuditOf("user.sign_in_failed");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0].entry.target, "user:t01");
  EXPECT_THAT(failed[0].entry.details, HasSubstr("wrong password"));
  EXPECT_THAT(failed[1].entry.details, HasSubstr("unknown login"));
  for (const auto& r : failed) {
    EXPECT_EQ(r.entry.details.find("not the password"), std::string::npos);
  }
}

TEST_P(DirectoryTest, AnyLoginTextIsRefusedCleanlyAndAuditedPrintably) {
  for (const std::string& login : {std::string(""),
                                   std::string("\xff\xfe\x01"
                                               "bad"),
                                   std::string(1000, 'x'), std::string("t01' OR '1'='1")}) {
    auto refused = directory_->SignIn(*connection_, login, "some password", "10.0.0.7");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated) << refused.error().message;
  }
  const auto failed = AuditOf("user.sign_in_failed");
  ASSERT_EQ(failed.size(), 4u);
  EXPECT_EQ(failed[0].entry.actor, "(empty)");
  EXPECT_EQ(failed[1].entry.actor, "???bad");
  EXPECT_EQ(failed[2].entry.actor.size(), 64u);
  EXPECT_TRUE(audit::Verify(*connection_)->intact);
}

TEST_P(DirectoryTest, SessionsExpireWhenIdleAndAfterTheirLifetime) {
  Add("t01", Role::kTeller);
  auto idle = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_TRUE(idle.ok());
  Advance(15 * kMinute + 1);
  auto expired = directory_->Authenticate(*connection_, idle->token);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().code, ErrorCode::kUnauthenticated);
  EXPECT_THAT(expired.error().message, HasSubstr("idle"));

  // Use keeps a session alive, up to its absolute lifetime.
  auto busy = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_TRUE(busy.ok());
  for (int i = 0; i < 47; ++i) {  // 47 × 10 minutes = 7 h 50 min
    Advance(10 * kMinute);
    ASSERT_TRUE(directory_->Authenticate(*connection_, busy->token).ok()) << i;
  }
  Advance(10 * kMinute + 1);
  auto over = directory_->Authenticate(*connection_, busy->token);
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(over.error().message, HasSubstr("lifetime"));
}

TEST_P(DirectoryTest, LocksAfterFiveFailuresInARowUntilAnAdministratorUnlocks) {
  Add("t01", Role::kTeller);
  // A success in between starts the count again.
  for (int i = 0; i < 4; ++i)
    ASSERT_FALSE(directory_->SignIn(*connection_, "t01", "wrong", "a").ok());
  ASSERT_TRUE(directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a").ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(directory_->SignIn(*connection_, "t01", "wrong", "a").error().code,
              ErrorCode::kUnauthenticated);
  }
  EXPECT_EQ(directory_->GetUser(*connection_, admin_, "t01")->failed_sign_ins, 4);
  auto fifth = directory_->SignIn(*connection_, "t01", "wrong", "a");
  ASSERT_FALSE(fifth.ok());
  EXPECT_EQ(fifth.error().code, ErrorCode::kLocked);
  EXPECT_EQ(directory_->GetUser(*connection_, admin_, "t01")->state, UserState::kLocked);

  auto right = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_FALSE(right.ok());
  EXPECT_EQ(right.error().code, ErrorCode::kLocked);
  ASSERT_EQ(AuditOf("user.lock").size(), 1u);
  EXPECT_EQ(AuditOf("user.lock")[0].entry.actor, "host");

  // A supervisor may lock but not unlock.
  Add("v01", Role::kSupervisor);
  auto by_supervisor =
      directory_->Unlock(*connection_, Principal{"v01", Role::kSupervisor, ""}, "t01", "a");
  ASSERT_FALSE(by_supervisor.ok());
  EXPECT_EQ(by_supervisor.error().code, ErrorCode::kForbidden);

  auto unlocked = directory_->Unlock(*connection_, admin_, "t01", "cli");
  ASSERT_TRUE(unlocked.ok()) << unlocked.error().message;
  EXPECT_EQ(unlocked->state, UserState::kActive);
  EXPECT_EQ(unlocked->failed_sign_ins, 0);
  EXPECT_TRUE(directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a").ok());
  ASSERT_EQ(AuditOf("user.unlock").size(), 1u);
  EXPECT_EQ(AuditOf("user.unlock")[0].entry.actor, "host");
}

TEST_P(DirectoryTest, LockAndDisableEndSessions) {
  Add("t01", Role::kTeller);
  Add("v01", Role::kSupervisor);
  const Principal supervisor{"v01", Role::kSupervisor, ""};
  auto session = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(directory_->Lock(*connection_, supervisor, "t01", "a").ok());
  EXPECT_EQ(directory_->Authenticate(*connection_, session->token).error().code,
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(directory_->Lock(*connection_, supervisor, "v01", "a").error().code,
            ErrorCode::kForbidden);  // not oneself
  EXPECT_EQ(directory_->Lock(*connection_, supervisor, "nobody", "a").error().code,
            ErrorCode::kNotFound);

  ASSERT_TRUE(directory_->Unlock(*connection_, admin_, "t01", "cli").ok());
  ASSERT_TRUE(directory_->Disable(*connection_, admin_, "t01", "cli").ok());
  auto disabled = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_FALSE(disabled.ok());
  EXPECT_EQ(disabled.error().code, ErrorCode::kForbidden);
  EXPECT_THAT(AuditOf("user.disable")[0].entry.details, HasSubstr(R"("to_state":"disabled")"));
}

TEST_P(DirectoryTest, PasswordChanges) {
  Add("t01", Role::kTeller);
  auto session = directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a");
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(
      directory_->SetPassword(*connection_, admin_, "t01", "a brand new password", "cli").ok());
  EXPECT_FALSE(directory_->Authenticate(*connection_, session->token).ok());
  EXPECT_FALSE(directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a").ok());
  EXPECT_TRUE(directory_->SignIn(*connection_, "t01", "a brand new password", "a").ok());
  EXPECT_EQ(directory_->SetPassword(*connection_, admin_, "t01", "short", "cli").error().field,
            "password");
  EXPECT_EQ(
      directory_->SetPassword(*connection_, admin_, "nobody", "long enough pw", "cli").error().code,
      ErrorCode::kNotFound);

  const Principal t01{"t01", Role::kTeller, "B001"};
  auto wrong =
      directory_->ChangeOwnPassword(*connection_, t01, "wrong current", "another one 123", "a");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(directory_->GetUser(*connection_, t01, "t01")->failed_sign_ins, 1);
  ASSERT_TRUE(
      directory_
          ->ChangeOwnPassword(*connection_, t01, "a brand new password", "another one 123", "a")
          .ok());
  EXPECT_TRUE(directory_->SignIn(*connection_, "t01", "another one 123", "a").ok());
  EXPECT_EQ(AuditOf("user.passwd").size(), 2u);
}

TEST_P(DirectoryTest, TheAuditChainOfAllThisIsIntact) {
  Add("t01", Role::kTeller);
  ASSERT_TRUE(directory_->SignIn(*connection_, "t01", PasswordOf("t01"), "a").ok());
  ASSERT_FALSE(directory_->SignIn(*connection_, "t01", "wrong", "a").ok());
  auto v = audit::Verify(*connection_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->intact);
  EXPECT_EQ(v->count, 3);
  // No password of any kind reached the log.
  auto all = audit::Read(*connection_, {});
  for (const auto& r : *all) {
    EXPECT_EQ(r.entry.details.find("password-2026"), std::string::npos);
    EXPECT_EQ(r.entry.details.find("scrypt"), std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, DirectoryTest, test_support::AllEngines(),
                         test_support::EngineTestName);

TEST(PermissionTest, RolesMayDoWhatTheTableSays) {
  const Principal teller{"t01", Role::kTeller, "B001"};
  EXPECT_TRUE(Require(teller, "card.report_loss").ok());
  auto refused = Require(teller, "user.add");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(refused.error().message, "the role teller may not perform user.add");
  EXPECT_FALSE(Require(teller, "audit.read").ok());
  EXPECT_THAT(Require(teller, "card.fly").error().message, HasSubstr("not a known operation"));

  EXPECT_TRUE(Permits(Role::kAuditor, "audit.read"));
  EXPECT_TRUE(Permits(Role::kAuditor, "audit.export"));
  EXPECT_FALSE(Permits(Role::kAuditor, "card.close"));
  EXPECT_FALSE(Permits(Role::kAdministrator, "card.close"));  // separation of duties
  EXPECT_TRUE(Permits(Role::kAdministrator, "user.add"));
  EXPECT_TRUE(Permits(Role::kSupervisor, "user.lock"));
  EXPECT_FALSE(Permits(Role::kSupervisor, "user.unlock"));
  EXPECT_TRUE(Permits(Role::kAgencySystem, "agency.submit"));
  EXPECT_FALSE(Permits(Role::kAgencySystem, "card.issue"));
  EXPECT_EQ(PermittedOperations(Role::kAuditor),
            (std::vector<std::string>{"audit.export", "audit.read", "audit.verify", "customer.read",
                                      "journal.read", "limits.read", "si.check", "si.read",
                                      "user.read"}));
  EXPECT_TRUE(Permits(Role::kInsuranceOfficer, "si.month.run"));
  EXPECT_FALSE(Permits(Role::kAuditor, "si.month.run"));
  EXPECT_FALSE(Permits(Role::kTeller, "si.read"));
  EXPECT_GE(KnownOperations().size(), 20u);
}

TEST(PermissionTest, NamesAndLogins) {
  for (Role r : {Role::kTeller, Role::kSeniorTeller, Role::kSupervisor, Role::kAuditor,
                 Role::kAdministrator, Role::kAgencySystem, Role::kInsuranceOfficer}) {
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  }
  EXPECT_FALSE(ParseRole("root").has_value());
  EXPECT_EQ(ParseUserState("locked"), UserState::kLocked);
  EXPECT_FALSE(CheckLogin("t.0_1-x").has_value());
  EXPECT_TRUE(CheckLogin("t 01").has_value());
  EXPECT_TRUE(CheckLogin("Admin").has_value());
  EXPECT_TRUE(CheckPasswordPolicy("admin", "123456789").has_value());
  EXPECT_TRUE(CheckPasswordPolicy("administrator", "Administrator").has_value());
  EXPECT_FALSE(CheckPasswordPolicy("admin", "1234567890").has_value());
}

}  // namespace
}  // namespace medcard::access
