/* The HTTP client (http.h): libcurl's multi interface on a libuv loop,
 * as libcurl's multi-uv example drives it (a uv_poll per socket curl
 * names through CURLMOPT_SOCKETFUNCTION, one uv_timer for
 * CURLMOPT_TIMERFUNCTION), with every user callback deferred until
 * curl_multi_socket_action has returned (pump). */
#include "http/http.h"

#include <stdlib.h>
#include <string.h>

#include "core/handle.h"
#include "http/curl_dl.h" /* libcurl, by its names */
#include "hub/timer.h"

#define HEADERS_MAX ((size_t)64 << 10)

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

struct msrt_http_req {
  msrt_http *c;
  CURL *easy;
  struct curl_slist *headers;
  msrt_http_cbs cbs;
  void *ud;
  buf head, body;         /* the header block (the final one), body bytes not yet handed out */
  long status;            /* the last status line's code */
  bool head_whole;        /* the final header block has ended */
  bool head_given;        /* head was called */
  bool finished;          /* curl says done: result below */
  bool over;              /* done called, or cancelled: to be freed */
  bool too_big;           /* the header block passed HEADERS_MAX */
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
  msrt_http_req *prev, *next;
};

struct msrt_http {
  unsigned magic;         /* MSRT_HANDLE_MAGIC: the timer's data, not luv's */
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_prepare_t anchor;    /* active while requests are: keeps the loop alive */
  int open_handles;       /* the timer and the anchor until they close */
  msrt_http_req *first, *last;
  size_t active;
  int in_pump;            /* > 0 while user callbacks run */
  bool closing;           /* msrt_http_close was called */
};

typedef struct sock {
  unsigned magic;         /* MSRT_HANDLE_MAGIC: the poll's data, not luv's */
  uv_poll_t poll;
  curl_socket_t fd;
  msrt_http *c;
} sock;

static bool put(buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return false;
    b->p = q, b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return true;
}

/* ---- curl's callbacks: they only buffer ---------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  msrt_http_req *r = ud;
  return put(&r->body, p, size * n) ? size * n : 0; /* 0: CURLE_WRITE_ERROR */
}

/* Each header line; a status line starts a new block (1xx and redirects
 * come before the final one), the empty line ends it. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  msrt_http_req *r = ud;
  size_t len = size * n;
  if (len >= 5 && !memcmp(p, "HTTP/", 5)) {
    r->head.len = 0, r->head_whole = false;
    const char *sp = memchr(p, ' ', len);
    r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    return len;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    if (r->status >= 200) r->head_whole = true;
    return len;
  }
  if (r->head.len + len > HEADERS_MAX) {
    r->too_big = true;
    return 0; /* ends the transfer */
  }
  return put(&r->head, p, len) ? len : 0;
}

/* ---- handing out what arrived ------------------------------------------- */

static msrt_code code_of(CURLcode rc) {
  switch (rc) {
    case CURLE_OK: return MSRT_E_OK;
    case CURLE_OPERATION_TIMEDOUT: return MSRT_E_TIMEOUT;
    case CURLE_OUT_OF_MEMORY: return MSRT_E_NOMEM;
    default: return MSRT_E_NETWORK;
  }
}

/* Hand out r's news; false once r is over (done called, or cancelled by
 * a callback). */
static bool deliver(msrt_http_req *r) {
  if (!r->head_given && r->head_whole && (r->body.len || r->finished)) {
    r->head_given = true;
    if (r->cbs.head) r->cbs.head(r->ud, r->status, r->head.p ? r->head.p : "", r->head.len);
    if (r->over) return false;
  }
  if (r->body.len && r->head_given) {
    size_t n = r->body.len;
    r->body.len = 0; /* a callback may not see the same bytes twice */
    if (r->cbs.body) r->cbs.body(r->ud, r->body.p, n);
    if (r->over) return false;
  }
  if (!r->finished) return true;
  r->over = true;
  msrt_code code = r->too_big ? MSRT_E_LIMIT : code_of(r->result);
  const char *why = "";
  if (r->too_big) why = "the response's header block is over 64 KiB";
  else if (code != MSRT_E_OK) why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
  if (r->cbs.done) r->cbs.done(r->ud, code, why);
  return false;
}

static void free_req(msrt_http_req *r) {
  msrt_http *c = r->c;
  if (r->prev) r->prev->next = r->next; else c->first = r->next;
  if (r->next) r->next->prev = r->prev; else c->last = r->prev;
  curl_multi_remove_handle(c->multi, r->easy);
  curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r->head.p);
  free(r->body.p);
  free(r);
  if (--c->active == 0) uv_prepare_stop(&c->anchor);
}

static void close_now(msrt_http *c);

/* Free the requests that are over; outside callbacks only. */
static void sweep(msrt_http *c) {
  for (msrt_http_req *r = c->first, *next; r; r = next) {
    next = r->next;
    if (r->over) free_req(r);
  }
  if (c->closing) close_now(c);
}

/* After curl ran: read its finished transfers, hand out what arrived. */
static void pump(msrt_http *c) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    msrt_http_req *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r && !r->over) r->finished = true, r->result = m->data.result;
  }
  c->in_pump++;
  for (msrt_http_req *r = c->first; r && !c->closing; r = r->next)
    if (!r->over) deliver(r);
  c->in_pump--;
  sweep(c);
}

/* ---- the loop's side ------------------------------------------------------ */

static void act(msrt_http *c, curl_socket_t fd, int flags) {
  int running;
  curl_multi_socket_action(c->multi, fd, flags, &running);
  pump(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock *s = h->data;
  int flags = 0;
  /* an error on the socket (a reset, a hang-up): curl reads and writes
   * to learn which, so that a request on a reused connection the server
   * had closed is retried on a new one (CURL_CSELECT_ERR would fail it
   * as "select/poll returned error") */
  if (status < 0) flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  act(s->c, s->fd, flags);
}

static void on_timer(uv_timer_t *t) { act(t->data, CURL_SOCKET_TIMEOUT, 0); }

static void free_sock(uv_handle_t *h) { free(h->data); }

static void on_anchor(uv_prepare_t *p) { (void)p; }

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  msrt_http *c = userp;
  sock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (!uv_is_closing((uv_handle_t *)&s->poll)) uv_close((uv_handle_t *)&s->poll, free_sock);
      curl_multi_assign(c->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->magic = MSRT_HANDLE_MAGIC, s->fd = fd, s->c = c, s->poll.data = s;
    if (uv_poll_init_socket(c->loop, &s->poll, fd)) {
      free(s);
      return -1;
    }
    uv_unref((uv_handle_t *)&s->poll);
    curl_multi_assign(c->multi, fd, s);
  }
  int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  return uv_poll_start(&s->poll, ev, on_poll) ? -1 : 0;
}

static int on_timer_set(CURLM *m, long ms, void *userp) {
  (void)m;
  msrt_http *c = userp;
  if (ms < 0) return uv_timer_stop(&c->timer) ? -1 : 0;
  return msrt_timer_start(&c->timer, on_timer, (double)ms, 0) == MSRT_E_OK ? 0 : -1;
}

/* ---- the API ---------------------------------------------------------------- */

msrt_http *msrt_http_new(uv_loop_t *loop, msrt_error *err) {
  if (msrt_curl_load(err) != MSRT_E_OK) return NULL;
  msrt_http *c = calloc(1, sizeof *c);
  if (!c || !(c->multi = curl_multi_init())) {
    free(c);
    msrt_error_set(err, MSRT_E_NOMEM, "no memory for an HTTP client");
    return NULL;
  }
  c->magic = MSRT_HANDLE_MAGIC, c->loop = loop;
  /* curl's timer and sockets never keep the loop alive on their own: the
   * anchor does, while requests are in flight */
  uv_timer_init(loop, &c->timer);
  uv_unref((uv_handle_t *)&c->timer);
  uv_prepare_init(loop, &c->anchor);
  c->timer.data = c->anchor.data = c, c->open_handles = 2;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  return c;
}

static bool header_ok(const char *h) { return h && !strpbrk(h, "\r\n"); }

static msrt_code setup(msrt_http_req *r, const msrt_http_opts *o, msrt_error *err) {
  CURL *e = r->easy;
  for (size_t i = 0; i < o->n_headers; i++) {
    if (!header_ok(o->headers[i])) return msrt_error_set(err, MSRT_E_INVALID_ARG, "a request header holds CR or LF");
    struct curl_slist *l = curl_slist_append(r->headers, o->headers[i]);
    if (!l) return msrt_error_set(err, MSRT_E_NOMEM, "no memory for a request header");
    r->headers = l;
  }
  /* no "Expect: 100-continue" round trip before a large body */
  struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
  if (!l) return msrt_error_set(err, MSRT_E_NOMEM, "no memory for a request header");
  r->headers = l;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
  if (!strcmp(o->method, "POST") || o->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(o->body ? o->body_len : 0));
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "");
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : 0L);
  if (o->connect_timeout_ms > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  return MSRT_E_OK;
}

static bool scheme_ok(const char *url) {
  return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8);
}

msrt_http_req *msrt_http_request(msrt_http *c, const msrt_http_opts *o,
                                 const msrt_http_cbs *cbs, void *ud,
                                 msrt_error *err) {
  if (c->closing) {
    msrt_error_set(err, MSRT_E_CLOSED, "the HTTP client is closing");
    return NULL;
  }
  if (!o->method || !*o->method || !header_ok(o->method) || !o->url || !scheme_ok(o->url)) {
    msrt_error_set(err, MSRT_E_INVALID_ARG, "an HTTP request needs a method and an http:// or https:// url");
    return NULL;
  }
  msrt_http_req *r = calloc(1, sizeof *r);
  if (!r || !(r->easy = curl_easy_init())) {
    free(r);
    msrt_error_set(err, MSRT_E_NOMEM, "no memory for an HTTP request");
    return NULL;
  }
  r->c = c, r->cbs = *cbs, r->ud = ud;
  r->prev = c->last;
  if (c->last) c->last->next = r; else c->first = r;
  c->last = r;
  if (c->active++ == 0) uv_prepare_start(&c->anchor, on_anchor);
  msrt_code rc = setup(r, o, err);
  if (rc == MSRT_E_OK && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
    rc = msrt_error_set(err, MSRT_E_NOMEM, "libcurl took no more transfers");
  if (rc != MSRT_E_OK) {
    free_req(r); /* removing a handle the multi does not hold is harmless */
    return NULL;
  }
  return r;
}

void msrt_http_cancel(msrt_http_req *r) {
  if (r->over) return;
  r->over = true;
  if (!r->c->in_pump) free_req(r);
}

size_t msrt_http_active(const msrt_http *c) { return c->active; }

static void free_client(uv_handle_t *h) {
  msrt_http *c = h->data;
  if (--c->open_handles == 0) free(c);
}

static void close_now(msrt_http *c) {
  while (c->first) free_req(c->first);
  curl_multi_cleanup(c->multi); /* closes curl's sockets: CURL_POLL_REMOVE for each */
  /* the hub closes what is left at exit (hub.h msrt_hub_close_all) */
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, free_client);
  else c->open_handles--;
  if (!uv_is_closing((uv_handle_t *)&c->anchor)) uv_close((uv_handle_t *)&c->anchor, free_client);
  else c->open_handles--;
  if (c->open_handles == 0) free(c);
}

void msrt_http_close(msrt_http *c) {
  if (!c || c->closing) return;
  c->closing = true;
  if (!c->in_pump) close_now(c);
}
