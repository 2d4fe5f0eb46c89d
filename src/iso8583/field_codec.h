// Private to iso8583: checking, encoding and decoding one field value by its definition.
#pragma once

#include <cstddef>
#include <string>

#include "common/bytes.h"
#include "common/result.h"
#include "iso8583/iso8583.h"

namespace medcard::iso8583::internal {

// "field 4 (amount, transaction)": how every error names a field.
std::string FieldLabel(const FieldDefinition& field);

// A value as Message keeps it (digits or text as ASCII, b as raw bytes) that fits `field`.
Status CheckValue(const FieldDefinition& field, ByteView value);

// REQUIRES: CheckValue(field, value).ok().
void EncodeField(const FieldDefinition& field, ByteView value, Bytes& out);

// Decodes the field starting at in[offset], advancing offset past it; the value as Message keeps
// it. Never reads outside `in`.
Result<Bytes> DecodeField(const FieldDefinition& field, ByteView in, std::size_t& offset);

// Packed BCD helpers shared with the MTI and the layouts: digits '0'..'9' two per byte.
// REQUIRES: digits.size() is even and all decimal.
void PackDigits(std::string_view digits, Bytes& out);
// Appends the digits of `bcd` to out; false on a nibble above 9.
bool UnpackDigits(ByteView bcd, std::string& out);

}  // namespace medcard::iso8583::internal
