/* Fuzz target "sse": a text/event-stream as an MCP server's answer
 * brings it (src/http/sse.h), fed whole and in random read sizes.
 *
 * Input: byte 0 picks max (a small limit, so over-long lines and events
 * are exercised, or the 16 MiB default), bytes 1..4 seed the read sizes,
 * the rest is the stream.
 *
 * Invariants:
 *   - the events do not depend on the reads: whole and chunked feeds give
 *     the same events (type, data, id) in the same order and the same
 *     outcome (ok, or limit at the same event);
 *   - both equal a reference interpretation written here over the whole
 *     input (split into lines on CRLF, LF or CR; a leading BOM dropped;
 *     the standard's field rules), so the streaming parser's state
 *     across reads (a CR at a read's end, a split BOM) loses nothing;
 *   - no event's type or id holds CR or LF, and no data holds CR.
 */
#include "fuzz.h"
#include "http/sse.h"

typedef struct {
  char *p;
  size_t len, cap;
} logbuf;

static void lput(logbuf *l, const void *s, size_t n) {
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 256;
    while (cap < l->len + n) cap *= 2;
    l->p = realloc(l->p, cap);
    FUZZ_ASSERT(l->p);
    l->cap = cap;
  }
  if (n) memcpy(l->p + l->len, s, n);
  l->len += n;
}

static void log_event(logbuf *l, const char *type, const char *data, size_t len, const char *id) {
  size_t tn = strlen(type), in = strlen(id);
  FUZZ_ASSERT(!strpbrk(type, "\r\n") && !strpbrk(id, "\r\n"));
  FUZZ_ASSERT(!memchr(data, '\r', len));
  lput(l, "E", 1);
  lput(l, &tn, sizeof tn), lput(l, type, tn);
  lput(l, &len, sizeof len), lput(l, data, len);
  lput(l, &in, sizeof in), lput(l, id, in);
}

static bool on_event(void *ud, const char *type, const char *data, size_t len, const char *id) {
  log_event(ud, type, data, len, id);
  return false;
}

/* The parser, fed in chunks from seed (0: at once). */
static msrt_code parsed(logbuf *l, const char *s, size_t n, size_t max, uint64_t seed) {
  static const size_t biggest[] = {1, 2, 3, 7, 64, 4096};
  size_t most = biggest[seed % 6];
  msrt_sse p;
  msrt_sse_init(&p, max);
  msrt_code rc = MSRT_E_OK;
  for (size_t at = 0; at < n && rc == MSRT_E_OK;) {
    size_t k = seed ? fz_next(&seed) % (most + 1) : n - at;
    if (k > n - at) k = n - at;
    rc = msrt_sse_feed(&p, s + at, k, on_event, l);
    at += k;
  }
  msrt_sse_free(&p);
  return rc;
}

/* ---- the reference ----------------------------------------------------------- */

typedef struct {
  logbuf data, type, id;
  size_t max;
} ref;

static void rset(logbuf *b, const char *s, size_t n) {
  b->len = 0;
  lput(b, s, n);
}

/* One line (without its end); MSRT_E_LIMIT when data passes max. */
static msrt_code ref_line(ref *r, logbuf *out, const char *s, size_t n) {
  if (n == 0) {
    if (r->data.len) {
      r->data.len--; /* its last "\n" goes */
      lput(&r->data, "", 1), lput(&r->type, "", 1), lput(&r->id, "", 1); /* NUL-terminated */
      r->data.len--, r->type.len--, r->id.len--;
      log_event(out, r->type.len ? r->type.p : "message", r->data.p, r->data.len, r->id.p);
    }
    r->data.len = r->type.len = 0;
    return MSRT_E_OK;
  }
  if (s[0] == ':') return MSRT_E_OK;
  const char *colon = memchr(s, ':', n);
  size_t nl = colon ? (size_t)(colon - s) : n;
  const char *v = colon ? colon + 1 : s + n;
  size_t vl = colon ? n - nl - 1 : 0;
  if (vl && *v == ' ') v++, vl--;
  if (nl == 4 && !memcmp(s, "data", 4)) {
    if (r->data.len + vl + 1 > r->max) return MSRT_E_LIMIT;
    lput(&r->data, v, vl), lput(&r->data, "\n", 1);
  } else if (nl == 5 && !memcmp(s, "event", 5)) {
    rset(&r->type, v, vl);
  } else if (nl == 2 && !memcmp(s, "id", 2) && !memchr(v, 0, vl)) {
    rset(&r->id, v, vl);
  }
  return MSRT_E_OK;
}

static msrt_code reference(logbuf *out, const char *s, size_t n, size_t max) {
  ref r;
  memset(&r, 0, sizeof r);
  r.max = max ? max : (size_t)16 << 20;
  if (n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3, n -= 3;
  /* a stream that ends inside a BOM's first bytes: nothing yet (they are
   * content only once a byte shows they were no BOM) */
  else if (n < 3 && !memcmp(s, "\xEF\xBB\xBF", n)) n = 0;
  msrt_code rc = MSRT_E_OK;
  size_t start = 0;
  for (size_t i = 0; i < n && rc == MSRT_E_OK; i++) {
    if (s[i] != '\n' && s[i] != '\r') continue;
    if (i - start > r.max) rc = MSRT_E_LIMIT;
    else rc = ref_line(&r, out, s + start, i - start);
    if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
    start = i + 1;
  }
  if (rc == MSRT_E_OK && n - start > r.max) rc = MSRT_E_LIMIT; /* an unended line too long */
  free(r.data.p), free(r.type.p), free(r.id.p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t b0 = fz_u8(&in);
  size_t max = b0 < 128 ? 1 + (size_t)b0 / 4 : 0;
  uint64_t seed = fz_u32(&in) | 1; /* never 0: 0 means "one read" */
  const char *s = (const char *)in.p;
  size_t n = in.n;
  logbuf want = {0}, whole = {0}, chunked = {0};
  msrt_code rw = reference(&want, s, n, max);
  msrt_code r1 = parsed(&whole, s, n, max, 0);
  msrt_code r2 = parsed(&chunked, s, n, max, seed);
  FUZZ_ASSERT(rw == r1 && r1 == r2);
  FUZZ_ASSERT(want.len == whole.len && whole.len == chunked.len);
  FUZZ_ASSERT(!want.len || (!memcmp(want.p, whole.p, want.len) && !memcmp(whole.p, chunked.p, want.len)));
  free(want.p), free(whole.p), free(chunked.p);
  return 0;
}
