/* Fuzz target "index": the subscription index (src/router/index.h): the
 * token trie with path copying, literal children past 8 (its hash table)
 * and, when the input's first byte is odd, past 3 (a HAMT, router/wide.h),
 * queue groups, ready flags and the per-snapshot match cache, driven by a
 * random sequence of subscribes, unsubscribes, set_ready and matches.
 *
 * Input: a list of operations, one byte each plus their operands: token
 * choices from a small pool (so patterns and subjects meet; 12 numbered
 * tokens push a node past 8 literal children), queue names from three.
 * The router has 4 cache slots, so the cache fills and is read quickly
 * (it starts after 32 misses on a snapshot; each match repeats 3 times).
 *
 * Invariants, against a plain list of the live subscriptions:
 *   - subscribe accepts exactly the patterns msrt_pattern_validate does;
 *     ids are never 0 or reused; unsubscribe of a removed id is NOT_FOUND;
 *   - a match yields every live plain subscription whose pattern
 *     msrt_subject_matchesn says matches, once, with its endpoint, kind
 *     and ud, then exactly one ready member of each queue group with a
 *     matching member, and counts the groups whose matching members are
 *     all unready; nothing else;
 *   - sub_count is the number of live subscriptions.
 */
#include "fuzz.h"
#include "router/index.h"
#include "router/subject.h"

#define MAX_SUBS 64

typedef struct {
  uint64_t id;
  char pattern[256]; /* 5 tokens of at most 31 bytes */
  int queue; /* -1 plain, else index into QUEUES */
  int ready, alive;
} sub;

static const char *const QUEUES[] = {"q1", "q2", "workers"};
static const char *const TOKENS[] = {
    "a", "b", "agents", "task", "*", ">", "", "x y", "t0", "t1", "t2", "t3",
    "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11",
    "a-token-longer-than-eight-bytes", "a-token-longer-than-eight-bytez"};
#define NTOKENS (sizeof TOKENS / sizeof *TOKENS)

typedef struct {
  sub subs[MAX_SUBS];
  size_t n;
  msrt_router *r;
  msrt_reader *rd;
} model;

/* Up to 5 tokens from the pool; literal = no wildcard tokens. */
static size_t make_subject(fz_in *in, char *out, int literal) {
  size_t ntok = 1 + fz_u8(in) % 5, o = 0;
  for (size_t i = 0; i < ntok; i++) {
    const char *t = TOKENS[fz_u8(in) % NTOKENS];
    if (literal && (strcmp(t, "*") == 0 || strcmp(t, ">") == 0)) t = "a";
    if (i) out[o++] = '.';
    memcpy(out + o, t, strlen(t));
    o += strlen(t);
  }
  out[o] = 0;
  return o;
}

static void op_subscribe(model *m, fz_in *in) {
  char p[256];
  size_t n = make_subject(in, p, 0);
  int q = fz_u8(in) % 4 == 0 ? fz_u8(in) % 3 : -1;
  const char *qn = q < 0 ? NULL : QUEUES[q];
  uint64_t id = 0;
  sub *s = &m->subs[m->n];
  msrt_code c = msrt_router_subscribe(m->r, p, n, qn, qn ? strlen(qn) : 0, s,
                                      (uint32_t)m->n, p, &id, NULL);
  int valid = msrt_pattern_validate(p, n, 0, NULL) == MSRT_E_OK;
  FUZZ_ASSERT((c == MSRT_E_OK) == valid);
  if (c != MSRT_E_OK) return;
  FUZZ_ASSERT(id != 0);
  for (size_t i = 0; i < m->n; i++) FUZZ_ASSERT(m->subs[i].id != id);
  *s = (sub){.id = id, .queue = q, .ready = 1, .alive = 1};
  memcpy(s->pattern, p, n + 1);
  m->n++;
}

static void op_unsubscribe(model *m, fz_in *in) {
  if (!m->n) return;
  sub *s = &m->subs[fz_u8(in) % m->n];
  msrt_code c = msrt_router_unsubscribe(m->r, s->id);
  FUZZ_ASSERT(c == (s->alive ? MSRT_E_OK : MSRT_E_NOT_FOUND));
  s->alive = 0;
}

static void op_ready(model *m, fz_in *in) {
  if (!m->n) return;
  sub *s = &m->subs[fz_u8(in) % m->n];
  int ready = fz_u8(in) & 1;
  msrt_code c = msrt_router_set_ready(m->r, s->id, ready);
  FUZZ_ASSERT(c == (s->alive ? MSRT_E_OK : MSRT_E_NOT_FOUND));
  if (s->alive) s->ready = ready;
}

static int matches(const sub *s, const char *subj, size_t n) {
  return s->alive && msrt_subject_matchesn(s->pattern, strlen(s->pattern), subj, n);
}

/* The items of one match against the model. */
static void check_items(model *m, const msrt_match_result *res,
                        const char *subj, size_t n) {
  int seen[MAX_SUBS] = {0}, group_items[3] = {0}, queue_part = 0;
  for (size_t i = 0; i < res->len; i++) {
    const msrt_match_item *it = &res->items[i];
    size_t k = it->kind;
    FUZZ_ASSERT(k < m->n && it->endpoint == &m->subs[k]);
    const sub *s = &m->subs[k];
    FUZZ_ASSERT(it->sub_id == s->id && matches(s, subj, n) && !seen[k]);
    seen[k] = 1;
    int queued = (it->flags & MSRT_MATCH_QUEUE) != 0;
    FUZZ_ASSERT(queued == (s->queue >= 0));
    if (queued) {
      FUZZ_ASSERT(s->ready && ++group_items[s->queue] == 1);
      queue_part = 1;
    } else {
      FUZZ_ASSERT(!queue_part); /* plain subscriptions come first */
    }
  }
  int any[3] = {0}, ready[3] = {0};
  uint32_t unready = 0;
  for (size_t k = 0; k < m->n; k++) {
    const sub *s = &m->subs[k];
    if (!matches(s, subj, n)) continue;
    if (s->queue < 0) FUZZ_ASSERT(seen[k]);
    else any[s->queue] = 1, ready[s->queue] |= s->ready;
  }
  for (int q = 0; q < 3; q++) {
    FUZZ_ASSERT(group_items[q] == (any[q] && ready[q]));
    unready += any[q] && !ready[q];
  }
  FUZZ_ASSERT(res->unready_groups == unready);
}

static void op_match(model *m, fz_in *in, int from_pattern) {
  char subj[256];
  size_t n;
  if (from_pattern && m->n) {
    /* a subject this pattern matches: wildcards become "a" */
    const sub *s = &m->subs[fz_u8(in) % m->n];
    n = 0;
    for (const char *c = s->pattern; *c; c++) {
      int whole = (*c == '*' || *c == '>') && (c == s->pattern || c[-1] == '.') &&
                  (c[1] == '.' || c[1] == 0);
      subj[n++] = whole ? 'a' : *c;
    }
    subj[n] = 0;
  } else {
    n = make_subject(in, subj, 1);
  }
  if (msrt_subject_validate(subj, n, 0, NULL) != MSRT_E_OK) return;
  msrt_match_result res;
  msrt_match_result_init(&res);
  for (int rep = 0; rep < 3; rep++) { /* the later ones may hit the cache */
    FUZZ_ASSERT(msrt_router_match(m->rd, subj, n, &res, NULL, NULL) ==
                MSRT_E_OK);
    check_items(m, &res, subj, n);
  }
  msrt_match_result_free(&res);
}

static size_t live(const model *m) {
  size_t k = 0;
  for (size_t i = 0; i < m->n; i++) k += m->subs[i].alive;
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  msrt_router_opts opts = {0, 4, size && data[0] % 2 ? 3 : 0};
  model *m = calloc(1, sizeof *m);
  FUZZ_ASSERT(m);
  m->r = msrt_router_new(&opts);
  m->rd = msrt_router_reader_new(m->r);
  FUZZ_ASSERT(m->r && m->rd);
  while (in.n) {
    uint8_t op = fz_u8(&in) % 8;
    if (op <= 1 && m->n < MAX_SUBS) op_subscribe(m, &in);
    else if (op == 2) op_unsubscribe(m, &in);
    else if (op == 3) op_ready(m, &in);
    else op_match(m, &in, op == 7);
    FUZZ_ASSERT(msrt_router_sub_count(m->r) == live(m));
  }
  msrt_router_reader_free(m->rd);
  msrt_router_free(m->r);
  free(m);
  return 0;
}
