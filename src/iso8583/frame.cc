// Framing: 2-byte length ‖ TPDU ‖ 6-byte header ‖ message, and the stream Deframer
// (docs/protocol.md "Framing").
#include <cstring>
#include <string>

#include "iso8583/iso8583.h"

namespace medcard::iso8583 {

namespace {

constexpr std::size_t kLengthSize = 2;
constexpr std::uint8_t kKnownStatuses[] = {0x00, 0x01};

}  // namespace

Bytes EncodeFrame(const Frame& frame) {
  Bytes out;
  out.reserve(kLengthSize + kTpduSize + kHeaderSize + 128);
  out.resize(kLengthSize);
  out.push_back(kTpduId);
  AppendU16(out, frame.tpdu.destination);
  AppendU16(out, frame.tpdu.source);
  Append(out, {kApplicationType, kProtocolVersion,
               static_cast<std::uint8_t>(frame.header.terminal_status), frame.header.handling, 0x00,
               0x00});
  frame.message.AppendEncoded(out, false);
  const std::size_t length = out.size() - kLengthSize;
  out[0] = static_cast<std::uint8_t>(length >> 8);
  out[1] = static_cast<std::uint8_t>(length & 0xFF);
  return out;
}

Result<Frame> ParseFrame(ByteView bytes, ParseFailure* failure) {
  auto fail = [&](const std::string& reason) -> Error {
    Error error = MakeError("iso8583: " + reason);
    if (failure != nullptr) {
      failure->code = ResponseCode::kFormatError;
      failure->field = 0;
      failure->reason = error.message;
    }
    return error;
  };
  if (failure != nullptr) *failure = ParseFailure{};
  if (bytes.size() < kTpduSize) {
    return fail("truncated in the TPDU (5 bytes, " + std::to_string(bytes.size()) + " left)");
  }
  if (bytes[0] != kTpduId) return fail("TPDU id " + ToHex(bytes.first(1)) + ", expected 60");
  Frame frame;
  frame.tpdu.destination = ReadU16(bytes, 1);
  frame.tpdu.source = ReadU16(bytes, 3);
  if (failure != nullptr) failure->tpdu = frame.tpdu;

  if (bytes.size() < kTpduSize + kHeaderSize) {
    return fail("truncated in the header (6 bytes, " + std::to_string(bytes.size() - kTpduSize) +
                " left)");
  }
  const ByteView header = bytes.subspan(kTpduSize, kHeaderSize);
  if (header[0] != kApplicationType) {
    return fail("header application type " + ToHex(header.first(1)) + ", expected 60");
  }
  if (header[1] != kProtocolVersion) {
    return fail("header protocol version " + ToHex(header.subspan(1, 1)) + ", expected 01");
  }
  bool known_status = false;
  for (std::uint8_t s : kKnownStatuses) known_status = known_status || header[2] == s;
  if (!known_status) {
    return fail("header terminal status " + ToHex(header.subspan(2, 1)) + " unknown");
  }
  if ((header[3] & ~kHandleAll) != 0) {
    return fail("header handling requirement " + ToHex(header.subspan(3, 1)) +
                " has unknown flags");
  }
  if (header[4] != 0 || header[5] != 0) {
    return fail("header reserved bytes " + ToHex(header.subspan(4, 2)) + ", expected 0000");
  }
  frame.header.terminal_status = static_cast<TerminalStatus>(header[2]);
  frame.header.handling = header[3];
  if (failure != nullptr) failure->header = frame.header;

  auto message = Message::Parse(bytes.subspan(kTpduSize + kHeaderSize), failure);
  if (!message.ok()) return message.error();
  frame.message = std::move(message).value();
  if (!IsResponseMti(frame.message.mti()) && frame.header.handling != 0) {
    Error error = MakeError("iso8583: header handling requirement " + ToHex(header.subspan(3, 1)) +
                            " in a request, expected 00");
    if (failure != nullptr) {
      failure->code = ResponseCode::kFormatError;
      failure->field = 0;
      failure->reason = error.message;
      failure->mti_read = true;
      failure->partial = frame.message;
    }
    return error;
  }
  return frame;
}

Deframer::Deframer(std::size_t max_frame_size) : max_frame_size_(max_frame_size) {}

Status Deframer::Feed(ByteView bytes) {
  if (error_) return *error_;
  // Drop what Next() has handed out before growing the buffer again.
  if (start_ > 0 && (start_ == buffer_.size() || start_ >= buffer_.size() / 2)) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  Append(buffer_, bytes);
  // Check every complete length prefix now, so a bad one is reported at once.
  std::size_t at = start_;
  while (buffer_.size() - at >= kLengthSize) {
    const std::size_t length = ReadU16(View(buffer_), at);
    if (length == 0 || length > max_frame_size_) {
      error_ = MakeError(
          "iso8583: frame length " + std::to_string(length) +
          (length == 0 ? " is zero" : " above the maximum " + std::to_string(max_frame_size_)) +
          ": close the connection");
      return *error_;
    }
    if (buffer_.size() - at - kLengthSize < length) break;
    at += kLengthSize + length;
  }
  return Status::Ok();
}

std::optional<Bytes> Deframer::Next() {
  if (error_ || buffer_.size() - start_ < kLengthSize) return std::nullopt;
  const std::size_t length = ReadU16(View(buffer_), start_);
  if (length == 0 || length > max_frame_size_) return std::nullopt;  // Feed reported it
  if (buffer_.size() - start_ - kLengthSize < length) return std::nullopt;
  const auto begin = buffer_.begin() + static_cast<std::ptrdiff_t>(start_ + kLengthSize);
  Bytes frame(begin, begin + static_cast<std::ptrdiff_t>(length));
  start_ += kLengthSize + length;
  return frame;
}

}  // namespace medcard::iso8583
