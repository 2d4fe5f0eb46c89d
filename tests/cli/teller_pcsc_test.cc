// Issue 6 end to end: a PIN reset on a card in a vpcd reader. A real `medcard host run` with its
// API, the workstation's PIN pad key delivered under tkek (`host workstations export-pek`,
// `teller pinpad init`), the card image served to pcscd by `medcard card attach`, the teller
// signed in with `medcard teller login`; the cardholder blocks the PIN with wrong VERIFYs, the
// teller runs `medcard teller card pin-reset --reader "Virtual PCD 00 00" --pin-stdin` with a
// senior teller's authorisation, and the card then accepts the new PIN and refuses the old one.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "branch/services.h"
#include "cli/host_session.h"
#include "cli_run.h"
#include "medcard_processes.h"
#include "pcscd_fixture.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

static auto* const kPcscd = test_support::RegisterPcscdEnvironment();

using test_support::CliRun;

constexpr char kPassphrase[] = "teller pcsc test passphrase";
constexpr char kEnvironment[] =
    "MEDCARD_KEYSTORE_PASSPHRASE='teller pcsc test passphrase' MEDCARD_KEYSTORE_TEST_KDF=fast "
    "MEDCARD_PASSWORD_TEST_KDF=fast HOME=/nonexistent-home ";
constexpr char kAsn[] = "10000000000000000621";
constexpr char kPin[] = "123456";
constexpr char kNewPin[] = "908172";
constexpr char kTkekComponents[] =
    "00112233445566778899AABBCCDDEEFF\n13579BDF02468ACE1122334455667788\n";

TEST(TellerPcscTest, PinResetOnACardInAVpcdReaderThroughTheTellerCommand) {
  ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", kPassphrase, 1);
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  ::setenv("MEDCARD_PASSWORD_TEST_KDF", "fast", 1);
  const std::filesystem::path dir = test_support::NewCliTestDir("medcard-teller-pcsc");
  ASSERT_FALSE(dir.empty());
  auto run = [&](const std::string& args, std::optional<std::string> input = std::nullopt) {
    return test_support::RunCli({MEDCARD_CLI, kEnvironment, args, std::move(input)}, dir);
  };
  const std::string data = (dir / "data").string();

  // The bank: host, users, the card registered and active, the tkek ceremony, the PEK export.
  ASSERT_EQ(run("host init --test-keys --data " + data).exit_code, 0);
  for (const auto& [login, role] : {std::pair{"t01", "teller"}, {"s01", "senior_teller"}}) {
    CliRun add = run(std::string("host users add --data ") + data + " --login " + login +
                         " --role " + role + " --branch B001",
                     std::string(login) + "-password-2026\n");
    ASSERT_EQ(add.exit_code, 0) << add.err;
  }
  {
    cli::HostSession session = cli::OpenHostSession(data);
    for (const store::MigrationSet* set :
         {&audit::Migrations(), &access::Migrations(), &branch::Migrations()}) {
      ASSERT_TRUE(store::Migrate(session.connection(), *set).ok());
    }
    branch::BranchServices services(session.connection(), session.key_store());
    branch::Actor teller{"t01", "", "test", "B001"};
    auto applied = services.Apply(teller, {"310101199001016210", "holder", "B001"});
    ASSERT_TRUE(applied.ok()) << applied.error().message;
    branch::CardIssue issue;
    issue.application_id = applied->application_id;
    issue.asn = kAsn;
    ASSERT_TRUE(services.Issue(teller, issue).ok());
    ASSERT_TRUE(services.Activate(teller, {kAsn, std::nullopt, ""}).ok());
  }
  ASSERT_EQ(
      run("keys ceremony --store " + data + "/keys --role tkek --components 2", kTkekComponents)
          .exit_code,
      0);
  const std::string delivery = (dir / "pek.json").string();
  CliRun exported = run("host workstations export-pek --data " + data +
                        " --workstation B001-T01 --out " + delivery);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;

  // The workstation: its PIN pad's store, the same tkek ceremony, the PEK imported.
  const std::string pinpad = (dir / "pinpad").string();
  ASSERT_EQ(run("keys init --test-only --store " + pinpad).exit_code, 0);
  ASSERT_EQ(run("keys ceremony --store " + pinpad + " --role tkek --components 2", kTkekComponents)
                .exit_code,
            0);
  CliRun init = run("teller pinpad init --pek " + delivery + " --store " + pinpad);
  ASSERT_EQ(init.exit_code, 0) << init.err;

  // The host with its API; the card in vpcd slot 0.
  test_support::HostProcess host(data, dir);
  int port = 0;
  const std::regex listening(R"(medcard API listening on 127\.0\.0\.1:(\d+))");
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::smatch match;
    const std::string text = test_support::ReadText(dir / "host.out");
    if (std::regex_search(text, match, listening)) port = std::stoi(match[1]);
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(port, 0) << host.err();
  const std::string image = (dir / "card.img").string();
  ASSERT_EQ(run(std::string("card new ") + image + " --asn " + kAsn + " --pin " + kPin).exit_code,
            0);
  test_support::AttachedImage attached("card", image, 0, dir);
  ASSERT_TRUE(attached.WaitInserted());
  const std::string reader_name = reader::VpcdReaderName(0);

  // The cardholder forgot the PIN and blocked it.
  {
    auto card_reader = reader::PcscReader::Open(reader_name);
    ASSERT_TRUE(card_reader.ok()) << card_reader.error().message;
    ASSERT_TRUE((*card_reader)->Connect().ok());
    ASSERT_TRUE(terminal::SelectMedicalApplication(**card_reader).ok());
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(terminal::VerifyPin(**card_reader, "111111").ok());
    EXPECT_FALSE(terminal::VerifyPin(**card_reader, kPin).ok());
    ASSERT_TRUE((*card_reader)->Disconnect().ok());
  }

  const std::string session = (dir / "teller-session").string();
  CliRun login = run("teller --session " + session +
                         " login --host http://127.0.0.1:" + std::to_string(port) + " --login t01",
                     "t01-password-2026\n");
  ASSERT_EQ(login.exit_code, 0) << login.err;
  CliRun reset = run("teller --session " + session + " card pin-reset " + kAsn + " --reader '" +
                         reader_name + "' --store " + pinpad + " --pin-stdin --authoriser s01",
                     std::string(kNewPin) + "\n" + kNewPin + "\ns01-password-2026\n");
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_NE(reset.out.find(std::string("card ") + kAsn + ": PIN reset: tries 3"), std::string::npos)
      << reset.out;
  EXPECT_EQ(reset.out.find(kNewPin), std::string::npos);
  EXPECT_EQ(reset.err.find(kNewPin), std::string::npos);

  {
    auto card_reader = reader::PcscReader::Open(reader_name);
    ASSERT_TRUE(card_reader.ok());
    ASSERT_TRUE((*card_reader)->Connect().ok());
    ASSERT_TRUE(terminal::SelectMedicalApplication(**card_reader).ok());
    EXPECT_TRUE(terminal::VerifyPin(**card_reader, kNewPin).ok());
    ASSERT_TRUE(terminal::SelectMedicalApplication(**card_reader).ok());
    auto old_pin = terminal::VerifyPin(**card_reader, kPin);
    ASSERT_FALSE(old_pin.ok());
    EXPECT_NE(old_pin.error().message.find("2 tries left"), std::string::npos)
        << old_pin.error().message;
    ASSERT_TRUE((*card_reader)->Disconnect().ok());
  }
  // The host's log and the audit log: who reset it and who authorised it, never the PIN.
  EXPECT_EQ(test_support::ReadText(dir / "host.out").find(kNewPin), std::string::npos);
  EXPECT_EQ(host.err().find(kNewPin), std::string::npos);
  EXPECT_EQ(host.Stop(), 0);
  attached.Stop();
  CliRun audit = run("host audit export --data " + data + " --action card.pin_reset.script");
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_NE(audit.out.find("\"authorised_by\":\"s01\""), std::string::npos) << audit.out;
  EXPECT_EQ(audit.out.find(kNewPin), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace medcard
