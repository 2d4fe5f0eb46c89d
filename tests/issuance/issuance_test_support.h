// Shared by the issuance tests: temporary directories, key stores (the published test key set,
// or a production store from a key ceremony), a sample holder, and a reader that pulls the card
// out after N commands.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "issuance/holder.h"
#include "keys/key_store.h"
#include "reader/reader.h"

namespace medcard::issuance::testing {

inline constexpr char kPassphrase[] = "issuance test passphrase";

// A fresh directory under the test temp dir, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// MEDCARD_KEYSTORE_TEST_KDF=fast: stores are created in milliseconds (docs/keys.md).
void UseFastKdf();

// Two custodians' components for every issuer role; `seed` picks the key set (the same seed
// gives the same keys, so two stores can hold the same masters).
std::map<std::string, std::vector<Bytes>> CeremonyComponents(std::uint8_t seed);
// The clear master key of each role (the XOR of its components), for cross-checks only.
std::map<std::string, Bytes> CeremonyKeys(std::uint8_t seed);
// Imports every role from CeremonyComponents(seed) into `store`.
Status ImportCeremony(keys::KeyStore& store, std::uint8_t seed);

// A test-only software store in `dir` holding the published test key set.
// `without`: a role of the set left out ("pvk/CARDS": a store that makes no PIN verification
// values).
std::unique_ptr<keys::KeyStore> TestKeyStore(const std::string& dir, std::string_view without = {});
// A production software store in `dir` with the master keys of ceremony `seed`.
std::unique_ptr<keys::KeyStore> CeremonyKeyStore(const std::string& dir, std::uint8_t seed = 1);

// A valid HOLDER.json (a Beijing retiree born 1949-12-31, name 张三).
std::string SampleHolderJson();
Holder SampleHolder();

// `medcard <args>` run through the shell as an operator would (stdin empty, not a terminal),
// with `environment` ("NAME=value ...") added; the key store passphrase is kPassphrase unless
// the environment sets another.
struct CliRun {
  int exit_code = -1;
  std::string out, err;
};
CliRun RunMedcard(const std::string& cli, const std::string& args,
                  const std::string& environment = "");
std::string ReadFile(const std::string& path);

// Forwards to an InProcessReader and removes its card just before the (pull_after + 1)-th
// Transmit: the card has answered exactly `pull_after` commands.
class PullingReader final : public reader::Reader {
 public:
  PullingReader(reader::InProcessReader& inner, int pull_after)
      : inner_(inner), pull_after_(pull_after) {}
  int transmitted() const { return sent_; }
  bool pulled() const { return pulled_; }

  std::string Name() const override { return inner_.Name(); }
  Result<Bytes> Connect() override { return inner_.Connect(); }
  Status Disconnect() override { return inner_.Disconnect(); }
  bool Connected() const override { return inner_.Connected(); }
  Result<bool> CardPresent() override { return inner_.CardPresent(); }
  Result<bool> WaitForCard(std::chrono::milliseconds t) override { return inner_.WaitForCard(t); }
  Result<bool> WaitForRemoval(std::chrono::milliseconds t) override {
    return inner_.WaitForRemoval(t);
  }
  Result<Bytes> Transmit(ByteView command_apdu) override;
  Result<Bytes> PowerCycle(reader::Reset kind) override { return inner_.PowerCycle(kind); }
  Status BeginTransaction() override { return inner_.BeginTransaction(); }
  Status EndTransaction() override { return inner_.EndTransaction(); }

 private:
  reader::InProcessReader& inner_;
  int pull_after_;
  int sent_ = 0;
  bool pulled_ = false;
};

}  // namespace medcard::issuance::testing
