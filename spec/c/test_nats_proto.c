/* The NATS client protocol parser and writers (src/nats/proto.h): every
 * command, every split of a stream, the limits and NATS' error texts, the
 * header block both ways. */
#include <stdlib.h>

#include "ctest.h"
#include "nats/proto.h"

/* What the callback saw, as text: one line per command. */
typedef struct {
  msrt_sbuf log;
  int stop_after; /* stop the parse after this many commands; 0 never */
  int n;
} seen;

static void put_field(msrt_sbuf *b, const char *tag, const char *s,
                      size_t n) {
  if (!s) return;
  msrt_sbuf_put(b, tag, strlen(tag));
  msrt_sbuf_put(b, s, n);
}

static bool record(void *ud, const msrt_nats_cmd *c) {
  seen *w = ud;
  static const char *const names[] = {"", "CONNECT", "PUB", "SUB", "UNSUB",
                                      "PING", "PONG", "OK", "ERR", "INFO"};
  msrt_sbuf *b = &w->log;
  msrt_sbuf_put(b, names[c->op], strlen(names[c->op]));
  if (c->hpub) msrt_sbuf_put(b, "(h)", 3);
  put_field(b, " s=", c->subject, c->subject_len);
  put_field(b, " r=", c->reply, c->reply_len);
  put_field(b, " q=", c->queue, c->queue_len);
  put_field(b, " id=", c->sid, c->sid_len);
  put_field(b, " a=", c->arg, c->arg_len);
  put_field(b, " h=", c->hdr, c->hdr_len);
  put_field(b, " p=", c->payload, c->payload_len);
  if (c->max_msgs >= 0) {
    char m[32];
    snprintf(m, sizeof m, " max=%lld", (long long)c->max_msgs);
    msrt_sbuf_put(b, m, strlen(m));
  }
  msrt_sbuf_putc(b, '\n');
  return ++w->n == w->stop_after;
}

/* Parse text in pieces of `chunk` bytes (0: whole); returns the log (a
 * static copy) and *rc / *err of the last call. */
static const char *run(const char *text, size_t len, size_t chunk,
                       size_t max_control, size_t max_payload, msrt_code *rc,
                       const char **err) {
  static char out[8192];
  msrt_nats_parser p;
  msrt_nats_parser_init(&p, max_control, max_payload);
  seen w = {0};
  *rc = MSRT_E_OK, *err = NULL;
  if (!chunk) chunk = len ? len : 1;
  for (size_t at = 0; at < len && *rc == MSRT_E_OK; at += chunk) {
    size_t n = len - at < chunk ? len - at : chunk;
    /* a copy of exactly n bytes, so that ASan sees any read beyond it */
    char *piece = malloc(n);
    memcpy(piece, text + at, n);
    *rc = msrt_nats_parse(&p, piece, n, record, &w, err);
    free(piece);
  }
  msrt_nats_parser_free(&p);
  snprintf(out, sizeof out, "%.*s", (int)w.log.len, w.log.p ? w.log.p : "");
  msrt_sbuf_free(&w.log);
  return out;
}

static const char stream[] =
    "CONNECT {\"verbose\":false,\"headers\":true}\r\n"
    "PING\r\n"
    "pub foo 5\r\nhello\r\n"
    "PUB foo.bar _INBOX.1 0\r\n\r\n"
    "HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    "HPUB h r 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    "SUB foo.* 1\r\n"
    "SUB\tfoo.>  workers\t22\r\n"
    "UNSUB 1\r\n"
    "UNSUB 22 5\n"
    "PONG\r\n"
    "+OK\r\n"
    "-ERR 'x y'\r\n"
    "INFO {}\r\n";

static const char expect[] =
    "CONNECT a={\"verbose\":false,\"headers\":true}\n"
    "PING\n"
    "PUB s=foo p=hello\n"
    "PUB s=foo.bar r=_INBOX.1 p=\n"
    "PUB(h) s=h h=NATS/1.0\r\n\r\n p=hi\n"
    "PUB(h) s=h r=r h=NATS/1.0\r\n\r\n p=\n"
    "SUB s=foo.* id=1\n"
    "SUB s=foo.> q=workers id=22\n"
    "UNSUB id=1\n"
    "UNSUB id=22 max=5\n"
    "PONG\n"
    "OK\n"
    "ERR a='x y'\n"
    "INFO a={}\n";

/* Every command, whole and in every chunk size down to one byte. */
static void test_every_split(void) {
  msrt_code rc;
  const char *err;
  for (size_t chunk = 0; chunk <= sizeof stream; chunk++) {
    const char *log = run(stream, sizeof stream - 1, chunk, 0, 0, &rc, &err);
    CHECK(rc == MSRT_E_OK);
    if (strcmp(log, expect) != 0) {
      fprintf(stderr, "chunk %zu:\n%s", chunk, log);
      CHECK_STR(log, expect);
      return;
    }
  }
  CHECK(1);
}

static void expect_error(const char *text, size_t mc, size_t mp,
                         const char *want) {
  msrt_code rc;
  const char *err;
  for (size_t chunk = 0; chunk < 4; chunk++) {
    run(text, strlen(text), chunk, mc, mp, &rc, &err);
    CHECK(rc == MSRT_E_INVALID_ARG);
    CHECK(err && strcmp(err, want) == 0);
    if (!err || strcmp(err, want)) fprintf(stderr, "  input %s\n", text);
  }
}

/* NATS' words for each refusal (server/parser.go, client.go). */
static void test_errors(void) {
  expect_error("FOO bar\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB foo\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB foo x\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB foo -1\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB a b c 1\r\nx\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB foo 2\r\nabc\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("HPUB foo 5 4\r\nabcd\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("SUB foo\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("UNSUB 1 x\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PING x\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("CONNECT\r\n", 0, 0, MSRT_NATS_ERR_UNKNOWN);
  expect_error("PUB foo 11\r\n", 0, 10, MSRT_NATS_ERR_PAYLOAD);
  expect_error("PUB foo 999999999999999999\r\n", 0, 0,
               MSRT_NATS_ERR_PAYLOAD);
  /* a control line over the limit, ended or not */
  expect_error("SUB aaaaaaaaaaaaaaaaaaaa 1\r\n", 16, 0,
               MSRT_NATS_ERR_CONTROL);
  expect_error("SUB aaaaaaaaaaaaaaaaaaaa", 16, 0, MSRT_NATS_ERR_CONTROL);
}

/* A payload at exactly max_payload passes; the line at exactly
 * max_control too. */
static void test_limits(void) {
  msrt_code rc;
  const char *err;
  const char *log = run("PUB f 10\r\n0123456789\r\n", 22, 3, 0, 10, &rc, &err);
  CHECK(rc == MSRT_E_OK);
  CHECK_STR(log, "PUB s=f p=0123456789\n");
  log = run("SUB abcdefghij 1\r\n", 18, 1, 16, 0, &rc, &err);
  CHECK(rc == MSRT_E_OK);
  CHECK_STR(log, "SUB s=abcdefghij id=1\n");
}

/* The callback stops the parse: nothing after it is read. */
static void test_stop(void) {
  msrt_nats_parser p;
  msrt_nats_parser_init(&p, 0, 0);
  seen w = {.stop_after = 1};
  const char *err;
  CHECK(msrt_nats_parse(&p, "PING\r\nPONG\r\n", 12, record, &w, &err) == MSRT_E_CLOSED);
  CHECK(w.n == 1);
  msrt_nats_parser_free(&p);
  msrt_sbuf_free(&w.log);
}

/* Zero copy: a whole command points into the fed buffer. */
static const char *zc_buf;
static int zc_ok;
static bool check_inside(void *ud, const msrt_nats_cmd *c) {
  (void)ud;
  zc_ok = c->subject >= zc_buf && c->payload >= zc_buf &&
          c->payload < zc_buf + 32;
  return false;
}

static void test_zero_copy(void) {
  char buf[] = "PUB foo 3\r\nabc\r\n";
  zc_buf = buf;
  msrt_nats_parser p;
  msrt_nats_parser_init(&p, 0, 0);
  CHECK(msrt_nats_parse(&p, buf, sizeof buf - 1, check_inside, NULL, NULL) ==
        MSRT_E_OK);
  CHECK(zc_ok);
  msrt_nats_parser_free(&p);
}

static void test_connect(void) {
  msrt_nats_connect c;
  const char *j = "{\"verbose\":true,\"pedantic\":true,\"headers\":true,"
                  "\"no_responders\":true,\"user\":\"ann\",\"pass\":\"pw\","
                  "\"auth_token\":\"t\",\"name\":\"n\",\"lang\":\"node\","
                  "\"version\":\"2.0\",\"protocol\":1,\"echo\":false,"
                  "\"unknown\":[1,2]}";
  CHECK(msrt_nats_connect_parse(j, strlen(j), &c) == MSRT_E_OK);
  CHECK(c.verbose && c.pedantic && c.headers && c.no_responders && !c.echo);
  CHECK(c.protocol == 1);
  CHECK_STR(c.user, "ann");
  CHECK_STR(c.pass, "pw");
  CHECK_STR(c.auth_token, "t");
  msrt_nats_connect_free(&c);
  CHECK(msrt_nats_connect_parse("{}", 2, &c) == MSRT_E_OK);
  CHECK(c.echo && !c.verbose && !c.user);
  msrt_nats_connect_free(&c);
  CHECK(msrt_nats_connect_parse("[1]", 3, &c) == MSRT_E_INVALID_ARG);
  msrt_nats_connect_free(&c);
  CHECK(msrt_nats_connect_parse("{\"verbose\":1}", 13, &c) == MSRT_E_INVALID_ARG);
  msrt_nats_connect_free(&c);
  CHECK(msrt_nats_connect_parse("{\"user\":5}", 10, &c) == MSRT_E_INVALID_ARG);
  msrt_nats_connect_free(&c);
}

static void test_writers(void) {
  msrt_sbuf b = {0};
  msrt_nats_put_msg(&b, "a.b", 3, "7", 1, NULL, 0, "hi", 2);
  msrt_nats_put_msg(&b, "a", 1, "8", 1, "_INBOX.x", 8, "", 0);
  msrt_nats_put_hmsg(&b, "a", 1, "9", 1, NULL, 0, "NATS/1.0\r\n\r\n", 12,
                     "xy", 2);
  msrt_nats_put_err(&b, MSRT_NATS_ERR_SLOW);
  msrt_sbuf_putc(&b, 0);
  CHECK_STR(b.p, "MSG a.b 7 2\r\nhi\r\n"
                 "MSG a 8 _INBOX.x 0\r\n\r\n"
                 "HMSG a 9 12 14\r\nNATS/1.0\r\n\r\nxy\r\n"
                 "-ERR 'Slow Consumer'\r\n");
  msrt_sbuf_free(&b);
}

static void test_headers(void) {
  msrt_sbuf b = {0};
  static const char pairs[] = "Status\0" "503\0" "Description\0"
                              "No Responders\0" "X-Id\0" "42\0";
  CHECK(msrt_nats_hdr_from_pairs(&b, pairs, sizeof pairs - 1) == MSRT_E_OK);
  msrt_sbuf_putc(&b, 0);
  CHECK_STR(b.p, "NATS/1.0 503 No Responders\r\nX-Id: 42\r\n\r\n");
  msrt_sbuf_reset(&b);
  static const char plain[] = "a\0" "1\0";
  CHECK(msrt_nats_hdr_from_pairs(&b, plain, sizeof plain - 1) == MSRT_E_OK);
  CHECK(b.len == 18 && memcmp(b.p, "NATS/1.0\r\na: 1\r\n\r\n", 18) == 0);
  msrt_sbuf_reset(&b);
  CHECK(msrt_nats_hdr_from_pairs(&b, "a\0" "1", 3) == MSRT_E_INVALID_ARG);
  msrt_sbuf_reset(&b);
  const char *blk = "NATS/1.0 503\r\nX-Id:  42 \r\nB: \r\n\r\n";
  CHECK(msrt_nats_hdr_to_pairs(&b, blk, strlen(blk)) == MSRT_E_OK);
  static const char want[] = "Status\0" "503\0" "X-Id\0" "42\0" "B\0" "\0";
  CHECK(b.len == sizeof want - 1 && memcmp(b.p, want, b.len) == 0);
  msrt_sbuf_reset(&b);
  CHECK(msrt_nats_hdr_to_pairs(&b, "HTTP/1.1\r\n\r\n", 12) == MSRT_E_INVALID_ARG);
  CHECK(msrt_nats_hdr_to_pairs(&b, "NATS/1.0\r\nnocolon\r\n\r\n", 21) == MSRT_E_INVALID_ARG);
  CHECK(msrt_nats_hdr_to_pairs(&b, "NATS/1.0\r\nbad name: 1\r\n\r\n", 25) ==
        MSRT_E_INVALID_ARG);
  msrt_sbuf_free(&b);
}

/* A client's payload is a Lua string in the router (proc/codec.h). */
static void test_lua_string(void) {
  msrt_sbuf b = {0};
  char big[300];
  memset(big, 'x', sizeof big);
  size_t sizes[] = {0, 5, 0xbf, 0xc0, sizeof big};
  for (size_t i = 0; i < 5; i++) {
    msrt_sbuf_reset(&b);
    msrt_lua_put_string(&b, big, sizes[i]);
    const char *s;
    size_t n;
    CHECK(msrt_lua_get_string((unsigned char *)b.p, b.len, &s, &n));
    CHECK(n == sizes[i] && (n == 0 || s == b.p + b.len - n));
    CHECK(!msrt_lua_get_string((unsigned char *)b.p, b.len - 1, &s, &n) ||
          b.len == 1);
  }
  static const unsigned char num[] = {0x07, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
  const char *s;
  size_t n;
  CHECK(!msrt_lua_get_string(num, sizeof num, &s, &n));
  msrt_sbuf_free(&b);
}

TEST_MAIN(test_lua_string, test_every_split, test_errors, test_limits, test_stop,
          test_zero_copy, test_connect, test_writers, test_headers)
