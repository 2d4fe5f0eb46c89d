// The agency's claims on its database (docs/insurance.md "Stored claims"): a facility submits a
// claim, the agency adjudicates it against the policy in force on the admission date and the
// person's registry state then, an officer approves or rejects it, and paying it posts the
// agency's books exactly once.
//
//   submitted → adjudicated → approved → paid
//        └──────────┴────────────┴──→ rejected (with reasons)
//
// Each step is an explicit call and one database transaction; a refused call changes nothing.
// What adjudication needs about the person is taken from the database, never from the claim:
//   - eligibility, category and age: Registry::PersonOn(person, admission) — a person not
//     enrolled, suspended or closed on that date is rejected;
//   - the year so far: the person's other claims admitted the same year that were adjudicated
//     (adjudicated, approved or paid): inpatient admissions, pooled fund paid;
//   - the personal-account balance: the person's allocations (si_bill_lines) minus what the
//     personal account pays of the person's adjudicated, approved and paid claims; at most what
//     the patient's card holds, when the facility read it at discharge (Adjudicate's
//     card_balance_fen).
//
//   insurance::ClaimStore claims(connection, policies);
//   auto submitted = claims.Submit("H0001", claim);          // claim.claim_id: the facility's no.
//   claims.Adjudicate(submitted->id);
//   claims.Approve(submitted->id, "officer-li");
//   claims.Pay(submitted->id);                               // again: nothing posted twice
//   claims.RecordCardPayment(submitted->id, {asn, serial, "POS00001", share});  // paid by card
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "insurance/claims.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::insurance {

// The card purchase that paid a claim's personal-account share at the facility's POS: the
// passbook (ED), with the PIN, offline; the bank clears it at day end and its consumption detail
// names it Reference().
struct CardPayment {
  std::string asn;                   // the card's application serial number, 20 digits
  std::uint16_t offline_serial = 0;  // the card's ED offline serial of the purchase
  std::string terminal_id;           // the facility's POS (8 letters or digits)
  Fen amount_fen = 0;
  std::string Reference() const;  // "<asn>/ED/<offline_serial>", as in the consumption detail
  bool operator==(const CardPayment&) const = default;
};

struct StoredClaim {
  std::int64_t id = 0;   // the agency's claim id
  std::string facility;  // the submitting facility's code
  Claim claim;           // as submitted (claim.claim_id is the facility's claim number)
  ClaimState state = ClaimState::kSubmitted;
  std::vector<std::string> reasons;          // rejected: why
  std::optional<Adjudication> adjudication;  // once adjudicated (also when rejected by it)
  std::string decided_by;                    // the officer who approved or rejected
  std::int64_t submitted_at_us = 0;
  std::optional<std::int64_t> paid_at_us;
  std::optional<CardPayment> card_payment;  // RecordCardPayment
};

std::optional<ClaimState> ParseClaimState(std::string_view text);

// A facility code: 1..20 letters, digits or '-'.
bool IsFacilityCode(std::string_view code);

class ClaimStore {
 public:
  struct Options {
    std::function<std::int64_t()> clock_us;  // default: the system clock
  };
  // REQUIRES: connection migrated with insurance::Migrations(); policies outlive the store.
  ClaimStore(store::Connection& connection, const PolicyBook& policies, Options options = {});

  // Stores the claim as submitted. kInvalid when the claim has problems (ClaimProblems) or the
  // facility code is bad; kConflict when the facility already submitted this claim number.
  ServiceResult<StoredClaim> Submit(std::string_view facility, const Claim& claim);

  // submitted → adjudicated (or rejected, when adjudication rejects it). kNotFound for an unknown
  // claim or person; kUnprocessable when the claim is past this step or no policy is in force in
  // the person's area on the admission date (the claim stays submitted).
  // card_balance_fen: settled at discharge, the facility's POS has read the patient's card; its
  // passbook (ED) balance is what the personal-account share can be paid from there. The books'
  // balance counts allocations, not what was spent by card or is still in the medical account at
  // the bank, so the personal account then pays at most the lesser of the two. kInvalid when
  // negative.
  ServiceResult<StoredClaim> Adjudicate(std::int64_t id,
                                        std::optional<Fen> card_balance_fen = std::nullopt);

  // adjudicated → approved, by an officer.
  ServiceResult<StoredClaim> Approve(std::int64_t id, std::string_view officer);
  // submitted or adjudicated → rejected, by an officer, with the reason.
  ServiceResult<StoredClaim> Reject(std::int64_t id, std::string_view officer,
                                    std::string_view reason);

  // approved → paid: books pooled_fund → facility_payable/<facility> for the pooled-fund part,
  // keyed by the claim id. The personal-account part is not booked here: that money is in the
  // person's medical account at the bank, and the cardholder pays it there with the card.
  // A paid claim paid again: the claim as it is, nothing posted.
  ServiceResult<StoredClaim> Pay(std::int64_t id);

  // Records which card purchase paid the personal-account share of an adjudicated, approved or
  // paid claim, so the agency can find it in the bank's consumption detail. kInvalid: the ASN is
  // not 20 digits, the terminal id not 8 letters or digits, or the amount is not the claim's
  // personal-account share (or that share is 0); kUnprocessable: the claim is submitted or
  // rejected; kConflict: another payment is recorded for the claim, or this purchase paid
  // another claim. The same payment again: the claim as it is.
  ServiceResult<StoredClaim> RecordCardPayment(std::int64_t id, const CardPayment& payment);

  ServiceResult<StoredClaim> Find(std::int64_t id);
  // Claims by id; only those in `state` when given, only the person's when person is not empty.
  ServiceResult<std::vector<StoredClaim>> List(std::optional<ClaimState> state = std::nullopt,
                                               std::string_view person = {});

  // The person's personal-account balance in the agency's books (see the top of this file).
  ServiceResult<Fen> PersonalAccountBalance(std::string_view person);

 private:
  std::int64_t Now() const;

  store::Connection& connection_;
  const PolicyBook& policies_;
  Options options_;
};

}  // namespace medcard::insurance
