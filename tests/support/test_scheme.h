// The scheme in a test: the pieces the host's and the terminal's tests set up the same way.
//   ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);  // before TestKeyStore
//   auto keys = test_support::TestKeyStore(dir + "/keys", "host test");
//   auto db = test_support::NewHostDatabase(engine);  // ledger and host migrations applied
//   auto psam = test_support::NewTestPsam(psam_serial, terminal_number);
//   auto holder = test_support::NewTestCardholder(asn, "123456");  // selected, PIN verified
// Cards and PSAMs are issued from issuance::TestKeySet::Embedded(), the key set TestKeyStore
// imports.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "card/card.h"
#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"
#include "psam/psam.h"
#include "reader/reader.h"
#include "store/store.h"
#include "terminal/purse.h"

namespace medcard::test_support {

// A test-only software key store made in `dir`, holding the master keys of every role of the
// embedded test key set but `without` (e.g. keys::kCardPinVerificationKey).
Result<std::unique_ptr<keys::KeyStore>> TestKeyStore(const std::string& dir,
                                                     std::string_view passphrase,
                                                     std::string_view without = {});

// A new database on `engine` (NewTestDatabaseUrl) with one connection, migrated with
// ledger::Migrations(), host::Migrations(), audit::Migrations() and access::Migrations(). The
// database outlives the connection.
struct TestDatabase {
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
};
Result<TestDatabase> NewHostDatabase(store::Engine engine);

// A test card for `asn` with `pin` in a connected in-process reader: the medical application
// selected and the PIN verified.
struct TestCardholder {
  std::shared_ptr<card::Card> card;
  std::unique_ptr<reader::Reader> reader;
  terminal::ApplicationData app;
};
Result<TestCardholder> NewTestCardholder(ByteView asn, const std::string& pin);

// A test PSAM for the terminal `terminal_number` in a connected in-process reader.
struct TestPsam {
  std::shared_ptr<psam::Psam> psam;
  std::unique_ptr<reader::Reader> reader;
};
Result<TestPsam> NewTestPsam(ByteView psam_serial, ByteView terminal_number);

}  // namespace medcard::test_support
