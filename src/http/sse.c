/* The text/event-stream parser (sse.h). */
#include "http/sse.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX ((size_t)16 << 20)

void msrt_sse_init(msrt_sse *p, size_t max) {
  memset(p, 0, sizeof *p);
  p->max = max ? max : DEFAULT_MAX;
  p->retry_ms = -1;
}

/* Append n bytes and keep a NUL after them. */
static bool put(msrt_sse_buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return false;
    b->p = q, b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return true;
}

static void clear(msrt_sse_buf *b) {
  b->len = 0;
  if (b->p) b->p[0] = 0;
}

static bool digits(const char *s, size_t n) {
  if (!n) return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

/* One field of the event being read. */
static msrt_code field(msrt_sse *p, const char *name, size_t nlen,
                       const char *v, size_t vlen) {
  if (nlen == 4 && !memcmp(name, "data", 4)) {
    if (p->data.len + vlen + 1 > p->max) return MSRT_E_LIMIT;
    if (!put(&p->data, v, vlen) || !put(&p->data, "\n", 1)) return MSRT_E_NOMEM;
  } else if (nlen == 5 && !memcmp(name, "event", 5)) {
    clear(&p->event);
    if (!put(&p->event, v, vlen)) return MSRT_E_NOMEM;
  } else if (nlen == 2 && !memcmp(name, "id", 2)) {
    if (memchr(v, 0, vlen)) return MSRT_E_OK;
    clear(&p->id);
    if (!put(&p->id, v, vlen)) return MSRT_E_NOMEM;
  } else if (nlen == 5 && !memcmp(name, "retry", 5) && digits(v, vlen)) {
    int64_t ms = 0;
    for (size_t i = 0; i < vlen && ms < INT64_MAX / 10 - 10; i++) ms = ms * 10 + (v[i] - '0');
    p->retry_ms = ms;
  }
  return MSRT_E_OK;
}

/* The event ends: dispatch it when it has data, then reset it. */
static bool dispatch(msrt_sse *p, msrt_sse_cb cb, void *ud) {
  bool stop = false;
  if (p->data.len) {
    p->data.p[--p->data.len] = 0; /* its last "\n" */
    stop = cb(ud, p->event.len ? p->event.p : "message", p->data.p, p->data.len,
              p->id.len ? p->id.p : "");
  }
  clear(&p->data);
  clear(&p->event);
  return stop;
}

/* A whole line (without its end). */
static msrt_code line(msrt_sse *p, msrt_sse_cb cb, void *ud) {
  const char *s = p->line.p ? p->line.p : "";
  size_t n = p->line.len;
  if (n == 0) return dispatch(p, cb, ud) ? MSRT_E_CLOSED : MSRT_E_OK;
  if (s[0] == ':') return MSRT_E_OK; /* a comment */
  const char *colon = memchr(s, ':', n);
  if (!colon) return field(p, s, n, "", 0);
  size_t nlen = (size_t)(colon - s);
  const char *v = colon + 1;
  size_t vlen = n - nlen - 1;
  if (vlen && *v == ' ') v++, vlen--;
  return field(p, s, nlen, v, vlen);
}

/* Skip a leading UTF-8 BOM (EF BB BF), which may straddle feeds. Returns
 * how many bytes of b it consumed. */
static size_t skip_bom(msrt_sse *p, const char *b, size_t n) {
  static const unsigned char BOM[3] = {0xEF, 0xBB, 0xBF};
  size_t i = 0;
  while (!p->started && i < n) {
    if ((unsigned char)b[i] != BOM[p->bom]) {
      /* not a BOM after all: the bytes matched so far are content */
      p->started = true;
      if (p->bom && !put(&p->line, (const char *)BOM, p->bom)) p->spent = true;
      return i;
    }
    i++;
    if (++p->bom == 3) p->started = true;
  }
  return i;
}

msrt_code msrt_sse_feed(msrt_sse *p, const char *b, size_t n, msrt_sse_cb cb,
                        void *ud) {
  if (p->spent) return MSRT_E_LIMIT;
  size_t i = skip_bom(p, b, n);
  if (p->spent) return MSRT_E_NOMEM;
  if (p->line.len > p->max) { /* a BOM's first bytes that were content */
    p->spent = true;
    return MSRT_E_LIMIT;
  }
  while (i < n) {
    char c = b[i];
    if (c == '\n' && p->after_cr) { /* the LF of a CRLF */
      p->after_cr = false;
      i++;
      continue;
    }
    p->after_cr = false;
    if (c == '\n' || c == '\r') {
      p->after_cr = c == '\r';
      i++;
      msrt_code rc = line(p, cb, ud);
      clear(&p->line);
      if (rc == MSRT_E_CLOSED) return rc;
      if (rc != MSRT_E_OK) {
        p->spent = true;
        return rc;
      }
      continue;
    }
    /* the rest of the line in this feed, at once */
    size_t j = i;
    while (j < n && b[j] != '\n' && b[j] != '\r') j++;
    if (p->line.len + (j - i) > p->max) {
      p->spent = true;
      return MSRT_E_LIMIT;
    }
    if (!put(&p->line, b + i, j - i)) {
      p->spent = true;
      return MSRT_E_NOMEM;
    }
    i = j;
  }
  return MSRT_E_OK;
}

void msrt_sse_free(msrt_sse *p) {
  free(p->line.p);
  free(p->data.p);
  free(p->event.p);
  free(p->id.p);
  size_t max = p->max;
  msrt_sse_init(p, max);
}
