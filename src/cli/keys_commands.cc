// medcard keys init | ceremony | generate | rotate | list | import-test-set: the software key
// store and the key ceremony (docs/keys.md).
//
// Secrets never reach the command line, stdout or a file: the passphrase comes from the terminal
// (no echo) or MEDCARD_KEYSTORE_PASSPHRASE (automation); ceremony components from the terminal
// (no echo) or, when stdin is not a terminal, one line each from stdin. Only check values are
// printed.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "crypto/crypto.h"
#include "issuance/test_issuer.h"
#include "keys/key_store.h"

namespace medcard::cli {
namespace {

constexpr char kTestBanner[] = "TEST KEY STORE — not for real money";

bool StdinIsTerminal() { return ::isatty(STDIN_FILENO) == 1; }

// The passphrase of an existing store (confirm = false) or of a new one (asked twice).
void ReadPassphrase(bool confirm, SecretString& passphrase) {
  if (const char* from_environment = std::getenv(kPassphraseVariable)) {
    passphrase.value = from_environment;
    return;
  }
  if (!StdinIsTerminal()) {
    throw CommandFailed(std::string("no passphrase: run on a terminal or set ") +
                        kPassphraseVariable);
  }
  if (!ReadSecretLine("key store passphrase: ", passphrase)) {
    throw CommandFailed("no passphrase entered");
  }
  if (confirm) {
    SecretString again;
    if (!ReadSecretLine("again: ", again) || again.value != passphrase.value) {
      throw CommandFailed("the passphrases do not match");
    }
  }
}

// The store's own messages already say "key store: ...".
std::unique_ptr<keys::KeyStore> StoreOrThrow(Result<std::unique_ptr<keys::KeyStore>> store) {
  if (!store.ok()) throw CommandFailed(store.error().message);
  return std::move(store).value();
}

// A software store directory, or a PKCS#11 token (its user PIN as key_store_access.h says).
std::unique_ptr<keys::KeyStore> OpenStore(const KeyStoreLocation& location) {
  if (location.is_pkcs11()) return OpenKeyStore(location);
  SecretString passphrase;
  ReadPassphrase(false, passphrase);
  return StoreOrThrow(keys::OpenSoftwareKeyStore(location.store, passphrase.value));
}

std::unique_ptr<keys::KeyStore> CreateStore(const std::string& dir, bool test_only) {
  SecretString passphrase;
  ReadPassphrase(true, passphrase);
  return StoreOrThrow(keys::CreateSoftwareKeyStore(dir, passphrase.value, test_only));
}

bool StoreExists(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(dir) / "keystore.mks", ec);
}

// An issuer role, or tmk/<terminal number> (hex digits of either case, kept upper case).
std::string ValidatedKeyName(std::string name) {
  if (name.starts_with("tmk/")) {
    for (std::size_t i = 4; i < name.size(); ++i) {
      name[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[i])));
    }
  }
  if (!keys::IsValidKeyName(name)) {
    std::string roles;
    for (std::string_view role : keys::kIssuerRoles)
      roles += (roles.empty() ? "" : ", ") + std::string(role);
    throw CommandFailed("unknown role \"" + name + "\" (roles: " + roles +
                            "; terminal master keys: tmk/<12 hex digits>; the terminal "
                            "key-exchange key: tkek)",
                        2);
  }
  return name;
}

std::optional<std::uint8_t> LatestVersion(keys::KeyStore& store, const std::string& name) {
  std::optional<std::uint8_t> latest;
  for (const auto& info : Check(store.List(), "listing keys")) {
    if (info.name == name && (!latest || info.version > *latest)) latest = info.version;
  }
  return latest;
}

void PrintKey(const keys::KeyInfo& info) {
  std::printf("key %s version %u: KCV %s\n", info.name.c_str(), static_cast<unsigned>(info.version),
              info.kcv.c_str());
}

// Reads the N components of a key ceremony, printing each one's KCV for its custodian to check
// against the sheet the component came on.
std::vector<Bytes> ReadComponents(unsigned count) {
  std::vector<Bytes> components;
  for (unsigned i = 1; i <= count; ++i) {
    SecretString line;
    const std::string label = "component " + std::to_string(i) + " of " + std::to_string(count);
    if (!ReadSecretLine(
            "custodian " + std::to_string(i) + ", enter " + label + " (32 hex digits, not shown): ",
            line)) {
      for (auto& c : components) SecureWipe(c);
      throw CommandFailed(label + ": no input");
    }
    auto bytes = FromHex(line.value);
    if (!bytes || bytes->size() != 16) {
      if (bytes) SecureWipe(*bytes);
      for (auto& c : components) SecureWipe(c);
      throw CommandFailed(label + " must be 32 hex digits", 2);
    }
    auto kcv = crypto::Kcv(*bytes);
    std::printf("%s: KCV %s\n", label.c_str(), kcv.ok() ? ToHex(*kcv).c_str() : "??????");
    std::fflush(stdout);
    components.push_back(std::move(*bytes));
  }
  return components;
}

std::string ReadTextFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw CommandFailed(path + ": cannot open");
  std::string text;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
  std::fclose(f);
  return text;
}

}  // namespace

void AddKeysCommands(CLI::App& app) {
  auto* group = app.add_subcommand("keys", "the key store and the key ceremony");
  group->require_subcommand(1);
  // --store DIR | pkcs11:<token label>, --pkcs11-module (key_store_access.h).
  static KeyStoreLocation location;
  auto add_store = [](CLI::App* cmd) { AddKeyStoreOptions(cmd, location); };

  {
    auto* cmd = group->add_subcommand(
        "init", "create an empty key store (a token: check it opens, or mark it --test-only)");
    static bool test_only = false;
    add_store(cmd);
    cmd->add_flag("--test-only", test_only, "a store for published test keys (never real money)");
    cmd->callback([] {
      if (location.is_pkcs11()) {
        // The token itself is initialised with the HSM's own tool (SO PIN, user PIN): medcard
        // only checks that it opens with the user PIN, and marks an empty one as a test store.
        auto store = OpenKeyStore(location, /*mark_test_only=*/test_only);
        const auto keys = Check(store->List(), "listing keys");
        std::printf("%s opens: %zu key%s%s\n", store->Describe().c_str(), keys.size(),
                    keys.size() == 1 ? "" : "s",
                    store->test_only() ? " (TEST KEY STORE — not for real money)" : "");
        return;
      }
      auto store = CreateStore(location.store, test_only);
      std::printf("created %s%s\n", store->Describe().c_str(),
                  store->test_only() ? " (TEST KEY STORE — not for real money)" : "");
    });
  }
  {
    auto* cmd = group->add_subcommand("ceremony",
                                      "assemble a master key from custodians' components (XOR)");
    static std::string role;
    static unsigned count = 2;
    add_store(cmd);
    cmd->add_option("--role", role, "issuer role or tmk/<terminal number>")->required();
    cmd->add_option("--components", count, "number of custodians' components (at least 2)")
        ->required()
        ->check(CLI::Range(2u, 16u));
    cmd->callback([] {
      const std::string name = ValidatedKeyName(role);
      auto store = OpenStore(location);
      std::vector<Bytes> components = ReadComponents(count);
      auto info = store->ImportComponents(name, components);
      for (auto& c : components) SecureWipe(c);
      PrintKey(Check(std::move(info), "key ceremony"));
    });
  }
  {
    auto* cmd = group->add_subcommand("generate", "generate a new random master key");
    static std::string role;
    add_store(cmd);
    cmd->add_option("--role", role, "issuer role or tmk/<terminal number>")->required();
    cmd->callback([] {
      const std::string name = ValidatedKeyName(role);
      auto store = OpenStore(location);
      if (auto latest = LatestVersion(*store, name)) {
        throw CommandFailed("key " + name + " exists (version " + std::to_string(*latest) +
                            "); use medcard keys rotate for a new version");
      }
      PrintKey(Check(store->Generate(name), "generating " + name));
    });
  }
  {
    auto* cmd = group->add_subcommand(
        "rotate", "generate the next version of a key (older versions keep working)");
    static std::string role;
    add_store(cmd);
    cmd->add_option("--role", role, "issuer role or tmk/<terminal number>")->required();
    cmd->callback([] {
      const std::string name = ValidatedKeyName(role);
      auto store = OpenStore(location);
      if (!LatestVersion(*store, name)) {
        throw CommandFailed("no key " + name + " to rotate; use medcard keys generate");
      }
      PrintKey(Check(store->Generate(name), "rotating " + name));
    });
  }
  {
    auto* cmd = group->add_subcommand("list", "the stored keys: names, versions, check values");
    static bool json = false;
    add_store(cmd);
    cmd->add_flag("--json", json, "machine-readable output");
    cmd->callback([] {
      auto store = OpenStore(location);
      auto list = Check(store->List(), "listing keys");
      if (json) {
        nlohmann::json out = {{"store", store->Describe()},
                              {"test_only", store->test_only()},
                              {"keys", nlohmann::json::array()}};
        for (const auto& k : list) {
          out["keys"].push_back({{"name", k.name},
                                 {"version", k.version},
                                 {"kcv", k.kcv},
                                 {"origin", k.origin},
                                 {"created", k.created}});
        }
        std::cout << out.dump(2) << "\n";
        return;
      }
      if (store->test_only()) std::printf("%s\n", kTestBanner);
      std::printf("%s: %zu key%s\n", store->Describe().c_str(), list.size(),
                  list.size() == 1 ? "" : "s");
      if (list.empty()) return;
      std::printf("%-18s %-7s %-6s %-10s %s\n", "NAME", "VERSION", "KCV", "ORIGIN", "CREATED");
      for (const auto& k : list) {
        std::printf("%-18s %-7u %-6s %-10s %s\n", k.name.c_str(), static_cast<unsigned>(k.version),
                    k.kcv.c_str(), k.origin.c_str(), k.created.c_str());
      }
    });
  }
  {
    auto* cmd = group->add_subcommand(
        "import-test-set",
        "import a published TEST key set into an empty test store (created if missing)");
    static std::string file;
    add_store(cmd);
    cmd->add_option("file", file, "JSON key set with \"test_only\": true")->required();
    cmd->callback([] {
      auto set = Check(issuance::TestKeySet::FromJson(ReadTextFile(file)), file);
      auto store = location.is_pkcs11()          ? OpenKeyStore(location, /*mark_test_only=*/true)
                   : StoreExists(location.store) ? OpenStore(location)
                                                 : CreateStore(location.store, true);
      if (!store->test_only()) {
        throw CommandFailed(store->Describe() +
                            " is not a test key store: published test keys are refused");
      }
      if (!Check(store->List(), "listing keys").empty()) {
        throw CommandFailed(store->Describe() +
                            " already holds keys: import a test set into an "
                            "empty test store");
      }
      std::printf("%s\n", kTestBanner);
      for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
        PrintKey(Check(store->ImportTestKey(role, set.MasterKey(role)), "importing " + role));
      }
    });
  }
}

}  // namespace medcard::cli
