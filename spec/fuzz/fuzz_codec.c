/* Fuzz target "codec": the string.buffer decoder that writes message
 * payloads as JSON for a child's stdin (msrt_lua_to_json in
 * src/proc/codec.h), fed arbitrary bytes as a payload.
 *
 * Invariants:
 *   - it either refuses the bytes with one of the reasons codec.h lists,
 *     or writes text that cJSON parses as exactly one JSON value;
 *   - that JSON, converted to a serialization (msrt_json_to_lua) and back,
 *     reaches a fixed point after one round (the first round may normalize:
 *     invalid UTF-8 becomes U+FFFD, NaN becomes null, {} and [] merge).
 */
#include <cjson/cJSON.h>

#include "fuzz.h"
#include "proc/codec.h"

static int known_reason(const char *why) {
  static const char *const reasons[] = {"truncated", "trailing bytes",
                                        "too deep", "unsupported tag",
                                        "dictionary reference",
                                        "out of memory"};
  for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
    if (why && strcmp(why, reasons[i]) == 0) return 1;
  return 0;
}

/* JSON text -> value -> serialization -> JSON text (out). */
static void round_trip(const msrt_sbuf *json, msrt_sbuf *out) {
  const char *end = NULL, *why = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts(json->p, json->len, &end, 0);
  FUZZ_ASSERT(v != NULL);
  FUZZ_ASSERT(end == json->p + json->len);
  msrt_sbuf ser = {0};
  FUZZ_ASSERT(msrt_json_to_lua(v, &ser) == MSRT_E_OK);
  cJSON_Delete(v);
  msrt_sbuf_reset(out);
  FUZZ_ASSERT(msrt_lua_to_json((const unsigned char *)ser.p, ser.len, out,
                               &why) == MSRT_E_OK);
  msrt_sbuf_free(&ser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  msrt_sbuf j1 = {0}, j2 = {0}, j3 = {0};
  const char *why = NULL;
  if (msrt_lua_to_json(data, size, &j1, &why) != MSRT_E_OK) {
    FUZZ_ASSERT(known_reason(why));
  } else {
    round_trip(&j1, &j2);
    round_trip(&j2, &j3);
    FUZZ_ASSERT(j2.len == j3.len && memcmp(j2.p, j3.p, j2.len) == 0);
  }
  msrt_sbuf_free(&j1);
  msrt_sbuf_free(&j2);
  msrt_sbuf_free(&j3);
  return 0;
}
