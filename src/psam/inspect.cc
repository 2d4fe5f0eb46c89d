#include <nlohmann/json.hpp>

#include "common/bcd.h"
#include "psam/psam.h"

namespace medcard::psam {

std::optional<KeyUsage> KeyUsageFromByte(std::uint8_t b) {
  switch (b) {
    case static_cast<std::uint8_t>(KeyUsage::kPurchase):
    case static_cast<std::uint8_t>(KeyUsage::kSettlement):
    case static_cast<std::uint8_t>(KeyUsage::kMaintenance):
    case static_cast<std::uint8_t>(KeyUsage::kVisitRecord):
      return static_cast<KeyUsage>(b);
    default:
      return std::nullopt;
  }
}

std::string_view KeyUsageName(KeyUsage usage) {
  switch (usage) {
    case KeyUsage::kPurchase:
      return "purchase";
    case KeyUsage::kSettlement:
      return "settlement";
    case KeyUsage::kMaintenance:
      return "maintenance";
    case KeyUsage::kVisitRecord:
      return "visit_record";
  }
  return "unknown";
}

namespace {

nlohmann::json TotalsJson(const SamTotals& t) {
  return {{"count", t.count},
          {"amount_fen", t.amount},
          {"first_serial", t.first_serial},
          {"last_serial", t.last_serial}};
}

// A BCD date as YYYY-MM-DD, or its hex when it is not one (EF 17 before personalisation).
std::string DateText(const Bytes& bcd) {
  const auto date = DecodeBcdDate(View(bcd));
  return date ? date->ToString() : ToHex(View(bcd));
}

}  // namespace

nlohmann::json ToJson(const Inspection& in) {
  nlohmann::json keys = nlohmann::json::array();
  for (const KeyInfo& k : in.keys) {
    keys.push_back({{"usage", KeyUsageName(k.usage)},
                    {"index", k.index},
                    {"version", k.version},
                    {"alg", k.alg_id == kAlgTdes ? "3des" : "unknown"},
                    {"error_limit", k.error_limit},
                    {"failures", k.failures},
                    {"locked", k.locked}});
  }
  nlohmann::json pending = nlohmann::json::array();
  for (const PendingPurchase& p : in.pending_purchases) {
    pending.push_back({{"terminal_serial", p.terminal_serial}, {"amount_fen", p.amount}});
  }
  nlohmann::json signed_totals = nullptr;
  if (in.signed_challenge && in.signed_totals) {
    signed_totals = {{"host_challenge", ToHex(View(*in.signed_challenge))},
                     {"totals", TotalsJson(*in.signed_totals)}};
  }
  return {
      {"chip_serial", ToHex(View(in.chip_serial))},
      {"lifecycle", in.lifecycle == Lifecycle::kOperational ? "operational" : "personalisation"},
      {"transport_key_present", in.transport_key_present},
      {"transport_key_failures", in.transport_key_failures},
      {"psam_serial", ToHex(View(in.psam_serial))},
      {"psam_version", in.psam_version},
      {"key_type", in.key_type},
      {"issuer_data", ToHex(View(in.issuer_data))},
      {"terminal_number", ToHex(View(in.terminal_number))},
      {"purchase_key_index", in.purchase_key_index},
      {"valid_from", DateText(in.valid_from)},
      {"valid_to", DateText(in.valid_to)},
      {"keys", std::move(keys)},
      {"terminal_transaction_serial", in.terminal_transaction_serial},
      {"totals", TotalsJson(in.totals)},
      {"signed_totals", std::move(signed_totals)},
      {"pending_purchases", std::move(pending)},
      {"completed_serials", in.completed_serials},
  };
}

}  // namespace medcard::psam
