// Key store throughput at the host's two hot operations — card key diversification and MAC/TAC
// verification — through each KeyStore backend, beside the raw crypto.h rate measured in the
// same run (the ratio is the price of keeping keys behind the interface). Figures only.
//
// Backends: the software store (a throwaway store in a temporary directory, test KDF) and the
// PKCS#11 store (a throwaway SoftHSM2 token, or the token the environment names — see Pkcs11()).
// A backend that cannot be set up has its rows skipped with the reason and its ratios print n/a.
// bench/pkcs11_bench.cc looks at the PKCS#11 backend alone in more detail.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "crypto/crypto.h"
#include "keys/key_store.h"
#include "rate_reporter.h"

namespace {

using medcard::Bytes;
using medcard::HexToBytes;
using medcard::keys::KeyRef;
using medcard::keys::KeyStore;

const Bytes kMasterKey = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
const Bytes kFactor = HexToBytes("4100000089999985");
// A TAC-sized input (amount, type, terminal number, terminal serial, date, time).
const Bytes kTacInput = HexToBytes("00001C37 09 000000000001 00000001 20110919 204812");

// One store per backend for the whole run, holding kMasterKey as "tac" (imported as components).
struct Backend {
  std::unique_ptr<KeyStore> store;
  KeyRef master{}, tac_key{};
  Bytes tac;
  std::string error;
};

void Prepare(Backend& b) {
  const Bytes first = medcard::crypto::RandomBytes(16);
  Bytes second(16);
  for (std::size_t i = 0; i < 16; ++i) {
    second[i] = static_cast<std::uint8_t>(kMasterKey[i] ^ first[i]);
  }
  const std::vector<Bytes> components = {first, second};
  auto info = b.store->ImportComponents("tac", components);
  if (!info.ok()) {
    b.error = info.error().message;
    return;
  }
  auto master = b.store->Find("tac", info->version);
  if (!master.ok()) {
    b.error = master.error().message;
    return;
  }
  b.master = *master;
  // What the host verifies per cleared purchase: a TAC under DTK_L ⊕ DTK_R of the card.
  auto dtk = b.store->Diversify(b.master, kFactor);
  auto tac_key = dtk.ok() ? b.store->DeriveTacKey(*dtk) : dtk;
  if (!tac_key.ok()) {
    b.error = tac_key.error().message;
    return;
  }
  b.tac_key = *tac_key;
  b.tac = *b.store->Mac(b.tac_key, kTacInput);
}

Backend& Software() {
  static Backend backend = [] {
    Backend b;
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    std::string dir = std::filesystem::temp_directory_path() / "medcard-keys-bench-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) {
      b.error = "cannot create a temporary directory";
      return b;
    }
    auto store =
        medcard::keys::CreateSoftwareKeyStore(dir + "/store", "benchmark passphrase", false);
    if (!store.ok()) {
      b.error = store.error().message;
      return b;
    }
    b.store = std::move(store).value();
    Prepare(b);
    return b;
  }();
  return backend;
}

// ---- PKCS#11 -------------------------------------------------------------------------------
// The token named by MEDCARD_BENCH_PKCS11_MODULE, _TOKEN and _PIN (an HSM; each run imports a new
// version of "tac" on it, so use a throwaway token), else a SoftHSM2 token this program makes in
// a temporary directory and removes at the end.
struct Pkcs11Token {
  Backend backend;
  std::filesystem::path softhsm_dir;
  ~Pkcs11Token() {
    backend.store.reset();
    if (!softhsm_dir.empty()) std::filesystem::remove_all(softhsm_dir);
  }
};

std::string MakeSoftHsmToken(Pkcs11Token& t, medcard::keys::Pkcs11Config& config) {
  for (const char* path :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
    if (std::filesystem::exists(path)) config.module_path = path;
  }
  if (config.module_path.empty()) return "SoftHSM2 is not installed (apt-get install softhsm2)";
  std::string dir = std::filesystem::temp_directory_path() / "medcard-keys-bench-hsm-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return "cannot create a temporary directory";
  t.softhsm_dir = dir;
  std::filesystem::create_directory(t.softhsm_dir / "tokens");
  std::ofstream(t.softhsm_dir / "softhsm2.conf")
      << "directories.tokendir = " << (t.softhsm_dir / "tokens").string()
      << "\nobjectstore.backend = file\nlog.level = ERROR\n";
  ::setenv("SOFTHSM2_CONF", (t.softhsm_dir / "softhsm2.conf").c_str(), 1);
  if (std::system("softhsm2-util --init-token --free --label medcard-keys-bench --so-pin 123456 "
                  "--pin 1234 >/dev/null 2>&1") != 0) {
    return "softhsm2-util --init-token failed";
  }
  config.token_label = "medcard-keys-bench";
  config.user_pin = "1234";
  return "";
}

void OpenPkcs11(Pkcs11Token& t) {
  medcard::keys::Pkcs11Config config;
  const char* module = std::getenv("MEDCARD_BENCH_PKCS11_MODULE");
  const char* label = std::getenv("MEDCARD_BENCH_PKCS11_TOKEN");
  const char* pin = std::getenv("MEDCARD_BENCH_PKCS11_PIN");
  if (module != nullptr && label != nullptr && pin != nullptr) {
    config = {module, label, pin};
  } else if (std::string problem = MakeSoftHsmToken(t, config); !problem.empty()) {
    t.backend.error = problem;
    return;
  }
  auto store = medcard::keys::OpenPkcs11KeyStore(config);
  if (!store.ok()) {
    t.backend.error = store.error().message;
    return;
  }
  t.backend.store = std::move(store).value();
  Prepare(t.backend);
}

Backend& Pkcs11() {
  static Pkcs11Token token;
  static const bool opened = (OpenPkcs11(token), true);
  (void)opened;
  return token.backend;
}

// ---- Diversification -----------------------------------------------------------------------

void BM_DiversifyRawCrypto(benchmark::State& state) {
  for (auto _ : state) {
    auto derived = medcard::crypto::Diversify(kMasterKey, kFactor);
    benchmark::DoNotOptimize(derived);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DiversifyRawCrypto);

// Diversify + Release: what CardKey costs the host per card.
void DiversifyThrough(benchmark::State& state, Backend& b) {
  if (!b.error.empty()) {
    state.SkipWithError(b.error.c_str());
    return;
  }
  for (auto _ : state) {
    auto derived = b.store->Diversify(b.master, kFactor);
    if (!derived.ok()) {
      state.SkipWithError(derived.error().message.c_str());
      break;
    }
    b.store->Release(*derived);
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_DiversifySoftwareStore(benchmark::State& state) { DiversifyThrough(state, Software()); }
BENCHMARK(BM_DiversifySoftwareStore);
void BM_DiversifyPkcs11Store(benchmark::State& state) { DiversifyThrough(state, Pkcs11()); }
BENCHMARK(BM_DiversifyPkcs11Store);

// ---- MAC verification ----------------------------------------------------------------------

void BM_MacVerifyRawCrypto(benchmark::State& state) {
  const Bytes tac_key = *medcard::crypto::TacKey(*medcard::crypto::Diversify(kMasterKey, kFactor));
  const Bytes tac = *medcard::crypto::PbocMac(tac_key, kTacInput);
  for (auto _ : state) {
    auto mac = medcard::crypto::PbocMac(tac_key, kTacInput);
    bool ok = mac.ok() && medcard::ConstantTimeEqual(*mac, tac);
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MacVerifyRawCrypto);

void MacVerifyThrough(benchmark::State& state, Backend& b) {
  if (!b.error.empty()) {
    state.SkipWithError(b.error.c_str());
    return;
  }
  for (auto _ : state) {
    auto verified = b.store->VerifyMac(b.tac_key, kTacInput, b.tac);
    if (!verified.ok()) {
      state.SkipWithError(verified.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_MacVerifySoftwareStore(benchmark::State& state) { MacVerifyThrough(state, Software()); }
BENCHMARK(BM_MacVerifySoftwareStore);
void BM_MacVerifyPkcs11Store(benchmark::State& state) { MacVerifyThrough(state, Pkcs11()); }
BENCHMARK(BM_MacVerifyPkcs11Store);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  reporter.PrintRatio("software_store_diversify_per_s / raw_crypto_diversify_per_s",
                      "BM_DiversifySoftwareStore", "BM_DiversifyRawCrypto");
  reporter.PrintRatio("software_store_mac_verify_per_s / raw_crypto_mac_verify_per_s",
                      "BM_MacVerifySoftwareStore", "BM_MacVerifyRawCrypto");
  reporter.PrintRatio("pkcs11_store_diversify_per_s / raw_crypto_diversify_per_s",
                      "BM_DiversifyPkcs11Store", "BM_DiversifyRawCrypto");
  reporter.PrintRatio("pkcs11_store_mac_verify_per_s / raw_crypto_mac_verify_per_s",
                      "BM_MacVerifyPkcs11Store", "BM_MacVerifyRawCrypto");

  // Stores close before static destruction (a PKCS#11 module may be torn down by then); the
  // software store's directory and the SoftHSM2 token directory go with them.
  Backend& software = Software();
  if (software.store) {
    const std::string description = software.store->Describe();
    software.store.reset();
    const std::filesystem::path dir = description.substr(std::string("software:").size());
    std::filesystem::remove_all(dir.parent_path());
  }
  Pkcs11().store.reset();
  return 0;
}
