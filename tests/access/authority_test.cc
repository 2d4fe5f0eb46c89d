// Dual control: who may authorise what, up to which amount, with their own password; refusals
// that count toward the authoriser's lock-out; limits and the dual-control list in the database.
#include "access/authority.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "access_fixture.h"

namespace medcard::access {
namespace {

using testing::AccessTest;
using ::testing::HasSubstr;

class AuthorityTest : public AccessTest {
 protected:
  void SetUp() override {
    AccessTest::SetUp();
    if (HasFatalFailure()) return;
    Add("t01", Role::kTeller);
    Add("t02", Role::kTeller);
    Add("s01", Role::kSeniorTeller);
    Add("v01", Role::kSupervisor);
    Add("a01", Role::kAuditor);
    authority_ = std::make_unique<Authority>(*directory_);
  }

  ServiceResult<std::optional<Principal>> Check(const Principal& who, std::string_view operation,
                                                std::int64_t amount,
                                                std::optional<std::string> authoriser,
                                                std::optional<std::string> password = {}) {
    std::optional<AuthoriserCredentials> credentials;
    if (authoriser) {
      credentials =
          AuthoriserCredentials{*authoriser, password ? *password : PasswordOf(*authoriser)};
    }
    return authority_->Check(*connection_, who, operation, amount, credentials, "10.0.0.7");
  }

  const Principal teller_{"t01", Role::kTeller, "B001"};
  const Principal senior_{"s01", Role::kSeniorTeller, "B001"};
  std::unique_ptr<Authority> authority_;
};

TEST_P(AuthorityTest, SensitiveOperationsAlwaysNeedAnAuthoriser) {
  for (const char* operation : {"card.close", "card.replace", "card.unblock", "card.pin_reset"}) {
    EXPECT_TRUE(authority_->NeedsAuthoriser(*connection_, teller_, operation, 0).value());
    EXPECT_TRUE(authority_->NeedsAuthoriser(*connection_, senior_, operation, 0).value());
  }
  EXPECT_FALSE(authority_->NeedsAuthoriser(*connection_, teller_, "card.report_loss", 0).value());
  auto refused = Check(teller_, "card.close", 0, std::nullopt);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(refused.error().field, "authoriser");
  EXPECT_THAT(refused.error().message, HasSubstr("needs a senior teller's or supervisor's"));

  auto authorised = Check(teller_, "card.close", 50'000, "s01");
  ASSERT_TRUE(authorised.ok()) << authorised.error().message;
  ASSERT_TRUE(authorised->has_value());
  EXPECT_EQ((*authorised)->login, "s01");
  EXPECT_EQ((*authorised)->role, Role::kSeniorTeller);

  // Nothing needed, nothing given: allowed alone.
  auto alone = Check(teller_, "card.report_loss", 0, std::nullopt);
  ASSERT_TRUE(alone.ok());
  EXPECT_FALSE(alone->has_value());
  // The role must be permitted the operation at all.
  const Principal auditor{"a01", Role::kAuditor, ""};
  EXPECT_EQ(Check(auditor, "card.close", 0, "s01").error().code, ErrorCode::kForbidden);
}

TEST_P(AuthorityTest, AmountsAboveTheOwnLimitNeedAnAuthoriserWithinTheirLimit) {
  EXPECT_FALSE(authority_->NeedsAuthoriser(*connection_, teller_, "card.issue", 100'000).value());
  EXPECT_TRUE(authority_->NeedsAuthoriser(*connection_, teller_, "card.issue", 100'001).value());
  EXPECT_FALSE(authority_->NeedsAuthoriser(*connection_, senior_, "card.issue", 500'000).value());
  EXPECT_EQ(authority_->NeedsAuthoriser(*connection_, teller_, "card.issue", -1).error().code,
            ErrorCode::kInvalid);

  EXPECT_TRUE(Check(teller_, "card.close", 2'000'000, "s01").ok());
  auto over = Check(teller_, "card.close", 2'000'001, "s01");
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(over.error().field, "amount");
  EXPECT_THAT(over.error().message,
              HasSubstr("20000.01 yuan is over the senior_teller authorisation limit of 20000.00"));
  auto supervisor = Check(teller_, "card.close", 2'000'001, "v01");
  ASSERT_TRUE(supervisor.ok()) << supervisor.error().message;
  EXPECT_EQ((*supervisor)->login, "v01");
}

TEST_P(AuthorityTest, RefusesSelfAuthorisationTellersAndOtherRoles) {
  auto self = Check(senior_, "card.close", 0, "s01");
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().code, ErrorCode::kForbidden);
  EXPECT_THAT(self.error().message, HasSubstr("another person"));

  auto teller = Check(teller_, "card.close", 0, "t02");
  ASSERT_FALSE(teller.ok());
  EXPECT_EQ(teller.error().code, ErrorCode::kForbidden);
  EXPECT_THAT(teller.error().message, HasSubstr("the role teller may not authorise"));

  auto auditor = Check(teller_, "card.close", 0, "a01");
  ASSERT_FALSE(auditor.ok());
  EXPECT_THAT(auditor.error().message, HasSubstr("the role auditor may not authorise"));
  auto unknown = Check(teller_, "card.close", 0, "nobody");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnauthenticated);
}

TEST_P(AuthorityTest, WrongAuthoriserPasswordsCountTowardTheAuthorisersLockOut) {
  for (int i = 0; i < 4; ++i) {
    auto wrong = Check(teller_, "card.close", 0, "s01", "guessed password");
    ASSERT_FALSE(wrong.ok());
    EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthenticated);
    EXPECT_EQ(wrong.error().field, "authoriser");
  }
  EXPECT_EQ(directory_->GetUser(*connection_, admin_, "s01")->failed_sign_ins, 4);
  EXPECT_EQ(Check(teller_, "card.close", 0, "s01", "guessed password").error().code,
            ErrorCode::kLocked);
  auto right = Check(teller_, "card.close", 0, "s01");
  ASSERT_FALSE(right.ok());
  EXPECT_EQ(right.error().code, ErrorCode::kLocked);
  EXPECT_EQ(directory_->SignIn(*connection_, "s01", PasswordOf("s01"), "a").error().code,
            ErrorCode::kLocked);

  const auto failed = AuditOf("user.authorise_failed");
  ASSERT_GE(failed.size(), 5u);
  EXPECT_EQ(failed[0].entry.actor, "s01");
  EXPECT_THAT(failed[0].entry.details, HasSubstr(R"("for":"t01")"));
  EXPECT_THAT(failed[0].entry.details, HasSubstr(R"("operation":"card.close")"));
  EXPECT_EQ(failed[0].entry.details.find("guessed"), std::string::npos);
}

TEST_P(AuthorityTest, LimitsAndTheDualControlListLiveInTheDatabase) {
  auto limits = authority_->Limits(*connection_);
  ASSERT_TRUE(limits.ok());
  ASSERT_EQ(limits->size(), 6u);
  EXPECT_EQ(limits->back().role, Role::kTeller);
  EXPECT_EQ(limits->back().own_limit_fen, 100'000);
  EXPECT_FALSE(limits->back().authorise_limit_fen.has_value());

  EXPECT_EQ(authority_->SetLimit(*connection_, teller_, {Role::kTeller, 1, std::nullopt}, "a")
                .error()
                .code,
            ErrorCode::kForbidden);
  ASSERT_TRUE(
      authority_->SetLimit(*connection_, admin_, {Role::kSeniorTeller, 500'000, 3'000'000}, "cli")
          .ok());
  EXPECT_TRUE(Check(teller_, "card.close", 2'500'000, "s01").ok());
  ASSERT_TRUE(
      authority_->SetLimit(*connection_, admin_, {Role::kTeller, 0, std::nullopt}, "cli").ok());
  EXPECT_TRUE(authority_->NeedsAuthoriser(*connection_, teller_, "card.issue", 1).value());
  EXPECT_EQ(AuditOf("limits.change").size(), 2u);

  ASSERT_TRUE(
      authority_->SetDualControl(*connection_, admin_, "card.pin_reset", false, "cli").ok());
  ASSERT_TRUE(
      authority_->SetDualControl(*connection_, admin_, "card.cancel_loss", true, "cli").ok());
  EXPECT_EQ(
      authority_->DualControlOperations(*connection_).value(),
      (std::vector<std::string>{"card.cancel_loss", "card.close", "card.replace", "card.unblock"}));
  EXPECT_FALSE(authority_->NeedsAuthoriser(*connection_, teller_, "card.pin_reset", 0).value());
  EXPECT_EQ(authority_->SetDualControl(*connection_, admin_, "card.fly", true, "cli").error().code,
            ErrorCode::kInvalid);
  auto v = audit::Verify(*connection_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->intact);
}

INSTANTIATE_TEST_SUITE_P(Engines, AuthorityTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::access
