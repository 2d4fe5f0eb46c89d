// The branch services' tests: a migrated database (ledger, host, audit, branch) on each engine,
// the host with a merchant and a terminal, real test cards and a PSAM in in-process readers, a
// clock the test moves, and helpers that apply for, issue and load a card as a teller would.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "branch/services.h"
#include "common/bytes.h"
#include "host/host.h"
#include "ledger/ledger.h"
#include "terminal/purse.h"
#include "test_database.h"
#include "test_scheme.h"

namespace medcard::branch::testing {

inline constexpr char kPerson[] = "310101199001011234";
inline constexpr char kMerchant[] = "H0001";
inline constexpr char kMerchantName[] = "City Hospital";
inline constexpr char kBranch[] = "B001";

// 2026-11-25 10:00:00 in the branch's local time (UTC+8).
inline std::int64_t LocalMorningUs() {
  using namespace std::chrono;
  const sys_days day{year{2026} / 11 / 25};
  return duration_cast<microseconds>((day + hours{2}).time_since_epoch()).count();
}
inline constexpr std::int64_t kMinuteUs = 60'000'000;
inline constexpr std::int64_t kDayUs = 24 * 60 * kMinuteUs;

// The terminal's issuer is the host: each load authorised and confirmed there.
class HostIssuer final : public terminal::LoadAuthoriser {
 public:
  explicit HostIssuer(host::Host& host) : host_(host) {}
  Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override {
    request_ = {.terminal_number = init.terminal_number,
                .trace = ++trace_,
                .asn = init.asn,
                .type = init.type,
                .amount = init.amount,
                .old_balance = init.old_balance,
                .online_serial = init.online_serial,
                .key_version = init.key_version,
                .random = init.random,
                .mac1 = init.mac1,
                .date = init.date,
                .time = init.time};
    auto authorised = host_.AuthoriseLoad(request_);
    if (!authorised.ok()) return Error(authorised.error());
    return authorised->mac2;
  }
  Status Confirm(const terminal::LoadInitialisation&, ByteView tac) override {
    return host_.ConfirmLoad(request_.terminal_number, trace_, tac);
  }

 private:
  host::Host& host_;
  std::uint32_t trace_ = 0;
  host::LoadRequest request_;
};

class BranchTest : public ::testing::TestWithParam<store::Engine> {
 protected:
  void SetUp() override {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = test_support::NewTempDir("medcard-branch");
    auto key_store =
        test_support::TestKeyStore((std::filesystem::path(dir_) / "keys").string(), "branch test");
    ASSERT_TRUE(key_store.ok()) << key_store.error().message;
    key_store_ = std::move(key_store).value();
    auto db = test_support::NewHostDatabase(GetParam());
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(db->database);
    conn_ = std::move(db->connection);
    ASSERT_TRUE(store::Migrate(*conn_, audit::Migrations()).ok());
    ASSERT_TRUE(store::Migrate(*conn_, Migrations()).ok());

    now_us_ = LocalMorningUs();
    host_ = std::make_unique<host::Host>(*conn_, *key_store_,
                                         host::Host::Options{[this] { return now_us_; }});
    issuer_ = std::make_unique<HostIssuer>(*host_);
    services_ = std::make_unique<BranchServices>(*conn_, *key_store_, Options());
    ASSERT_TRUE(host_->RegisterMerchant({kMerchant, kMerchantName, "hospital-3A"}).ok());
    ASSERT_TRUE(host_->RegisterTerminal({terminal_number_, kMerchant, psam_serial_}).ok());
    auto psam = test_support::NewTestPsam(psam_serial_, terminal_number_);
    ASSERT_TRUE(psam.ok()) << psam.error().message;
    psam_ = std::move(psam).value();
  }
  void TearDown() override {
    services_.reset();
    host_.reset();
    key_store_.reset();
    ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  }

  BranchOptions Options() {
    BranchOptions options;
    options.clock_us = [this] { return now_us_; };
    options.clearing_window_us = 7 * kDayUs;
    return options;
  }

  // Applied, issued with `asn` (a test card personalised for it) and activated.
  CardRecord NewActiveCard(const std::string& asn, const std::string& person = kPerson) {
    auto applied = services_->Apply(teller_, {person, "holder-" + asn.substr(16), kBranch});
    EXPECT_TRUE(applied.ok()) << applied.error().message;
    if (!applied.ok()) return {};
    auto issued = services_->Issue(
        teller_, {.application_id = applied->application_id, .asn = asn, .valid_to = valid_to_});
    EXPECT_TRUE(issued.ok()) << issued.error().message;
    if (!issued.ok()) return {};
    auto active = services_->Activate(teller_, {.asn = asn});
    EXPECT_TRUE(active.ok()) << active.error().message;
    return active.ok() ? *active : CardRecord{};
  }

  test_support::TestCardholder Holder(const std::string& asn) {
    auto holder = test_support::NewTestCardholder(HexToBytes(asn), "123456");
    EXPECT_TRUE(holder.ok()) << holder.error().message;
    return holder.ok() ? std::move(holder).value() : test_support::TestCardholder{};
  }

  void Credit(std::int64_t fen, const std::string& batch = "2026-11") {
    auto credited = host_->CreditMedicalAccount(batch, kPerson, fen);
    ASSERT_TRUE(credited.ok()) << credited.error().message;
  }

  // An online load onto the card's ED from the medical account.
  void Load(test_support::TestCardholder& holder, std::uint32_t fen) {
    auto loaded = terminal::Load(*holder.reader, *issuer_, holder.app,
                                 {terminal::Wallet::kEd, fen, terminal_number_, day_, {9, 0, 0}});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  }

  // An offline purchase on the card's ED at the card's local time `time`, not uploaded yet.
  host::PurchaseUpload Purchase(test_support::TestCardholder& holder, std::uint32_t fen,
                                TimeOfDay time) {
    auto p = terminal::Purchase(*holder.reader, *psam_.reader, holder.app,
                                {terminal::Wallet::kEd, fen, day_, time});
    EXPECT_TRUE(p.ok()) << p.error().message;
    if (!p.ok()) return {};
    return {.asn = p->asn,
            .type = p->type,
            .amount = p->amount,
            .balance_before = p->balance_before,
            .balance_after = p->balance_after,
            .card_offline_serial = p->card_offline_serial,
            .terminal_serial = p->terminal_serial,
            .terminal_number = p->terminal_number,
            .date = p->date,
            .time = p->time,
            .key_version = 1,
            .tac = p->tac};
  }

  std::vector<host::ClearingOutcome> Clear(const std::vector<host::PurchaseUpload>& batch) {
    auto cleared = host_->ClearPurchases(batch);
    EXPECT_TRUE(cleared.ok()) << cleared.error().message;
    std::vector<host::ClearingOutcome> outcomes;
    if (cleared.ok()) {
      for (const auto& one : *cleared) outcomes.push_back(one.outcome);
    }
    return outcomes;
  }

  std::int64_t AccountBalance(const ledger::AccountId& id) {
    ledger::Ledger ledger(*conn_);
    auto account = ledger.FindAccount(id);
    EXPECT_TRUE(account.ok());
    return account.ok() && *account ? (*account)->balance : 0;
  }

  // The audit log's entries for card actions, in order: "action target".
  std::vector<audit::Record> AuditCardEntries() {
    audit::Filter filter;
    filter.action = "card.";
    filter.limit = 1000;
    auto records = audit::Read(*conn_, filter);
    EXPECT_TRUE(records.ok()) << records.error().message;
    return records.ok() ? *records : std::vector<audit::Record>{};
  }

  void ExpectHostClean() {
    auto problems = host_->CheckHost();
    ASSERT_TRUE(problems.ok()) << problems.error().message;
    for (const auto& p : *problems) ADD_FAILURE() << p;
  }

  std::string dir_;
  std::unique_ptr<keys::KeyStore> key_store_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Connection> conn_;
  std::unique_ptr<host::Host> host_;
  std::unique_ptr<HostIssuer> issuer_;
  std::unique_ptr<BranchServices> services_;
  test_support::TestPsam psam_;
  std::int64_t now_us_ = 0;
  Actor teller_{.login = "t01", .authorised_by = "", .from = "10.0.0.7", .branch = kBranch};
  Actor senior_{.login = "s01", .authorised_by = "sup1", .from = "10.0.0.8", .branch = kBranch};
  Bytes terminal_number_ = HexToBytes("000000000501");
  Bytes psam_serial_ = HexToBytes("50000000000000000501");
  Date day_{2026, 11, 25};
  Date valid_to_{2031, 11, 30};
};

}  // namespace medcard::branch::testing
