// medcard ISO 8583 (1987, binary bitmap) codec for the POS ↔ bank host link, as Chinese bank POS
// terminals speak it: 2-byte length ‖ TPDU ‖ 6-byte message header ‖ MTI ‖ bitmap ‖ fields.
// The byte-exact description — framing, header values, the field table, every message, the
// MAC and the rules — is docs/protocol.md; this header is the code side of it.
//
// Strict: a Message only ever holds values valid for their field definition (the setters check
// them), so Encode() cannot fail; Parse() rejects anything that is not exactly one well-formed
// message and says which field is at fault and which response code the host answers with.
// The MAC is computed by whoever holds the key (the host's KeyStore, the terminal's keys): this
// component never holds a MAC key except in the crypto::MacKey convenience functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "crypto/crypto.h"

namespace medcard::iso8583 {

// ---- Response codes (field 39; docs/protocol.md "Response codes") ---------------------------
// The enumerator's value is the two ASCII characters of the code, first one high.
enum class ResponseCode : std::uint16_t {
  kApproved = 0x3030,                 // 00
  kInvalidMerchant = 0x3033,          // 03
  kError = 0x3036,                    // 06 (reversal reason: the card did not complete the load)
  kInvalidTransaction = 0x3132,       // 12
  kInvalidAmount = 0x3133,            // 13
  kInvalidCard = 0x3134,              // 14
  kUnableToLocateRecord = 0x3235,     // 25
  kFormatError = 0x3330,              // 30
  kLostCard = 0x3431,                 // 41
  kInsufficientFunds = 0x3531,        // 51
  kExpiredCard = 0x3534,              // 54
  kIncorrectPin = 0x3535,             // 55
  kExceedsLimit = 0x3631,             // 61
  kOriginalAmountIncorrect = 0x3634,  // 64
  kPinTriesExceeded = 0x3735,         // 75
  kSignOnRequired = 0x3737,           // 77
  kDuplicateTransmission = 0x3934,    // 94
  kReconciliationError = 0x3935,      // 95
  kSystemMalfunction = 0x3936,        // 96
  kTerminalNotRegistered = 0x3937,    // 97
  kNoResponse = 0x3938,               // 98 (reversal reason: no answer to the original)
  kMacError = 0x4130,                 // A0
};
// "00", "A0", ...
std::string ResponseCodeText(ResponseCode code);
// "approved", "MAC error", ...
std::string_view ResponseCodeName(ResponseCode code);
// Only the codes above; nullopt for anything else.
std::optional<ResponseCode> ParseResponseCode(std::string_view text);
// Every code above, in table order (for documentation and tests).
std::span<const ResponseCode> AllResponseCodes();

// ---- Field definitions (the one table; docs/protocol.md "Fields") ---------------------------
enum class FieldFormat : std::uint8_t {
  kN,    // numeric, packed BCD, right-aligned (an odd digit count gets a leading 0 nibble)
  kZ,    // track data, packed BCD digits and '=' (nibble D), left-aligned (odd: trailing 0)
  kAn,   // ASCII letters and digits
  kAns,  // printable ASCII (0x20..0x7E)
  kB,    // binary
};
enum class LengthType : std::uint8_t {
  kFixed,
  kLlvar,   // 1-byte BCD length prefix (00..99)
  kLllvar,  // 2-byte BCD length prefix (0000..0999)
};
struct FieldDefinition {
  int number = 0;
  std::string_view name;
  FieldFormat format = FieldFormat::kB;
  LengthType length_type = LengthType::kFixed;
  // In digits for n and z fields, in bytes (characters) otherwise. Fixed fields are exactly
  // this long; variable ones 1..max_length.
  std::size_t max_length = 0;
};
// Every field medcard defines, by number (2..64; bit 1 is the secondary-bitmap flag, which
// medcard never sets).
std::span<const FieldDefinition> FieldDefinitions();
// nullptr when medcard does not define the field.
const FieldDefinition* FindField(int number);

// ---- Message --------------------------------------------------------------------------------
// Message type indicator, its 4 digits written as hex: 0x0200 is "0200".
using Mti = std::uint16_t;
// Every MTI of the medcard message catalogue (requests and responses).
bool IsKnownMti(Mti mti);
std::string MtiText(Mti mti);                                                     // "0200"
inline Mti ResponseMti(Mti request) { return static_cast<Mti>(request + 0x10); }  // 0200 → 0210
inline bool IsResponseMti(Mti mti) { return (mti & 0x10) != 0; }

// ---- Framing (docs/protocol.md "Framing") ---------------------------------------------------
inline constexpr std::uint8_t kTpduId = 0x60;
inline constexpr std::uint8_t kApplicationType = 0x60;  // header byte 1: medcard POS
inline constexpr std::uint8_t kProtocolVersion = 0x01;  // header byte 2
inline constexpr std::size_t kTpduSize = 5;
inline constexpr std::size_t kHeaderSize = 6;
inline constexpr std::size_t kDefaultMaxFrameSize = 8 * 1024;

// 60 ‖ destination NII (2) ‖ source NII (2). A response swaps the two addresses.
struct Tpdu {
  std::uint16_t destination = 0;
  std::uint16_t source = 0;
  Tpdu Reply() const { return Tpdu{source, destination}; }
  bool operator==(const Tpdu&) const = default;
};

// Header byte 3: the terminal's state (requests; a response echoes it).
enum class TerminalStatus : std::uint8_t { kNormal = 0x00, kTest = 0x01 };
// Header byte 4, handling requirement: 0 in requests; in responses the host's requests to the
// terminal, any combination of:
inline constexpr std::uint8_t kHandleSignOn = 0x01;      // sign on again (new working keys)
inline constexpr std::uint8_t kHandleParameters = 0x02;  // download parameters
inline constexpr std::uint8_t kHandleBlacklist = 0x04;   // download the blacklist
inline constexpr std::uint8_t kHandleAll = 0x07;

struct Header {
  TerminalStatus terminal_status = TerminalStatus::kNormal;
  std::uint8_t handling = 0;
  bool operator==(const Header&) const = default;
};

struct ParseFailure;
struct Frame;

class Message {
 public:
  Message() = default;
  explicit Message(Mti mti) : mti_(mti) {}

  Mti mti() const { return mti_; }
  void set_mti(Mti mti) { mti_ = mti; }

  bool Has(int field) const;
  void Remove(int field);
  // Present fields, ascending.
  std::vector<int> Fields() const;

  // Setters check the value against the field's definition (format, character class, length)
  // and leave the message unchanged on error. Fixed-length fields take exactly their length,
  // except SetNumber, which pads with leading zeros.
  Status SetNumber(int field, std::uint64_t value);      // n
  Status SetDigits(int field, std::string_view digits);  // n (0-9) or z (0-9 and '=')
  Status SetText(int field, std::string_view text);      // an, ans
  Status SetBytes(int field, ByteView bytes);            // b

  // Getters: error when the field is absent or of another kind.
  Result<std::uint64_t> GetNumber(int field) const;  // n
  Result<std::string> GetDigits(int field) const;    // n, z
  Result<std::string> GetText(int field) const;      // an, ans
  Result<Bytes> GetBytes(int field) const;           // b

  // MTI (2 bytes BCD) ‖ primary bitmap (8) ‖ fields in ascending order.
  Bytes Encode() const;
  // Exactly one message, nothing after it. On error *failure (when given) says which response
  // code applies (12 for a well-formed MTI outside the catalogue, 30 for everything else) and
  // holds what was read before the fault.
  static Result<Message> Parse(ByteView bytes, ParseFailure* failure = nullptr);

  // One line for logs: "0200 {3=600001 4=000000001000 ...}". Never shows a PIN block, a whole
  // PAN or track, or key material: 2 (and 62, the ASN, in a message that carries 2) keep only
  // their first 6 and last 4 digits, 35/36, 52 and the sign-on key block (62 of a sign-on
  // answer) are replaced by their length, 55 shows only its first 4 bytes.
  std::string ToString() const;

  bool operator==(const Message&) const = default;

 private:
  struct Field {
    std::uint8_t number = 0;
    Bytes value;  // digits or text as ASCII, b fields as raw bytes
    bool operator==(const Field&) const = default;
  };
  const Field* Find(int number) const;
  Status Store(int number, Bytes value);
  void AppendEncoded(Bytes& out, bool for_mac) const;
  friend Bytes MacInput(const Message& message);
  friend Bytes EncodeFrame(const Frame& frame);

  Mti mti_ = 0;
  std::vector<Field> fields_;  // ascending by number
};

// Why Parse refused a message: for the log (reason) and for the answer (code, and what could be
// read before the fault, so that a refusal can swap the TPDU and echo fields 11, 41 and 42).
struct ParseFailure {
  ResponseCode code = ResponseCode::kFormatError;
  int field = 0;                 // the field at fault; 0 for the frame, header, MTI or bitmap
  std::string reason;            // the returned Error's text
  std::optional<Tpdu> tpdu;      // ParseFrame: when the TPDU was readable
  std::optional<Header> header;  // ParseFrame: when the header was valid
  bool mti_read = false;         // partial.mti() is the message's MTI
  Message partial;               // the MTI (when read) and the fields parsed before the fault
};

struct Frame {
  Tpdu tpdu;
  Header header;
  Message message;
  bool operator==(const Frame&) const = default;
};

// 2-byte big-endian length ‖ TPDU ‖ header ‖ message: the bytes to write to the connection.
Bytes EncodeFrame(const Frame& frame);
// One frame as the Deframer returns it (without the length prefix). Errors as Message::Parse
// (the header must be medcard's: application type 60, version 01, known status and handling
// flags, reserved bytes 0, handling 0 in a request).
Result<Frame> ParseFrame(ByteView frame, ParseFailure* failure = nullptr);

// Cuts a TCP byte stream into frames: feed bytes as they arrive, take whole frames out. A length
// of 0 or above max_frame_size is an error after which the stream is unusable (close the
// connection); every later Feed returns the same error.
class Deframer {
 public:
  explicit Deframer(std::size_t max_frame_size = kDefaultMaxFrameSize);
  Status Feed(ByteView bytes);
  // The next whole frame (without its length prefix), oldest first; nullopt when none is whole.
  std::optional<Bytes> Next();
  // Bytes received that are not yet part of a returned frame.
  std::size_t buffered() const { return buffer_.size() - start_; }

 private:
  std::size_t max_frame_size_;
  Bytes buffer_;
  std::size_t start_ = 0;
  std::optional<Error> error_;
};

// ---- MAC (docs/protocol.md "MAC") -----------------------------------------------------------
// Field 64 (8 bytes) = the leftmost 4 bytes of the ISO 9797-1 algorithm 3 MAC (16-byte key,
// zero IV, padding method 2: 80 00..) over MacInput, then 4 zero bytes.
inline constexpr std::size_t kMacSize = 4;

// The bytes the MAC covers: the encoded MTI ‖ bitmap (bit 64 set) ‖ fields 2..63 — the message
// as it is sent, without the header and without field 64's own 8 bytes.
Bytes MacInput(const Message& message);
// Sets field 64 from a 4-byte MAC (REQUIRES mac.size() == kMacSize: else an error).
Status SetMac(Message& message, ByteView mac);
// The 4-byte MAC field 64 carries. Error when field 64 is absent or its last 4 bytes are not 0.
Result<Bytes> MacOf(const Message& message);

// Conveniences for holders of a prepared key (the terminal, tests).
void Sign(Message& message, const crypto::MacKey& key);
// Error "MAC invalid" (constant-time compare) or the MacOf error.
Status VerifyMac(const Message& message, const crypto::MacKey& key);

}  // namespace medcard::iso8583
