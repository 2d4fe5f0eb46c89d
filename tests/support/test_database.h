// Fresh databases for tests that run on every engine (docs/store.md "Testing").
//
// A suite parameterised over the engines:
//   class MyTest : public ::testing::TestWithParam<medcard::store::Engine> {};
//   INSTANTIATE_TEST_SUITE_P(Engines, MyTest, medcard::test_support::AllEngines(),
//                            medcard::test_support::EngineTestName);
//   TEST_P(MyTest, X) { auto url = medcard::test_support::NewTestDatabaseUrl(GetParam()); ... }
// The PostgreSQL server starts at the first PostgreSQL database asked for; a binary that uses it
// also registers its environment (postgres_fixture.h) so it stops after the last test.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/result.h"
#include "postgres_fixture.h"
#include "store/store.h"

namespace medcard::test_support {

// SQLite and PostgreSQL.
inline auto AllEngines() {
  return ::testing::Values(store::Engine::kSqlite, store::Engine::kPostgres);
}
// "SQLite" / "PostgreSQL": GoogleTest parameter names.
std::string EngineTestName(const ::testing::TestParamInfo<store::Engine>& info);

// A new, empty database: a SQLite file in a new temporary directory (removed when the process
// exits), or a new database on the throwaway PostgreSQL server.
Result<std::string> NewTestDatabaseUrl(store::Engine engine);

// A new temporary directory, removed when the process that made it exits.
std::string NewTempDir(const std::string& prefix = "medcard-test");

}  // namespace medcard::test_support
