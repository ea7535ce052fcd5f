/* Fuzz target "routes": the routing-table compiler and its apply
 * (src/router/routes.h), fed random rules and subjects.
 *
 * Input: text, one item per line, fields separated by ' ':
 *   max N            max_subject for the table (0 = default 4096)
 *   ? SUBJECT        a subject to route
 *   MATCH ACTION...  a rule: MATCH is the pattern ("~" = no pattern);
 *                    "=T" rewrite template T, "%W:T" a split target of
 *                    weight W (strtod: negative, nan, inf all reach the
 *                    compiler), "%%" an empty split, "!D" dead letter D.
 * Text keeps the seed corpus readable and lets mutations splice rules.
 *
 * Invariants:
 *   - the table compiles exactly when each rule compiles on its own, and a
 *     refused table names its first bad rule ("rule N: ..." with the same
 *     reason as that rule alone);
 *   - on every valid subject (the given ones, and ones made from each
 *     pattern: '*' -> "t", '>' -> "t.u") apply picks the first rule whose
 *     pattern msrt_subject_matchesn says matches, keeps the subject when
 *     that rule only dead-letters, otherwise writes exactly what a
 *     reference expansion of the rewrite (or of the split target it chose,
 *     a valid index) gives, and that is a valid subject; or refuses with
 *     MSRT_E_LIMIT exactly when the expansion exceeds max_subject;
 *   - the dead-letter subject is the rule's.
 */
#include <math.h>

#include "fuzz.h"
#include "router/routes.h"
#include "router/subject.h"

#define MAX_RULES 32
#define MAX_TARGETS 8
#define MAX_SUBJECTS 16

typedef struct {
  msrt_route_rule rules[MAX_RULES];
  msrt_route_target targets[MAX_RULES][MAX_TARGETS];
  size_t nrules;
  const char *subjects[MAX_SUBJECTS];
  size_t nsubjects;
  size_t max_subject;
} scenario;

/* Fill one rule from its fields (NUL-separated in place). */
static void parse_action(scenario *sc, msrt_route_rule *r, char *f) {
  msrt_route_target *t = sc->targets[sc->nrules];
  if (f[0] == '=') r->rewrite = f + 1;
  else if (f[0] == '!') r->dead_letter = f + 1;
  else if (f[0] == '%' && f[1] == '%') r->split = t;
  else if (f[0] == '%' && r->nsplit < MAX_TARGETS) {
    char *colon = strchr(f, ':');
    t[r->nsplit].weight = strtod(f + 1, NULL);
    t[r->nsplit].subject = colon ? colon + 1 : f + 1;
    r->split = t;
    r->nsplit++;
  }
}

static void parse_line(scenario *sc, char *line) {
  char *fields[1 + MAX_TARGETS + 2];
  size_t nf = 0;
  for (char *p = line; nf < sizeof fields / sizeof *fields;) {
    fields[nf++] = p;
    p = strchr(p, ' ');
    if (!p) break;
    *p++ = 0;
  }
  if (strcmp(fields[0], "max") == 0 && nf > 1) {
    sc->max_subject = strtoul(fields[1], NULL, 10) % 8192;
  } else if (strcmp(fields[0], "?") == 0 && nf > 1) {
    if (sc->nsubjects < MAX_SUBJECTS) sc->subjects[sc->nsubjects++] = fields[1];
  } else if (sc->nrules < MAX_RULES) {
    msrt_route_rule *r = &sc->rules[sc->nrules];
    memset(r, 0, sizeof *r);
    r->match = strcmp(fields[0], "~") == 0 ? NULL : fields[0];
    for (size_t i = 1; i < nf; i++) parse_action(sc, r, fields[i]);
    sc->nrules++;
  }
}

/* ---- reference expansion -------------------------------------------- */

typedef struct {
  const char *p;
  size_t len;
} span;

/* The wildcard captures of pattern p on subject s (p is known to match). */
static size_t captures(const char *p, const char *s, size_t sn, span *caps) {
  size_t pn = strlen(p), pa = 0, sa = 0, n = 0;
  while (pa <= pn) {
    size_t pe = pa, se = sa;
    while (pe < pn && p[pe] != '.') pe++;
    while (se < sn && s[se] != '.') se++;
    if (pe - pa == 1 && p[pa] == '>') caps[n++] = (span){s + sa, sn - sa};
    if (pe - pa == 1 && p[pa] == '*') caps[n++] = (span){s + sa, se - sa};
    pa = pe + 1;
    sa = se + 1;
  }
  return n;
}

/* Expand template t with caps into out (sized generously); its length. */
static size_t expand(const char *t, const span *caps, size_t ncaps, char *out) {
  size_t tn = strlen(t), body = tn, o = 0;
  int tail = tn >= 1 && t[tn - 1] == '>' && (tn == 1 || t[tn - 2] == '.');
  if (tail) body = tn - 1;
  for (size_t i = 0; i < body;) {
    if (t[i] == '$' && i + 1 < body && t[i + 1] >= '0' && t[i + 1] <= '9') {
      size_t v = 0;
      for (i++; i < body && t[i] >= '0' && t[i] <= '9'; i++)
        v = v * 10 + (size_t)(t[i] - '0');
      FUZZ_ASSERT(v >= 1 && v <= ncaps); /* the compiler checked it */
      memcpy(out + o, caps[v - 1].p, caps[v - 1].len);
      o += caps[v - 1].len;
    } else {
      out[o++] = t[i++];
    }
  }
  if (tail) {
    memcpy(out + o, caps[ncaps - 1].p, caps[ncaps - 1].len);
    o += caps[ncaps - 1].len;
  }
  return o;
}

static size_t expand_cap(const char *t, size_t sn) {
  size_t n = strlen(t) + sn + 1;
  for (const char *p = t; *p; p++) n += *p == '$' ? sn : 0;
  return n;
}

/* ---- checks --------------------------------------------------------- */

/* The table compiles iff every rule does alone; else it names the first. */
static msrt_routes *compile(const scenario *sc) {
  msrt_routes *t, *one;
  msrt_error err, e1;
  msrt_code c = msrt_routes_compile(sc->rules, sc->nrules, sc->max_subject,
                                    &t, &err);
  for (size_t i = 0; i < sc->nrules; i++) {
    msrt_code c1 = msrt_routes_compile(&sc->rules[i], 1, sc->max_subject,
                                       &one, &e1);
    msrt_routes_free(one);
    if (c1 == MSRT_E_OK) continue;
    FUZZ_ASSERT(c1 == MSRT_E_BAD_CONFIG && c == MSRT_E_BAD_CONFIG && !t);
    char want[64];
    snprintf(want, sizeof want, "rule %zu: ", i + 1);
    FUZZ_ASSERT(strncmp(err.message, want, strlen(want)) == 0);
    FUZZ_ASSERT(strncmp(e1.message, "rule 1: ", 8) == 0);
    FUZZ_ASSERT(strcmp(err.message + strlen(want), e1.message + 8) == 0 ||
                strlen(err.message) >= MSRT_ERROR_MSG_MAX - 1 - 8);
    return NULL;
  }
  FUZZ_ASSERT(c == MSRT_E_OK && t && msrt_routes_count(t) == sc->nrules);
  return t;
}

static int first_match(const scenario *sc, const char *s, size_t n) {
  for (size_t i = 0; i < sc->nrules; i++) {
    const char *m = sc->rules[i].match;
    if (msrt_subject_matchesn(m, strlen(m), s, n)) return (int)i;
  }
  return -1;
}

/* What the chosen rule must have written, against what apply did. */
static void check_rewrite(const scenario *sc, const msrt_route_rule *r,
                          const char *s, size_t n, msrt_code c,
                          const msrt_route_result *res) {
  size_t max = sc->max_subject ? sc->max_subject : MSRT_SUBJECT_MAX_DEFAULT;
  const char *tpl = r->rewrite;
  if (r->split) {
    FUZZ_ASSERT(res->target >= 0 && (size_t)res->target < r->nsplit);
    tpl = r->split[res->target].subject;
  } else {
    FUZZ_ASSERT(res->target == -1);
  }
  span caps[MSRT_ROUTE_MAX_WILDCARDS];
  size_t ncaps = captures(r->match, s, n, caps);
  char *want = malloc(expand_cap(tpl, n));
  FUZZ_ASSERT(want);
  size_t wn = expand(tpl, caps, ncaps, want);
  if (wn > max) {
    FUZZ_ASSERT(c == MSRT_E_LIMIT && !res->rewritten);
  } else {
    FUZZ_ASSERT(c == MSRT_E_OK && res->rewritten);
    FUZZ_ASSERT(res->len == wn && memcmp(res->subject, want, wn) == 0);
    FUZZ_ASSERT(res->subject[wn] == 0);
    FUZZ_ASSERT(msrt_subject_validate(res->subject, wn, max, NULL) == MSRT_E_OK);
  }
  free(want);
}

static void check_apply(const scenario *sc, const msrt_routes *t,
                        const char *s, size_t n, uint64_t *rng) {
  size_t max = sc->max_subject ? sc->max_subject : MSRT_SUBJECT_MAX_DEFAULT;
  if (msrt_subject_validate(s, n, max, NULL) != MSRT_E_OK) return;
  char *buf = malloc(max + 1);
  FUZZ_ASSERT(buf);
  msrt_route_result res;
  msrt_error err;
  msrt_code c = msrt_routes_apply(t, s, n, buf, max + 1, rng, &res, &err);
  int want = first_match(sc, s, n);
  FUZZ_ASSERT(res.rule == want);
  if (want < 0 || (!sc->rules[want].rewrite && !sc->rules[want].split)) {
    FUZZ_ASSERT(c == MSRT_E_OK && !res.rewritten && res.subject == s);
    FUZZ_ASSERT(res.len == n && res.target == -1);
  } else {
    check_rewrite(sc, &sc->rules[want], s, n, c, &res);
  }
  const char *dl = want < 0 ? NULL : sc->rules[want].dead_letter;
  FUZZ_ASSERT((res.dead_letter == NULL) == (dl == NULL));
  if (dl) FUZZ_ASSERT(strcmp(res.dead_letter, dl) == 0 &&
                      res.dead_letter_len == strlen(dl));
  free(buf);
}

/* A subject the pattern m matches: '*' -> "t", '>' -> "t.u". */
static char *subject_for(const char *m) {
  size_t n = strlen(m);
  char *s = malloc(3 * n + 1), *o = s;
  FUZZ_ASSERT(s);
  for (size_t i = 0, start = 0; i <= n; i++) {
    if (i < n && m[i] != '.') continue;
    const char *tok = m + start;
    size_t tl = i - start;
    if (tl == 1 && *tok == '*') tok = "t";
    else if (tl == 1 && *tok == '>') tok = "t.u", tl = 3;
    memcpy(o, tok, tl);
    o += tl;
    if (i < n) *o++ = '.';
    start = i + 1;
  }
  *o = 0;
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  FUZZ_ASSERT(text);
  memcpy(text, data, size);
  text[size] = 0;
  scenario sc = {.nrules = 0};
  for (char *line = text, *nl; line; line = nl) {
    nl = strchr(line, '\n');
    if (nl) *nl++ = 0;
    parse_line(&sc, line);
  }
  msrt_routes *t = compile(&sc);
  uint64_t rng = size + 1;
  for (size_t i = 0; t && i < sc.nsubjects; i++)
    check_apply(&sc, t, sc.subjects[i], strlen(sc.subjects[i]), &rng);
  for (size_t i = 0; t && i < sc.nrules; i++) {
    char *s = subject_for(sc.rules[i].match);
    check_apply(&sc, t, s, strlen(s), &rng);
    free(s);
  }
  msrt_routes_free(t);
  free(text);
  return 0;
}
