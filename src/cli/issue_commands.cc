// medcard issue card | issue psam: the personalisation station (docs/issuance.md);
// medcard card blank | psam blank: the chip factory for virtual devices.
//
// Keys stay in the key store; the PIN goes only into the PIN mailer (a 0600 file, or stdout
// when there is none) — never into the issuance log, an error message or the card image.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/key_store_access.h"
#include "crypto/crypto.h"
#include "issuance/holder.h"
#include "issuance/issuer.h"
#include "nvm/nvm.h"
#include "reader/reader.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

std::optional<Bytes> OptionalHex(const std::string& text, std::size_t length,
                                 const std::string& option) {
  if (text.empty()) return std::nullopt;
  auto bytes = FromHex(text);
  if (!bytes || bytes->size() != length) {
    throw CommandFailed(option + " must be " + std::to_string(length * 2) + " hex digits", 2);
  }
  return bytes;
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandFailed(path + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string OperatorName(const std::string& given) {
  if (!given.empty()) return given;
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "unknown";
}

// Where the issuance log lives: --log, else the software store's directory.
std::string LogDirectory(const std::string& given, const KeyStoreLocation& store) {
  if (!given.empty()) return given;
  if (store.is_pkcs11()) throw CommandFailed("a pkcs11: store has no directory: give --log DIR", 2);
  return store.directory();
}

// A new image file; an existing one is never overwritten (it may hold an issued card).
std::unique_ptr<nvm::Medium> NewImage(const std::string& path) {
  if (fs::exists(path)) throw CommandFailed(path + " exists: a card image is never overwritten");
  return Check(nvm::OpenFileMedium(path), path);
}

// The PIN mailer file: created before personalisation (so a card never gets a PIN nobody can
// be told), mode 0600, never over an existing file.
class MailerFile {
 public:
  explicit MailerFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      throw CommandFailed("PIN mailer " + path_ + ": " + std::strerror(errno) +
                          (errno == EEXIST ? " (a mailer is never overwritten)" : ""));
    }
  }
  ~MailerFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(path_.c_str());  // not written: the card was not issued
    }
  }
  MailerFile(const MailerFile&) = delete;
  MailerFile& operator=(const MailerFile&) = delete;

  void Write(std::string text) {
    std::string_view rest = text;
    bool ok = true;
    while (ok && !rest.empty()) {
      const ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) rest.remove_prefix(static_cast<std::size_t>(n));
    }
    ok = ok && ::fsync(fd_) == 0;
    ok = ::close(fd_) == 0 && ok;
    fd_ = -1;
    OPENSSL_cleanse(text.data(), text.size());
    if (!ok) {
      throw CommandFailed("the card is issued but its PIN mailer " + path_ +
                          " could not be written: " + std::strerror(errno) +
                          " — reset the PIN at a branch (PIN UNBLOCK)");
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// A PC/SC reader with a card in it.
std::unique_ptr<reader::PcscReader> ReaderWithCard(const std::string& name) {
  auto opened = Check(reader::PcscReader::Open(name), "reader");
  auto present = Check(opened->WaitForCard(std::chrono::seconds(5)), "reader " + opened->Name());
  if (!present) throw CommandFailed("no card in reader " + opened->Name());
  return opened;
}

Bytes NewChipSerial(const std::string& given) {
  auto chip = OptionalHex(given, 8, "--chip-serial");
  return chip ? *chip : crypto::RandomBytes(8);
}

struct IssueOptions {
  KeyStoreLocation store;
  std::string out, reader_name, log_dir, operator_name;
};

void AddTargetOptions(CLI::App* cmd, IssueOptions& o, const char* device) {
  AddKeyStoreOptions(cmd, o.store);
  auto* out = cmd->add_option("--out", o.out,
                              std::string("make a new virtual ") + device + " image and issue it");
  auto* reader = cmd->add_option("--reader", o.reader_name,
                                 std::string("issue the blank ") + device +
                                     " in this PC/SC reader (name, index or unique part)");
  out->excludes(reader);
  reader->excludes(out);
  cmd->add_option("--log", o.log_dir, "issuance log directory (default: the store directory)");
  cmd->add_option("--operator", o.operator_name, "operator name for the log (default: $USER)");
}

void RequireTarget(const IssueOptions& o) {
  if (o.out.empty() && o.reader_name.empty())
    throw CommandFailed("give --out IMAGE or --reader NAME", 2);
}

void IssueCardCommand(CLI::App* group) {
  auto* cmd = group->add_subcommand("card", "personalise a blank card for a cardholder");
  static IssueOptions o;
  static std::string holder_file, asn_hex, asn_prefix, pin, mailer;
  AddTargetOptions(cmd, o, "card");
  cmd->add_option("--holder", holder_file, "HOLDER.json (docs/issuance.md)")->required();
  cmd->add_option("--asn", asn_hex,
                  "application serial number, 20 hex digits (default: allocated)");
  cmd->add_option("--asn-prefix", asn_prefix, "allocate the ASN under this hex prefix");
  cmd->add_option("--pin", pin, "6-digit PIN (default: random)");
  cmd->add_option("--mailer", mailer, "write the PIN mailer to this new file (default: stdout)");
  cmd->callback([] {
    RequireTarget(o);
    const Date today = Today();
    auto holder = Check(issuance::ParseHolderJson(ReadTextFile(holder_file), today), holder_file);
    issuance::CardIssueRequest request;
    request.holder = holder;
    request.asn = OptionalHex(asn_hex, 10, "--asn");
    request.asn_prefix = asn_prefix;
    if (pin.empty()) {
      request.pin = issuance::RandomPin();
    } else {
      if (pin.size() != 6 || pin.find_first_not_of("0123456789") != std::string::npos) {
        throw CommandFailed("--pin must be 6 digits", 2);
      }
      request.pin = pin;
    }
    std::unique_ptr<MailerFile> mailer_file;
    if (!mailer.empty()) mailer_file = std::make_unique<MailerFile>(mailer);

    auto store = OpenKeyStore(o.store);
    const std::string log_dir = LogDirectory(o.log_dir, o.store);
    auto log = Check(issuance::IssuanceLog::Open(log_dir), "issuance log");
    auto config = Check(issuance::IssuanceConfig::Load(log_dir), "issuance config");
    issuance::Issuer issuer(*store, *log, config, OperatorName(o.operator_name));
    issuer.set_issue_date(today);

    Result<issuance::IssuedCard> issued = MakeError("");
    if (!o.out.empty()) {
      // The chip factory's part: a blank card with its transport key, then the station's.
      std::shared_ptr<card::Card> blank =
          Check(issuance::ManufactureBlankCard(*store, NewImage(o.out), View(NewChipSerial(""))),
                "making a blank card");
      reader::InProcessReader station("personalisation station", blank);
      issued = issuer.IssueCard(station, request);
      if (!issued.ok() && blank->Inspect().files.size() <= 1) fs::remove(o.out);  // still blank
    } else {
      auto card_reader = ReaderWithCard(o.reader_name);
      issued = issuer.IssueCard(*card_reader, request);
    }
    const auto& card = Check(std::move(issued), "issuing the card");
    std::printf("%scard %s issued for %s into %s (chip %s, key version %u)\n",
                card.test_card ? "TEST " : "", ToHex(View(card.asn)).c_str(), holder.name.c_str(),
                o.out.empty() ? o.reader_name.c_str() : o.out.c_str(),
                ToHex(View(card.chip_serial)).c_str(), static_cast<unsigned>(card.key_version));
    std::printf("logged in %s\n", log->path().c_str());
    std::string text = issuance::PinMailerText(holder, View(card.asn), request.pin, today);
    if (mailer_file) {
      mailer_file->Write(std::move(text));
      std::printf("PIN mailer written to %s\n", mailer.c_str());
    } else {
      std::printf("\n%s", text.c_str());
    }
  });
}

void IssuePsamCommand(CLI::App* group) {
  auto* cmd = group->add_subcommand("psam", "personalise a blank PSAM for a terminal");
  static IssueOptions o;
  static std::string terminal_no, serial_hex, serial_prefix, chip_hex;
  AddTargetOptions(cmd, o, "PSAM");
  cmd->add_option("--terminal-no", terminal_no, "terminal number, 12 hex digits")->required();
  cmd->add_option("--serial", serial_hex, "PSAM serial, 20 hex digits (default: allocated)");
  cmd->add_option("--serial-prefix", serial_prefix, "allocate the PSAM serial under this prefix");
  cmd->add_option("--chip-serial", chip_hex,
                  "chip serial, 16 hex digits (--out: the new PSAM's; --reader: for a PSAM that "
                  "does not report it)");
  cmd->callback([] {
    RequireTarget(o);
    issuance::PsamIssueRequest request;
    request.terminal_number = OptionalHex(terminal_no, 6, "--terminal-no").value_or(Bytes{});
    request.psam_serial = OptionalHex(serial_hex, 10, "--serial");
    request.serial_prefix = serial_prefix;
    request.chip_serial = OptionalHex(chip_hex, 8, "--chip-serial");

    auto store = OpenKeyStore(o.store);
    const std::string log_dir = LogDirectory(o.log_dir, o.store);
    auto log = Check(issuance::IssuanceLog::Open(log_dir), "issuance log");
    auto config = Check(issuance::IssuanceConfig::Load(log_dir), "issuance config");
    issuance::Issuer issuer(*store, *log, config, OperatorName(o.operator_name));

    Result<issuance::IssuedPsam> issued = MakeError("");
    if (!o.out.empty()) {
      const Bytes chip = NewChipSerial(chip_hex);
      request.chip_serial = chip;
      std::shared_ptr<psam::Psam> blank =
          Check(issuance::ManufactureBlankPsam(*store, NewImage(o.out), View(chip)),
                "making a blank PSAM");
      reader::InProcessReader station("personalisation station", blank);
      issued = issuer.IssuePsam(station, request);
      if (!issued.ok() && blank->Inspect().psam_serial == Bytes(10, 0x00)) fs::remove(o.out);
    } else {
      auto psam_reader = ReaderWithCard(o.reader_name);
      issued = issuer.IssuePsam(*psam_reader, request);
    }
    const auto& psam = Check(std::move(issued), "issuing the PSAM");
    std::printf("%sPSAM %s issued for terminal %s into %s (chip %s)\n",
                psam.test_psam ? "TEST " : "", ToHex(View(psam.psam_serial)).c_str(),
                ToHex(View(psam.terminal_number)).c_str(),
                o.out.empty() ? o.reader_name.c_str() : o.out.c_str(),
                ToHex(View(psam.chip_serial)).c_str());
    for (const auto& key : psam.keys) {
      std::printf("  key %-13s v%u  KCV %s\n", key.name.c_str(), static_cast<unsigned>(key.version),
                  key.kcv.c_str());
    }
    std::printf("logged in %s\n", log->path().c_str());
  });
}

CLI::App* Group(CLI::App& app, const char* name, const char* description) {
  auto found = app.get_subcommands([name](CLI::App* sub) { return sub->get_name() == name; });
  if (!found.empty()) return found.front();
  auto* group = app.add_subcommand(name, description);
  group->require_subcommand(1);
  return group;
}

void BlankCommands(CLI::App& app) {
  {
    auto* cmd = Group(app, "card", "virtual cards")
                    ->add_subcommand("blank",
                                     "make a blank virtual card as the chip factory delivers it "
                                     "(transport key from the store)");
    static std::string image, chip_hex;
    static KeyStoreLocation store_location;
    cmd->add_option("image", image, "card image file to create")->required();
    AddKeyStoreOptions(cmd, store_location);
    cmd->add_option("--chip-serial", chip_hex, "chip serial, 16 hex digits (default: random)");
    cmd->callback([] {
      const Bytes chip = NewChipSerial(chip_hex);
      auto store = OpenKeyStore(store_location);
      Check(issuance::ManufactureBlankCard(*store, NewImage(image), View(chip)),
            "making a blank card");
      std::printf(
          "blank card, chip serial %s, in %s: attach it (medcard card attach) and issue it "
          "(medcard issue card --reader)\n",
          ToHex(View(chip)).c_str(), image.c_str());
    });
  }
  {
    auto* cmd =
        Group(app, "psam", "virtual PSAMs")
            ->add_subcommand("blank", "make a blank virtual PSAM as the chip factory delivers it");
    static std::string image, chip_hex;
    static KeyStoreLocation store_location;
    cmd->add_option("image", image, "PSAM image file to create")->required();
    AddKeyStoreOptions(cmd, store_location);
    cmd->add_option("--chip-serial", chip_hex, "chip serial, 16 hex digits (default: random)");
    cmd->callback([] {
      const Bytes chip = NewChipSerial(chip_hex);
      auto store = OpenKeyStore(store_location);
      Check(issuance::ManufactureBlankPsam(*store, NewImage(image), View(chip)),
            "making a blank PSAM");
      std::printf(
          "blank PSAM, chip serial %s, in %s: attach it (medcard psam attach) and issue it "
          "(medcard issue psam --reader ... --chip-serial %s)\n",
          ToHex(View(chip)).c_str(), image.c_str(), ToHex(View(chip)).c_str());
    });
  }
}

}  // namespace

void AddIssueCommands(CLI::App& app) {
  auto* group = app.add_subcommand("issue", "personalise cards and PSAMs with keys from the store");
  group->require_subcommand(1);
  IssueCardCommand(group);
  IssuePsamCommand(group);
  BlankCommands(app);
}

}  // namespace medcard::cli
