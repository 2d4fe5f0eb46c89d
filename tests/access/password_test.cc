// scrypt password hashes: right and wrong passwords, fresh salts, the PHC-style encoding and its
// refusals, and agreement with an independent scrypt (Python's hashlib).
#include "access/password.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace medcard::access {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const bool kFastKdf = [] {
  setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
  return true;
}();

TEST(PasswordTest, RightPasswordVerifiesWrongOneDoesNot) {
  auto hash = HashPassword("correct horse battery");
  ASSERT_TRUE(hash.ok()) << hash.error().message;
  EXPECT_THAT(*hash, StartsWith("$scrypt$ln=4,r=8,p=1$"));
  EXPECT_TRUE(VerifyPassword("correct horse battery", *hash).value());
  EXPECT_FALSE(VerifyPassword("correct horse batterY", *hash).value());
  EXPECT_FALSE(VerifyPassword("", *hash).value());
  EXPECT_EQ(hash->find("correct"), std::string::npos);
}

TEST(PasswordTest, EveryHashHasItsOwnSalt) {
  auto a = HashPassword("same password 1");
  auto b = HashPassword("same password 1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(ParsePasswordHash(*a)->salt, ParsePasswordHash(*b)->salt);
  EXPECT_EQ(ParsePasswordHash(*a)->salt.size(), 16u);
  EXPECT_EQ(ParsePasswordHash(*a)->hash.size(), 32u);
}

TEST(PasswordTest, ProductionParametersAreTheDefaultWithoutTheTestVariable) {
  EXPECT_EQ(DefaultScryptParameters().log2_n, 4);  // this binary runs with the test variable
  const ScryptParameters production;
  EXPECT_EQ(production.log2_n, 15);
  EXPECT_EQ(production.r, 8);
  EXPECT_EQ(production.p, 1);
  auto hash = HashPassword("a production-cost hash", production);
  ASSERT_TRUE(hash.ok()) << hash.error().message;
  EXPECT_THAT(*hash, StartsWith("$scrypt$ln=15,r=8,p=1$"));
  EXPECT_TRUE(VerifyPassword("a production-cost hash", *hash).value());
}

TEST(PasswordTest, AgreesWithAnIndependentScrypt) {
  // hashlib.scrypt(b"correct horse battery", salt=bytes(range(16)), n=16, r=8, p=1, dklen=32)
  const std::string encoded =
      "$scrypt$ln=4,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$coHb6LlzckOeOHbDHR6JGt8ViaJ/p4LgT4TcMJHWRUI";
  auto verified = VerifyPassword("correct horse battery", encoded);
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_TRUE(*verified);
  auto parsed = ParsePasswordHash(encoded);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(EncodePasswordHash(*parsed), encoded);
}

TEST(PasswordTest, RefusesBadEncodings) {
  const std::string salt = "AAECAwQFBgcICQoLDA0ODw";
  const std::string hash = "coHb6LlzckOeOHbDHR6JGt8ViaJ/p4LgT4TcMJHWRUI";
  for (const std::string& bad : {
           std::string(""),
           std::string("plain text"),
           "$argon2id$ln=4,r=8,p=1$" + salt + "$" + hash,
           "$scrypt$ln=0,r=8,p=1$" + salt + "$" + hash,
           "$scrypt$ln=21,r=8,p=1$" + salt + "$" + hash,
           "$scrypt$ln=04,r=8,p=1$" + salt + "$" + hash,
           "$scrypt$ln=4,r=8$" + salt + "$" + hash,
           "$scrypt$ln=4,r=8,p=1,x=2$" + salt + "$" + hash,
           "$scrypt$r=8,ln=4,p=1$" + salt + "$" + hash,
           "$scrypt$ln=4,r=8,p=1$" + salt,
           "$scrypt$ln=4,r=8,p=1$" + salt + "$" + hash + "$",
           "$scrypt$ln=4,r=8,p=1$AAECAwQFBgcICQoL$" + hash,            // 12-byte salt
           "$scrypt$ln=4,r=8,p=1$" + salt + "$" + hash.substr(0, 40),  // 30-byte hash
           "$scrypt$ln=4,r=8,p=1$" + salt + "$" + hash + "==",
           "$scrypt$ln=4,r=8,p=1$" + salt + "$co!b6LlzckOeOHbDHR6JGt8ViaJ/p4LgT4TcMJHWRUI",
       }) {
    EXPECT_FALSE(ParsePasswordHash(bad).ok()) << bad;
    auto verified = VerifyPassword("correct horse battery", bad);
    EXPECT_FALSE(verified.ok()) << bad;
  }
  EXPECT_THAT(ParsePasswordHash("$scrypt$ln=4,r=8,p=1$AAECAwQFBgcICQoL$" + hash).error().message,
              HasSubstr("salt"));
}

TEST(PasswordTest, Base64WithoutPadding) {
  const auto bytes = [](std::string_view s) { return Bytes(s.begin(), s.end()); };
  EXPECT_EQ(Base64NoPad(bytes("")), "");
  EXPECT_EQ(Base64NoPad(bytes("f")), "Zg");
  EXPECT_EQ(Base64NoPad(bytes("fo")), "Zm8");
  EXPECT_EQ(Base64NoPad(bytes("foo")), "Zm9v");
  EXPECT_EQ(Base64NoPad(bytes("foobar")), "Zm9vYmFy");
  EXPECT_EQ(FromBase64NoPad("Zm9vYmFy"), bytes("foobar"));
  EXPECT_EQ(FromBase64NoPad("Zm8"), bytes("fo"));
  EXPECT_FALSE(FromBase64NoPad("Zh").has_value());  // non-zero unused bits: not canonical
  EXPECT_FALSE(FromBase64NoPad("Z").has_value());
  EXPECT_FALSE(FromBase64NoPad("Zm8=").has_value());
}

}  // namespace
}  // namespace medcard::access
