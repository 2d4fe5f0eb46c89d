// A throwaway PostgreSQL server for tests: real PostgreSQL, no mocks (docs/store.md "Testing").
//
// Under ctest every test attaches to one server for the whole run: the test
// postgres_server_start starts it, postgres_server_stop stops it (a ctest fixture), and
// MEDCARD_TEST_PG_SERVER names it; each test process drops the databases it created at its end.
// Run directly (no MEDCARD_TEST_PG_SERVER), the first NewPostgresDatabase() of a test binary
// (process) starts a server of its own:
//   - initdb (Debian's /usr/lib/postgresql/15/bin, or $MEDCARD_PG_BINDIR) into a fresh
//     /tmp/medcard-pg-XXXXXX owned by the `postgres` user, run through `runuser -u postgres --`
//     when the tests run as root (PostgreSQL refuses to run as root), trust authentication;
//   - pg_ctl start on a private port (55432 + pid % 1000, the next free one if taken), listening
//     on 127.0.0.1 and on a unix socket in that directory; fsync off (the tests kill clients,
//     never the server);
// and every call creates a new empty database on it. The server is stopped and its directory
// removed after the last test (PostgresEnvironment::TearDown, and at exit as a fallback, also
// when tests fail); a later binary removes what a killed one left behind.
//
// PostgreSQL not installed is a test FAILURE saying "apt-get install postgresql-15", never a
// silent skip. Register the environment once per binary, at namespace scope:
//   static auto* const kPostgres = medcard::test_support::RegisterPostgresEnvironment();
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/result.h"

namespace medcard::test_support {

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override;
};

// Adds PostgresEnvironment to GoogleTest (once, however often it is called).
::testing::Environment* RegisterPostgresEnvironment();

// Starts the server when it is not running yet. Idempotent.
Status StartPostgres();
// The URL of a new, empty database on the server (starting it first if needed), e.g.
// "postgresql://postgres@/medcard_test_3?host=/tmp/medcard-pg-abc123&port=55871".
Result<std::string> NewPostgresDatabase();
// Stops the server and removes its directory (only in the process that started it). A process
// attached to the shared server drops the databases it created instead.
void StopPostgres();

// ctest's fixture (tests/CMakeLists.txt): one server for a whole test run. The file names it for
// the tests (MEDCARD_TEST_PG_SERVER), which then attach to it instead of starting their own.
Status StartSharedPostgres(const std::string& server_file);
void StopSharedPostgres(const std::string& server_file);

}  // namespace medcard::test_support
