// A real pcscd with the vsmartcard-vpcd driver for tests that go through PC/SC.
//
// Register the environment once per test binary (at namespace scope in one test file):
//   static auto* const kPcscd = medcard::test_support::RegisterPcscdEnvironment();
// Before the first test it
//   - takes an exclusive lock (flock on /tmp/medcard-vpcd.lock), so test binaries that bridge
//     cards into vpcd's two slots run one after the other even under `ctest -j`;
//   - uses the pcscd already running, or starts `pcscd -f` as a child process (log in
//     /tmp/medcard-pcscd-<pid>.log) and stops it after the last test;
//   - waits until SCardListReaders shows "Virtual PCD 00 00" and both slots are empty.
// pcscd or vpcd missing is a test failure that says what to install, never a silent skip.
#pragma once

#include <gtest/gtest.h>

#include "common/result.h"

namespace medcard::test_support {

class PcscdEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
};

// Adds PcscdEnvironment to GoogleTest (once, however often it is called).
::testing::Environment* RegisterPcscdEnvironment();

// True when this test binary started pcscd, and so may stop and restart it.
bool PcscdStartedHere();
// REQUIRES: PcscdStartedHere(). Stops pcscd and waits until it is gone.
Status StopPcscd();
// Starts pcscd again and waits until the vpcd readers are listed.
Status StartPcscd();

}  // namespace medcard::test_support
