// libFuzzer target: APDU sequences into a personalised PSAM that already holds one completed
// purchase and one pending session.
//
// Input: a sequence of chunks. A chunk starts with a byte L: L = 0xFF power-cycles the PSAM;
// otherwise the next L bytes (or what is left) are one C-APDU.
//
// Invariants checked after every APDU (a violation aborts):
//  - the PSAM answers: at least SW1 SW2, never mute (no power cut here), never a crash;
//  - the settlement totals never change: without the card's keys no MAC2 can be forged, and
//    without the settlement key no CLEAR SAM TOTALS acknowledgement either;
//  - the terminal transaction serial never goes backwards.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "common/bytes.h"
#include "crypto/crypto.h"
#include "nvm/nvm.h"
#include "psam/personalize.h"
#include "psam/psam.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
using medcard::HexToBytes;

void Check(bool condition) {
  if (!condition) std::abort();
}

// The medium content of the starting PSAM, built once.
const Bytes& StartingContent() {
  static const Bytes content = [] {
    using namespace medcard::psam;
    const Bytes transport_key = HexToBytes("404142434445464748494A4B4C4D4E4F");
    const Bytes mpk = HexToBytes("0123456789ABCDEFFEDCBA9876543210");
    auto medium = std::make_unique<medcard::nvm::FaultInjectionMedium>();
    auto* raw = medium.get();
    auto psam = Psam::Manufacture(std::move(medium),
                                  ManufactureInfo{HexToBytes("8000000000000042"), transport_key});
    Check(psam.ok());
    PsamProfile profile;
    profile.psam_serial = HexToBytes("31000000000000001234");
    profile.terminal_number = HexToBytes("110100000088");
    profile.valid_from = medcard::Date{2010, 1, 1};
    profile.valid_to = medcard::Date{2030, 12, 31};
    profile.keys = {{KeyHeader{KeyUsage::kPurchase, 1, 1, kAlgTdes, 3}, "mpk"},
                    {KeyHeader{KeyUsage::kSettlement, 1, 1, kAlgTdes, 3}, "settlement"},
                    {KeyHeader{KeyUsage::kVisitRecord, 1, 1, kAlgTdes, 3}, "visit"}};
    ClearKeyWrapper wrapper(transport_key,
                            {{"mpk", mpk},
                             {"settlement", HexToBytes("C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0")},
                             {"visit", HexToBytes("5A5B5C5D5E5F60616263646566676869")}});
    auto script = BuildPersonalisationScript(profile);
    Check(script.ok());
    Psam& p = **psam;
    p.PowerOn();
    Check(
        RunPersonalisationScript(*script, wrapper, [&](ByteView a) { return p.Transmit(a); }).ok());

    // One completed purchase (the totals the fuzzer must not move) and one left pending.
    const Bytes init = HexToBytes(
        "8070000024A1B2C3D40007000009C40620240315101530010031000000000043210000000000005301"
        "08");
    for (int i = 0; i < 2; ++i) {
      const Bytes r = p.Transmit(medcard::View(init));
      Check(r.size() == 10 && r[8] == 0x90);
      if (i == 1) break;
      const Bytes dpk = *medcard::crypto::Diversify(
          medcard::View(*medcard::crypto::Diversify(medcard::View(mpk),
                                                    medcard::View(HexToBytes("0000000000005301")))),
          medcard::View(HexToBytes("3100000000004321")));
      const Bytes sespk = *medcard::crypto::PurchaseSessionKey(
          medcard::View(dpk), medcard::View(HexToBytes("A1B2C3D4")),
          medcard::View(HexToBytes("0007")), ByteView(r.data(), 4));
      const Bytes mac2 =
          *medcard::crypto::PbocMac(medcard::View(sespk), medcard::View(HexToBytes("000009C4")));
      Bytes credit = HexToBytes("8072000004");
      medcard::Append(credit, medcard::View(mac2));
      const Bytes ok = p.Transmit(medcard::View(credit));
      Check(ok.size() == 2 && ok[0] == 0x90 && ok[1] == 0x00);
    }
    Check(p.Inspect().totals.count == 1);
    return raw->SurvivingContent();
  }();
  return content;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace medcard::psam;
  const Bytes& content = StartingContent();
  auto opened = Psam::Open(std::make_unique<medcard::nvm::FaultInjectionMedium>(content));
  Check(opened.ok());
  Psam& psam = **opened;
  psam.PowerOn();
  const SamTotals totals = psam.Inspect().totals;
  std::uint32_t serial = psam.Inspect().terminal_transaction_serial;

  std::size_t pos = 0;
  while (pos < size) {
    const std::uint8_t length = data[pos++];
    if (length == 0xFF) {
      psam.PowerOff();
      Check(!psam.PowerOn().empty());
      continue;
    }
    const std::size_t n = length < size - pos ? length : size - pos;
    const Bytes response = psam.Transmit(ByteView(data + pos, n));
    pos += n;
    Check(response.size() >= 2);
    const Inspection now = psam.Inspect();
    Check(now.totals == totals);
    Check(now.terminal_transaction_serial >= serial);
    serial = now.terminal_transaction_serial;
  }
  return 0;
}
