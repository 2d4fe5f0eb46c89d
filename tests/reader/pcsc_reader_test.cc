// End to end through the real pcscd: scripted cards bridged into vpcd's slots, read back with
// PcscReader and with PC/SC programs nobody here wrote (opensc-tool, scriptor).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "pcscd_fixture.h"
#include "reader/reader.h"
#include "scripted_icc.h"

namespace medcard::reader {
namespace {

using iso7816::CommandApdu;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using testing::ScriptedIcc;
using ::testing::StartsWith;

[[maybe_unused]] auto* const kPcscd = test_support::RegisterPcscdEnvironment();

// pcscd polls vpcd's slots every 400 ms; every wait below is bounded by this.
constexpr milliseconds kDetect{5000};

std::unique_ptr<PcscReader> OpenSlot(unsigned slot) {
  Result<std::unique_ptr<PcscReader>> reader = PcscReader::Open(VpcdReaderName(slot));
  EXPECT_TRUE(reader.ok()) << reader.error().message;
  return reader.ok() ? std::move(*reader) : nullptr;
}

// A scripted card in a vpcd slot, served by a VpcdBridge on its own thread. Removing it (or
// destroying it) stops the bridge and waits until pcscd sees the slot empty, so the next test
// starts from an empty reader.
class BridgedCard {
 public:
  BridgedCard(std::shared_ptr<iso7816::Icc> card, unsigned slot = 0)
      : slot_(slot), bridge_(std::move(card), Options(slot)) {
    result_ = std::async(std::launch::async, [this] { return bridge_.Run(); });
  }
  ~BridgedCard() { Remove(); }

  void Remove() {
    if (removed_) return;
    removed_ = true;
    bridge_.Stop();
    result_.wait();
    if (auto reader = OpenSlot(slot_)) {
      Result<bool> gone = reader->WaitForRemoval(kDetect);
      EXPECT_TRUE(gone.ok() && *gone) << "pcscd did not see the card leave slot " << slot_;
    }
  }
  Status Finished() {
    if (result_.wait_for(kDetect) != std::future_status::ready) return MakeError("still running");
    removed_ = true;
    return result_.get();
  }
  VpcdBridge& bridge() { return bridge_; }

 private:
  static VpcdBridge::Options Options(unsigned slot) {
    VpcdBridge::Options options;
    options.slot = slot;
    options.initial_backoff = milliseconds(20);
    options.max_backoff = milliseconds(200);
    return options;
  }

  unsigned slot_;
  VpcdBridge bridge_;
  std::future<Status> result_;
  bool removed_ = false;
};

// Waits for the bridged card and connects.
std::unique_ptr<PcscReader> ConnectSlot(unsigned slot, Bytes* atr = nullptr) {
  auto reader = OpenSlot(slot);
  if (!reader) return nullptr;
  Result<bool> present = reader->WaitForCard(kDetect);
  EXPECT_TRUE(present.ok() && *present) << "no card appeared in slot " << slot;
  Result<Bytes> connected = reader->Connect();
  EXPECT_TRUE(connected.ok()) << connected.error().message;
  if (!connected.ok()) return nullptr;
  if (atr != nullptr) *atr = *connected;
  return reader;
}

std::string Hex(const Result<Bytes>& response) {
  return response.ok() ? ToHex(View(*response)) : "error: " + response.error().message;
}

struct CommandOutput {
  int exit_code = -1;
  std::string text;
};
CommandOutput RunCommand(const std::string& command) {
  CommandOutput out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.text.append(buffer, n);
  const int status = pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(PcscReader, ListReaders_ShowsBothVpcdSlots) {
  Result<std::vector<std::string>> names = ListReaders();
  ASSERT_TRUE(names.ok()) << names.error().message;
  EXPECT_THAT(*names, ::testing::Contains("Virtual PCD 00 00"));
  EXPECT_THAT(*names, ::testing::Contains("Virtual PCD 00 01"));
}

TEST(PcscReader, ResolveReaderName_TakesExactNamesIndexesAndUniqueParts) {
  Result<std::vector<std::string>> names = ListReaders();
  ASSERT_TRUE(names.ok());
  const auto slot0 = std::find(names->begin(), names->end(), "Virtual PCD 00 00");
  ASSERT_NE(slot0, names->end());
  const std::string index = std::to_string(slot0 - names->begin());
  EXPECT_EQ(*ResolveReaderName("Virtual PCD 00 00"), "Virtual PCD 00 00");
  EXPECT_EQ(*ResolveReaderName(index), "Virtual PCD 00 00");
  EXPECT_EQ(*ResolveReaderName("PCD 00 01"), "Virtual PCD 00 01");
  Result<std::string> ambiguous = ResolveReaderName("Virtual PCD");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_THAT(ambiguous.error().message, StartsWith("reader name 'Virtual PCD' is ambiguous"));
}

TEST(PcscReader, OpenUnknownReader_SaysNotFoundAndListsTheReaders) {
  Result<std::unique_ptr<PcscReader>> reader = PcscReader::Open("No Such Reader");
  ASSERT_FALSE(reader.ok());
  EXPECT_THAT(reader.error().message, StartsWith("reader 'No Such Reader' not found (readers: "));
  EXPECT_THAT(reader.error().message, HasSubstr("'Virtual PCD 00 00'"));
}

TEST(PcscReader, EmptySlot_NoCardPresentAndConnectSaysNoCard) {
  auto reader = OpenSlot(0);
  ASSERT_TRUE(reader);
  EXPECT_EQ(*reader->CardPresent(), false);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(*reader->WaitForCard(milliseconds(300)), false);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(250));
  Result<Bytes> atr = reader->Connect();
  ASSERT_FALSE(atr.ok());
  EXPECT_THAT(atr.error().message, StartsWith("no card in reader 'Virtual PCD 00 00'"));
}

TEST(PcscReader, BridgedCard_IsSeenByWaitForCardAndConnectReturnsItsAtr) {
  auto reader = OpenSlot(0);
  ASSERT_TRUE(reader);
  auto card = std::make_shared<ScriptedIcc>(testing::T1Atr("MEDCARD"));
  // Wait first, bridge second: the wait must wake on insertion.
  auto waiting = std::async(std::launch::async, [&] { return reader->WaitForCard(kDetect); });
  BridgedCard bridged(card);
  ASSERT_EQ(waiting.wait_for(kDetect), std::future_status::ready);
  Result<bool> present = waiting.get();
  ASSERT_TRUE(present.ok()) << present.error().message;
  EXPECT_TRUE(*present);
  Result<Bytes> atr = reader->Connect();
  ASSERT_TRUE(atr.ok()) << atr.error().message;
  EXPECT_EQ(*atr, testing::T1Atr("MEDCARD"));
  EXPECT_EQ(reader->Protocol(), "T=1");
  EXPECT_TRUE(card->powered());
  EXPECT_TRUE(bridged.bridge().connected());
}

TEST(PcscReader, ShortApdus_Cases1To4) {
  BridgedCard bridged(std::make_shared<ScriptedIcc>());
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE0000")))), "9000");
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000004")))), "000102039000");
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000002ABCD")))), "ABCD9000");
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000003A1B2C303")))), "A1B2C39000");
  Result<iso7816::ResponseApdu> full = Send(*reader, CommandApdu::Case2(0x80, 0xEE, 0, 0, 256));
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->data.size(), 256u);
}

TEST(PcscReader, ExtendedApdus_CarryLargeDataBothWays) {
  BridgedCard bridged(std::make_shared<ScriptedIcc>());
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  Bytes data(60000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 13);
  Result<iso7816::ResponseApdu> case4 =
      Send(*reader, CommandApdu::Case4(0x80, 0xEE, 0, 0, data, 60000));
  ASSERT_TRUE(case4.ok()) << case4.error().message;
  EXPECT_TRUE(case4->ok());
  EXPECT_EQ(case4->data, data);
  Result<iso7816::ResponseApdu> case3 =
      Send(*reader, CommandApdu::Case3(0x80, 0xEE, 0, 0, Bytes(1000, 0x5A)));
  ASSERT_TRUE(case3.ok());
  EXPECT_EQ(case3->data, Bytes(1000, 0x5A));
  Result<iso7816::ResponseApdu> case2 = Send(*reader, CommandApdu::Case2(0x80, 0xEE, 0, 0, 65000));
  ASSERT_TRUE(case2.ok());
  EXPECT_EQ(case2->data.size(), 65000u);
}

TEST(PcscReader, Answer61xx_IsCompletedWithGetResponseThroughPcscd) {
  auto card = std::make_shared<ScriptedIcc>();
  Bytes fci = HexToBytes("6F1A8407A0000000031010A50F500B4D45444341524420415050870101");
  card->OnChunked("00A40400", fci, 16);
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  // Transmit is raw: the 61xx comes back as is.
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("00A4040007A0000000031010")))), "6110");
  Result<iso7816::ResponseApdu> response =
      Send(*reader, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, HexToBytes("A0000000031010"), 256));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->data, fci);
  EXPECT_TRUE(response->ok());
  std::vector<Bytes> commands = card->commands();
  ASSERT_GE(commands.size(), 3u);
  EXPECT_EQ(ToHex(View(commands[commands.size() - 2])), "00C0000010");
  EXPECT_EQ(ToHex(View(commands.back())), "00C000000D");
}

TEST(PcscReader, Answer6Cxx_ResendsWithTheRightLeThroughPcscd) {
  auto card = std::make_shared<ScriptedIcc>();
  card->OnExactLe("00B2010C", HexToBytes("700E5F2403991231"));
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  Result<iso7816::ResponseApdu> response =
      Send(*reader, CommandApdu::Case2(0x00, 0xB2, 0x01, 0x0C, 256));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(ToHex(View(response->data)), "700E5F2403991231");
  std::vector<Bytes> commands = card->commands();
  ASSERT_GE(commands.size(), 2u);
  EXPECT_EQ(ToHex(View(commands[commands.size() - 2])), "00B2010C00");
  EXPECT_EQ(ToHex(View(commands.back())), "00B2010C08");
}

TEST(PcscReader, ColdPowerCycle_TheCardSeesPowerOffAndOn) {
  auto card = std::make_shared<ScriptedIcc>(testing::T1Atr("COLD"));
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  const int ons = card->power_ons();
  const int offs = card->power_offs();
  Result<Bytes> atr = reader->PowerCycle(Reset::kCold);
  ASSERT_TRUE(atr.ok()) << atr.error().message;
  EXPECT_EQ(*atr, testing::T1Atr("COLD"));
  EXPECT_GT(card->power_offs(), offs);
  EXPECT_GT(card->power_ons(), ons);
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE0000")))), "9000");
}

TEST(PcscReader, WarmPowerCycle_TheCardIsResetWithoutPowerOff) {
  auto card = std::make_shared<ScriptedIcc>();
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  const int ons = card->power_ons();
  const int offs = card->power_offs();
  ASSERT_TRUE(reader->PowerCycle(Reset::kWarm).ok());
  EXPECT_EQ(card->power_offs(), offs);
  EXPECT_EQ(card->power_ons(), ons + 1);
}

TEST(PcscReader, StoppingTheBridge_RemovesTheCardAndReinsertingBringsItBack) {
  auto card = std::make_shared<ScriptedIcc>();
  auto bridged = std::make_unique<BridgedCard>(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  auto waiting = std::async(std::launch::async, [&] { return reader->WaitForRemoval(kDetect); });
  bridged->bridge().Stop();
  ASSERT_EQ(waiting.wait_for(kDetect), std::future_status::ready);
  Result<bool> removed = waiting.get();
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_TRUE(*removed);
  bridged.reset();
  Result<Bytes> response = reader->Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_THAT(response.error().message, StartsWith("card removed from reader 'Virtual PCD 00 00'"));

  BridgedCard again(card);
  Result<bool> present = reader->WaitForCard(kDetect);
  ASSERT_TRUE(present.ok() && *present);
  ASSERT_TRUE(reader->Connect().ok());
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000001EE")))), "EE9000");
}

TEST(PcscReader, TwoSlots_TwoCardsAnswerAtTheSameTime) {
  auto first = std::make_shared<ScriptedIcc>(testing::T1Atr("FIRST"));
  auto second = std::make_shared<ScriptedIcc>(testing::T1Atr("SECOND"));
  first->On("80CA", "01019000");
  second->On("80CA", "02029000");
  BridgedCard bridged_first(first, 0);
  BridgedCard bridged_second(second, 1);
  Bytes atr0, atr1;
  auto reader0 = ConnectSlot(0, &atr0);
  auto reader1 = ConnectSlot(1, &atr1);
  ASSERT_TRUE(reader0 && reader1);
  EXPECT_EQ(atr0, testing::T1Atr("FIRST"));
  EXPECT_EQ(atr1, testing::T1Atr("SECOND"));
  auto in_parallel = std::async(std::launch::async, [&] {
    std::string answers;
    for (int i = 0; i < 20; ++i) answers += Hex(reader1->Transmit(View(HexToBytes("80CA0000"))));
    return answers;
  });
  std::string answers0;
  for (int i = 0; i < 20; ++i) answers0 += Hex(reader0->Transmit(View(HexToBytes("80CA0000"))));
  std::string expected0, expected1;
  for (int i = 0; i < 20; ++i) {
    expected0 += "01019000";
    expected1 += "02029000";
  }
  EXPECT_EQ(answers0, expected0);
  EXPECT_EQ(in_parallel.get(), expected1);
}

TEST(PcscReader, Transaction_KeepsAnotherConnectionWaitingUntilItEnds) {
  auto card = std::make_shared<ScriptedIcc>();
  BridgedCard bridged(card);
  auto holder = ConnectSlot(0);
  auto other = ConnectSlot(0);
  ASSERT_TRUE(holder && other);
  auto transaction = Transaction::Begin(*holder);
  ASSERT_TRUE(transaction.ok()) << transaction.error().message;
  std::atomic<bool> other_done{false};
  auto other_send = std::async(std::launch::async, [&] {
    Result<Bytes> response = other->Transmit(View(HexToBytes("80EE000001BB")));
    other_done = true;
    return Hex(response);
  });
  EXPECT_EQ(Hex(holder->Transmit(View(HexToBytes("80EE000001AA")))), "AA9000");
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(other_done.load());
  ASSERT_TRUE(transaction->End().ok());
  ASSERT_EQ(other_send.wait_for(kDetect), std::future_status::ready);
  EXPECT_EQ(other_send.get(), "BB9000");
}

TEST(PcscReader, DeadCard_TransmitFailsAndTheCardLeavesTheReader) {
  auto card = std::make_shared<ScriptedIcc>();
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  card->Kill();
  Result<Bytes> response = reader->Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message,
            "the card in reader 'Virtual PCD 00 00' did not answer (mute card)");
  Status result = bridged.Finished();
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.error().message, HasSubstr("dead card"));
  Result<bool> removed = reader->WaitForRemoval(kDetect);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
}

TEST(PcscReader, T0Card_IsConnectedWithT0AndAnswers) {
  auto card = std::make_shared<ScriptedIcc>(testing::T0Atr("T0CARD"));
  BridgedCard bridged(card);
  Bytes atr;
  auto reader = ConnectSlot(0, &atr);
  ASSERT_TRUE(reader);
  EXPECT_EQ(atr, testing::T0Atr("T0CARD"));
  EXPECT_EQ(reader->Protocol(), "T=0");
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000002C0DE")))), "C0DE9000");
}

TEST(PcscReader, ConnectAfterThePcscReaderSawNothing_FindsTheCardInsertedLater) {
  auto reader = OpenSlot(0);
  ASSERT_TRUE(reader);
  ASSERT_FALSE(reader->Connect().ok());
  BridgedCard bridged(std::make_shared<ScriptedIcc>());
  ASSERT_TRUE(*reader->WaitForCard(kDetect));
  EXPECT_TRUE(reader->Connect().ok());
  EXPECT_TRUE(reader->Disconnect().ok());
  EXPECT_FALSE(reader->Connected());
  Result<Bytes> response = reader->Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message,
            "not connected to reader 'Virtual PCD 00 00' (Connect first)");
}

// A PC/SC client nobody here wrote sees the bridged card like a real one, 61xx included.
TEST(PcscReader, OpenscTool_SendsAnApduToTheBridgedCard) {
  auto card = std::make_shared<ScriptedIcc>();
  card->OnChunked("00A4040007A0000000031010", HexToBytes("6F108407A0000000031010A5055003414243"),
                  18);
  BridgedCard bridged(card);
  ASSERT_TRUE(OpenSlot(0)->WaitForCard(kDetect).value());
  Result<std::vector<std::string>> names = ListReaders();
  ASSERT_TRUE(names.ok());
  const auto index = std::find(names->begin(), names->end(), "Virtual PCD 00 00") - names->begin();
  const std::string tool = "timeout 30 opensc-tool --reader " + std::to_string(index);

  CommandOutput atr = RunCommand(tool + " --atr");
  ASSERT_EQ(atr.exit_code, 0) << atr.text;
  std::string atr_text;  // opensc-tool prints the ATR as 3b:8d:80:...
  for (std::uint8_t b : testing::T1Atr("MEDCARD")) {
    char byte[4];
    std::snprintf(byte, sizeof byte, "%02x:", b);
    atr_text += byte;
  }
  atr_text.pop_back();
  EXPECT_THAT(atr.text, HasSubstr(atr_text));

  CommandOutput out = RunCommand(tool + " --send-apdu 00A4040007A000000003101000");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("Sending: 00 A4 04 00 07 A0 00 00 00 03 10 10 00"));
  EXPECT_THAT(out.text, HasSubstr("Received (SW1=0x90, SW2=0x00):\n"
                                  "6F 10 84 07 A0 00 00 00 03 10 10 A5 05 50 03 41"));
  EXPECT_THAT(out.text, HasSubstr("\n42 43 "));
  // opensc-tool did the GET RESPONSE itself, through pcscd and the bridge.
  EXPECT_EQ(ToHex(View(card->commands().back())), "00C0000012");
}

TEST(PcscReader, Scriptor_SendsApdusToTheBridgedCard) {
  auto card = std::make_shared<ScriptedIcc>();
  card->On("00B0", "CAFE9000");
  BridgedCard bridged(card);
  ASSERT_TRUE(OpenSlot(0)->WaitForCard(kDetect).value());
  CommandOutput out = RunCommand(
      "printf '00 B0 00 00 02\\n80 EE 00 00 01 77\\n' | timeout 30 scriptor -r "
      "'Virtual PCD 00 00'");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("< CA FE 90 00 : Normal processing."));
  EXPECT_THAT(out.text, HasSubstr("< 77 90 00 : Normal processing."));
}

// Only when this binary started pcscd itself: someone else's pcscd is not ours to restart.
TEST(PcscReader, PcscdRestart_TheBridgeReconnectsAndTheCardIsBack) {
  if (!test_support::PcscdStartedHere()) {
    GTEST_SKIP() << "pcscd was already running when the tests started; restarting it is not "
                    "this test's call (run without a system pcscd to cover this case)";
  }
  auto card = std::make_shared<ScriptedIcc>();
  BridgedCard bridged(card);
  auto reader = ConnectSlot(0);
  ASSERT_TRUE(reader);
  EXPECT_EQ(bridged.bridge().connections(), 1u);

  Status stopped = test_support::StopPcscd();
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  Result<std::vector<std::string>> none = ListReaders();
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.error().message, StartsWith("pcscd not running — start it with `pcscd`"));
  Status started = test_support::StartPcscd();
  ASSERT_TRUE(started.ok()) << started.error().message;

  // The same PcscReader object finds the new daemon and the card the bridge brought back.
  Result<bool> present = reader->WaitForCard(kDetect);
  ASSERT_TRUE(present.ok()) << present.error().message;
  EXPECT_TRUE(*present);
  ASSERT_TRUE(reader->Connect().ok());
  EXPECT_EQ(Hex(reader->Transmit(View(HexToBytes("80EE000001AB")))), "AB9000");
  // At least one reconnect (one more if it caught the old daemon's socket while it shut down).
  EXPECT_GE(bridged.bridge().connections(), 2u);
}

}  // namespace
}  // namespace medcard::reader
