// The whole scheme's day in one process (issue 8, docs/demo.md): the agency registers a
// generated city's units and people and runs the month; its signed allocation batch is imported
// by the bank host, which credits the medical accounts; the bank issues TEST cards and PSAMs
// (the published test key set), registers merchants and terminals and opens them at a branch;
// the host's terminal gateway listens on loopback and every POS signs on over real ISO 8583/TCP;
// cardholders load online and spend a day at hospitals and pharmacies, with the day's
// exceptions (a wrong PIN, an insufficient balance, a card reported lost at a branch and refused
// at the POS after the blacklist download, a card pulled mid-purchase and recovered); a patient
// is discharged from a grade-3 hospital, whose inpatient claim the agency adjudicates against
// what the card holds and whose personal-account share the card pays at the hospital's POS;
// at day end every terminal uploads and settles, the host checks its ledger, and the agency imports
// the day's consumption detail. Then a reconciliation proves every fen the agency allocated is on a
// card, in a medical account or with a merchant.
//
// City scale (ScenarioOptions::purchases > 0, docs/demo.md "City scale"): the same day as a load
// test of the real host over its real protocol — cards issued in memory and registered through
// one issuance log, the cardholders' visits spread over the terminals, driven by worker threads
// that each own a share of the terminals and the cards; the report then carries each phase's
// wall time and the latency percentiles.
//
//   demo::ScenarioOptions options;
//   options.data_dir = "medcard-demo";
//   auto report = demo::RunScenario(options);   // an error: a step could not run at all
//   if (report.ok() && report->clean()) ...     // else report->problems says what is wrong
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "demo/city.h"
#include "demo/latency.h"

namespace medcard::demo {

// How far a long step is (issuance, loads, purchases, day end, reading the cards).
struct StepProgress {
  std::string step;  // "issuing cards", ...
  std::int64_t done = 0, total = 0;
};

struct ScenarioOptions {
  std::string data_dir;  // created; the scenario's own subdirectories in it are replaced
  // Empty: SQLite databases in the data directory (bank/medcard.db, agency/agency.db). A URL
  // (postgresql://...): an EMPTY database; the bank's and the agency's tables live side by side.
  std::string bank_database_url;
  std::string agency_database_url;
  // Of the TEST key stores made in the data directory (they hold only published test keys and
  // the generated TEST terminal master keys).
  std::string passphrase = "medcard demo: test keys only";
  CityOptions city;
  // The first terminal's card and PSAM readers are pcscd's vpcd slots 0 and 1 (pcscd with
  // vsmartcard-vpcd running; nothing else may use the slots meanwhile); the others in-process.
  bool pcsc = false;
  // One line per step as it happens (the CLI prints them unless --quiet); may be empty.
  std::function<void(const std::string&)> progress;
  // A long step's progress: at its start (done 0), at most every 100 ms, and at its end
  // (done == total). Called from the scenario's worker threads, one call at a time. May be empty.
  std::function<void(const StepProgress&)> step_progress;

  // City scale: the day's purchase attempts at the POS, the three of the exceptions included
  // (the wrong PIN and the purchase over the balance are refused, the torn one is recovered), so
  // M - 2 purchases are made; the discharge's card payment of the inpatient claim's
  // personal-account share comes on top (M + 1 attempts, M - 1 made, when there is a share to
  // pay). At least 3, at most kMaxPurchasesPerCard per card. 0: the scripted day (every
  // cardholder visits two or three merchants, one thread).
  std::int64_t purchases = 0;
  // City scale: POS driver threads (at most one per terminal). Worker w drives the terminals
  // t % workers == w and the cardholders c % workers == w, who visit only its terminals, so no
  // terminal and no card is ever used by two threads at once.
  int workers = 2;
};

inline constexpr std::int64_t kMaxPurchasesPerCard = 20;
// The first cards go through the branch (application, issue, activation, audit); at city scale
// the rest come from the card bureau's mass issuance, one issuance log imported by the host.
inline constexpr std::size_t kBranchCards = 12;

// One phase of the day: its wall time and how many items it handled.
struct PhaseTiming {
  std::string name;  // "agency month", "bank import", "issuance", ...
  std::int64_t wall_us = 0;
  std::int64_t items = 0;
  std::string unit;  // what the items are: "people", "cards", "loads", ...
  // The host's request handler during the phase (the gateway's thread): wall and CPU time.
  std::int64_t host_wall_us = 0, host_cpu_us = 0;
  double per_second() const {
    return wall_us > 0 ? static_cast<double>(items) * 1e6 / static_cast<double>(wall_us) : 0.0;
  }
};

// What happened, step by step, in counts and fen.
struct ScenarioReport {
  std::string data_dir;
  std::string day;  // the POS's business day, YYYY-MM-DD (UTC+8)

  // Agency: registry and the month.
  std::string month;  // YYYY-MM
  std::int64_t units = 0, people = 0, retirees = 0;
  std::int64_t contributions_fen = 0;  // employer + employee
  std::int64_t allocated_fen = 0;      // the batch's total
  std::int64_t batch_lines = 0;
  // Bank: the batch imported.
  std::int64_t credited_lines = 0, credited_fen = 0, refused_lines = 0;
  // Bank: issuance. cards = branch_cards + bureau_cards.
  std::int64_t cards = 0, psams = 0, merchants = 0, terminals = 0;
  std::int64_t branch_cards = 0;  // applied for, issued and activated at branch B001
  std::int64_t bureau_cards = 0;  // city scale: issued in memory, registered by issuance log
  // The day at the POS.
  std::int64_t sign_ons = 0;
  std::int64_t pcsc_insertions = 0;  // cards put into the vpcd slot (ScenarioOptions::pcsc)
  std::int64_t loads = 0, loaded_fen = 0;
  std::int64_t ed_purchases = 0, ed_fen = 0, ep_purchases = 0, ep_fen = 0;
  // Purchase attempts at the POS on the day (the exceptions' included) and those the card or
  // the terminal refused (the wrong PIN, the purchase over the balance).
  std::int64_t purchase_attempts = 0, purchases_refused = 0;
  bool wrong_pin_refused = false;
  bool insufficient_balance_refused = false;
  std::string lost_card;           // ASN
  bool lost_card_refused = false;  // refused at the POS as blacklisted, after the download
  std::string torn_card;           // ASN
  std::int64_t torn_amount_fen = 0;
  int torn_recoveries = 0;         // recoveries that completed the torn purchase (1 when right)
  std::int64_t torn_uploaded = 0;  // times the host accepted the torn purchase (1 when right)
  // Day end.
  std::int64_t terminals_settled = 0, settlement_exceptions = 0;
  std::int64_t purchases_uploaded = 0, uploaded_fen = 0;
  std::int64_t suspense_items = 0;
  std::vector<std::string> host_check_problems;
  std::string merchant_settlement_csv, terminal_settlement_csv;  // paths written
  // Agency: the consumption detail.
  std::int64_t consumption_lines = 0, consumption_fen = 0;
  // Agency: an inpatient claim from a grade-3 hospital, adjudicated, approved and paid.
  std::string claim_person;
  std::string claim_state;  // "paid" when all went through
  std::int64_t claim_billed_fen = 0, claim_pooled_fund_fen = 0, claim_personal_account_fen = 0,
               claim_self_pay_fen = 0;
  // The day settles the claim at discharge, at the hospital's POS (at city scale one of the
  // patient's worker's terminals): the card's passbook (ED) balance the POS read (PIN verified)
  // is the personal account the adjudication may use, and the personal-account share is paid
  // with the card there (ED, PIN, offline), uploaded and cleared at day end. Empty claim_card:
  // not paid by card (nothing to pay).
  std::string claim_hospital;               // the merchant's name
  std::string claim_card, claim_terminal;   // ASN; the hospital's terminal id
  std::int64_t claim_card_balance_fen = 0;  // ED before paying, as the POS read it
  std::int64_t claim_card_paid_fen = 0;     // the card purchase's amount
  std::int64_t claim_card_serial = 0;       // the card's ED offline serial of that purchase
  // The agency records the purchase on the claim (ClaimStore::RecordCardPayment); its
  // reference as the claim holds it, <ASN>/ED/<serial>, and the agency's consumption detail's
  // lines with that reference at the hospital: 1 when right, and their fen.
  std::string claim_card_reference;
  std::int64_t claim_card_cleared = 0, claim_card_cleared_fen = 0;

  // Reconciliation, in fen: allocated = medical accounts + card floats + merchants + suspense,
  // card floats = what the cards themselves hold, merchants = what the PSAMs signed.
  std::int64_t medical_fen = 0, card_float_fen = 0, on_cards_fen = 0, merchant_fen = 0,
               suspense_fen = 0, psam_signed_fen = 0;
  std::vector<std::string> problems;  // empty: the day reconciles to the fen
  bool clean() const { return problems.empty(); }

  // Measurements (wall clock; noisy on a shared machine).
  bool city_scale = false;          // ScenarioOptions::purchases > 0
  std::int64_t workers = 1;         // POS driver threads used
  std::vector<PhaseTiming> phases;  // in the day's order
  std::int64_t total_wall_us = 0;
  // Around pos::Terminal::LoadOnline (the host over ISO 8583/TCP: MAC1 → MAC2, TAC
  // confirmation), pos::Terminal::Purchase (offline, card + PSAM + journal; the cardholders'
  // purchases, not the exceptions') and pos::Terminal::DayEnd (upload, settlement, blacklist
  // download) of one terminal.
  LatencySummary load_latency, purchase_latency, day_end_latency;
  // Purchases uploaded and cleared at the host per second of the day end's wall time.
  double cleared_per_second = 0;
};

Result<ScenarioReport> RunScenario(const ScenarioOptions& options);

}  // namespace medcard::demo
