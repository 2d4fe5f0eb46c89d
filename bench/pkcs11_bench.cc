// The PKCS#11 key store through SoftHSM2 beside raw crypto.h, in the same run: card key
// diversifications/s, MAC verifications/s under a session key, and whole purchase-TAC
// verifications/s (Diversify + DeriveTacKey + VerifyMac, what the host does per cleared
// purchase). The program makes its own SoftHSM2 token in a temporary directory and removes it.
// Figures only; nothing here asserts on time.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "common/bytes.h"
#include "crypto/crypto.h"
#include "keys/key_store.h"
#include "rate_reporter.h"

namespace {

namespace fs = std::filesystem;
using medcard::Bytes;
using medcard::HexToBytes;
using medcard::keys::KeyRef;
using medcard::keys::KeyStore;

const Bytes kMasterKey = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
// A TAC-sized input (~27 bytes: amount, type, terminal number, serials, date, time).
const Bytes kTacInput = HexToBytes("00001C37 09 000000000001 00000001 0000 20110919 204812 000000");

// The token and an open store on it, for the whole run.
struct Token {
  fs::path dir;
  std::unique_ptr<KeyStore> store;
  KeyRef master;
  std::string problem;

  Token() {
    std::string module;
    for (const char* path :
         {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
      if (fs::exists(path)) module = path;
    }
    if (module.empty()) {
      problem = "SoftHSM2 is not installed: apt-get install softhsm2";
      return;
    }
    std::string pattern = (fs::temp_directory_path() / "medcard-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      problem = "cannot create a temporary directory";
      return;
    }
    dir = pattern;
    fs::create_directory(dir / "tokens");
    std::ofstream(dir / "softhsm2.conf") << "directories.tokendir = " << (dir / "tokens").string()
                                         << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    ::setenv("SOFTHSM2_CONF", (dir / "softhsm2.conf").c_str(), 1);
    if (std::system("softhsm2-util --init-token --free --label medcard-bench --so-pin 123456 "
                    "--pin 1234 >/dev/null 2>&1") != 0) {
      problem = "softhsm2-util --init-token failed";
      return;
    }
    auto opened = medcard::keys::OpenPkcs11KeyStore({module, "medcard-bench", "1234", true});
    if (!opened.ok()) {
      problem = opened.error().message;
      return;
    }
    store = std::move(opened).value();
    auto imported = store->ImportTestKey("tac", kMasterKey);
    auto found = imported.ok() ? store->Find("tac") : medcard::Result<KeyRef>(imported.error());
    if (!found.ok()) {
      problem = found.error().message;
      return;
    }
    master = *found;
  }
  ~Token() {
    store.reset();
    if (!dir.empty()) fs::remove_all(dir);
  }
};

std::unique_ptr<Token>& TokenSlot() {
  static std::unique_ptr<Token> token;
  return token;
}
Token& TheToken() {
  if (!TokenSlot()) TokenSlot() = std::make_unique<Token>();
  return *TokenSlot();
}

// The factor of card n: the rightmost 8 bytes of its ASN.
Bytes Factor(std::uint64_t n) {
  Bytes factor;
  medcard::AppendU64(factor, 0x1100000000000000u + n);
  return factor;
}

void BM_CryptoDiversify(benchmark::State& state) {
  std::uint64_t card = 0;
  for (auto _ : state) {
    auto derived = medcard::crypto::Diversify(kMasterKey, Factor(++card));
    benchmark::DoNotOptimize(derived);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CryptoDiversify);

void BM_Pkcs11Diversify(benchmark::State& state) {
  Token& token = TheToken();
  if (!token.problem.empty()) {
    state.SkipWithError(token.problem.c_str());
    return;
  }
  std::uint64_t card = 0;
  for (auto _ : state) {
    auto derived = token.store->Diversify(token.master, Factor(++card));
    if (!derived.ok()) {
      state.SkipWithError(derived.error().message.c_str());
      break;
    }
    token.store->Release(*derived);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Pkcs11Diversify);

void BM_CryptoVerifyMac(benchmark::State& state) {
  const Bytes session_key = *medcard::crypto::TacKey(kMasterKey);
  auto mac_key = medcard::crypto::MacKey::Create(session_key);
  const auto mac = mac_key->Mac4(kTacInput);
  for (auto _ : state) {
    const auto computed = mac_key->Mac4(kTacInput);
    benchmark::DoNotOptimize(medcard::ConstantTimeEqual(computed, mac));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CryptoVerifyMac);

// An 8-byte key (a TAC key) prepared once, MACs verified under it.
void BM_Pkcs11VerifyMac(benchmark::State& state) {
  Token& token = TheToken();
  if (!token.problem.empty()) {
    state.SkipWithError(token.problem.c_str());
    return;
  }
  auto tac_key = token.store->DeriveTacKey(token.master);
  if (!tac_key.ok()) {
    state.SkipWithError(tac_key.error().message.c_str());
    return;
  }
  const Bytes mac = *medcard::crypto::PbocMac(*medcard::crypto::TacKey(kMasterKey), kTacInput);
  for (auto _ : state) {
    if (!token.store->VerifyMac(*tac_key, kTacInput, mac).ok()) {
      state.SkipWithError("MAC did not verify");
      break;
    }
  }
  token.store->Release(*tac_key);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Pkcs11VerifyMac);

void BM_CryptoVerifyPurchaseTac(benchmark::State& state) {
  std::uint64_t card = 0;
  for (auto _ : state) {
    const Bytes dtk = *medcard::crypto::Diversify(kMasterKey, Factor(++card));
    const Bytes tac_key = *medcard::crypto::TacKey(dtk);
    auto mac = medcard::crypto::PbocMac(tac_key, kTacInput);
    benchmark::DoNotOptimize(mac);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CryptoVerifyPurchaseTac);

// Per cleared purchase: the card's DTK from the TAC master, its TAC key, one MAC.
void BM_Pkcs11VerifyPurchaseTac(benchmark::State& state) {
  Token& token = TheToken();
  if (!token.problem.empty()) {
    state.SkipWithError(token.problem.c_str());
    return;
  }
  std::uint64_t card = 0;
  const Bytes mac(4, 0);
  for (auto _ : state) {
    auto dtk = token.store->Diversify(token.master, Factor(++card));
    auto tac_key =
        dtk.ok() ? token.store->DeriveTacKey(*dtk) : medcard::Result<KeyRef>(dtk.error());
    if (!tac_key.ok()) {
      state.SkipWithError(tac_key.error().message.c_str());
      break;
    }
    // A wrong TAC costs what a right one does.
    benchmark::DoNotOptimize(token.store->VerifyMac(*tac_key, kTacInput, mac).ok());
    token.store->Release(*tac_key);
    token.store->Release(*dtk);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Pkcs11VerifyPurchaseTac);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  TokenSlot().reset();  // closes the store and removes the token directory

  reporter.PrintRatio("pkcs11_diversify / crypto_diversify", "BM_Pkcs11Diversify",
                      "BM_CryptoDiversify");
  reporter.PrintRatio("pkcs11_verify_mac / crypto_verify_mac", "BM_Pkcs11VerifyMac",
                      "BM_CryptoVerifyMac");
  reporter.PrintRatio("pkcs11_purchase_tac / crypto_purchase_tac", "BM_Pkcs11VerifyPurchaseTac",
                      "BM_CryptoVerifyPurchaseTac");
  return 0;
}
