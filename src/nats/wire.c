/* What nats/proto.h writes (MSG, HMSG, -ERR), CONNECT's options, and the
 * header block <-> msrt's header pairs. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats/proto.h"

static int take_bool(const cJSON *o, const char *k, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsBool(v)) return -1;
  *out = cJSON_IsTrue(v);
  return 0;
}

static int take_str(const cJSON *o, const char *k, char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v)) return -1;
  *out = strdup(v->valuestring);
  return *out ? 0 : -1;
}

msrt_code msrt_nats_connect_parse(const char *json, size_t len,
                                  msrt_nats_connect *out) {
  memset(out, 0, sizeof *out);
  out->echo = true;
  cJSON *o = cJSON_ParseWithLength(json, len);
  if (!o || !cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return MSRT_E_INVALID_ARG;
  }
  int bad = take_bool(o, "verbose", &out->verbose) |
            take_bool(o, "pedantic", &out->pedantic) |
            take_bool(o, "headers", &out->headers) |
            take_bool(o, "no_responders", &out->no_responders) |
            take_bool(o, "echo", &out->echo) |
            take_bool(o, "tls_required", &out->tls_required) |
            take_str(o, "user", &out->user) |
            take_str(o, "pass", &out->pass) |
            take_str(o, "auth_token", &out->auth_token) |
            take_str(o, "name", &out->name) |
            take_str(o, "lang", &out->lang) |
            take_str(o, "version", &out->version);
  const cJSON *proto = cJSON_GetObjectItemCaseSensitive(o, "protocol");
  if (proto && cJSON_IsNumber(proto)) out->protocol = proto->valueint;
  else if (proto && !cJSON_IsNull(proto)) bad = -1;
  cJSON_Delete(o);
  return bad ? MSRT_E_INVALID_ARG : MSRT_E_OK;
}

void msrt_nats_connect_free(msrt_nats_connect *c) {
  free(c->user), free(c->pass), free(c->auth_token);
  free(c->name), free(c->lang), free(c->version);
  memset(c, 0, sizeof *c);
}

void msrt_nats_put_err(msrt_sbuf *out, const char *text) {
  msrt_sbuf_put(out, "-ERR '", 6);
  msrt_sbuf_put(out, text, strlen(text));
  msrt_sbuf_put(out, "'\r\n", 3);
}

static void put_num(msrt_sbuf *out, size_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, " %zu", v);
  msrt_sbuf_put(out, num, (size_t)n);
}

/* "OP subject sid [reply]" */
static void put_head(msrt_sbuf *out, const char *op, const char *subject,
                     size_t slen, const char *sid, size_t sidlen,
                     const char *reply, size_t rlen) {
  msrt_sbuf_put(out, op, strlen(op));
  msrt_sbuf_put(out, subject, slen);
  msrt_sbuf_putc(out, ' ');
  msrt_sbuf_put(out, sid, sidlen);
  if (reply && rlen) {
    msrt_sbuf_putc(out, ' ');
    msrt_sbuf_put(out, reply, rlen);
  }
}

void msrt_nats_put_msg(msrt_sbuf *out, const char *subject, size_t slen,
                       const char *sid, size_t sidlen, const char *reply,
                       size_t rlen, const void *payload, size_t plen) {
  put_head(out, "MSG ", subject, slen, sid, sidlen, reply, rlen);
  put_num(out, plen);
  msrt_sbuf_put(out, "\r\n", 2);
  msrt_sbuf_put(out, payload, plen);
  msrt_sbuf_put(out, "\r\n", 2);
}

void msrt_nats_put_hmsg(msrt_sbuf *out, const char *subject, size_t slen,
                        const char *sid, size_t sidlen, const char *reply,
                        size_t rlen, const void *hdr, size_t hlen,
                        const void *payload, size_t plen) {
  put_head(out, "HMSG ", subject, slen, sid, sidlen, reply, rlen);
  put_num(out, hlen);
  put_num(out, hlen + plen);
  msrt_sbuf_put(out, "\r\n", 2);
  msrt_sbuf_put(out, hdr, hlen);
  msrt_sbuf_put(out, payload, plen);
  msrt_sbuf_put(out, "\r\n", 2);
}

/* The next "name\0value\0" pair at *at of pairs[0..len); -1 when none
 * is complete. */
static int next_pair(const char *pairs, size_t len, size_t *at,
                     const char **k, size_t *kl, const char **v, size_t *vl) {
  const char *z1 = memchr(pairs + *at, 0, len - *at);
  if (!z1) return -1;
  size_t vat = (size_t)(z1 - pairs) + 1;
  const char *z2 = memchr(pairs + vat, 0, len - vat);
  if (!z2) return -1;
  *k = pairs + *at, *kl = (size_t)(z1 - *k);
  *v = pairs + vat, *vl = (size_t)(z2 - *v);
  *at = (size_t)(z2 - pairs) + 1;
  return 0;
}

static bool is_name(const char *k, size_t kl, const char *name) {
  return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

msrt_code msrt_nats_hdr_from_pairs(msrt_sbuf *out, const char *pairs,
                                   size_t len) {
  const char *k, *v, *status = NULL, *desc = NULL;
  size_t kl, vl, sl = 0, dl = 0, at = 0;
  while (at < len) {
    if (next_pair(pairs, len, &at, &k, &kl, &v, &vl))
      return MSRT_E_INVALID_ARG;
    if (is_name(k, kl, "Status")) status = v, sl = vl;
    else if (is_name(k, kl, "Description")) desc = v, dl = vl;
  }
  msrt_sbuf_put(out, "NATS/1.0", 8);
  if (status) {
    msrt_sbuf_putc(out, ' ');
    msrt_sbuf_put(out, status, sl);
    if (desc) {
      msrt_sbuf_putc(out, ' ');
      msrt_sbuf_put(out, desc, dl);
    }
  }
  msrt_sbuf_put(out, "\r\n", 2);
  for (at = 0; at < len;) {
    next_pair(pairs, len, &at, &k, &kl, &v, &vl);
    if (status && (is_name(k, kl, "Status") || is_name(k, kl, "Description")))
      continue;
    msrt_sbuf_put(out, k, kl);
    msrt_sbuf_put(out, ": ", 2);
    msrt_sbuf_put(out, v, vl);
    msrt_sbuf_put(out, "\r\n", 2);
  }
  msrt_sbuf_put(out, "\r\n", 2);
  return MSRT_E_OK;
}

static void put_pair(msrt_sbuf *out, const char *k, size_t kl, const char *v,
                     size_t vl) {
  msrt_sbuf_put(out, k, kl);
  msrt_sbuf_putc(out, 0);
  msrt_sbuf_put(out, v, vl);
  msrt_sbuf_putc(out, 0);
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* Whether a value holds a byte msrt's headers refuse (NUL, CR, LF:
 * lua/msrt/headers.lua). */
static bool bad_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == 0 || s[i] == '\r' || s[i] == '\n') return true;
  return false;
}

/* The status line after "NATS/1.0": " 503 No Responders" or nothing. */
static int status_line(msrt_sbuf *out, const char *s, size_t n) {
  if (n && s[0] != ' ' && s[0] != '\t') return -1;
  if (bad_value(s, n)) return -1;
  trim(&s, &n);
  if (!n) return 0;
  size_t c = 0;
  while (c < n && s[c] != ' ' && s[c] != '\t') c++;
  put_pair(out, "Status", 6, s, c);
  const char *d = s + c;
  size_t dl = n - c;
  trim(&d, &dl);
  if (dl) put_pair(out, "Description", 11, d, dl);
  return 0;
}

/* One "Name: value" line (without its CRLF). */
static int header_line(msrt_sbuf *out, const char *s, size_t n) {
  const char *colon = memchr(s, ':', n);
  if (!colon || colon == s) return -1;
  size_t kl = (size_t)(colon - s);
  for (size_t i = 0; i < kl; i++)
    if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) return -1;
  const char *v = colon + 1;
  size_t vl = n - kl - 1;
  trim(&v, &vl);
  if (bad_value(v, vl)) return -1;
  put_pair(out, s, kl, v, vl);
  return 0;
}

msrt_code msrt_nats_hdr_to_pairs(msrt_sbuf *out, const char *block,
                                 size_t len) {
  if (len < 8 || memcmp(block, "NATS/1.0", 8) != 0) return MSRT_E_INVALID_ARG;
  size_t at = 0;
  for (int first = 1; at < len; first = 0) {
    const char *end = memchr(block + at, '\n', len - at);
    if (!end) return MSRT_E_INVALID_ARG;
    size_t n = (size_t)(end - block) - at;
    if (n && block[at + n - 1] == '\r') n--;
    if (first) {
      if (status_line(out, block + 8, n - 8)) return MSRT_E_INVALID_ARG;
    } else if (n == 0) {
      return MSRT_E_OK;
    } else if (header_line(out, block + at, n)) {
      return MSRT_E_INVALID_ARG;
    }
    at = (size_t)(end - block) + 1;
  }
  return MSRT_E_OK;
}
