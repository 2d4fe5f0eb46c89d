#include "cli/render.h"

#include <fmt/format.h>

#include <limits>

#include "common/bcd.h"
#include "common/money.h"
#include "issuance/holder.h"

namespace medcard::cli {

namespace {
std::string DateText(const Bytes& bcd) {
  auto d = DecodeBcdDate(bcd);
  return d ? d->ToString() : ToHex(bcd);
}
std::string TimeText(const Bytes& bcd) {
  auto t = DecodeBcdTime(bcd);
  return t ? t->ToString() : ToHex(bcd);
}
const char* TxnTypeName(std::uint8_t type) {
  switch (type) {
    case 0x01:
      return "ED load";
    case 0x02:
      return "EP load";
    case 0x03:
      return "unload";
    case 0x04:
      return "cash withdraw";
    case 0x05:
      return "ED purchase";
    case 0x06:
      return "EP purchase";
    case 0x07:
      return "overdraw update";
    case 0x09:
      return "composite purchase";
    default:
      return "unknown";
  }
}
}  // namespace

std::string RenderCard(const card::CardSummary& s) {
  std::string out;
  out += fmt::format("chip serial   {}\nlifecycle     {}\n", ToHex(s.chip_serial),
                     card::LifecycleName(s.lifecycle));
  // The holder data the card shows to anyone (SFI 16, SSSE EF06), names decoded from GBK.
  if (const auto holder = issuance::ReadCardholder(s); !holder.empty()) {
    out += fmt::format("cardholder    {}\nSSN           {}\n", holder.name,
                       holder.social_security_number);
  }
  for (const auto& p : s.purses) {
    out += fmt::format("\napplication   {} ({}){}\n", ToHex(p.aid), p.path,
                       p.block == card::AppBlock::kNone
                           ? ""
                           : fmt::format(" — {} blocked", card::AppBlockName(p.block)));
    out += fmt::format("ASN           {}\n", ToHex(p.asn));
    if (p.pin)
      out +=
          fmt::format("PIN           {} of {} tries left\n", p.pin->tries_left, p.pin->try_limit);
    out += fmt::format(
        "ED (passbook) balance {:>12}  online serial {:5}  offline serial {:5}  overdraw limit "
        "{}\n",
        FormatFen(p.ed.balance), p.ed.online_serial, p.ed.offline_serial,
        FormatFen(p.ed.overdraw_limit));
    out += fmt::format("EP (purse)    balance {:>12}  online serial {:5}  offline serial {:5}\n",
                       FormatFen(p.ep.balance), p.ep.online_serial, p.ep.offline_serial);
    out += fmt::format("transaction log ({} records, newest first)\n", p.log.size());
    for (const auto& e : p.log) {
      out +=
          fmt::format("  {:5}  {:<16} {:>12}  terminal {}  {} {}\n", e.serial, TxnTypeName(e.type),
                      FormatFen(e.amount), ToHex(e.terminal), DateText(e.date), TimeText(e.time));
    }
  }
  out += "\nfiles\n";
  for (const auto& f : s.files) {
    std::string detail;
    if (f.type == card::FileType::kDf) {
      detail = f.df_name.empty() ? "" : "name " + ToHex(f.df_name);
      if (!f.keys.empty()) detail += fmt::format("  {} keys", f.keys.size());
    } else {
      detail = fmt::format("read {} / write {}", card::AccessConditionName(f.read),
                           card::AccessConditionName(f.write));
      if (f.sfi) detail = fmt::format("SFI {:02X}  ", f.sfi) + detail;
    }
    out += fmt::format("  {:<22} {:<12} {}\n", f.path, card::FileTypeName(f.type), detail);
    for (const auto& k : f.keys) {
      out += fmt::format(
          "      key {:<16} index {:02X} version {:02X}{}\n", card::KeyUsageName(k.usage), k.index,
          k.version,
          k.locked ? "  LOCKED"
                   : (k.error_count ? fmt::format("  {} MAC failures", k.error_count) : ""));
    }
  }
  return out;
}

std::string RenderPsam(const psam::Inspection& p) {
  std::string out;
  out +=
      fmt::format("PSAM serial   {}\nterminal no   {}\nlifecycle     {}\n", ToHex(p.psam_serial),
                  ToHex(p.terminal_number),
                  p.lifecycle == psam::Lifecycle::kOperational ? "operational" : "personalisation");
  out += fmt::format("valid         {} to {}\n", DateText(p.valid_from), DateText(p.valid_to));
  out += fmt::format("terminal transaction serial {}\n", p.terminal_transaction_serial);
  out += fmt::format("totals since last clear: {} purchases, {} (serials {}..{})\n", p.totals.count,
                     FormatFen(static_cast<std::int64_t>(p.totals.amount)), p.totals.first_serial,
                     p.totals.last_serial);
  if (!p.pending_purchases.empty()) {
    out += fmt::format("uncompleted purchases: {}\n", p.pending_purchases.size());
  }
  for (const auto& k : p.keys) {
    out += fmt::format("  key {:<12} version {:02X}{}\n", psam::KeyUsageName(k.usage), k.version,
                       k.locked ? "  LOCKED" : "");
  }
  return out;
}

}  // namespace medcard::cli
