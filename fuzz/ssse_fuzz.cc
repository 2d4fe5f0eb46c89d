// Fuzzes what a POS parses from a card's SSSE files (terminal/ssse.h): ReadCardholder (EF05-EF07)
// and ReadVisitRecords (EF08) over a reader whose card answers come from the input.
//
// Input: one byte choosing the reading (even: cardholder, odd: visit records), then the card's
// R-APDUs in the order it is asked, each as length(1) ‖ data ‖ SW1 SW2. When the input runs out the
// card is pulled. What is accepted must hold what ssse.h promises and render (text, JSON) without
// throwing; visit records must re-encode into the bytes the card would hold.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/bcd.h"
#include "reader/reader.h"
#include "terminal/ssse.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
using medcard::Result;
using medcard::Status;
namespace terminal = medcard::terminal;

void Check(bool condition) {
  if (!condition) std::abort();
}

// A card whose every answer is the next one in the fuzz input.
class InputCardReader final : public medcard::reader::Reader {
 public:
  explicit InputCardReader(ByteView answers) : answers_(answers) {}

  std::string Name() const override { return "fuzz input"; }
  Result<Bytes> Connect() override { return Bytes{0x3B, 0x00}; }
  Status Disconnect() override { return Status::Ok(); }
  bool Connected() const override { return true; }
  Result<bool> CardPresent() override { return !answers_.empty(); }
  Result<bool> WaitForCard(std::chrono::milliseconds) override { return !answers_.empty(); }
  Result<bool> WaitForRemoval(std::chrono::milliseconds) override { return answers_.empty(); }
  Result<Bytes> Transmit(ByteView) override {
    if (answers_.empty()) return medcard::MakeError("card removed");
    const std::size_t size = std::min<std::size_t>(answers_[0], answers_.size() - 1);
    Bytes answer(answers_.begin() + 1, answers_.begin() + 1 + static_cast<std::ptrdiff_t>(size));
    answers_ = answers_.subspan(1 + size);
    return answer;
  }
  Result<Bytes> PowerCycle(medcard::reader::Reset) override { return Connect(); }
  Status BeginTransaction() override { return Status::Ok(); }
  Status EndTransaction() override { return Status::Ok(); }

 private:
  ByteView answers_;
};

bool AllOf(const std::string& text, bool (*allowed)(char)) {
  for (char c : text) {
    if (!allowed(c)) return false;
  }
  return true;
}
bool Digit(char c) { return c >= '0' && c <= '9'; }
bool CodeCharacter(char c) { return Digit(c) || (c >= 'A' && c <= 'Z'); }
bool Visible(char c) { return c > 0x20 && c < 0x7F; }

void CheckCardholder(medcard::reader::Reader& card) {
  auto read = terminal::ReadCardholder(card);
  if (!read.ok()) {
    Check(!read.error().message.empty());
    return;
  }
  const terminal::Cardholder& h = *read;
  Check(!h.ssse_card_id.empty() && h.ssse_card_id.size() <= 16 && AllOf(h.ssse_card_id, Visible));
  Check(!h.ssse_card_number.empty() && h.ssse_card_number.size() <= 9);
  Check(medcard::IsValidDate(h.ssse_issue_date) && medcard::IsValidDate(h.ssse_expiry_date));
  Check(medcard::IsValidDate(h.birth_date));
  Check(!h.social_security_number.empty() && h.social_security_number.size() <= 18 &&
        AllOf(h.social_security_number, [](char c) { return Digit(c) || c == 'X'; }));
  Check(!h.name.empty());
  Check(h.sex == '0' || h.sex == '1' || h.sex == '2' || h.sex == '9');
  Check(h.ethnicity.size() == 2 && AllOf(h.ethnicity, Digit));
  Check(h.birthplace.size() == 6 && AllOf(h.birthplace, Digit));
  Check(!h.employer_unit_code.empty() && h.employer_unit_code.size() <= 15 &&
        AllOf(h.employer_unit_code, CodeCharacter));
  Check(h.pooling_area.size() == 6 && AllOf(h.pooling_area, Digit));
  Check(h.designated_facilities.size() <= 3);
  for (const std::string& f : h.designated_facilities) {
    Check(!f.empty() && f.size() <= 10 && AllOf(f, CodeCharacter));
  }

  // The renderings a cashier and a script see: JSON that parses back to the card's text.
  Check(!terminal::CardholderText(h).empty());
  const auto json = nlohmann::json::parse(terminal::CardholderJson(h), nullptr, false);
  Check(!json.is_discarded());
  Check(json["name"] == h.name && json["emergency_data"] == h.emergency_data);
  Check(json["social_security_number"] == terminal::MaskSsn(h.social_security_number));
  const auto full = nlohmann::json::parse(terminal::CardholderJson(h, terminal::SsnDisplay::kFull),
                                          nullptr, false);
  Check(!full.is_discarded() && full["social_security_number"] == h.social_security_number);
}

void CheckVisitRecords(medcard::reader::Reader& card) {
  auto read = terminal::ReadVisitRecords(card);
  if (!read.ok()) {
    Check(!read.error().message.empty());
    return;
  }
  Check(read->size() <= terminal::kVisitRecordCount);
  for (const terminal::VisitRecord& visit : *read) {
    // A record read from the card is one this terminal could have written.
    auto encoded = visit.Encode();
    Check(encoded.ok());
    Check(encoded->size() == terminal::kVisitRecordSize);
    auto parsed = terminal::VisitRecord::Parse(medcard::View(*encoded));
    Check(parsed.ok() && *parsed == visit);
  }
  Check(!terminal::FormatVisitRecords(*read).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  InputCardReader card(ByteView(data + 1, size - 1));
  if (data[0] % 2 == 0) {
    CheckCardholder(card);
  } else {
    CheckVisitRecords(card);
  }
  return 0;
}
