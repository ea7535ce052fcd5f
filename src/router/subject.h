/* Subjects and subscription patterns (docs/architecture.md "Router semantics").
 *
 * The rules are NATS' rules, taken from nats-server server/sublist.go
 * (isValidSubject, subjectIsLiteral / IsValidPublishSubject, and the matching
 * done by matchLiteral / the Sublist tree) and the NATS docs "Subject-Based
 * Messaging" (docs.nats.io/nats-concepts/subjects):
 *
 *   - a subject is one or more tokens separated by '.'; no token is empty
 *     (so "", ".a", "a." and "a..b" are invalid);
 *   - no whitespace anywhere: ' ', '\t', '\n', '\r', '\f' (sublist.go's set);
 *   - '*' matches exactly one token, '>' matches one or more trailing tokens
 *     and may only be the last token;
 *   - '*' and '>' are wildcards only as whole tokens: in "a.b*c" or "a.>b"
 *     they are ordinary characters;
 *   - a published subject holds no wildcard token.
 *
 * Two deliberate additions to sublist.go, both stricter:
 *   - every other ASCII control character (0x00-0x1f, 0x7f; NUL included) is
 *     invalid too (nats-server rejects NUL only when it checks runes);
 *   - a length limit in bytes (NATS bounds subjects only through the
 *     protocol's max_control_line, 4 KiB by default; we take an argument).
 * Bytes >= 0x80 are accepted as they are (UTF-8 is not checked).
 *
 * Every function here is pure: no global state, any thread, no allocation.
 */
#ifndef MSRT_ROUTER_SUBJECT_H
#define MSRT_ROUTER_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"

/* Default length limit in bytes, used when a limit argument is 0. */
#define MSRT_SUBJECT_MAX_DEFAULT 4096

/* Validate a subject to publish on: the rules above, and no wildcard token.
 *   s, len   the subject bytes (need not be NUL-terminated; s may be NULL
 *            only when len is 0)
 *   max_len  limit in bytes; 0 means MSRT_SUBJECT_MAX_DEFAULT
 *   err      filled on failure (may be NULL)
 * Returns MSRT_E_OK, or MSRT_E_INVALID_SUBJECT with a message naming the
 * subject (escaped, cut at 200 bytes) and the first rule broken, scanning
 * left to right, e.g.
 *   invalid subject "a..b": empty token at position 2
 *   invalid subject "a.*": wildcard '*' at position 2 is not allowed in a
 *     published subject
 *   invalid subject "a b": whitespace ' ' (0x20) at offset 1
 * Positions count tokens from 1; offsets count bytes from 0. */
msrt_code msrt_subject_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err);

/* Validate a subscription pattern: the rules above; '*' anywhere as a whole
 * token, '>' only as the last token. Same arguments and errors as
 * msrt_subject_validate, with messages starting "invalid pattern", e.g.
 *   invalid pattern "a.>.b": '>' must be the last token but is at position
 *     2 of 3 */
msrt_code msrt_pattern_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err);

/* Validate a queue group name. NATS gives queue names the subject naming
 * rules (case sensitive, no whitespace); here: non-empty, no whitespace or
 * control character, at most max_len bytes (0 = MSRT_SUBJECT_MAX_DEFAULT).
 * Dots and '*'/'>' are ordinary characters in a queue name. Returns
 * MSRT_E_OK or MSRT_E_INVALID_SUBJECT ("invalid queue group ..."). */
msrt_code msrt_queue_validate(const char *q, size_t len, size_t max_len,
                              msrt_error *err);

/* True when no token of s is a wildcard ('*' or '>' as a whole token);
 * nats-server's subjectIsLiteral. Does not check the other rules. */
bool msrt_subject_is_literal(const char *s, size_t len);

/* True when the pattern matches the subject, token by token: a '*' token
 * matches any one token, a final '>' token matches one or more remaining
 * tokens, any other token matches an equal token (bytes compared exactly).
 * Both are assumed valid (pattern per msrt_pattern_validate, subject per
 * msrt_subject_validate); on invalid input the result is still the
 * token-by-token comparison above (no undefined behaviour). The n variant
 * takes lengths; the plain one NUL-terminated strings. */
bool msrt_subject_matchesn(const char *pattern, size_t plen,
                           const char *subject, size_t slen);
bool msrt_subject_matches(const char *pattern, const char *subject);

/* True when some subject matches both patterns (each valid per
 * msrt_pattern_validate): token by token, '*' meets any one token, '>'
 * meets one or more, literals must be equal. Used where a rule about one
 * pattern must know whether it can concern a subscription to the other
 * (a NATS client's subscribe deny list against a wildcard subscription,
 * nats/auth.h). */
bool msrt_patterns_intersect(const char *a, size_t alen, const char *b,
                             size_t blen);

/* Count the tokens of s (number of '.' plus one; 0 when len is 0). */
size_t msrt_subject_tokens(const char *s, size_t len);

/* ---- the tokenizer: every part that splits a subject or a pattern uses it
 * (the index, the routing tables and the rules above). */

/* What a token is, as sublist.go names them (its pwc, fwc and literal). */
typedef enum {
  MSRT_TOKEN_LITERAL, /* any other token: matches an equal token */
  MSRT_TOKEN_PWC,     /* "*": matches exactly one token */
  MSRT_TOKEN_FWC      /* ">": matches one or more trailing tokens */
} msrt_token_kind;

/* One token: its bytes p[0..len) inside the subject (not NUL-terminated;
 * its byte offset is p - subject), and its kind. */
typedef struct {
  const char *p;
  uint32_t len;
  msrt_token_kind kind;
} msrt_subject_token;

/* The kind of the token p[0..len): '*' and '>' are wildcards only as
 * whole tokens. */
static inline msrt_token_kind msrt_token_kind_of(const char *p, size_t len) {
  if (len != 1) return MSRT_TOKEN_LITERAL;
  return p[0] == '*' ? MSRT_TOKEN_PWC
         : p[0] == '>' ? MSRT_TOKEN_FWC
                       : MSRT_TOKEN_LITERAL;
}

/* Step through the tokens of s[0..len): start with *pos = 0; each call
 * writes the token that begins at byte *pos into *t and moves *pos past
 * it and its '.'. Returns false when no token remains (at once when len is
 * 0). Empty tokens are returned as they are ("a..b" has three, the second
 * of length 0); nothing is checked. Tokens longer than UINT32_MAX bytes
 * are not supported (every subject is bounded by max_subject). */
static inline bool msrt_subject_next(const char *s, size_t len, size_t *pos,
                                     msrt_subject_token *t) {
  size_t at = *pos;
  if (at > len || len == 0) return false;
  const char *dot = at < len ? memchr(s + at, '.', len - at) : NULL;
  size_t end = dot ? (size_t)(dot - s) : len;
  t->p = s + at;
  t->len = (uint32_t)(end - at);
  t->kind = msrt_token_kind_of(t->p, t->len);
  *pos = end + 1;
  return true;
}

/* Split s[0..len) into its tokens (as msrt_subject_next gives them) in
 * out, which must have room for msrt_subject_tokens(s, len) of them (len
 * + 1 always suffices). Returns that number. Inline and eight bytes per
 * step (a byte is '.' when (byte ^ '.') is zero, found with the
 * carry-free zero-byte test): this is the match path's split. */
static inline size_t msrt_subject_tokenize(const char *s, size_t len,
                                           msrt_subject_token *out) {
  size_t n = 0, start = 0, i = 0;
  if (len == 0) return 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t dots = 0x2e2e2e2e2e2e2e2eull, lo7 = 0x7f7f7f7f7f7f7f7full;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    uint64_t x = w ^ dots;
    uint64_t m = ~(((x & lo7) + lo7) | x | lo7);
    while (m) {
      size_t pos = i + ((size_t)__builtin_ctzll(m) >> 3);
      out[n++] = (msrt_subject_token){s + start, (uint32_t)(pos - start),
                                      msrt_token_kind_of(s + start, pos - start)};
      start = pos + 1;
      m &= m - 1;
    }
  }
#endif
  for (; i < len; i++)
    if (s[i] == '.') {
      out[n++] = (msrt_subject_token){s + start, (uint32_t)(i - start),
                                      msrt_token_kind_of(s + start, i - start)};
      start = i + 1;
    }
  out[n++] = (msrt_subject_token){s + start, (uint32_t)(len - start),
                                  msrt_token_kind_of(s + start, len - start)};
  return n;
}

#endif
