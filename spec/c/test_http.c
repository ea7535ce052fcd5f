/* src/http: the text/event-stream parser (sse.h) fed whole and split at
 * every byte, and the HTTP client (http.h) against a loopback server
 * written here on libuv: an event stream sent in pieces with pauses, a
 * server gone mid-body, a cancel from inside a callback, a refused
 * connection and bad arguments. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ctest.h"
#include "http/http.h"
#include "http/sse.h"

/* ---- the parser ----------------------------------------------------------- */

typedef struct {
  char log[4096];
  int n;
  int stop_after; /* answer true after this many events (0: never) */
} events;

static bool on_event(void *ud, const char *type, const char *data, size_t len, const char *id) {
  events *e = ud;
  size_t at = strlen(e->log);
  snprintf(e->log + at, sizeof e->log - at, "[%s|%.*s|%s]", type, (int)len, data, id);
  e->n++;
  return e->stop_after && e->n >= e->stop_after;
}

/* The log of stream s fed in pieces of k bytes (0: whole). */
static void feed(const char *s, size_t k, size_t max, events *e, msrt_code *last) {
  msrt_sse p;
  msrt_sse_init(&p, max);
  memset(e, 0, sizeof *e);
  size_t n = strlen(s);
  *last = MSRT_E_OK;
  for (size_t at = 0; at < n && *last == MSRT_E_OK;) {
    size_t m = k ? (k < n - at ? k : n - at) : n;
    *last = msrt_sse_feed(&p, s + at, m, on_event, e);
    at += m;
  }
  msrt_sse_free(&p);
}

static const char *STREAM =
    "\xEF\xBB\xBF: a comment\r\n"
    "event: message\r\n"
    "id: 7\r\n"
    "data: {\"a\":1}\r\n\r\n"
    "data:first\rdata: second\r\r"      /* CR ends lines too */
    "retry: 10\nevent: ping\ndata\n\n"  /* a field without a colon: empty value */
    "id\ndata:  two spaces\n\n"         /* id reset; one space dropped */
    "event: nodata\n\n"                 /* no data: not dispatched */
    "data: unfinished";                 /* dropped at the end */

static const char *WANT =
    "[message|{\"a\":1}|7][message|first\nsecond|7][ping||7][message| two spaces|]";

static void test_sse_any_split(void) {
  events whole;
  msrt_code rc;
  feed(STREAM, 0, 0, &whole, &rc);
  CHECK(rc == MSRT_E_OK);
  CHECK_STR(whole.log, WANT);
  for (size_t k = 1; k <= 8; k++) {
    events e;
    feed(STREAM, k, 0, &e, &rc);
    CHECK(rc == MSRT_E_OK);
    CHECK_STR(e.log, WANT);
  }
}

static void test_sse_limits_and_stop(void) {
  events e;
  msrt_code rc;
  feed("data: 0123456789abcdef\n\n", 3, 8, &e, &rc); /* a line over 8 bytes */
  CHECK(rc == MSRT_E_LIMIT);
  CHECK(e.n == 0);
  feed("data: 0123\ndata: 4567\n\n", 0, 8, &e, &rc); /* data over 8 bytes */
  CHECK(rc == MSRT_E_LIMIT);
  msrt_sse p;
  msrt_sse_init(&p, 0);
  memset(&e, 0, sizeof e);
  e.stop_after = 1;
  CHECK(msrt_sse_feed(&p, "data: a\n\ndata: b\n\n", 18, on_event, &e) == MSRT_E_CLOSED);
  CHECK(e.n == 1);
  msrt_sse_free(&p);
  /* no BOM: the first bytes are content */
  feed("\xEF" "data: x\n\n", 0, 0, &e, &rc);
  CHECK(rc == MSRT_E_OK && e.n == 0);
}

/* ---- a loopback server -------------------------------------------------- */

typedef struct {
  uv_tcp_t srv;
  uv_timer_t later;
  uv_tcp_t *conn;
  const char *parts[4]; /* written one per 20 ms */
  int next;
  char got[4096];       /* the request bytes read */
  size_t got_len;
} server;

static void on_closed(uv_handle_t *h) { free(h); }

static void write_next(uv_timer_t *t);

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void write_next(uv_timer_t *t) {
  server *s = t->data;
  if (!s->conn) return;
  const char *p = s->parts[s->next];
  if (!p) {
    uv_close((uv_handle_t *)s->conn, on_closed);
    s->conn = NULL;
    return;
  }
  s->next++;
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)strlen(p));
  uv_write(w, (uv_stream_t *)s->conn, &b, 1, on_written);
  uv_timer_start(&s->later, write_next, 20, 0);
}

static void alloc_cb(uv_handle_t *h, size_t want, uv_buf_t *b) {
  (void)h;
  b->base = malloc(want), b->len = want;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  server *s = st->data;
  if (n > 0 && s->got_len + (size_t)n < sizeof s->got) {
    memcpy(s->got + s->got_len, b->base, (size_t)n);
    s->got_len += (size_t)n;
    s->got[s->got_len] = 0;
    if (strstr(s->got, "\r\n\r\n") && s->next == 0 && s->parts[0]) write_next(&s->later);
  } else if (n < 0 && s->conn) {
    uv_close((uv_handle_t *)s->conn, on_closed);
    s->conn = NULL;
  }
  free(b->base);
}

static void on_conn(uv_stream_t *l, int status) {
  server *s = l->data;
  if (status < 0) return;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(l->loop, c);
  c->data = s;
  uv_accept(l, (uv_stream_t *)c);
  s->conn = c;
  uv_read_start((uv_stream_t *)c, alloc_cb, on_read);
}

static int serve(uv_loop_t *loop, server *s) {
  uv_tcp_init(loop, &s->srv);
  uv_timer_init(loop, &s->later);
  s->srv.data = s->later.data = s;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_bind(&s->srv, (const struct sockaddr *)&a, 0);
  uv_listen((uv_stream_t *)&s->srv, 8, on_conn);
  struct sockaddr_storage got;
  int len = sizeof got;
  uv_tcp_getsockname(&s->srv, (struct sockaddr *)&got, &len);
  return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void unserve(server *s) {
  if (s->conn) uv_close((uv_handle_t *)s->conn, on_closed);
  uv_close((uv_handle_t *)&s->srv, NULL);
  uv_close((uv_handle_t *)&s->later, NULL);
}

/* ---- the client ------------------------------------------------------------ */

typedef struct {
  long status;
  char headers[2048];
  char body[4096];
  int pieces;
  bool done;
  msrt_code code;
  char why[256];
  msrt_http_req *req;
  bool cancel_in_head;
} outcome;

static void c_head(void *ud, long status, const char *h, size_t len) {
  outcome *o = ud;
  o->status = status;
  snprintf(o->headers, sizeof o->headers, "%.*s", (int)len, h);
  if (o->cancel_in_head) {
    msrt_http_cancel(o->req);
    o->done = true; /* nothing more comes */
  }
}

static void c_body(void *ud, const char *b, size_t n) {
  outcome *o = ud;
  size_t at = strlen(o->body);
  snprintf(o->body + at, sizeof o->body - at, "%.*s", (int)n, b);
  o->pieces++;
}

static void c_done(void *ud, msrt_code code, const char *why) {
  outcome *o = ud;
  o->done = true, o->code = code;
  snprintf(o->why, sizeof o->why, "%s", why);
}

static const msrt_http_cbs CBS = {c_head, c_body, c_done};

static void run_until(uv_loop_t *loop, outcome *o) {
  for (int i = 0; i < 100000 && !o->done; i++) uv_run(loop, UV_RUN_ONCE);
}

static void request(msrt_http *c, const char *url, long timeout_ms, outcome *o) {
  const char *hdrs[] = {"Accept: application/json, text/event-stream", "Mcp-Session-Id: s1"};
  msrt_http_opts opt = {.method = "POST", .url = url, .headers = hdrs, .n_headers = 2,
                        .body = "{\"jsonrpc\":\"2.0\"}", .body_len = 17, .timeout_ms = timeout_ms};
  msrt_error err;
  o->req = msrt_http_request(c, &opt, &CBS, o, &err);
  CHECK(o->req != NULL);
}

static void test_client(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  msrt_error err;
  msrt_http *c = msrt_http_new(&loop, &err);
  CHECK(c != NULL);
  server s;
  memset(&s, 0, sizeof s);
  s.parts[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: abc\r\n"
               "Transfer-Encoding: chunked\r\n\r\n";
  s.parts[1] = "e\r\ndata: {\"a\":1}\n\r\n";
  s.parts[2] = "1\r\n\n\r\n0\r\n\r\n";
  int port = serve(&loop, &s);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
  outcome o;
  memset(&o, 0, sizeof o);
  request(c, url, 5000, &o);
  run_until(&loop, &o);
  CHECK(o.done && o.code == MSRT_E_OK);
  CHECK(o.status == 200);
  CHECK(strstr(o.headers, "Mcp-Session-Id: abc") != NULL);
  CHECK_STR(o.body, "data: {\"a\":1}\n\n");
  CHECK(o.pieces == 2); /* handed out as it came */
  CHECK(strstr(s.got, "POST /mcp") == s.got);
  CHECK(strstr(s.got, "Mcp-Session-Id: s1\r\n") != NULL);
  CHECK(strstr(s.got, "{\"jsonrpc\":\"2.0\"}") != NULL);
  CHECK(msrt_http_active(c) == 0);

  /* the server goes away mid-body: a network error after what came */
  memset(&o, 0, sizeof o);
  s.next = 0, s.got_len = 0;
  s.parts[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\n";
  s.parts[1] = "data: x\n";
  s.parts[2] = NULL;
  request(c, url, 5000, &o);
  run_until(&loop, &o);
  CHECK(o.done && o.code == MSRT_E_NETWORK);
  CHECK_STR(o.body, "data: x\n");

  /* a cancel inside head: no more callbacks, the request is freed */
  memset(&o, 0, sizeof o);
  s.next = 0, s.got_len = 0;
  s.parts[0] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  s.parts[1] = NULL;
  o.cancel_in_head = true;
  request(c, url, 5000, &o);
  run_until(&loop, &o);
  CHECK(o.status == 200 && o.body[0] == 0 && o.code == MSRT_E_OK);
  CHECK(msrt_http_active(c) == 0);

  /* nothing listens: refused at once, a network error naming it */
  unserve(&s);
  uv_run(&loop, UV_RUN_NOWAIT);
  memset(&o, 0, sizeof o);
  request(c, url, 5000, &o);
  run_until(&loop, &o);
  CHECK(o.done && o.code == MSRT_E_NETWORK);
  CHECK(strstr(o.why, "onnect") != NULL);
  CHECK(o.status == 0);

  /* bad arguments */
  msrt_http_opts bad = {.method = "GET", .url = "file:///etc/passwd"};
  CHECK(msrt_http_request(c, &bad, &CBS, &o, &err) == NULL && err.code == MSRT_E_INVALID_ARG);
  const char *crlf[] = {"X: a\r\nY: b"};
  msrt_http_opts bad2 = {.method = "GET", .url = url, .headers = crlf, .n_headers = 1};
  CHECK(msrt_http_request(c, &bad2, &CBS, &o, &err) == NULL && err.code == MSRT_E_INVALID_ARG);

  msrt_http_close(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_MAIN(test_sse_any_split, test_sse_limits_and_stop, test_client)
