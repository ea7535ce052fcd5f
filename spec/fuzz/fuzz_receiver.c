/* Fuzz target "receiver": the whole way of a child's JSON line to the
 * actor that receives it: stdout bytes -> framer (src/proc/framer.h) ->
 * msrt_json_parse and the string.buffer serialization proc.c publishes
 * (src/proc/codec.h; the `data` of a message object, else the value) ->
 * the actor's decode in an embedded LuaJIT, as lua/msrt/actor_boot.lua's
 * FFI pop does it (a reused buffer's set + decode under pcall), in
 * spec/fuzz/receiver_driver.lua.
 *
 * Input: byte 0 flags (bit 0: also corrupt each serialization: flip,
 * cut or splice bytes chosen by the seed, as a foreign or broken encoder
 * would), bytes 1..4 the seed of the read sizes and corruptions, the rest
 * the bytes a child printed.
 *
 * Invariants:
 *   - every line the codec accepts decodes in the receiver (repeated
 *     keys, depth, NUL and UTF-8 are settled in C: a receiver never meets
 *     "duplicate table key" or "too deep"), and what it decodes to
 *     re-encodes and decodes to an equal value;
 *   - a corrupted serialization is a per-message error of the receiver
 *     (pcall gives a string reason, as msrt_bus_undecodable reports it),
 *     never a crash, a sanitizer report or a state the next message
 *     cannot use: the receiver decodes the following good message;
 *   - the state's memory is all given back.
 */
#include "fuzz_lua.h"
#include "proc/codec.h"
#include "proc/framer.h"

#define MAX_MESSAGES 64

typedef struct {
  msrt_sbuf msgs[MAX_MESSAGES];
  int n;
} inbox;

/* As proc.c's on_json_line: blank lines skipped, refused lines dropped,
 * a message object's data (nil when absent) or the whole value. */
static void on_line(void *ud, const char *line, size_t len) {
  inbox *box = ud;
  char detail[128];
  const char *reason;
  if (box->n == MAX_MESSAGES) return;
  cJSON *v = msrt_json_parse(line, len, &reason, detail, sizeof detail);
  if (!v) return;
  const cJSON *s = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "subject") : NULL;
  msrt_sbuf *out = &box->msgs[box->n++];
  if (cJSON_IsString(s)) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "data");
    if (d) FUZZ_ASSERT(msrt_json_to_lua(d, out) == MSRT_E_OK);
    else msrt_sbuf_putc(out, 0x00); /* nil */
  } else {
    FUZZ_ASSERT(msrt_json_to_lua(v, out) == MSRT_E_OK);
  }
  cJSON_Delete(v);
}

static void on_bad(void *ud, const char *reason, const char *head,
                   size_t hlen, size_t total) {
  (void)ud, (void)reason, (void)head, (void)hlen, (void)total;
}

/* A copy of m with a few bytes changed, cut or repeated. */
static void corrupt(const msrt_sbuf *m, msrt_sbuf *out, uint64_t *seed) {
  msrt_sbuf_put(out, m->p, m->len);
  for (int k = (int)(fz_next(seed) % 3) + 1; k > 0 && out->len; k--) {
    size_t at = fz_next(seed) % out->len;
    switch (fz_next(seed) % 3) {
    case 0: out->p[at] = (char)fz_next(seed); break;
    case 1: out->len = at; break;
    default: msrt_sbuf_put(out, out->p + at, out->len - at > 8 ? 8 : out->len - at);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  int flags = fz_u8(&in);
  uint64_t seed = fz_u32(&in);
  inbox box = {0};
  msrt_framer f;
  msrt_framer_init(&f, 64 << 10, on_line, on_bad, &box);
  for (size_t at = 0; at < in.n;) {
    size_t k = 1 + fz_next(&seed) % 4096;
    if (k > in.n - at) k = in.n - at;
    FUZZ_ASSERT(msrt_framer_feed(&f, (const char *)in.p + at, k) == 0);
    at += k;
  }
  msrt_framer_finish(&f);
  msrt_framer_free(&f);

  lua_State *L = fz_lua_new();
  fz_lua_load(L, MSRT_FUZZ_DIR "/receiver_driver.lua");
  lua_createtable(L, box.n, 0); /* the good serializations */
  lua_createtable(L, box.n, 0); /* their corrupted copies (flag bit 0) */
  for (int i = 0; i < box.n; i++) {
    lua_pushlstring(L, box.msgs[i].p ? box.msgs[i].p : "", box.msgs[i].len);
    lua_rawseti(L, -3, i + 1);
    if (flags & 1) {
      msrt_sbuf bad = {0};
      corrupt(&box.msgs[i], &bad, &seed);
      lua_pushlstring(L, bad.p ? bad.p : "", bad.len);
      lua_rawseti(L, -2, i + 1);
      msrt_sbuf_free(&bad);
    }
    msrt_sbuf_free(&box.msgs[i]);
  }
  fz_lua_run(L, 2, "receiver");
  fz_lua_close(L);
  return 0;
}
