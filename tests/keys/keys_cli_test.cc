// `medcard keys ...` through the real binary, as an operator or a script runs it: the passphrase
// in MEDCARD_KEYSTORE_PASSPHRASE, ceremony components on stdin (not a terminal: one per line).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_run.h"
#include "crypto/crypto.h"
#include "softhsm_token.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using test_support::CliRun;
using test_support::ReadText;
using ::testing::HasSubstr;
using ::testing::Not;

class KeysCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::NewCliTestDir("medcard-keys-cli");
    ASSERT_FALSE(dir_.empty());
    store_ = (dir_ / "store").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `medcard <args>` with `input` on stdin; the passphrase in the environment unless empty.
  CliRun Medcard(const std::string& args, const std::string& input = "",
                 const std::string& passphrase = "store passphrase 1") {
    std::string environment = "-u MEDCARD_KEYSTORE_PASSPHRASE MEDCARD_KEYSTORE_TEST_KDF=fast ";
    if (!passphrase.empty()) environment += "MEDCARD_KEYSTORE_PASSPHRASE='" + passphrase + "' ";
    return test_support::RunCli(
        {.binary = MEDCARD_CLI, .environment = environment, .args = args, .input = input}, dir_);
  }
  CliRun Keys(const std::string& command, const std::string& rest = "",
              const std::string& input = "") {
    return Medcard("keys " + command + " --store " + store_ + " " + rest, input);
  }

  fs::path dir_;
  std::string store_;
};

TEST_F(KeysCliTest, InitCreatesAnEmptyStoreAndListSaysSoWithoutATestBanner) {
  CliRun init = Keys("init");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("created software:" + store_));
  CliRun list = Keys("list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("0 keys"));
  EXPECT_THAT(list.out, Not(HasSubstr("TEST KEY STORE")));
  CliRun again = Keys("init");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already exists"));
}

TEST_F(KeysCliTest, CeremonyPrintsEachComponentsKcvAndTheKeysAndWritesNoComponentAnywhere) {
  ASSERT_EQ(Keys("init").exit_code, 0);
  const Bytes a = crypto::RandomBytes(16), b = crypto::RandomBytes(16), c = crypto::RandomBytes(16);
  Bytes key(16);
  for (std::size_t i = 0; i < 16; ++i) key[i] = static_cast<std::uint8_t>(a[i] ^ b[i] ^ c[i]);
  // Custodians may type lower case and spaces.
  std::string second = ToHex(b);
  for (auto& ch : second) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  second.insert(16, " ");
  CliRun ceremony = Keys("ceremony", "--role settlement --components 3",
                         ToHex(a) + "\n" + second + "\n" + ToHex(c) + "\n");
  ASSERT_EQ(ceremony.exit_code, 0) << ceremony.err;
  EXPECT_THAT(ceremony.out, HasSubstr("component 1 of 3: KCV " + ToHex(*crypto::Kcv(a))));
  EXPECT_THAT(ceremony.out, HasSubstr("component 2 of 3: KCV " + ToHex(*crypto::Kcv(b))));
  EXPECT_THAT(ceremony.out, HasSubstr("component 3 of 3: KCV " + ToHex(*crypto::Kcv(c))));
  EXPECT_THAT(ceremony.out, HasSubstr("key settlement version 1: KCV " + ToHex(*crypto::Kcv(key))));

  CliRun list = Keys("list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("settlement"));
  EXPECT_THAT(list.out, HasSubstr(ToHex(*crypto::Kcv(key))));
  EXPECT_THAT(list.out, HasSubstr("components"));

  const std::string file = ReadText(fs::path(store_) / "keystore.mks");
  for (const Bytes& secret : {a, b, c, key}) {
    for (const std::string& text : {ceremony.out, ceremony.err, list.out, list.err}) {
      EXPECT_THAT(text, Not(HasSubstr(ToHex(secret))));
    }
    const std::string raw(secret.begin(), secret.end());
    EXPECT_EQ(file.find(raw), std::string::npos);
    EXPECT_EQ(file.find(raw.substr(0, 8)), std::string::npos);
    EXPECT_EQ(file.find(raw.substr(8)), std::string::npos);
  }
}

TEST_F(KeysCliTest, CeremonyRefusesOneComponentMalformedComponentsAndUnknownRoles) {
  ASSERT_EQ(Keys("init").exit_code, 0);
  const std::string a = ToHex(crypto::RandomBytes(16));
  CliRun one = Keys("ceremony", "--role load --components 1", a + "\n");
  EXPECT_EQ(one.exit_code, 2);
  CliRun malformed = Keys("ceremony", "--role load --components 2", a + "\n" + a.substr(2) + "\n");
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_THAT(malformed.err, HasSubstr("component 2 of 2 must be 32 hex digits"));
  CliRun missing = Keys("ceremony", "--role load --components 2", a + "\n");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("component 2 of 2: no input"));
  CliRun cancelling = Keys("ceremony", "--role load --components 2", a + "\n" + a + "\n");
  EXPECT_EQ(cancelling.exit_code, 1);
  EXPECT_THAT(cancelling.err, HasSubstr("all-zero"));
  CliRun unknown = Keys("ceremony", "--role lode --components 2", a + "\n" + a + "\n");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown role \"lode\""));
  EXPECT_THAT(Keys("list").out, HasSubstr("0 keys"));
}

TEST_F(KeysCliTest, GenerateOnceThenRotateAddsVersionsThatListShows) {
  ASSERT_EQ(Keys("init").exit_code, 0);
  CliRun rotate_missing = Keys("rotate", "--role purchase");
  EXPECT_EQ(rotate_missing.exit_code, 1);
  EXPECT_THAT(rotate_missing.err, HasSubstr("no key purchase"));
  CliRun generated = Keys("generate", "--role purchase");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_THAT(generated.out, HasSubstr("key purchase version 1: KCV "));
  CliRun twice = Keys("generate", "--role purchase");
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_THAT(twice.err, HasSubstr("keys rotate"));
  CliRun rotated = Keys("rotate", "--role purchase");
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  EXPECT_THAT(rotated.out, HasSubstr("key purchase version 2: KCV "));
  CliRun tmk = Keys("generate", "--role tmk/00000000abcd");
  ASSERT_EQ(tmk.exit_code, 0) << tmk.err;
  EXPECT_THAT(tmk.out, HasSubstr("key tmk/00000000ABCD version 1"));

  CliRun list = Keys("list", "--json");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("\"version\": 2"));
  EXPECT_THAT(list.out, HasSubstr("\"test_only\": false"));
  EXPECT_THAT(list.out, HasSubstr("tmk/00000000ABCD"));
}

TEST_F(KeysCliTest, ImportTestSetCreatesATestStoreAndEveryListingCarriesTheBanner) {
  const std::string keyset = std::string(MEDCARD_TEST_DATA_DIR) + "/../../share/test-keyset.json";
  CliRun imported = Medcard("keys import-test-set " + keyset + " --store " + store_);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("TEST KEY STORE — not for real money"));
  // The published purchase key's KCV, computed here from the file's own hex.
  std::ifstream in(keyset);
  std::stringstream text;
  text << in.rdbuf();
  const std::string json = text.str();
  const auto at = json.find("\"purchase\": \"") + 13;
  const Bytes purchase = HexToBytes(json.substr(at, 32));
  EXPECT_THAT(imported.out,
              HasSubstr("key purchase version 1: KCV " + ToHex(*crypto::Kcv(purchase))));
  CliRun list = Keys("list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("TEST KEY STORE — not for real money"));
  EXPECT_THAT(list.out, HasSubstr("14 keys"));
  EXPECT_THAT(list.out, HasSubstr("test-set"));
  CliRun again = Medcard("keys import-test-set " + keyset + " --store " + store_);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already holds keys"));
}

TEST_F(KeysCliTest, ImportTestSetIsRefusedWithoutTheMarkerOrIntoARealStore) {
  const fs::path unmarked = dir_ / "unmarked.json";
  std::ofstream(unmarked) << R"({"keys": {"purchase": "00112233445566778899AABBCCDDEEFF"}})";
  CliRun refused = Medcard("keys import-test-set " + unmarked.string() + " --store " + store_);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("test_only"));
  EXPECT_FALSE(fs::exists(fs::path(store_) / "keystore.mks"));

  ASSERT_EQ(Keys("init").exit_code, 0);
  const std::string keyset = std::string(MEDCARD_TEST_DATA_DIR) + "/../../share/test-keyset.json";
  CliRun real = Medcard("keys import-test-set " + keyset + " --store " + store_);
  EXPECT_EQ(real.exit_code, 1);
  EXPECT_THAT(real.err, HasSubstr("not a test key store"));
}

TEST_F(KeysCliTest, WrongOrMissingPassphraseIsAClearError) {
  ASSERT_EQ(Keys("init").exit_code, 0);
  CliRun wrong = Medcard("keys list --store " + store_, "", "another passphrase");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("wrong passphrase"));
  CliRun none = Medcard("keys list --store " + store_, "store passphrase 1\n", "");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("MEDCARD_KEYSTORE_PASSPHRASE"));
}

// ---- A PKCS#11 token (SoftHSM2) as the store ---------------------------------------------------

class KeysTokenCliTest : public KeysCliTest {
 protected:
  void SetUp() override {
    KeysCliTest::SetUp();
    module_ = test_support::SoftHsmModule();
    ASSERT_FALSE(module_.empty()) << "SoftHSM2 is not installed: apt-get install softhsm2";
    conf_ = test_support::NewSoftHsmToken(dir_ / "hsm", "bank-keys", "4321");
    ASSERT_FALSE(conf_.empty()) << "softhsm2-util --init-token failed";
    // A second token on the same SoftHSM2, for published test keys.
    ASSERT_EQ(std::system(("SOFTHSM2_CONF=" + conf_ +
                           " softhsm2-util --init-token --free --label test-keys --so-pin 123456"
                           " --pin 4321 >/dev/null 2>&1")
                              .c_str()),
              0);
  }
  // `medcard keys COMMAND --store pkcs11:TOKEN ...`, the user PIN in MEDCARD_PKCS11_PIN unless
  // empty (never on the command line).
  CliRun Token(const std::string& command, const std::string& input = "",
               const std::string& pin = "4321", const std::string& token = "bank-keys") {
    std::string environment =
        "-u MEDCARD_KEYSTORE_PASSPHRASE -u MEDCARD_PKCS11_PIN -u MEDCARD_PKCS11_MODULE "
        "SOFTHSM2_CONF=" +
        conf_ + " ";
    if (!pin.empty()) environment += "MEDCARD_PKCS11_PIN=" + pin + " ";
    return test_support::RunCli(
        {.binary = MEDCARD_CLI,
         .environment = environment,
         .args = "keys " + command + " --store pkcs11:" + token + " --pkcs11-module " + module_,
         .input = input},
        dir_);
  }

  std::string module_, conf_;
};

TEST_F(KeysTokenCliTest, TheBankProvisionsAnHsmTokenWithTheKeysCommands) {
  CliRun init = Token("init");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("pkcs11:bank-keys opens: 0 keys"));
  EXPECT_THAT(init.out, Not(HasSubstr("TEST KEY STORE")));

  // The terminal key-exchange key from two custodians' components, assembled on the token.
  const Bytes a = crypto::RandomBytes(16), b = crypto::RandomBytes(16);
  Bytes tkek(16);
  for (std::size_t i = 0; i < 16; ++i) tkek[i] = static_cast<std::uint8_t>(a[i] ^ b[i]);
  CliRun ceremony = Token("ceremony --role tkek --components 2", ToHex(a) + "\n" + ToHex(b) + "\n");
  ASSERT_EQ(ceremony.exit_code, 0) << ceremony.err;
  EXPECT_THAT(ceremony.out, HasSubstr("key tkek version 1: KCV " + ToHex(*crypto::Kcv(tkek))));

  CliRun generated = Token("generate --role tmk/112233445566");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_THAT(generated.out, HasSubstr("key tmk/112233445566 version 1: KCV "));
  CliRun again = Token("generate --role tmk/112233445566");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("exists (version 1)"));
  CliRun rotated = Token("rotate --role tmk/112233445566");
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  EXPECT_THAT(rotated.out, HasSubstr("key tmk/112233445566 version 2: KCV "));

  CliRun list = Token("list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("pkcs11:bank-keys: 3 keys"));
  EXPECT_THAT(list.out, HasSubstr(ToHex(*crypto::Kcv(tkek))));
  for (const std::string& text : {ceremony.out, ceremony.err, list.out, list.err}) {
    for (const Bytes& secret : {a, b, tkek}) EXPECT_THAT(text, Not(HasSubstr(ToHex(secret))));
  }
  // The token holds real keys now: published test keys are refused on it.
  const std::string keyset = std::string(MEDCARD_TEST_DATA_DIR) + "/../../share/test-keyset.json";
  CliRun test_set = Token("import-test-set " + keyset);
  EXPECT_EQ(test_set.exit_code, 1);
  EXPECT_THAT(test_set.err, HasSubstr("refused to make it a test key store"));
}

TEST_F(KeysTokenCliTest, ATestTokenTakesThePublishedSetAndEveryListingSaysTest) {
  const std::string keyset = std::string(MEDCARD_TEST_DATA_DIR) + "/../../share/test-keyset.json";
  CliRun imported = Token("import-test-set " + keyset, "", "4321", "test-keys");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("TEST KEY STORE — not for real money"));
  CliRun list = Token("list", "", "4321", "test-keys");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("TEST KEY STORE — not for real money"));
  EXPECT_THAT(list.out, HasSubstr("14 keys"));
  CliRun init = Token("init", "", "4321", "test-keys");
  EXPECT_THAT(init.out, HasSubstr("(TEST KEY STORE — not for real money)"));
}

TEST_F(KeysTokenCliTest, AWrongOrMissingPinAndAnUnknownTokenAreClearErrors) {
  CliRun wrong = Token("list", "", "9999");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("wrong user PIN"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("9999")));
  CliRun none = Token("list", "4321\n", "");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("MEDCARD_PKCS11_PIN"));
  CliRun unknown = Token("list", "", "4321", "no-such-token");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no-such-token"));
}

}  // namespace
}  // namespace medcard
