#include "router/subject.h"

#include <stdio.h>
#include <string.h>

#include "router/internal.h"

char *rt_quote(char *buf, const char *s, size_t len, size_t max_in) {
  static const char hex[] = "0123456789abcdef";
  char *o = buf;
  size_t n = len < max_in ? len : max_in;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  if (n < len) {
    memcpy(o, "...", 3);
    o += 3;
  }
  *o = 0;
  return buf;
}

typedef enum { K_SUBJECT, K_PATTERN, K_QUEUE } kind;

static const char *const kind_name[] = {"subject", "pattern", "queue group"};

static msrt_code fail(msrt_error *err, kind k, const char *s, size_t len,
                      const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static msrt_code fail(msrt_error *err, kind k, const char *s, size_t len,
                      const char *fmt, ...) {
  if (!err) return MSRT_E_INVALID_SUBJECT;
  char q[RT_QUOTE_BUF], why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  return msrt_error_set(err, MSRT_E_INVALID_SUBJECT, "invalid %s %s: %s",
                        kind_name[k], rt_quote(q, s, len, RT_QUOTE_MAX), why);
}

static msrt_code bad_char(msrt_error *err, kind k, const char *s, size_t len,
                          size_t at) {
  unsigned char c = (unsigned char)s[at];
  static const char *const ws[] = {[' '] = "' '", ['\t'] = "'\\t'",
                                   ['\n'] = "'\\n'", ['\r'] = "'\\r'",
                                   ['\f'] = "'\\f'"};
  if (c < sizeof ws / sizeof *ws && ws[c])
    return fail(err, k, s, len, "whitespace %s (0x%02x) at offset %zu", ws[c],
                c, at);
  return fail(err, k, s, len, "control character 0x%02x at offset %zu", c, at);
}

static inline int is_bad_char(unsigned char c) { return c <= 0x20 || c == 0x7f; }

/* Whether the token p[0..n) is a literal one: not empty, not "*" nor ">". */
static inline bool literal_token(const char *p, size_t n) {
  return n > 0 && msrt_token_kind_of(p, n) == MSRT_TOKEN_LITERAL;
}

/* Whether s[0..len) is tokens of literal characters only: no byte <=
 * 0x20 nor 0x7f, no empty token, no token that is "*" or ">". Such a
 * subject or pattern is valid whatever the kind; anything else takes the
 * token-by-token walk below, which finds the error to report (or
 * accepts a pattern's wildcards). Eight bytes a step with the carry-free
 * byte tests of msrt_subject_tokenize (subject.h): every publish
 * validates its subject and reply, and the walk cost ~17 instructions a
 * byte (~500 a request's reply subject). */
static bool all_literal(const char *s, size_t len) {
  size_t start = 0, i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, hi = 0x8080808080808080ull;
  const uint64_t dots = 0x2e2e2e2e2e2e2e2eull, below21 = 0x5f5f5f5f5f5f5f5full;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    /* bytes under 0x21 (their high bit clear), and bytes 0x7f */
    uint64_t ctl = ~(((w & lo7) + below21) | w) & hi;
    uint64_t d = w ^ lo7, del = ~(((d & lo7) + lo7) | d | lo7);
    if (ctl | del) return false;
    uint64_t x = w ^ dots;
    for (uint64_t m = ~(((x & lo7) + lo7) | x | lo7); m; m &= m - 1) {
      size_t pos = i + ((size_t)__builtin_ctzll(m) >> 3);
      if (!literal_token(s + start, pos - start)) return false;
      start = pos + 1;
    }
  }
#endif
  for (; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (!literal_token(s + start, i - start)) return false;
      start = i + 1;
    } else if (is_bad_char(c)) {
      return false;
    }
  }
  return literal_token(s + start, len - start);
}

static msrt_code validate(const char *s, size_t len, size_t max_len, kind k,
                          msrt_error *err) {
  if (max_len == 0) max_len = MSRT_SUBJECT_MAX_DEFAULT;
  if (len == 0) return fail(err, k, s, len, "empty %s", kind_name[k]);
  if (len > max_len)
    return fail(err, k, s, len, "length %zu exceeds max_subject (%zu bytes)",
                len, max_len);
  if (k == K_QUEUE) {
    for (size_t i = 0; i < len; i++)
      if (is_bad_char((unsigned char)s[i])) return bad_char(err, k, s, len, i);
    return MSRT_E_OK;
  }
  if (all_literal(s, len)) return MSRT_E_OK;
  size_t pos = 0, at = 0, fwc_pos = 0;
  msrt_subject_token t;
  while (msrt_subject_next(s, len, &at, &t)) {
    pos++;
    for (uint32_t i = 0; i < t.len; i++)
      if (is_bad_char((unsigned char)t.p[i]))
        return bad_char(err, k, s, len, (size_t)(t.p - s) + i);
    if (t.len == 0)
      return fail(err, k, s, len, "empty token at position %zu", pos);
    if (fwc_pos)
      return fail(err, k, s, len,
                  "'>' must be the last token but is at position %zu of %zu",
                  fwc_pos, msrt_subject_tokens(s, len));
    if (t.kind != MSRT_TOKEN_LITERAL && k == K_SUBJECT)
      return fail(err, k, s, len,
                  "wildcard '%c' at position %zu is not allowed in a "
                  "published subject",
                  t.p[0], pos);
    if (t.kind == MSRT_TOKEN_FWC) fwc_pos = pos;
  }
  return MSRT_E_OK;
}

msrt_code msrt_subject_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err) {
  return validate(s, len, max_len, K_SUBJECT, err);
}

msrt_code msrt_pattern_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err) {
  return validate(s, len, max_len, K_PATTERN, err);
}

msrt_code msrt_queue_validate(const char *q, size_t len, size_t max_len,
                              msrt_error *err) {
  return validate(q, len, max_len, K_QUEUE, err);
}

bool msrt_subject_is_literal(const char *s, size_t len) {
  size_t at = 0;
  msrt_subject_token t;
  while (msrt_subject_next(s, len, &at, &t))
    if (t.kind != MSRT_TOKEN_LITERAL) return false;
  return true;
}

size_t msrt_subject_tokens(const char *s, size_t len) {
  if (len == 0) return 0;
  size_t n = 1;
  for (const char *p = s, *e = s + len; (p = memchr(p, '.', (size_t)(e - p)));
       p++)
    n++;
  return n;
}

bool msrt_subject_matchesn(const char *pattern, size_t plen,
                           const char *subject, size_t slen) {
  size_t pi = 0, si = 0;
  msrt_subject_token p, s;
  if (slen == 0) return false; /* an empty subject has no token */
  while (msrt_subject_next(pattern, plen, &pi, &p)) {
    if (p.kind == MSRT_TOKEN_FWC && pi > plen)
      return si <= slen; /* a final '>': at least one subject token left */
    if (!msrt_subject_next(subject, slen, &si, &s)) return false;
    if (p.kind != MSRT_TOKEN_PWC &&
        (p.len != s.len || memcmp(p.p, s.p, p.len) != 0))
      return false;
  }
  /* the pattern ended: a match when the subject did too (an empty
   * pattern has no token and matches nothing) */
  return plen > 0 && si > slen;
}

bool msrt_patterns_intersect(const char *a, size_t alen, const char *b,
                             size_t blen) {
  size_t ai = 0, bi = 0;
  msrt_subject_token x, y;
  if (alen == 0 || blen == 0) return false;
  for (;;) {
    bool hx = msrt_subject_next(a, alen, &ai, &x);
    bool hy = msrt_subject_next(b, blen, &bi, &y);
    if (!hx || !hy) return !hx && !hy; /* both ended together */
    if (x.kind == MSRT_TOKEN_FWC || y.kind == MSRT_TOKEN_FWC) return true;
    if (x.kind == MSRT_TOKEN_PWC || y.kind == MSRT_TOKEN_PWC) continue;
    if (x.len != y.len || memcmp(x.p, y.p, x.len) != 0) return false;
  }
}

bool msrt_subject_matches(const char *pattern, const char *subject) {
  return msrt_subject_matchesn(pattern, strlen(pattern), subject,
                               strlen(subject));
}
