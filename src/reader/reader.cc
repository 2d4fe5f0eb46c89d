// Send() with the T=0 transport rules, and the Transaction guard.
#include <cstddef>
#include <utility>

#include "reader/reader.h"

namespace medcard::reader {

namespace {

// Case 4 through T=0 can carry at most 65536 response bytes (ISO 7816-3 §12.1.3 extended Le).
constexpr std::size_t kMaxResponseData = 65536;

std::uint32_t LeFromSw2(std::uint8_t sw2) { return sw2 == 0 ? 256 : sw2; }

Result<iso7816::ResponseApdu> TransmitOnce(Reader& reader, const iso7816::CommandApdu& command) {
  Result<Bytes> raw = reader.Transmit(View(command.Serialize()));
  if (!raw) return raw.error();
  Result<iso7816::ResponseApdu> response = iso7816::ResponseApdu::Parse(View(*raw));
  if (!response) {
    return MakeError("reader '" + reader.Name() + "': the card answered " +
                     std::to_string(raw->size()) + " byte(s), no status word");
  }
  return response;
}

// ISO 7816-3 §10.3.4 (T=0 procedure bytes): 6Cxx asks for the same command with Le = xx.
Result<iso7816::ResponseApdu> TransmitWithLeCorrection(Reader& reader,
                                                       const iso7816::CommandApdu& command) {
  Result<iso7816::ResponseApdu> response = TransmitOnce(reader, command);
  if (!response || response->sw.sw1() != 0x6C) return response;
  iso7816::CommandApdu again = command;
  again.le = LeFromSw2(response->sw.sw2());
  return TransmitOnce(reader, again);
}

}  // namespace

Result<iso7816::ResponseApdu> Send(Reader& reader, const iso7816::CommandApdu& command) {
  Result<iso7816::ResponseApdu> first = TransmitWithLeCorrection(reader, command);
  if (!first) return first;
  iso7816::ResponseApdu result = std::move(*first);
  // 61xx: xx more bytes wait for GET RESPONSE (ISO 7816-4 §7.6.1).
  while (result.sw.sw1() == 0x61) {
    const auto get_response =
        iso7816::CommandApdu::Case2(0x00, 0xC0, 0x00, 0x00, LeFromSw2(result.sw.sw2()));
    Result<iso7816::ResponseApdu> next = TransmitWithLeCorrection(reader, get_response);
    if (!next) return next;
    if (next->data.empty() && next->sw.sw1() == 0x61) {
      return MakeError("reader '" + reader.Name() +
                       "': the card answers GET RESPONSE with 61xx but no data");
    }
    Append(result.data, View(next->data));
    result.sw = next->sw;
    if (result.data.size() > kMaxResponseData) {
      return MakeError("reader '" + reader.Name() + "': the card's response exceeds " +
                       std::to_string(kMaxResponseData) + " bytes of 61xx chaining");
    }
  }
  return result;
}

Result<Transaction> Transaction::Begin(Reader& reader) {
  Status begun = reader.BeginTransaction();
  if (!begun) return begun.error();
  return Transaction(&reader);
}

Transaction::Transaction(Transaction&& other) noexcept
    : reader_(std::exchange(other.reader_, nullptr)) {}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    if (reader_ != nullptr) (void)reader_->EndTransaction();
    reader_ = std::exchange(other.reader_, nullptr);
  }
  return *this;
}

Transaction::~Transaction() {
  if (reader_ != nullptr) (void)reader_->EndTransaction();
}

Status Transaction::End() {
  if (reader_ == nullptr) return MakeError("transaction already ended");
  return std::exchange(reader_, nullptr)->EndTransaction();
}

}  // namespace medcard::reader
