// The bank's daily consumption detail (docs/insurance.md "Consumption detail"): who spent what,
// where, on one day — every purchase the bank's host cleared (accepted) that day, with the card's
// person id, the merchant, the amount and the time — sent to the agency for supervision.
//
// The file is JSON lines signed like an allocation batch (allocation_batch.h: the same BatchKey,
// HMAC-SHA256 over every byte before the trailer line):
//   {"record":"consumption_header","format":1,"day":"2026-11-02","count":2,"total_fen":3550,
//    "key_check":"1A2B3C"}
//   {"record":"purchase","line":1,"reference":"<asn>/<offline serial>","person_id":"...",
//    "merchant_id":"M001","amount_fen":2500,"time":"2026-11-02T09:15:00"}
//   {"record":"consumption_trailer","count":2,"total_fen":3550,"hmac_sha256":"..."}
// The parser authenticates before it trusts anything and checks every count, total, line
// number, day and reference: a file that fails any check is refused whole.
//
//   bank:    ExportConsumption(host_connection, day)           → the detail (host tables)
//            WriteConsumptionDetail(detail, key)                → the file
//   agency:  ImportConsumption(connection, file, key)          → stored once per day
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/result.h"
#include "insurance/allocation_batch.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::insurance {

struct ConsumptionLine {
  std::int64_t line = 0;  // 1, 2, ...
  std::string reference;  // the bank's unique purchase reference: "<card ASN>/<offline serial>"
  std::string person_id;  // the card's medical-account key (the agency's ssn)
  std::string merchant_id;
  Fen amount_fen = 0;  // > 0
  std::string time;    // "YYYY-MM-DDThh:mm:ss", on the file's day
  bool operator==(const ConsumptionLine&) const = default;
};

struct ConsumptionDetail {
  Date day;
  std::vector<ConsumptionLine> lines;
  Fen total_fen() const;
};

std::string WriteConsumptionDetail(const ConsumptionDetail& detail, const BatchKey& key);
Result<ConsumptionDetail> ParseConsumptionDetail(std::string_view text, const BatchKey& key);

// The bank's side: the purchases the host cleared (host_purchases with outcome 'accepted') whose
// card time falls on `day`, with the card's person (host_cards) and the terminal's merchant
// (host_terminals), by time then reference. REQUIRES: a connection to the bank host's database.
Result<ConsumptionDetail> ExportConsumption(store::Connection& host_connection, const Date& day);

struct ConsumptionImport {
  Date day;
  std::int64_t count = 0;
  Fen total_fen = 0;
  bool already_imported = false;  // the same day's detail was imported before: nothing changed
};
// Stores a day's detail in one transaction. The same file again: already_imported. Another file
// for a day already imported: kConflict (a day is imported once; its figures never change).
// kInvalid when the file does not authenticate or check.
ServiceResult<ConsumptionImport> ImportConsumption(store::Connection& connection,
                                                   std::string_view text, const BatchKey& key,
                                                   std::function<std::int64_t()> clock_us = {});

// Supervision: spending per person or per merchant (facility) over [from, to], largest first.
struct ConsumptionTotal {
  std::string key;  // person id or merchant id
  std::int64_t count = 0;
  Fen total_fen = 0;
  bool operator==(const ConsumptionTotal&) const = default;
};
enum class ConsumptionBy { kPerson, kMerchant };
ServiceResult<std::vector<ConsumptionTotal>> ConsumptionTotals(store::Connection& connection,
                                                               ConsumptionBy by, const Date& from,
                                                               const Date& to);

}  // namespace medcard::insurance
