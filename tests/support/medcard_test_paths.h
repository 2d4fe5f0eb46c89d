// The absolute paths tests need. MEDCARD_TEST_DATA_DIR, MEDCARD_SOURCE_DIR, MEDCARD_BINARY_DIR and
// MEDCARD_CLI (the medcard binary) expand to calls of these functions, defined in one translation
// unit that CMake generates (CMakeLists.txt, "medcard_test_paths"); the compiler includes this
// header into every test (-include). A path written into each test's compile command would make
// ccache miss for every test in any other clone of the repository, such as CI's.
#pragma once

const char* medcard_test_data_dir();  // <source>/tests/data
const char* medcard_source_dir();
const char* medcard_binary_dir();
const char* medcard_cli_path();  // the medcard binary of this build tree
