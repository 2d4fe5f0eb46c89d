// A migrated, empty ledger on each engine, with a clock the test controls.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "ledger/ledger.h"
#include "store/store.h"
#include "test_database.h"

namespace medcard::ledger::testing {

inline constexpr char kAsn[] = "0123456789ABCDEF0123";
inline constexpr char kOtherAsn[] = "99999999999999990001";

class LedgerTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    auto url = test_support::NewTestDatabaseUrl(GetParam());
    ASSERT_TRUE(url.ok()) << url.error().message;
    url_ = *url;
    auto db = store::Database::Open(url_);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db).value();
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    auto migrated = store::Migrate(*conn_, Migrations());
    ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    ledger_ = NewLedger(*conn_);
  }

  std::unique_ptr<store::Connection> Connect() {
    auto conn = db_->Connect();
    EXPECT_TRUE(conn.ok()) << conn.error().message;
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::unique_ptr<Ledger> NewLedger(store::Connection& connection) {
    Ledger::Options options;
    options.clock_us = [this] { return now_us_; };
    return std::make_unique<Ledger>(connection, options);
  }

  // Posts and expects it to work; returns the outcome.
  Outcome MustPost(const Transfer& t) {
    auto r = ledger_->Post(t);
    EXPECT_TRUE(r.ok()) << t.id << ": " << r.error().message;
    return r.ok() ? r->outcome : Outcome::kExists;
  }

  std::int64_t Balance(const AccountId& id) {
    auto account = ledger_->FindAccount(id);
    EXPECT_TRUE(account.ok()) << account.error().message;
    return account.ok() && *account ? (*account)->balance : 0;
  }

  std::int64_t Count(const std::string& table) {
    auto rows = conn_->Query("SELECT COUNT(*) FROM " + table);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    return rows.ok() ? (*rows)[0].Int(0) : -1;
  }

  // Every invariant holds; prints the problems when not.
  void ExpectConsistent() {
    auto report = ledger_->CheckInvariants();
    ASSERT_TRUE(report.ok()) << report.error().message;
    for (const Problem& p : report->problems) ADD_FAILURE() << p.description;
  }

  static Transfer Allocation(std::string id, std::string person, std::int64_t amount) {
    return {.id = std::move(id),
            .debit = AccountId::SiaFund(),
            .credit = AccountId::Medical(person),
            .amount = amount,
            .cause = {cause::kAllocation, "2024-01/" + person, R"({"month":"2024-01"})"}};
  }

  static Transfer Purchase(std::string_view asn, int serial, std::int64_t amount,
                           std::string merchant = "H0001") {
    const std::string reference = std::string(asn) + "/" + std::to_string(serial) + "/06";
    return {.id = "purchase/" + reference,
            .debit = AccountId::CardFloat(asn, Wallet::kEp),
            .credit = AccountId::Merchant(std::move(merchant)),
            .amount = amount,
            .cause = {cause::kPurchase, reference, R"({"terminal":"000000000001"})"}};
  }

  std::string url_;
  std::int64_t now_us_ = 1'700'000'000'000'000;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<Ledger> ledger_;
};

}  // namespace medcard::ledger::testing
