// Crypto throughput: the PBOC MAC with a prepared key and one-shot, against raw OpenSSL 3DES-ECB
// single blocks through one reused EVP_CIPHER_CTX (the baseline, measured in the same run), and
// card key diversification. Figures only; nothing here asserts on time.
#include <benchmark/benchmark.h>

#include <openssl/evp.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "crypto/crypto.h"
#include "rate_reporter.h"

namespace {

using medcard::Bytes;
using medcard::HexToBytes;

// A TAC-sized input (~27 bytes: amount, type, terminal number, serials, date, time).
const Bytes kTacInput = HexToBytes("00001C37 09 000000000001 00000001 0000 20110919 204812 000000");
const Bytes kKey16 = HexToBytes("0123456789ABCDEFFEDCBA9876543210");

void BM_PbocMacPreparedKey(benchmark::State& state) {
  auto mac_key = medcard::crypto::MacKey::Create(kKey16);
  if (!mac_key.ok()) {
    state.SkipWithError(mac_key.error().message.c_str());
    return;
  }
  for (auto _ : state) {
    auto mac = mac_key->Mac4(kTacInput);
    benchmark::DoNotOptimize(mac);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PbocMacPreparedKey);

void BM_PbocMacOneShot(benchmark::State& state) {
  for (auto _ : state) {
    auto mac = medcard::crypto::PbocMac(kKey16, kTacInput);
    benchmark::DoNotOptimize(mac);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PbocMacOneShot);

// The baseline: what OpenSSL itself does per 3DES block when nothing else is in the way.
void BM_Raw3desEcbBlock(benchmark::State& state) {
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "DES-EDE3-ECB", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const Bytes key = medcard::Concat({kKey16, medcard::ByteView(kKey16).first(8)});
  if (cipher == nullptr || ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx, cipher, key.data(), nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
    state.SkipWithError("OpenSSL DES-EDE3-ECB setup failed");
  } else {
    unsigned char block[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (auto _ : state) {
      int out_len = 0;
      EVP_EncryptUpdate(ctx, block, &out_len, block, sizeof block);  // chained: no dead code
      benchmark::DoNotOptimize(block);
    }
    state.SetItemsProcessed(state.iterations());
  }
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
}
BENCHMARK(BM_Raw3desEcbBlock);

void BM_Diversify(benchmark::State& state) {
  const Bytes factor = HexToBytes("4100000089999985");
  for (auto _ : state) {
    auto derived = medcard::crypto::Diversify(kKey16, factor);
    benchmark::DoNotOptimize(derived);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Diversify);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  reporter.PrintRatio("pboc_mac_per_s / raw_3des_blocks_per_s", "BM_PbocMacPreparedKey",
                      "BM_Raw3desEcbBlock");
  return 0;
}
