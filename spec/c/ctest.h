/* A minimal harness for the C unit tests: CHECK records a failure with
 * file:line and carries on; TEST_MAIN prints "N passed, N failed" and exits
 * non-zero on any failure. */
#ifndef MSRT_SPEC_CTEST_H
#define MSRT_SPEC_CTEST_H

#include <stdio.h>
#include <string.h>

static int ct_pass, ct_fail;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (cond) ct_pass++;                                                   \
    else {                                                                 \
      ct_fail++;                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,    \
              #cond);                                                      \
    }                                                                      \
  } while (0)

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

#define TEST_MAIN(...)                                                     \
  int main(void) {                                                         \
    void (*tests[])(void) = {__VA_ARGS__};                                 \
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) tests[i]();  \
    printf("%d passed, %d failed\n", ct_pass, ct_fail);                    \
    return ct_fail ? 1 : 0;                                                \
  }

#endif
