#include "issuance_test_support.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "issuance/test_issuer.h"

namespace medcard::issuance::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::path(::testing::TempDir()) / "medcard-issuance-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void UseFastKdf() { ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1); }

std::map<std::string, std::vector<Bytes>> CeremonyComponents(std::uint8_t seed) {
  std::map<std::string, std::vector<Bytes>> components;
  int role_index = 0;
  for (std::string_view role : keys::kIssuerRoles) {
    ++role_index;
    Bytes first(16), second(16);
    for (int j = 0; j < 16; ++j) {
      first[static_cast<std::size_t>(j)] =
          static_cast<std::uint8_t>(seed * 31 + role_index * 17 + j * 7 + 1);
      second[static_cast<std::size_t>(j)] =
          static_cast<std::uint8_t>(seed * 13 + role_index * 5 + j * 29 + 3);
    }
    components[std::string(role)] = {first, second};
  }
  return components;
}

std::map<std::string, Bytes> CeremonyKeys(std::uint8_t seed) {
  std::map<std::string, Bytes> keys;
  for (const auto& [role, parts] : CeremonyComponents(seed)) {
    Bytes key(16, 0);
    for (const Bytes& part : parts) {
      for (std::size_t i = 0; i < 16; ++i) key[i] ^= part[i];
    }
    keys[role] = key;
  }
  return keys;
}

Status ImportCeremony(keys::KeyStore& store, std::uint8_t seed) {
  for (const auto& [role, parts] : CeremonyComponents(seed)) {
    auto imported = store.ImportComponents(role, parts);
    if (!imported.ok()) return imported.error();
  }
  return Status::Ok();
}

std::unique_ptr<keys::KeyStore> TestKeyStore(const std::string& dir, std::string_view without) {
  UseFastKdf();
  auto store = keys::CreateSoftwareKeyStore(dir, kPassphrase, /*test_only=*/true);
  if (!store.ok()) {
    ADD_FAILURE() << store.error().message;
    return nullptr;
  }
  for (const auto& role : TestKeySet::RequiredRoles()) {
    if (role == without) continue;
    auto imported = (*store)->ImportTestKey(role, TestKeySet::Embedded().MasterKey(role));
    if (!imported.ok()) ADD_FAILURE() << imported.error().message;
  }
  return std::move(store).value();
}

std::unique_ptr<keys::KeyStore> CeremonyKeyStore(const std::string& dir, std::uint8_t seed) {
  UseFastKdf();
  auto store = keys::CreateSoftwareKeyStore(dir, kPassphrase, /*test_only=*/false);
  if (!store.ok()) {
    ADD_FAILURE() << store.error().message;
    return nullptr;
  }
  if (Status s = ImportCeremony(**store, seed); !s.ok()) ADD_FAILURE() << s.error().message;
  return std::move(store).value();
}

std::string SampleHolderJson() {
  return R"({
  "social_security_number": "11010519491231002X",
  "name": "张三",
  "sex": "male",
  "ethnicity": "01",
  "birthplace": "110105",
  "birth_date": "1949-12-31",
  "id_number": "11010519491231002X",
  "id_type": "resident_id",
  "insured_category": "retiree",
  "employer_unit_code": "91110105MA01",
  "pooling_area": "110100",
  "designated_facilities": ["H110105001", "H110105002"],
  "emergency_data": "血型 A，青霉素过敏"
})";
}

Holder SampleHolder() {
  auto holder = ParseHolderJson(SampleHolderJson(), Date{2026, 11, 25});
  if (!holder.ok()) {
    ADD_FAILURE() << holder.error().message;
    return {};
  }
  return *holder;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

CliRun RunMedcard(const std::string& cli, const std::string& args, const std::string& environment) {
  TempDir io;
  const std::string out = io / "stdout", err = io / "stderr";
  const std::string command = std::string("env MEDCARD_KEYSTORE_TEST_KDF=fast ") +
                              "MEDCARD_KEYSTORE_PASSPHRASE='" + kPassphrase + "' " + environment +
                              " " + cli + " " + args + " </dev/null >" + out + " 2>" + err;
  const int status = std::system(command.c_str());
  CliRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

Result<Bytes> PullingReader::Transmit(ByteView command_apdu) {
  if (sent_ == pull_after_ && !pulled_) {
    inner_.RemoveCard();
    pulled_ = true;
  }
  ++sent_;
  return inner_.Transmit(command_apdu);
}

}  // namespace medcard::issuance::testing
