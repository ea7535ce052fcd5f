/* Fuzz target "subject": subject, pattern and queue-group validation and
 * matching (src/router/subject.h).
 *
 * Input: byte 0 picks max_len (0 = the 4096 default, else 1..255), byte 1
 * where to cut the rest into a pattern and a subject; the whole rest is
 * also validated as each kind.
 *
 * Invariants:
 *   - the three validators agree with a reference written here from the
 *     rules in subject.h (NATS' rules: tokens split on '.', none empty, no
 *     whitespace or control byte, '*'/'>' wildcards only as whole tokens,
 *     '>' last, no wildcard in a subject, a length limit), and a refusal
 *     is MSRT_E_INVALID_SUBJECT with a message naming the kind;
 *   - msrt_subject_matchesn agrees with a reference token matcher on any
 *     pattern/subject pair, valid or not (subject.h promises the plain
 *     token-by-token comparison even on invalid input);
 *   - a valid subject is a valid literal pattern, matches itself, ">", "*"
 *     exactly when it has one token, each of its prefixes followed by ".>"
 *     but not itself followed by ".>", and itself with any token replaced by
 *     "*"; a valid pattern is a valid subject exactly when it is literal;
 *   - msrt_subject_tokens counts the '.' plus one.
 */
#include "fuzz.h"
#include "router/subject.h"

enum { SUBJECT, PATTERN, QUEUE };

static int bad_byte(unsigned char c) { return c <= 0x20 || c == 0x7f; }

/* The rules of subject.h, written plainly. */
static int ref_valid(const char *s, size_t n, size_t max, int kind) {
  if (!max) max = MSRT_SUBJECT_MAX_DEFAULT;
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if (bad_byte((unsigned char)s[i])) return 0;
  if (kind == QUEUE) return 1;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.') continue;
    size_t tl = i - start;
    if (tl == 0) return 0;
    int star = tl == 1 && s[start] == '*', fwc = tl == 1 && s[start] == '>';
    if ((star || fwc) && kind == SUBJECT) return 0;
    if (fwc && i != n) return 0;
    start = i + 1;
  }
  return 1;
}

static msrt_code validate(const char *s, size_t n, size_t max, int kind,
                          msrt_error *err) {
  if (kind == SUBJECT) return msrt_subject_validate(s, n, max, err);
  if (kind == PATTERN) return msrt_pattern_validate(s, n, max, err);
  return msrt_queue_validate(s, n, max, err);
}

static int check_kind(const char *s, size_t n, size_t max, int kind) {
  static const char *const prefix[] = {"invalid subject ", "invalid pattern ",
                                       "invalid queue group "};
  msrt_error err;
  msrt_code c = validate(s, n, max, kind, &err);
  FUZZ_ASSERT(validate(s, n, max, kind, NULL) == c);
  FUZZ_ASSERT(c == MSRT_E_OK || c == MSRT_E_INVALID_SUBJECT);
  FUZZ_ASSERT((c == MSRT_E_OK) == ref_valid(s, n, max, kind));
  if (c != MSRT_E_OK)
    FUZZ_ASSERT(strncmp(err.message, prefix[kind], strlen(prefix[kind])) == 0);
  return c == MSRT_E_OK;
}

/* Token [*at, end of token) of s; advances *at past the '.'. */
static size_t next_token(const char *s, size_t n, size_t *at, size_t *len) {
  size_t start = *at, i = start;
  while (i < n && s[i] != '.') i++;
  *len = i - start;
  *at = i + 1;
  return start;
}

/* Token by token, as subject.h describes matching. */
static int ref_match(const char *p, size_t pn, const char *s, size_t sn) {
  if (pn == 0 || sn == 0) return 0;
  size_t pa = 0, sa = 0;
  for (;;) {
    size_t pl, sl;
    size_t ps = next_token(p, pn, &pa, &pl);
    int plast = pa > pn;
    if (plast && pl == 1 && p[ps] == '>') return sa <= sn;
    if (sa > sn) return 0; /* the subject ran out of tokens */
    size_t ss = next_token(s, sn, &sa, &sl);
    int slast = sa > sn;
    int star = pl == 1 && p[ps] == '*';
    if (!star && (pl != sl || memcmp(p + ps, s + ss, pl) != 0)) return 0;
    if (plast || slast) return plast && slast;
  }
}

static int matches(const char *p, size_t pn, const char *s, size_t sn) {
  int m = msrt_subject_matchesn(p, pn, s, sn);
  FUZZ_ASSERT(m == ref_match(p, pn, s, sn));
  return m;
}

/* Patterns made from a valid subject that must (or must not) match it. */
static void check_subject_patterns(const char *s, size_t n) {
  size_t ntok = msrt_subject_tokens(s, n);
  char *p = malloc(n + 3);
  FUZZ_ASSERT(p);
  FUZZ_ASSERT(matches(s, n, s, n));
  FUZZ_ASSERT(matches(">", 1, s, n));
  FUZZ_ASSERT(matches("*", 1, s, n) == (ntok == 1));
  memcpy(p, s, n);
  memcpy(p + n, ".>", 2);
  FUZZ_ASSERT(!matches(p, n + 2, s, n)); /* '>' needs one more token */
  size_t at = 0;
  for (size_t k = 1; k < ntok; k++) {
    size_t len, start = next_token(s, n, &at, &len);
    memcpy(p + start + len, ".>", 2); /* tokens 1..k, then ".>" */
    FUZZ_ASSERT(matches(p, start + len + 2, s, n));
    memcpy(p, s, n);
    memcpy(p + start, "*", 1); /* token k as '*' */
    memmove(p + start + 1, s + start + len, n - start - len);
    FUZZ_ASSERT(matches(p, n - len + 1, s, n));
    memcpy(p, s, n);
  }
  free(p);
}

static size_t dots(const char *s, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += s[i] == '.';
  return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  size_t max = fz_u8(&in);
  size_t cut = fz_u8(&in);
  const char *s = (const char *)in.p;
  size_t n = in.n;
  int subj = check_kind(s, n, max, SUBJECT);
  int pat = check_kind(s, n, max, PATTERN);
  check_kind(s, n, max, QUEUE);
  if (n) FUZZ_ASSERT(msrt_subject_tokens(s, n) == 1 + dots(s, n));
  if (subj) FUZZ_ASSERT(pat && msrt_subject_is_literal(s, n));
  if (pat) FUZZ_ASSERT(subj == msrt_subject_is_literal(s, n));
  if (subj) check_subject_patterns(s, n);
  cut = n ? cut % (n + 1) : 0;
  matches(s, cut, s + cut, n - cut);
  matches(s + cut, n - cut, s, cut);
  return 0;
}
