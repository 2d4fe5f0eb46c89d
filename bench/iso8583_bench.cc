// ISO 8583 codec throughput on the host's busiest message, a full batch upload (16 offline
// purchases, ~890 bytes): parse + encode per second, beside a memcpy of the same bytes (the
// baseline, measured in the same run), and the host's whole per-message check (parse, validate,
// MAC). Figures only; nothing here asserts on time.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/bytes.h"
#include "crypto/crypto.h"
#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "rate_reporter.h"

namespace {

using namespace medcard;
using namespace medcard::iso8583;

const Bytes kMacKey = HexToBytes("0123456789ABCDEFFEDCBA9876543210");

// A signed 0320 frame with 16 records; empty (and the benchmark skipped) if building failed.
Bytes BatchUploadFrame(std::string& error) {
  PurchaseBatch batch;
  for (std::uint32_t i = 0; i < kMaxPurchasesPerUpload; ++i) {
    OfflinePurchase p;
    p.asn = HexToBytes("00004100000089999900");
    p.asn.back() = static_cast<std::uint8_t>(i);
    p.type = 0x05;
    p.amount = 1500 + i;
    p.card_offline_serial = static_cast<std::uint16_t>(i);
    p.terminal_number = HexToBytes("000001000050");
    p.terminal_serial = 1000 + i;
    p.date = Date{2025, 3, 14};
    p.time = TimeOfDay{9, 26, static_cast<int>(i)};
    p.key_version = 1;
    p.tac = HexToBytes("44A8E04A");
    p.mac2 = HexToBytes("350AC480");
    p.balance_before = 100000;
    p.balance_after = 100000 - p.amount;
    batch.purchases.push_back(p);
  }
  auto records = batch.Encode();
  auto f53 = SecurityControl{false, 7}.Encode();
  auto f60 = Field60{kMessageTypeBatchUpload, 12, 0}.Encode();
  auto key = crypto::MacKey::Create(View(kMacKey));
  if (!records.ok() || !f53.ok() || !f60.ok() || !key.ok()) {
    error = "building the batch upload failed";
    return {};
  }
  Message m(0x0320);
  for (const Status& s :
       {m.SetNumber(11, 4711), m.SetText(41, "POS00001"), m.SetText(42, "898440154110001"),
        m.SetDigits(53, *f53), m.SetDigits(60, *f60), m.SetBytes(62, View(*records))}) {
    if (!s.ok()) {
      error = s.error().message;
      return {};
    }
  }
  Sign(m, *key);
  Frame frame;
  frame.tpdu = Tpdu{0x0003, 0x0000};
  frame.message = std::move(m);
  const Bytes wire = EncodeFrame(frame);
  return Bytes(wire.begin() + 2, wire.end());  // as the Deframer hands it out
}

void BM_BatchUploadParseEncode(benchmark::State& state) {
  std::string error;
  const Bytes frame = BatchUploadFrame(error);
  if (frame.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    auto parsed = ParseFrame(View(frame));
    if (!parsed.ok()) {
      state.SkipWithError(parsed.error().message.c_str());
      break;
    }
    Bytes encoded = EncodeFrame(*parsed);
    benchmark::DoNotOptimize(encoded.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_BatchUploadParseEncode);

// The baseline: copying the same bytes into a buffer of the same size.
void BM_BatchUploadMemcpy(benchmark::State& state) {
  std::string error;
  const Bytes frame = BatchUploadFrame(error);
  if (frame.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  Bytes copy(frame.size());
  for (auto _ : state) {
    std::memcpy(copy.data(), frame.data(), frame.size());
    benchmark::DoNotOptimize(copy.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_BatchUploadMemcpy);

// What the host does with each request before touching a ledger: parse, validate (every field
// and all 16 records), check the MAC with a prepared key.
void BM_BatchUploadParseValidateMac(benchmark::State& state) {
  std::string error;
  const Bytes frame = BatchUploadFrame(error);
  auto key = crypto::MacKey::Create(View(kMacKey));
  if (frame.empty() || !key.ok()) {
    state.SkipWithError(frame.empty() ? error.c_str() : "MAC key");
    return;
  }
  for (auto _ : state) {
    auto parsed = ParseFrame(View(frame));
    if (!parsed.ok() || !ValidateRequest(parsed->message).ok() ||
        !VerifyMac(parsed->message, *key).ok()) {
      state.SkipWithError("the batch upload did not pass");
      break;
    }
    benchmark::DoNotOptimize(parsed->message);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BatchUploadParseValidateMac);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  reporter.PrintRatio("batch_upload_parse_encode_per_s / memcpy_per_s", "BM_BatchUploadParseEncode",
                      "BM_BatchUploadMemcpy");
  reporter.PrintRatio("batch_upload_parse_validate_mac_per_s / memcpy_per_s",
                      "BM_BatchUploadParseValidateMac", "BM_BatchUploadMemcpy");
  return 0;
}
