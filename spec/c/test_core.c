#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/envcache.h"
#include "core/envelope.h"
#include "core/error.h"
#include "core/overflow.h"
#include "core/token.h"
#include "ctest.h"

static void test_error_defaults(void) {
  msrt_error e;
  CHECK(msrt_error_set(&e, MSRT_E_NO_RESPONDERS, "no subscriber for %s",
                       "a.b") == MSRT_E_NO_RESPONDERS);
  CHECK(e.category == MSRT_CAT_ROUTER);
  CHECK(e.recovery == MSRT_REC_RETRY);
  CHECK_STR(e.message, "no subscriber for a.b");
  char buf[128];
  CHECK_STR(msrt_error_format(&e, buf, sizeof buf),
            "router/no_responders: no subscriber for a.b");
}

static void test_error_names(void) {
  CHECK_STR(msrt_category_name(MSRT_CAT_SUPERVISION), "supervision");
  CHECK_STR(msrt_severity_name(MSRT_SEV_CRITICAL), "critical");
  CHECK_STR(msrt_recovery_name(MSRT_REC_CIRCUIT_BREAKER), "circuit_breaker");
  CHECK_STR(msrt_category_name((msrt_category)99), "unknown");
  CHECK(msrt_code_from_name("timeout") == MSRT_E_TIMEOUT);
  CHECK(msrt_code_from_name("nope") == MSRT_E__COUNT);
  for (int i = 0; i < MSRT_E__COUNT; i++)
    CHECK(msrt_code_from_name(msrt_code_name((msrt_code)i)) == (msrt_code)i);
}

static void test_error_truncates(void) {
  msrt_error e;
  char big[2000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  msrt_error_set(&e, MSRT_E_BAD_CONFIG, "%s", big);
  CHECK(strlen(e.message) == MSRT_ERROR_MSG_MAX - 1);
  CHECK(msrt_error_set(NULL, MSRT_E_IO, "x") == MSRT_E_IO);
}

static void test_envelope(void) {
  long before = msrt_env_live();
  msrt_envelope *e = msrt_env_new("a.b", 3, "_INBOX.1", 8, "h", 1, "pay", 3,
                                  0, MSRT_ENV_PAYLOAD_BUFFER, 0);
  CHECK(e != NULL);
  CHECK_STR(e->subject, "a.b");
  CHECK_STR(e->reply, "_INBOX.1");
  CHECK(e->priority == MSRT_PRIORITY_HIGHEST);
  CHECK(e->payload_len == 3 && memcmp(e->payload, "pay", 3) == 0);
  CHECK(e->headers_len == 1 && e->headers[0] == 'h');
  CHECK(e->trace_id == e->id && e->id != 0);
  msrt_envelope *f = msrt_env_new("c", 1, NULL, 0, NULL, 0, NULL, 0, 42, 0, 7);
  CHECK(f->reply == NULL && f->headers == NULL && f->payload_len == 0);
  CHECK(f->priority == MSRT_PRIORITY_LOWEST && f->trace_id == 7);
  CHECK(f->id > e->id);
  CHECK(msrt_env_live() == before + 2);
  msrt_env_ref(e);
  msrt_env_unref(e);
  CHECK(msrt_env_live() == before + 2);
  msrt_env_unref(e);
  msrt_env_unref(f);
  msrt_env_unref(NULL);
  CHECK(msrt_env_live() == before);
}

/* The policy names are indexed by the enum and end with NULL (the shape
 * luaL_checkoption takes). */
/* ---- the envelopes' cache (core/envcache.h) ---- */

#define NSENT 64

static msrt_envelope *small_env(void) {
  return msrt_env_new("a.b", 3, NULL, 0, NULL, 0, "12345678", 8, 5, 0, 0);
}

static void *unref_all(void *arg) {
  msrt_envelope **v = arg;
  for (int i = 0; v[i]; i++) msrt_env_unref(v[i]);
  return NULL;
}

/* Make n envelopes on this thread; count how many of them sit where one
 * of was[0..nwas) sat (the blocks came back to this thread's cache). */
static int made_again(msrt_envelope **was, int nwas) {
  int n = (int)msrt_envcache_held() + nwas, hits = 0;
  msrt_envelope **v = calloc((size_t)n, sizeof *v);
  for (int i = 0; i < n; i++) {
    v[i] = small_env();
    for (int j = 0; j < nwas; j++) hits += v[i] == was[j];
  }
  for (int i = 0; i < n; i++) msrt_env_unref(v[i]);
  free(v);
  return hits;
}

/* Freed on another thread, an envelope's block goes back to the thread
 * that made it: in batches while that thread runs, the rest when it
 * exits; the cache keeps at most ENVCACHE_KEEP blocks a class; a large
 * envelope is not cached. */
static void test_envelope_cache(void) {
  long live = msrt_env_live();
  msrt_envelope *v[NSENT + 1] = {0}, *was[NSENT];
  for (int n = NSENT; n >= 5; n -= NSENT - 5) { /* 64: batches; 5: exit */
    for (int i = 0; i < n; i++) was[i] = v[i] = small_env();
    CHECK(v[0]->home != 0);
    v[n] = NULL;
    pthread_t th;
    pthread_create(&th, NULL, unref_all, v);
    pthread_join(th, NULL);
    CHECK(msrt_env_live() == live);
    CHECK(made_again(was, n) == n);
  }
  msrt_envelope **many = calloc(ENVCACHE_KEEP + 100, sizeof *many);
  for (int i = 0; i < ENVCACHE_KEEP + 100; i++) many[i] = small_env();
  for (int i = 0; i < ENVCACHE_KEEP + 100; i++) msrt_env_unref(many[i]);
  free(many);
  CHECK(msrt_envcache_held() <= ENVCACHE_KEEP + NSENT);
  char big[1000] = {0};
  msrt_envelope *e = msrt_env_new("a", 1, NULL, 0, NULL, 0, big, sizeof big,
                                  5, 0, 0);
  CHECK(e && e->home == 0);
  msrt_env_unref(e);
  CHECK(msrt_env_live() == live);
}

static void test_overflow_names(void) {
  CHECK_STR(msrt_overflow_names[MSRT_OVERFLOW_BLOCK], "block");
  CHECK_STR(msrt_overflow_names[MSRT_OVERFLOW_DROP_OLDEST], "drop_oldest");
  CHECK_STR(msrt_overflow_names[MSRT_OVERFLOW_DROP_NEWEST], "drop_newest");
  CHECK_STR(msrt_overflow_names[MSRT_OVERFLOW_ERROR], "error");
  CHECK(msrt_overflow_names[MSRT_OVERFLOW_ERROR + 1] == NULL);
}

/* Tokens: enough of them to cross a change of a thread's key (every
 * 4,096 refills of 5 tokens in core/token.c), from two threads. */
#define NTOK 25000
typedef char token_t[MSRT_TOKEN_LEN + 1];

static void *make_tokens(void *out) {
  token_t *t = out;
  for (int i = 0; i < NTOK; i++)
    if (msrt_token(t[i]) != MSRT_E_OK) t[i][0] = 0;
  return NULL;
}

static int cmp_token(const void *a, const void *b) { return strcmp(a, b); }

static void test_token(void) {
  token_t *t = malloc(2 * NTOK * sizeof *t);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, make_tokens, t + NTOK) == 0);
  make_tokens(t);
  pthread_join(th, NULL);
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  long seen[256] = {0};
  int bad = 0;
  for (int i = 0; i < 2 * NTOK; i++) {
    if (strlen(t[i]) != MSRT_TOKEN_LEN) bad++;
    for (int c = 0; t[i][c]; c++) seen[(unsigned char)t[i][c]]++;
  }
  CHECK(bad == 0);
  /* every character of the alphabet, near 1/64 of the 1.1 M drawn (a
   * stuck or biased source would miss this), and no other */
  long expect = 2L * NTOK * MSRT_TOKEN_LEN / 64, off = 0, outside = 0;
  for (int c = 0; c < 256; c++) {
    if (!strchr(alphabet, c) || c == 0) outside += seen[c];
    else if (seen[c] < expect * 9 / 10 || seen[c] > expect * 11 / 10) off++;
  }
  CHECK(off == 0);
  CHECK(outside == 0);
  qsort(t, 2 * NTOK, sizeof *t, cmp_token); /* no two alike, either thread */
  int dup = 0;
  for (int i = 1; i < 2 * NTOK; i++) dup += strcmp(t[i - 1], t[i]) == 0;
  CHECK(dup == 0);
  free(t);
}

TEST_MAIN(test_error_defaults, test_error_names, test_error_truncates,
          test_envelope, test_envelope_cache, test_overflow_names, test_token)
