// The doctest main shared by the test executables: doctest's own runner with
// its command line (use --test-suite / --test-case to pick tests).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
