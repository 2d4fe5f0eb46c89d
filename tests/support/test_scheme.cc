#include "test_scheme.h"

#include <utility>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "host/host.h"
#include "issuance/test_issuer.h"
#include "ledger/ledger.h"
#include "nvm/nvm.h"
#include "test_database.h"

namespace medcard::test_support {

Result<std::unique_ptr<keys::KeyStore>> TestKeyStore(const std::string& dir,
                                                     std::string_view passphrase,
                                                     std::string_view without) {
  auto key_store = keys::CreateSoftwareKeyStore(dir, passphrase, true);
  if (!key_store.ok()) return key_store.error();
  const issuance::TestKeySet& test_keys = issuance::TestKeySet::Embedded();
  for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
    if (role == without) continue;
    auto imported = (*key_store)->ImportTestKey(role, test_keys.MasterKey(role));
    if (!imported.ok()) return MakeError(std::string(role) + ": " + imported.error().message);
  }
  return key_store;
}

Result<TestDatabase> NewHostDatabase(store::Engine engine) {
  auto url = NewTestDatabaseUrl(engine);
  if (!url.ok()) return url.error();
  auto database = store::Database::Open(*url);
  if (!database.ok()) return Error(database.error());
  auto connection = (*database)->Connect();
  if (!connection.ok()) return Error(connection.error());
  for (const store::MigrationSet* set :
       {&ledger::Migrations(), &host::Migrations(), &audit::Migrations(), &access::Migrations()}) {
    auto migrated = store::Migrate(**connection, *set);
    if (!migrated.ok()) return Error(migrated.error());
  }
  return TestDatabase{std::move(database).value(), std::move(connection).value()};
}

Result<TestCardholder> NewTestCardholder(ByteView asn, const std::string& pin) {
  auto card = issuance::IssueTestCard(issuance::TestKeySet::Embedded(),
                                      std::make_unique<nvm::FaultInjectionMedium>(),
                                      issuance::TestHolder(asn, pin));
  if (!card.ok()) return card.error();
  TestCardholder holder;
  holder.card = std::move(card).value();
  holder.reader = std::make_unique<reader::InProcessReader>("card", holder.card);
  if (auto atr = holder.reader->Connect(); !atr.ok()) return atr.error();
  auto app = terminal::SelectMedicalApplication(*holder.reader);
  if (!app.ok()) return app.error();
  holder.app = *app;
  if (Status verified = terminal::VerifyPin(*holder.reader, pin); !verified.ok()) {
    return verified.error();
  }
  return holder;
}

Result<TestPsam> NewTestPsam(ByteView psam_serial, ByteView terminal_number) {
  auto psam = issuance::IssueTestPsam(issuance::TestKeySet::Embedded(),
                                      std::make_unique<nvm::FaultInjectionMedium>(), psam_serial,
                                      terminal_number);
  if (!psam.ok()) return psam.error();
  TestPsam test_psam;
  test_psam.psam = std::move(psam).value();
  test_psam.reader = std::make_unique<reader::InProcessReader>("psam", test_psam.psam);
  if (auto atr = test_psam.reader->Connect(); !atr.ok()) return atr.error();
  return test_psam;
}

}  // namespace medcard::test_support
