// Opening the key store from a command (shared by the commands that need keys): the store is a
// software store directory or a PKCS#11 token, and its secret — the passphrase or the token's
// user PIN — comes from the environment (automation) or a no-echo prompt, never from the
// command line. docs/keys.md, docs/keys-pkcs11.md, docs/issuance.md.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "keys/key_store.h"

namespace medcard::cli {

inline constexpr char kPassphraseVariable[] = "MEDCARD_KEYSTORE_PASSPHRASE";
inline constexpr char kPkcs11PinVariable[] = "MEDCARD_PKCS11_PIN";
inline constexpr char kPkcs11ModuleVariable[] = "MEDCARD_PKCS11_MODULE";

// A std::string that is wiped when it goes out of scope.
struct SecretString {
  std::string value;
  SecretString() = default;
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  ~SecretString();
};

// One line from stdin; on a terminal the prompt goes to stderr and nothing is echoed.
bool ReadSecretLine(const std::string& prompt, SecretString& out);

// The secret from `variable`, else from a no-echo prompt on a terminal; CommandFailed without
// either.
void ReadSecret(const char* variable, const std::string& prompt, SecretString& out);

// --store DIR | pkcs11:<token label>, and --pkcs11-module PATH.
struct KeyStoreLocation {
  std::string store;
  std::string pkcs11_module;
  bool is_pkcs11() const { return store.starts_with("pkcs11:"); }
  // The software store's directory; empty for a token.
  std::string directory() const { return is_pkcs11() ? std::string() : store; }
};
void AddKeyStoreOptions(CLI::App* command, KeyStoreLocation& location);

// Opens the store (the passphrase or PIN as above). CommandFailed with the store's message.
// mark_test_only: a token holding no medcard keys becomes a test key store (Pkcs11Config).
std::unique_ptr<keys::KeyStore> OpenKeyStore(const KeyStoreLocation& location,
                                             bool mark_test_only = false);

}  // namespace medcard::cli
