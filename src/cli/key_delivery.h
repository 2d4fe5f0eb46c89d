// What the two key-delivery files have in common (docs/pos.md "TMK delivery", docs/teller.md
// "The PIN pad's key"): a key travels encrypted under tkek in a small JSON file of hex fields,
// written 0600 and fsynced, and lands as the next version of its name in the receiving store.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::cli {

// Now as ISO 8601 UTC, e.g. "2026-11-26T06:00:00Z".
std::string UtcNowIso8601();

// Field `name` of a delivery file: exactly `size` bytes as hex. Errors start with `file_kind`
// ("TMK delivery", "PEK delivery") and name the field.
Result<Bytes> DeliveryHexField(const nlohmann::json& object, const char* name, std::size_t size,
                               std::string_view file_kind);

// The latest version of `name` in `store` and its KCV; version 0 when there is none.
Result<std::pair<std::uint8_t, std::string>> LatestKeyVersion(keys::KeyStore& store,
                                                              std::string_view name);

// Mode 0600, fsynced: nothing in a delivery file is secret, but it names a device's key.
Status WriteDeliveryFile(const std::string& path, const std::string& text);

class HostSession;
// Writes the delivery file inside its audit entry's transaction (RunAudited): no delivery leaves
// the host without its entry, and a failed commit removes the file again. The entry's details
// get "out", the file's absolute path. CommandFailed on any failure.
void WriteAuditedDelivery(HostSession& session, const std::string& path, const std::string& text,
                          const std::string& action, const std::string& target,
                          nlohmann::json details);

}  // namespace medcard::cli
