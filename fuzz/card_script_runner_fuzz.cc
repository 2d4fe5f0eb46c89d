// Fuzzes the teller-side issuer script runner (branch/script_runner.h) against a card whose
// answers come from the input: the FCI it parses (SFI 15 inside tag 9F0C), the challenge, the
// status words. Whatever the card answers, the runner must not crash, must hand the source only
// a 10-byte ASN and a 4-byte challenge, must send the source's command unchanged or nothing,
// and may report success only when the card accepted that command (9000).
//
// Input: byte 0 picks the script kind; then answers, each `length(1) ‖ bytes` (an R-APDU:
// data ‖ SW1 SW2); a card out of answers answers 6F00.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "branch/card_scripts.h"
#include "branch/script_runner.h"
#include "reader/reader.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
namespace branch = medcard::branch;

void Check(bool condition) {
  if (!condition) std::abort();
}

const Bytes kScriptCommand = {0x84, 0x18, 0x00, 0x00, 0x04, 0x11, 0x22, 0x33, 0x44};

class FuzzedCard final : public medcard::iso7816::Icc {
 public:
  explicit FuzzedCard(std::vector<Bytes> answers) : answers_(std::move(answers)) {}
  Bytes PowerOn() override { return Atr(); }
  void PowerOff() override {}
  Bytes Atr() const override { return {0x3B, 0x00}; }
  Bytes Transmit(ByteView command) override {
    sent_.emplace_back(command.begin(), command.end());
    if (next_ >= answers_.size()) return {0x6F, 0x00};
    return answers_[next_++];
  }
  const std::vector<Bytes>& sent() const { return sent_; }
  // The answer to the n-th command (0-based), or 6F00 past the input.
  Bytes AnswerTo(std::size_t n) const {
    return n < answers_.size() ? answers_[n] : Bytes{0x6F, 0x00};
  }

 private:
  std::vector<Bytes> answers_;
  std::vector<Bytes> sent_;
  std::size_t next_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto kind = static_cast<branch::ScriptKind>(data[0] % 5);
  std::vector<Bytes> answers;
  std::size_t at = 1;
  while (at < size) {
    const std::size_t length = data[at++];
    const std::size_t take = std::min(length, size - at);
    answers.emplace_back(data + at, data + at + take);
    at += take;
  }
  auto card = std::make_shared<FuzzedCard>(std::move(answers));
  medcard::reader::InProcessReader reader("fuzz", card);

  bool asked = false;
  auto outcome = branch::RunCardScript(reader, kind, [&](const branch::ScriptContext& context) {
    Check(!asked);
    asked = true;
    Check(context.kind == kind);
    Check(context.asn.size() == 10);
    Check(context.challenge.size() == 4);
    return medcard::Result<branch::CardScript>(branch::CardScript{kind, kScriptCommand, {}});
  });

  // The script, when sent, is sent as the source made it, once, right after the question.
  std::size_t script_at = card->sent().size();
  for (std::size_t i = 0; i < card->sent().size(); ++i) {
    if (card->sent()[i] == kScriptCommand) {
      Check(asked);
      Check(script_at == card->sent().size());
      script_at = i;
    }
  }
  if (outcome.ok()) {
    Check(asked && script_at < card->sent().size());
    // 9000 to the script itself, or to its GET RESPONSE / resend (T=0 rules, reader::Send).
    bool accepted = false;
    for (std::size_t i = script_at; i < card->sent().size(); ++i) {
      const Bytes answer = card->AnswerTo(i);
      accepted = accepted || (answer.size() >= 2 && answer[answer.size() - 2] == 0x90 &&
                              answer.back() == 0x00);
    }
    Check(accepted);
    Check(!outcome->message.empty());
    Check(outcome->asn.size() == 10);
  }
  return 0;
}
