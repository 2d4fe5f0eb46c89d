// medcard pos ...: the hospital and pharmacy POS terminal (issue 5; docs/pos.md).
//   init         import the TMK delivery, check the PSAM, sign on once
//   purchase     an offline purchase (ED with PIN, EP without), receipt or --json
//   balance      the EP balance, and the ED's with the PIN
//   history      the card's last 10 transactions
//   cardholder   the SSSE cardholder data (social-security number masked unless --unmask)
//   change-pin   the cardholder's PIN
//   load         an online load through the host
//   recover      settle torn purchases of the card in the reader, re-credit the PSAM
//   settle       day end: sign-on, upload, settlement, PSAM totals cleared, downloads
//   interactive  the cashier's loop: card in, amount, PIN, receipt, card out
//
// Every failure of the terminal exits with its documented code (pos::ExitCode, docs/pos.md);
// with --json a failure is also one JSON object on stdout. PINs come from stdin (--pin-stdin)
// or a no-echo prompt, never from the command line, and are never printed.
#include <openssl/crypto.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "card/card.h"
#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "cli/pos_config.h"
#include "cli/pos_tmk.h"
#include "common/bcd.h"
#include "common/money.h"
#include "nvm/nvm.h"
#include "pos/pos.h"
#include "psam/psam.h"
#include "reader/reader.h"
#include "terminal/host_link.h"
#include "terminal/pin.h"
#include "terminal/purse.h"
#include "terminal/ssse.h"

namespace medcard::cli {
namespace {

using nlohmann::json;
using pos::ErrorKind;

struct CommonOptions {
  std::string config = "pos.json";
  bool json = false;
};

// Ends the command with the failure's exit code; with --json the failure is also on stdout.
[[noreturn]] void Fail(ErrorKind kind, const std::string& message, bool as_json) {
  if (as_json) {
    std::cout
        << json{{"ok", false}, {"error", pos::ErrorKindName(kind)}, {"message", message}}.dump()
        << "\n";
  }
  throw CommandFailed(message, pos::ExitCode(kind));
}

template <typename T>
T Require(pos::PosResult<T> result, bool as_json) {
  if (!result.ok()) Fail(result.error().kind, result.error().message, as_json);
  return std::move(result).value();
}

PosConfig LoadConfig(const CommonOptions& options) {
  auto config = LoadPosConfig(options.config);
  if (!config.ok()) Fail(ErrorKind::kConfigError, config.error().message, options.json);
  return std::move(config).value();
}

std::uint32_t AmountOrFail(const std::string& text, bool as_json) {
  auto amount = ParseAmount(text);
  if (!amount.ok()) Fail(ErrorKind::kBadAmount, amount.error().message, as_json);
  return *amount;
}

// A PIN from stdin (--pin-stdin: the first line), else a no-echo prompt on a terminal, else
// none. Wiped by SecretString.
void ReadPin(bool from_stdin, const std::string& prompt, SecretString& pin) {
  if (from_stdin) {
    if (!std::getline(std::cin, pin.value)) pin.value.clear();
    return;
  }
  if (::isatty(STDIN_FILENO) == 1) ReadSecretLine(prompt + ": ", pin);
}

// ---- Readers ------------------------------------------------------------------------------------

enum class Slot { kCard, kPsam };

// "image:PATH": the virtual card or PSAM in that image file, in this process (its state is
// written back to the file); anything else names a PC/SC reader.
std::unique_ptr<reader::Reader> OpenReader(const std::string& spec, Slot slot, bool as_json) {
  const char* what = slot == Slot::kCard ? "card reader" : "PSAM reader";
  constexpr std::string_view kImage = "image:";
  if (spec.starts_with(kImage)) {
    const std::string path = spec.substr(kImage.size());
    if (!std::filesystem::exists(path)) {
      Fail(slot == Slot::kCard ? ErrorKind::kNoCard : ErrorKind::kWrongPsam,
           std::string(what) + ": no image " + path, as_json);
    }
    auto medium = nvm::OpenFileMedium(path);
    if (!medium.ok()) Fail(ErrorKind::kReaderError, path + ": " + medium.error().message, as_json);
    std::shared_ptr<iso7816::Icc> icc;
    if (slot == Slot::kCard) {
      auto card = card::Card::Open(std::move(medium).value());
      if (!card.ok()) Fail(ErrorKind::kNotMedcardCard, path + ": " + card.error().message, as_json);
      icc = std::move(card).value();
    } else {
      auto psam = psam::Psam::Open(std::move(medium).value());
      if (!psam.ok()) Fail(ErrorKind::kWrongPsam, path + ": " + psam.error().message, as_json);
      icc = std::move(psam).value();
    }
    return std::make_unique<reader::InProcessReader>(spec, std::move(icc));
  }
  auto pcsc = reader::PcscReader::Open(spec);
  if (!pcsc.ok()) {
    Fail(ErrorKind::kReaderError, std::string(what) + ": " + pcsc.error().message, as_json);
  }
  return std::move(pcsc).value();
}

void ConnectPsam(reader::Reader& psam, bool as_json) {
  auto present = psam.CardPresent();
  if (!present.ok())
    Fail(ErrorKind::kReaderError, "PSAM reader: " + present.error().message, as_json);
  if (!*present) Fail(ErrorKind::kWrongPsam, "no PSAM in " + psam.Name(), as_json);
  auto atr = psam.Connect();
  if (!atr.ok()) Fail(ErrorKind::kWrongPsam, "PSAM: " + atr.error().message, as_json);
}

// ---- The terminal, opened for one command -------------------------------------------------------

struct Needs {
  bool psam = true;  // balance, history, cardholder: the card alone
  bool host = false;
};

class PosContext {
 public:
  // `keys`: the key store when the caller opened it already (init), else opened when needed.
  PosContext(const CommonOptions& options, Needs needs,
             std::unique_ptr<keys::KeyStore> keys = nullptr)
      : as_json_(options.json), config_(LoadConfig(options)), keys_(std::move(keys)) {
    card_ = OpenReader(config_.card_reader, Slot::kCard, as_json_);
    psam_ = OpenReader(config_.psam_reader, Slot::kPsam, as_json_);
    pos::TerminalIdentity identity{config_.merchant_id, config_.terminal_id, config_.merchant_name,
                                   config_.terminal_number, config_.facility_code};
    if (needs.psam) {
      ConnectPsam(*psam_, as_json_);
      if (identity.terminal_number.empty()) {
        auto number = terminal::ReadTerminalNumber(*psam_);
        if (!number.ok()) Fail(ErrorKind::kWrongPsam, "PSAM: " + number.error().message, as_json_);
        identity.terminal_number = *number;
      }
    }
    auto journal = pos::Journal::Open(config_.journal);
    if (!journal.ok()) Fail(ErrorKind::kJournalError, journal.error().message, as_json_);
    journal_ = std::move(journal).value();
    if (needs.host) OpenLink(identity.terminal_number);
    terminal_ = std::make_unique<pos::Terminal>(identity, *card_, *psam_, *journal_, link_.get());
  }

  pos::Terminal& terminal() { return *terminal_; }
  terminal::HostLink* link() { return link_.get(); }
  reader::Reader& card() { return *card_; }
  reader::Reader& psam() { return *psam_; }
  pos::Journal& journal() { return *journal_; }
  const PosConfig& config() const { return config_; }
  bool as_json() const { return as_json_; }

 private:
  void OpenLink(const Bytes& terminal_number) {
    const auto host_port = config_.host_port();
    if (!host_port)
      Fail(ErrorKind::kConfigError, config_.path + ": no \"host\" configured", as_json_);
    if (!keys_) keys_ = OpenKeyStore(KeyStoreLocation{config_.key_store, config_.pkcs11_module});
    const std::string tmk_name = "tmk/" + ToHex(terminal_number);
    auto listed = keys_->List();
    if (!listed.ok()) Fail(ErrorKind::kConfigError, listed.error().message, as_json_);
    std::uint8_t tmk_version = 0;
    for (const keys::KeyInfo& k : *listed) {
      if (k.name == tmk_name && k.version > tmk_version) tmk_version = k.version;
    }
    if (tmk_version == 0) {
      Fail(ErrorKind::kConfigError,
           "no " + tmk_name + " in " + keys_->Describe() + ": run medcard pos init --tmk FILE",
           as_json_);
    }
    terminal::TcpConfig tcp;
    tcp.host = host_port->host;
    tcp.port = host_port->port;
    tcp.timeout = config_.host_timeout;
    if (!config_.tls_ca.empty()) {
      tcp.tls = terminal::TlsConfig{config_.tls_ca, config_.tls_server_name.empty()
                                                        ? host_port->host
                                                        : config_.tls_server_name};
    }
    auto transport = terminal::MakeTcpTransport(tcp);
    if (!transport.ok()) Fail(ErrorKind::kConfigError, transport.error().message, as_json_);
    transport_ = std::move(transport).value();
    auto state = journal_->LinkState();
    if (!state.ok()) Fail(ErrorKind::kJournalError, state.error().message, as_json_);
    terminal::HostLinkConfig link;
    link.terminal_id = config_.terminal_id;
    link.merchant_id = config_.merchant_id;
    link.terminal_number = terminal_number;
    link.tmk_version = tmk_version;
    link.test_mode = config_.test_mode;
    link.max_retries = config_.max_retries;
    pos::Journal* journal = journal_.get();
    link_ = std::make_unique<terminal::HostLink>(
        link, *transport_, *keys_, *state, [journal](const terminal::LinkState& s) {
          // A trace must never be reused in a batch (protocol.md 9.3): say so if it was not saved.
          if (Status saved = journal->SaveLinkState(s); !saved.ok()) {
            std::fprintf(stderr, "medcard: saving the trace number: %s\n",
                         saved.error().message.c_str());
          }
        });
  }

  bool as_json_;
  PosConfig config_;
  std::unique_ptr<keys::KeyStore> keys_;
  std::unique_ptr<reader::Reader> card_, psam_;
  std::unique_ptr<pos::Journal> journal_;
  std::unique_ptr<terminal::Transport> transport_;
  std::unique_ptr<terminal::HostLink> link_;
  std::unique_ptr<pos::Terminal> terminal_;
};

// ---- Output -------------------------------------------------------------------------------------

std::string FormatFen(std::uint64_t fen) {
  return ::medcard::FormatFen(static_cast<std::int64_t>(fen));
}

const char* OutcomeName(pos::RecoveryOutcome outcome) {
  switch (outcome) {
    case pos::RecoveryOutcome::kCompleted:
      return "completed";
    case pos::RecoveryOutcome::kVoided:
      return "voided";
    case pos::RecoveryOutcome::kStillPending:
      return "still_pending";
  }
  return "unknown";
}

void PrintRecovery(const pos::RecoveryReport& report, bool as_json) {
  if (as_json) {
    json purchases = json::array();
    for (const pos::RecoveredPurchase& p : report.purchases) {
      purchases.push_back({{"journal_id", p.record.id},
                           {"card", pos::MaskCardNumber(p.record.asn)},
                           {"wallet", terminal::WalletName(p.record.wallet)},
                           {"amount_fen", p.record.amount},
                           {"outcome", OutcomeName(p.outcome)}});
    }
    std::cout << json{{"ok", true},
                      {"purchases", purchases},
                      {"psam_completions", report.psam_completions}}
                     .dump()
              << "\n";
    return;
  }
  if (report.purchases.empty()) std::printf("no pending purchase\n");
  for (const pos::RecoveredPurchase& p : report.purchases) {
    std::printf("purchase %lld card %s %s %s: %s\n", static_cast<long long>(p.record.id),
                pos::MaskCardNumber(p.record.asn).c_str(), terminal::WalletName(p.record.wallet),
                FormatFen(p.record.amount).c_str(), OutcomeName(p.outcome));
  }
  if (report.psam_completions > 0) {
    std::printf("%d purchase(s) re-credited to the PSAM\n", report.psam_completions);
  }
}

// ---- Commands -----------------------------------------------------------------------------------

struct InitOptions : CommonOptions {
  std::string tmk_file;
};

void RunInit(const InitOptions& options) {
  const bool as_json = options.json;
  PosConfig config = LoadConfig(options);
  auto delivery = ReadTmkDelivery(options.tmk_file);
  if (!delivery.ok()) Fail(ErrorKind::kConfigError, delivery.error().message, as_json);
  if (!config.terminal_number.empty() && config.terminal_number != delivery->terminal_number) {
    Fail(ErrorKind::kConfigError,
         "the TMK delivery is for terminal " + ToHex(delivery->terminal_number) + ", " +
             config.path + " says " + ToHex(config.terminal_number),
         as_json);
  }
  if ((!delivery->merchant_id.empty() && delivery->merchant_id != config.merchant_id) ||
      (!delivery->terminal_id.empty() && delivery->terminal_id != config.terminal_id)) {
    Fail(ErrorKind::kConfigError,
         "the TMK delivery is for merchant " + delivery->merchant_id + " terminal id " +
             delivery->terminal_id + ", " + config.path + " says " + config.merchant_id + " / " +
             config.terminal_id,
         as_json);
  }
  // The PSAM in the slot must be the one the bank registered for this terminal.
  auto psam = OpenReader(config.psam_reader, Slot::kPsam, as_json);
  ConnectPsam(*psam, as_json);
  auto number = terminal::ReadTerminalNumber(*psam);
  if (!number.ok()) Fail(ErrorKind::kWrongPsam, "PSAM: " + number.error().message, as_json);
  if (*number != delivery->terminal_number) {
    Fail(ErrorKind::kWrongPsam,
         "the PSAM in the slot is terminal " + ToHex(*number) + "'s; the TMK delivery is for " +
             ToHex(delivery->terminal_number),
         as_json);
  }
  if (!delivery->psam_serial.empty()) {
    auto serial = terminal::ReadPsamSerial(*psam);
    if (!serial.ok()) Fail(ErrorKind::kWrongPsam, "PSAM: " + serial.error().message, as_json);
    if (*serial != delivery->psam_serial) {
      Fail(ErrorKind::kWrongPsam,
           "the PSAM in the slot has serial " + ToHex(*serial) + "; the bank registered " +
               ToHex(delivery->psam_serial) + " for terminal " + ToHex(delivery->terminal_number),
           as_json);
    }
  }
  psam.reset();
  auto store = OpenKeyStore(KeyStoreLocation{config.key_store, config.pkcs11_module});
  auto version = ImportTmk(*store, *delivery);
  if (!version.ok()) Fail(ErrorKind::kConfigError, version.error().message, as_json);
  if (!as_json) {
    std::printf("TMK %s v%u imported into %s, KCV %s\n", delivery->key_name().c_str(), *version,
                store->Describe().c_str(), ToHex(delivery->tmk_kcv).c_str());
  }
  json out = {{"ok", true},
              {"terminal_number", ToHex(delivery->terminal_number)},
              {"tmk_version", *version},
              {"tmk_kcv", ToHex(delivery->tmk_kcv)},
              {"signed_on", false}};
  if (config.host.empty()) {
    auto journal = pos::Journal::Open(config.journal);
    if (!journal.ok()) Fail(ErrorKind::kJournalError, journal.error().message, as_json);
    if (as_json) {
      std::cout << out.dump() << "\n";
    } else {
      std::printf("no host configured: not signed on\n");
    }
    return;
  }
  PosContext context(options, Needs{.psam = true, .host = true}, std::move(store));
  auto signed_on = context.link()->SignOn();
  if (!signed_on.ok()) {
    Fail(ErrorKind::kHostUnreachable, "sign-on: " + signed_on.error().message, as_json);
  }
  if (!signed_on->approved()) {
    Fail(ErrorKind::kHostDeclined,
         "sign-on: host answered " + iso8583::ResponseCodeText(signed_on->code), as_json);
  }
  if (as_json) {
    out["signed_on"] = true;
    out["key_version"] = signed_on->key_version;
    std::cout << out.dump() << "\n";
  } else {
    std::printf("signed on to %s: working keys version %u\n", config.host.c_str(),
                signed_on->key_version);
  }
}

struct PurchaseOptions : CommonOptions {
  std::string amount;
  bool ep = false, pin_stdin = false;
  // The visit record (SSSE EF08) a hospital terminal appends once the card has paid.
  std::optional<unsigned> visit_type;
  std::string diagnosis, visit_total, paid_by_pool;
};

// --visit-type with --diagnosis, --visit-total (default: the amount) and --paid-by-pool
// (default 0); the account's part is the purchase amount.
std::optional<terminal::VisitRecord> VisitOf(const PurchaseOptions& options, std::uint32_t amount,
                                             const std::string& facility_code) {
  if (!options.visit_type) {
    if (!options.diagnosis.empty() || !options.visit_total.empty() ||
        !options.paid_by_pool.empty()) {
      Fail(ErrorKind::kBadAmount, "--diagnosis, --visit-total and --paid-by-pool need --visit-type",
           options.json);
    }
    return std::nullopt;
  }
  terminal::VisitRecord visit;
  visit.date = Today();
  visit.time = Now();
  visit.visit_type = static_cast<std::uint8_t>(*options.visit_type);
  visit.facility_code = facility_code;
  visit.diagnosis = options.diagnosis;
  visit.paid_by_account = amount;
  visit.total =
      options.visit_total.empty() ? amount : AmountOrFail(options.visit_total, options.json);
  visit.paid_by_pool =
      options.paid_by_pool.empty() ? 0 : AmountOrFail(options.paid_by_pool, options.json);
  // Nothing is sent before the record is valid (the same check AppendVisitRecord makes).
  if (auto encoded = visit.Encode(); !encoded.ok()) {
    Fail(ErrorKind::kBadAmount, encoded.error().message, options.json);
  }
  return visit;
}

void RunPurchase(const PurchaseOptions& options) {
  const std::uint32_t amount = AmountOrFail(options.amount, options.json);
  PosContext context(options, Needs{});
  std::optional<terminal::VisitRecord> visit =
      VisitOf(options, amount, context.config().facility_code);
  pos::PurchaseOrder order;
  order.wallet = options.ep ? terminal::Wallet::kEp : terminal::Wallet::kEd;
  order.amount = amount;
  order.visit = std::move(visit);
  SecretString pin;
  if (!options.ep) {
    ReadPin(options.pin_stdin, "PIN", pin);
    if (!pin.value.empty()) order.pin = pin.value;
  }
  auto receipt = context.terminal().Purchase(order);
  if (order.pin) OPENSSL_cleanse(order.pin->data(), order.pin->size());
  const pos::Receipt slip = Require(std::move(receipt), options.json);
  if (options.json) {
    std::cout << slip.ToJson() << "\n";
  } else {
    std::cout << slip.Text();
  }
}

struct BalanceOptions : CommonOptions {
  bool pin_stdin = false;
};

void RunBalance(const BalanceOptions& options) {
  PosContext context(options, Needs{.psam = false});
  SecretString pin;
  ReadPin(options.pin_stdin, "PIN (Enter: EP balance only)", pin);
  std::optional<std::string> given;
  if (!pin.value.empty()) given = pin.value;
  auto balances = context.terminal().ReadBalances(given);
  if (given) OPENSSL_cleanse(given->data(), given->size());
  const pos::Balances b = Require(std::move(balances), options.json);
  if (options.json) {
    json out = {{"ok", true}, {"ep_fen", b.ep}, {"ep", FormatFen(b.ep)}};
    if (!pin.value.empty()) {
      out["ed_fen"] = b.ed;
      out["ed"] = FormatFen(b.ed);
    }
    std::cout << out.dump() << "\n";
    return;
  }
  if (!pin.value.empty()) std::printf("ED  %s\n", FormatFen(b.ed).c_str());
  std::printf("EP  %s\n", FormatFen(b.ep).c_str());
}

void RunHistory(const CommonOptions& options) {
  PosContext context(options, Needs{.psam = false});
  auto log = Require(context.terminal().ReadHistory(), options.json);
  std::cout << terminal::FormatHistory(
      log, options.json ? terminal::HistoryFormat::kJson : terminal::HistoryFormat::kTable);
}

struct CardholderOptions : CommonOptions {
  bool unmask = false;
};

// The cardholder's file reads (terminal/ssse.h): a card that is absent or that the reader lost
// is kNoCard, one without the SSSE files or with unreadable data kNotMedcardCard.
void ConnectCard(reader::Reader& card, bool as_json) {
  auto present = card.CardPresent();
  if (!present.ok())
    Fail(ErrorKind::kReaderError, "card reader: " + present.error().message, as_json);
  if (!*present) Fail(ErrorKind::kNoCard, "no card in the reader", as_json);
  auto atr = card.Connect();
  if (!atr.ok()) Fail(ErrorKind::kNoCard, "card: " + atr.error().message, as_json);
}

void RunCardholder(const CardholderOptions& options) {
  PosContext context(options, Needs{.psam = false});
  ConnectCard(context.card(), options.json);
  auto holder = terminal::ReadCardholder(context.card());
  if (!holder.ok()) Fail(ErrorKind::kNotMedcardCard, holder.error().message, options.json);
  const auto display = options.unmask ? terminal::SsnDisplay::kFull : terminal::SsnDisplay::kMasked;
  if (options.json) {
    std::cout << terminal::CardholderJson(*holder, display) << "\n";
  } else {
    std::cout << terminal::CardholderText(*holder, display);
  }
}

struct ChangePinOptions : CommonOptions {
  bool pin_stdin = false;
};

void RunChangePin(const ChangePinOptions& options) {
  PosContext context(options, Needs{.psam = false});
  SecretString old_pin, new_pin, repeated;
  if (options.pin_stdin) {
    // Two lines: the current PIN, then the new one.
    ReadPin(true, "", old_pin);
    ReadPin(true, "", new_pin);
  } else {
    if (::isatty(STDIN_FILENO) != 1) {
      Fail(ErrorKind::kPinRequired, "no PIN: use --pin-stdin or run on a terminal", options.json);
    }
    ReadSecretLine("current PIN: ", old_pin);
    ReadSecretLine("new PIN: ", new_pin);
    ReadSecretLine("new PIN again: ", repeated);
    if (repeated.value != new_pin.value) {
      Fail(ErrorKind::kBadAmount, "the new PINs differ; nothing changed", options.json);
    }
  }
  if (old_pin.value.empty() || new_pin.value.empty()) {
    Fail(ErrorKind::kPinRequired, "change-pin needs the current and the new PIN", options.json);
  }
  ConnectCard(context.card(), options.json);
  auto app = terminal::SelectMedicalApplication(context.card());
  if (!app.ok()) Fail(ErrorKind::kNotMedcardCard, app.error().message, options.json);
  const terminal::PinOutcome outcome =
      terminal::ChangePin(context.card(), old_pin.value, new_pin.value);
  switch (outcome.failure) {
    case terminal::PinFailure::kNone:
      break;
    case terminal::PinFailure::kFormat:
      Fail(ErrorKind::kBadAmount, outcome.message, options.json);
    case terminal::PinFailure::kWrongPin:
      Fail(outcome.tries_left == 0 ? ErrorKind::kPinBlocked : ErrorKind::kWrongPin, outcome.message,
           options.json);
    case terminal::PinFailure::kBlocked:
      Fail(ErrorKind::kPinBlocked, outcome.message, options.json);
    case terminal::PinFailure::kCardError:
      Fail(ErrorKind::kDeclinedByCard, outcome.message, options.json);
  }
  if (options.json) {
    std::cout << json{{"ok", true}}.dump() << "\n";
  } else {
    std::printf("PIN changed\n");
  }
}

struct LoadOptions : CommonOptions {
  std::string amount;
  bool ep = false, pin_stdin = false;
};

void RunLoad(const LoadOptions& options) {
  const std::uint32_t amount = AmountOrFail(options.amount, options.json);
  PosContext context(options, Needs{.psam = true, .host = true});
  const terminal::Wallet wallet = options.ep ? terminal::Wallet::kEp : terminal::Wallet::kEd;
  SecretString pin;
  std::optional<std::string> given;
  // Every load is authorised by the cardholder's PIN, to the EP too.
  ReadPin(options.pin_stdin, "PIN", pin);
  if (!pin.value.empty()) given = pin.value;
  auto loaded = context.terminal().LoadOnline(wallet, amount, given);
  if (given) OPENSSL_cleanse(given->data(), given->size());
  const terminal::LoadResult result = Require(std::move(loaded), options.json);
  if (options.json) {
    std::cout << json{{"ok", true},
                      {"wallet", terminal::WalletName(wallet)},
                      {"amount_fen", amount},
                      {"balance_after_fen", result.balance_after},
                      {"online_serial", result.online_serial},
                      {"tac", ToHex(result.tac)}}
                     .dump()
              << "\n";
  } else {
    std::printf("loaded %s to the %s: balance %s (TAC %s)\n", FormatFen(amount).c_str(),
                terminal::WalletName(wallet), FormatFen(result.balance_after).c_str(),
                ToHex(result.tac).c_str());
  }
}

void RunRecover(const CommonOptions& options) {
  PosContext context(options, Needs{});
  PrintRecovery(Require(context.terminal().RecoverPending(), options.json), options.json);
}

void RunSettle(const CommonOptions& options) {
  PosContext context(options, Needs{.psam = true, .host = true});
  const pos::DayEndReport r = Require(context.terminal().DayEnd(), options.json);
  if (options.json) {
    std::cout << json{{"ok", true},
                      {"key_version", r.key_version},
                      {"loads_confirmed", r.loads_confirmed},
                      {"purchases_uploaded", r.purchases_uploaded},
                      {"settled_batch", r.settled_batch},
                      {"purchase_count", r.totals.purchase_count},
                      {"purchase_amount_fen", r.totals.purchase_amount},
                      {"load_count", r.totals.load_count},
                      {"load_amount_fen", r.totals.load_amount},
                      {"psam_cleared", r.psam_cleared},
                      {"blacklist_version", r.blacklist_version},
                      {"parameters_version", r.parameters_version},
                      {"still_pending", r.still_pending}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("signed on: working keys version %u\n", r.key_version);
  if (r.loads_confirmed > 0) std::printf("%d load confirmation(s) sent\n", r.loads_confirmed);
  std::printf("%zu purchase(s) uploaded\n", r.purchases_uploaded);
  if (r.settled_batch != 0) {
    std::printf("batch %06u settled: %u purchase(s) %s, %u load(s) %s%s\n", r.settled_batch,
                r.totals.purchase_count, FormatFen(r.totals.purchase_amount).c_str(),
                r.totals.load_count, FormatFen(r.totals.load_amount).c_str(),
                r.psam_cleared ? "; PSAM totals cleared" : "");
  }
  std::printf("blacklist version %u, parameters version %u\n", r.blacklist_version,
              r.parameters_version);
  if (r.still_pending > 0) {
    std::printf("%zu torn purchase(s) still wait for their card (medcard pos recover)\n",
                r.still_pending);
  }
}

// ---- Interactive --------------------------------------------------------------------------------

bool PromptLine(const std::string& prompt, std::string& line) {
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  return static_cast<bool>(std::getline(std::cin, line));
}

// One cashier session: wait for a card, settle any torn purchase of it, ask the amount and the
// wallet, the PIN (not echoed) for the ED, print the receipt, wait for the card to go.
void RunInteractive(const CommonOptions& options) {
  PosContext context(options, Needs{});
  reader::Reader& card = context.card();
  std::fprintf(stderr, "medcard POS %s / %s — empty amount or Ctrl-D ends\n",
               context.config().merchant_id.c_str(), context.config().terminal_id.c_str());
  if (auto startup = context.terminal().RecoverPending(); startup.ok()) {
    if (!startup->purchases.empty()) PrintRecovery(*startup, false);
  } else {
    std::fprintf(stderr, "recovery: %s\n", startup.error().message.c_str());
  }
  for (;;) {
    std::string amount_text;
    if (!PromptLine("amount (yuan): ", amount_text) || amount_text.empty()) return;
    auto amount = ParseAmount(amount_text);
    if (!amount.ok()) {
      std::fprintf(stderr, "%s\n", amount.error().message.c_str());
      continue;
    }
    std::string wallet_text;
    if (!PromptLine("wallet [ED/ep]: ", wallet_text)) return;
    const bool ep = wallet_text == "ep" || wallet_text == "EP";
    std::fprintf(stderr, "insert the card...\n");
    auto inserted = card.WaitForCard(std::chrono::minutes(2));
    if (!inserted.ok()) {
      std::fprintf(stderr, "card reader: %s\n", inserted.error().message.c_str());
      return;
    }
    if (!*inserted) {
      std::fprintf(stderr, "no card: sale abandoned\n");
      continue;
    }
    pos::PurchaseOrder order;
    order.wallet = ep ? terminal::Wallet::kEp : terminal::Wallet::kEd;
    order.amount = *amount;
    SecretString pin;
    if (!ep) {
      ReadSecretLine("PIN: ", pin);
      order.pin = pin.value;
    }
    auto receipt = context.terminal().Purchase(order);
    if (order.pin) OPENSSL_cleanse(order.pin->data(), order.pin->size());
    if (receipt.ok()) {
      std::cout << receipt->Text() << std::flush;
    } else {
      std::fprintf(stderr, "DECLINED (%s): %s\n", pos::ErrorKindName(receipt.error().kind),
                   receipt.error().message.c_str());
    }
    (void)card.Disconnect();
    // A card image never leaves its reader; a real card is taken before the next sale.
    if (!context.config().card_reader.starts_with("image:")) {
      std::fprintf(stderr, "remove the card\n");
      (void)card.WaitForRemoval(std::chrono::minutes(5));
    }
  }
}

void AddCommon(CLI::App* cmd, CommonOptions& options, bool with_json = true) {
  cmd->add_option("--config", options.config, "The terminal's configuration file (pos.json)");
  if (with_json) cmd->add_flag("--json", options.json, "One JSON object on stdout");
}

}  // namespace

void AddPosCommands(CLI::App& app) {
  CLI::App* pos_group = app.add_subcommand("pos", "The hospital and pharmacy POS terminal");
  pos_group->require_subcommand(1);
  {
    auto options = std::make_shared<InitOptions>();
    CLI::App* cmd = pos_group->add_subcommand(
        "init", "Install the terminal: import the TMK delivery, check the PSAM, sign on");
    AddCommon(cmd, *options);
    cmd->add_option("--tmk", options->tmk_file,
                    "The TMK delivery file (medcard host terminals export-tmk)")
        ->required();
    cmd->callback([options] { RunInit(*options); });
  }
  {
    auto options = std::make_shared<PurchaseOptions>();
    CLI::App* cmd = pos_group->add_subcommand("purchase", "An offline purchase");
    AddCommon(cmd, *options);
    cmd->add_option("--amount", options->amount, "Yuan, e.g. 12.50")->required();
    cmd->add_flag("--ep", options->ep, "From the EP (no PIN); default the ED");
    cmd->add_flag("--pin-stdin", options->pin_stdin, "Read the PIN from the first line of stdin");
    cmd->add_option("--visit-type", options->visit_type,
                    "Append a visit record (SSSE EF08) of this type, e.g. 1 outpatient")
        ->check(CLI::Range(0, 255));
    cmd->add_option("--diagnosis", options->diagnosis, "The visit's ICD-10 code, e.g. J06.9");
    cmd->add_option("--visit-total", options->visit_total,
                    "The visit's total in yuan (default: the amount)");
    cmd->add_option("--paid-by-pool", options->paid_by_pool,
                    "The pooled fund's part in yuan (default 0)");
    cmd->callback([options] { RunPurchase(*options); });
  }
  {
    auto options = std::make_shared<BalanceOptions>();
    CLI::App* cmd =
        pos_group->add_subcommand("balance", "The EP balance, and the ED's when the PIN is given");
    AddCommon(cmd, *options);
    cmd->add_flag("--pin-stdin", options->pin_stdin, "Read the PIN from the first line of stdin");
    cmd->callback([options] { RunBalance(*options); });
  }
  {
    auto options = std::make_shared<CommonOptions>();
    CLI::App* cmd = pos_group->add_subcommand("history", "The card's last 10 transactions");
    AddCommon(cmd, *options);
    cmd->callback([options] { RunHistory(*options); });
  }
  {
    auto options = std::make_shared<CardholderOptions>();
    CLI::App* cmd = pos_group->add_subcommand(
        "cardholder", "The cardholder's data (social-security number masked)");
    AddCommon(cmd, *options);
    cmd->add_flag("--unmask", options->unmask, "Show the whole social-security number");
    cmd->callback([options] { RunCardholder(*options); });
  }
  {
    auto options = std::make_shared<ChangePinOptions>();
    CLI::App* cmd = pos_group->add_subcommand("change-pin", "Change the cardholder's PIN");
    AddCommon(cmd, *options);
    cmd->add_flag("--pin-stdin", options->pin_stdin,
                  "Read the current PIN, then the new one, one line each from stdin");
    cmd->callback([options] { RunChangePin(*options); });
  }
  {
    auto options = std::make_shared<LoadOptions>();
    CLI::App* cmd = pos_group->add_subcommand("load", "An online load through the host");
    AddCommon(cmd, *options);
    cmd->add_option("--amount", options->amount, "Yuan, e.g. 100.00")->required();
    cmd->add_flag("--ep", options->ep, "To the EP; default the ED (both need the PIN)");
    cmd->add_flag("--pin-stdin", options->pin_stdin, "Read the PIN from the first line of stdin");
    cmd->callback([options] { RunLoad(*options); });
  }
  {
    auto options = std::make_shared<CommonOptions>();
    CLI::App* cmd = pos_group->add_subcommand(
        "recover", "Settle torn purchases of the card in the reader; re-credit the PSAM");
    AddCommon(cmd, *options);
    cmd->callback([options] { RunRecover(*options); });
  }
  {
    auto options = std::make_shared<CommonOptions>();
    CLI::App* cmd = pos_group->add_subcommand(
        "settle", "Day end: sign-on, upload, settlement, PSAM totals cleared, downloads");
    AddCommon(cmd, *options);
    cmd->callback([options] { RunSettle(*options); });
  }
  {
    auto options = std::make_shared<CommonOptions>();
    CLI::App* cmd = pos_group->add_subcommand(
        "interactive", "The cashier's loop: amount, card, PIN (not echoed), receipt");
    AddCommon(cmd, *options, false);
    cmd->callback([options] { RunInteractive(*options); });
  }
}

}  // namespace medcard::cli
