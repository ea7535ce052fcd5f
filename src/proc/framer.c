#include "proc/framer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_LINE ((size_t)16 << 20)
/* A buffer grown past this by one long line is freed after it, so a single
 * 16 MiB line does not pin 16 MiB for the life of the process. */
#define KEEP_CAP ((size_t)64 << 10)
/* Bytes of one header line of a Content-Length framed message. */
#define HDR_LINE_MAX 1024

void msrt_framer_init(msrt_framer *f, size_t max_line, msrt_line_fn on_line,
                      msrt_bad_line_fn on_bad, void *ud) {
  memset(f, 0, sizeof *f);
  f->max_line = max_line ? max_line : DEFAULT_MAX_LINE;
  f->on_line = on_line;
  f->on_bad = on_bad;
  f->ud = ud;
}

void msrt_framer_free(msrt_framer *f) {
  free(f->buf);
  f->buf = NULL;
  f->len = f->cap = 0;
}

static void emit(msrt_framer *f, const char *line, size_t len) {
  if (len && line[len - 1] == '\r') len--;
  f->on_line(f->ud, line, len);
}

/* Keep the first MSRT_FRAMER_HEAD bytes of a line being dropped. */
static void keep_head(msrt_framer *f, const char *p, size_t n) {
  size_t room = MSRT_FRAMER_HEAD - f->hlen;
  if (n > room) n = room;
  if (n) memcpy(f->head + f->hlen, p, n); /* p may be NULL when n is 0 */
  f->hlen += n;
}

/* The line in progress (buf plus p[0..n)) is too long: remember its head
 * and length, drop what was buffered, skip up to the next '\n'. */
static void start_skip(msrt_framer *f, const char *p, size_t n) {
  f->hlen = 0;
  keep_head(f, f->buf, f->len);
  keep_head(f, p, n);
  f->skipped = f->len + n;
  f->len = 0;
  f->skipping = 1;
  if (f->cap > KEEP_CAP) msrt_framer_free(f);
}

static void end_skip(msrt_framer *f, const char *reason) {
  f->on_bad(f->ud, reason, f->head, f->hlen, f->skipped);
  f->skipping = 0;
  f->skipped = f->hlen = 0;
}

static int append(msrt_framer *f, const char *p, size_t n) {
  if (!n) return 0; /* buf may still be NULL */
  if (f->len + n > f->cap) {
    size_t cap = f->cap ? f->cap : 256;
    while (cap < f->len + n) cap *= 2;
    char *b = realloc(f->buf, cap);
    if (!b) return -1;
    f->buf = b;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, p, n);
  f->len += n;
  return 0;
}

/* One segment: the bytes up to a '\n' (nl set) or to the chunk's end. */
static int segment(msrt_framer *f, const char *p, size_t n, int nl) {
  int rc = 0;
  if (f->skipping) {
    keep_head(f, p, n);
    f->skipped += n;
  } else if (f->len + n > f->max_line) {
    start_skip(f, p, n);
  } else if (nl && f->len == 0) {
    emit(f, p, n); /* the common case: a whole line inside one chunk */
    return 0;
  } else if (append(f, p, n) != 0) {
    start_skip(f, p, n);
    if (nl) end_skip(f, "out_of_memory");
    return -1;
  } else if (nl) {
    emit(f, f->buf, f->len);
    f->len = 0;
    if (f->cap > KEEP_CAP) msrt_framer_free(f);
    return 0;
  }
  if (nl && f->skipping) end_skip(f, "line_too_long");
  return rc;
}

/* ---- Content-Length framing (LSP's base protocol) ---------------------- */

void msrt_framer_init_headers(msrt_framer *f, size_t max_line,
                              msrt_line_fn on_line, msrt_bad_line_fn on_bad,
                              void *ud) {
  msrt_framer_init(f, max_line, on_line, on_bad, ud);
  f->headers = 1;
  f->clen = SIZE_MAX;
}

/* Ready for the next header block. */
static void block_reset(msrt_framer *f) {
  f->in_body = f->skipping = f->hbad = 0;
  f->want = f->skipped = f->hlen = 0;
  f->clen = SIZE_MAX;
  f->len = 0;
  if (f->cap > KEEP_CAP) msrt_framer_free(f);
}

/* "Content-Length: 123" into f->clen; any other "Name: value" ignored. */
static void header_line(msrt_framer *f, const char *l, size_t n) {
  const char *colon = memchr(l, ':', n);
  keep_head(f, l, n);
  keep_head(f, "\n", 1);
  if (!colon || colon == l) {
    f->hbad = 1;
    return;
  }
  if ((size_t)(colon - l) != 14 || strncasecmp(l, "Content-Length", 14) != 0)
    return;
  const char *v = colon + 1, *end = l + n;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  size_t len = 0, digits = 0;
  for (; v < end && *v >= '0' && *v <= '9' && digits < 16; v++, digits++)
    len = len * 10 + (size_t)(*v - '0');
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  /* 16 digits and more would not fit a read anyway: refused, not wrapped */
  if (!digits || v != end || (f->clen != SIZE_MAX && f->clen != len))
    f->hbad = 1;
  else f->clen = len;
}

/* The body is complete (or was skipped). */
static void body_done(msrt_framer *f) {
  if (!f->skipping) f->on_line(f->ud, f->buf, f->len);
  block_reset(f);
}

/* The empty line ending a header block: the body starts, or the block is
 * reported. */
static void headers_done(msrt_framer *f) {
  if (!f->hlen && !f->hbad) return; /* a stray empty line between messages */
  if (f->hbad || f->clen == SIZE_MAX) {
    f->on_bad(f->ud, "invalid_header", f->head, f->hlen, f->hlen);
    block_reset(f);
    return;
  }
  f->in_body = 1;
  f->want = f->clen;
  f->len = 0;
  if (f->clen > f->max_line) { /* refused at once, never allocated */
    f->on_bad(f->ud, "line_too_long", f->head, f->hlen, f->clen);
    f->skipping = 1;
  }
  if (!f->want) body_done(f);
}

/* k body bytes at p (k <= f->want). */
static int body_bytes(msrt_framer *f, const char *p, size_t k) {
  int rc = 0;
  if (!f->skipping && f->len == 0 && k == f->want) { /* whole in this chunk */
    f->on_line(f->ud, p, k);
    block_reset(f);
    return 0;
  }
  if (!f->skipping && append(f, p, k) != 0) {
    f->on_bad(f->ud, "out_of_memory", f->buf, f->len < MSRT_FRAMER_HEAD
              ? f->len : MSRT_FRAMER_HEAD, f->clen);
    f->skipping = 1;
    rc = -1;
  }
  f->want -= k;
  if (!f->want) body_done(f);
  return rc;
}

/* Header bytes up to a '\n' (nl set) or to the chunk's end. */
static void header_segment(msrt_framer *f, const char *p, size_t n, int nl) {
  if (f->skipping) { /* the rest of an over-long header line */
  } else if (f->len + n > HDR_LINE_MAX || append(f, p, n) != 0) {
    f->hbad = f->skipping = 1;
    f->len = 0;
  }
  if (!nl) return;
  if (f->skipping) {
    f->skipping = 0;
    return;
  }
  size_t len = f->len;
  if (len && f->buf[len - 1] == '\r') len--;
  f->len = 0;
  if (len) header_line(f, f->buf, len);
  else headers_done(f);
}

static int feed_headers(msrt_framer *f, const char *bytes, size_t n,
                        size_t *taken) {
  const char *p = bytes, *end = bytes + n;
  int rc = 0;
  f->stop = 0;
  while (p < end && !f->stop) {
    if (f->in_body) {
      size_t k = (size_t)(end - p) < f->want ? (size_t)(end - p) : f->want;
      if (body_bytes(f, p, k) != 0) rc = -1;
      p += k;
      continue;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t seg = (size_t)((nl ? nl : end) - p);
    header_segment(f, p, seg, nl != NULL);
    p += seg + (nl ? 1 : 0);
  }
  f->stop = 0;
  *taken = (size_t)(p - bytes);
  return rc;
}

/* End of stream inside a message: reported as cut short. */
static void finish_headers(msrt_framer *f) {
  if (f->in_body && !f->skipping)
    f->on_bad(f->ud, "truncated", f->buf, f->len < MSRT_FRAMER_HEAD
              ? f->len : MSRT_FRAMER_HEAD, f->len);
  else if (!f->in_body && (f->hlen || f->len))
    f->on_bad(f->ud, "truncated", f->hlen ? f->head : f->buf,
              f->hlen ? f->hlen : f->len < MSRT_FRAMER_HEAD
                  ? f->len : MSRT_FRAMER_HEAD, f->hlen ? f->hlen : f->len);
  block_reset(f);
}

/* ---- feeding ------------------------------------------------------------ */

static int feed(msrt_framer *f, const char *bytes, size_t n, size_t *taken) {
  const char *p = bytes, *end = bytes + n;
  int rc = 0;
  if (f->headers) return feed_headers(f, bytes, n, taken);
  f->stop = 0;
  while (p < end && !f->stop) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t seg = (size_t)((nl ? nl : end) - p);
    if (segment(f, p, seg, nl != NULL) != 0) rc = -1;
    p += seg + (nl ? 1 : 0);
  }
  f->stop = 0;
  *taken = (size_t)(p - bytes);
  return rc;
}

msrt_code msrt_framer_feed(msrt_framer *f, const char *bytes, size_t n) {
  size_t taken, at = 0;
  msrt_code rc = MSRT_E_OK;
  while (at < n) { /* a stop only matters to feed_part's callers */
    if (feed(f, bytes + at, n - at, &taken) != 0) rc = MSRT_E_NOMEM;
    at += taken;
  }
  return rc;
}

size_t msrt_framer_feed_part(msrt_framer *f, const char *bytes, size_t n) {
  size_t taken;
  feed(f, bytes, n, &taken);
  return taken;
}

void msrt_framer_stop(msrt_framer *f) { f->stop = 1; }

void msrt_framer_finish(msrt_framer *f) {
  if (f->headers) finish_headers(f);
  else if (f->skipping) end_skip(f, "line_too_long");
  else if (f->len) emit(f, f->buf, f->len);
  f->len = 0;
  msrt_framer_free(f);
}
