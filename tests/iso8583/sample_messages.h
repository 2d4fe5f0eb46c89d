// Realistic medcard messages for the tests (and for writing the fuzz corpus): one valid request
// and one approved response per catalogue transaction, signed with a fixed test MAC key.
#pragma once

#include <string>

#include "common/bytes.h"
#include "iso8583/iso8583.h"
#include "iso8583/messages.h"

namespace medcard::iso8583::testing {

inline constexpr const char* kTerminalId = "POS00001";
inline constexpr const char* kMerchantId = "898440154110001";
inline constexpr const char* kMacKeyHex = "0123456789ABCDEFFEDCBA9876543210";
inline constexpr const char* kAsnHex = "00004100000089999985";  // PAN 4100000089999985
inline constexpr const char* kTerminalNumberHex = "000001000050";
inline constexpr std::uint32_t kBatch = 12;
inline constexpr std::uint16_t kKeyVersion = 7;

// Aborts (with the message on stderr) when a builder step fails: samples are always valid.
void MustOk(const Status& status);
template <typename T>
T MustOk(Result<T> result) {
  MustOk(result.ok() ? Status::Ok() : Status(result.error()));
  return std::move(result).value();
}

// The PSAM-signed totals, the load data, ... used inside the samples.
LoadRequest SampleLoadRequest();
PurchaseBatch SamplePurchaseBatch(std::size_t records);
SamTotals SampleSamTotals();
ParameterPart SampleParameters();
BlacklistPart SampleBlacklist();

// A valid, signed request of `transaction` with trace number `trace`. The balance inquiry
// carries a PIN block (fields 2, 26, 52); the sign-on asks for 003 keys.
Message SampleRequest(Transaction transaction, std::uint32_t trace = 123);
// The approved (39 = 00), signed answer to SampleRequest(transaction, trace).
Message SampleResponse(Transaction transaction, std::uint32_t trace = 123);

// A frame around a message: TPDU 60 0003 0000 (host NII 3) for requests, swapped for responses.
Frame SampleFrame(const Message& message);

}  // namespace medcard::iso8583::testing
