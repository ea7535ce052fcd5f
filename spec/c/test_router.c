/* Router core: subject rules, trie matching vs brute force, queue groups,
 * routing tables, accounting. Concurrency is in test_router_mt.c. */
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ctest.h"
#include "router/index.h"
#include "router/routes.h"
#include "router/subject.h"

static int subj_ok(const char *s) {
  return msrt_subject_validate(s, strlen(s), 0, NULL) == MSRT_E_OK;
}
static int pat_ok(const char *s) {
  return msrt_pattern_validate(s, strlen(s), 0, NULL) == MSRT_E_OK;
}

static void test_subject_valid(void) {
  const char *good[] = {"a", "a.b.c", "agents.coder.42.task", "a.b*c", "a.>b",
                        "a.*b", "*a", "a*", ">>", "a.b>", "$SYS.x", "_INBOX.x1",
                        "kind-1.id_2", "\xc3\xbc.x", "A.B", "a.**"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    CHECK(subj_ok(good[i]));
    CHECK(pat_ok(good[i])); /* a literal subject is also a valid pattern */
    CHECK(msrt_subject_is_literal(good[i], strlen(good[i])));
  }
}

static void test_subject_invalid(void) {
  const char *bad[] = {"", ".", "a.", ".a", "a..b", "..", "a b", " a", "a ",
                       "a\tb", "a.\n", "a\rb", "a\fb", "a\x01.b", "a\x7f",
                       "a.*", "*", ">", "a.>", "a.*.b", "*.a", "a.\v"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    msrt_error e;
    CHECK(msrt_subject_validate(bad[i], strlen(bad[i]), 0, &e) ==
          MSRT_E_INVALID_SUBJECT);
    CHECK(e.code == MSRT_E_INVALID_SUBJECT);
    CHECK(e.category == MSRT_CAT_ROUTER);
  }
  /* embedded NUL with an explicit length */
  CHECK(msrt_subject_validate("a\0b", 3, 0, NULL) == MSRT_E_INVALID_SUBJECT);
  CHECK(!msrt_subject_is_literal("a.*", 3));
  CHECK(!msrt_subject_is_literal(">", 1));
  CHECK(!msrt_subject_is_literal("*.b", 3));
}

static void test_pattern_rules(void) {
  const char *good[] = {"a.*", "*", ">", "a.>", "*.*", "a.*.>", "*.>",
                        "a.>b.c", "a.b*c.*", "a.*.b.*"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    CHECK(pat_ok(good[i]));
    CHECK(!subj_ok(good[i]) || msrt_subject_is_literal(good[i], strlen(good[i])));
  }
  const char *bad[] = {"a.>.b", ">.a", ">.>", "a..>", "a.>.*", "", "a. b",
                       ".>", "*.", "a.*..b", "a.\t*"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(!pat_ok(bad[i]));
}

/* Two patterns intersect when one subject matches both. */
static void test_patterns_intersect(void) {
  const char *yes[][2] = {{"a.>", "a.secret"}, {"a.*.c", "a.b.>"},
                          {"*", "a"},          {">", "a.b.c"},
                          {"a.*", "*.b"},      {"a.b", "a.b"}};
  const char *no[][2] = {{"a.*", "a.b.c"}, {"a.>", "a"},   {"a.b", "a.c"},
                         {"a.*.c", "a.b.d"}, {"b.>", "a.>"}, {"a", "a.>"}};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    CHECK(msrt_patterns_intersect(yes[i][0], strlen(yes[i][0]), yes[i][1],
                                  strlen(yes[i][1])));
    CHECK(msrt_patterns_intersect(yes[i][1], strlen(yes[i][1]), yes[i][0],
                                  strlen(yes[i][0])));
  }
  for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
    CHECK(!msrt_patterns_intersect(no[i][0], strlen(no[i][0]), no[i][1],
                                   strlen(no[i][1])));
    CHECK(!msrt_patterns_intersect(no[i][1], strlen(no[i][1]), no[i][0],
                                   strlen(no[i][0])));
  }
}

static void test_subject_messages(void) {
  msrt_error e;
  msrt_subject_validate("a..b", 4, 0, &e);
  CHECK_STR(e.message, "invalid subject \"a..b\": empty token at position 2");
  msrt_subject_validate("a.", 2, 0, &e);
  CHECK_STR(e.message, "invalid subject \"a.\": empty token at position 2");
  msrt_subject_validate(".a", 2, 0, &e);
  CHECK_STR(e.message, "invalid subject \".a\": empty token at position 1");
  msrt_subject_validate("", 0, 0, &e);
  CHECK_STR(e.message, "invalid subject \"\": empty subject");
  msrt_subject_validate("a b", 3, 0, &e);
  CHECK_STR(e.message,
            "invalid subject \"a b\": whitespace ' ' (0x20) at offset 1");
  msrt_subject_validate("a.\tb", 4, 0, &e);
  CHECK_STR(e.message,
            "invalid subject \"a.\\x09b\": whitespace '\\t' (0x09) at offset 2");
  msrt_subject_validate("a\x01", 2, 0, &e);
  CHECK_STR(e.message,
            "invalid subject \"a\\x01\": control character 0x01 at offset 1");
  msrt_subject_validate("a.*", 3, 0, &e);
  CHECK_STR(e.message, "invalid subject \"a.*\": wildcard '*' at position 2 is "
                       "not allowed in a published subject");
  msrt_pattern_validate("a.>.b", 5, 0, &e);
  CHECK_STR(e.message, "invalid pattern \"a.>.b\": '>' must be the last token "
                       "but is at position 2 of 3");
  msrt_queue_validate("w q", 3, 0, &e);
  CHECK_STR(e.message,
            "invalid queue group \"w q\": whitespace ' ' (0x20) at offset 1");
  msrt_subject_validate("say \"hi\"", 8, 0, &e);
  CHECK_STR(e.message, "invalid subject \"say \\\"hi\\\"\": whitespace ' ' "
                       "(0x20) at offset 3");
  /* a long subject is quoted cut, with "..." */
  char big[600];
  memset(big, 'x', sizeof big);
  big[300] = ' ';
  msrt_subject_validate(big, sizeof big, 1000, &e);
  CHECK(strstr(e.message, "\"...: whitespace ' ' (0x20) at offset 300") != NULL);
  CHECK(strlen(e.message) < 300);
}

static void test_subject_length(void) {
  char s[5000];
  memset(s, 'a', sizeof s);
  for (size_t i = 1; i < sizeof s; i += 2) s[i] = '.';
  /* "a.a.a..." of odd length ending in 'a' */
  CHECK(msrt_subject_validate(s, 9, 9, NULL) == MSRT_E_OK);
  msrt_error e;
  CHECK(msrt_subject_validate(s, 11, 9, &e) == MSRT_E_INVALID_SUBJECT);
  CHECK(strstr(e.message, "length 11 exceeds max_subject (9 bytes)") != NULL);
  CHECK(msrt_subject_validate(s, 4095, 0, NULL) == MSRT_E_OK);
  CHECK(msrt_subject_validate(s, 4097, 0, NULL) == MSRT_E_INVALID_SUBJECT);
  CHECK(msrt_subject_validate(s, 4097, 4097, NULL) == MSRT_E_OK);
  CHECK(msrt_pattern_validate(s, 4097, 0, NULL) == MSRT_E_INVALID_SUBJECT);
  CHECK(msrt_queue_validate("q", 1, 0, NULL) == MSRT_E_OK);
  CHECK(msrt_queue_validate("a.b>*", 5, 0, NULL) == MSRT_E_OK);
  CHECK(msrt_queue_validate("", 0, 0, NULL) == MSRT_E_INVALID_SUBJECT);
  CHECK(msrt_queue_validate("abc", 3, 2, NULL) == MSRT_E_INVALID_SUBJECT);
  CHECK(msrt_subject_tokens("a.b.c", 5) == 3);
  CHECK(msrt_subject_tokens("", 0) == 0);
  CHECK(msrt_subject_tokens("a..", 3) == 3);
}

static void test_matcher(void) {
  struct {
    const char *p, *s;
    int m;
  } cases[] = {
      {"a", "a", 1},         {"a", "b", 0},         {"a.b", "a.b", 1},
      {"a.b", "a", 0},       {"a", "a.b", 0},       {"*", "a", 1},
      {"*", "a.b", 0},       {">", "a", 1},         {">", "a.b.c", 1},
      {"a.>", "a", 0},       {"a.>", "a.b", 1},     {"a.>", "a.b.c", 1},
      {"a.*", "a.b", 1},     {"a.*", "a.b.c", 0},   {"a.*", "a", 0},
      {"*.b", "a.b", 1},     {"*.b", "a.c", 0},     {"a.*.c", "a.b.c", 1},
      {"a.*.c", "a.b.d", 0}, {"*.*", "a.b", 1},     {"*.>", "a", 0},
      {"*.>", "a.b", 1},     {"a.b*c", "a.bxc", 0}, {"a.b*c", "a.b*c", 1},
      {"a.>b", "a.xb", 0},   {"a.>b", "a.>b", 1},   {"ab", "a", 0},
      {"a", "ab", 0},        {"a.bc", "a.b", 0},    {"a.*", "a.", 1},
      {"a.b", "", 0},        {">", "", 0},          {"*", "", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = msrt_subject_matches(cases[i].p, cases[i].s);
    if (got != cases[i].m)
      fprintf(stderr, "match(%s, %s) = %d\n", cases[i].p, cases[i].s, got);
    CHECK(got == cases[i].m);
  }
}

/* ---- the tokenizer --------------------------------------------------------- */

/* Kinds by name: '*' and '>' are wildcards only as whole tokens. */
static void test_token_kinds(void) {
  msrt_subject_token t[8];
  const char *s = "a.*.>";
  CHECK(msrt_subject_tokenize(s, strlen(s), t) == 3);
  CHECK(t[0].kind == MSRT_TOKEN_LITERAL && t[0].len == 1 && t[0].p == s);
  CHECK(t[1].kind == MSRT_TOKEN_PWC && t[1].p == s + 2);
  CHECK(t[2].kind == MSRT_TOKEN_FWC && t[2].p == s + 4);
  s = "a.b*c.>b.**";
  CHECK(msrt_subject_tokenize(s, strlen(s), t) == 4);
  for (int i = 0; i < 4; i++) CHECK(t[i].kind == MSRT_TOKEN_LITERAL);
  CHECK(t[1].len == 3 && memcmp(t[1].p, "b*c", 3) == 0);
  /* empty tokens come back as they are; nothing is checked */
  s = "a..b";
  CHECK(msrt_subject_tokenize(s, strlen(s), t) == 3);
  CHECK(t[1].len == 0 && t[1].p == s + 2 && t[2].p == s + 3);
  s = ".";
  CHECK(msrt_subject_tokenize(s, 1, t) == 2);
  CHECK(t[0].len == 0 && t[0].p == s && t[1].len == 0 && t[1].p == s + 1);
  CHECK(msrt_subject_tokenize("", 0, t) == 0);
  size_t at = 0;
  CHECK(!msrt_subject_next("", 0, &at, &t[0]));
}

/* The word-wise split and the stepper agree with each other and with
 * msrt_subject_tokens on every string of a small alphabet, dots at every
 * offset of an 8-byte word included. */
static void test_tokenizer_agrees(void) {
  static const char alphabet[] = "a.*>";
  msrt_subject_token split[48], step;
  char s[41];
  uint64_t rng = 12345;
  for (int round = 0; round < 20000; round++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t len = (size_t)(rng >> 58) % 41; /* 0..40 */
    for (size_t i = 0; i < len; i++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      s[i] = alphabet[(rng >> 60) & 3];
    }
    size_t n = msrt_subject_tokenize(s, len, split);
    int ok = n == msrt_subject_tokens(s, len);
    size_t at = 0, k = 0;
    while (ok && msrt_subject_next(s, len, &at, &step)) {
      ok = k < n && step.p == split[k].p && step.len == split[k].len &&
           step.kind == split[k].kind &&
           step.kind == msrt_token_kind_of(step.p, step.len);
      k++;
    }
    ok = ok && k == n;
    if (!ok) fprintf(stderr, "tokenizers disagree on \"%.*s\"\n", (int)len, s);
    CHECK(ok);
    if (!ok) return;
  }
}

/* The rules of a subject, plainly (README "Subjects"): tokens split at
 * '.', none empty, none "*" or ">", no byte <= 0x20 nor 0x7f. */
static int subject_rules(const char *s, size_t len) {
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != '.') {
      unsigned char c = (unsigned char)s[i];
      if (c <= 0x20 || c == 0x7f) return 0;
      continue;
    }
    size_t n = i - start;
    if (n == 0 || (n == 1 && (s[start] == '*' || s[start] == '>'))) return 0;
    start = i + 1;
  }
  return len > 0;
}

/* Validation takes eight bytes a step: each kind of byte at each offset of
 * subjects up to 40 bytes long, and random ones, judged as the rules say;
 * a pattern's verdict agrees for wildcard-free strings. */
static void test_validate_agrees(void) {
  static const unsigned char special[] = {'.', '*', '>', ' ', 0x7f, 0x01, 0x00,
                                          0x20, 0x21, 0x80, 0xff, '\t'};
  static const char alphabet[] = "ab.*> \x7f\x80";
  char s[41];
  int bad = 0;
  for (size_t len = 1; len <= 40; len++)
    for (size_t at = 0; at < len; at++)
      for (size_t k = 0; k < sizeof special; k++)
        for (int two = 0; two < 2; two++) {
          memset(s, 'x', len);
          s[at] = (char)special[k];
          if (two && at + 2 < len) s[at + 2] = '.';
          int want = subject_rules(s, len);
          int got = msrt_subject_validate(s, len, 0, NULL) == MSRT_E_OK;
          if (got != want && bad++ < 5)
            fprintf(stderr, "validate(\"%.*s\") = %d, rules say %d\n", (int)len, s, got, want);
          if (!memchr(s, '*', len) && !memchr(s, '>', len))
            CHECK((msrt_pattern_validate(s, len, 0, NULL) == MSRT_E_OK) == want);
        }
  uint64_t rng = 99;
  for (int round = 0; round < 20000; round++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t len = (size_t)(rng >> 58) % 41;
    for (size_t i = 0; i < len; i++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      s[i] = alphabet[(rng >> 59) % (sizeof alphabet - 1)];
    }
    int want = subject_rules(s, len);
    if ((msrt_subject_validate(s, len, 0, NULL) == MSRT_E_OK) != want && bad++ < 5)
      fprintf(stderr, "validate(\"%.*s\") disagrees with the rules\n", (int)len, s);
  }
  CHECK(bad == 0);
}

/* ---- the index ----------------------------------------------------------- */

static msrt_router *R;
static msrt_reader *RD;
static msrt_match_result M;

static uint64_t sub(const char *p, const char *q, void *ep) {
  uint64_t id = 0;
  msrt_error e;
  msrt_code c = msrt_router_subscribe(R, p, strlen(p), q, q ? strlen(q) : 0, ep,
                                      7, (void *)p, &id, &e);
  if (c != MSRT_E_OK) fprintf(stderr, "subscribe %s: %s\n", p, e.message);
  CHECK(c == MSRT_E_OK);
  return id;
}

static long match(const char *s) {
  if (msrt_router_match(RD, s, strlen(s), &M, NULL, NULL) != MSRT_E_OK)
    return -1;
  return (long)M.len;
}

static int has(uint64_t id) {
  for (size_t i = 0; i < M.len; i++)
    if (M.items[i].sub_id == id) return 1;
  return 0;
}

static void setup(uint32_t cache_slots) {
  msrt_router_opts o = {0, cache_slots, 0};
  R = msrt_router_new(&o);
  RD = msrt_router_reader_new(R);
  msrt_match_result_init(&M);
}

static void teardown(void) {
  msrt_match_result_free(&M);
  msrt_router_reader_free(RD);
  CHECK(msrt_router_reclaim(R) == 0);
  msrt_router_free(R);
}

/* A request's reply subject ("_INBOX.<owner>.<token>", made for one
 * request) is matched without entering the match cache: a stream of
 * requests leaves the cache's slots to the subjects matched again. */
static void test_inbox_uncached(void) {
  setup(64);
  int ep;
  uint64_t inbox = sub("_INBOX.owner.>", NULL, &ep);
  uint64_t work = sub("work.>", NULL, &ep);
  char s[64];
  for (int i = 0; i < 40; i++) { /* past the misses that make the cache */
    snprintf(s, sizeof s, "work.a%d", i);
    CHECK(match(s) == 1 && has(work));
  }
  size_t before = msrt_router_cached(R);
  CHECK(before > 0);
  for (int i = 0; i < 2000; i++) {
    snprintf(s, sizeof s, "_INBOX.owner.%08dtoken", i);
    CHECK(match(s) == 1 && has(inbox));
  }
  CHECK(msrt_router_cached(R) == before);
  snprintf(s, sizeof s, "_INBOX.owner.%08dtoken", 7); /* again: still found */
  CHECK(match(s) == 1 && has(inbox));
  CHECK(match("_INBOX.other.x") == 0);
  CHECK(msrt_router_cached(R) == before);
  CHECK(match("_INBOX") == 0); /* a subject of its own, not a reply: cached */
  CHECK(match("work.b") == 1 && has(work));
  CHECK(msrt_router_cached(R) == before + 2);
  teardown();
}

/* A match names the subject's class (router/account.h) as the account
 * does, whether the subject was matched through the cache, walked, or is
 * a reply subject the cache leaves out; with no cache at all the same. */
static void check_match_classes(void) {
  msrt_account *a = msrt_router_account(R);
  char s[64];
  for (int i = 0; i < 40; i++) { /* past the misses that make the cache */
    snprintf(s, sizeof s, "work.a%d", i);
    CHECK(match(s) == 1 && M.cls == msrt_account_class(a, "work", 4));
  }
  CHECK(M.cls != 0);
  CHECK(match("work.a5") == 1 && M.cls == msrt_account_class(a, "work", 4));
  CHECK(match("other.x") == 0 && M.cls == msrt_account_class(a, "other", 5));
  CHECK(M.cls != 0 && M.cls != msrt_account_class(a, "work", 4));
  CHECK(match("other.x") == 0 && M.cls == msrt_account_class(a, "other", 5));
  CHECK(match("_INBOX.o.t1") == 1 &&
        M.cls == msrt_account_class(a, "_INBOX", 6) && M.cls != 0);
  CHECK(match("") == 0 && M.cls == 0);
  CHECK(match("a b.x") == 0 && M.cls == 0); /* not a class name: _other */
  snprintf(s, sizeof s, "%0*d.x", MSRT_CLASS_NAME_MAX + 1, 0);
  CHECK(match(s) == 0 && M.cls == 0); /* a first token too long */
}

static void test_match_class(void) {
  int ep;
  setup(64);
  sub("work.>", NULL, &ep);
  sub("_INBOX.o.>", NULL, &ep);
  check_match_classes();
  CHECK(msrt_router_cached(R) > 0);
  teardown();
  setup(UINT32_MAX); /* no cache */
  sub("work.>", NULL, &ep);
  sub("_INBOX.o.>", NULL, &ep);
  check_match_classes();
  CHECK(msrt_router_cached(R) == 0);
  teardown();
}

static void test_index_basic(void) {
  setup(0);
  int ep;
  uint64_t a = sub("agents.coder.1.task", NULL, &ep);
  uint64_t b = sub("agents.*.1.task", NULL, &ep);
  uint64_t c = sub("agents.>", NULL, &ep);
  uint64_t d = sub("agents.coder.*.status", NULL, &ep);
  uint64_t e2 = sub("agents.coder.1.task", NULL, &ep); /* twice: two subs */
  CHECK(a && b && c && d && e2 && a != e2);
  CHECK(msrt_router_sub_count(R) == 5);
  for (int round = 0; round < 2; round++) { /* second round: cache hits */
    CHECK(match("agents.coder.1.task") == 4);
    CHECK(has(a) && has(b) && has(c) && has(e2) && !has(d));
    CHECK(M.items[0].endpoint == &ep && M.items[0].kind == 7);
    CHECK(match("agents.coder.2.status") == 2);
    CHECK(has(c) && has(d));
    CHECK(match("agents") == 0);
    CHECK(match("other.x") == 0);
    CHECK(match("agents.x") == 1 && has(c));
  }
  for (size_t i = 0; i < M.len; i++) CHECK(M.items[i].flags == 0);
  msrt_error err;
  uint64_t id = 99;
  CHECK(msrt_router_subscribe(R, "a..b", 4, NULL, 0, NULL, 0, NULL, &id, &err) ==
        MSRT_E_INVALID_SUBJECT);
  CHECK(strstr(err.message, "empty token at position 2") != NULL);
  CHECK(msrt_router_subscribe(R, "a.>.b", 5, NULL, 0, NULL, 0, NULL, &id,
                              &err) == MSRT_E_INVALID_SUBJECT);
  CHECK(msrt_router_subscribe(R, "a", 1, "q q", 3, NULL, 0, NULL, &id, &err) ==
        MSRT_E_INVALID_SUBJECT);
  CHECK(strstr(err.message, "invalid queue group") != NULL);
  CHECK(id == 99);
  CHECK(msrt_router_sub_count(R) == 5);
  /* unsubscribe */
  uint64_t v = msrt_router_version(R);
  CHECK(msrt_router_unsubscribe(R, a) == MSRT_E_OK);
  CHECK(msrt_router_version(R) == v + 1);
  CHECK(msrt_router_unsubscribe(R, a) == MSRT_E_NOT_FOUND);
  CHECK(msrt_router_unsubscribe(R, 12345) == MSRT_E_NOT_FOUND);
  CHECK(match("agents.coder.1.task") == 3 && !has(a) && has(e2));
  CHECK(msrt_router_unsubscribe(R, c) == MSRT_E_OK);
  CHECK(match("agents.x") == 0);
  CHECK(match("agents.coder.1.task") == 2);
  CHECK(msrt_router_unsubscribe(R, b) == MSRT_E_OK);
  CHECK(msrt_router_unsubscribe(R, d) == MSRT_E_OK);
  CHECK(msrt_router_unsubscribe(R, e2) == MSRT_E_OK);
  CHECK(match("agents.coder.1.task") == 0);
  CHECK(msrt_router_sub_count(R) == 0);
  /* ids are not reused */
  uint64_t f = sub("x", NULL, NULL);
  CHECK(f > e2);
  teardown();
}

static void test_index_wide(void) {
  /* more than 8 literal children: hash-table nodes; and deep patterns */
  setup(0);
  uint64_t ids[300];
  char buf[64];
  for (int i = 0; i < 300; i++) {
    snprintf(buf, sizeof buf, "w.n%d.x", i);
    ids[i] = sub(buf, NULL, NULL);
  }
  for (int i = 0; i < 300; i++) {
    snprintf(buf, sizeof buf, "w.n%d.x", i);
    CHECK(match(buf) == 1 && M.items[0].sub_id == ids[i]);
  }
  CHECK(match("w.n300.x") == 0);
  for (int i = 0; i < 300; i += 2) msrt_router_unsubscribe(R, ids[i]);
  for (int i = 0; i < 300; i++) {
    snprintf(buf, sizeof buf, "w.n%d.x", i);
    CHECK(match(buf) == (i % 2 ? 1 : 0));
  }
  char deep[600];
  size_t n = 0;
  for (int i = 0; i < 200; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "%sd", i ? "." : "");
  uint64_t dd = sub(deep, NULL, NULL);
  CHECK(match(deep) == 1 && M.items[0].sub_id == dd);
  teardown();
}

/* Property test: the trie (with and without cache, across changes) agrees
 * with msrt_subject_matches over random patterns and subjects. */
static uint64_t rng_state = 0x1234567;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

static const char *const alpha[] = {"a", "b", "c", "d", "ab", "e1", "f", "g",
                                    "h", "i", "j", "k", "l", "m"};

static void rand_pattern(char *out, int wild) {
  int nt = 1 + (int)rnd(5);
  size_t o = 0;
  for (int i = 0; i < nt; i++) {
    const char *t;
    uint32_t x = rnd(100);
    if (wild && i == nt - 1 && x < 15) t = ">";
    else if (wild && x < 35) t = "*";
    else t = alpha[rnd(i == 1 ? 14 : 4)];
    o += (size_t)sprintf(out + o, "%s%s", i ? "." : "", t);
  }
}

typedef struct {
  uint64_t id;
  char pat[64];
  int q; /* 0 none, else queue "q<n>" */
} live_sub;

static void property_round(uint32_t cache_slots) {
  setup(cache_slots);
  live_sub subs[400];
  int n = 0;
  long cases = 0;
  for (int round = 0; round < 12; round++) {
    /* churn: remove some, add some */
    for (int i = 0; i < n;) {
      if (rnd(3) == 0) {
        CHECK(msrt_router_unsubscribe(R, subs[i].id) == MSRT_E_OK);
        subs[i] = subs[--n];
      } else {
        i++;
      }
    }
    while (n < 150 + (int)rnd(150)) {
      live_sub *s = &subs[n++];
      rand_pattern(s->pat, 1);
      s->q = rnd(5) == 0 ? 1 + (int)rnd(3) : 0;
      char qn[8];
      snprintf(qn, sizeof qn, "q%d", s->q);
      s->id = sub(s->pat, s->q ? qn : NULL, NULL);
    }
    for (int k = 0; k < 1000; k++) {
      char subj[64];
      rand_pattern(subj, 0);
      long got = match(subj);
      long want_plain = 0;
      int want_q[4] = {0, 0, 0, 0};
      int ok = 1;
      for (int i = 0; i < n; i++) {
        if (!msrt_subject_matches(subs[i].pat, subj)) continue;
        if (subs[i].q) {
          want_q[subs[i].q] = 1;
        } else {
          want_plain++;
          if (!has(subs[i].id)) ok = 0;
        }
      }
      long want = want_plain + want_q[1] + want_q[2] + want_q[3];
      /* each returned queue item is a matching member of its group, one per
       * group */
      int seen_q[4] = {0, 0, 0, 0};
      for (size_t j = 0; j < M.len; j++) {
        if (!(M.items[j].flags & MSRT_MATCH_QUEUE)) continue;
        int found = 0;
        for (int i = 0; i < n; i++)
          if (subs[i].id == M.items[j].sub_id && subs[i].q &&
              msrt_subject_matches(subs[i].pat, subj)) {
            found = 1;
            seen_q[subs[i].q]++;
          }
        if (!found) ok = 0;
      }
      for (int g = 1; g < 4; g++)
        if (seen_q[g] != want_q[g]) ok = 0;
      if (got != want || !ok) {
        fprintf(stderr, "property: %s got %ld want %ld\n", subj, got, want);
        CHECK(0);
        teardown();
        return;
      }
      cases++;
    }
  }
  CHECK(cases == 12000);
  teardown();
}

static void test_property(void) {
  property_round(0);          /* default cache */
  property_round(UINT32_MAX); /* no cache */
  property_round(8);          /* tiny cache: full buckets */
}

static void test_queue_fairness(void) {
  setup(0);
  uint64_t m[3];
  m[0] = sub("work.*", "workers", NULL);
  m[1] = sub("work.*", "workers", NULL);
  m[2] = sub("work.>", "workers", NULL); /* same queue name, other pattern */
  uint64_t plain = sub("work.job", NULL, NULL);
  uint64_t other = sub("work.job", "auditors", NULL);
  long counts[3] = {0, 0, 0}, audit = 0, plain_n = 0;
  const int N = 100000;
  for (int i = 0; i < N; i++) {
    CHECK(match("work.job") == 3);
    for (size_t j = 0; j < M.len; j++) {
      for (int k = 0; k < 3; k++) counts[k] += M.items[j].sub_id == m[k];
      audit += M.items[j].sub_id == other;
      plain_n += M.items[j].sub_id == plain;
      if (M.items[j].sub_id == plain) CHECK(M.items[j].flags == 0);
      else CHECK(M.items[j].flags == MSRT_MATCH_QUEUE);
    }
  }
  CHECK(audit == N && plain_n == N);
  for (int k = 0; k < 3; k++) CHECK(labs(counts[k] - N / 3) < N / 3 * 5 / 100);
  /* not ready: skipped */
  CHECK(msrt_router_set_ready(R, m[1], false) == MSRT_E_OK);
  counts[0] = counts[1] = counts[2] = 0;
  for (int i = 0; i < N; i++) {
    match("work.job");
    for (size_t j = 0; j < M.len; j++)
      for (int k = 0; k < 3; k++) counts[k] += M.items[j].sub_id == m[k];
  }
  CHECK(counts[1] == 0);
  CHECK(counts[0] + counts[2] == N);
  CHECK(labs(counts[0] - N / 2) < N / 2 * 5 / 100);
  /* none ready: the group yields nothing and is counted */
  msrt_router_set_ready(R, m[0], false);
  msrt_router_set_ready(R, m[2], false);
  CHECK(match("work.job") == 2);
  CHECK(M.unready_groups == 1);
  CHECK(!has(m[0]) && !has(m[1]) && !has(m[2]));
  msrt_router_set_ready(R, m[1], true);
  CHECK(match("work.job") == 3 && has(m[1]) && M.unready_groups == 0);
  CHECK(msrt_router_set_ready(R, 999999, true) == MSRT_E_NOT_FOUND);
  msrt_router_set_ready(R, m[0], true);
  msrt_router_set_ready(R, m[2], true);
  /* a queue-group member unsubscribed: the rest share */
  CHECK(msrt_router_unsubscribe(R, m[2]) == MSRT_E_OK);
  counts[0] = counts[1] = 0;
  for (int i = 0; i < 1000; i++) {
    match("work.x");
    CHECK(M.len == 1);
    counts[0] += has(m[0]);
    counts[1] += has(m[1]);
  }
  CHECK(counts[0] == 500 && counts[1] == 500);
  teardown();
}

/* Two readers (two publishing threads, here taking turns): each has its own
 * round-robin counter, and together they stay fair. */
static void test_queue_two_readers(void) {
  setup(0);
  msrt_reader *rd2 = msrt_router_reader_new(R);
  uint64_t m[4];
  for (int k = 0; k < 4; k++) m[k] = sub("multi.x", "g", NULL);
  long counts[4] = {0, 0, 0, 0};
  const int N = 100000;
  for (int i = 0; i < N; i++) {
    msrt_reader *rd = i % 3 ? RD : rd2; /* uneven shares */
    CHECK(msrt_router_match(rd, "multi.x", 7, &M, NULL, NULL) == MSRT_E_OK &&
          M.len == 1);
    for (int k = 0; k < 4; k++) counts[k] += M.items[0].sub_id == m[k];
  }
  for (int k = 0; k < 4; k++) CHECK(labs(counts[k] - N / 4) < N / 4 * 5 / 100);
  msrt_router_reader_free(rd2);
  teardown();
}

static uint64_t full_id;
static int skip_calls;
static bool skip_full(const msrt_match_item *c, void *ud) {
  skip_calls++;
  CHECK(ud == &full_id);
  return c->sub_id == full_id || full_id == UINT64_MAX;
}

static void test_skip_predicate(void) {
  setup(0);
  uint64_t a = sub("s.x", "g", NULL), b = sub("s.x", "g", NULL),
           c = sub("s.x", "g", NULL);
  full_id = b;
  long n[3] = {0, 0, 0};
  for (int i = 0; i < 30000; i++) {
    CHECK(msrt_router_match(RD, "s.x", 3, &M, skip_full, &full_id) ==
              MSRT_E_OK && M.len == 1);
    n[0] += has(a);
    n[1] += has(b);
    n[2] += has(c);
    CHECK(M.items[0].flags == MSRT_MATCH_QUEUE);
  }
  CHECK(n[1] == 0 && n[0] + n[2] == 30000);
  CHECK(labs(n[0] - 15000) < 750);
  CHECK(skip_calls >= 30000);
  /* every member full: the round-robin ready one, flagged FULL */
  full_id = UINT64_MAX;
  msrt_router_set_ready(R, a, false);
  n[1] = n[2] = 0;
  for (int i = 0; i < 1000; i++) {
    CHECK(msrt_router_match(RD, "s.x", 3, &M, skip_full, &full_id) ==
              MSRT_E_OK && M.len == 1);
    CHECK(M.items[0].flags == (MSRT_MATCH_QUEUE | MSRT_MATCH_FULL));
    CHECK(!has(a));
    n[1] += has(b);
    n[2] += has(c);
  }
  CHECK(n[1] > 300 && n[2] > 300);
  teardown();
}

static void test_enter_leave(void) {
  setup(0);
  uint64_t a = sub("e.x", NULL, NULL);
  msrt_router_reader_enter(RD);
  msrt_router_reader_enter(RD); /* nested */
  CHECK(match("e.x") == 1);
  /* a change while inside: garbage waits for us */
  uint64_t b = sub("e.y", NULL, NULL);
  CHECK(msrt_router_reclaim(R) > 0);
  CHECK(match("e.y") == 1 && has(b)); /* sees the new snapshot */
  msrt_router_reader_leave(RD);
  CHECK(msrt_router_reclaim(R) > 0);  /* still inside (depth 1) */
  msrt_router_reader_leave(RD);
  CHECK(msrt_router_reclaim(R) == 0);
  msrt_reader *other = msrt_router_reader_new(R);
  msrt_router_reader_enter(other);
  msrt_router_unsubscribe(R, a);
  CHECK(msrt_router_reclaim(R) > 0);
  /* freeing the router frees a still-registered reader too (no leak) */
  msrt_router_reader_leave(other);
  teardown();
}

static int deferred_runs;
static void count_run(void *p) { deferred_runs += *(int *)p; }

static void test_defer(void) {
  setup(0);
  int ep = 5, one = 1;
  uint64_t id = sub("d.x", NULL, &ep);
  void *got = NULL;
  msrt_router_reader_enter(RD);
  CHECK(match("d.x") == 1 && M.items[0].endpoint == &ep);
  uint32_t kind = 0;
  CHECK(msrt_router_unsubscribe_endpoint(R, id, &got, &kind) == MSRT_E_OK);
  CHECK(got == &ep && kind == 7);
  CHECK(msrt_router_unsubscribe_endpoint(R, id, &got, NULL) == MSRT_E_NOT_FOUND);
  CHECK(msrt_router_defer(R, count_run, &one) == MSRT_E_OK);
  CHECK(deferred_runs == 0); /* RD is inside */
  msrt_router_reclaim(R);
  CHECK(deferred_runs == 0);
  msrt_router_reader_leave(RD);
  CHECK(msrt_router_reclaim(R) == 0);
  CHECK(deferred_runs == 1);
  CHECK(msrt_router_defer(R, count_run, &one) == MSRT_E_OK); /* no reader in */
  CHECK(deferred_runs == 2);
  msrt_router_reader_enter(RD);
  msrt_router_defer(R, count_run, &one);
  msrt_router_reader_leave(RD);
  teardown(); /* reclaims: runs the last one */
  CHECK(deferred_runs == 3);
}

/* ---- routing tables -------------------------------------------------------- */

static msrt_routes *compile(const msrt_route_rule *rules, size_t n,
                            msrt_error *e) {
  msrt_routes *t = NULL;
  msrt_routes_compile(rules, n, 0, &t, e);
  return t;
}

static const char *apply(msrt_routes *t, const char *s, msrt_route_result *res) {
  static char buf[256];
  static uint64_t rs = 42;
  msrt_error e;
  if (msrt_routes_apply(t, s, strlen(s), buf, sizeof buf, &rs, res, &e) !=
      MSRT_E_OK)
    return "<error>";
  return res->subject;
}

static void test_routes_rewrite(void) {
  msrt_route_rule rules[] = {
      {"legacy.*.task", "tasks.$1", NULL, 0, NULL},
      {"swap.*.*", "swapped.$2.$1", NULL, 0, NULL},
      {"tail.*.>", "t.$2.from.$1", NULL, 0, NULL},
      {"keep.>", "kept.>", NULL, 0, "dlq.keep"},
      {"sys.*", "$SYS.$1x$1", NULL, 0, NULL},
      {"tasks.*", "never.$1", NULL, 0, NULL}, /* rewritten ones not re-routed */
      {"legacy.>", "fallback.>", NULL, 0, NULL},
      {"only.dl", NULL, NULL, 0, "dead.letters"},
  };
  msrt_error e;
  msrt_routes *t = compile(rules, 8, &e);
  CHECK(t != NULL);
  CHECK(msrt_routes_count(t) == 8);
  msrt_route_result r;
  CHECK_STR(apply(t, "legacy.coder.task", &r), "tasks.coder");
  CHECK(r.rule == 0 && r.rewritten && r.target == -1 && !r.dead_letter);
  CHECK(r.len == strlen("tasks.coder"));
  CHECK_STR(apply(t, "legacy.coder.result", &r), "fallback.coder.result");
  CHECK(r.rule == 6);
  CHECK_STR(apply(t, "swap.a.b", &r), "swapped.b.a");
  CHECK_STR(apply(t, "tail.x.y.z", &r), "t.y.z.from.x");
  CHECK_STR(apply(t, "tail.x", &r), "tail.x"); /* '>' needs a token */
  CHECK(r.rule == -1 && !r.rewritten);
  CHECK_STR(apply(t, "keep.a.b", &r), "kept.a.b");
  CHECK(r.dead_letter && strcmp(r.dead_letter, "dlq.keep") == 0 &&
        r.dead_letter_len == 8);
  CHECK_STR(apply(t, "sys.q", &r), "$SYS.qxq");
  CHECK_STR(apply(t, "tasks.a", &r), "never.a");
  CHECK_STR(apply(t, "only.dl", &r), "only.dl");
  CHECK(r.rule == 7 && !r.rewritten && strcmp(r.dead_letter, "dead.letters") == 0);
  CHECK_STR(apply(t, "nothing.here", &r), "nothing.here");
  CHECK(r.rule == -1 && r.dead_letter == NULL);
  /* output longer than the buffer or the table's limit */
  char small[8];
  CHECK(msrt_routes_apply(t, "legacy.abcdefgh.task", 20, small, sizeof small,
                          NULL, &r, &e) == MSRT_E_LIMIT);
  CHECK(r.rule == 0 && !r.rewritten && strstr(e.message, "rule 1:") != NULL);
  msrt_routes_free(t);
  /* empty table and NULL table */
  CHECK((t = compile(NULL, 0, &e)) != NULL);
  CHECK_STR(apply(t, "a.b", &r), "a.b");
  msrt_routes_free(t);
  CHECK_STR(apply(NULL, "a.b", &r), "a.b");
}

static void test_routes_split(void) {
  msrt_route_target tg[] = {{"v1.>", 90}, {"v2.>", 10}};
  msrt_route_target three[] = {{"x.$1", 1}, {"y.$1", 2.5}, {"z.$1", 0.5}};
  msrt_route_rule rules[] = {{"canary.>", NULL, tg, 2, "dlq.canary"},
                             {"tri.*", NULL, three, 3, NULL}};
  msrt_error e;
  msrt_routes *t = compile(rules, 2, &e);
  CHECK(t != NULL);
  long c1 = 0, c2 = 0, tri[3] = {0, 0, 0};
  const int N = 100000;
  msrt_route_result r;
  for (int i = 0; i < N; i++) {
    const char *s = apply(t, "canary.agents.a.task", &r);
    if (strcmp(s, "v1.agents.a.task") == 0) c1++;
    else if (strcmp(s, "v2.agents.a.task") == 0) c2++;
    CHECK(r.target == (strcmp(s, "v1.agents.a.task") == 0 ? 0 : 1));
    apply(t, "tri.k", &r);
    tri[r.target]++;
  }
  CHECK(c1 + c2 == N);
  CHECK(fabs((double)c1 / N - 0.90) < 0.02);
  CHECK(fabs((double)c2 / N - 0.10) < 0.02);
  CHECK(fabs((double)tri[0] / N - 0.25) < 0.02);
  CHECK(fabs((double)tri[1] / N - 0.625) < 0.02);
  CHECK(fabs((double)tri[2] / N - 0.125) < 0.02);
  const char *cx = apply(t, "canary.x", &r);
  CHECK_STR(cx, r.target ? "v2.x" : "v1.x");
  CHECK(strcmp(r.dead_letter, "dlq.canary") == 0);
  msrt_routes_free(t);
}

static void expect_error(msrt_route_rule *rules, size_t n, const char *want) {
  msrt_error e;
  msrt_routes *t = (msrt_routes *)1;
  CHECK(msrt_routes_compile(rules, n, 0, &t, &e) == MSRT_E_BAD_CONFIG);
  CHECK(t == NULL);
  CHECK(e.category == MSRT_CAT_CONFIG);
  if (!strstr(e.message, want))
    fprintf(stderr, "compile error %s, wanted %s\n", e.message, want);
  CHECK(strstr(e.message, want) != NULL);
}

static void test_routes_errors(void) {
  msrt_route_target ok[] = {{"v1.>", 1}};
  msrt_route_target zero[] = {{"v1.>", 1}, {"v2.>", 0}};
  msrt_route_target neg[] = {{"v1.>", -1}};
  msrt_route_target nan_[] = {{"v1.>", NAN}};
  msrt_route_target inf_[] = {{"v1.>", INFINITY}};
  msrt_route_target bad_t[] = {{"v1..x", 1}};
  msrt_route_rule good = {"a.*", "b.$1", NULL, 0, NULL};
  struct {
    msrt_route_rule rule;
    const char *want;
  } cases[] = {
      {{"a..b", "x", NULL, 0, NULL}, "rule 2: invalid pattern \"a..b\": empty token at position 2"},
      {{"a.>.b", "x", NULL, 0, NULL}, "rule 2: invalid pattern"},
      {{NULL, "x", NULL, 0, NULL}, "rule 2: no match pattern"},
      {{"a.*.*", "x.$3", NULL, 0, NULL},
       "rule 2: rewrite \"x.$3\" refers to $3 but \"a.*.*\" has only 2 wildcards"},
      {{"a.b", "x.$1", NULL, 0, NULL}, "refers to $1 but \"a.b\" has 0 wildcards"},
      {{"a.*", "x.$0", NULL, 0, NULL}, "refers to $0"},
      {{"a.*", "x.>", NULL, 0, NULL}, "uses '>' but the pattern \"a.*\" does not end in '>'"},
      {{"a.>", "x.>.y", NULL, 0, NULL}, "'>' must be the last token"},
      {{"a.*", "x.*", NULL, 0, NULL}, "wildcard '*' at position 2"},
      {{"a.*", "x..$1", NULL, 0, NULL}, "empty token at position 2"},
      {{"a.*", "x $1", NULL, 0, NULL}, "whitespace or control character 0x20"},
      {{"a.*", "", NULL, 0, NULL}, "rule 2: rewrite is empty"},
      {{"a.>", NULL, zero, 2, NULL}, "rule 2: split target 2 weight must be > 0"},
      {{"a.>", NULL, neg, 1, NULL}, "split target 1 weight must be > 0 and finite (got -1)"},
      {{"a.>", NULL, nan_, 1, NULL}, "split target 1 weight"},
      {{"a.>", NULL, inf_, 1, NULL}, "split target 1 weight"},
      {{"a.>", NULL, ok, 0, NULL}, "rule 2: empty split"},
      {{"a.>", NULL, bad_t, 1, NULL}, "rule 2: split target 1 \"v1..x\": empty token"},
      {{"a.>", "x", ok, 1, NULL}, "rule 2: both rewrite and split"},
      {{"a.>", NULL, NULL, 0, NULL}, "rule 2: no action (rewrite, split or dead_letter)"},
      {{"a.>", NULL, NULL, 0, "dl.*"}, "rule 2: dead_letter: invalid subject \"dl.*\""},
      {{"a.>", NULL, NULL, 0, "dl..x"}, "rule 2: dead_letter: invalid subject"},
      {{"*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*",
        "x", NULL, 0, NULL},
       "33 wildcards, at most 32"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    msrt_route_rule rules[3] = {good, cases[i].rule, good};
    expect_error(rules, 3, cases[i].want);
  }
  /* the message names the rule counted from 1: a bad first and third */
  msrt_route_rule r0[] = {{"x", NULL, NULL, 0, NULL}, good};
  expect_error(r0, 2, "rule 1: no action");
  msrt_route_rule r2[] = {good, good, {"y.*", "$2", NULL, 0, NULL}};
  expect_error(r2, 3, "rule 3: rewrite \"$2\" refers to $2");
  msrt_error e;
  msrt_routes *t;
  CHECK(msrt_routes_compile(NULL, 2, 0, &t, &e) == MSRT_E_INVALID_ARG);
  /* length limit applies to templates */
  msrt_route_rule longr[] = {{"a.*", "bbbbbbbbbbbbbbbbbbbb.$1", NULL, 0, NULL}};
  CHECK(msrt_routes_compile(longr, 1, 10, &t, &e) == MSRT_E_BAD_CONFIG);
  CHECK(strstr(e.message, "longer than 10 bytes") != NULL);
}

static void test_router_routes(void) {
  setup(0);
  msrt_route_target tg[] = {{"v1.>", 90}, {"v2.>", 10}};
  msrt_route_rule rules[] = {{"legacy.*.task", "tasks.$1", NULL, 0, "dlq.tasks"},
                             {"canary.>", NULL, tg, 2, NULL}};
  msrt_error e;
  msrt_routes *t = compile(rules, 2, &e);
  CHECK(!msrt_router_has_routes(R));
  CHECK(msrt_router_set_routes(R, t) == MSRT_E_OK);
  CHECK(msrt_router_has_routes(R));
  char buf[128];
  msrt_route_result r;
  CHECK(msrt_router_route(RD, "legacy.c.task", 13, buf, sizeof buf, &r, &e) ==
        MSRT_E_OK);
  CHECK_STR(r.subject, "tasks.c");
  CHECK(r.dead_letter == buf + 8);
  CHECK_STR(r.dead_letter, "dlq.tasks");
  /* dead letter flow: resolved subject has no subscriber -> dead letter */
  uint64_t dl = sub("dlq.>", NULL, NULL);
  CHECK(match(r.subject) == 0);
  CHECK(match(r.dead_letter) == 1 && has(dl));
  long v1 = 0;
  for (int i = 0; i < 100000; i++) {
    msrt_router_route(RD, "canary.a", 8, buf, sizeof buf, &r, &e);
    v1 += strcmp(r.subject, "v1.a") == 0;
  }
  CHECK(fabs(v1 / 100000.0 - 0.9) < 0.02);
  char tiny[12];
  CHECK(msrt_router_route(RD, "legacy.c.task", 13, tiny, sizeof tiny, &r, &e) ==
        MSRT_E_LIMIT);
  CHECK(strstr(e.message, "dead-letter") != NULL);
  /* replace, then remove the table */
  msrt_route_rule r2[] = {{"legacy.>", "new.>", NULL, 0, NULL}};
  CHECK(msrt_router_set_routes(R, compile(r2, 1, &e)) == MSRT_E_OK);
  msrt_router_route(RD, "legacy.c.task", 13, buf, sizeof buf, &r, &e);
  CHECK_STR(r.subject, "new.c.task");
  CHECK(r.dead_letter == NULL);
  CHECK(msrt_router_set_routes(R, NULL) == MSRT_E_OK);
  CHECK(!msrt_router_has_routes(R));
  msrt_router_route(RD, "legacy.c.task", 13, buf, sizeof buf, &r, &e);
  CHECK_STR(r.subject, "legacy.c.task");
  CHECK(r.rule == -1);
  msrt_routes *t2 = compile(r2, 1, &e);
  CHECK(msrt_router_set_routes(R, t2) == MSRT_E_OK);
  CHECK(msrt_router_set_routes(R, t2) == MSRT_E_OK); /* same one: no-op */
  msrt_router_route(RD, "legacy.c.task", 13, buf, sizeof buf, &r, &e);
  CHECK_STR(r.subject, "new.c.task");
  teardown(); /* the router frees its table */
}

static void test_stats(void) {
  setup(0);
  msrt_account *a = msrt_router_account(R);
  unsigned w = msrt_account_class(a, "work.x", 6);
  msrt_account_add(msrt_reader_shard(RD), w, MSRT_STAT_ACCEPTED, 3);
  msrt_account_add(msrt_reader_shard(RD), w, MSRT_STAT_DROP_NEWEST, 2);
  msrt_account_add_shared(a, w, MSRT_STAT_ACCEPTED, 1);
  msrt_account_add_shared(a, 0, MSRT_STAT_DROP_CLOSED, 5);
  msrt_account_add_shared(a, 0, MSRT_STAT_NO_RESPONDERS, 1);
  msrt_account_add_shared(a, 0, (msrt_stat)99, 1); /* ignored */
  msrt_account_add_shared(a, MSRT_CLASS_MAX, MSRT_STAT_ACCEPTED, 1);
  msrt_reader *other = msrt_router_reader_new(R);
  msrt_account_add(msrt_reader_shard(other), w, MSRT_STAT_DELIVERED, 7);
  msrt_router_stats st;
  msrt_account_read(a, &st);
  CHECK(st.v[MSRT_STAT_ACCEPTED] == 4);
  CHECK(st.v[MSRT_STAT_DELIVERED] == 7);
  CHECK(st.v[MSRT_STAT_NO_RESPONDERS] == 1);
  CHECK(st.dropped == 7);
  msrt_router_reader_free(other); /* folded into the account's counters */
  msrt_account_read(a, &st);
  CHECK(st.v[MSRT_STAT_DELIVERED] == 7);
  msrt_class_stats cs[MSRT_CLASS_MAX];
  CHECK(msrt_account_classes(a, cs, MSRT_CLASS_MAX) == 2);
  CHECK_STR(cs[0].name, "_other");
  CHECK(cs[0].stats.dropped == 5 && cs[0].stats.v[MSRT_STAT_ACCEPTED] == 0);
  CHECK_STR(cs[w].name, "work");
  CHECK(cs[w].stats.v[MSRT_STAT_DELIVERED] == 7 && cs[w].stats.dropped == 2);
  CHECK_STR(msrt_stat_name(MSRT_STAT_DEAD_LETTERED), "dead_lettered");
  CHECK_STR(msrt_stat_name(MSRT_STAT_DROP_NOT_READY), "drop_not_ready");
  CHECK_STR(msrt_stat_name(MSRT_STAT__COUNT), "unknown");
  teardown();
}

/* Subject classes: the first token; "_other" for what cannot be a label
 * and for every new token once the table is full. */
static void test_classes(void) {
  msrt_account *a = msrt_account_new();
  unsigned w = msrt_account_class(a, "work.review.c", 13);
  CHECK(w == 1);
  CHECK(msrt_account_class(a, "work", 4) == w);
  CHECK(msrt_account_class(a, "work.x", 6) == w);
  CHECK(msrt_account_class(a, "worker.x", 8) != w);
  CHECK(msrt_account_class(a, "_INBOX.abc.1", 12) == 3);
  CHECK(msrt_account_class(a, ".x", 2) == 0);            /* empty token */
  CHECK(msrt_account_class(a, "", 0) == 0);
  CHECK(msrt_account_class(a, "a b.x", 5) == 0);         /* space */
  CHECK(msrt_account_class(a, "q\"x.y", 5) == 0);        /* '"' */
  CHECK(msrt_account_class(a, "\xc3\xa9t\xc3\xa9.x", 7) == 0); /* UTF-8 */
  char long_tok[MSRT_CLASS_NAME_MAX + 2];
  memset(long_tok, 'k', sizeof long_tok);
  CHECK(msrt_account_class(a, long_tok, MSRT_CLASS_NAME_MAX + 1) == 0);
  CHECK(msrt_account_class(a, long_tok, MSRT_CLASS_NAME_MAX) == 4);
  char name[16];
  unsigned last = 0;
  for (int i = 0; i < 100; i++) { /* fill the table and go past it */
    int n = snprintf(name, sizeof name, "c%d.x", i);
    unsigned c = msrt_account_class(a, name, (size_t)n);
    CHECK(c < MSRT_CLASS_MAX);
    if (i < MSRT_CLASS_MAX - 5) CHECK(c == (unsigned)i + 5);
    else CHECK(c == 0);
    if (c) last = c;
  }
  CHECK(last == MSRT_CLASS_MAX - 1);
  CHECK(msrt_account_class(a, "work.y", 6) == w); /* old ones still found */
  msrt_class_stats cs[MSRT_CLASS_MAX];
  CHECK(msrt_account_classes(a, cs, 2) == MSRT_CLASS_MAX);
  CHECK_STR(cs[1].name, "work");
  msrt_account_free(a);
}

TEST_MAIN(test_classes, test_subject_valid, test_subject_invalid, test_pattern_rules,
          test_patterns_intersect,
          test_subject_messages, test_subject_length, test_matcher,
          test_token_kinds, test_tokenizer_agrees, test_validate_agrees,
          test_index_basic, test_inbox_uncached, test_match_class,
          test_index_wide, test_property,
          test_queue_fairness, test_queue_two_readers, test_skip_predicate,
          test_enter_leave, test_defer, test_routes_rewrite, test_routes_split, test_routes_errors,
          test_router_routes, test_stats)
