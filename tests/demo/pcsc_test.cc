// The demo's day with the first terminal's card and PSAM readers in pcscd's vpcd slots
// (ScenarioOptions::pcsc, `medcard demo --readers pcsc`): every visit to that terminal puts the
// card into "Virtual PCD 00 00" and takes it out again; the day still reconciles to the fen.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "demo/scenario.h"
#include "pcscd_fixture.h"
#include "test_database.h"

namespace medcard::demo {
namespace {

static auto* const kPcscd = test_support::RegisterPcscdEnvironment();

TEST(DemoPcscTest, TheFirstTerminalThroughPcscdAndTheDayStillReconciles) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  ScenarioOptions options;
  options.data_dir = test_support::NewTempDir("medcard-demo-pcsc");
  options.pcsc = true;
  options.city = {.seed = 2, .units = 2, .people = 8, .cards = 5, .hospitals = 2, .pharmacies = 1};
  std::vector<std::string> lines;
  options.progress = [&](const std::string& line) { lines.push_back(line); };
  auto run = RunScenario(options);
  ::unsetenv("MEDCARD_KEYSTORE_TEST_KDF");
  ASSERT_TRUE(run.ok()) << run.error().message;
  for (const auto& p : run->problems) ADD_FAILURE() << p;
  EXPECT_TRUE(run->clean());
  EXPECT_TRUE(run->wrong_pin_refused);  // at the PC/SC terminal
  EXPECT_EQ(run->loads, 10);
  EXPECT_EQ(run->terminals_settled, 3);
  EXPECT_GE(run->pcsc_insertions, 3);  // loads and purchases at the first terminal
  EXPECT_THAT(lines, ::testing::Contains(::testing::HasSubstr("(pcscd + vpcd)")));
}

}  // namespace
}  // namespace medcard::demo
