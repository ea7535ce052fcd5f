/* Shared helpers for the libFuzzer targets in spec/fuzz/ (see README.md
 * there): an assertion that aborts, so libFuzzer saves the input that broke
 * an invariant, and a reader that takes typed fields off the front of the
 * fuzz input, so one input describes a whole scenario (lengths, chunk
 * sizes, flags) and stays reproducible.
 */
#ifndef MSRT_SPEC_FUZZ_H
#define MSRT_SPEC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant: a plain assert would vanish under NDEBUG (RelWithDebInfo
 * keeps it, but the fuzz build must not depend on that). */
#define FUZZ_ASSERT(cond)                                                   \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                       \
      abort();                                                              \
    }                                                                       \
  } while (0)

/* The unread rest of the fuzz input. */
typedef struct {
  const uint8_t *p;
  size_t n;
} fz_in;

/* One byte (0 once the input is used up: short inputs still run). */
static inline uint8_t fz_u8(fz_in *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

static inline uint32_t fz_u32(fz_in *in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)fz_u8(in) << (8 * i);
  return v;
}

/* Up to want bytes (fewer at the end of the input); *got says how many. */
static inline const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

/* splitmix64: chunk sizes and other choices derived from a seed that comes
 * from the input, so a saved crash replays the same way. */
static inline uint64_t fz_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
