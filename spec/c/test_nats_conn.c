/* NATS client connections (src/nats/conn.h) on a real bus, router and
 * loop: the transport here is an in-memory one that keeps what the
 * connection writes (the contract of conn.h, as the TCP listener and a
 * WebSocket transport keep it). */
#include <pthread.h>
#include <stdlib.h>
#include <uv.h>

#include "bus/bus.h"
#include "bus/endpoints.h"
#include "ctest.h"
#include "nats/auth.h"
#include "nats/conn.h"

typedef struct {
  uv_loop_t loop;
  msrt_router *router;
  msrt_inbox *inbox;
  msrt_bus *bus;
  msrt_nats_server *srv;
  uv_timer_t alive; /* the loop's own handles are unreferenced: this one
                       keeps uv_run polling, as a listener does */
} fixture;

static fixture F;

/* An in-memory transport: what the peer would read, and its state. */
typedef struct {
  msrt_sbuf got;
  size_t queued; /* what it pretends still to hold */
  int closed;
  msrt_nats_conn *conn;
} peer;

static msrt_code t_write(void *t, const char *buf, size_t len) {
  msrt_sbuf_put(&((peer *)t)->got, buf, len);
  return MSRT_E_OK;
}
static size_t t_queued(void *t) { return ((peer *)t)->queued; }
static void t_close(void *t) { ((peer *)t)->closed++; }
static void t_peer(void *t, char *buf, size_t cap) {
  (void)t;
  snprintf(buf, cap, "memory");
}

static const msrt_nats_transport mem_tp = {t_write, t_queued, t_close,
                                           t_peer};

static void drain(msrt_inbox_item *items, size_t n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n; i++) msrt_env_unref(items[i].env);
}

static void never(uv_timer_t *t) { (void)t; }

static void setup(const msrt_nats_opts *o) {
  memset(&F, 0, sizeof F);
  CHECK(uv_loop_init(&F.loop) == 0);
  F.router = msrt_router_new(NULL);
  F.inbox = msrt_inbox_new(&F.loop, drain, NULL);
  msrt_bus_limits lim = {1024, 0};
  F.bus = msrt_bus_new(F.router, F.inbox, &lim);
  msrt_nats_opts d = {.max_payload = 1000};
  F.srv = msrt_nats_server_new(&F.loop, F.bus, o ? o : &d, NULL);
  CHECK(F.router && F.inbox && F.bus && F.srv);
  uv_timer_init(&F.loop, &F.alive);
  uv_timer_start(&F.alive, never, 3600000, 0);
}

static void teardown(void) {
  uv_close((uv_handle_t *)&F.alive, NULL);
  msrt_nats_server_close(F.srv);
  msrt_inbox_drain(F.inbox);
  msrt_inbox_close(F.inbox);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&F.loop) == 0);
  msrt_bus_free(F.bus);
  msrt_inbox_free(F.inbox);
  msrt_router_free(F.router);
}

static void open_peer(peer *p) {
  memset(p, 0, sizeof *p);
  p->conn = msrt_nats_conn_new(F.srv, &mem_tp, p);
  CHECK(p->conn != NULL);
}

static void close_peer(peer *p) {
  if (!p->closed) msrt_nats_conn_close(p->conn, NULL);
  msrt_nats_conn_release(p->conn);
  msrt_sbuf_free(&p->got);
}

static void feed(peer *p, const char *s) {
  msrt_nats_conn_feed(p->conn, s, strlen(s));
  uv_run(&F.loop, UV_RUN_NOWAIT); /* the flush of other threads' writes */
}

/* What the peer read since the last call, as a string (INFO lines cut to
 * "INFO"). */
static const char *read_all(peer *p) {
  static char out[4096];
  size_t k = 0;
  const char *s = p->got.p ? p->got.p : "";
  for (size_t i = 0; i < p->got.len && k + 1 < sizeof out;) {
    if (!strncmp(s + i, "INFO ", 5)) {
      const char *nl = memchr(s + i, '\n', p->got.len - i);
      memcpy(out + k, "INFO\n", 5), k += 5;
      i = nl ? (size_t)(nl - s) + 1 : p->got.len;
      continue;
    }
    if (s[i] != '\r') out[k++] = s[i];
    i++;
  }
  out[k] = 0;
  msrt_sbuf_reset(&p->got);
  return out;
}

/* CHECK_STR that shows both sides when they differ. */
#define SAME(got, want)                                                    \
  do {                                                                     \
    const char *g_ = (got), *w_ = (want);                                  \
    CHECK_STR(g_, w_);                                                     \
    if (strcmp(g_, w_)) fprintf(stderr, "  got:\n%s  want:\n%s", g_, w_); \
  } while (0)

static void test_info_ping_verbose(void) {
  setup(NULL);
  peer a;
  open_peer(&a);
  CHECK(a.got.len > 5 && !strncmp(a.got.p, "INFO {", 6));
  CHECK(strstr(a.got.p, "\"max_payload\":1000") != NULL);
  CHECK(strstr(a.got.p, "\"headers\":true") != NULL);
  read_all(&a);
  feed(&a, "CONNECT {\"verbose\":true}\r\nPING\r\nSUB a 1\r\nPUB a 2\r\nhi\r\n");
  /* PUB's +OK goes out before the message it routed to the client
   * itself, as nats-server 2.9 orders them (a raw client against it) */
  SAME(read_all(&a), "+OK\nPONG\n+OK\n+OK\nMSG a 1 2\nhi\n");
  close_peer(&a);
  teardown();
}

/* Two clients: wildcards, queue groups, request/reply through _INBOX. */
static void test_routing(void) {
  setup(NULL);
  peer a, b, c;
  open_peer(&a), open_peer(&b), open_peer(&c);
  feed(&a, "CONNECT {}\r\nSUB work.* 1\r\nSUB work.> q 2\r\n");
  feed(&b, "CONNECT {}\r\nSUB work.> q 7\r\n");
  read_all(&a), read_all(&b);
  for (int i = 0; i < 10; i++) feed(&c, "PUB work.x 1\r\nx\r\n");
  const char *ra = read_all(&a);
  int plain = 0, queued = 0;
  for (const char *p = ra; (p = strstr(p, "MSG work.x ")); p++)
    *(p[11] == '1' ? &plain : &queued) += 1;
  const char *rb = read_all(&b);
  int other = 0;
  for (const char *p = rb; (p = strstr(p, "MSG work.x 7")); p++) other++;
  if (plain != 10 || queued + other != 10)
    fprintf(stderr, "  plain %d queued %d other %d\n", plain, queued, other);
  CHECK(plain == 10);
  CHECK(queued + other == 10); /* one member of the group each time */
  /* request/reply: c asks on svc with its inbox; a answers */
  read_all(&c);
  feed(&a, "SUB svc 3\r\n");
  feed(&c, "SUB _INBOX.c.* 9\r\nPUB svc _INBOX.c.1 3\r\nask\r\n");
  SAME(read_all(&a), "MSG svc 3 _INBOX.c.1 3\nask\n");
  feed(&a, "PUB _INBOX.c.1 3\r\nans\r\n");
  SAME(read_all(&c), "MSG _INBOX.c.1 9 3\nans\n");
  close_peer(&a), close_peer(&b), close_peer(&c);
  teardown();
}

static void test_unsub_max(void) {
  setup(NULL);
  peer a;
  open_peer(&a);
  feed(&a, "SUB s 1\r\nUNSUB 1 2\r\n");
  for (int i = 0; i < 4; i++) feed(&a, "PUB s 1\r\nx\r\n");
  SAME(read_all(&a), "INFO\nMSG s 1 1\nx\nMSG s 1 1\nx\n");
  feed(&a, "SUB t 2\r\nPUB t 0\r\n\r\nUNSUB 2\r\nPUB t 0\r\n\r\n");
  SAME(read_all(&a), "MSG t 2 0\n\n");
  close_peer(&a);
  teardown();
}

/* Headers both ways, and the 503 to a request nobody takes. */
static void test_headers_no_responders(void) {
  setup(NULL);
  peer a;
  open_peer(&a);
  feed(&a, "CONNECT {\"headers\":true,\"no_responders\":true}\r\n"
           "SUB h 1\r\nHPUB h 22 24\r\nNATS/1.0\r\nX-Id: 42\r\n\r\nhi\r\n");
  SAME(read_all(&a), "INFO\nHMSG h 1 22 24\nNATS/1.0\nX-Id: 42\n\nhi\n");
  feed(&a, "SUB _INBOX.a.* 2\r\nPUB nobody _INBOX.a.1 1\r\n?\r\n");
  SAME(read_all(&a), "HMSG _INBOX.a.1 2 16 16\nNATS/1.0 503\n\n\n");
  close_peer(&a);
  /* without headers no_responders is refused, as nats-server does */
  peer b;
  open_peer(&b);
  read_all(&b);
  feed(&b, "CONNECT {\"no_responders\":true}\r\n");
  SAME(read_all(&b), "-ERR 'no responders requires headers support'\n");
  CHECK(b.closed == 1);
  close_peer(&b);
  teardown();
}

/* A client that did not say headers: true gets a message's payload
 * alone (MSG) and is ended for an HPUB; one that said echo: false never
 * gets its own publishes, nor its queue group's turn for them. */
static void test_headers_off_and_echo(void) {
  setup(NULL);
  peer a, b;
  open_peer(&a);
  open_peer(&b);
  feed(&b, "CONNECT {}\r\nSUB h 1\r\n");
  feed(&a, "CONNECT {\"headers\":true,\"echo\":false}\r\nSUB h 1\r\n"
           "HPUB h 22 24\r\nNATS/1.0\r\nX-Id: 42\r\n\r\nhi\r\nPING\r\n");
  SAME(read_all(&a), "INFO\nPONG\n");
  SAME(read_all(&b), "INFO\nMSG h 1 2\nhi\n");
  feed(&a, "SUB q g 2\r\n");
  feed(&b, "SUB q g 2\r\n");
  feed(&a, "PUB q 1\r\nx\r\nPUB q 1\r\ny\r\nPING\r\n");
  SAME(read_all(&a), "PONG\n");
  SAME(read_all(&b), "MSG q 2 1\nx\nMSG q 2 1\ny\n");
  feed(&b, "PUB h 1\r\nz\r\n"); /* another's publish still reaches a */
  SAME(read_all(&a), "MSG h 1 1\nz\n");
  SAME(read_all(&b), "MSG h 1 1\nz\n"); /* b said nothing of echo */
  feed(&b, "HPUB h 22 24\r\nNATS/1.0\r\nX-Id: 42\r\n\r\nhi\r\n");
  SAME(read_all(&b), "");
  CHECK(b.closed == 1);
  close_peer(&a);
  close_peer(&b);
  teardown();
}

/* NATS' words for each refusal. */
static void test_errors(void) {
  setup(NULL);
  peer a;
  open_peer(&a);
  read_all(&a);
  feed(&a, "CONNECT {\"pedantic\":true}\r\nPUB a.* 0\r\n\r\nSUB a..b 1\r\n");
  SAME(read_all(&a),
            "-ERR 'Invalid Publish Subject'\n-ERR 'Invalid Subject'\n");
  CHECK(!a.closed);
  feed(&a, "PUB a 1001\r\n");
  SAME(read_all(&a), "-ERR 'Maximum Payload Violation'\n");
  CHECK(a.closed == 1);
  CHECK(msrt_nats_conn_feed(a.conn, "PING\r\n", 6) == MSRT_E_CLOSED);
  close_peer(&a);
  peer b;
  open_peer(&b);
  read_all(&b);
  feed(&b, "BOGUS\r\n");
  SAME(read_all(&b), "-ERR 'Unknown Protocol Operation'\n");
  close_peer(&b);
  teardown();
}

/* A slow consumer: over max_pending it is dropped and ended; so is one
 * whose transport holds bytes past the write deadline. */
static void test_slow_consumer(void) {
  msrt_nats_opts o = {.max_pending = 4096, .write_deadline_ms = 20};
  setup(&o);
  peer a, b;
  open_peer(&a), open_peer(&b);
  feed(&a, "SUB s 1\r\n");
  feed(&b, "SUB msrt.nats.slow_consumer 1\r\n");
  read_all(&a), read_all(&b);
  a.queued = 4000; /* the peer reads nothing */
  msrt_nats_conn_writable(a.conn);
  char pub[128] = "PUB s 100\r\n";
  memset(pub + 11, 'x', 100);
  strcpy(pub + 111, "\r\n");
  for (int i = 0; i < 10 && !a.closed; i++) feed(&b, pub);
  CHECK(a.closed == 1);
  CHECK(strstr(read_all(&a), "-ERR 'Slow Consumer'") != NULL);
  const char *rb = read_all(&b);
  CHECK(strstr(rb, "MSG msrt.nats.slow_consumer 1") != NULL);
  msrt_nats_stats st;
  msrt_nats_server_stats(F.srv, &st);
  CHECK(st.slow_consumers == 1);
  /* the write deadline */
  peer c;
  open_peer(&c);
  c.queued = 10;
  msrt_nats_conn_feed(c.conn, "PING\r\n", 6);
  uint64_t t0 = uv_hrtime();
  while (!c.closed && uv_hrtime() - t0 < 5000000000ull)
    uv_run(&F.loop, UV_RUN_ONCE);
  CHECK(c.closed == 1);
  close_peer(&a), close_peer(&b), close_peer(&c);
  teardown();
}

static void test_max_conns(void) {
  msrt_nats_opts o = {.max_conns = 1};
  setup(&o);
  peer a, b;
  open_peer(&a), open_peer(&b);
  CHECK(!a.closed && b.closed == 1);
  SAME(read_all(&b), "-ERR 'maximum connections exceeded'\n");
  close_peer(&b);
  peer c; /* a's place is taken; once a goes, c may come */
  close_peer(&a);
  open_peer(&c);
  CHECK(!c.closed);
  close_peer(&c);
  teardown();
}

static void test_auth(void) {
  setup(NULL);
  const char *pub[] = {"svc.>", "_INBOX.>"}, *deny[] = {"svc.admin"};
  const char *sub[] = {"_INBOX.>", "news.*"};
  msrt_nats_user users[] = {
      {.user = "ann", .password = "pw", .pub_allow = pub, .n_pub_allow = 2,
       .pub_deny = deny, .n_pub_deny = 1, .sub_allow = sub,
       .n_sub_allow = 2, .max_connections = 1},
      {.token = "s3cret"}};
  msrt_error err;
  msrt_nats_policy *pol = msrt_nats_policy_new(users, 2, &err);
  CHECK(pol != NULL);
  msrt_nats_auth au = msrt_nats_policy_auth(pol);
  msrt_nats_server_set_auth(F.srv, &au);
  peer a, b, c, d;
  open_peer(&a);
  CHECK(a.got.p && strstr(a.got.p, "\"auth_required\":true") != NULL);
  read_all(&a);
  feed(&a, "PING\r\n");
  SAME(read_all(&a), "-ERR 'Authorization Violation'\n");
  CHECK(a.closed == 1);
  open_peer(&b);
  read_all(&b);
  feed(&b, "CONNECT {\"user\":\"ann\",\"pass\":\"pw\"}\r\nPUB svc.admin 0\r\n"
           "\r\nSUB news.* 1\r\nSUB secret 2\r\nPUB svc.x 0\r\n\r\n");
  SAME(read_all(&b),
            "-ERR 'Permissions Violation for Publish to \"svc.admin\"'\n"
            "-ERR 'Permissions Violation for Subscription to \"secret\"'\n");
  CHECK(!b.closed);
  open_peer(&c); /* ann's second connection: over her limit */
  read_all(&c);
  feed(&c, "CONNECT {\"user\":\"ann\",\"pass\":\"pw\"}\r\n");
  SAME(read_all(&c), "-ERR 'Authorization Violation'\n");
  open_peer(&d);
  read_all(&d);
  feed(&d, "CONNECT {\"auth_token\":\"s3cret\"}\r\nPING\r\n");
  SAME(read_all(&d), "PONG\n");
  close_peer(&a), close_peer(&b), close_peer(&c), close_peer(&d);
  msrt_nats_server_set_auth(F.srv, NULL);
  msrt_nats_policy_free(pol);
  CHECK(msrt_nats_policy_new(
            (msrt_nats_user[]){{.user = "x", .password = "y",
                                .pub_allow = (const char *[]){"a..b"},
                                .n_pub_allow = 1}},
            1, &err) == NULL);
  CHECK(err.code == MSRT_E_BAD_CONFIG);
  teardown();
}

/* allow_responses: a reply handed to the client may be published to once
 * (nats-server's default), whatever its publish list says. */
static void test_allow_responses(void) {
  setup(NULL);
  const char *pub[] = {"svc.>"};
  msrt_nats_user users[] = {{.user = "bob", .password = "pw",
                             .pub_allow = pub, .n_pub_allow = 1,
                             .allow_responses = true},
                            {.user = "asker", .password = "pw"}};
  msrt_nats_policy *pol = msrt_nats_policy_new(users, 2, NULL);
  msrt_nats_auth au = msrt_nats_policy_auth(pol);
  msrt_nats_server_set_auth(F.srv, &au);
  peer b, a;
  open_peer(&b), open_peer(&a);
  read_all(&b), read_all(&a);
  feed(&b, "CONNECT {\"user\":\"bob\",\"pass\":\"pw\"}\r\nSUB work 1\r\n");
  feed(&a, "CONNECT {\"user\":\"asker\",\"pass\":\"pw\"}\r\n"
           "SUB _INBOX.a.* 1\r\nPUB work _INBOX.a.1 1\r\n?\r\n");
  SAME(read_all(&b), "MSG work 1 _INBOX.a.1 1\n?\n");
  feed(&b, "PUB _INBOX.a.1 2\r\nok\r\nPUB _INBOX.a.1 5\r\nagain\r\n"
           "PUB _INBOX.a.2 1\r\nx\r\n");
  SAME(read_all(&a), "MSG _INBOX.a.1 1 2\nok\n");
  SAME(read_all(&b),
       "-ERR 'Permissions Violation for Publish to \"_INBOX.a.1\"'\n"
       "-ERR 'Permissions Violation for Publish to \"_INBOX.a.2\"'\n");
  close_peer(&a), close_peer(&b);
  msrt_nats_server_set_auth(F.srv, NULL);
  msrt_nats_policy_free(pol);
  teardown();
}

/* A reload: a connection keeps only what it is still allowed. */
static void test_reauthorize(void) {
  setup(NULL);
  const char *sub1[] = {"a.>", "b.>"}, *sub2[] = {"a.>"};
  msrt_nats_user u1 = {.user = "u", .password = "pw", .sub_allow = sub1,
                       .n_sub_allow = 2};
  msrt_nats_policy *p1 = msrt_nats_policy_new(&u1, 1, NULL);
  msrt_nats_auth au = msrt_nats_policy_auth(p1);
  msrt_nats_server_set_auth(F.srv, &au);
  peer c, d;
  open_peer(&c), open_peer(&d);
  read_all(&c), read_all(&d);
  feed(&c, "CONNECT {\"user\":\"u\",\"pass\":\"pw\"}\r\nSUB a.x 1\r\nSUB b.x 2\r\n");
  msrt_nats_user u2 = {.user = "u", .password = "pw", .sub_allow = sub2,
                       .n_sub_allow = 1};
  msrt_nats_policy *p2 = msrt_nats_policy_new(&u2, 1, NULL);
  au = msrt_nats_policy_auth(p2);
  msrt_nats_server_set_auth(F.srv, &au);
  msrt_nats_server_reauthorize(F.srv);
  msrt_nats_policy_free(p1);
  SAME(read_all(&c),
       "-ERR 'Permissions Violation for Subscription to \"b.x\"'\n");
  feed(&d, "CONNECT {\"user\":\"u\",\"pass\":\"pw\"}\r\n"
           "PUB a.x 1\r\n1\r\nPUB b.x 1\r\n2\r\n");
  SAME(read_all(&c), "MSG a.x 1 1\n1\n"); /* b.x is no longer its */
  /* a policy without u: the connection goes */
  msrt_nats_user u3 = {.user = "other", .password = "pw"};
  msrt_nats_policy *p3 = msrt_nats_policy_new(&u3, 1, NULL);
  au = msrt_nats_policy_auth(p3);
  msrt_nats_server_set_auth(F.srv, &au);
  msrt_nats_server_reauthorize(F.srv);
  msrt_nats_policy_free(p2);
  SAME(read_all(&c), "-ERR 'Authorization Violation'\n");
  CHECK(c.closed == 1);
  close_peer(&c), close_peer(&d);
  msrt_nats_server_set_auth(F.srv, NULL);
  msrt_nats_policy_free(p3);
  teardown();
}

/* Deliveries from several threads at once while the hub flushes: every
 * message arrives whole, once (run under TSan too). */
enum { PUBLISHERS = 3, EACH = 2000 };

static void *publisher(void *arg) {
  (void)arg;
  static const char payload[] = "\x25" "hello"; /* a Lua string (5) */
  for (int i = 0; i < EACH; i++) {
    msrt_envelope *e = msrt_bus_make(F.bus, "mt.x", 4, NULL, 0, NULL, 0,
                                     payload, 6, 5, 0, NULL);
    size_t n;
    msrt_bus_publish(F.bus, e, &n, NULL, NULL);
    msrt_env_unref(e);
  }
  return NULL;
}

static void test_threads(void) {
  setup(NULL);
  peer a;
  open_peer(&a);
  feed(&a, "SUB mt.x 1\r\n");
  read_all(&a);
  pthread_t th[PUBLISHERS];
  for (int i = 0; i < PUBLISHERS; i++)
    pthread_create(&th[i], NULL, publisher, NULL);
  size_t want = (size_t)PUBLISHERS * EACH * strlen("MSG mt.x 1 5\r\nhello\r\n");
  uint64_t t0 = uv_hrtime();
  while (a.got.len < want && uv_hrtime() - t0 < 20000000000ull)
    uv_run(&F.loop, UV_RUN_ONCE);
  for (int i = 0; i < PUBLISHERS; i++) pthread_join(th[i], NULL);
  uv_run(&F.loop, UV_RUN_NOWAIT);
  CHECK(a.got.len == want);
  msrt_sbuf_putc(&a.got, 0);
  int n = 0;
  for (const char *p = a.got.p; p && (p = strstr(p, "MSG mt.x 1 5\r\nhello\r\n"));
       p++)
    n++;
  CHECK(n == PUBLISHERS * EACH);
  close_peer(&a);
  teardown();
}

TEST_MAIN(test_threads, test_allow_responses, test_reauthorize, test_info_ping_verbose, test_routing, test_unsub_max,
          test_headers_no_responders, test_headers_off_and_echo, test_errors, test_slow_consumer,
          test_max_conns, test_auth)
