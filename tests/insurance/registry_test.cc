// The agency's registry on SQLite and PostgreSQL: units, enrolment with a validated resident
// identity number, events kept as effective-dated history (the state on any date), and refused
// requests that name the field and change nothing.
#include "insurance/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_database.h"

namespace medcard::insurance {
namespace {

using ::testing::HasSubstr;

static auto* const kPostgres = test_support::RegisterPostgresEnvironment();

// The published GB 11643 example: Beijing Chaoyang, born 1949-12-31, check character X.
constexpr char kExampleSsn[] = "11010519491231002X";
constexpr char kAnotherSsn[] = "110101199001011237";  // born 1990-01-01

class RegistryTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    auto db = store::Database::Open(*url);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    auto conn = db_->Connect();
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    conn_ = std::move(conn).value();
    auto migrated = store::Migrate(*conn_, Migrations());
    ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    registry_ = std::make_unique<Registry>(*conn_);
    ASSERT_TRUE(registry_->AddUnit({"U001", "Capital Steel", "62220202001122", "110000"}).ok());
    ASSERT_TRUE(registry_->AddUnit({"U002", "City Library", "62220202003344", "110000"}).ok());
  }

  Enrolment Example() {
    return {.ssn = kExampleSsn,
            .name = "Wang Fang",
            .birth_date = {1949, 12, 31},
            .unit_code = "U001",
            .wage_base_fen = 800000,
            .category = PersonCategory::kEmployee,
            .effective = {2026, 1, 1}};
  }

  std::int64_t EventCount() {
    auto rows = conn_->Query("SELECT COUNT(*) FROM si_person_events");
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<Registry> registry_;
};

TEST(SocialSecurityNumber, AcceptsValidCheckCharactersAndRefusesOthers) {
  EXPECT_TRUE(IsValidSocialSecurityNumber(kExampleSsn));
  EXPECT_TRUE(IsValidSocialSecurityNumber(kAnotherSsn));
  EXPECT_FALSE(IsValidSocialSecurityNumber("110105194912310021"));  // wrong check character
  EXPECT_FALSE(IsValidSocialSecurityNumber("11010519491231002x"));  // lower-case x
  EXPECT_FALSE(IsValidSocialSecurityNumber("1101051949123100"));    // too short
  EXPECT_FALSE(IsValidSocialSecurityNumber("110105194913310028"));  // month 13
  EXPECT_EQ(BirthDateOfSsn(kExampleSsn), (Date{1949, 12, 31}));
}

TEST(TextForms, ParseDatesAndMonthsStrictly) {
  EXPECT_EQ(ParseIsoDate("2026-02-28"), (Date{2026, 2, 28}));
  EXPECT_FALSE(ParseIsoDate("2026-02-29"));
  EXPECT_FALSE(ParseIsoDate("2026-2-28"));
  EXPECT_EQ(ParseMonthText("2026-11"), (YearMonth{2026, 11}));
  EXPECT_FALSE(ParseMonthText("2026-13"));
  EXPECT_FALSE(ParseMonthText("202611"));
  EXPECT_EQ(MonthText({2026, 3}), "2026-03");
}

TEST_P(RegistryTest, UnitsAreValidatedAndRegisteredOnce) {
  auto again = registry_->AddUnit({"U001", "Other", "62220202001122", "110000"});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, access::ErrorCode::kConflict);
  auto bad_account = registry_->AddUnit({"U003", "X", "12AB", "110000"});
  ASSERT_FALSE(bad_account.ok());
  EXPECT_EQ(bad_account.error().field, "bank_account");
  auto bad_area = registry_->AddUnit({"U003", "X", "62220202001122", "11"});
  ASSERT_FALSE(bad_area.ok());
  EXPECT_EQ(bad_area.error().field, "area");
  auto units = registry_->Units();
  ASSERT_TRUE(units.ok());
  ASSERT_EQ(units->size(), 2u);
  EXPECT_EQ((*units)[0], (Unit{"U001", "Capital Steel", "62220202001122", "110000"}));
}

TEST_P(RegistryTest, EnrolmentRefusesBadFieldsAndChangesNothing) {
  Enrolment bad = Example();
  bad.ssn = "110105194912310021";
  auto r = registry_->Enrol(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "ssn");
  EXPECT_THAT(r.error().message, HasSubstr("check character"));

  bad = Example();
  bad.birth_date = {1949, 12, 30};
  r = registry_->Enrol(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "birth_date");
  EXPECT_THAT(r.error().message, HasSubstr("1949-12-31"));

  bad = Example();
  bad.wage_base_fen = -1;
  r = registry_->Enrol(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "wage_base");

  bad = Example();
  bad.unit_code = "U999";
  r = registry_->Enrol(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, access::ErrorCode::kNotFound);
  EXPECT_EQ(r.error().field, "unit");

  EXPECT_EQ(EventCount(), 0);
  ASSERT_TRUE(registry_->Enrol(Example()).ok());
  auto twice = registry_->Enrol(Example());
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, access::ErrorCode::kConflict);
  EXPECT_EQ(EventCount(), 1);
}

TEST_P(RegistryTest, HistoryAnswersTheStateOnAnyDate) {
  ASSERT_TRUE(registry_->Enrol(Example()).ok());
  ASSERT_TRUE(registry_->ChangeWageBase(kExampleSsn, 950000, {2026, 3, 1}).ok());
  ASSERT_TRUE(registry_->Transfer(kExampleSsn, "U002", {2026, 5, 1}).ok());
  ASSERT_TRUE(registry_->Suspend(kExampleSsn, {2026, 7, 1}).ok());
  ASSERT_TRUE(registry_->Resume(kExampleSsn, {2026, 8, 1}).ok());
  ASSERT_TRUE(registry_->Retire(kExampleSsn, {2026, 10, 1}).ok());
  auto closed = registry_->Close(kExampleSsn, {2026, 12, 20}, "death");
  ASSERT_TRUE(closed.ok()) << closed.error().message;
  EXPECT_EQ(closed->status, PersonStatus::kClosed);
  EXPECT_EQ(closed->note, "death");

  auto on = [&](Date d) {
    auto s = registry_->PersonOn(kExampleSsn, d);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::nullopt;
  };
  EXPECT_FALSE(on({2025, 12, 31}).has_value());  // not enrolled yet
  EXPECT_EQ(on({2026, 2, 28})->wage_base_fen, 800000);
  EXPECT_EQ(on({2026, 3, 1})->wage_base_fen, 950000);
  EXPECT_EQ(on({2026, 4, 30})->unit_code, "U001");
  EXPECT_EQ(on({2026, 5, 1})->unit_code, "U002");
  EXPECT_EQ(on({2026, 7, 15})->status, PersonStatus::kSuspended);
  EXPECT_EQ(on({2026, 8, 1})->status, PersonStatus::kActive);
  EXPECT_EQ(on({2026, 9, 30})->category, PersonCategory::kEmployee);
  EXPECT_EQ(on({2026, 10, 1})->category, PersonCategory::kRetiree);
  EXPECT_EQ(on({2026, 12, 19})->status, PersonStatus::kActive);
  EXPECT_EQ(on({2027, 1, 1})->status, PersonStatus::kClosed);

  auto history = registry_->History(kExampleSsn);
  ASSERT_TRUE(history.ok());
  std::vector<std::string> events;
  for (const auto& s : *history) events.push_back(s.event);
  EXPECT_THAT(events, ::testing::ElementsAre("enrol", "wage", "transfer", "suspend", "resume",
                                             "retire", "close"));
  EXPECT_EQ((*history)[0].wage_base_fen, 800000);  // the first state is still there
}

TEST_P(RegistryTest, EventsTheStateDoesNotAllowAreRefusedAndChangeNothing) {
  ASSERT_TRUE(registry_->Enrol(Example()).ok());
  auto resume = registry_->Resume(kExampleSsn, {2026, 2, 1});
  ASSERT_FALSE(resume.ok());
  EXPECT_EQ(resume.error().code, access::ErrorCode::kUnprocessable);
  auto same_unit = registry_->Transfer(kExampleSsn, "U001", {2026, 2, 1});
  ASSERT_FALSE(same_unit.ok());
  EXPECT_EQ(same_unit.error().field, "unit");
  auto no_unit = registry_->Transfer(kExampleSsn, "U404", {2026, 2, 1});
  ASSERT_FALSE(no_unit.ok());
  EXPECT_EQ(no_unit.error().code, access::ErrorCode::kNotFound);
  // History is appended, never rewritten: nothing before the latest event.
  ASSERT_TRUE(registry_->Suspend(kExampleSsn, {2026, 6, 1}).ok());
  auto backdated = registry_->Resume(kExampleSsn, {2026, 5, 1});
  ASSERT_FALSE(backdated.ok());
  EXPECT_EQ(backdated.error().field, "effective");
  auto transfer_suspended = registry_->Transfer(kExampleSsn, "U002", {2026, 6, 2});
  ASSERT_FALSE(transfer_suspended.ok());
  ASSERT_TRUE(registry_->Close(kExampleSsn, {2026, 7, 1}, "emigration").ok());
  auto after_close = registry_->Resume(kExampleSsn, {2026, 8, 1});
  ASSERT_FALSE(after_close.ok());
  EXPECT_THAT(after_close.error().message, HasSubstr("closed"));
  auto unknown = registry_->Suspend(kAnotherSsn, {2026, 8, 1});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, access::ErrorCode::kNotFound);
  EXPECT_EQ(EventCount(), 3);
}

INSTANTIATE_TEST_SUITE_P(Engines, RegistryTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::insurance
