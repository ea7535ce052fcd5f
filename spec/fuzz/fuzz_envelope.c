/* Fuzz target "envelope": making, sharing and freeing message envelopes
 * (src/core/envelope.h) from fuzzed fields.
 *
 * Input: the lengths of subject, reply, headers and payload (one byte
 * each), whether there is a reply, priority (any int8), flags, trace id,
 * how many extra references to take, then the bytes the fields are cut
 * from (fields shorter than asked when the input runs out).
 *
 * Invariants: every field reads back byte for byte, subject and reply
 * NUL-terminated, reply NULL exactly when none was given (an empty reply
 * is "" not NULL), headers NULL exactly when empty, priority clamped to
 * 1..10, flags kept, trace id kept or the id when 0, ids non-zero and
 * increasing on this thread, every field inside the one allocation (ASan
 * checks the reads), and after the references taken are all dropped the
 * live count is back where it was (no leak, no double free). A payload
 * flagged as string.buffer goes through the JSON writer as proc.c would
 * write it to a child (msrt_lua_to_json must not read past it).
 */
#include "core/envelope.h"
#include "fuzz.h"
#include "proc/codec.h"

static uint64_t last_id;

static void same_bytes(const void *got, const void *want, size_t n) {
  FUZZ_ASSERT(n == 0 || memcmp(got, want, n) == 0);
}

static void check_fields(const msrt_envelope *e, const uint8_t *f[4],
                         const size_t n[4], int has_reply, int prio,
                         uint8_t flags, uint64_t trace) {
  FUZZ_ASSERT(e->subject_len == n[0] && e->subject[n[0]] == 0);
  same_bytes(e->subject, f[0], n[0]);
  FUZZ_ASSERT((e->reply != NULL) == has_reply);
  FUZZ_ASSERT(e->reply_len == (has_reply ? n[1] : 0));
  if (has_reply) FUZZ_ASSERT(e->reply[n[1]] == 0);
  if (has_reply) same_bytes(e->reply, f[1], n[1]);
  FUZZ_ASSERT(e->headers_len == n[2] && (e->headers == NULL) == (n[2] == 0));
  if (n[2]) same_bytes(e->headers, f[2], n[2]);
  FUZZ_ASSERT(e->payload_len == n[3] && e->payload != NULL);
  same_bytes(e->payload, f[3], n[3]);
  int want = prio < 1 ? 1 : prio > 10 ? 10 : prio;
  FUZZ_ASSERT(e->priority == want && e->flags == flags);
  FUZZ_ASSERT(e->id != 0 && e->id > last_id);
  FUZZ_ASSERT(e->trace_id == (trace ? trace : e->id));
  FUZZ_ASSERT(e->ts_ns != 0);
  FUZZ_ASSERT(atomic_load(&e->refs) == 1);
}

/* The payload as proc.c writes a string.buffer payload to a child. */
static void decode_payload(const msrt_envelope *e) {
  if (!(e->flags & MSRT_ENV_PAYLOAD_BUFFER)) return;
  msrt_sbuf json = {0};
  const char *why = NULL;
  if (msrt_lua_to_json(e->payload, e->payload_len, &json, &why) != MSRT_E_OK)
    FUZZ_ASSERT(why != NULL);
  msrt_sbuf_free(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  size_t want[4], n[4];
  for (int i = 0; i < 4; i++) want[i] = fz_u8(&in);
  int has_reply = fz_u8(&in) & 1;
  int prio = (int8_t)fz_u8(&in);
  uint8_t flags = fz_u8(&in);
  uint64_t trace = fz_u8(&in) & 1 ? ((uint64_t)fz_u32(&in) << 32) | fz_u32(&in) : 0;
  int extra = fz_u8(&in) & 7;
  const uint8_t *f[4];
  for (int i = 0; i < 4; i++) f[i] = fz_bytes(&in, want[i], &n[i]);
  long live = msrt_env_live();
  msrt_envelope *e = msrt_env_new((const char *)f[0], n[0],
                                  has_reply ? (const char *)f[1] : NULL, n[1],
                                  n[2] ? f[2] : NULL, n[2], n[3] ? f[3] : NULL,
                                  n[3], prio, flags, trace);
  FUZZ_ASSERT(e != NULL);
  FUZZ_ASSERT(msrt_env_live() == live + 1);
  check_fields(e, f, n, has_reply, prio, flags, trace);
  last_id = e->id;
  decode_payload(e);
  for (int i = 0; i < extra; i++) FUZZ_ASSERT(msrt_env_ref(e) == e);
  FUZZ_ASSERT(atomic_load(&e->refs) == (unsigned)extra + 1);
  for (int i = 0; i < extra; i++) msrt_env_unref(e);
  FUZZ_ASSERT(msrt_env_live() == live + 1); /* still held once */
  msrt_env_unref(e);
  FUZZ_ASSERT(msrt_env_live() == live);
  return 0;
}
