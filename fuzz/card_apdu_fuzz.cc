// libFuzzer target: APDU sequences into a personalised medcard card that already holds an ED and
// an EP balance and a few logged transactions.
//
// Input: a sequence of chunks. A chunk starts with a byte L: L = 0xFF power-cycles the card;
// otherwise the next L bytes (or what is left) are one C-APDU.
//
// Invariants checked after every APDU (a violation aborts):
//  - the card answers: at least SW1 SW2, never mute (there is no power cut here), never a crash;
//  - money never moves: balances, serials, overdraw, transaction log and proofs stay as they
//    were, because every purse change needs a MAC the fuzzer can not compute without the keys;
//  - nothing that needs the issuer's keys happens: lifecycle, application block state and the
//    MAC-protected files stay as they were.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "card/card.h"
#include "card/personalize.h"
#include "common/bytes.h"
#include "crypto/crypto.h"
#include "nvm/nvm.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
using medcard::HexToBytes;
using medcard::View;

void Check(bool condition) {
  if (!condition) std::abort();
}

std::function<Bytes(std::size_t)> CountingRandom() {
  auto next = std::make_shared<std::uint8_t>(1);
  return [next](std::size_t n) {
    Bytes out(n);
    for (auto& b : out) b = (*next)++;
    return out;
  };
}

const Bytes kTerminal = HexToBytes("001122334455");
const Bytes kDateTime = HexToBytes("20240315102030");

Bytes U32(std::uint32_t v) {
  Bytes b;
  medcard::AppendU32(b, v);
  return b;
}

// A load through the real protocol, with the card's DLK.
void Load(medcard::card::Card& card, const Bytes& dlk, bool ed, std::uint32_t amount) {
  Bytes init = {0x80, 0x50, 0x00, static_cast<std::uint8_t>(ed ? 1 : 2), 0x0B, 0x01};
  medcard::Append(init, View(U32(amount)));
  medcard::Append(init, View(kTerminal));
  init.push_back(0x10);
  const Bytes r = card.Transmit(View(init));
  Check(r.size() == 18 && r[16] == 0x90);
  const Bytes seslk = *medcard::crypto::LoadSessionKey(View(dlk), ByteView(r.data() + 8, 4),
                                                       ByteView(r.data() + 4, 2));
  Bytes mac_input = U32(amount);
  mac_input.push_back(ed ? 0x01 : 0x02);
  medcard::Append(mac_input, View(kTerminal));
  medcard::Append(mac_input, View(kDateTime));
  Bytes credit = HexToBytes("805200000B");
  medcard::Append(credit, View(kDateTime));
  medcard::Append(credit, View(*medcard::crypto::PbocMac(View(seslk), View(mac_input))));
  const Bytes c = card.Transmit(View(credit));
  Check(c.size() == 6 && c[4] == 0x90);
}

// The medium content of the starting card, built once.
const Bytes& StartingContent() {
  static const Bytes content = [] {
    using namespace medcard::card;
    const Bytes transport_key = HexToBytes("5152535455565758595A5B5C5D5E5F60");
    const std::map<std::string, Bytes> master_keys = {
        {"purchase", HexToBytes("0123456789ABCDEFFEDCBA9876543210")},
        {"load", HexToBytes("11223344556677888877665544332211")},
        {"tac", HexToBytes("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8")},
        {"unload", HexToBytes("C1C2C3C4C5C6C7C8D1D2D3D4D5D6D7D8")},
        {"overdraw", HexToBytes("E1E2E3E4E5E6E7E8F1F2F3F4F5F6F7F8")},
        {"pin_unblock", HexToBytes("0102030405060708090A0B0C0D0E0F10")},
        {"pin_reload", HexToBytes("1112131415161718191A1B1C1D1E1F20")},
        {"maintenance", HexToBytes("2122232425262728292A2B2C2D2E2F30")},
        {"ssse_maintenance", HexToBytes("3132333435363738393A3B3C3D3E3F40")},
        {"visit_record", HexToBytes("4142434445464748494A4B4C4D4E4F50")},
    };
    HolderData holder;
    holder.issuer_id = HexToBytes("3141000000000001");
    holder.asn = HexToBytes("31410000000000000123");
    holder.start_date = medcard::Date{2024, 1, 1};
    holder.expiry_date = medcard::Date{2034, 12, 31};
    holder.name_gbk = HexToBytes("D5C5C8FD");
    holder.id_number = "310101199001011234";
    holder.ssse_card_id = "310100D156000005";
    holder.ssse_issue_date = medcard::Date{2024, 1, 1};
    holder.ssse_expiry_date = medcard::Date{2034, 12, 31};
    holder.ssse_card_number = "A00000001";
    holder.social_security_number = "310101199001011234";
    holder.ssse_name_gbk = HexToBytes("D5C5C8FD");
    holder.birth_date = medcard::Date{1990, 1, 1};
    holder.employer_code = "310000000000001";
    holder.pooling_area = "310100";
    holder.designated_facilities = {"H310100001"};
    holder.pin = "123456";
    holder.purse.ed_overdraw_limit = 500;

    auto medium = std::make_unique<medcard::nvm::FaultInjectionMedium>();
    auto* raw = medium.get();
    auto card = Card::Manufacture(std::move(medium),
                                  ManufactureInfo{HexToBytes("C0C1C2C3C4C5C6C7"), transport_key},
                                  CardOptions{CountingRandom()});
    Check(card.ok());
    Card& c = **card;
    c.PowerOn();
    auto keys = ClearKeyWrapper::FromMasterKeys(transport_key, master_keys, View(holder.asn));
    Check(keys.ok());
    auto layout = StandardLayout(holder);
    Check(layout.ok());
    auto script = BuildPersonalisation(*layout, *keys);
    Check(script.ok());
    Check(RunPersonalisation(*script, *keys, c).ok());
    c.PowerOn();
    Check(c.Transmit(View(HexToBytes("00A4040006D15600000503"))).size() > 2);
    Check(c.Transmit(View(HexToBytes("0020000003123456"))).size() == 2);
    Load(c, *keys->CardKey("load"), true, 80000);
    Load(c, *keys->CardKey("load"), false, 30000);
    Load(c, *keys->CardKey("load"), false, 1234);
    return raw->SurvivingContent();
  }();
  return content;
}

// Everything of the card that only a valid MAC may change.
struct Guarded {
  medcard::card::Lifecycle lifecycle;
  std::vector<medcard::card::PurseSummary> purses;
  std::vector<Bytes> mac_protected;  // contents of SM-writable EFs
  std::vector<medcard::card::AppBlock> blocks;

  static Guarded Of(const medcard::card::CardSummary& s) {
    Guarded g{s.lifecycle, s.purses, {}, {}};
    for (auto& p : g.purses) p.pin.reset();  // the holder may change PIN tries with no key
    for (const auto& f : s.files) {
      if (f.type == medcard::card::FileType::kDf) {
        g.blocks.push_back(f.block);
        continue;
      }
      if (f.write.kind != medcard::card::AccessKind::kFree) {
        g.mac_protected.push_back(f.content);
        for (const Bytes& r : f.records) g.mac_protected.push_back(r);
      }
    }
    return g;
  }
  bool operator==(const Guarded&) const = default;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace medcard::card;
  const Bytes& content = StartingContent();
  auto medium = std::make_unique<medcard::nvm::FaultInjectionMedium>(content);
  const medcard::nvm::FaultInjectionMedium* raw = medium.get();
  auto opened = Card::Open(std::move(medium), CardOptions{CountingRandom()});
  Check(opened.ok());
  Card& card = **opened;
  Check(!card.PowerOn().empty());
  const Guarded before = Guarded::Of(card.Inspect());

  std::size_t pos = 0;
  int writes = raw->sector_writes();
  while (pos < size) {
    const std::uint8_t length = data[pos++];
    if (length == 0xFF) {
      card.PowerOff();
      Check(!card.PowerOn().empty());
      continue;
    }
    const std::size_t n = length < size - pos ? length : size - pos;
    const Bytes response = card.Transmit(ByteView(data + pos, n));
    pos += n;
    Check(response.size() >= 2);
    Check(!card.dead());
    // The guarded state lives in the image: it can only have changed if the card wrote.
    if (raw->sector_writes() != writes) {
      writes = raw->sector_writes();
      Check(Guarded::Of(card.Inspect()) == before);
    }
  }
  Check(Guarded::Of(card.Inspect()) == before);
  // What the card committed is what it shows.
  auto reopened =
      Card::Open(std::make_unique<medcard::nvm::FaultInjectionMedium>(raw->SurvivingContent()));
  Check(reopened.ok());
  Check((*reopened)->Inspect() == card.Inspect());
  return 0;
}
