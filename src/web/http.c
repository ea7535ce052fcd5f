/* What libwebsockets calls back for each connection of a web listener
 * (web.h): answers from the caller, static files from the mounts, errors,
 * and the count of open connections. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "web/internal.h"

enum { CHUNK = 4096 };

static msrt_web *web_of(struct lws *wsi) {
  return lws_context_user(lws_get_context(wsi));
}

static void drop_body(msrt_web_session *s) {
  free(s->body);
  memset(s, 0, sizeof *s);
}

static int header(struct lws *wsi, const char *name, const char *value,
                  unsigned char **p, unsigned char *end) {
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)value, (int)strlen(value), p, end);
}

/* Status line and headers now, the body from writable callbacks, then the
 * connection closes. Takes body (malloc'd or NULL). -> 0 | -1 to close */
static int reply(struct lws *wsi, msrt_web_session *s, int status,
                 const char *type, char *body, size_t len) {
  unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start;
  unsigned char *end = buf + sizeof buf - 1;
  drop_body(s);
  s->head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
  s->body = body, s->len = len;
  char n[24];
  snprintf(n, sizeof n, "%zu", len);
  /* names as HTTP/1.1 writes them by custom (libwebsockets' own are
   * lower case, as HTTP/2 needs) */
  if (lws_add_http_header_status(wsi, (unsigned)status, &p, end) ||
      header(wsi, "Content-Type:", type, &p, end) ||
      header(wsi, "Content-Length:", n, &p, end) ||
      header(wsi, "Connection:", "close", &p, end) ||
      header(wsi, "Cache-Control:", "no-store", &p, end) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  if (s->head || len == 0) s->done = 1;
  msrt_web_want_write(wsi);
  return 0;
}

static int reply_text(struct lws *wsi, msrt_web_session *s, int status, const char *text) {
  size_t n = strlen(text);
  char *body = malloc(n);
  if (!body) return -1;
  memcpy(body, text, n);
  return reply(wsi, s, status, "text/plain; charset=utf-8", body, n);
}

/* The next piece of the body; once all is out (and libwebsockets has
 * flushed it: it calls back only then), close. -> 0 | -1 */
static int write_more(struct lws *wsi, msrt_web_session *s) {
  if (s->done) return -1;
  unsigned char buf[LWS_PRE + CHUNK];
  size_t n = s->len - s->off < CHUNK ? s->len - s->off : CHUNK;
  memcpy(buf + LWS_PRE, s->body + s->off, n);
  s->off += n;
  int last = s->off == s->len;
  if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
    return -1;
  if (last) s->done = 1;
  msrt_web_want_write(wsi);
  return 0;
}

static int path_ok(const char *path) {
  if (path[0] != '/' || strstr(path, "..") || strstr(path, "//")) return 0;
  for (const char *c = path; *c; c++)
    if (!(*c == '/' || *c == '.' || *c == '_' || *c == '-' ||
          (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
      return 0;
  return 1;
}

/* The file a path names under the longest matching mount, if it is a
 * regular file. -> 1 (out filled) | 0 */
static int mounted_file(const msrt_web *w, const char *path, char *out, size_t size) {
  const msrt_web_mount *best = NULL;
  for (int i = 0; i < MSRT_WEB_MOUNTS && w->cfg.mounts[i].prefix; i++) {
    const msrt_web_mount *m = &w->cfg.mounts[i];
    size_t n = strlen(m->prefix);
    if (strncmp(path, m->prefix, n) == 0 && (!best || n > strlen(best->prefix))) best = m;
  }
  if (!best || !path_ok(path)) return 0;
  const char *rest = path + strlen(best->prefix);
  const char *index = (!*rest || rest[strlen(rest) - 1] == '/') ? "index.html" : "";
  int n = snprintf(out, size, "%s/%s%s", best->dir, rest, index);
  struct stat st;
  return n > 0 && (size_t)n < size && stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *mime_of(const char *file) {
  static const char *const types[][2] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"}, {".map", "application/json"},
      {".png", "image/png"}, {".svg", "image/svg+xml"}, {".ico", "image/x-icon"},
  };
  const char *dot = strrchr(file, '.');
  for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
    if (strcmp(dot, types[i][0]) == 0) return types[i][1];
  return "application/octet-stream";
}

/* 405 at once, headers and body in one write, then close: a request with
 * a body never gets writable callbacks until its body is read, and this
 * listener reads no bodies. -> -1 (close) */
static int refuse_method(struct lws *wsi) {
  static const char body[] = "method not allowed: GET and HEAD only\n";
  unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start;
  unsigned char *end = buf + sizeof buf - sizeof body;
  char n[24];
  snprintf(n, sizeof n, "%zu", sizeof body - 1);
  if (lws_add_http_header_status(wsi, 405, &p, end) ||
      header(wsi, "Content-Type:", "text/plain; charset=utf-8", &p, end) ||
      header(wsi, "Content-Length:", n, &p, end) ||
      header(wsi, "Connection:", "close", &p, end) ||
      header(wsi, "Allow:", "GET, HEAD", &p, end) ||
      lws_finalize_http_header(wsi, &p, end))
    return -1;
  memcpy(p, body, sizeof body - 1);
  p += sizeof body - 1;
  lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
  return -1;
}

static int on_request(struct lws *wsi, msrt_web_session *s, const char *uri) {
  msrt_web *w = web_of(wsi);
  if (w->cfg.exchange && w->cfg.exchange_path && strcmp(uri, w->cfg.exchange_path) == 0)
    return msrt_web_x_begin(wsi, s);
  if (!lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) &&
      !lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI))
    return refuse_method(wsi);
  char path[1024];
  snprintf(path, sizeof path, "%s", uri); /* libwebsockets cut the query off */
  msrt_web_reply r = {200, "text/plain; charset=utf-8", NULL, 0};
  if (w->cfg.answer && w->cfg.answer(w->cfg.ud, path, &r))
    return reply(wsi, s, r.status, r.type, r.body, r.len);
  free(r.body);
  char file[2048];
  if (!mounted_file(w, path, file, sizeof file))
    return reply_text(wsi, s, 404, "not found\n");
  int n = lws_serve_http_file(wsi, file, mime_of(file), NULL, 0);
  if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi))) return -1;
  return 0;
}

int msrt_web_callback(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len) {
  msrt_web_session *s = user;
  int handled, rc = msrt_web_ws(wsi, reason, s, in, len, &handled);
  if (handled) return rc;
  switch (reason) {
  case LWS_CALLBACK_WSI_CREATE:
    web_of(wsi)->open++;
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    web_of(wsi)->open--;
    return 0;
  case LWS_CALLBACK_HTTP:
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0); /* the request arrived */
    return on_request(wsi, s, in);
  case LWS_CALLBACK_HTTP_BODY:
    return s ? msrt_web_x_body(wsi, s, in, len) : 0;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return s ? msrt_web_x_done(wsi, s) : 0;
  case LWS_CALLBACK_HTTP_WRITEABLE: {
    int x = s && s->x ? msrt_web_x_write(wsi, s) : 0;
    if (x) return x < 0 ? -1 : 0;
    return s && s->body ? write_more(wsi, s) : (s && s->done ? -1 : 0);
  }
  case LWS_CALLBACK_HTTP_FILE_COMPLETION:
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  case LWS_CALLBACK_CLOSED_HTTP:
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    if (s) msrt_web_x_end(s), drop_body(s);
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}
