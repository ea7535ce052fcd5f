/* Fuzz target "nats": a client's bytes through the NATS client protocol
 * parser (src/nats/proto.h), fed in random chunk sizes, and every HPUB's
 * header block through the header conversion.
 *
 * Input: byte 0 picks max_control (16..271, or the 4096 default when 0),
 * byte 1 max_payload (1..255, or the default when 0), bytes 2-5 seed the
 * chunk sizes; the rest is the stream.
 *
 * Invariants:
 *   - the commands seen (every field) are the same fed whole and fed in
 *     random chunks, and the outcome is the same (taken whole, or the same
 *     error text at the same command);
 *   - every error is one of NATS' texts in proto.h;
 *   - no command's control line exceeds max_control, no PUB's headers +
 *     payload exceed max_payload, headers never exceed the total;
 *   - a header block that converts to msrt's pairs converts back to a
 *     block, and a second round trip gives the same pairs (a fixed
 *     point; the first may fold a "Status" header line into the status
 *     line).
 */
#include "fuzz.h"
#include "nats/proto.h"

typedef struct {
  msrt_sbuf log;
  size_t max_payload;
} seen;

static void put(msrt_sbuf *b, const char *s, size_t n) {
  char len[24];
  int k = snprintf(len, sizeof len, "%zu:", n);
  msrt_sbuf_put(b, len, (size_t)k);
  if (s) msrt_sbuf_put(b, s, n);
}

/* pairs -> block -> pairs, twice: the second trip changes nothing. */
static void check_headers(const char *hdr, size_t n) {
  msrt_sbuf a = {0}, blk = {0}, b = {0}, blk2 = {0}, c = {0};
  if (msrt_nats_hdr_to_pairs(&a, hdr, n) == MSRT_E_OK && !a.oom) {
    FUZZ_ASSERT(msrt_nats_hdr_from_pairs(&blk, a.p, a.len) == MSRT_E_OK);
    if (!blk.oom && msrt_nats_hdr_to_pairs(&b, blk.p, blk.len) == MSRT_E_OK &&
        !b.oom) {
      FUZZ_ASSERT(msrt_nats_hdr_from_pairs(&blk2, b.p, b.len) == MSRT_E_OK);
      FUZZ_ASSERT(msrt_nats_hdr_to_pairs(&c, blk2.p, blk2.len) == MSRT_E_OK);
      FUZZ_ASSERT(b.len == c.len);
      FUZZ_ASSERT(!b.len || memcmp(b.p, c.p, b.len) == 0);
    }
  }
  msrt_sbuf_free(&a), msrt_sbuf_free(&blk), msrt_sbuf_free(&b);
  msrt_sbuf_free(&blk2), msrt_sbuf_free(&c);
}

static bool record(void *ud, const msrt_nats_cmd *c) {
  seen *w = ud;
  FUZZ_ASSERT(c->op >= MSRT_NATS_CONNECT && c->op <= MSRT_NATS_INFO);
  if (c->op == MSRT_NATS_PUB) {
    FUZZ_ASSERT(c->hdr_len + c->payload_len <= w->max_payload);
    FUZZ_ASSERT(c->hpub || c->hdr_len == 0);
    if (c->hpub) check_headers(c->hdr, c->hdr_len);
  }
  msrt_sbuf_putc(&w->log, (char)('0' + c->op));
  put(&w->log, c->subject, c->subject_len);
  put(&w->log, c->reply, c->reply_len);
  put(&w->log, c->queue, c->queue_len);
  put(&w->log, c->sid, c->sid_len);
  put(&w->log, c->arg, c->arg_len);
  put(&w->log, c->hdr, c->hdr_len);
  put(&w->log, c->payload, c->payload_len);
  put(&w->log, NULL, (size_t)(c->max_msgs + 1));
  return false;
}

static int known(const char *e) {
  return e && (!strcmp(e, MSRT_NATS_ERR_UNKNOWN) ||
               !strcmp(e, MSRT_NATS_ERR_CONTROL) ||
               !strcmp(e, MSRT_NATS_ERR_PAYLOAD));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t mc = fz_u8(&in), mp = fz_u8(&in);
  uint64_t seed = fz_u32(&in);
  size_t max_control = mc ? 15u + mc : 0, max_payload = mp;
  const char *text = (const char *)in.p;
  size_t len = in.n;

  msrt_nats_parser p;
  seen whole = {.max_payload = mp ? mp : MSRT_NATS_MAX_PAYLOAD_DEFAULT};
  seen parts = whole;
  const char *e1 = NULL, *e2 = NULL;
  msrt_nats_parser_init(&p, max_control, max_payload);
  char *copy = malloc(len ? len : 1);
  memcpy(copy, text, len);
  msrt_code r1 = msrt_nats_parse(&p, copy, len, record, &whole, &e1);
  free(copy);
  msrt_nats_parser_free(&p);

  msrt_nats_parser_init(&p, max_control, max_payload);
  msrt_code r2 = MSRT_E_OK;
  for (size_t at = 0; at < len && r2 == MSRT_E_OK;) {
    size_t n = 1 + fz_next(&seed) % 64;
    if (n > len - at) n = len - at;
    char *piece = malloc(n);
    memcpy(piece, text + at, n);
    r2 = msrt_nats_parse(&p, piece, n, record, &parts, &e2);
    free(piece);
    at += n;
  }
  msrt_nats_parser_free(&p);

  FUZZ_ASSERT(r1 == MSRT_E_OK || r1 == MSRT_E_INVALID_ARG ||
              r1 == MSRT_E_NOMEM);
  FUZZ_ASSERT(r1 == r2);
  if (r1 != MSRT_E_OK) {
    FUZZ_ASSERT(known(e1) && known(e2));
    /* a control line too long may be seen before its end when chunked,
     * where the whole parse saw the end: same text either way */
    FUZZ_ASSERT(!strcmp(e1, e2));
  }
  FUZZ_ASSERT(whole.log.len == parts.log.len);
  FUZZ_ASSERT(!whole.log.len || !memcmp(whole.log.p, parts.log.p,
                                        whole.log.len));
  msrt_sbuf_free(&whole.log);
  msrt_sbuf_free(&parts.log);
  return 0;
}
