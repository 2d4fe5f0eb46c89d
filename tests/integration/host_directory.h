// A bank host's data directory for tests that run the real `medcard host run`, prepared through
// the library the way `medcard host init --test-keys` and `medcard host terminals add` would: a
// TEST software key store with the published test key set and one terminal's test TMK (imported
// before the terminal is registered), both database schemas, the merchant and the terminal, and
// DIR/host.json. Also the terminal's side: its own key store holding the same TMK.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"
#include "store/store.h"

namespace medcard::test_support {

struct HostDirectorySpec {
  std::string data_dir;
  std::string database_url;  // empty: SQLite in the data directory (DIR/medcard.db)
  std::string passphrase;    // of both key stores (MEDCARD_KEYSTORE_PASSPHRASE for the host)
  std::string merchant_id = "H0001";
  std::string merchant_name = "City Hospital";
  std::string merchant_grade = "hospital-3A";
  std::string terminal_id = "T0000001";
  Bytes terminal_number;  // 6
  Bytes psam_serial;      // 10
  Bytes tmk;              // 16: a TEST terminal master key both sides know
};

// The bank's side, open: the key store and a migrated connection to the database, for a test
// that registers more (cards, credits) before it starts the host process.
struct HostDirectory {
  std::unique_ptr<keys::KeyStore> key_store;
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
};

Result<HostDirectory> PrepareHostDirectory(const HostDirectorySpec& spec);

// DIR/host.json: database, key_store and log_file (DIR/host.log) as PrepareHostDirectory writes
// them, plus `more` text fields (e.g. tls_certificate) — replaces the file.
Status WriteHostJson(const HostDirectorySpec& spec,
                     const std::vector<std::pair<std::string, std::string>>& more = {});

// The terminal's key store (in `dir`) with the spec's TMK as "tmk/<terminal number hex>".
Result<std::unique_ptr<keys::KeyStore>> MakeTerminalKeyStore(const HostDirectorySpec& spec,
                                                             const std::string& dir);

}  // namespace medcard::test_support
