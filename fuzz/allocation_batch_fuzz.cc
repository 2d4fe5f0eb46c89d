// Fuzzes the allocation batch and acknowledgement parsers (docs/insurance.md "Allocation
// batches"). The input is parsed as it is (nearly always refused by the HMAC), and again with a
// valid trailer appended under the fuzz key, so the structure checks behind the authentication
// are reached too. Whatever is refused must say why; whatever is accepted must hold its
// invariants (line numbers, unique people, positive amounts, totals) and survive a round trip.
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "insurance/allocation_batch.h"

namespace {

using namespace medcard::insurance;  // NOLINT(google-build-using-namespace)

void Check(bool condition) {
  if (!condition) std::abort();
}

const BatchKey& FuzzKey() {
  static const BatchKey key =
      *BatchKey::FromHex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  return key;
}

// `body` (made to end with a newline) followed by a trailer of `type` whose HMAC is right.
std::string Signed(std::string body, std::string_view trailer_fields, std::string_view type) {
  if (body.empty() || body.back() != '\n') body += '\n';
  unsigned char mac[32];
  unsigned int length = 0;
  const auto key = FuzzKey().bytes();
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &length);
  return body + "{" + std::string(trailer_fields) + "\"hmac_sha256\":\"" +
         medcard::ToHex(medcard::ByteView(mac, length)) + "\",\"record\":\"" + std::string(type) +
         "\"}\n";
}

void CheckBatch(std::string_view text) {
  auto batch = ParseAllocationBatch(text, FuzzKey());
  if (!batch.ok()) {
    Check(!batch.error().message.empty());
    return;
  }
  std::set<std::string> people;
  std::int64_t n = 0;
  for (const auto& line : batch->lines) {
    Check(line.line == ++n);
    Check(line.amount_fen > 0);
    Check(people.insert(line.person_id).second);
  }
  auto again = ParseAllocationBatch(WriteAllocationBatch(*batch, FuzzKey()), FuzzKey());
  Check(again.ok() && again->lines == batch->lines && again->batch_id == batch->batch_id);
}

void CheckAcknowledgement(std::string_view text) {
  auto ack = ParseAcknowledgement(text, FuzzKey());
  if (!ack.ok()) {
    Check(!ack.error().message.empty());
    return;
  }
  for (const auto& line : ack->lines) {
    Check(line.allocation.amount_fen > 0);
    Check((line.outcome == LineOutcome::kCredited) == line.reason.empty());
  }
  auto again = ParseAcknowledgement(WriteAcknowledgement(*ack, FuzzKey()), FuzzKey());
  Check(again.ok() && again->lines == ack->lines);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  CheckBatch(text);
  CheckAcknowledgement(text);
  CheckBatch(Signed(text, "\"count\":0,\"total_fen\":0,", "trailer"));
  CheckAcknowledgement(
      Signed(text, "\"credited_count\":0,\"credited_fen\":0,\"refused_count\":0,\"refused_fen\":0,",
             "ack_trailer"));
  return 0;
}
