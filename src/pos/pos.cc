#include "pos/pos.h"

#include <algorithm>
#include <cstdio>
#include <span>
#include <sstream>
#include <utility>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"
#include "iso7816/tlv.h"

namespace medcard::pos {

using iso7816::CommandApdu;
using iso7816::ResponseApdu;
using iso7816::StatusWord;
namespace sw = iso7816::sw;

namespace {

constexpr std::uint8_t kKeyIndex = 0x01;  // medcard profile: purchase key index 01
const Bytes kPseName = {'1', 'P', 'A', 'Y', '.', 'S', 'Y', 'S', '.', 'D', 'D', 'F', '0', '1'};
const Bytes kMedicalAid = {0xD1, 0x56, 0x00, 0x00, 0x05, 0x03};
const Bytes kPsamPurchaseAid = {0xD1, 0x56, 0x00, 0x00, 0x05, 0x50, 0x53, 0x41, 0x4D};
constexpr std::size_t kUploadChunk = 16;  // protocol.md 7.9: purchases per 0320
constexpr std::size_t kCardLogSize = 10;  // SFI 18 records (card-commands.md)

std::uint8_t PurchaseType(terminal::Wallet w) { return w == terminal::Wallet::kEd ? 0x05 : 0x06; }

Bytes DateTimeBcd(const Date& d, const TimeOfDay& t) {
  return Concat({EncodeBcdDate(d), EncodeBcdTime(t)});
}

Failure Fail(ErrorKind kind, std::string message) { return MakeFailure(kind, std::move(message)); }

// A card or PSAM answer that is not 9000: the kind the cashier must see.
ErrorKind KindOfCardStatus(StatusWord status) {
  if (status == sw::kFileNotFound) return ErrorKind::kNotMedcardCard;
  if (status == sw::kFunctionNotSupported || status == sw::kAppPermanentlyBlocked) {
    return ErrorKind::kApplicationBlocked;
  }
  if (status == sw::kInsufficientFunds) return ErrorKind::kInsufficientBalance;
  if ((status.value & 0xFFF0) == 0x63C0) {
    return (status.value & 0x0F) == 0 ? ErrorKind::kPinBlocked : ErrorKind::kWrongPin;
  }
  if (status == sw::kBlocked) return ErrorKind::kPinBlocked;
  return ErrorKind::kDeclinedByCard;
}

// Sends one command; a transport failure is kind `lost` (kNoCard before anything moved,
// kReaderError or kTornPurchase after), a status other than 9000 the card's refusal.
PosResult<Bytes> Exchange(reader::Reader& r, const char* what, const CommandApdu& command,
                          ErrorKind lost, int expected = -1) {
  auto response = reader::Send(r, command);
  if (!response.ok()) return Fail(lost, std::string(what) + ": " + response.error().message);
  if (!response->ok()) {
    return Fail(KindOfCardStatus(response->sw), terminal::CardError(what, response->sw).message);
  }
  if (expected >= 0 && response->data.size() != static_cast<std::size_t>(expected)) {
    return Fail(lost, std::string(what) + ": answer of " + std::to_string(response->data.size()) +
                          " bytes, expected " + std::to_string(expected));
  }
  return std::move(response->data);
}

// The PSAM: every failure is the PSAM's (missing, not answering, refusing).
PosResult<Bytes> PsamExchange(reader::Reader& psam, const char* what, const CommandApdu& command,
                              int expected = -1) {
  auto response = reader::Send(psam, command);
  if (!response.ok()) {
    return Fail(ErrorKind::kWrongPsam,
                std::string("PSAM: ") + what + ": " + response.error().message);
  }
  if (!response->ok()) {
    return Fail(ErrorKind::kWrongPsam,
                std::string("PSAM: ") + terminal::CardError(what, response->sw).message);
  }
  if (expected >= 0 && response->data.size() != static_cast<std::size_t>(expected)) {
    return Fail(ErrorKind::kWrongPsam, std::string("PSAM: ") + what + ": answer of wrong length");
  }
  return std::move(response->data);
}

// VERIFY with the status word kept: the tries left and a blocked PIN are their own kinds.
PosResult<bool> VerifyPin(reader::Reader& card, const std::string& pin) {
  auto packed = PackDigitsFPadded(pin);
  if (!packed || pin.size() < 4 || pin.size() > 12) {
    return Fail(ErrorKind::kWrongPin, "PIN must be 4 to 12 digits");
  }
  auto verified = reader::Send(card, CommandApdu::Case3(0x00, 0x20, 0x00, 0x00, *packed));
  SecureWipe(*packed);
  if (!verified.ok()) return Fail(ErrorKind::kNoCard, "VERIFY: " + verified.error().message);
  if (!verified->ok()) {
    return Fail(KindOfCardStatus(verified->sw),
                terminal::CardError("VERIFY", verified->sw).message);
  }
  return true;
}

Failure JournalFailure(const Error& error) {
  return Fail(ErrorKind::kJournalError, "journal: " + error.message);
}

std::string Fen(std::uint64_t fen) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%llu.%02llu", static_cast<unsigned long long>(fen / 100),
                static_cast<unsigned long long>(fen % 100));
  return buffer;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string HostRefusal(const char* what, const terminal::Reply& reply) {
  return std::string(what) + ": host answered " + iso8583::ResponseCodeText(reply.code) + " (" +
         std::string(iso8583::ResponseCodeName(reply.code)) + ")";
}

}  // namespace

// ---- Errors -------------------------------------------------------------------------------------

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kBadAmount:
      return "bad_amount";
    case ErrorKind::kNoCard:
      return "no_card";
    case ErrorKind::kNotMedcardCard:
      return "not_medcard_card";
    case ErrorKind::kExpired:
      return "expired";
    case ErrorKind::kApplicationBlocked:
      return "application_blocked";
    case ErrorKind::kBlacklisted:
      return "blacklisted";
    case ErrorKind::kPinRequired:
      return "pin_required";
    case ErrorKind::kWrongPin:
      return "wrong_pin";
    case ErrorKind::kPinBlocked:
      return "pin_blocked";
    case ErrorKind::kInsufficientBalance:
      return "insufficient_balance";
    case ErrorKind::kDeclinedByCard:
      return "declined_by_card";
    case ErrorKind::kWrongPsam:
      return "wrong_psam";
    case ErrorKind::kReaderError:
      return "reader_error";
    case ErrorKind::kTornPurchase:
      return "torn_purchase";
    case ErrorKind::kHostUnreachable:
      return "host_unreachable";
    case ErrorKind::kHostDeclined:
      return "host_declined";
    case ErrorKind::kConfigError:
      return "config_error";
    case ErrorKind::kJournalError:
      return "journal_error";
  }
  return "unknown";
}

int ExitCode(ErrorKind kind) {
  // 1 is left to the CLI (usage); each kind has its own code from 2.
  return 2 + static_cast<int>(kind);
}

Failure MakeFailure(ErrorKind kind, std::string message) {
  Failure f;
  f.kind = kind;
  f.message = std::move(message);
  return f;
}

Clock SystemClock() {
  return [] { return DateTime{Today(), Now()}; };
}

std::string MaskCardNumber(ByteView asn) {
  std::string digits = ToHex(asn);
  if (digits.size() <= 10) return digits;
  for (std::size_t i = 6; i + 4 < digits.size(); ++i) digits[i] = '*';
  return digits;
}

// ---- Receipt ------------------------------------------------------------------------------------

std::string Receipt::Text() const {
  std::ostringstream out;
  out << merchant_name << "\n"
      << "MERCHANT " << merchant_id << "\n"
      << "TERMINAL " << terminal_id << "\n"
      << "CARD     " << masked_card_number << "\n"
      << "PURCHASE " << terminal::WalletName(wallet) << (recovered ? " (RECOVERED)" : "") << "\n"
      << "AMOUNT   CNY " << Fen(amount) << "\n"
      << "BALANCE  CNY " << Fen(balance_after) << "\n"
      << "CARD SERIAL " << card_offline_serial << "\n"
      << "PSAM SERIAL " << terminal_serial << "\n"
      << "TERM NO  " << ToHex(terminal_number) << "\n"
      << "TAC      " << ToHex(tac) << "\n"
      << "DATE     " << date.ToString() << " " << time.ToString() << "\n"
      << "REF      " << journal_id << "\n";
  if (visit_recorded) out << "VISIT RECORDED\n";
  if (visit_error) out << "VISIT NOT RECORDED\n";
  return out.str();
}

std::string Receipt::ToJson() const {
  std::ostringstream out;
  out << "{\"merchant_name\":" << JsonString(merchant_name)
      << ",\"merchant_id\":" << JsonString(merchant_id)
      << ",\"terminal_id\":" << JsonString(terminal_id)
      << ",\"card_number\":" << JsonString(masked_card_number)
      << ",\"wallet\":" << JsonString(terminal::WalletName(wallet)) << ",\"amount\":" << amount
      << ",\"balance_after\":" << balance_after
      << ",\"card_offline_serial\":" << card_offline_serial
      << ",\"terminal_serial\":" << terminal_serial
      << ",\"terminal_number\":" << JsonString(ToHex(terminal_number))
      << ",\"tac\":" << JsonString(ToHex(tac)) << ",\"date\":" << JsonString(date.ToString())
      << ",\"time\":" << JsonString(time.ToString()) << ",\"journal_id\":" << journal_id
      << ",\"recovered\":" << (recovered ? "true" : "false")
      << ",\"visit_recorded\":" << (visit_recorded ? "true" : "false");
  if (visit_error) out << ",\"visit_error\":" << JsonString(*visit_error);
  out << "}";
  return out.str();
}

// ---- Terminal -----------------------------------------------------------------------------------

struct Terminal::Selected {
  terminal::ApplicationData app;
};

Terminal::Terminal(TerminalIdentity identity, reader::Reader& card, reader::Reader& psam,
                   Journal& journal, terminal::HostLink* link, Clock clock)
    : identity_(std::move(identity)),
      card_(card),
      psam_(psam),
      journal_(journal),
      link_(link),
      clock_(std::move(clock)) {}

std::string Terminal::MerchantName() const {
  auto stored = journal_.Parameters();
  if (stored.ok() && stored->has_value() && (*stored)->parameters.merchant_name) {
    return *(*stored)->parameters.merchant_name;
  }
  return identity_.merchant_name;
}

// The PSAM in the slot must be this terminal's (EF 16 = the configured terminal number); its
// purchase DF is left selected.
PosResult<bool> Terminal::CheckPsam() {
  // A no-op on a live connection; a PSAM reinserted since needs a new one.
  if (auto connected = psam_.Connect(); !connected.ok()) {
    return Fail(ErrorKind::kWrongPsam, "PSAM missing: " + connected.error().message);
  }
  auto number = PsamExchange(psam_, "READ BINARY terminal number",
                             CommandApdu::Case2(0x00, 0xB0, 0x96, 0x00, 6), 6);
  if (!number.ok()) return number.error();
  if (*number != identity_.terminal_number) {
    return Fail(ErrorKind::kWrongPsam, "PSAM of terminal " + ToHex(*number) +
                                           ", not this terminal's " +
                                           ToHex(identity_.terminal_number));
  }
  auto selected = PsamExchange(psam_, "SELECT purchase DF",
                               CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kPsamPurchaseAid, 256));
  if (!selected.ok()) return selected.error();
  return true;
}

// SELECT PSE, SELECT the medical ADF; SFI 15 comes in the FCI's 9F0C (card-commands.md, SELECT),
// so READ BINARY is needed only for a card whose FCI lacks it.
PosResult<Terminal::Selected> Terminal::SelectCard() {
  auto present = card_.CardPresent();
  if (!present.ok()) {
    return Fail(ErrorKind::kReaderError, "card reader: " + present.error().message);
  }
  if (!*present) return Fail(ErrorKind::kNoCard, "no card in the reader");
  // Connect is a no-op on a live connection; a card inserted since needs a new one (and a
  // stale PC/SC handle fails the first command: connect afresh once).
  auto connected = card_.Connect();
  if (!connected.ok()) return Fail(ErrorKind::kNoCard, "card: " + connected.error().message);
  auto pse = reader::Send(card_, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kPseName, 256));
  if (!pse.ok()) {
    (void)card_.Disconnect();
    if (auto again = card_.Connect(); !again.ok()) {
      return Fail(ErrorKind::kNoCard, "card: " + again.error().message);
    }
    pse = reader::Send(card_, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kPseName, 256));
  }
  if (!pse.ok()) return Fail(ErrorKind::kNoCard, "SELECT PSE: " + pse.error().message);
  if (!pse->ok()) {
    return Fail(ErrorKind::kNotMedcardCard,
                "not a medcard card: " + terminal::CardError("SELECT PSE", pse->sw).message);
  }
  auto adf = reader::Send(card_, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kMedicalAid, 256));
  if (!adf.ok()) return Fail(ErrorKind::kNoCard, "SELECT: " + adf.error().message);
  if (!adf->ok()) {
    return Fail(KindOfCardStatus(adf->sw),
                terminal::CardError("SELECT medical application", adf->sw).message);
  }
  Bytes sfi15;
  if (auto fci = iso7816::ParseBerTlv(adf->data); fci.ok()) {
    if (const iso7816::Tlv* data = iso7816::FindTag(*fci, 0x9F0C);
        data && data->value.size() == 30) {
      sfi15 = data->value;
    }
  }
  if (sfi15.empty()) {
    auto read = Exchange(card_, "READ BINARY SFI 15",
                         CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 30), ErrorKind::kNoCard, 30);
    if (!read.ok()) return read.error();
    sfi15 = std::move(read).value();
  }
  auto app = terminal::ApplicationData::Parse(sfi15);
  if (!app.ok()) return Fail(ErrorKind::kNotMedcardCard, app.error().message);
  return Selected{std::move(app).value()};
}

// Long-form CREDIT_SAM_FOR_PURCHASE (psam-commands.md, torn-purchase completion): 9000 and 6985
// (already completed, never counted twice) both mean the PSAM holds the purchase in its totals.
PosResult<int> Terminal::CompletePsamSide() {
  auto completed = journal_.Purchases(PurchaseState::kCompleted);
  if (!completed.ok()) return JournalFailure(completed.error());
  int sent = 0;
  bool psam_checked = false;
  for (const PurchaseRecord& record : *completed) {
    if (record.psam_credited) continue;
    if (!psam_checked) {
      auto psam = CheckPsam();
      if (!psam.ok()) return psam.error();
      psam_checked = true;
    }
    Bytes data;
    AppendU32(data, record.terminal_serial);
    Append(data, record.mac2);
    auto r = reader::Send(psam_, CommandApdu::Case3(0x80, 0x72, 0x00, 0x00, data));
    if (!r.ok()) return Fail(ErrorKind::kWrongPsam, "PSAM: " + r.error().message);
    // 6A88: the session is gone (eight newer ones pushed it out, or another PSAM): the PSAM can
    // no longer count it. Left unmarked; it must not stop the other purchases or the day end.
    if (r->sw == sw::kReferencedDataNotFound) continue;
    if (!r->ok() && r->sw != sw::kConditionsNotSatisfied) {
      return Fail(ErrorKind::kWrongPsam,
                  "PSAM: purchase " + std::to_string(record.id) + ": " +
                      terminal::CardError("CREDIT_SAM_FOR_PURCHASE", r->sw).message);
    }
    Status marked = journal_.MarkPsamCredited(record.id);
    if (!marked.ok()) return JournalFailure(marked.error());
    ++sent;
  }
  return sent;
}

// REQUIRES: the card in the reader is record.asn's, its application selected. The card's log
// (SFI 18, free to read) says whether DEBIT ran: an entry with the pending serial, amount,
// terminal number, date and time is this purchase; GET TRANSACTION PROVE then returns the MAC2
// and TAC the lost DEBIT answer carried.
PosResult<RecoveredPurchase> Terminal::RecoverOne(const PurchaseRecord& record) {
  auto log = terminal::ReadTransactionLog(card_);
  if (!log.ok()) return Fail(ErrorKind::kReaderError, log.error().message);
  const std::uint8_t type = PurchaseType(record.wallet);
  const terminal::LogRecord* same_serial = nullptr;
  for (const auto& entry : *log) {
    if ((entry.type == 0x04 || entry.type == 0x05 || entry.type == 0x06) &&
        entry.serial == record.card_offline_serial) {
      same_serial = &entry;
      break;
    }
  }
  const bool ours = same_serial && same_serial->type == type &&
                    same_serial->amount == record.amount &&
                    same_serial->terminal_number == record.terminal_number &&
                    same_serial->date == record.date && same_serial->time == record.time;
  RecoveredPurchase out;
  if (!ours) {
    // Serials count up per wallet: when the log's newest offline debit of this wallet is older
    // than ours, our serial was never consumed, however full the log is.
    std::optional<std::uint16_t> newest_debit;
    for (const auto& entry : *log) {
      const bool same_wallet_debit =
          entry.type == type || (record.wallet == terminal::Wallet::kEd && entry.type == 0x04);
      if (same_wallet_debit && (!newest_debit || entry.serial > *newest_debit)) {
        newest_debit = entry.serial;
      }
    }
    const bool serial_unused = newest_debit && *newest_debit < record.card_offline_serial;
    if (!same_serial && !serial_unused && log->size() >= kCardLogSize) {
      // The entry may have been pushed out of a full log by ten later transactions: whether the
      // card was debited can no longer be told here.
      return Fail(ErrorKind::kTornPurchase,
                  "purchase " + std::to_string(record.id) +
                      ": the card's log no longer shows whether it was debited; kept pending");
    }
    // The serial was never consumed, or another purchase consumed it: DEBIT did not happen.
    Status voided = journal_.Void(record.id, /*recovered=*/true);
    if (!voided.ok()) return JournalFailure(voided.error());
    out.outcome = RecoveryOutcome::kVoided;
  } else {
    Bytes serial;
    AppendU16(serial, record.card_offline_serial);
    auto prove =
        Exchange(card_, "GET TRANSACTION PROVE",
                 CommandApdu::Case4(0x80, 0x5A, 0x00, type, serial, 8), ErrorKind::kReaderError, 8);
    if (!prove.ok()) return prove.error();
    const ByteView answer(*prove);
    Status completed = journal_.Complete(record.id, answer.subspan(4, 4), answer.subspan(0, 4),
                                         /*recovered=*/true);
    if (!completed.ok()) return JournalFailure(completed.error());
    out.outcome = RecoveryOutcome::kCompleted;
    // The card's side is settled; a PSAM that fails now gets the long form again later.
    (void)CompletePsamSide();
  }
  auto now = journal_.Purchase(record.id);
  if (!now.ok()) return JournalFailure(now.error());
  out.record = now->value_or(record);
  return out;
}

// CLEAR SAM TOTALS with the MAC of a settlement the host approved (journalled with it), when the
// PSAM did not get it then. 6985 after a right MAC: already cleared (psam-commands.md).
PosResult<bool> Terminal::ClearSettledTotals() {
  auto uncleared = journal_.UnclearedSettlement();
  if (!uncleared.ok()) return JournalFailure(uncleared.error());
  if (!uncleared->has_value()) return false;
  auto r = reader::Send(psam_,
                        CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, (*uncleared)->clear_totals_mac));
  if (!r.ok()) return Fail(ErrorKind::kWrongPsam, "PSAM: CLEAR SAM TOTALS: " + r.error().message);
  if (!r->ok() && r->sw != sw::kConditionsNotSatisfied) {
    return Fail(ErrorKind::kWrongPsam,
                "PSAM: " + terminal::CardError("CLEAR SAM TOTALS", r->sw).message);
  }
  if (Status s = journal_.MarkPsamCleared((*uncleared)->id); !s.ok()) {
    return JournalFailure(s.error());
  }
  if (auto psam = CheckPsam(); !psam.ok()) return psam.error();
  return true;
}

PosResult<RecoveryReport> Terminal::RecoverPending() {
  RecoveryReport report;
  auto psam = CompletePsamSide();
  if (!psam.ok()) return psam.error();
  report.psam_completions = *psam;
  auto pending = journal_.Purchases(PurchaseState::kPending);
  if (!pending.ok()) return JournalFailure(pending.error());
  if (pending->empty()) return report;
  std::optional<Bytes> asn;
  if (auto selected = SelectCard(); selected.ok()) asn = selected->app.asn;
  for (const PurchaseRecord& record : *pending) {
    if (!asn || *asn != record.asn) {
      report.purchases.push_back({record, RecoveryOutcome::kStillPending});
      continue;
    }
    auto recovered = RecoverOne(record);
    if (!recovered.ok() && recovered.error().kind == ErrorKind::kTornPurchase) {
      report.purchases.push_back({record, RecoveryOutcome::kStillPending});
      continue;
    }
    if (!recovered.ok()) return recovered.error();
    report.purchases.push_back(std::move(recovered).value());
  }
  return report;
}

PosResult<Receipt> Terminal::Purchase(const PurchaseOrder& order) {
  if (order.amount == 0) return Fail(ErrorKind::kBadAmount, "amount must be greater than zero");
  auto stored = journal_.Parameters();
  if (!stored.ok()) return JournalFailure(stored.error());
  if (stored->has_value() && (*stored)->parameters.purchase_limit &&
      order.amount > *(*stored)->parameters.purchase_limit) {
    return Fail(ErrorKind::kBadAmount, "amount " + Fen(order.amount) +
                                           " is above the terminal's purchase limit " +
                                           Fen(*(*stored)->parameters.purchase_limit));
  }
  if (order.wallet == terminal::Wallet::kEd && !order.pin) {
    return Fail(ErrorKind::kPinRequired, "a purchase from the ED needs the cardholder's PIN");
  }
  auto psam = CheckPsam();
  if (!psam.ok()) return psam.error();
  // A settlement the host approved whose CLEAR SAM TOTALS did not reach the PSAM is finished
  // first: a purchase now would change the signed totals and the clear would be refused.
  if (auto cleared = ClearSettledTotals(); !cleared.ok()) return cleared.error();

  auto selected = SelectCard();
  if (!selected.ok()) return selected.error();
  const terminal::ApplicationData& app = selected->app;
  const DateTime now = clock_();

  // The card's own torn purchase first: its serial and balance decide the order's.
  auto pending = journal_.Purchases(PurchaseState::kPending);
  if (!pending.ok()) return JournalFailure(pending.error());
  for (const PurchaseRecord& record : *pending) {
    if (record.asn != app.asn) continue;
    auto recovered = RecoverOne(record);
    // One the card's log can no longer decide stays pending for the operator; it does not stop
    // the card from paying.
    if (!recovered.ok() && recovered.error().kind != ErrorKind::kTornPurchase) {
      return recovered.error();
    }
  }

  if (now.date > app.expiry_date) {
    return Fail(ErrorKind::kExpired, "card expired on " + app.expiry_date.ToString());
  }
  if (now.date < app.start_date) {
    return Fail(ErrorKind::kExpired, "card not valid before " + app.start_date.ToString());
  }
  auto listed = journal_.IsBlacklisted(app.asn);
  if (!listed.ok()) return JournalFailure(listed.error());
  if (*listed) return Fail(ErrorKind::kBlacklisted, "card is on the blacklist: keep it");

  if (order.wallet == terminal::Wallet::kEd) {
    if (auto verified = VerifyPin(card_, *order.pin); !verified.ok()) return verified.error();
  }

  PurchaseRecord record;
  record.asn = app.asn;
  record.wallet = order.wallet;
  record.amount = order.amount;
  record.terminal_number = identity_.terminal_number;
  record.date = now.date;
  record.time = now.time;

  auto txn = reader::Transaction::Begin(card_);
  if (!txn.ok()) return Fail(ErrorKind::kNoCard, txn.error().message);
  // INITIALIZE FOR PURCHASE → balance(4) ‖ offlineSerial(2) ‖ overdraw available(3) ‖
  // keyVersion ‖ algId ‖ random(4)
  Bytes init_data{kKeyIndex};
  AppendU32(init_data, order.amount);
  Append(init_data, identity_.terminal_number);
  auto init = Exchange(card_, "INITIALIZE FOR PURCHASE",
                       CommandApdu::Case4(0x80, 0x50, 0x01, static_cast<std::uint8_t>(order.wallet),
                                          init_data, 0x0F),
                       ErrorKind::kNoCard, 15);
  if (!init.ok()) {
    if (init.error().kind == ErrorKind::kInsufficientBalance) {
      return Fail(ErrorKind::kInsufficientBalance, std::string("insufficient balance in the ") +
                                                       terminal::WalletName(order.wallet) +
                                                       " for " + Fen(order.amount));
    }
    return init.error();
  }
  const ByteView init_view(*init);
  record.balance_before = ReadU32(init_view, 0);
  record.card_offline_serial = ReadU16(init_view, 4);
  const std::uint32_t overdraw = order.wallet == terminal::Wallet::kEd ? ReadU24(init_view, 6) : 0;
  record.key_version = (*init)[9];
  if (std::uint64_t{record.balance_before} + overdraw < order.amount) {
    return Fail(ErrorKind::kInsufficientBalance,
                "insufficient balance: " + Fen(record.balance_before) +
                    (overdraw ? " + overdraw " + Fen(overdraw) : std::string()) + " for " +
                    Fen(order.amount));
  }

  // INIT_SAM_FOR_PURCHASE: random ‖ offlineSerial ‖ amount ‖ type ‖ date ‖ time ‖ keyVersion ‖
  // algId ‖ ASN factor → termTxnSerial(4) ‖ MAC1(4)
  Bytes sam_data = Concat({init_view.subspan(11, 4), init_view.subspan(4, 2)});
  AppendU32(sam_data, order.amount);
  sam_data.push_back(PurchaseType(order.wallet));
  Append(sam_data, DateTimeBcd(now.date, now.time));
  sam_data.push_back((*init)[9]);
  sam_data.push_back((*init)[10]);
  Append(sam_data, crypto::AsnFactor(app.asn));
  auto sam = PsamExchange(psam_, "INIT_SAM_FOR_PURCHASE",
                          CommandApdu::Case4(0x80, 0x70, 0x00, 0x00, sam_data, 8), 8);
  if (!sam.ok()) return sam.error();
  record.terminal_serial = ReadU32(*sam, 0);

  // Issue 5: pending and durable before DEBIT.
  auto id = journal_.AddPending(record);
  if (!id.ok()) return JournalFailure(id.error());
  record.id = *id;

  Bytes debit_data(sam->begin(), sam->begin() + 4);
  Append(debit_data, DateTimeBcd(now.date, now.time));
  Append(debit_data, ByteView(*sam).subspan(4, 4));
  auto debit = reader::Send(card_, CommandApdu::Case4(0x80, 0x54, 0x01, 0x00, debit_data, 8));
  if (!debit.ok() || (debit->ok() && debit->data.size() != 8)) {
    // The answer is lost: the card may or may not have debited. The pending record decides on
    // the card's next insertion (RecoverPending).
    return Fail(ErrorKind::kTornPurchase, "card removed during the purchase (journal " +
                                              std::to_string(record.id) +
                                              "): insert the same card again to finish it");
  }
  (void)txn->End();
  if (!debit->ok()) {
    // The card refused: nothing was debited.
    Status voided = journal_.Void(record.id, /*recovered=*/false);
    if (!voided.ok()) return JournalFailure(voided.error());
    return Fail(KindOfCardStatus(debit->sw),
                terminal::CardError("DEBIT FOR PURCHASE", debit->sw).message);
  }
  record.tac.assign(debit->data.begin(), debit->data.begin() + 4);
  record.mac2.assign(debit->data.begin() + 4, debit->data.end());
  // The receipt prints only once the completion is durable (issue 5).
  Status completed = journal_.Complete(record.id, record.tac, record.mac2, false);
  if (!completed.ok()) return JournalFailure(completed.error());

  // The PSAM's half: if it fails here, RecoverPending and DayEnd send the long form again.
  auto credit = reader::Send(psam_, CommandApdu::Case3(0x80, 0x72, 0x00, 0x00, record.mac2));
  if (credit.ok() && credit->ok()) (void)journal_.MarkPsamCredited(record.id);

  Receipt receipt;
  receipt.merchant_name = MerchantName();
  receipt.merchant_id = identity_.merchant_id;
  receipt.terminal_id = identity_.terminal_id;
  receipt.masked_card_number = MaskCardNumber(app.asn);
  receipt.wallet = order.wallet;
  receipt.amount = order.amount;
  receipt.balance_after = record.balance_after();
  receipt.card_offline_serial = record.card_offline_serial;
  receipt.terminal_serial = record.terminal_serial;
  receipt.terminal_number = record.terminal_number;
  receipt.tac = record.tac;
  receipt.date = record.date;
  receipt.time = record.time;
  receipt.journal_id = record.id;
  if (order.visit) {
    terminal::VisitRecord visit = *order.visit;
    if (visit.facility_code.empty()) visit.facility_code = identity_.facility_code;
    Status appended =
        terminal::AppendVisitRecord(card_, psam_, {app.asn, record.key_version}, visit);
    receipt.visit_recorded = appended.ok();
    if (!appended.ok()) receipt.visit_error = appended.error().message;
  }
  return receipt;
}

PosResult<DayEndReport> Terminal::DayEnd() {
  if (!link_) return Fail(ErrorKind::kHostUnreachable, "no host configured");
  DayEndReport report;
  auto signed_on = link_->SignOn();
  if (!signed_on.ok()) {
    return Fail(ErrorKind::kHostUnreachable, "sign-on: " + signed_on.error().message);
  }
  if (!signed_on->approved()) {
    return Fail(ErrorKind::kHostDeclined, HostRefusal("sign-on", *signed_on));
  }
  report.key_version = signed_on->key_version;

  // Loads whose confirmation went unanswered (protocol.md 9.5 step 4).
  auto loads = journal_.UnconfirmedLoads();
  if (!loads.ok()) return JournalFailure(loads.error());
  for (const JournalledLoad& load : *loads) {
    auto confirmed = link_->ConfirmLoad(load.load, load.tac);
    if (!confirmed.ok()) {
      return Fail(ErrorKind::kHostUnreachable, "load confirmation: " + confirmed.error().message);
    }
    if (!confirmed->approved()) {
      return Fail(ErrorKind::kHostDeclined, HostRefusal("load confirmation", *confirmed));
    }
    if (Status s = journal_.MarkLoadConfirmed(load.id); !s.ok()) return JournalFailure(s.error());
    ++report.loads_confirmed;
  }

  auto psam_side = CompletePsamSide();
  if (!psam_side.ok()) return psam_side.error();
  if (auto psam = CheckPsam(); !psam.ok()) return psam.error();
  // A settlement approved before whose CLEAR SAM TOTALS did not run (the MAC is journalled).
  if (auto cleared = ClearSettledTotals(); !cleared.ok()) return cleared.error();

  // Upload what the host has not acknowledged, 16 at a time, marking each message's purchases
  // as soon as it is answered: an interrupted upload resumes after the last acknowledged one.
  auto upload = [&](std::vector<PurchaseRecord> records) -> PosResult<std::size_t> {
    std::size_t acknowledged = 0;
    for (std::size_t start = 0; start < records.size(); start += kUploadChunk) {
      const std::size_t end = std::min(records.size(), start + kUploadChunk);
      std::vector<terminal::PurchaseResult> chunk;
      for (std::size_t i = start; i < end; ++i) chunk.push_back(records[i].ToPurchaseResult());
      const std::uint32_t batch = link_->state().batch_number;
      auto reply = link_->UploadPurchases(chunk);
      if (!reply.ok()) return Fail(ErrorKind::kHostUnreachable, "upload: " + reply.error().message);
      std::vector<std::int64_t> ids;
      for (std::size_t i = 0; i < reply->uploaded && start + i < end; ++i) {
        ids.push_back(records[start + i].id);
      }
      if (Status s = journal_.MarkUploaded(ids, batch); !s.ok()) return JournalFailure(s.error());
      acknowledged += ids.size();
      if (!reply->approved()) return Fail(ErrorKind::kHostDeclined, HostRefusal("upload", *reply));
    }
    return acknowledged;
  };
  auto unuploaded = journal_.Unuploaded();
  if (!unuploaded.ok()) return JournalFailure(unuploaded.error());
  auto uploaded = upload(std::move(unuploaded).value());
  if (!uploaded.ok()) return uploaded.error();
  report.purchases_uploaded = *uploaded;

  // Settlement (protocol.md 7.10): challenge → GET SAM TOTALS → 0500 → CLEAR SAM TOTALS.
  auto psam_file =
      PsamExchange(psam_, "READ BINARY SFI 15", CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 14), 14);
  if (!psam_file.ok()) return psam_file.error();
  const Bytes psam_serial(psam_file->begin(), psam_file->begin() + 10);
  if (auto psam = CheckPsam(); !psam.ok()) return psam.error();
  const std::uint32_t batch = link_->state().batch_number;
  // The batch advances only on an approved settlement (protocol.md 7.10): purchases of an older
  // batch still unsettled mean that approval, and the CLEAR SAM TOTALS MAC it carried, were lost.
  // The PSAM's totals then hold them and no later batch can agree; say so rather than loop on 95.
  auto orphaned = journal_.UnsettledBefore(batch);
  if (!orphaned.ok()) return JournalFailure(orphaned.error());
  if (!orphaned->empty()) {
    return Fail(ErrorKind::kHostDeclined,
                "batch " + std::to_string(*orphaned->front().uploaded_batch) +
                    " was settled by the host but its answer was lost before it was journalled: "
                    "the PSAM's totals still hold its " +
                    std::to_string(orphaned->size()) +
                    " purchases; the host must acknowledge them again (operator)");
  }
  iso8583::BatchTotals totals;
  auto batch_purchases = journal_.UploadedIn(batch);
  if (!batch_purchases.ok()) return JournalFailure(batch_purchases.error());
  for (const auto& p : *batch_purchases) {
    ++totals.purchase_count;
    totals.purchase_amount += p.amount;
  }
  auto batch_loads = journal_.ConfirmedLoadsIn(batch);
  if (!batch_loads.ok()) return JournalFailure(batch_loads.error());
  for (const auto& l : *batch_loads) {
    ++totals.load_count;
    totals.load_amount += l.load.amount;
  }
  std::optional<terminal::SettleReply> settled;
  for (int attempt = 0; attempt < 2 && !settled; ++attempt) {
    auto challenge = link_->SettlementChallenge();
    if (!challenge.ok()) {
      return Fail(ErrorKind::kHostUnreachable,
                  "settlement challenge: " + challenge.error().message);
    }
    if (!challenge->approved()) {
      return Fail(ErrorKind::kHostDeclined, HostRefusal("settlement challenge", *challenge));
    }
    auto signed_totals =
        PsamExchange(psam_, "GET SAM TOTALS",
                     CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00, challenge->challenge, 22), 22);
    if (!signed_totals.ok()) return signed_totals.error();
    const terminal::PsamTotals psam_totals{psam_serial, 1, challenge->challenge, *signed_totals};
    auto reply = link_->Settle(totals, psam_totals);
    if (!reply.ok()) {
      return Fail(ErrorKind::kHostUnreachable, "settlement: " + reply.error().message);
    }
    if (reply->approved()) {
      settled = *reply;
    } else if (reply->code == iso8583::ResponseCode::kReconciliationError && attempt == 0) {
      // 95: upload every purchase of the batch again (duplicates are harmless), then again.
      auto again = upload(*batch_purchases);
      if (!again.ok()) return again.error();
    } else {
      return Fail(ErrorKind::kHostDeclined, HostRefusal("settlement", *reply));
    }
  }
  if (!settled) return Fail(ErrorKind::kHostDeclined, "settlement: totals disagree twice");
  SettlementRecord record{0, batch, totals, settled->clear_totals_mac, false};
  auto settlement_id = journal_.AddSettlement(record);
  if (!settlement_id.ok()) return JournalFailure(settlement_id.error());
  report.settled_batch = batch;
  report.totals = totals;
  auto cleared =
      reader::Send(psam_, CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, settled->clear_totals_mac));
  if (cleared.ok() && cleared->ok()) {
    if (Status s = journal_.MarkPsamCleared(*settlement_id); !s.ok()) {
      return JournalFailure(s.error());
    }
    report.psam_cleared = true;
  }

  // Downloads: blacklist deltas from the version held, then the parameters.
  auto held = journal_.BlacklistVersion();
  if (!held.ok()) return JournalFailure(held.error());
  auto blacklist = link_->DownloadBlacklist(*held);
  if (!blacklist.ok()) {
    return Fail(ErrorKind::kHostUnreachable, "blacklist: " + blacklist.error().message);
  }
  if (!blacklist->approved()) {
    return Fail(ErrorKind::kHostDeclined, HostRefusal("blacklist", *blacklist));
  }
  if (Status s = journal_.ApplyBlacklist(*blacklist); !s.ok()) return JournalFailure(s.error());
  report.blacklist_version = blacklist->version;

  auto stored = journal_.Parameters();
  if (!stored.ok()) return JournalFailure(stored.error());
  const std::uint32_t from = stored->has_value() ? (*stored)->version : 0;
  auto parameters = link_->DownloadParameters(from);
  if (!parameters.ok()) {
    return Fail(ErrorKind::kHostUnreachable, "parameters: " + parameters.error().message);
  }
  if (!parameters->approved()) {
    return Fail(ErrorKind::kHostDeclined, HostRefusal("parameters", *parameters));
  }
  if (!parameters->up_to_date) {
    if (Status s = journal_.SaveParameters({parameters->version, parameters->parameters});
        !s.ok()) {
      return JournalFailure(s.error());
    }
  }
  report.parameters_version = parameters->version;

  auto still = journal_.Purchases(PurchaseState::kPending);
  if (!still.ok()) return JournalFailure(still.error());
  report.still_pending = still->size();
  return report;
}

PosResult<terminal::LoadResult> Terminal::LoadOnline(terminal::Wallet wallet, std::uint32_t amount,
                                                     std::optional<std::string> pin) {
  if (!link_) return Fail(ErrorKind::kHostUnreachable, "no host configured");
  if (amount == 0) return Fail(ErrorKind::kBadAmount, "amount must be greater than zero");
  auto stored = journal_.Parameters();
  if (!stored.ok()) return JournalFailure(stored.error());
  if (stored->has_value() && (*stored)->parameters.load_limit &&
      amount > *(*stored)->parameters.load_limit) {
    return Fail(ErrorKind::kBadAmount, "amount " + Fen(amount) +
                                           " is above the terminal's load limit " +
                                           Fen(*(*stored)->parameters.load_limit));
  }
  // INITIALIZE FOR LOAD needs the PIN verified for either wallet (card-commands.md).
  if (!pin) return Fail(ErrorKind::kPinRequired, "a load needs the cardholder's PIN");

  auto selected = SelectCard();
  if (!selected.ok()) return selected.error();
  const terminal::ApplicationData& app = selected->app;
  const DateTime now = clock_();
  if (now.date > app.expiry_date) {
    return Fail(ErrorKind::kExpired, "card expired on " + app.expiry_date.ToString());
  }
  auto listed = journal_.IsBlacklisted(app.asn);
  if (!listed.ok()) return JournalFailure(listed.error());
  if (*listed) return Fail(ErrorKind::kBlacklisted, "card is on the blacklist: keep it");
  if (auto verified = VerifyPin(card_, *pin); !verified.ok()) return verified.error();
  if (!link_->signed_on()) {
    auto signed_on = link_->SignOn();
    if (!signed_on.ok()) {
      return Fail(ErrorKind::kHostUnreachable, "sign-on: " + signed_on.error().message);
    }
    if (!signed_on->approved()) {
      return Fail(ErrorKind::kHostDeclined, HostRefusal("sign-on", *signed_on));
    }
  }
  terminal::HostLoadAuthoriser authoriser(*link_);
  auto loaded = terminal::Load(card_, authoriser, app,
                               {wallet, amount, identity_.terminal_number, now.date, now.time});
  if (loaded.ok()) {
    JournalledLoad record{0,
                          authoriser.last_load()->load,
                          loaded->tac,
                          loaded->balance_after,
                          loaded->online_serial,
                          true};
    if (auto id = journal_.AddLoad(record); !id.ok()) return JournalFailure(id.error());
    return std::move(loaded).value();
  }
  if (authoriser.last_tac()) {
    // The card was credited; only the confirmation went unanswered. The journal keeps it and
    // DayEnd sends it again until the host answers (protocol.md 9.5 step 4).
    auto balance = terminal::GetBalance(card_, wallet);
    terminal::LoadResult result{balance.ok() ? *balance : 0, 0, *authoriser.last_tac()};
    JournalledLoad record{0,    authoriser.last_load()->load, result.tac, result.balance_after, 0,
                          false};
    if (auto id = journal_.AddLoad(record); !id.ok()) return JournalFailure(id.error());
    return result;
  }
  if (authoriser.last_load() && !authoriser.last_load()->approved()) {
    return Fail(ErrorKind::kHostDeclined, HostRefusal("load", *authoriser.last_load()));
  }
  if (authoriser.last_load()) {
    // Approved, but CREDIT FOR LOAD did not run or failed: no money reached the card.
    return Fail(ErrorKind::kDeclinedByCard, loaded.error().message);
  }
  return Fail(ErrorKind::kHostUnreachable, loaded.error().message);
}

PosResult<Balances> Terminal::ReadBalances(std::optional<std::string> pin) {
  auto selected = SelectCard();
  if (!selected.ok()) return selected.error();
  Balances balances;
  auto ep = terminal::GetBalance(card_, terminal::Wallet::kEp);
  if (!ep.ok()) return Fail(ErrorKind::kDeclinedByCard, ep.error().message);
  balances.ep = *ep;
  if (pin) {
    if (auto verified = VerifyPin(card_, *pin); !verified.ok()) return verified.error();
    auto ed = terminal::GetBalance(card_, terminal::Wallet::kEd);
    if (!ed.ok()) return Fail(ErrorKind::kDeclinedByCard, ed.error().message);
    balances.ed = *ed;
  }
  return balances;
}

PosResult<std::vector<terminal::LogRecord>> Terminal::ReadHistory() {
  auto selected = SelectCard();
  if (!selected.ok()) return selected.error();
  auto log = terminal::ReadTransactionLog(card_);
  if (!log.ok()) return Fail(ErrorKind::kReaderError, log.error().message);
  return std::move(log).value();
}

}  // namespace medcard::pos
