/* Exchanges (web.h): requests on cfg.exchange_path, their body gathered,
 * handed to the caller and answered whenever it calls msrt_web_respond.
 * The answer waits on the exchange until libwebsockets says the
 * connection is writable (it writes only from its callbacks). */
#include <stdlib.h>
#include <string.h>

#include "web/internal.h"

enum { HV = 256 }; /* bytes kept of each header passed on */

struct msrt_web_x {
  unsigned long id;
  struct lws *wsi;
  msrt_web_session *s;
  msrt_web_x *next;  /* in w->waiting, once handed over */
  const char *method;
  char origin[HV], accept[HV], header[HV];
  char *req;         /* the body gathered so far */
  size_t len;
  int handed, answered, head_sent;
  int status;
  char type[64], hname[64], hvalue[HV];
  char *body;        /* the answer's, until its headers are out */
  size_t body_len;
};

static msrt_web *web_of(struct lws *wsi) {
  return lws_context_user(lws_get_context(wsi));
}

static const char *method_of(struct lws *wsi) {
  static const struct { enum lws_token_indexes t; const char *name; } m[] = {
      {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_HEAD_URI, "HEAD"},     {WSI_TOKEN_DELETE_URI, "DELETE"},
      {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
      {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    if (lws_hdr_total_length(wsi, m[i].t) > 0) return m[i].name;
  return "OTHER";
}

/* A header's value into out (HV bytes): "" when absent, "?" when longer
 * than HV - 1 (never read as absent: an Origin check must not be
 * bypassed by a long one). */
static void copy_token(struct lws *wsi, enum lws_token_indexes t, char *out) {
  out[0] = 0;
  if (lws_hdr_total_length(wsi, t) <= 0) return;
  if (lws_hdr_copy(wsi, out, HV, t) < 0) strcpy(out, "?");
}

static void copy_custom(struct lws *wsi, const char *name, char *out) {
  out[0] = 0;
  if (!name) return;
  char low[64];
  size_t n = strlen(name);
  if (n + 2 > sizeof low) return;
  for (size_t i = 0; i < n; i++) low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
  low[n] = ':', low[n + 1] = 0;
  int len = lws_hdr_custom_length(wsi, low, (int)n + 1);
  if (len <= 0) return;
  if (len >= HV || lws_hdr_custom_copy(wsi, out, HV, low, (int)n + 1) < 0) strcpy(out, "?");
}

/* Headers and body in one write, then close: a request whose body is not
 * read gets no writable callbacks. -> -1 (close) */
static int refuse_now(struct lws *wsi, int status, const char *text) {
  unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start;
  size_t n = strlen(text);
  unsigned char *end = buf + sizeof buf - n;
  char cl[24];
  snprintf(cl, sizeof cl, "%zu", n);
  if (lws_add_http_header_status(wsi, (unsigned)status, &p, end) ||
      lws_add_http_header_by_name(wsi, (const unsigned char *)"Content-Length:",
                                  (const unsigned char *)cl, (int)strlen(cl), &p, end) ||
      lws_add_http_header_by_name(wsi, (const unsigned char *)"Connection:",
                                  (const unsigned char *)"close", 5, &p, end) ||
      lws_finalize_http_header(wsi, &p, end))
    return -1;
  memcpy(p, text, n);
  p += n;
  lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
  return -1;
}

static int hand_over(struct lws *wsi, msrt_web_session *s) {
  msrt_web *w = web_of(wsi);
  msrt_web_x *x = s->x;
  x->handed = 1;
  x->next = w->waiting, w->waiting = x;
  msrt_web_exchange e = {x->id, x->method, x->origin, x->accept, x->header,
                         x->req ? x->req : "", x->len};
  w->cfg.exchange(w->cfg.ud, &e);
  return 0;
}

int msrt_web_x_begin(struct lws *wsi, msrt_web_session *s) {
  msrt_web *w = web_of(wsi);
  msrt_web_x *x = calloc(1, sizeof *x);
  if (!x) return -1;
  s->x = x;
  x->id = ++w->next_xid, x->wsi = wsi, x->s = s;
  x->method = method_of(wsi);
  copy_token(wsi, WSI_TOKEN_ORIGIN, x->origin);
  copy_token(wsi, WSI_TOKEN_HTTP_ACCEPT, x->accept);
  copy_custom(wsi, w->cfg.exchange_header, x->header);
  char cl[32] = "";
  copy_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl);
  if (cl[0] && strtoull(cl, NULL, 10) > w->cfg.body_max)
    return refuse_now(wsi, 413, "request body too large\n");
  if (!cl[0] || strtoull(cl, NULL, 10) == 0) return hand_over(wsi, s); /* no body */
  /* the body must follow within the read timeout too */
  lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)((w->cfg.read_timeout_ms + 999) / 1000));
  return 0;
}

int msrt_web_x_body(struct lws *wsi, msrt_web_session *s, const void *in, size_t len) {
  msrt_web_x *x = s->x;
  if (!x || x->handed) return 0;
  if (x->len + len > web_of(wsi)->cfg.body_max)
    return refuse_now(wsi, 413, "request body too large\n");
  char *r = realloc(x->req, x->len + len + 1);
  if (!r) return -1;
  memcpy(r + x->len, in, len);
  x->req = r, x->len += len;
  r[x->len] = 0;
  return 0;
}

int msrt_web_x_done(struct lws *wsi, msrt_web_session *s) {
  if (!s->x || s->x->handed) return 0;
  lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  return hand_over(wsi, s);
}

msrt_code msrt_web_respond(msrt_web *w, unsigned long id, int status,
                           const char *type, const char *hname,
                           const char *hvalue, char *body, size_t len) {
  msrt_web_x *x = w ? w->waiting : NULL;
  while (x && x->id != id) x = x->next;
  if (!x || x->answered) {
    free(body);
    return MSRT_E_NOT_FOUND;
  }
  x->answered = 1, x->status = status;
  snprintf(x->type, sizeof x->type, "%s", type ? type : "text/plain");
  snprintf(x->hname, sizeof x->hname, "%s", hname ? hname : "");
  snprintf(x->hvalue, sizeof x->hvalue, "%s", hvalue ? hvalue : "");
  x->body = body, x->body_len = body ? len : 0;
  msrt_web_want_write(x->wsi);
  return MSRT_E_OK;
}

static int add(struct lws *wsi, const char *name, const char *value,
               unsigned char **p, unsigned char *end) {
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)value, (int)strlen(value), p, end);
}

/* The answer's status line and headers; its body goes on as any reply's
 * (http.c). -> 1 (written) | 0 (nothing to write yet) | -1 */
int msrt_web_x_write(struct lws *wsi, msrt_web_session *s) {
  msrt_web_x *x = s->x;
  if (!x->answered) return 0;
  if (x->head_sent) return 0;
  unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start;
  unsigned char *end = buf + sizeof buf - 1;
  char n[24], hn[70];
  snprintf(n, sizeof n, "%zu", x->body_len);
  snprintf(hn, sizeof hn, "%s:", x->hname);
  if (lws_add_http_header_status(wsi, (unsigned)x->status, &p, end) ||
      add(wsi, "Content-Type:", x->type, &p, end) ||
      add(wsi, "Content-Length:", n, &p, end) ||
      add(wsi, "Connection:", "close", &p, end) ||
      add(wsi, "Cache-Control:", "no-store", &p, end) ||
      (x->hname[0] && add(wsi, hn, x->hvalue, &p, end)) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  x->head_sent = 1;
  s->body = x->body, s->len = x->body_len, s->off = 0;
  x->body = NULL;
  if (s->len == 0) s->done = 1;
  msrt_web_want_write(wsi);
  return 1;
}

void msrt_web_x_end(msrt_web_session *s) {
  msrt_web_x *x = s->x;
  if (!x) return;
  s->x = NULL;
  if (x->handed) {
    msrt_web *w = web_of(x->wsi);
    msrt_web_x **pp = &w->waiting;
    while (*pp && *pp != x) pp = &(*pp)->next;
    if (*pp) *pp = x->next;
    if (!x->answered && w->cfg.gone) w->cfg.gone(w->cfg.ud, x->id);
  }
  free(x->req);
  free(x->body);
  free(x);
}
