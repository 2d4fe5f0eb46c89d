// KeyStoreSuite: the one test suite every KeyStore backend passes. A backend instantiates it
// with a KeyStoreBackend (see software_store_test.cc):
//
//   INSTANTIATE_TEST_SUITE_P(Software, KeyStoreSuite,
//                            ::testing::Values(SoftwareBackend()), KeyStoreBackendName);
//
// Every test gets a fresh, empty store from `create`; tests that need persistence call `reopen`.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::keys::testing {

struct KeyStoreBackend {
  std::string name;  // a GoogleTest name: letters, digits, underscores
  // A fresh, empty store; test_only selects a test key store.
  std::function<Result<std::unique_ptr<KeyStore>>(bool test_only)> create;
  // Closes `store` (destroys it) and opens the same store again, as a restarted process would.
  std::function<Result<std::unique_ptr<KeyStore>>(std::unique_ptr<KeyStore> store)> reopen;
  // Removes what `create` made (may be empty). Runs after each test.
  std::function<void()> cleanup;
  // False for a backend whose stored keys never leave it, not even wrapped (PKCS#11,
  // docs/keys-pkcs11.md): the suite then checks that Wrap refuses them and wraps card keys.
  bool stored_keys_leave_wrapped = true;
};

std::string KeyStoreBackendName(const ::testing::TestParamInfo<KeyStoreBackend>& info);
// GoogleTest prints a backend by its name.
void PrintTo(const KeyStoreBackend& backend, std::ostream* os);

class KeyStoreSuite : public ::testing::TestWithParam<KeyStoreBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A fresh store of the backend under test (the fixture's `store_` is one, not test-only).
  std::unique_ptr<KeyStore> NewStore(bool test_only);
  // Reopens store_ in place.
  void ReopenStore();
  // Imports `key` as the XOR of two random components and returns a ref to it.
  KeyRef ImportKnownKey(std::string_view name, const Bytes& key);

  std::unique_ptr<KeyStore> store_;
};

}  // namespace medcard::keys::testing
