// Fuzzes the ISO 8583 codec (iso8583/iso8583.h, iso8583/messages.h). The input is a TCP byte
// stream (cut into frames by the Deframer, in two reads split where the first byte says) and
// also, after its first two bytes, one frame. Whatever parses must re-encode to exactly the bytes
// it came from (the codec is canonical) and parse back to the same frame; the validators, the
// log line, the MAC input and every field-62 layout must cope with it; a refusal built from a
// parse failure or a validation failure must itself be a valid, parseable answer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "iso8583/iso8583.h"
#include "iso8583/messages.h"

namespace {

using namespace medcard;
using namespace medcard::iso8583;

void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename Layout>
void RoundTripLayout(ByteView bytes) {
  auto parsed = Layout::Parse(bytes);
  if (!parsed.ok()) return;
  auto encoded = parsed->Encode();
  Check(encoded.ok());
  auto again = Layout::Parse(View(*encoded));
  Check(again.ok() && *again == *parsed);
}

void CheckLayouts(const Message& m) {
  auto field62 = m.GetBytes(62);
  if (!field62.ok()) return;
  const ByteView v = View(*field62);
  RoundTripLayout<SignOnRequest>(v);
  RoundTripLayout<WorkingKeys>(v);
  RoundTripLayout<LoadRequest>(v);
  RoundTripLayout<LoadAuthorisation>(v);
  RoundTripLayout<LoadConfirmation>(v);
  RoundTripLayout<CardReference>(v);
  RoundTripLayout<PurchaseBatch>(v);
  RoundTripLayout<SamTotals>(v);
  RoundTripLayout<DownloadRequest>(v);
  RoundTripLayout<BlacklistPart>(v);
  RoundTripLayout<ParameterPart>(v);
}

// A refusal must be an answer the terminal can parse and accept as a refusal.
void CheckRefusal(const Message& request, ResponseCode code) {
  auto refusal = Refusal(request, code);
  if (!refusal.ok()) return;
  Frame frame;
  frame.message = *refusal;
  const Bytes wire = EncodeFrame(frame);
  auto parsed = ParseFrame(ByteView(wire).subspan(2));
  Check(parsed.ok() && parsed->message == *refusal);
}

void CheckFrame(ByteView bytes) {
  ParseFailure failure;
  auto frame = ParseFrame(bytes, &failure);
  if (!frame.ok()) {
    Check(!failure.reason.empty() && failure.reason == frame.error().message);
    Check(failure.code == ResponseCode::kFormatError ||
          failure.code == ResponseCode::kInvalidTransaction);
    if (failure.mti_read) CheckRefusal(failure.partial, failure.code);
    return;
  }
  const Bytes wire = EncodeFrame(*frame);
  Check(wire.size() == bytes.size() + 2 && ReadU16(View(wire)) == bytes.size());
  Check(std::equal(wire.begin() + 2, wire.end(), bytes.begin()));
  auto again = ParseFrame(ByteView(wire).subspan(2));
  Check(again.ok() && *again == *frame);

  const Message& m = frame->message;
  Check(!m.ToString().empty());
  const Bytes mac_input = MacInput(m);
  if (m.Has(64)) Check(mac_input.size() + 8 == wire.size() - 2 - kTpduSize - kHeaderSize);
  CheckLayouts(m);

  if (IsResponseMti(m.mti())) {
    (void)ValidateResponse(m);
    return;
  }
  ResponseCode code = ResponseCode::kApproved;
  const Status valid = ValidateRequest(m, &code);
  if (!valid.ok()) {
    Check(code != ResponseCode::kApproved);
    CheckRefusal(m, code);
    return;
  }
  auto spec = Identify(m);
  Check(spec.ok());
  // The host's skeleton of a refusal answers this request validly.
  auto answer = StartResponse(m, ResponseCode::kSystemMalfunction);
  Check(answer.ok());
  Check(ValidateResponse(*answer, &m).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView input(data, size);
  Deframer deframer;
  const std::size_t split = size == 0 ? 0 : data[0] % (size + 1);
  for (const ByteView part : {input.first(split), input.subspan(split)}) {
    if (!deframer.Feed(part).ok()) break;
    while (auto frame = deframer.Next()) CheckFrame(View(*frame));
  }
  if (size >= 2) CheckFrame(input.subspan(2));
  return 0;
}
