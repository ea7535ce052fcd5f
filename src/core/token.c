#include "core/token.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/types.h>

static const char ALPHABET[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define POOL (MSRT_TOKEN_LEN * 128) /* 128 tokens per system call */

static __thread unsigned char pool[POOL];
static __thread size_t pool_used = POOL;

static bool refill(void) {
  size_t got = 0;
  while (got < POOL) {
    ssize_t n = getrandom(pool + got, POOL - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += (size_t)n;
  }
  pool_used = 0;
  return true;
}

msrt_code msrt_token(char out[MSRT_TOKEN_LEN + 1]) {
  if (pool_used + MSRT_TOKEN_LEN > POOL && !refill()) return MSRT_E_INTERNAL;
  for (int i = 0; i < MSRT_TOKEN_LEN; i++)
    out[i] = ALPHABET[pool[pool_used + (size_t)i] & 63]; /* 64 | 256: unbiased */
  /* used bytes are not kept around for a later reader of this memory */
  for (int i = 0; i < MSRT_TOKEN_LEN; i++) pool[pool_used + (size_t)i] = 0;
  pool_used += MSRT_TOKEN_LEN;
  out[MSRT_TOKEN_LEN] = 0;
  return MSRT_E_OK;
}
