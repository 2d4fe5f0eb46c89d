#include "cli/key_store_access.h"

#include <openssl/crypto.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"

namespace medcard::cli {

namespace {
bool StdinIsTerminal() { return ::isatty(STDIN_FILENO) == 1; }
}  // namespace

SecretString::~SecretString() {
  if (!value.empty()) OPENSSL_cleanse(value.data(), value.size());
}

bool ReadSecretLine(const std::string& prompt, SecretString& out) {
  if (!out.value.empty()) OPENSSL_cleanse(out.value.data(), out.value.size());
  out.value.clear();
  if (!StdinIsTerminal()) return static_cast<bool>(std::getline(std::cin, out.value));
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  termios saved{};
  const bool have_termios = ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (have_termios) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  const bool got = static_cast<bool>(std::getline(std::cin, out.value));
  if (have_termios) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  std::fprintf(stderr, "\n");
  return got;
}

void ReadSecret(const char* variable, const std::string& prompt, SecretString& out) {
  if (const char* from_environment = std::getenv(variable)) {
    out.value = from_environment;
    return;
  }
  if (!StdinIsTerminal()) {
    throw CommandFailed("no " + prompt + ": run on a terminal or set " + variable);
  }
  if (!ReadSecretLine(prompt + ": ", out)) throw CommandFailed("no " + prompt + " entered");
}

void AddKeyStoreOptions(CLI::App* command, KeyStoreLocation& location) {
  command
      ->add_option("--store", location.store,
                   "key store: a software store directory, or pkcs11:<token label>")
      ->required();
  command->add_option(
      "--pkcs11-module", location.pkcs11_module,
      std::string("PKCS#11 module for a pkcs11: store (default $") + kPkcs11ModuleVariable + ")");
}

std::unique_ptr<keys::KeyStore> OpenKeyStore(const KeyStoreLocation& location,
                                             bool mark_test_only) {
  Result<std::unique_ptr<keys::KeyStore>> store = MakeError("");
  if (location.is_pkcs11()) {
    keys::Pkcs11Config config;
    config.token_label = location.store.substr(7);
    config.module_path = location.pkcs11_module;
    if (config.module_path.empty()) {
      const char* from_environment = std::getenv(kPkcs11ModuleVariable);
      if (from_environment == nullptr) {
        throw CommandFailed(
            std::string("a pkcs11: store needs --pkcs11-module or ") + kPkcs11ModuleVariable, 2);
      }
      config.module_path = from_environment;
    }
    SecretString pin;
    ReadSecret(kPkcs11PinVariable, "token user PIN", pin);
    config.user_pin = pin.value;
    config.mark_test_only = mark_test_only;
    store = keys::OpenPkcs11KeyStore(config);
    OPENSSL_cleanse(config.user_pin.data(), config.user_pin.size());
  } else {
    SecretString passphrase;
    ReadSecret(kPassphraseVariable, "key store passphrase", passphrase);
    store = keys::OpenSoftwareKeyStore(location.store, passphrase.value);
  }
  // The store's own messages already say "key store: ...".
  if (!store.ok()) throw CommandFailed(store.error().message);
  return std::move(store).value();
}

}  // namespace medcard::cli
