#include "router/routes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "router/internal.h"
#include "router/subject.h"

typedef struct {
  uint32_t cap; /* UINT32_MAX = literal text */
  uint32_t len;
  const char *text;
} seg;

typedef struct {
  seg *segs;
  uint32_t nseg;
  uint64_t thresh; /* split: cumulative, out of 2^53 */
} tmpl;

typedef struct {
  char *match;
  msrt_subject_token *toks; /* match's */
  uint32_t ntok, nwild;
  tmpl *targets; /* rewrite: 1; split: nsplit; none: 0 */
  uint32_t ntargets;
  bool split;
  char *dead;
  size_t dead_len;
} rrule;

struct msrt_routes {
  size_t n;
  size_t max_subject;
  rrule *rules;
};

typedef struct {
  size_t off, len;
} capture;

static void rule_free(rrule *r) {
  free(r->match);
  free(r->toks);
  for (uint32_t i = 0; i < r->ntargets; i++) free(r->targets[i].segs);
  free(r->targets);
  free(r->dead);
}

void msrt_routes_free(msrt_routes *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) rule_free(&t->rules[i]);
  free(t->rules);
  free(t);
}

size_t msrt_routes_count(const msrt_routes *t) { return t ? t->n : 0; }

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

/* Compile one template into segments. rule_no = the rule's position
 * counted from 1 and what = "rewrite" or "split target N" (N from 1), both
 * only for messages: rules come from Lua lists, where the first is 1.
 * Literal text points into tpl's own copy, kept in the first segment's
 * allocation (segs and text share one block). */
static msrt_code compile_tmpl(const rrule *r, size_t rule_no, const char *what,
                              const char *src, size_t max_subject, tmpl *out,
                              msrt_error *err) {
  char q[RT_QUOTE_BUF], pq[RT_QUOTE_BUF];
  size_t len = src ? strlen(src) : 0;
  if (len == 0)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "rule %zu: %s is empty",
                          rule_no, what);
  rt_quote(q, src, len, RT_QUOTE_MAX);
  rt_quote(pq, r->match, strlen(r->match), RT_QUOTE_MAX);
  if (len > max_subject)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: %s %s is longer than %zu bytes", rule_no,
                          what, q, max_subject);
  /* Token checks. */
  size_t at = 0, pos = 0;
  msrt_subject_token t;
  while (msrt_subject_next(src, len, &at, &t)) {
    pos++;
    for (uint32_t i = 0; i < t.len; i++) {
      unsigned char c = (unsigned char)t.p[i];
      if (c <= 0x20 || c == 0x7f)
        return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                              "rule %zu: %s %s: whitespace or control "
                              "character 0x%02x at offset %zu",
                              rule_no, what, q, c, (size_t)(t.p - src) + i);
    }
    if (t.len == 0)
      return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                            "rule %zu: %s %s: empty token at position %zu",
                            rule_no, what, q, pos);
    if (t.kind == MSRT_TOKEN_PWC)
      return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                            "rule %zu: %s %s: wildcard '*' at position %zu "
                            "(use $N to copy a token)",
                            rule_no, what, q, pos);
    if (t.kind == MSRT_TOKEN_FWC) {
      if (at <= len)
        return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                              "rule %zu: %s %s: '>' must be the last token",
                              rule_no, what, q);
      if (r->ntok == 0 || r->toks[r->ntok - 1].kind != MSRT_TOKEN_FWC)
        return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                              "rule %zu: %s %s uses '>' but the pattern %s "
                              "does not end in '>'",
                              rule_no, what, q, pq);
    }
  }
  /* Segments: at most 2 per '$' plus 1, plus 1 for a final '>'. */
  size_t maxseg = 2;
  for (size_t i = 0; i < len; i++) maxseg += src[i] == '$' ? 2 : 0;
  char *block = malloc(maxseg * sizeof(seg) + len + 1);
  if (!block) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  seg *segs = (seg *)block;
  char *text = block + maxseg * sizeof(seg);
  memcpy(text, src, len + 1);
  uint32_t n = 0;
  size_t lit = 0; /* start of pending literal text */
  size_t body = len;
  bool tail = len >= 1 && text[len - 1] == '>' && (len == 1 || text[len - 2] == '.');
  if (tail) body = len - 1;
  for (size_t i = 0; i < body;) {
    if (text[i] == '$' && i + 1 < body && text[i + 1] >= '0' &&
        text[i + 1] <= '9') {
      size_t j = i + 1;
      unsigned long v = 0;
      while (j < body && text[j] >= '0' && text[j] <= '9' && v < 100000)
        v = v * 10 + (unsigned long)(text[j++] - '0');
      if (v == 0 || v > r->nwild) {
        free(block);
        return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                              "rule %zu: %s %s refers to $%lu but %s has "
                              "%s%u wildcard%s",
                              rule_no, what, q, v, pq,
                              r->nwild ? "only " : "", r->nwild,
                              r->nwild == 1 ? "" : "s");
      }
      if (i > lit) segs[n++] = (seg){UINT32_MAX, (uint32_t)(i - lit), text + lit};
      segs[n++] = (seg){(uint32_t)(v - 1), 0, NULL};
      i = lit = j;
    } else {
      i++;
    }
  }
  if (body > lit) segs[n++] = (seg){UINT32_MAX, (uint32_t)(body - lit), text + lit};
  if (tail) segs[n++] = (seg){r->nwild - 1, 0, NULL};
  out->segs = segs;
  out->nseg = n;
  out->thresh = 0;
  return MSRT_E_OK;
}

static msrt_code compile_rule(const msrt_route_rule *src, size_t rule_no,
                              size_t max_subject, rrule *r, msrt_error *err) {
  memset(r, 0, sizeof *r);
  if (!src->match)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "rule %zu: no match pattern",
                          rule_no);
  size_t mlen = strlen(src->match);
  msrt_error e;
  if (msrt_pattern_validate(src->match, mlen, max_subject, &e) != MSRT_E_OK)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "rule %zu: %s", rule_no,
                          e.message);
  if (!(r->match = dupn(src->match, mlen)))
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  size_t nt = msrt_subject_tokens(r->match, mlen);
  if (!(r->toks = malloc(nt * sizeof *r->toks)))
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  r->ntok = (uint32_t)msrt_subject_tokenize(r->match, mlen, r->toks);
  for (uint32_t k = 0; k < r->ntok; k++)
    r->nwild += r->toks[k].kind != MSRT_TOKEN_LITERAL;
  if (r->nwild > MSRT_ROUTE_MAX_WILDCARDS)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: pattern has %u wildcards, at most %d "
                          "are supported",
                          rule_no, r->nwild, MSRT_ROUTE_MAX_WILDCARDS);
  if (src->rewrite && src->split)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: both rewrite and split", rule_no);
  if (src->split && src->nsplit == 0)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "rule %zu: empty split",
                          rule_no);
  if (!src->rewrite && !src->split && !src->dead_letter)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: no action (rewrite, split or "
                          "dead_letter)",
                          rule_no);
  if (src->dead_letter) {
    size_t dl = strlen(src->dead_letter);
    if (msrt_subject_validate(src->dead_letter, dl, max_subject, &e) !=
        MSRT_E_OK)
      return msrt_error_set(err, MSRT_E_BAD_CONFIG, "rule %zu: dead_letter: %s",
                            rule_no, e.message);
    if (!(r->dead = dupn(src->dead_letter, dl)))
      return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    r->dead_len = dl;
  }
  size_t nt_targets = src->rewrite ? 1 : src->split ? src->nsplit : 0;
  if (nt_targets > 65536)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: %zu split targets, at most 65536", rule_no,
                          nt_targets);
  if (nt_targets == 0) return MSRT_E_OK;
  if (!(r->targets = calloc(nt_targets, sizeof(tmpl))))
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  if (src->rewrite) {
    msrt_code c = compile_tmpl(r, rule_no, "rewrite", src->rewrite, max_subject,
                               &r->targets[0], err);
    if (c != MSRT_E_OK) return c;
    r->ntargets = 1;
    return MSRT_E_OK;
  }
  r->split = true;
  double total = 0;
  for (size_t i = 0; i < src->nsplit; i++) {
    double w = src->split[i].weight;
    if (!(w > 0) || !isfinite(w))
      return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                            "rule %zu: split target %zu weight must be > 0 "
                            "and finite (got %g)",
                            rule_no, i + 1, w);
    total += w;
  }
  if (!isfinite(total))
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "rule %zu: split weights sum to infinity", rule_no);
  double cum = 0;
  for (size_t i = 0; i < src->nsplit; i++) {
    char what[48];
    snprintf(what, sizeof what, "split target %zu", i + 1);
    msrt_code c = compile_tmpl(r, rule_no, what, src->split[i].subject,
                               max_subject, &r->targets[i], err);
    if (c != MSRT_E_OK) return c;
    r->ntargets = (uint32_t)(i + 1);
    cum += src->split[i].weight;
    double f = cum / total * 9007199254740992.0; /* 2^53 */
    r->targets[i].thresh =
        i + 1 == src->nsplit ? (1ull << 53) : (uint64_t)f;
  }
  return MSRT_E_OK;
}

msrt_code msrt_routes_compile(const msrt_route_rule *rules, size_t n,
                              size_t max_subject, msrt_routes **out,
                              msrt_error *err) {
  *out = NULL;
  if (n && !rules)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "rules is NULL");
  if (max_subject == 0) max_subject = MSRT_SUBJECT_MAX_DEFAULT;
  msrt_routes *t = calloc(1, sizeof *t);
  if (!t) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  t->max_subject = max_subject;
  if (n && !(t->rules = calloc(n, sizeof(rrule)))) {
    free(t);
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    msrt_code c = compile_rule(&rules[i], i + 1, max_subject, &t->rules[i], err);
    t->n = i + 1; /* so that free sees the partly built rule */
    if (c != MSRT_E_OK) {
      msrt_routes_free(t);
      return c;
    }
  }
  *out = t;
  return MSRT_E_OK;
}

/* Match r's pattern against the subject, recording wildcard captures. */
static bool match_rule(const rrule *r, const char *s, size_t len,
                       capture *caps) {
  if (len == 0) return false;
  size_t si = 0;
  uint32_t w = 0;
  msrt_subject_token st;
  for (uint32_t k = 0; k < r->ntok; k++) {
    const msrt_subject_token *t = &r->toks[k];
    if (t->kind == MSRT_TOKEN_FWC) { /* one or more tokens left */
      if (si > len) return false;
      caps[w++] = (capture){si, len - si};
      return true;
    }
    if (!msrt_subject_next(s, len, &si, &st)) return false;
    if (t->kind == MSRT_TOKEN_PWC) {
      caps[w++] = (capture){(size_t)(st.p - s), st.len};
    } else if (t->len != st.len || memcmp(t->p, st.p, t->len) != 0) {
      return false;
    }
  }
  return si > len; /* both ended; else the subject has more tokens */
}

static _Thread_local uint64_t tl_rng;

msrt_code msrt_routes_apply(const msrt_routes *t, const char *subject,
                            size_t len, char *buf, size_t cap, uint64_t *rng,
                            msrt_route_result *res, msrt_error *err) {
  *res = (msrt_route_result){-1, -1, false, subject, len, NULL, 0};
  if (!t) return MSRT_E_OK;
  capture caps[MSRT_ROUTE_MAX_WILDCARDS];
  for (size_t i = 0; i < t->n; i++) {
    const rrule *r = &t->rules[i];
    if (!match_rule(r, subject, len, caps)) continue;
    res->rule = (int)i;
    res->dead_letter = r->dead;
    res->dead_letter_len = r->dead_len;
    if (r->ntargets == 0) return MSRT_E_OK;
    const tmpl *tp = &r->targets[0];
    if (r->split) {
      if (!rng) {
        rng = &tl_rng;
        if (!tl_rng) tl_rng = msrt_now_ns() ^ (uintptr_t)&tl_rng;
      }
      uint64_t x = rt_rand(rng) >> 11;
      uint32_t k = 0;
      while (k + 1 < r->ntargets && x >= r->targets[k].thresh) k++;
      tp = &r->targets[k];
      res->target = (int)k;
    }
    size_t limit = t->max_subject < cap ? t->max_subject : (cap ? cap - 1 : 0);
    size_t o = 0;
    for (uint32_t j = 0; j < tp->nseg; j++) {
      const seg *sg = &tp->segs[j];
      const char *p = sg->cap == UINT32_MAX ? sg->text : subject + caps[sg->cap].off;
      size_t n = sg->cap == UINT32_MAX ? sg->len : caps[sg->cap].len;
      if (o + n > limit) {
        char q[RT_QUOTE_BUF];
        return msrt_error_set(err, MSRT_E_LIMIT,
                              "rule %zu: routing %s gives a subject longer "
                              "than %zu bytes",
                              i + 1, rt_quote(q, subject, len, RT_QUOTE_MAX),
                              limit);
      }
      memcpy(buf + o, p, n);
      o += n;
    }
    buf[o] = 0;
    res->subject = buf;
    res->len = o;
    res->rewritten = true;
    return MSRT_E_OK;
  }
  return MSRT_E_OK;
}
