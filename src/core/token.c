#include "core/token.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

static const char ALPHABET[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Each thread draws its tokens from a ChaCha20 keystream (libsodium's
 * crypto_stream_chacha20_ietf: a key of its own from the kernel, a counter
 * as the nonce), a few tokens per refill. Refilling from getrandom(2)
 * instead cost a system call of ~10 us in the VMs msrt runs on, which
 * every 128th request paid (docs/performance.md, request/reply p99); two
 * ChaCha20 blocks cost ~0.2 us. The key is replaced from the kernel every
 * REKEY refills, so memory read later reveals at most that many refills'
 * tokens (used bytes are zeroed as they are taken). */
#define POOL 128     /* bytes per refill: two ChaCha20 blocks, 5 tokens */
#define REKEY 4096   /* refills per key */

static __thread unsigned char pool[POOL];
static __thread size_t pool_used = POOL;
static __thread unsigned char key[crypto_stream_chacha20_ietf_KEYBYTES];
static __thread uint64_t refills; /* 0: no key yet */

static bool new_key(void) {
  if (sodium_init() < 0) return false; /* idempotent, thread-safe */
  size_t got = 0;
  while (got < sizeof key) {
    ssize_t n = getrandom(key + got, sizeof key - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += (size_t)n;
  }
  return true;
}

static bool refill(void) {
  if (refills % REKEY == 0 && !new_key()) return false;
  unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
  memcpy(nonce, &refills, sizeof refills);
  refills++;
  crypto_stream_chacha20_ietf(pool, POOL, nonce, key);
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
