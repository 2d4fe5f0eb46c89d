// medcard card new | show | attach, medcard psam new | show | attach.
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "card/card.h"
#include "cli/commands.h"
#include "cli/render.h"
#include "crypto/crypto.h"
#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "psam/psam.h"
#include "reader/reader.h"

namespace medcard::cli {
namespace {

Bytes ParseHexOption(const std::string& text, std::size_t length, const std::string& what) {
  auto b = FromHex(text);
  if (!b || b->size() != length) {
    throw CommandFailed(what + " must be " + std::to_string(length * 2) + " hex digits");
  }
  return *b;
}

std::unique_ptr<nvm::Medium> NewImageFile(const std::string& path, bool force) {
  if (std::filesystem::exists(path)) {
    if (!force) throw CommandFailed(path + " exists (use --force to replace it)");
    std::filesystem::remove(path);
  }
  return Check(nvm::OpenFileMedium(path), path);
}

std::unique_ptr<nvm::Medium> ExistingImageFile(const std::string& path) {
  if (!std::filesystem::exists(path)) throw CommandFailed(path + ": no such image");
  return Check(nvm::OpenFileMedium(path), path);
}

std::atomic<reader::VpcdBridge*> g_bridge{nullptr};
void StopBridge() {
  if (auto* b = g_bridge.load()) b->Stop();
}

// Serves `icc` in vpcd slot `slot` until interrupted.
void Attach(std::shared_ptr<iso7816::Icc> icc, const std::string& what, unsigned slot,
            const std::string& host) {
  reader::VpcdBridge::Options options;
  options.host = host;
  options.slot = slot;
  options.on_event = [](std::string_view event) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(event.size()), event.data());
  };
  reader::VpcdBridge bridge(std::move(icc), options);
  g_bridge = &bridge;
  OnInterrupt(StopBridge);
  std::printf("%s inserted in \"%s\" (vpcd %s:%u); Ctrl-C removes it\n", what.c_str(),
              reader::VpcdReaderName(slot).c_str(), host.c_str(),
              static_cast<unsigned>(reader::kVpcdBasePort + slot));
  std::fflush(stdout);
  Status run = bridge.Run();
  g_bridge = nullptr;
  Check(run, what);
  std::printf("%s removed\n", what.c_str());
}

}  // namespace

void OnInterrupt(void (*stop)()) {
  static void (*handler)() = nullptr;
  handler = stop;
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    if (handler) handler();
  };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void AddCardCommands(CLI::App& app) {
  auto* card = app.add_subcommand("card", "virtual cards: create, inspect, attach to pcscd");
  card->require_subcommand(1);

  {
    auto* cmd = card->add_subcommand(
        "new", "issue a TEST card (published test key set) into a virtual card image");
    static std::string image, asn_hex, pin;
    static bool force = false;
    cmd->add_option("image", image, "card image file to create")->required();
    cmd->add_option("--asn", asn_hex, "application serial number, 20 hex digits (default random)");
    cmd->add_option("--pin", pin, "6-digit PIN (default random, printed once)");
    cmd->add_flag("--force", force, "replace an existing image");
    cmd->callback([] {
      Bytes asn = asn_hex.empty() ? Concat({HexToBytes("1100"), crypto::RandomBytes(8)})
                                  : ParseHexOption(asn_hex, 10, "--asn");
      bool pin_given = !pin.empty();
      if (!pin_given) {
        Bytes r = crypto::RandomBytes(6);
        for (auto b : r) pin.push_back(static_cast<char>('0' + b % 10));
      }
      if (pin.size() != 6 || pin.find_first_not_of("0123456789") != std::string::npos) {
        throw CommandFailed("--pin must be 6 digits");
      }
      auto issued =
          Check(issuance::IssueTestCard(issuance::TestKeySet::Embedded(),
                                        NewImageFile(image, force), issuance::TestHolder(asn, pin)),
                "issuing the card");
      std::printf("TEST card %s issued into %s (test key set: not for real money)\n",
                  ToHex(asn).c_str(), image.c_str());
      // The PIN goes to the holder once, like a PIN mailer; it is in no file and no log.
      if (!pin_given) std::printf("PIN mailer: %s\n", pin.c_str());
    });
  }
  {
    auto* cmd = card->add_subcommand("show", "files, balances, serials, log — never keys");
    static std::string image;
    static bool json = false;
    cmd->add_option("image", image, "card image file")->required();
    cmd->add_flag("--json", json, "machine-readable output");
    cmd->callback([] {
      auto c = Check(card::Card::Open(ExistingImageFile(image)), image);
      auto summary = c->Inspect();
      if (json) {
        std::cout << card::ToJson(summary).dump(2) << "\n";
      } else {
        std::cout << RenderCard(summary);
      }
    });
  }
  {
    auto* cmd = card->add_subcommand("attach", "insert the card into pcscd's vpcd reader");
    static std::string image, host = "127.0.0.1";
    static unsigned slot = 0;
    cmd->add_option("image", image, "card image file")->required();
    cmd->add_option("--slot", slot, "vpcd slot (0 or 1)")->check(CLI::Range(0, 1));
    cmd->add_option("--host", host, "where pcscd's vpcd listens");
    cmd->callback([] {
      std::shared_ptr<card::Card> c = Check(card::Card::Open(ExistingImageFile(image)), image);
      Attach(c, "card " + image, slot, host);
    });
  }
}

void AddPsamCommands(CLI::App& app) {
  auto* psam = app.add_subcommand("psam", "virtual PSAMs: create, inspect, attach to pcscd");
  psam->require_subcommand(1);
  {
    auto* cmd = psam->add_subcommand("new", "issue a TEST PSAM (published test key set)");
    static std::string image, terminal_no, serial_hex;
    static bool force = false;
    cmd->add_option("image", image, "PSAM image file to create")->required();
    cmd->add_option("--terminal-no", terminal_no, "terminal number, 12 hex digits")->required();
    cmd->add_option("--serial", serial_hex, "PSAM serial, 20 hex digits (default random)");
    cmd->add_flag("--force", force, "replace an existing image");
    cmd->callback([] {
      Bytes terminal = ParseHexOption(terminal_no, 6, "--terminal-no");
      Bytes serial = serial_hex.empty() ? Concat({HexToBytes("5000"), crypto::RandomBytes(8)})
                                        : ParseHexOption(serial_hex, 10, "--serial");
      Check(issuance::IssueTestPsam(issuance::TestKeySet::Embedded(), NewImageFile(image, force),
                                    serial, terminal),
            "issuing the PSAM");
      std::printf("TEST PSAM %s for terminal %s issued into %s\n", ToHex(serial).c_str(),
                  ToHex(terminal).c_str(), image.c_str());
    });
  }
  {
    auto* cmd = psam->add_subcommand("show", "serial, terminal, keys (no values), totals");
    static std::string image;
    static bool json = false;
    cmd->add_option("image", image, "PSAM image file")->required();
    cmd->add_flag("--json", json, "machine-readable output");
    cmd->callback([] {
      auto p = Check(psam::Psam::Open(ExistingImageFile(image)), image);
      auto inspection = p->Inspect();
      if (json) {
        std::cout << psam::ToJson(inspection).dump(2) << "\n";
      } else {
        std::cout << RenderPsam(inspection);
      }
    });
  }
  {
    auto* cmd = psam->add_subcommand("attach", "insert the PSAM into pcscd's vpcd reader");
    static std::string image, host = "127.0.0.1";
    static unsigned slot = 1;
    cmd->add_option("image", image, "PSAM image file")->required();
    cmd->add_option("--slot", slot, "vpcd slot (0 or 1)")->check(CLI::Range(0, 1));
    cmd->add_option("--host", host, "where pcscd's vpcd listens");
    cmd->callback([] {
      std::shared_ptr<psam::Psam> p = Check(psam::Psam::Open(ExistingImageFile(image)), image);
      Attach(p, "PSAM " + image, slot, host);
    });
  }
}

}  // namespace medcard::cli
