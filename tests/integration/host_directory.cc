#include "host_directory.h"

#include <filesystem>
#include <fstream>

#include "host/host.h"
#include "issuance/test_issuer.h"
#include "ledger/ledger.h"

namespace medcard::test_support {
namespace {

namespace fs = std::filesystem;

// A JSON string literal (the test's paths and names only need quotes and backslashes escaped).
std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string DatabaseUrl(const HostDirectorySpec& spec) {
  return spec.database_url.empty() ? store::SqliteUrlForDataDir(spec.data_dir) : spec.database_url;
}

}  // namespace

Status WriteHostJson(const HostDirectorySpec& spec,
                     const std::vector<std::pair<std::string, std::string>>& more) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"database", DatabaseUrl(spec)},
      {"key_store", (fs::path(spec.data_dir) / "keys").string()},
      {"log_file", (fs::path(spec.data_dir) / "host.log").string()}};
  fields.insert(fields.end(), more.begin(), more.end());
  std::string text = "{";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    text += (i == 0 ? "\n  " : ",\n  ") + JsonString(fields[i].first) + ": " +
            JsonString(fields[i].second);
  }
  text += "\n}\n";
  std::ofstream out(fs::path(spec.data_dir) / "host.json", std::ios::trunc);
  out << text;
  out.close();
  if (!out) return MakeError("cannot write " + spec.data_dir + "/host.json");
  return Status::Ok();
}

Result<HostDirectory> PrepareHostDirectory(const HostDirectorySpec& spec) {
  const issuance::TestKeySet& test_keys = issuance::TestKeySet::Embedded();
  HostDirectory directory;
  auto key_store = keys::CreateSoftwareKeyStore((fs::path(spec.data_dir) / "keys").string(),
                                                spec.passphrase, /*test_only=*/true);
  if (!key_store.ok()) return key_store.error();
  directory.key_store = std::move(key_store).value();
  for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
    auto imported = directory.key_store->ImportTestKey(role, test_keys.MasterKey(role));
    if (!imported.ok()) return imported.error();
  }
  // Imported before RegisterTerminal, which keeps an existing TMK rather than generating one.
  auto tmk = directory.key_store->ImportTestKey("tmk/" + ToHex(spec.terminal_number), spec.tmk);
  if (!tmk.ok()) return tmk.error();
  if (Status written = WriteHostJson(spec); !written.ok()) return written.error();

  store::OpenOptions open;
  open.create_if_missing = true;
  auto database = store::Database::Open(DatabaseUrl(spec), open);
  if (!database.ok()) return database.error();
  directory.database = std::move(database).value();
  auto connection = directory.database->Connect();
  if (!connection.ok()) return connection.error();
  directory.connection = std::move(connection).value();
  if (auto migrated = store::Migrate(*directory.connection, ledger::Migrations()); !migrated.ok()) {
    return migrated.error();
  }
  if (auto migrated = store::Migrate(*directory.connection, host::Migrations()); !migrated.ok()) {
    return migrated.error();
  }
  host::Host host(*directory.connection, *directory.key_store);
  auto merchant =
      host.RegisterMerchant({spec.merchant_id, spec.merchant_name, spec.merchant_grade});
  if (!merchant.ok()) return MakeError("registering the merchant: " + merchant.error().message);
  host::TerminalRegistration terminal{spec.terminal_number, spec.merchant_id, spec.psam_serial};
  terminal.terminal_id = spec.terminal_id;
  auto registered = host.RegisterTerminal(terminal);
  if (!registered.ok()) {
    return MakeError("registering the terminal: " + registered.error().message);
  }
  return directory;
}

Result<std::unique_ptr<keys::KeyStore>> MakeTerminalKeyStore(const HostDirectorySpec& spec,
                                                             const std::string& dir) {
  auto key_store = keys::CreateSoftwareKeyStore(dir, spec.passphrase, /*test_only=*/true);
  if (!key_store.ok()) return key_store.error();
  auto tmk = (*key_store)->ImportTestKey("tmk/" + ToHex(spec.terminal_number), spec.tmk);
  if (!tmk.ok()) return tmk.error();
  return key_store;
}

}  // namespace medcard::test_support
