// ctest's fixture around a whole test run (tests/CMakeLists.txt):
//   medcard_test_postgres_server start FILE   starts a throwaway PostgreSQL server, names it in
//   FILE medcard_test_postgres_server stop FILE    stops it and removes its directory and FILE
// Starting one server per run, not one per test process, saves initdb's seconds on every test.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "postgres_fixture.h"

int main(int argc, char** argv) {
  // This program starts the shared server: it never attaches to one.
  ::unsetenv("MEDCARD_TEST_PG_SERVER");
  const std::string command = argc == 3 ? argv[1] : "";
  if (command == "start") {
    auto started = medcard::test_support::StartSharedPostgres(argv[2]);
    if (!started) {
      std::fprintf(stderr, "PostgreSQL test server: %s\n", started.error().message.c_str());
      return 1;
    }
    std::printf("PostgreSQL test server named in %s\n", argv[2]);
    return 0;
  }
  if (command == "stop") {
    medcard::test_support::StopSharedPostgres(argv[2]);
    return 0;
  }
  std::fprintf(stderr, "usage: medcard_test_postgres_server start|stop FILE\n");
  return 2;
}
