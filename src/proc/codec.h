/* Value conversions at the process edge (docs/architecture.md "Threads and
 * the path of a message": JSON appears only at the process edge): JSON
 * text <-> LuaJIT string.buffer serialization,
 * the encoding every message payload in the router uses, so a JSON line a
 * child prints reaches Lua subscribers and actors as ordinary Lua values,
 * and a Lua value published to a child reaches it as JSON, without any
 * Lua state on the way.
 *
 * Mapping (as lua-cjson does it): object <-> table with string keys,
 * array <-> sequence 1..n, null <-> NULL lightuserdata (0x03, cjson.null),
 * numbers <-> doubles. A key repeated in a JSON object: the last one wins
 * (the serialization holds each key once). Lua -> JSON: a table whose keys are exactly 1..n is
 * an array; any other table is an object (number and boolean keys written
 * as strings); the empty table is {}; nil inside a sequence is null;
 * NaN/inf, userdata, complex are null; a string dictionary reference
 * (string.buffer's `dict` option) is refused. Strings are written with
 * JSON escapes; bytes that are not valid UTF-8 become U+FFFD.
 * Format reference: LuaJIT's string.buffer docs, "Serialization Format
 * Specification" (checked against LuaJIT 2.1's output).
 *
 * Thread-safety: pure functions; any thread.
 */
#ifndef MSRT_PROC_CODEC_H
#define MSRT_PROC_CODEC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* A growable byte string. Zero-initialize; oom is set (and further puts
 * ignored) when an allocation fails. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} msrt_sbuf;

/* Append n bytes; they may lie in b itself (a part of it repeated). */
void msrt_sbuf_put(msrt_sbuf *b, const void *bytes, size_t n);
void msrt_sbuf_putc(msrt_sbuf *b, char c);
/* Forget the contents, keep the allocation. */
static inline void msrt_sbuf_reset(msrt_sbuf *b) { b->len = 0; b->oom = 0; }
void msrt_sbuf_free(msrt_sbuf *b);

/* Whether s[0..n) is valid UTF-8 (no overlong forms, surrogates or code
 * points above U+10FFFF). Returns true, or false with *bad (may be NULL)
 * set to the offset of the first invalid byte. */
bool msrt_utf8_check(const char *s, size_t n, size_t *bad);

/* How many of s[0..n)'s first bytes a JSON string holds as they are:
 * 0x20..0x7f but '"' and '\\' (eight bytes a step). */
size_t msrt_json_plain_run(const char *s, size_t n);

/* Bytes of a line, not NUL-ended; s is NULL for "absent". */
typedef struct {
  const char *s;
  size_t n;
} msrt_json_span;

/* The message line most agents write, read without a JSON tree: a flat
 * object of "subject" and optionally "reply" and "data", each once, each a
 * string msrt_json_plain_run takes whole (printable ASCII, no escapes),
 * blanks (space, tab) around its tokens, CR or LF after it. Returns true
 * with f[0..2] the subject (always there), reply and data strings' bytes
 * (pointing into line); false for any other line, which the caller gives
 * to the full parse (msrt_json_parse): the two read a line this takes
 * alike (spec/fuzz/fuzz_jsonl.c checks it). No allocation; thread-safe. */
bool msrt_json_plain_message(const char *line, size_t len,
                             msrt_json_span f[3]);

/* Append the JSON string literal of s[0..n) (quoted, escaped). */
void msrt_json_put_string(msrt_sbuf *out, const char *s, size_t n);

/* Append a JSON number: integers below 1e15 without a fraction, others
 * in the shortest %g form that reads back the same; NaN/inf as null. */
void msrt_json_put_number(msrt_sbuf *out, double d);

/* Append the string.buffer serialization of v. Returns MSRT_E_OK, or
 * MSRT_E_NOMEM when out of memory (out->oom set; reset out). */
msrt_code msrt_json_to_lua(const cJSON *v, msrt_sbuf *out);

/* Deepest JSON nesting a child's line may have: LuaJIT's string.buffer
 * decodes at most 100 nested tables. */
#define MSRT_JSON_MAX_DEPTH 100

/* What makes a JSON text (s, n bytes) unfit for Lua even when it parses:
 * nesting deeper than MSRT_JSON_MAX_DEPTH, a raw NUL byte anywhere or
 * "\u0000" in a string (cJSON strings end at NUL, so the text after it
 * would be lost silently).
 * Returns NULL when fine, else a static reason. Pure; any thread. */
const char *msrt_json_precheck(const char *s, size_t n);

/* Parse one JSON text (s, n bytes; surrounding blanks allowed) by the
 * rules every JSON line from a child meets: valid UTF-8, then
 * msrt_json_precheck, then cJSON. Returns the tree (the caller frees it
 * with cJSON_Delete), or NULL with *reason "invalid_utf8" or
 * "invalid_json" and detail (dcap bytes) saying where or why ("invalid
 * UTF-8 at byte 3", "invalid JSON at byte 7", a precheck reason). A
 * parse that runs out of memory reads as invalid_json. Pure; any thread. */
cJSON *msrt_json_parse(const char *s, size_t n, const char **reason,
                       char *detail, size_t dcap);

/* Append the serialization of a Lua string (s[0..n)). */
void msrt_lua_put_string(msrt_sbuf *out, const char *s, size_t n);

/* The bytes that come before a Lua string of n bytes in its serialization
 * (its tag and length), into head; returns how many (1, 2 or 5). With them
 * a caller writes the serialization straight into memory of its own
 * (head, then the n bytes). Pure; any thread. */
size_t msrt_lua_string_head(size_t n, unsigned char head[5]);

/* Whether p[0..n) is the serialization of exactly one Lua string: then
 * *s points at its bytes (inside p) and *len gets their count. Returns
 * true, or false for anything else (another type, truncated, trailing
 * bytes; *s and *len untouched). */
bool msrt_lua_get_string(const unsigned char *p, size_t n, const char **s,
                        size_t *len);

/* Append the JSON text of the one value serialized in p[0..n). Returns
 * MSRT_E_OK; MSRT_E_INVALID_ARG when the bytes are not a complete,
 * supported serialization, with *why (may be NULL; a static string):
 * "truncated", "trailing bytes", "too deep", "unsupported tag",
 * "dictionary reference"; or MSRT_E_NOMEM, *why "out of memory". On an
 * error out may hold a partial value (reset it). */
msrt_code msrt_lua_to_json(const unsigned char *p, size_t n, msrt_sbuf *out,
                     const char **why);

#endif
