/* Fuzz target "jsonl": the JSON-lines path of a child's stdout
 * (src/proc/framer.h, then src/proc/codec.h as src/proc/proc.c uses them).
 *
 * Input: byte 0 picks max_line (a small limit, so over-long lines are
 * exercised, or the 16 MiB default), bytes 1..4 seed the read sizes, the
 * rest is the byte stream a child printed.
 *
 * Invariants:
 *   - framing is independent of the reads: the stream fed whole and fed in
 *     random chunk sizes (1 byte up to 4 KiB, empty reads included) gives
 *     the same lines and bad-line reports, in the same order, as a simple
 *     reference splitter written here (split on '\n', drop one '\r' before
 *     it, a line longer than max_line reported with its first 200 bytes
 *     and its full length, a last unterminated line handed over at finish);
 *   - every line proc.c would accept (valid UTF-8, one JSON value, blanks
 *     around it) converts to a string.buffer serialization that converts
 *     back to JSON, and that JSON is a fixed point: parsing it and
 *     converting again gives the same text. Values nested deeper than the
 *     decoder's limit (200) are refused with "too deep", nothing else;
 *   - an accepted line (one msrt_json_precheck passes) nests at most 100
 *     tables, the most LuaJIT's string.buffer decoder takes (measured:
 *     101 nested tables fail with "too deep to serialize"); regression
 *     input corpus/jsonl/regress-deep-json.
 *   - a line the plain message reader takes (msrt_json_plain_message) is
 *     one the full path publishes, read alike: the same subject, reply
 *     and data, no other key (input corpus/jsonl/plain-messages);
 *   - no accepted line holds the escape \u0000 in a string or key (cJSON
 *     keeps strings NUL-terminated: {"data":"a\u0000b"} would reach Lua as
 *     "a"); proc.c refuses such lines; input corpus/jsonl/regress-nul-escape.
 */
#include <cjson/cJSON.h>

#include "fuzz_framing.h"

/* ---- framing -------------------------------------------------------- */

static void on_line(void *ud, const char *line, size_t len) {
  fz_log_event(ud, 'L', line, len, len);
}

static void on_bad(void *ud, const char *reason, const char *head,
                   size_t hlen, size_t total) {
  FUZZ_ASSERT(strcmp(reason, "line_too_long") == 0);
  FUZZ_ASSERT(hlen <= MSRT_FRAMER_HEAD && hlen <= total);
  fz_log_event(ud, 'B', head, hlen, total);
}

/* What the framer must report for one raw line (without its '\n'). */
static void reference_line(msrt_sbuf *log, const char *p, size_t n,
                           size_t max_line) {
  if (n > max_line) {
    fz_log_event(log, 'B', p, n < MSRT_FRAMER_HEAD ? n : MSRT_FRAMER_HEAD, n);
    return;
  }
  if (n && p[n - 1] == '\r') n--;
  fz_log_event(log, 'L', p, n, n);
}

static void reference(msrt_sbuf *log, const char *s, size_t n,
                      size_t max_line) {
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\n') continue;
    reference_line(log, s + start, i - start, max_line);
    start = i + 1;
  }
  if (start < n) reference_line(log, s + start, n - start, max_line);
}

/* Feed s in chunks whose sizes come from seed (0 = all at once). */
static void framed(msrt_sbuf *log, const char *s, size_t n, size_t max_line,
                   uint64_t seed) {
  msrt_framer f;
  msrt_framer_init(&f, max_line, on_line, on_bad, log);
  fz_feed_chunked(&f, s, n, seed);
}

/* ---- codec ---------------------------------------------------------- */

static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
  return 1;
}

/* Parse a line as proc.c does: one value, only blanks after it. */
static cJSON *parse_line(const char *line, size_t len) {
  const char *end = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts(line, len, &end, 0);
  if (v && end && !blank(end, (size_t)(line + len - end))) {
    cJSON_Delete(v);
    return NULL;
  }
  return v;
}

/* JSON value -> serialization -> JSON text in *json. Returns 0, or -1 when
 * the decoder refused it for depth (the only refusal allowed). */
static int through_lua(const cJSON *v, msrt_sbuf *json) {
  msrt_sbuf ser = {0};
  const char *why = NULL;
  FUZZ_ASSERT(msrt_json_to_lua(v, &ser) == MSRT_E_OK);
  msrt_sbuf_reset(json);
  msrt_code rc =
      msrt_lua_to_json((const unsigned char *)ser.p, ser.len, json, &why);
  msrt_sbuf_free(&ser);
  if (rc != MSRT_E_OK) FUZZ_ASSERT(why && strcmp(why, "too deep") == 0);
  return rc;
}

#define LUAJIT_MAX_TABLES 100

/* Tables nested in v (v itself included when it is one). */
static int tables(const cJSON *v) {
  if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return 0;
  int most = 0;
  for (const cJSON *c = v->child; c; c = c->next) {
    int d = tables(c);
    if (d > most) most = d;
  }
  return most + 1;
}

/* Whether a string or key in the JSON text has the escape \u0000. */
static int has_nul_escape(const char *s, size_t n) {
  int in_string = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"') in_string = !in_string;
    else if (in_string && s[i] == '\\' && i + 1 < n) {
      if (s[i + 1] == 'u' && n - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
        return 1;
      i++; /* the escaped character */
    }
  }
  return 0;
}

/* The plain message line's reader takes only lines the full path
 * publishes (valid UTF-8, one JSON object, the precheck passed), and reads
 * from them the subject, reply and data the full parse does: the same
 * strings, no other key, data serialized alike. */
static void check_plain(const char *line, size_t len) {
  static const char *const names[3] = {"subject", "reply", "data"};
  msrt_json_span f[3];
  if (!msrt_json_plain_message(line, len, f)) return;
  FUZZ_ASSERT(f[0].s != NULL);
  FUZZ_ASSERT(!blank(line, len) && msrt_utf8_check(line, len, NULL));
  FUZZ_ASSERT(!msrt_json_precheck(line, len));
  cJSON *v = parse_line(line, len);
  FUZZ_ASSERT(v != NULL && cJSON_IsObject(v));
  int keys = 0, present = 0;
  for (const cJSON *c = v->child; c; c = c->next) keys++;
  for (int i = 0; i < 3; i++) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, names[i]);
    if (!f[i].s) {
      FUZZ_ASSERT(c == NULL);
      continue;
    }
    present++;
    FUZZ_ASSERT(cJSON_IsString(c) && strlen(c->valuestring) == f[i].n &&
                memcmp(c->valuestring, f[i].s, f[i].n) == 0);
    if (i == 2) {
      msrt_sbuf full = {0}, plain = {0};
      FUZZ_ASSERT(msrt_json_to_lua(c, &full) == MSRT_E_OK);
      msrt_lua_put_string(&plain, f[2].s, f[2].n);
      FUZZ_ASSERT(full.len == plain.len && !memcmp(full.p, plain.p, full.len));
      msrt_sbuf_free(&full);
      msrt_sbuf_free(&plain);
    }
  }
  FUZZ_ASSERT(keys == present);
  cJSON_Delete(v);
}

static void check_line(const char *line, size_t len) {
  check_plain(line, len);
  if (blank(line, len) || !msrt_utf8_check(line, len, NULL)) return;
  cJSON *v = parse_line(line, len);
  if (!v) return;
  if (msrt_json_precheck(line, len)) { /* proc.c refuses it: invalid_json */
    cJSON_Delete(v);
    return;
  }
  FUZZ_ASSERT(tables(v) <= LUAJIT_MAX_TABLES);
  FUZZ_ASSERT(!has_nul_escape(line, len));
  msrt_sbuf j1 = {0}, j2 = {0};
  if (through_lua(v, &j1) == 0) {
    cJSON *v2 = parse_line(j1.p, j1.len);
    FUZZ_ASSERT(v2 != NULL); /* our JSON must be JSON */
    FUZZ_ASSERT(through_lua(v2, &j2) == 0);
    FUZZ_ASSERT(j1.len == j2.len && memcmp(j1.p, j2.p, j1.len) == 0);
    cJSON_Delete(v2);
  }
  msrt_sbuf_free(&j1);
  msrt_sbuf_free(&j2);
  cJSON_Delete(v);
}

static void check_lines(const msrt_sbuf *log) {
  for (size_t at = 0; at < log->len;) {
    char tag = log->p[at];
    size_t n;
    memcpy(&n, log->p + at + 1, sizeof n);
    const char *p = log->p + at + 1 + 2 * sizeof n;
    if (tag == 'L') check_line(p, n);
    at += 1 + 2 * sizeof n + n;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t b0 = fz_u8(&in);
  size_t max_line = b0 < 128 ? 1 + (size_t)b0 * 4 : 0;
  uint64_t seed = fz_u32(&in) | 1; /* never 0: 0 means "one read" */
  const char *s = (const char *)in.p;
  size_t n = in.n;
  msrt_sbuf want = {0}, whole = {0}, chunked = {0};
  reference(&want, s, n, max_line ? max_line : (size_t)16 << 20);
  framed(&whole, s, n, max_line, 0);
  framed(&chunked, s, n, max_line, seed);
  fz_same_log(&want, &whole);
  fz_same_log(&want, &chunked);
  check_lines(&want);
  msrt_sbuf_free(&want);
  msrt_sbuf_free(&whole);
  msrt_sbuf_free(&chunked);
  return 0;
}
