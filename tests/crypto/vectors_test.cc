// Every known-answer vector of tests/data/test-vectors.json, checked by its "algorithm"
// (pboc-ed-ep.md "Cryptography"). One test case per vector, named after the vector.
#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "crypto/crypto.h"

namespace medcard::crypto {
namespace {

using nlohmann::json;

struct Vector {
  std::string name;
  json fields;
};

// What gtest prints for a failing parameter: the name, not the whole object.
void PrintTo(const Vector& v, std::ostream* os) { *os << v.name; }

const std::string kVectorFile = std::string(MEDCARD_TEST_DATA_DIR) + "/test-vectors.json";

std::vector<Vector> LoadVectors() {
  std::ifstream in(kVectorFile);
  if (!in) return {};
  const json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.contains("vectors") || !doc["vectors"].is_array()) return {};
  std::vector<Vector> vectors;
  for (const json& v : doc["vectors"]) {
    vectors.push_back({v.value("name", std::string()), v});
  }
  return vectors;
}

const std::vector<Vector>& Vectors() {
  static const std::vector<Vector> vectors = LoadVectors();
  return vectors;
}

bool Has(const Vector& v, const char* field) { return v.fields.contains(field); }

// A hex field of the vector; records a failure if it is missing or not hex.
Bytes Field(const Vector& v, const char* field) {
  if (!v.fields.contains(field) || !v.fields[field].is_string()) {
    ADD_FAILURE() << "vector \"" << v.name << "\" lacks field " << field;
    return {};
  }
  auto bytes = FromHex(v.fields[field].get<std::string>());
  if (!bytes) {
    ADD_FAILURE() << "vector \"" << v.name << "\" field " << field << " is not hex";
    return {};
  }
  return *bytes;
}

std::string Expected(const Vector& v, const char* field) { return ToHex(Field(v, field)); }

std::string Mac(const Bytes& key, std::initializer_list<ByteView> parts, const Bytes& iv = {}) {
  auto mac = PbocMac(key, Concat(parts), iv);
  if (!mac.ok()) {
    ADD_FAILURE() << mac.error().message;
    return {};
  }
  return ToHex(*mac);
}

void CheckLoad(const Vector& v) {
  const Bytes amount = Field(v, "amount"), type = Field(v, "type"), term = Field(v, "termNo");
  const Bytes online_serial = Field(v, "onlineSerial");
  auto seslk = LoadSessionKey(Field(v, "DLK"), Field(v, "random"), online_serial);
  ASSERT_TRUE(seslk.ok()) << seslk.error().message;
  EXPECT_EQ(ToHex(*seslk), Expected(v, "SESLK"));
  // MAC1 = MAC(SESLK, oldBalance || amount || type || termNo)
  EXPECT_EQ(Mac(*seslk, {Field(v, "oldBalance"), amount, type, term}), Expected(v, "MAC1"));
  // MAC2 = MAC(SESLK, amount || type || termNo || date || time)
  const Bytes date = Field(v, "date"), time = Field(v, "time");
  EXPECT_EQ(Mac(*seslk, {amount, type, term, date, time}), Expected(v, "MAC2"));
  if (Has(v, "DTK")) {
    auto tac_key = TacKey(Field(v, "DTK"));
    ASSERT_TRUE(tac_key.ok());
    if (Has(v, "TACKey")) {
      EXPECT_EQ(ToHex(*tac_key), Expected(v, "TACKey"));
    }
    // TAC = MAC(DTK_L xor DTK_R, newBalance || onlineSerial || amount || type || termNo ||
    //                             date || time)
    EXPECT_EQ(
        Mac(*tac_key, {Field(v, "newBalance"), online_serial, amount, type, term, date, time}),
        Expected(v, "TAC"));
  }
}

void CheckPurchase(const Vector& v) {
  const Bytes amount = Field(v, "amount");
  const Bytes term_txn_serial = Field(v, "termTxnSerial");
  auto sespk = PurchaseSessionKey(Field(v, "DPK"), Field(v, "random"), Field(v, "offlineSerial"),
                                  term_txn_serial);
  ASSERT_TRUE(sespk.ok()) << sespk.error().message;
  EXPECT_EQ(ToHex(*sespk), Expected(v, "SESPK"));
  if (Has(v, "MAC1")) {
    // MAC1 = MAC(SESPK, amount || type || termNo || date || time)
    EXPECT_EQ(Mac(*sespk, {amount, Field(v, "type"), Field(v, "termNo"), Field(v, "date"),
                           Field(v, "time")}),
              Expected(v, "MAC1"));
  }
  // MAC2 = MAC(SESPK, amount)
  EXPECT_EQ(Mac(*sespk, {amount}), Expected(v, "MAC2"));
  if (Has(v, "TAC")) {
    auto tac_key = TacKey(Field(v, "DTK"));
    ASSERT_TRUE(tac_key.ok());
    // TAC = MAC(DTK_L xor DTK_R, amount || type || termNo || termTxnSerial || date || time)
    EXPECT_EQ(Mac(*tac_key, {amount, Field(v, "type"), Field(v, "termNo"), term_txn_serial,
                             Field(v, "date"), Field(v, "time")}),
              Expected(v, "TAC"));
  }
}

void CheckExternalAuthenticate(const Vector& v) {
  // cryptogram = 3DES-ECB(key, challenge(4) || 00000000)
  auto cipher = BlockCipher::Des(Field(v, "key"));
  ASSERT_TRUE(cipher.ok()) << cipher.error().message;
  const Bytes block = Concat({Field(v, "challenge"), Bytes(4, 0)});
  ASSERT_EQ(block.size(), 8u);
  EXPECT_EQ(ToHex(cipher->EncryptEcb(block)), Expected(v, "cryptogram"));
}

void CheckMac16Iv(const Vector& v) {
  const Bytes key = Field(v, "key"), iv = Field(v, "iv"), data = Field(v, "data");
  ASSERT_EQ(key.size(), 16u);
  EXPECT_EQ(Mac(key, {data}, iv), Expected(v, "MAC"));
  auto mac_key = MacKey::Create(key);
  ASSERT_TRUE(mac_key.ok());
  const auto mac4 = mac_key->Mac4(data, iv);
  EXPECT_EQ(ToHex(mac4), Expected(v, "MAC"));
}

void CheckDiversify(const Vector& v) {
  auto derived = Diversify(Field(v, "masterKey"), Field(v, "factor"));
  ASSERT_TRUE(derived.ok()) << derived.error().message;
  EXPECT_EQ(ToHex(*derived), Expected(v, "derivedKey"));
}

const std::set<std::string> kAlgorithms = {"load", "purchase", "external-authenticate", "mac16-iv",
                                           "diversify"};

class TestVector : public ::testing::TestWithParam<Vector> {};

TEST_P(TestVector, MatchesTheKnownAnswer) {
  const Vector& v = GetParam();
  const std::string algorithm = v.fields.value("algorithm", std::string());
  if (algorithm == "load") {
    CheckLoad(v);
  } else if (algorithm == "purchase") {
    CheckPurchase(v);
  } else if (algorithm == "external-authenticate") {
    CheckExternalAuthenticate(v);
  } else if (algorithm == "mac16-iv") {
    CheckMac16Iv(v);
  } else if (algorithm == "diversify") {
    CheckDiversify(v);
  } else {
    FAIL() << "vector \"" << v.name << "\" has an unknown algorithm \"" << algorithm << "\"";
  }
}

// gtest names allow only letters, digits and '_': "load session key + MACs" ->
// load_session_key_MACs
std::string TestName(const ::testing::TestParamInfo<Vector>& info) {
  std::string name;
  for (char c : info.param.name) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (keep) {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '_') {
      name.push_back('_');
    }
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name.empty() ? "vector_" + std::to_string(info.index) : name;
}

INSTANTIATE_TEST_SUITE_P(PbocVectors, TestVector, ::testing::ValuesIn(Vectors()), TestName);

TEST(TestVectorFile, LoadsWithUniqueNamesAndKnownAlgorithms) {
  ASSERT_FALSE(Vectors().empty()) << "no vectors read from " << kVectorFile;
  std::set<std::string> names;
  std::set<std::string> algorithms_seen;
  for (const Vector& v : Vectors()) {
    EXPECT_FALSE(v.name.empty());
    EXPECT_TRUE(names.insert(v.name).second) << "duplicate vector name " << v.name;
    const std::string algorithm = v.fields.value("algorithm", std::string());
    EXPECT_TRUE(kAlgorithms.count(algorithm)) << v.name << ": " << algorithm;
    algorithms_seen.insert(algorithm);
  }
  EXPECT_EQ(algorithms_seen, kAlgorithms) << "every algorithm has at least one vector";
}

}  // namespace
}  // namespace medcard::crypto
