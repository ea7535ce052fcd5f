#include "proc/codec.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- byte strings ------------------------------------------------------ */

static int grow(msrt_sbuf *b, size_t n) {
  if (b->oom) return -1;
  if (b->len + n <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 128;
  while (cap < b->len + n) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void msrt_sbuf_put(msrt_sbuf *b, const void *bytes, size_t n) {
  if (!n) return;
  /* bytes may lie in b itself, which grow's realloc may move: keep its
   * offset (compared as integers: the pointers may be of two objects) */
  uintptr_t at = (uintptr_t)bytes, base = (uintptr_t)b->p;
  bool inside = b->p && at >= base && at < base + b->len;
  if (grow(b, n) != 0) return;
  memmove(b->p + b->len, inside ? b->p + (at - base) : bytes, n);
  b->len += n;
}

void msrt_sbuf_putc(msrt_sbuf *b, char c) {
  if (grow(b, 1) == 0) b->p[b->len++] = c;
}

void msrt_sbuf_free(msrt_sbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void puts_(msrt_sbuf *b, const char *s) { msrt_sbuf_put(b, s, strlen(s)); }

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (!len || c > 0xf4 || len > n) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
  if (c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
  if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
  if (c == 0xf4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
  return len;
}

bool msrt_utf8_check(const char *s, size_t n, size_t *bad) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x80) { i++; continue; }
    size_t l = utf8_seq(u + i, n - i);
    if (!l) {
      if (bad) *bad = i;
      return false;
    }
    i += l;
  }
  return true;
}

/* ---- JSON strings ------------------------------------------------------ */

static int plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* A byte at a time this was ~8 instructions a byte: ~900 a stdin line
 * of a request (its subject and 56-byte reply subject) on the hub. */
size_t msrt_json_plain_run(const char *s, size_t n) {
  size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, hi = 0x8080808080808080ull;
  const uint64_t below20 = 0x6060606060606060ull;
  const uint64_t quotes = 0x2222222222222222ull, slashes = 0x5c5c5c5c5c5c5c5cull;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    /* per byte, exactly (no carry between bytes): 0x80 where it is
     * 0x80 or above, under 0x20, '"' or '\\' */
    uint64_t ctl = ~(((w & lo7) + below20) | w) & hi;
    uint64_t q = w ^ quotes, b = w ^ slashes;
    uint64_t eq = ~(((q & lo7) + lo7) | q | lo7) | ~(((b & lo7) + lo7) | b | lo7);
    uint64_t bad = (w & hi) | ctl | eq;
    if (bad) return i + ((size_t)__builtin_ctzll(bad) >> 3);
  }
#endif
  while (i < n && plain((unsigned char)s[i])) i++;
  return i;
}

static const char *skip_blanks(const char *c, const char *end) {
  while (c < end && (*c == ' ' || *c == '\t')) c++;
  return c;
}

/* The plain string at c (from its opening quote): its span, and the byte
 * after its closing quote; NULL when it is not one. */
static const char *plain_string(const char *c, const char *end,
                                msrt_json_span *out) {
  if (c >= end || *c != '"') return NULL;
  const char *from = ++c;
  c += msrt_json_plain_run(c, (size_t)(end - c));
  if (c >= end || *c != '"') return NULL; /* the line's end, an escape... */
  *out = (msrt_json_span){from, (size_t)(c - from)};
  return c + 1;
}

/* Which of subject, reply, data key k names; -1 for another. */
static int message_field(msrt_json_span k) {
  return k.n == 7 && !memcmp(k.s, "subject", 7) ? 0
         : k.n == 5 && !memcmp(k.s, "reply", 5) ? 1
         : k.n == 4 && !memcmp(k.s, "data", 4)  ? 2
                                                : -1;
}

bool msrt_json_plain_message(const char *line, size_t len,
                             msrt_json_span f[3]) {
  const char *end = line + len, *c = skip_blanks(line, end);
  for (int i = 0; i < 3; i++) f[i] = (msrt_json_span){NULL, 0};
  if (c >= end || *c++ != '{') return false;
  for (;;) {
    msrt_json_span k, v;
    if (!(c = plain_string(skip_blanks(c, end), end, &k))) return false;
    c = skip_blanks(c, end);
    if (c >= end || *c++ != ':') return false;
    if (!(c = plain_string(skip_blanks(c, end), end, &v))) return false;
    int i = message_field(k);
    if (i < 0 || f[i].s) return false; /* another key, or one twice */
    f[i] = v;
    c = skip_blanks(c, end);
    if (c >= end) return false;
    if (*c == '}') break;
    if (*c++ != ',') return false;
  }
  for (c++; c < end; c++) /* after the object: blanks only */
    if (*c != ' ' && *c != '\t' && *c != '\r' && *c != '\n') return false;
  return f[0].s != NULL;
}

void msrt_json_put_string(msrt_sbuf *out, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  msrt_sbuf_putc(out, '"');
  for (size_t i = 0; i < n;) {
    size_t j = i + msrt_json_plain_run(s + i, n - i);
    msrt_sbuf_put(out, s + i, j - i); /* a run needing no escape */
    if (j == n) break;
    unsigned char c = u[j];
    size_t l = c >= 0x80 ? utf8_seq(u + j, n - j) : 1;
    char esc[8];
    if (c == '"' || c == '\\') esc[0] = '\\', esc[1] = (char)c, esc[2] = 0;
    else if (c == '\n') strcpy(esc, "\\n");
    else if (c == '\t') strcpy(esc, "\\t");
    else if (c == '\r') strcpy(esc, "\\r");
    else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c);
    else if (l) esc[0] = 0; /* valid multibyte: copied below */
    else strcpy(esc, "\\ufffd"), l = 1;
    if (esc[0]) puts_(out, esc);
    else msrt_sbuf_put(out, s + j, l);
    i = j + (l ? l : 1);
  }
  msrt_sbuf_putc(out, '"');
}

void msrt_json_put_number(msrt_sbuf *out, double d) {
  char tmp[40];
  if (!isfinite(d)) {
    puts_(out, "null");
    return;
  }
  if (d == floor(d) && fabs(d) < 1e15) {
    /* what "%.0f" writes, in ~1/20 of its instructions (a request's id,
     * a count: the common number on a child's stdin) */
    char *at = tmp + sizeof tmp;
    uint64_t u = (uint64_t)fabs(d); /* exact: below 2^53 */
    *--at = 0;
    do *--at = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (signbit(d)) *--at = '-'; /* -0 too, as "%.0f" */
    puts_(out, at);
    return;
  }
  snprintf(tmp, sizeof tmp, "%.14g", d); /* shortest that reads back */
  if (strtod(tmp, NULL) != d) snprintf(tmp, sizeof tmp, "%.17g", d);
  puts_(out, tmp);
}

/* ---- JSON -> string.buffer serialization ------------------------------- */

/* string.buffer's prefix-encoded 32-bit unsigned number (".U"). */
/* n as string.buffer's variable-length count into b; returns its bytes. */
static size_t enc_u(unsigned char b[5], uint32_t n) {
  if (n < 0xe0) {
    b[0] = (unsigned char)n;
    return 1;
  }
  if (n < 0x1fe0) {
    b[0] = (unsigned char)(0xe0 | (((n - 0xe0) >> 8) & 0x1f));
    b[1] = (unsigned char)((n - 0xe0) & 0xff);
    return 2;
  }
  b[0] = 0xff;
  for (int i = 0; i < 4; i++) b[1 + i] = (unsigned char)(n >> (8 * i));
  return 5;
}

static void put_u(msrt_sbuf *out, uint32_t n) {
  unsigned char b[5];
  msrt_sbuf_put(out, b, enc_u(b, n));
}

static void put_le64(msrt_sbuf *out, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  msrt_sbuf_put(out, b, 8);
}

size_t msrt_lua_string_head(size_t n, unsigned char head[5]) {
  return enc_u(head, (uint32_t)(0x20 + n));
}

void msrt_lua_put_string(msrt_sbuf *out, const char *s, size_t n) {
  put_u(out, (uint32_t)(0x20 + n));
  msrt_sbuf_put(out, s, n);
}

static void put_lua_number(msrt_sbuf *out, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  msrt_sbuf_putc(out, 0x07);
  put_le64(out, bits);
}

/* Duplicate keys in an object: the last one wins (as in most JSON parsers;
 * RFC 8259 section 4 leaves it open), so the serialization never holds a
 * key twice, which string.buffer's decoder refuses ("duplicate table
 * key"). Sets keep[i] for the members written (i in member order) and
 * returns how many; keep may be NULL when n is small (quadratic check). */
typedef struct {
  const char *key;
  int at;
} member;

static int by_key_then_order(const void *a, const void *b) {
  const member *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->at > y->at) - (x->at < y->at);
}

static int last_keys(const cJSON *v, int n, unsigned char *keep,
                     msrt_sbuf *out) {
  int i = 0, kept = 0;
  if (n <= 16) {
    for (const cJSON *c = v->child; c; c = c->next, i++) {
      keep[i] = 1;
      for (const cJSON *d = c->next; d && keep[i]; d = d->next)
        if (strcmp(c->string, d->string) == 0) keep[i] = 0;
      kept += keep[i];
    }
    return kept;
  }
  member *m = malloc((size_t)n * sizeof *m);
  if (!m) {
    out->oom = 1;
    return 0;
  }
  for (const cJSON *c = v->child; c; c = c->next, i++) m[i] = (member){c->string, i};
  qsort(m, (size_t)n, sizeof *m, by_key_then_order);
  for (i = 0; i < n; i++) {
    keep[m[i].at] = i + 1 == n || strcmp(m[i].key, m[i + 1].key) != 0;
    kept += keep[m[i].at];
  }
  free(m);
  return kept;
}

static void json_to_lua(const cJSON *v, msrt_sbuf *out);

static void object_to_lua(const cJSON *v, int n, msrt_sbuf *out) {
  unsigned char small[16], *keep = n <= 16 ? small : malloc((size_t)n);
  if (!keep) {
    out->oom = 1;
    return;
  }
  int kept = last_keys(v, n, keep, out);
  msrt_sbuf_putc(out, 0x09); /* hash of `kept` pairs */
  put_u(out, (uint32_t)kept);
  int i = 0;
  for (const cJSON *c = v->child; c && !out->oom; c = c->next, i++) {
    if (!keep[i]) continue;
    msrt_lua_put_string(out, c->string, strlen(c->string));
    json_to_lua(c, out);
  }
  if (keep != small) free(keep);
}

static void json_to_lua(const cJSON *v, msrt_sbuf *out) {
  int n = cJSON_IsArray(v) || cJSON_IsObject(v) ? cJSON_GetArraySize(v) : 0;
  if (cJSON_IsNull(v)) msrt_sbuf_putc(out, 0x03);
  else if (cJSON_IsFalse(v)) msrt_sbuf_putc(out, 0x01);
  else if (cJSON_IsTrue(v)) msrt_sbuf_putc(out, 0x02);
  else if (cJSON_IsNumber(v)) put_lua_number(out, v->valuedouble);
  else if (cJSON_IsString(v))
    msrt_lua_put_string(out, v->valuestring, strlen(v->valuestring));
  else if (n == 0) msrt_sbuf_putc(out, 0x08); /* {} or [] */
  else if (cJSON_IsArray(v)) {
    msrt_sbuf_putc(out, 0x0c); /* 1-based array: a = n + 1 */
    put_u(out, (uint32_t)n + 1);
    for (const cJSON *c = v->child; c; c = c->next) json_to_lua(c, out);
  } else {
    object_to_lua(v, n, out);
  }
}

msrt_code msrt_json_to_lua(const cJSON *v, msrt_sbuf *out) {
  json_to_lua(v, out);
  return out->oom ? MSRT_E_NOMEM : MSRT_E_OK;
}

const char *msrt_json_precheck(const char *s, size_t n) {
  int depth = 0, in_string = 0;
  if (memchr(s, 0, n)) /* cJSON would end the string there, silently */
    return "a NUL byte in the line (a string would be cut short)";
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '"') in_string = 0;
      else if (c == '\\' && i + 1 < n) {
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4))
          return "\\u0000 in a string (a NUL cannot reach Lua whole)";
        i++; /* the escaped character */
      }
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '{' || c == '[') {
      if (++depth > MSRT_JSON_MAX_DEPTH)
        return "nested deeper than 100 levels (LuaJIT's decoder limit)";
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return NULL;
}

static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
  return 1;
}

cJSON *msrt_json_parse(const char *s, size_t n, const char **reason,
                       char *detail, size_t dcap) {
  size_t at;
  if (!msrt_utf8_check(s, n, &at)) {
    *reason = "invalid_utf8";
    snprintf(detail, dcap, "invalid UTF-8 at byte %zu", at);
    return NULL;
  }
  const char *unfit = msrt_json_precheck(s, n);
  if (unfit) {
    *reason = "invalid_json";
    snprintf(detail, dcap, "%s", unfit);
    return NULL;
  }
  const char *end = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
  if (v && end && !blank(end, (size_t)(s + n - end))) {
    cJSON_Delete(v);
    v = NULL;
  }
  if (!v) {
    *reason = "invalid_json";
    snprintf(detail, dcap, "invalid JSON at byte %td", end ? end - s : (ptrdiff_t)0);
  }
  return v;
}

/* ---- string.buffer serialization -> JSON ------------------------------- */

#define MAX_DEPTH 200

typedef struct {
  const unsigned char *p, *end;
  const char *why;
  int depth;
} rd;

static int fail(rd *r, const char *why) {
  if (!r->why) r->why = why;
  return -1;
}

static int get_u(rd *r, uint32_t *n) {
  if (r->p >= r->end) return fail(r, "truncated");
  unsigned b = *r->p++;
  if (b < 0xe0) *n = b;
  else if (b != 0xff) {
    if (r->p >= r->end) return fail(r, "truncated");
    *n = (((b & 0x1f) << 8) | *r->p++) + 0xe0;
  } else {
    if (r->end - r->p < 4) return fail(r, "truncated");
    *n = 0;
    for (int i = 0; i < 4; i++) *n |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
  }
  return 0;
}

static int get_le(rd *r, int bytes, uint64_t *v) {
  if (r->end - r->p < bytes) return fail(r, "truncated");
  *v = 0;
  for (int i = 0; i < bytes; i++) *v |= (uint64_t)r->p[i] << (8 * i);
  r->p += bytes;
  return 0;
}

/* A decoded scalar used as a table key or array index. */
typedef struct {
  int kind; /* 0 number, 1 string, 2 other (boolean...) */
  double num;
  const unsigned char *str;
  size_t len;
  const unsigned char *at; /* where the value was serialized */
} key;

static int value(rd *r, msrt_sbuf *out, key *k);

/* Skip one value (out NULL) and describe it in *k. */
static int skip(rd *r, key *k) { return value(r, NULL, k); }

static void emit_key(msrt_sbuf *out, const key *k, const rd *r) {
  char tmp[40];
  if (k->kind == 1) msrt_json_put_string(out, (const char *)k->str, k->len);
  else if (k->kind == 0) {
    msrt_sbuf tb = {tmp, 0, sizeof tmp, 0};
    msrt_json_put_number(&tb, k->num);
    msrt_json_put_string(out, tb.p, tb.len);
  } else {
    /* booleans: re-read the tag at its position */
    msrt_json_put_string(out, *k->at == 0x02 ? "true" : "false",
                         *k->at == 0x02 ? 4 : 5);
  }
  (void)r;
}

/* Re-decode a value at a remembered position into out. */
static int emit_at(rd *r, const unsigned char *at, msrt_sbuf *out) {
  rd sub = {at, r->end, NULL, r->depth};
  key k;
  if (value(&sub, out, &k) != 0) return fail(r, sub.why);
  return 0;
}

/* Table entries: array part values then hash key/value pairs. */
typedef struct {
  const unsigned char **arr; /* positions of array values */
  key *hk;                   /* hash keys */
  const unsigned char **hv;  /* positions of hash values */
  uint32_t na, nh, base;     /* base: index of arr[0] (0 or 1) */
} entries;

static int read_entries(rd *r, int tag, entries *e) {
  uint32_t a = 0, h = 0;
  if (tag >= 0x0a && get_u(r, &a) != 0) return -1;
  if ((tag == 0x09 || tag == 0x0b || tag == 0x0d) && get_u(r, &h) != 0)
    return -1;
  e->base = tag == 0x0c || tag == 0x0d;
  e->na = e->base ? (a ? a - 1 : 0) : a;
  e->nh = h;
  if ((size_t)(r->end - r->p) < e->na + 2 * (size_t)h) return fail(r, "truncated");
  e->arr = malloc((e->na + 1) * sizeof *e->arr);
  e->hk = malloc((h + 1) * sizeof *e->hk);
  e->hv = malloc((h + 1) * sizeof *e->hv);
  if (!e->arr || !e->hk || !e->hv) return fail(r, "out of memory");
  key k;
  for (uint32_t i = 0; i < e->na; i++) {
    e->arr[i] = r->p;
    if (skip(r, &k) != 0) return -1;
  }
  for (uint32_t i = 0; i < h; i++) {
    if (skip(r, &e->hk[i]) != 0) return -1;
    e->hv[i] = r->p;
    if (skip(r, &k) != 0) return -1;
  }
  return 0;
}

/* Whether the keys are exactly 1..na+nh (array part from 1, then hash
 * keys na+1..); fills order[] with the hash values by key. */
static int is_sequence(const entries *e, const unsigned char **order) {
  if (!e->base && e->na) return 0;
  for (uint32_t i = 0; i < e->nh; i++) order[i] = NULL;
  for (uint32_t i = 0; i < e->nh; i++) {
    const key *k = &e->hk[i];
    double idx = k->num - e->na;
    if (k->kind != 0 || k->num != floor(k->num) || idx < 1 || idx > e->nh ||
        order[(uint32_t)idx - 1])
      return 0;
    order[(uint32_t)idx - 1] = e->hv[i];
  }
  return 1;
}

static int emit_array(rd *r, const entries *e, const unsigned char **order,
                      msrt_sbuf *out) {
  msrt_sbuf_putc(out, '[');
  uint32_t n = e->na + e->nh;
  for (uint32_t i = 0; i < n; i++) {
    if (i) msrt_sbuf_putc(out, ',');
    const unsigned char *at = i < e->na ? e->arr[i] : order[i - e->na];
    if (emit_at(r, at, out) != 0) return -1;
  }
  msrt_sbuf_putc(out, ']');
  return 0;
}

static int emit_object(rd *r, const entries *e, msrt_sbuf *out) {
  msrt_sbuf_putc(out, '{');
  int first = 1;
  for (uint32_t i = 0; i < e->na; i++) {
    if (*e->arr[i] == 0x00) continue; /* a hole */
    key k = {0, (double)(i + e->base), NULL, 0, NULL};
    if (!first) msrt_sbuf_putc(out, ',');
    first = 0;
    emit_key(out, &k, r);
    msrt_sbuf_putc(out, ':');
    if (emit_at(r, e->arr[i], out) != 0) return -1;
  }
  for (uint32_t i = 0; i < e->nh; i++) {
    if (!first) msrt_sbuf_putc(out, ',');
    first = 0;
    emit_key(out, &e->hk[i], r);
    msrt_sbuf_putc(out, ':');
    if (emit_at(r, e->hv[i], out) != 0) return -1;
  }
  msrt_sbuf_putc(out, '}');
  return 0;
}

static int table(rd *r, int tag, msrt_sbuf *out) {
  entries e = {0};
  const unsigned char **order = NULL;
  int rc = read_entries(r, tag, &e);
  if (rc == 0 && out) {
    order = malloc((e.nh + 1) * sizeof *order);
    if (!order) rc = fail(r, "out of memory");
    else if (e.na + e.nh > 0 && is_sequence(&e, order))
      rc = emit_array(r, &e, order, out);
    else rc = emit_object(r, &e, out);
  }
  free(order);
  free(e.arr);
  free(e.hk);
  free(e.hv);
  return rc;
}

static int string_value(rd *r, msrt_sbuf *out, key *k) {
  uint32_t n;
  if (get_u(r, &n) != 0) return -1;
  n -= 0x20;
  if ((size_t)(r->end - r->p) < n) return fail(r, "truncated");
  k->kind = 1;
  k->str = r->p;
  k->len = n;
  if (out) msrt_json_put_string(out, (const char *)r->p, n);
  r->p += n;
  return 0;
}

static int number_value(rd *r, int tag, msrt_sbuf *out, key *k) {
  uint64_t v;
  double d;
  if (get_le(r, tag == 0x06 ? 4 : 8, &v) != 0) return -1;
  if (tag == 0x06) d = (double)(int32_t)(uint32_t)v;
  else if (tag == 0x07) memcpy(&d, &v, sizeof d);
  else if (tag == 0x10) d = (double)(int64_t)v;
  else d = (double)v;
  k->kind = 0;
  k->num = d;
  if (out) msrt_json_put_number(out, d);
  return 0;
}

static int value(rd *r, msrt_sbuf *out, key *k) {
  memset(k, 0, sizeof *k);
  k->kind = 2;
  k->at = r->p;
  if (r->p >= r->end) return fail(r, "truncated");
  int tag = *r->p;
  if (tag >= 0x20) return string_value(r, out, k);
  r->p++;
  static const char *const lit[] = {"null", "false", "true", "null"};
  static const int skip_bytes[] = {[0x04] = 4, [0x05] = 8, [0x12] = 16};
  int rc = 0;
  if (++r->depth > MAX_DEPTH) return fail(r, "too deep");
  if (tag <= 0x03) {
    if (out) puts_(out, lit[tag]);
  } else if (tag == 0x04 || tag == 0x05 || tag == 0x12) {
    uint64_t v;
    rc = get_le(r, skip_bytes[tag] > 8 ? 8 : skip_bytes[tag], &v);
    if (rc == 0 && tag == 0x12) rc = get_le(r, 8, &v);
    if (rc == 0 && out) puts_(out, "null"); /* userdata, complex */
  } else if (tag == 0x06 || tag == 0x07 || tag == 0x10 || tag == 0x11) {
    rc = number_value(r, tag, out, k);
  } else if (tag == 0x08) {
    if (out) puts_(out, "{}");
  } else if (tag >= 0x09 && tag <= 0x0d) {
    rc = table(r, tag, out);
  } else if (tag == 0x0e) { /* metatable dictionary entry, then a table */
    uint32_t idx;
    rc = get_u(r, &idx);
    if (rc == 0) rc = value(r, out, k);
  } else if (tag == 0x0f) {
    rc = fail(r, "dictionary reference");
  } else {
    rc = fail(r, "unsupported tag");
  }
  r->depth--;
  return rc;
}

msrt_code msrt_lua_to_json(const unsigned char *p, size_t n, msrt_sbuf *out,
                           const char **why) {
  rd r = {p, p + n, NULL, 0};
  key k;
  int rc = value(&r, out, &k);
  if (rc == 0 && r.p != r.end) rc = fail(&r, "trailing bytes");
  if (rc == 0 && out->oom) rc = fail(&r, "out of memory");
  if (rc == 0) return MSRT_E_OK;
  if (why) *why = r.why;
  return strcmp(r.why, "out of memory") ? MSRT_E_INVALID_ARG : MSRT_E_NOMEM;
}

bool msrt_lua_get_string(const unsigned char *p, size_t n, const char **s,
                         size_t *len) {
  rd r = {p, p + n, NULL, 0};
  uint32_t v;
  if (n == 0 || *p < 0x20 || get_u(&r, &v) != 0) return false;
  v -= 0x20;
  if ((size_t)(r.end - r.p) != v) return false;
  *s = (const char *)r.p;
  *len = v;
  return true;
}
