/* Private helpers shared by the router's files. Not a public header. */
#ifndef MSRT_ROUTER_INTERNAL_H
#define MSRT_ROUTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Write s (len bytes) into buf as a C-like quoted string: '"' and '\\'
 * escaped, control bytes as \xNN, cut at max_in input bytes with "..." after
 * the closing quote. buf must hold at least 4 * max_in + 8 bytes. Returns
 * buf. */
char *rt_quote(char *buf, const char *s, size_t len, size_t max_in);
#define RT_QUOTE_MAX 200
#define RT_QUOTE_BUF (4 * RT_QUOTE_MAX + 8)

static inline uint64_t rt_mix(uint64_t a, uint64_t b) {
  __uint128_t m = (__uint128_t)a * b;
  return (uint64_t)m ^ (uint64_t)(m >> 64);
}

/* A fast 64-bit hash of short byte strings (wyhash-style folding). Used for
 * trie tokens and the match cache; not for anything adversarial. */
static inline uint64_t rt_hash(const char *p, size_t n) {
  const uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull;
  uint64_t seed = k0 ^ (uint64_t)n;
  uint64_t a, b;
  if (n <= 16) {
    if (n >= 4) {
      uint32_t w0, w1, w2, w3;
      size_t q = (n >> 3) << 2;
      memcpy(&w0, p, 4);
      memcpy(&w1, p + q, 4);
      memcpy(&w2, p + n - 4, 4);
      memcpy(&w3, p + n - 4 - q, 4);
      a = ((uint64_t)w0 << 32) | w1;
      b = ((uint64_t)w2 << 32) | w3;
    } else if (n > 0) {
      const unsigned char *u = (const unsigned char *)p;
      a = ((uint64_t)u[0] << 16) | ((uint64_t)u[n >> 1] << 8) | u[n - 1];
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    size_t i = n;
    while (i > 16) {
      uint64_t x, y;
      memcpy(&x, p, 8);
      memcpy(&y, p + 8, 8);
      seed = rt_mix(x ^ k1, y ^ seed);
      p += 16;
      i -= 16;
    }
    memcpy(&a, p + i - 16, 8);
    memcpy(&b, p + i - 8, 8);
  }
  return rt_mix(k1 ^ (uint64_t)n, rt_mix(a ^ k1, b ^ seed));
}

/* Byte equality for short strings, inlined (memcmp is a call): overlapping
 * word loads, no byte loop. */
static inline int rt_eq(const char *a, const char *b, size_t n) {
  uint64_t x, y;
  if (n >= 8) {
    while (n > 8) {
      memcpy(&x, a, 8);
      memcpy(&y, b, 8);
      if (x != y) return 0;
      a += 8;
      b += 8;
      n -= 8;
    }
    memcpy(&x, a + n - 8, 8);
    memcpy(&y, b + n - 8, 8);
    return x == y;
  }
  if (n >= 4) {
    uint32_t p, q, r, t;
    memcpy(&p, a, 4);
    memcpy(&q, b, 4);
    memcpy(&r, a + n - 4, 4);
    memcpy(&t, b + n - 4, 4);
    return p == q && r == t;
  }
  if (n == 0) return 1;
  return a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1];
}

/* splitmix64: the PRNG step used for split routing. */
static inline uint64_t rt_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
