// medcard reader list | apdu
#include <cstdio>

#include "cli/commands.h"
#include "iso7816/apdu.h"
#include "reader/reader.h"

namespace medcard::cli {

void AddReaderCommands(CLI::App& app) {
  auto* reader_cmd = app.add_subcommand("reader", "PC/SC readers");
  reader_cmd->require_subcommand(1);
  {
    auto* cmd = reader_cmd->add_subcommand("list", "list PC/SC readers and whether a card is in");
    cmd->callback([] {
      auto names = Check(reader::ListReaders(), "listing readers");
      if (names.empty()) std::printf("no readers\n");
      for (std::size_t i = 0; i < names.size(); ++i) {
        auto r = reader::PcscReader::Open(names[i]);
        std::string state = "?";
        if (r.ok()) {
          auto present = (*r)->CardPresent();
          state = !present.ok() ? "error: " + present.error().message
                                : (*present ? "card present" : "empty");
        }
        std::printf("%zu  %-28s %s\n", i, names[i].c_str(), state.c_str());
      }
    });
  }
  {
    auto* cmd = reader_cmd->add_subcommand(
        "apdu", "send APDUs (hex) to the card in a reader, print the answers");
    static std::string name = "0";
    static std::vector<std::string> apdus;
    static bool raw = false;
    cmd->add_option("--reader", name, "reader name, index or unique part of the name");
    cmd->add_flag("--raw", raw, "do not apply the T=0 rules (61xx GET RESPONSE, 6Cxx re-send)");
    cmd->add_option("apdu", apdus, "command APDUs in hex")->required();
    cmd->callback([] {
      auto r = Check(reader::PcscReader::Open(name), "reader");
      auto atr = Check(r->Connect(), r->Name());
      std::printf("ATR %s (%s)\n", ToHex(atr).c_str(), r->Name().c_str());
      for (const auto& hex : apdus) {
        auto bytes = FromHex(hex);
        if (!bytes) throw CommandFailed("not hex: " + hex, 2);
        auto parsed = iso7816::CommandApdu::Parse(*bytes);
        if (auto* sw = std::get_if<iso7816::StatusWord>(&parsed)) {
          throw CommandFailed("malformed APDU " + hex + " (" + sw->ToString() + ")", 2);
        }
        const auto& command = std::get<iso7816::CommandApdu>(parsed);
        // PIN-carrying commands (VERIFY, PIN UNBLOCK, CHANGE/RELOAD PIN) are echoed masked.
        bool secret = command.ins == 0x20 || command.ins == 0x24 || command.ins == 0x5E;
        std::printf("> %s\n",
                    secret ? (ToHex(ByteView(*bytes).first(4)) + " (PIN data hidden)").c_str()
                           : ToHex(*bytes).c_str());
        Bytes answer;
        if (raw) {
          answer = Check(r->Transmit(*bytes), "transmit");
        } else {
          answer = Check(reader::Send(*r, command), "transmit").Serialize();
        }
        auto response = Check(iso7816::ResponseApdu::Parse(answer), "answer");
        std::printf("< %s %s  %s\n", ToHex(response.data).c_str(),
                    ToHex(Bytes{response.sw.sw1(), response.sw.sw2()}).c_str(),
                    response.sw.Name().c_str());
      }
      (void)r->Disconnect();
    });
  }
}

}  // namespace medcard::cli
