/* Fuzz target "rpc": the JSON-RPC codecs of a child's stdout (codec
 * "jsonrpc": newline framing; codec "lsp": Content-Length framing,
 * src/proc/framer.h msrt_framer_init_headers), then each message or batch
 * element through src/proc/rpc.h as src/proc/proc.c takes them.
 *
 * Input: byte 0 picks the framing (bit 0: lsp), the way the stream is made
 * (bit 1: the rest as raw bytes, or split on 0xff into bodies each given
 * a correct header block, with "\n" or "\r\n" and an extra Content-Type
 * by the bits 2 and 3) and max_line (bits 4..7: 0 = the 16 MiB default,
 * else a small limit); bytes 1..4 seed the read sizes; the rest is the
 * stream.
 *
 * Invariants:
 *   - framing is independent of the reads: the stream fed whole and fed in
 *     random chunk sizes (1 byte up to 4 KiB, empty reads included) gives
 *     the same bodies and bad-message reports in the same order;
 *   - reports name a listed reason, carry at most 200 bytes of head, and
 *     a body handed over is never longer than max_line: a huge
 *     Content-Length is refused by its header (reported at once with the
 *     announced length), never buffered;
 *   - a constructed stream gives back exactly its bodies, in order, one
 *     over max_line as line_too_long with its length;
 *   - every JSON-RPC message classifies as one kind by the rules of
 *     rpc.h (an id that is not a string, number or null, params that are
 *     not a structure, a response with both or neither of result and
 *     error: invalid), and what msrt writes for it (a call, a result, an
 *     error response) parses back to the same kind, method and id.
 */
#include <cjson/cJSON.h>
#include <math.h>

#include "fuzz_framing.h"
#include "proc/rpc.h"

static size_t g_max; /* the max_line in force */

static void on_body(void *ud, const char *p, size_t n) {
  FUZZ_ASSERT(n <= g_max);
  fz_log_event(ud, 'L', p, n, n);
}

static void on_bad(void *ud, const char *reason, const char *head,
                   size_t hlen, size_t total) {
  FUZZ_ASSERT(strcmp(reason, "line_too_long") == 0 ||
              strcmp(reason, "invalid_header") == 0 ||
              strcmp(reason, "truncated") == 0);
  FUZZ_ASSERT(hlen <= MSRT_FRAMER_HEAD);
  fz_log_event(ud, 'B', head, hlen, total);
}

static void framed(msrt_sbuf *log, int lsp, const char *s, size_t n,
                   uint64_t seed) {
  msrt_framer f;
  if (lsp) msrt_framer_init_headers(&f, g_max, on_body, on_bad, log);
  else msrt_framer_init(&f, g_max, on_body, on_bad, log);
  fz_feed_chunked(&f, s, n, seed);
}

/* ---- constructed streams ------------------------------------------------ */

/* Each 0xff-separated piece of s with its header block; the log expected. */
static void construct(msrt_sbuf *out, msrt_sbuf *want, const char *s,
                      size_t n, uint8_t mode) {
  const char *eol = mode & 4 ? "\n" : "\r\n";
  for (size_t start = 0, i = 0; i <= n; i++) {
    if (i < n && (uint8_t)s[i] != 0xff) continue;
    char hdr[96];
    size_t len = i - start;
    int h = snprintf(hdr, sizeof hdr, "%sContent-Length: %zu%s%s",
                     mode & 8 ? "Content-Type: application/vscode-jsonrpc; "
                                "charset=utf-8\r\n" : "", len, eol, eol);
    msrt_sbuf_put(out, hdr, (size_t)h);
    msrt_sbuf_put(out, s + start, len);
    if (len > g_max) {
      /* the head is the header block: not compared, only its length */
      fz_log_event(want, 'B', "", 0, len);
    } else {
      fz_log_event(want, 'L', s + start, len, len);
    }
    start = i + 1;
  }
}

/* The log with heads of line_too_long reports blanked (construct cannot
 * know them). */
static void blank_heads(const msrt_sbuf *in, msrt_sbuf *out) {
  for (size_t at = 0; at < in->len;) {
    char tag = in->p[at];
    size_t n, total;
    memcpy(&n, in->p + at + 1, sizeof n);
    memcpy(&total, in->p + at + 1 + sizeof n, sizeof total);
    const char *p = in->p + at + 1 + 2 * sizeof n;
    fz_log_event(out, tag, p, tag == 'B' ? 0 : n, total);
    at += 1 + 2 * sizeof n + n;
  }
}

/* ---- messages ----------------------------------------------------------- */

static char *print(const cJSON *v) { return v ? cJSON_PrintUnformatted(v) : NULL; }

/* What msrt writes for m parses back to the same kind, method and id. */
static void round_trip(const msrt_rpc_msg *m) {
  msrt_sbuf b = {0};
  char *params = print(m->params), *id = print(m->id);
  if (m->kind == MSRT_RPC_REQUEST || m->kind == MSRT_RPC_NOTIFICATION) {
    uint64_t our = m->kind == MSRT_RPC_REQUEST ? 7 : 0;
    msrt_rpc_put_call(&b, our, m->method, strlen(m->method), params,
                      params ? strlen(params) : 0);
  } else if (m->error) {
    char *data = print(cJSON_GetObjectItemCaseSensitive(m->error, "data"));
    const char *msg = cJSON_GetObjectItemCaseSensitive(m->error, "message")->valuestring;
    msrt_rpc_put_error(&b, id, strlen(id), -32000, msg, strlen(msg), data,
                       data ? strlen(data) : 0);
    free(data);
  } else {
    char *r = print(m->result);
    msrt_rpc_put_result(&b, id, strlen(id), r, strlen(r));
    free(r);
  }
  FUZZ_ASSERT(!b.oom);
  cJSON *v = cJSON_ParseWithLength(b.p, b.len);
  FUZZ_ASSERT(v != NULL);
  msrt_rpc_msg back;
  msrt_rpc_classify(v, &back);
  FUZZ_ASSERT(back.kind == m->kind);
  if (m->method) FUZZ_ASSERT(strcmp(back.method, m->method) == 0);
  if (m->kind == MSRT_RPC_REQUEST) {
    uint64_t got;
    FUZZ_ASSERT(msrt_rpc_our_id(back.id, &got) && got == 7);
  } else if (m->kind == MSRT_RPC_RESPONSE &&
             !(cJSON_IsNumber(m->id) && !isfinite(m->id->valuedouble))) {
    /* (a number past the doubles, 1e400, prints as null: no id to keep) */
    FUZZ_ASSERT(cJSON_Compare(back.id, m->id, 1));
  }
  cJSON_Delete(v);
  msrt_sbuf_free(&b);
  free(params);
  free(id);
}

static void check_message(const cJSON *v) {
  msrt_rpc_msg m;
  msrt_rpc_classify(v, &m);
  const cJSON *id = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "id") : NULL;
  if (id && !cJSON_IsString(id) && !cJSON_IsNumber(id) && !cJSON_IsNull(id))
    FUZZ_ASSERT(m.kind == MSRT_RPC_INVALID);
  if (m.kind == MSRT_RPC_INVALID) {
    FUZZ_ASSERT(m.why != NULL);
    return;
  }
  if (m.kind != MSRT_RPC_RESPONSE) {
    FUZZ_ASSERT(m.method && *m.method);
    FUZZ_ASSERT(!m.params || cJSON_IsObject(m.params) || cJSON_IsArray(m.params));
    FUZZ_ASSERT((m.kind == MSRT_RPC_REQUEST) == (id != NULL));
  } else {
    FUZZ_ASSERT(m.id && (!m.result != !m.error));
  }
  uint64_t our;
  if (m.id && msrt_rpc_our_id(m.id, &our))
    FUZZ_ASSERT(our >= 1 && our <= 9007199254740991ull && our == m.id->valuedouble);
  round_trip(&m);
}

static void check_bodies(const msrt_sbuf *log) {
  char detail[128];
  const char *reason;
  for (size_t at = 0; at < log->len;) {
    size_t n;
    memcpy(&n, log->p + at + 1, sizeof n);
    const char *p = log->p + at + 1 + 2 * sizeof n;
    cJSON *v = log->p[at] == 'L' ? msrt_json_parse(p, n, &reason, detail,
                                                   sizeof detail)
                                 : NULL;
    if (cJSON_IsArray(v))
      for (const cJSON *c = v->child; c; c = c->next) check_message(c);
    else if (v) check_message(v);
    cJSON_Delete(v);
    at += 1 + 2 * sizeof n + n;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t mode = fz_u8(&in);
  int lsp = mode & 1;
  g_max = mode >> 4 ? (size_t)(mode >> 4) * 23 : (size_t)16 << 20;
  uint64_t seed = fz_u32(&in) | 1;
  msrt_sbuf stream = {0}, want = {0}, whole = {0}, chunked = {0};
  if (lsp && (mode & 2)) construct(&stream, &want, (const char *)in.p, in.n, mode);
  else msrt_sbuf_put(&stream, in.p, in.n);
  framed(&whole, lsp, stream.p, stream.len, 0);
  framed(&chunked, lsp, stream.p, stream.len, seed);
  fz_same_log(&whole, &chunked);
  if (want.len || (lsp && (mode & 2))) {
    msrt_sbuf got = {0};
    blank_heads(&whole, &got);
    fz_same_log(&want, &got);
    msrt_sbuf_free(&got);
  }
  check_bodies(&whole);
  msrt_sbuf_free(&stream);
  msrt_sbuf_free(&want);
  msrt_sbuf_free(&whole);
  msrt_sbuf_free(&chunked);
  return 0;
}
