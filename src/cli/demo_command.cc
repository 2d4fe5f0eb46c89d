// medcard demo: the card platform end to end on embedded defaults. A TEST card and a TEST PSAM
// are issued from the published test key set into a fresh data directory, put into real PC/SC
// readers (pcscd + vpcd) when pcscd is there, else into in-process readers; then the card is
// loaded online (the test issuer plays the bank host), pays at the PSAM terminal offline, and the
// issuer verifies every TAC and acknowledges the PSAM's signed totals.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/render.h"
#include "common/money.h"
#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard::cli {
namespace {

struct Options {
  std::string dir = "medcard-demo";
  std::string readers = "auto";
  bool quiet = false;
};

void Say(const Options& o, const std::string& line) {
  if (!o.quiet) std::printf("%s\n", line.c_str());
}

bool VpcdAvailable() {
  auto names = reader::ListReaders();
  if (!names.ok()) return false;
  auto has = [&](const std::string& n) {
    return std::find(names->begin(), names->end(), n) != names->end();
  };
  return has(reader::VpcdReaderName(0)) && has(reader::VpcdReaderName(1));
}

// A card or PSAM in a vpcd slot, served on its own thread until the demo ends.
class AttachedDevice {
 public:
  AttachedDevice(std::shared_ptr<iso7816::Icc> icc, unsigned slot)
      : bridge_(std::move(icc), slot), thread_([this] { result_ = bridge_.Run(); }) {}
  ~AttachedDevice() {
    bridge_.Stop();
    thread_.join();
  }

 private:
  reader::VpcdBridge bridge_;
  Status result_;
  std::thread thread_;
};

std::unique_ptr<reader::Reader> OpenPcsc(unsigned slot) {
  auto r = Check(reader::PcscReader::Open(reader::VpcdReaderName(slot)), "PC/SC reader");
  auto present = Check(r->WaitForCard(std::chrono::seconds(5)), r->Name());
  if (!present) throw CommandFailed("no card appeared in " + r->Name());
  Check(r->Connect(), r->Name());
  return r;
}

void RunDemo(const Options& o) {
  namespace fs = std::filesystem;
  fs::create_directories(o.dir);
  const std::string card_path = (fs::path(o.dir) / "card.img").string();
  const std::string psam_path = (fs::path(o.dir) / "psam.img").string();
  fs::remove(card_path);
  fs::remove(psam_path);
  Say(o, "medcard demo — data directory " + fs::absolute(o.dir).string());

  const auto& keys = issuance::TestKeySet::Embedded();
  issuance::TestIssuerHost issuer(keys);
  const Bytes asn = HexToBytes("11000000000000000001");
  const Bytes terminal_number = HexToBytes("000000000001");
  const std::string pin = "123456";

  std::shared_ptr<card::Card> card =
      Check(issuance::IssueTestCard(keys, Check(nvm::OpenFileMedium(card_path), card_path),
                                    issuance::TestHolder(asn, pin)),
            "issuing the card");
  std::shared_ptr<psam::Psam> psam =
      Check(issuance::IssueTestPsam(keys, Check(nvm::OpenFileMedium(psam_path), psam_path),
                                    HexToBytes("50000000000000000001"), terminal_number),
            "issuing the PSAM");
  Say(o, "issued TEST card " + ToHex(asn) + " (PIN " + pin +
             ", test card) and TEST PSAM for terminal " + ToHex(terminal_number));

  bool use_pcsc = o.readers == "pcsc" || (o.readers == "auto" && VpcdAvailable());
  if (o.readers == "pcsc" && !VpcdAvailable()) {
    throw CommandFailed("--readers pcsc: pcscd with the vpcd readers is not running (start pcscd)");
  }
  std::unique_ptr<AttachedDevice> card_slot, psam_slot;
  std::unique_ptr<reader::Reader> card_reader, psam_reader;
  if (use_pcsc) {
    card_slot = std::make_unique<AttachedDevice>(card, 0);
    psam_slot = std::make_unique<AttachedDevice>(psam, 1);
    card_reader = OpenPcsc(0);
    psam_reader = OpenPcsc(1);
    Say(o, "readers: PC/SC — card in \"" + card_reader->Name() + "\", PSAM in \"" +
               psam_reader->Name() + "\" (pcscd + vpcd)");
  } else {
    card_reader = std::make_unique<reader::InProcessReader>("in-process card reader", card);
    psam_reader = std::make_unique<reader::InProcessReader>("in-process PSAM reader", psam);
    Check(card_reader->Connect(), "card reader");
    Check(psam_reader->Connect(), "PSAM reader");
    Say(o, "readers: in-process (pcscd with vpcd not available)");
  }

  const Date today = Today();
  TimeOfDay now = Now();
  auto app = Check(terminal::SelectMedicalApplication(*card_reader), "card");
  Say(o, "card selected: ASN " + ToHex(app.asn) + (app.test_card ? " [TEST CARD]" : ""));

  // A wrong PIN first: the card counts it.
  Status wrong = terminal::VerifyPin(*card_reader, "000000");
  Say(o, "wrong PIN entered → " + (wrong.ok() ? std::string("accepted?!") : wrong.error().message));
  if (wrong.ok()) throw CommandFailed("the card accepted a wrong PIN");
  Check(terminal::VerifyPin(*card_reader, pin), "PIN");
  Say(o, "PIN verified");

  auto load = [&](terminal::Wallet w, std::uint32_t amount) {
    terminal::LoadRequest req{w, amount, terminal_number, today, now};
    auto r = Check(terminal::Load(*card_reader, issuer, app, req), "load");
    Say(o, std::string("online load ") + terminal::WalletName(w) + " " + FormatFen(amount) +
               " → balance " + FormatFen(r.balance_after) + ", TAC " + ToHex(r.tac) +
               " verified by the issuer");
  };
  load(terminal::Wallet::kEd, 50000);
  load(terminal::Wallet::kEp, 5000);

  std::int64_t purchased = 0;
  int purchases = 0;
  auto purchase = [&](terminal::Wallet w, std::uint32_t amount, const char* where) {
    now = Now();
    terminal::PurchaseRequest req{w, amount, today, now};
    auto r = terminal::Purchase(*card_reader, *psam_reader, app, req);
    if (!r.ok()) {
      Say(o, std::string(where) + ": " + terminal::WalletName(w) + " " + FormatFen(amount) +
                 " refused — " + r.error().message);
      return false;
    }
    Check(issuer.VerifyPurchaseTac(*r), "TAC");
    purchased += amount;
    ++purchases;
    Say(o, std::string(where) + ": " + terminal::WalletName(w) + " purchase " + FormatFen(amount) +
               " → balance " + FormatFen(r->balance_after) + ", terminal serial " +
               std::to_string(r->terminal_serial) + ", TAC " + ToHex(r->tac) + " verified");
    return true;
  };
  purchase(terminal::Wallet::kEd, 1250, "outpatient clinic");
  purchase(terminal::Wallet::kEd, 8630, "pharmacy");
  purchase(terminal::Wallet::kEp, 380, "pharmacy (purse, no PIN)");
  if (purchase(terminal::Wallet::kEp, 900000, "pharmacy")) {
    throw CommandFailed("a purchase over the balance went through");
  }

  auto ed = Check(terminal::GetBalance(*card_reader, terminal::Wallet::kEd), "balance");
  auto ep = Check(terminal::GetBalance(*card_reader, terminal::Wallet::kEp), "balance");
  Say(o, "balances: ED " + FormatFen(ed) + ", EP " + FormatFen(ep));
  auto log = Check(terminal::ReadTransactionLog(*card_reader), "log");
  Say(o, "card log: " + std::to_string(log.size()) + " records");

  // Day end: the PSAM signs its totals for the issuer, who acknowledges them.
  Bytes challenge = crypto::RandomBytes(8);
  auto totals = Check(reader::Send(*psam_reader, iso7816::CommandApdu::Case4(0x80, 0x7A, 0x00, 0x00,
                                                                             challenge, 22)),
                      "GET SAM TOTALS");
  if (!totals.ok()) throw CommandFailed("GET SAM TOTALS: " + totals.sw.ToString());
  auto ack =
      Check(issuer.AcknowledgeSamTotals(HexToBytes("50000000000000000001"), challenge, totals.data),
            "SAM totals");
  std::uint32_t count = ReadU32(totals.data, 0);
  std::uint64_t amount = ReadU48(totals.data, 4);
  Say(o, "PSAM signed totals: " + std::to_string(count) + " purchases, " +
             FormatFen(static_cast<std::int64_t>(amount)) + " — signature verified");
  if (count != static_cast<std::uint32_t>(purchases) ||
      amount != static_cast<std::uint64_t>(purchased)) {
    throw CommandFailed("PSAM totals do not match the purchases made");
  }
  auto clear =
      Check(reader::Send(*psam_reader, iso7816::CommandApdu::Case3(0x80, 0x7C, 0x00, 0x00, ack)),
            "CLEAR SAM TOTALS");
  if (!clear.ok()) throw CommandFailed("CLEAR SAM TOTALS: " + clear.sw.ToString());
  Say(o, "PSAM totals cleared with the issuer's acknowledgement");
  if (50000 - ed + 5000 - ep != static_cast<std::uint32_t>(purchased)) {
    throw CommandFailed("card balances do not add up");
  }
  Say(o, "reconciliation: loaded " + FormatFen(55000) + " = on card " + FormatFen(ed + ep) +
             " + spent " + FormatFen(purchased) + " — clean");
  Say(o, "inspect the card: medcard card show " + card_path);
}

}  // namespace

void AddDemoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "run the scheme on embedded defaults and show it working");
  static Options options;
  cmd->add_option("--dir", options.dir, "data directory (created)");
  cmd->add_option("--readers", options.readers, "auto | pcsc | inproc")
      ->check(CLI::IsMember({"auto", "pcsc", "inproc"}));
  cmd->add_flag("--quiet", options.quiet, "print nothing but errors");
  cmd->callback([] { RunDemo(options); });
}

}  // namespace medcard::cli
