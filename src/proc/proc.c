#include "proc/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/handle.h"
#include "hub/timer.h"
#include "proc/cgroup.h"
#include "proc/codec.h"
#include "proc/framer.h"
#include "proc/gate.h"
#include "proc/internal.h"
#include "proc/spawn.h"
#include "router/subject.h"

#define BUCKETS 1024      /* id -> process lookup */
#define READ_BUF (64 << 10)

struct msrt_procs {
  unsigned magic;
  uv_signal_t sigchld;
  uv_loop_t *loop;
  msrt_proc_events ev;
  void *ud;
  msrt_proc *live; /* every process not yet freed */
  msrt_proc *bucket[BUCKETS];
  size_t count, unreaped;
  uint64_t next_id;
  bool closing;    /* msrt_procs_free called: freed with the last handle */
  msrt_fleet *fleet; /* the children's cgroups (cgroup.h), NULL = none */
  bool fleet_tried, fleet_warn; /* fleet_warn: not yet told (take_warning) */
  char fleet_why[512]; /* why there is none */
  char warning[768];
  int handles;     /* the SIGCHLD watcher, the two below */
  /* Stdin lines are written once per turn of the loop, all the lines a
   * process was handed in it in one write (flush_due): before the loop
   * polls, and after its I/O callbacks (the hub's inbox drain, where
   * most lines come from). A write per line woke the child once a line
   * and, on a busy machine, had the hub preempted by it on return. */
  uv_prepare_t before_poll;
  uv_check_t after_poll;
  msrt_proc *due; /* processes with lines queued and no write in flight */
  char rbuf[READ_BUF];
};

static const char *const STATE_NAMES[] = {
  "initializing", "idle", "busy", "paused", "stopping", "terminated", "failed"};

const char *msrt_proc_state_name(msrt_proc_state s) {
  return (unsigned)s <= MSRT_PS_FAILED ? STATE_NAMES[s] : "unknown";
}

static const struct { const char *n; int s; } SIGS[] = {
  {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"QUIT", SIGQUIT}, {"STOP", SIGSTOP},
  {"CONT", SIGCONT}, {"PIPE", SIGPIPE}, {"ABRT", SIGABRT}, {"SEGV", SIGSEGV},
  {"XCPU", SIGXCPU}, {"ALRM", SIGALRM}};

int msrt_signal_from_name(const char *name) {
  if (!name) return 0;
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < sizeof SIGS / sizeof *SIGS; i++)
    if (strcmp(name, SIGS[i].n) == 0) return SIGS[i].s;
  return 0;
}

const char *msrt_signal_name(int signum) {
  for (size_t i = 0; i < sizeof SIGS / sizeof *SIGS; i++)
    if (SIGS[i].s == signum) return SIGS[i].n;
  return NULL;
}

/* ---- small helpers ----------------------------------------------------- */

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

static char **dup_list(const char *const *v, size_t n) {
  char **out = calloc(n + 1, sizeof *out);
  for (size_t i = 0; out && i < n; i++) out[i] = strdup(v[i]);
  return out;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++) free(v[i]);
  free(v);
}

static void set_state(msrt_proc *p, msrt_proc_state s) {
  if (p->state == s) return;
  p->state = s;
  if (!p->released && p->reg->ev.state) p->reg->ev.state(p->reg->ud, p, s);
}

void msrt_proc_bad(msrt_proc *p, const char *reason, const char *detail,
                   const char *head, size_t hlen, size_t total) {
  p->st.bad_output++;
  if (hlen > MSRT_FRAMER_HEAD) hlen = MSRT_FRAMER_HEAD;
  if (!p->released && p->reg->ev.bad_output)
    p->reg->ev.bad_output(p->reg->ud, p, reason, detail, head, hlen, total);
}

/* ---- publish permissions ----------------------------------------------- */

static bool under_prefix(const msrt_proc *p, const char *s, size_t n) {
  return n >= p->pa_len && memcmp(s, p->publish_as, p->pa_len) == 0 &&
         (n == p->pa_len || s[p->pa_len] == '.');
}

/* Forget the handed reply at ring index at (it was used, or is stale). */
static void drop_reply(msrt_proc *p, size_t at) {
  free(p->replies[at].s);
  /* keep the ring dense: move the oldest into the hole */
  p->replies[at] = p->replies[p->rhead];
  p->replies[p->rhead] = (handed){NULL, 0, 0};
  p->rhead = (p->rhead + 1) % REPLY_MAX;
  p->rn--;
}

/* The handed reply s, if the child holds it: its ring index; -1 when it
 * does not, -2 when it did but the request's deadline has passed (that
 * stale entry is forgotten: nobody waits on it any more). */
static long find_reply(msrt_proc *p, const char *s, size_t n) {
  long stale = -1;
  uint64_t now = 0;
  for (size_t i = 0; i < p->rn; i++) {
    size_t at = (p->rhead + i) % REPLY_MAX;
    handed *h = &p->replies[at];
    if (strlen(h->s) != n || memcmp(h->s, s, n) != 0) continue;
    if (!h->deadline || h->deadline > (now ? now : (now = msrt_now_ns())))
      return (long)at;
    stale = (long)at;
  }
  if (stale < 0) return -1;
  drop_reply(p, (size_t)stale);
  return -2;
}

static void hand_reply(msrt_proc *p, const char *s, size_t n,
                       uint64_t deadline, uint64_t rpc_id) {
  if (p->rn == REPLY_MAX) drop_reply(p, p->rhead); /* forget the oldest */
  char *c = malloc(n + 1);
  if (!c) return;
  memcpy(c, s, n);
  c[n] = 0;
  p->replies[(p->rhead + p->rn++) % REPLY_MAX] = (handed){c, deadline, rpc_id};
}

/* Whether the child may name subject s (n bytes) in a publish, as its
 * subject or as its reply: not denied (deny wins), and under publish_as,
 * or allowed, or a reply it was handed and has not used, within its
 * request's timeout (NATS allow_responses: max 1, expires with the
 * request). *reply is set to the handed reply's ring index (else -1) so
 * the caller uses it up once the whole message passes. A reply subject is
 * a publish too: the answer to it goes there, so a child allowed only
 * svc.echo cannot reach tools.admin by naming it as the reply. */
static bool may_name(msrt_proc *p, const char *s, size_t n, long *reply,
                     const char **why) {
  *reply = -1;
  for (size_t i = 0; i < p->ndeny; i++)
    if (msrt_subject_matchesn(p->deny[i], strlen(p->deny[i]), s, n)) {
      *why = "not allowed (denied)";
      return false;
    }
  if (msrt_proc_permits(p, s, n)) return true;
  *reply = find_reply(p, s, n);
  *why = *reply == -2 ? "not allowed (a reply past its request's timeout)"
                      : "not allowed";
  return *reply >= 0;
}

bool msrt_proc_permits(void *proc, const char *s, size_t n) {
  msrt_proc *p = proc;
  for (size_t i = 0; i < p->ndeny; i++)
    if (msrt_subject_matchesn(p->deny[i], strlen(p->deny[i]), s, n)) return false;
  if (under_prefix(p, s, n)) return true;
  for (size_t i = 0; i < p->nallow; i++)
    if (msrt_subject_matchesn(p->allow[i], strlen(p->allow[i]), s, n)) return true;
  return false;
}

/* Use up the handed reply s, found at ring index at by may_name (looked
 * up again by name: using another one may have moved it). */
static void use_reply(msrt_proc *p, const char *s, size_t n, long at) {
  if (at < 0) return;
  long now_at = find_reply(p, s, n);
  if (now_at >= 0) drop_reply(p, (size_t)now_at);
}

/* ---- stdout ------------------------------------------------------------ */

/* Publish a message of the child's (reply_ours: the reply subject is the
 * process's own inbox, not one the child named). Returns MSRT_E_OK, or
 * MSRT_E_NO_RESPONDERS (a request nobody took: published, not reported),
 * or the error it was refused with (reported as bad output). */
msrt_code msrt_proc_publish_as(msrt_proc *p, const char *subject, size_t slen,
                               const char *reply, size_t rlen, bool reply_ours,
                               const msrt_sbuf *hdr, const msrt_sbuf *payload,
                               const char *line, size_t llen) {
  char detail[MSRT_ERROR_MSG_MAX + 64];
  long s_at, r_at = -1;
  const char *why = NULL, *what = "publish to", *named = subject;
  size_t nlen = slen;
  bool ok = may_name(p, subject, slen, &s_at, &why);
  if (ok && reply && !reply_ours) {
    what = "reply subject", named = reply, nlen = rlen;
    ok = may_name(p, reply, rlen, &r_at, &why);
  }
  if (!ok) {
    p->st.refused++;
    snprintf(detail, sizeof detail, "%s \"%.*s\" is %s", what,
             (int)(nlen > 200 ? 200 : nlen), named, why);
    msrt_proc_bad(p, "permission", detail, line, llen, llen);
    return MSRT_E_PERMISSION;
  }
  use_reply(p, subject, slen, s_at);
  if (reply) use_reply(p, reply, rlen, r_at);
  msrt_error err;
  if (p->released) return MSRT_E_CLOSED;
  msrt_code rc = p->reg->ev.publish(
      p->reg->ud, p, subject, slen, reply, rlen, hdr && hdr->len ? hdr->p : NULL,
      hdr ? hdr->len : 0, payload->p, payload->len, &err);
  if (rc == MSRT_E_OK || rc == MSRT_E_MAILBOX_FULL ||
      rc == MSRT_E_NO_RESPONDERS) {
    p->st.lines_out++; /* accepted by the router (a full mailbox is its drop) */
    return rc == MSRT_E_NO_RESPONDERS ? rc : MSRT_E_OK;
  }
  p->st.refused++;
  if (rc == MSRT_E_PERMISSION) { /* a routing rule resolved it elsewhere */
    msrt_proc_bad(p, "permission", err.message, line, llen, llen);
    return rc;
  }
  snprintf(detail, sizeof detail, "refused: %s", err.message);
  msrt_proc_bad(p, "refused", detail, line, llen, llen);
  return rc;
}

void msrt_proc_publish(msrt_proc *p, const char *subject, size_t slen,
                       const char *reply, size_t rlen, const msrt_sbuf *hdr,
                       const msrt_sbuf *payload, const char *line,
                       size_t llen) {
  msrt_proc_publish_as(p, subject, slen, reply, rlen, false, hdr, payload, line,
                       llen);
}

static void publish_out(msrt_proc *p, const msrt_sbuf *payload,
                        const char *line, size_t llen) {
  msrt_proc_publish(p, p->out_subject, p->out_len, NULL, 0, NULL, payload, line,
                    llen);
}

bool msrt_proc_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

/* A header name as NATS (and msrt.headers) takes it: printable ASCII
 * without ':' or spaces; a value: no CR, LF or NUL. */
static bool header_ok(const char *k, const char *v) {
  if (!*k) return false;
  for (const unsigned char *c = (const unsigned char *)k; *c; c++)
    if (*c <= ' ' || *c >= 0x7f || *c == ':') return false;
  return !strpbrk(v, "\r\n");
}

/* `headers` of a message line into "name\0value\0" pairs. */
static bool encode_headers(const cJSON *h, msrt_sbuf *out) {
  if (!h) return true;
  if (!cJSON_IsObject(h)) return false;
  for (const cJSON *c = h->child; c; c = c->next) {
    char num[32];
    const char *v = c->valuestring;
    if (cJSON_IsNumber(c)) {
      msrt_sbuf nb = {num, 0, sizeof num, 0};
      msrt_json_put_number(&nb, c->valuedouble);
      msrt_sbuf_putc(&nb, 0);
      v = num;
    }
    if ((!cJSON_IsString(c) && !cJSON_IsNumber(c)) || !v || !header_ok(c->string, v))
      return false;
    msrt_sbuf_put(out, c->string, strlen(c->string) + 1);
    msrt_sbuf_put(out, v, strlen(v) + 1);
  }
  return true;
}

/* An object with a string `subject`: published as that message. */
static void publish_message(msrt_proc *p, const cJSON *v, const char *line,
                            size_t len) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "subject");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(v, "reply");
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "data");
  msrt_sbuf *b = &p->scratch, hdr = {0};
  if (!encode_headers(cJSON_GetObjectItemCaseSensitive(v, "headers"), &hdr)) {
    msrt_sbuf_free(&hdr);
    msrt_proc_bad(p, "invalid_headers",
                  "headers must be an object of string values "
                  "with printable names (no ':' or spaces)",
                  line, len, len);
    return;
  }
  msrt_sbuf_reset(b);
  if (d) msrt_json_to_lua(d, b);
  else msrt_sbuf_putc(b, 0x00); /* nil */
  const char *reply = cJSON_IsString(r) ? r->valuestring : NULL;
  msrt_proc_publish(p, s->valuestring, strlen(s->valuestring), reply,
                    reply ? strlen(reply) : 0, &hdr, b, line, len);
  msrt_sbuf_free(&hdr);
}

/* The line most agents write ({"subject":"s","data":"d"}) is read
 * without cJSON (codec.h msrt_json_plain_message) and published as the
 * full parse would publish it; anything else returns false and takes that
 * parse. cJSON's nodes and the line's prechecks were ~3k instructions a
 * reply on the hub in the crash storm. */
static bool plain_message(msrt_proc *p, const char *line, size_t len) {
  msrt_json_span f[3]; /* subject, reply, data */
  char subject[256], reply[256]; /* NUL-ended, as cJSON's strings are */
  if (!msrt_json_plain_message(line, len, f) || f[0].n >= sizeof subject ||
      f[1].n >= sizeof reply)
    return false;
  memcpy(subject, f[0].s, f[0].n);
  subject[f[0].n] = 0;
  if (f[1].s) {
    memcpy(reply, f[1].s, f[1].n);
    reply[f[1].n] = 0;
  }
  msrt_sbuf *b = &p->scratch, hdr = {0};
  msrt_sbuf_reset(b);
  if (f[2].s) msrt_lua_put_string(b, f[2].s, f[2].n);
  else msrt_sbuf_putc(b, 0x00); /* nil */
  msrt_proc_publish(p, subject, f[0].n, f[1].s ? reply : NULL, f[1].n, &hdr, b,
                    line, len);
  return true;
}

static void on_json_line(msrt_proc *p, const char *line, size_t len) {
  char detail[128];
  const char *reason;
  if (msrt_proc_blank(line, len)) return;
  if (plain_message(p, line, len)) return;
  cJSON *v = msrt_json_parse(line, len, &reason, detail, sizeof detail);
  if (!v) {
    msrt_proc_bad(p, reason, detail, line, len, len);
    return;
  }
  const cJSON *s =
      cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "subject") : NULL;
  if (cJSON_IsString(s)) {
    publish_message(p, v, line, len);
  } else {
    msrt_sbuf_reset(&p->scratch);
    msrt_json_to_lua(v, &p->scratch);
    publish_out(p, &p->scratch, line, len);
  }
  cJSON_Delete(v);
}

static void on_out_line(void *ud, const char *line, size_t len) {
  msrt_proc *p = ud;
  if (msrt_proc_is_rpc(p)) {
    msrt_proc_rpc_in(p, line, len);
    return;
  }
  if (p->codec == MSRT_CODEC_JSON_LINES) {
    on_json_line(p, line, len);
    return;
  }
  msrt_sbuf_reset(&p->scratch);
  msrt_lua_put_string(&p->scratch, line, len);
  publish_out(p, &p->scratch, line, len);
}

static void on_out_bad(void *ud, const char *reason, const char *head,
                       size_t hlen, size_t total) {
  msrt_proc *p = ud;
  char detail[96];
  snprintf(detail, sizeof detail, "line of %zu bytes exceeds max_line_bytes "
           "(%zu)", total, p->fout.max_line);
  msrt_proc_bad(p, reason,
                strcmp(reason, "line_too_long") == 0 ? detail : reason, head,
                hlen, total);
}

/* ---- stderr ------------------------------------------------------------ */

static void on_err_line(void *ud, const char *line, size_t len) {
  msrt_proc *p = ud;
  p->st.stderr_lines++;
  size_t keep = len > TAIL_LINE_MAX ? TAIL_LINE_MAX : len;
  char *c = malloc(keep + 1);
  if (c) {
    memcpy(c, line, keep);
    c[keep] = 0;
    if (p->tn == TAIL_LINES) {
      free(p->tail[p->thead]);
      p->tail[p->thead] = c;
      p->thead = (p->thead + 1) % TAIL_LINES;
    } else {
      p->tail[(p->thead + p->tn++) % TAIL_LINES] = c;
    }
  }
  if (!p->released && p->reg->ev.stderr_line)
    p->reg->ev.stderr_line(p->reg->ud, p, line, len);
}

static void on_err_bad(void *ud, const char *reason, const char *head,
                       size_t hlen, size_t total) {
  on_err_line(ud, head, hlen); /* an over-long stderr line: its head */
  (void)reason;
  (void)total;
}

/* ---- handles and the end ----------------------------------------------- */

static void proc_free(msrt_proc *p);

static void on_closed(uv_handle_t *h) {
  msrt_proc *p = h->data;
  if (--p->handles == 0 && p->released && p->exited) proc_free(p);
}

static void close_handle(msrt_proc *p, uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_closed);
}

static char *tail_text(msrt_proc *p, size_t *len) {
  msrt_sbuf b = {0};
  for (size_t i = 0; i < p->tn; i++) {
    if (i) msrt_sbuf_putc(&b, '\n');
    const char *l = p->tail[(p->thead + i) % TAIL_LINES];
    msrt_sbuf_put(&b, l, strlen(l));
  }
  msrt_sbuf_putc(&b, 0);
  *len = b.len ? b.len - 1 : 0;
  return b.p;
}

/* Each reply subject the child was handed and did not use gets a NATS-style
 * status reply (headers Status 503, data nil), so a requester learns at
 * once that its responder is gone instead of waiting for its timeout. */
static void answer_unreplied(msrt_proc *p) {
  static const char hdr[] = "Status\0" "503\0" "Description\0" "responder exited\0";
  static const unsigned char no_data[] = {0}; /* string.buffer encodes nil so */
  uint64_t now = msrt_now_ns();
  for (size_t i = 0; i < p->rn && !p->released; i++) {
    const handed *h = &p->replies[(p->rhead + i) % REPLY_MAX];
    const char *r = h->s;
    msrt_error err;
    if (r && (!h->deadline || h->deadline > now)) /* nobody waits past it */
      p->reg->ev.publish(p->reg->ud, p, r, strlen(r), NULL, 0, hdr,
                         sizeof hdr - 1, no_data, sizeof no_data, &err);
  }
}

/* Status and both EOFs are in, no output waits for room and stdin's last
 * write has come back (written or dropped: the counts are final): the exit
 * is final. */
static void check_final(msrt_proc *p) {
  if (p->exited || !p->reaped || !p->out_eof || !p->err_eof || p->out_paused ||
      p->ninflight || p->job)
    return;
  p->exited = true;
  close_handle(p, (uv_handle_t *)&p->timer);
  close_handle(p, (uv_handle_t *)&p->poll);
  msrt_proc_exit x = {0};
  if (WIFEXITED(p->status)) x.code = WEXITSTATUS(p->status);
  else x.code = -1, x.signal = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
  x.stopped = p->stopped;
  x.normal = x.code == 0 || p->stopped;
  x.start_error = p->start_error;
  char *tail = tail_text(p, &x.stderr_tail_len);
  x.stderr_tail = tail ? tail : "";
  set_state(p, x.normal ? MSRT_PS_TERMINATED : MSRT_PS_FAILED);
  answer_unreplied(p);
  if (!p->released && p->reg->ev.exit) p->reg->ev.exit(p->reg->ud, p, &x);
  free(tail);
  /* released meanwhile (perhaps by the callback) with nothing open */
  if (p->released && p->handles == 0) proc_free(p);
}

static void line_free(line *l) {
  free(l->p);
  msrt_env_unref(l->env);
}

/* Take the oldest queued line out (the caller frees it). */
static line ring_pop(msrt_proc *p) {
  line l = p->ring[p->head];
  p->head = (p->head + 1) % p->cap;
  p->n--;
  return l;
}

/* Lines that will never be written (stdin closed under them: the child
 * exited or is being stopped): freed, their slots given back, counted as
 * dropped. */
static void drop_queue(msrt_proc *p) {
  size_t n = p->n, bytes = 0;
  while (p->n) {
    line l = ring_pop(p);
    bytes += l.len;
    line_free(&l);
  }
  p->st.stdin_dropped += n;
  p->qbytes -= bytes;
  msrt_gate_give(p->gate, n, bytes);
}

static void drop_inflight(msrt_proc *p) {
  size_t bytes = 0;
  for (size_t i = 0; i < p->ninflight; i++) {
    bytes += p->inflight[i].len;
    line_free(&p->inflight[i]);
  }
  p->qbytes -= bytes;
  msrt_gate_give(p->gate, p->ninflight, bytes);
  p->ninflight = 0;
}

static void stdin_close(msrt_proc *p) {
  if (p->stdin_closed) return;
  p->stdin_closed = true;
  msrt_gate_close(p->gate); /* publishers meet it closed from now on */
  drop_queue(p);
  close_handle(p, (uv_handle_t *)&p->in);
}

static void reaped(msrt_proc *p, int status);

static bool try_reap(msrt_proc *p) {
  int st;
  if (p->reaped) return true;
  if (waitpid(p->pid, &st, WNOHANG) != p->pid) return false;
  reaped(p, st);
  return true;
}

static void on_poll(uv_timer_t *t) {
  msrt_proc *p = t->data;
  if (try_reap(p)) uv_timer_stop(t);
}

/* Both streams ended: the child has most likely exited. Reap it now
 * rather than after the SIGCHLD round trip, and keep trying on a timer:
 * SIGCHLD can be late (delivered to a worker thread that a sanitizer holds
 * it on) or, for a child that closed its output and runs on, far away. */
static void streams_done(msrt_proc *p) {
  if (!try_reap(p)) uv_timer_start(&p->poll, on_poll, 2, 20);
}

static void stream_eof(msrt_proc *p, uv_pipe_t *s) {
  bool out = s == &p->out;
  if (out ? p->out_eof : p->err_eof) return;
  msrt_framer_finish(out ? &p->fout : &p->ferr);
  if (out) p->out_eof = true;
  else p->err_eof = true;
  close_handle(p, (uv_handle_t *)s);
  if (p->out_eof && p->err_eof) streams_done(p);
  check_final(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  msrt_proc *p = h->data;
  (void)hint;
  *buf = uv_buf_init(p->reg->rbuf, READ_BUF);
}

/* Frame stdout bytes; what a pause leaves unframed is kept for resume. */
static void frame_out(msrt_proc *p, const char *b, size_t n) {
  size_t taken = msrt_framer_feed_part(&p->fout, b, n);
  if (taken == n) return;
  char *h = malloc(n - taken);
  if (!h) { /* cannot hold them: frame them now, past the pause */
    msrt_framer_feed(&p->fout, b + taken, n - taken);
    return;
  }
  memcpy(h, b + taken, n - taken);
  p->held = h;
  p->held_len = n - taken;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  msrt_proc *p = s->data;
  uv_pipe_t *pipe = (uv_pipe_t *)s;
  if (nread < 0) {
    stream_eof(p, pipe); /* EOF, or an error that ends the stream as well */
    return;
  }
  if (pipe == &p->err) {
    msrt_framer_feed(&p->ferr, buf->base, (size_t)nread);
  } else if (p->codec == MSRT_CODEC_RAW) {
    msrt_sbuf_reset(&p->scratch);
    msrt_lua_put_string(&p->scratch, buf->base, (size_t)nread);
    if (nread) publish_out(p, &p->scratch, buf->base, (size_t)nread);
  } else {
    frame_out(p, buf->base, (size_t)nread);
  }
}

void msrt_proc_pause_output(msrt_proc *p) {
  if (p->out_paused || p->out_eof) return;
  p->out_paused = true;
  if (p->state == MSRT_PS_IDLE || p->state == MSRT_PS_BUSY)
    set_state(p, MSRT_PS_PAUSED);
  msrt_framer_stop(&p->fout);
  uv_read_stop((uv_stream_t *)&p->out);
}

static void on_eof_wait(uv_timer_t *t);
static void update_busy(msrt_proc *p);

void msrt_proc_resume_output(msrt_proc *p) {
  if (!p->out_paused) return;
  p->out_paused = false;
  if (p->held) {
    char *h = p->held;
    size_t n = p->held_len;
    p->held = NULL;
    p->held_len = 0;
    frame_out(p, h, n); /* may pause again and hold the rest */
    free(h);
  }
  if (p->out_paused) return;
  if (p->state == MSRT_PS_PAUSED) { /* idle or busy, by its stdin queue */
    set_state(p, MSRT_PS_IDLE);
    update_busy(p);
  }
  if (p->out_eof) { /* the last line was the one waiting */
    check_final(p);
    return;
  }
  uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
  if (p->reaped) /* the wait for EOF was held off during the pause */
    msrt_timer_start(&p->timer, on_eof_wait, (double)p->eof_wait_ms, 0);
}

/* The status is in but grandchildren outside the group hold the pipes. */
static void on_eof_wait(uv_timer_t *t) {
  msrt_proc *p = t->data;
  if (!p->out_paused) stream_eof(p, &p->out); /* paused: resume re-arms */
  stream_eof(p, &p->err);
}

/* The start's outcome, once the job's pipe says it (spawn.c): the child's
 * memory is given back, and what failed before exec kept for the exit. */
static void settle(msrt_proc *p) {
  if (!p->job) return;
  msrt_error e;
  int rc = msrt_spawn_job_poll(p->job, &e);
  if (rc == 0) return;
  if (rc < 0) p->start_error = strdup(e.message);
  close_handle(p, (uv_handle_t *)&p->started); /* before its fd closes */
  msrt_spawn_job_free(p->job);
  p->job = NULL;
}

static void on_started(uv_poll_t *h, int status, int events) {
  msrt_proc *p = h->data;
  (void)status;
  (void)events;
  settle(p);
  if (!p->job) check_final(p);
}

static void reaped(msrt_proc *p, int status) {
  msrt_procs *r = p->reg;
  settle(p); /* the child is gone: the outcome is in */
  p->reaped = true;
  p->status = status;
  kill(-p->pid, SIGKILL); /* what is left of its group dies with it */
  if (p->cgroup) msrt_fleet_kill(r->fleet, p->cgroup); /* and of its tree */
  p->cgroup = 0;
  if (--r->unreaped == 0) uv_unref((uv_handle_t *)&r->sigchld);
  uv_timer_stop(&p->timer);
  uv_timer_stop(&p->poll);
  stdin_close(p);
  if (!p->out_eof || !p->err_eof)
    msrt_timer_start(&p->timer, on_eof_wait, (double)p->eof_wait_ms, 0);
  check_final(p);
}

static msrt_proc *find_pid(msrt_procs *r, pid_t pid) {
  for (msrt_proc *p = r->live; p; p = p->next)
    if (p->pid == pid && !p->reaped) return p;
  return NULL;
}

static void clear_if_uv_child(uv_handle_t *h, void *arg) {
  pid_t *pid = arg;
  if (h->type == UV_PROCESS && uv_process_get_pid((uv_process_t *)h) == *pid)
    *pid = 0;
}

/* The host is the children's subreaper (msrt_procs_new): a grandchild
 * whose parent died is adopted by it, and must be reaped here. Zombies are
 * looked at without reaping (WNOWAIT) and reaped only when they are not
 * someone else's to wait for: not one of ours (reaped by its own path),
 * not libuv's (luv's uv.spawn), and not in the host's process group
 * (io.popen, os.execute: their callers wait for them). The watcher, in a
 * session of its own, is reaped if it ever ends. */
static void reap_orphans(msrt_procs *r) {
  for (int i = 0; i < 256; i++) {
    siginfo_t si;
    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        si.si_pid == 0)
      return;
    pid_t pid = si.si_pid, probe = pid;
    msrt_proc *p = find_pid(r, pid);
    if (p) {
      try_reap(p);
      continue;
    }
    uv_walk(r->loop, clear_if_uv_child, &probe);
    if (probe == 0 || getpgid(pid) == getpgrp()) return;
    waitpid(pid, NULL, WNOHANG);
  }
}

/* Each of our own children, by pid: a child libuv spawned is libuv's;
 * then adopted grandchildren, and the cgroups that emptied. */
static void reap_all(msrt_procs *r) {
  for (msrt_proc *p = r->live, *next; p; p = next) {
    next = p->next; /* p may be freed by its exit callback */
    try_reap(p);
  }
  reap_orphans(r);
  if (r->fleet) msrt_fleet_sweep(r->fleet);
}

static void on_sigchld(uv_signal_t *s, int signum) {
  (void)signum;
  reap_all(s->data);
}

static void on_grace(uv_timer_t *t) {
  msrt_proc *p = t->data;
  if (!p->reaped) kill(-p->pid, SIGKILL);
}

/* ---- stdin ------------------------------------------------------------- */

static void update_busy(msrt_proc *p) {
  size_t q = p->n + p->ninflight;
  if (p->state == MSRT_PS_IDLE && q > 0 && q >= p->cap / 2)
    set_state(p, MSRT_PS_BUSY);
  else if (p->state == MSRT_PS_BUSY && q <= p->cap / 4)
    set_state(p, MSRT_PS_IDLE);
}

static void flush(msrt_proc *p);

static void on_written(uv_write_t *req, int status) {
  msrt_proc *p = req->data;
  if (status == 0) p->st.stdin_lines += p->ninflight;
  else p->st.stdin_dropped += p->ninflight;
  drop_inflight(p); /* written or lost: their slots are free either way */
  if (status < 0) stdin_close(p); /* EPIPE: the child closed its stdin */
  else flush(p);
  update_busy(p);
  check_final(p); /* an exit that waited for this write (may free p) */
}

/* Queue p's lines for the end of the loop's turn (flush_due). The
 * watchers keep the loop alive while a line waits. */
static void flush_later(msrt_proc *p) {
  msrt_procs *r = p->reg;
  if (p->due) return;
  if (r->closing) { /* the watchers are closed: now, as ever */
    flush(p);
    return;
  }
  if (!r->due) {
    uv_ref((uv_handle_t *)&r->before_poll);
    uv_ref((uv_handle_t *)&r->after_poll);
  }
  p->due = true;
  p->due_next = r->due;
  r->due = p;
}

static void not_due(msrt_proc *p) {
  if (!p->due) return;
  msrt_proc **q = &p->reg->due;
  while (*q && *q != p) q = &(*q)->due_next;
  if (*q) *q = p->due_next;
  p->due = false;
}

static void flush_due(msrt_procs *r) {
  if (!r->due) return;
  while (r->due) {
    msrt_proc *p = r->due;
    r->due = p->due_next;
    p->due = false;
    flush(p); /* (never frees p: closing a handle is asynchronous) */
  }
  uv_unref((uv_handle_t *)&r->before_poll);
  uv_unref((uv_handle_t *)&r->after_poll);
}

static void on_before_poll(uv_prepare_t *h) { flush_due(h->data); }
static void on_after_poll(uv_check_t *h) { flush_due(h->data); }

static void flush(msrt_proc *p) {
  if (p->stdin_closing && !p->n && !p->ninflight) stdin_close(p); /* EOF */
  if (p->ninflight || !p->n || p->stdin_closed) return;
  uv_buf_t bufs[BATCH_MAX];
  while (p->n && p->ninflight < BATCH_MAX) {
    line l = ring_pop(p);
    bufs[p->ninflight] = uv_buf_init(l.p, (unsigned)l.len);
    p->inflight[p->ninflight++] = l;
  }
  p->wreq.data = p;
  if (uv_write(&p->wreq, (uv_stream_t *)&p->in, bufs, (unsigned)p->ninflight,
               on_written) != 0) {
    p->st.stdin_dropped += p->ninflight;
    drop_inflight(p);
    stdin_close(p);
  }
}

/* A line dropped on overflow: counted and reported with the message it
 * came from (NULL: a line of msrt_proc_send_data). */
static void dropped(msrt_proc *p, const char *reason, const msrt_envelope *e) {
  p->st.stdin_dropped++;
  if (!p->released && p->reg->ev.dropped)
    p->reg->ev.dropped(p->reg->ud, p, reason, e);
}

static msrt_code full_error(msrt_proc *p, msrt_error *err) {
  return msrt_error_set(err, MSRT_E_MAILBOX_FULL, "process %s: stdin queue "
                        "full (%zu lines)", p->name, p->cap);
}

/* A line that found no slot (nothing queued, b freed): drop_newest drops
 * it, `error` and `block` refuse it (the hub does not wait). */
static msrt_code no_slot(msrt_proc *p, msrt_sbuf *b, const msrt_envelope *e,
                         msrt_error *err) {
  msrt_sbuf_free(b);
  if (msrt_gate_policy(p->gate) == MSRT_OVERFLOW_DROP_NEWEST)
    dropped(p, "drop_newest", e);
  else msrt_gate_note(p->gate, MSRT_GATE_REFUSED);
  return full_error(p, err);
}

/* The lines at the hub (queued, in flight) reach either bound. */
static bool over(const msrt_proc *p) {
  return p->n + p->ninflight >= p->cap ||
         p->qbytes >= msrt_gate_max_bytes(p->gate);
}

/* The queue is full while a line with a slot comes: possible only with
 * drop_oldest, whose publishers always get a slot. Evict the oldest queued
 * lines until there is room; with none left queued (all in flight) the new
 * one (b, its slot holding b->len bytes) is dropped. */
static msrt_code make_room(msrt_proc *p, msrt_sbuf *b, const msrt_envelope *e,
                           msrt_error *err) {
  while (p->n && over(p)) {
    line old = ring_pop(p);
    p->qbytes -= old.len;
    msrt_gate_give(p->gate, 1, old.len);
    dropped(p, "drop_oldest", old.env);
    line_free(&old);
  }
  if (!over(p)) return MSRT_E_OK;
  msrt_gate_give(p->gate, 1, b->len);
  msrt_sbuf_free(b);
  dropped(p, "drop_newest", e);
  return full_error(p, err);
}

/* Queue one line (taking b's bytes). held: it already has a slot of the
 * gate (taken by its publisher for msrt_env_size(e) bytes, corrected here
 * to the line's), else one is taken here. */
static msrt_code enqueue(msrt_proc *p, msrt_sbuf *b, msrt_envelope *e,
                         bool held, msrt_error *err) {
  int r = p->stdin_closed || p->stdin_closing ? MSRT_E_CLOSED
          : held          ? MSRT_E_OK
                          : msrt_gate_take(p->gate, b->len);
  if (r == MSRT_E_MAILBOX_FULL) return no_slot(p, b, e, err);
  if (r != MSRT_E_OK) {
    msrt_sbuf_free(b);
    if (held) msrt_gate_give(p->gate, 1, msrt_env_size(e));
    return msrt_error_set(err, MSRT_E_CLOSED, "process %s: stdin is closed",
                          p->name);
  }
  if (held) msrt_gate_recharge(p->gate, msrt_env_size(e), b->len);
  if (p->drop_oldest_policy && over(p) && make_room(p, b, e, err) != MSRT_E_OK)
    return MSRT_E_MAILBOX_FULL;
  msrt_envelope *keep = p->drop_oldest_policy && e ? msrt_env_ref(e) : NULL;
  p->qbytes += b->len;
  p->ring[(p->head + p->n++) % p->cap] = (line){b->p, b->len, keep};
  memset(b, 0, sizeof *b);
  /* else the write's end flushes it. drop_oldest evicts queued lines, not
   * one in flight: there the first goes out at once, as it always has */
  if (!p->ninflight) {
    if (p->drop_oldest_policy) flush(p);
    else flush_later(p);
  }
  update_busy(p);
  return MSRT_E_OK;
}

/* The data of a payload as JSON (flags as in an envelope). */
msrt_code msrt_proc_put_data_json(msrt_sbuf *b, const void *payload,
                                  size_t plen, uint8_t flags, msrt_error *err) {
  const char *why = NULL;
  if (flags & MSRT_ENV_PAYLOAD_BUFFER) {
    if (msrt_lua_to_json(payload, plen, b, &why) != MSRT_E_OK)
      return msrt_error_set(err, MSRT_E_BAD_INPUT, "data cannot be written "
                            "as JSON: %s", why);
  } else if (flags & MSRT_ENV_PAYLOAD_JSON) {
    msrt_sbuf_put(b, payload, plen);
  } else {
    msrt_json_put_string(b, payload, plen);
  }
  return MSRT_E_OK;
}

/* "name\0value\0" pairs as a JSON object. */
static void put_headers_json(msrt_sbuf *b, const char *h, size_t n) {
  msrt_sbuf_putc(b, '{');
  for (size_t at = 0, i = 0; at < n; i++) {
    const char *k = h + at;
    size_t kl = strnlen(k, n - at);
    const char *v = k + kl + 1;
    size_t vl = at + kl + 1 < n ? strnlen(v, n - at - kl - 1) : 0;
    if (i) msrt_sbuf_putc(b, ',');
    msrt_json_put_string(b, k, kl);
    msrt_sbuf_putc(b, ':');
    msrt_json_put_string(b, at + kl + 1 < n ? v : "", vl);
    at += kl + 1 + vl + 1;
  }
  msrt_sbuf_putc(b, '}');
}

/* LINES/RAW: a string as it is, anything else as JSON. */
static msrt_code put_data_text(msrt_sbuf *b, const void *payload, size_t plen,
                               uint8_t flags, msrt_error *err) {
  const char *s;
  size_t len;
  if (!(flags & MSRT_ENV_PAYLOAD_BUFFER)) msrt_sbuf_put(b, payload, plen);
  else if (msrt_lua_get_string(payload, plen, &s, &len)) msrt_sbuf_put(b, s, len);
  else
    return msrt_proc_put_data_json(b, payload, plen, flags, err);
  return MSRT_E_OK;
}

/* A stdin line is bounded as the child's own lines are (max_line_bytes;
 * its final newline not counted): refused whole, never cut. */
msrt_code msrt_proc_check_line(const msrt_proc *p, const msrt_sbuf *b,
                               msrt_error *err) {
  size_t len = b->len - (b->len && b->p[b->len - 1] == '\n');
  if (len <= p->fout.max_line) return MSRT_E_OK;
  return msrt_error_set(err, MSRT_E_PAYLOAD_TOO_BIG, "process %s: stdin "
                        "line of %zu bytes exceeds max_line_bytes (%zu)",
                        p->name, len, p->fout.max_line);
}

/* b built (rc): queue it, or free it (and its slot, when held). */
msrt_code msrt_proc_send_done(msrt_proc *p, msrt_sbuf *b, msrt_code rc,
                              msrt_envelope *e, bool held, msrt_error *err) {
  if (rc == MSRT_E_OK && b->oom)
    rc = msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  /* an lsp message is framed: its body was checked (rpc_frame) */
  if (rc == MSRT_E_OK && p->codec != MSRT_CODEC_LSP)
    rc = msrt_proc_check_line(p, b, err);
  if (rc == MSRT_E_OK) return enqueue(p, b, e, held, err);
  msrt_sbuf_free(b);
  if (held) msrt_gate_give(p->gate, 1, msrt_env_size(e));
  return rc;
}

/* The stdin line of e, by codec. */
static msrt_code put_env(msrt_proc *p, msrt_sbuf *b, const msrt_envelope *e,
                         uint64_t *rid, msrt_error *err) {
  msrt_code rc;
  if (msrt_proc_is_rpc(p)) {
    rc = msrt_proc_rpc_put_env(p, b, e, rid, err);
    return rc == MSRT_E_OK ? msrt_proc_rpc_frame(p, b, err) : rc;
  }
  if (p->codec != MSRT_CODEC_JSON_LINES) {
    rc = put_data_text(b, e->payload, e->payload_len, e->flags, err);
    msrt_sbuf_putc(b, '\n');
    return rc;
  }
  msrt_sbuf_put(b, "{\"subject\":", 11);
  msrt_json_put_string(b, e->subject, e->subject_len);
  if (e->reply) {
    msrt_sbuf_put(b, ",\"reply\":", 9);
    msrt_json_put_string(b, e->reply, e->reply_len);
  }
  if (e->headers_len) {
    msrt_sbuf_put(b, ",\"headers\":", 11);
    put_headers_json(b, (const char *)e->headers, e->headers_len);
  }
  msrt_sbuf_put(b, ",\"data\":", 8);
  rc = msrt_proc_put_data_json(b, e->payload, e->payload_len, e->flags, err);
  msrt_sbuf_put(b, "}\n", 2);
  return rc;
}

msrt_code msrt_proc_send_env(msrt_proc *p, msrt_envelope *e, bool held,
                             msrt_error *err) {
  msrt_sbuf b = {0};
  uint64_t rid = 0;
  msrt_code rc = p->stdin_closed || p->stdin_closing
                     ? msrt_error_set(err, MSRT_E_CLOSED, "process %s: stdin "
                                      "is closed", p->name)
                     : put_env(p, &b, e, &rid, err);
  rc = msrt_proc_send_done(p, &b, rc, e, held, err);
  if (rc == MSRT_E_OK && e->reply)
    hand_reply(p, e->reply, e->reply_len, e->reply_deadline_ns, rid);
  return rc;
}

msrt_code msrt_proc_send_data(msrt_proc *p, const void *payload, size_t plen,
                              uint8_t flags, msrt_error *err) {
  msrt_sbuf b = {0};
  msrt_code rc;
  if (p->codec == MSRT_CODEC_JSON_LINES || msrt_proc_is_rpc(p))
    rc = msrt_proc_put_data_json(&b, payload, plen, flags, err);
  else
    rc = put_data_text(&b, payload, plen, flags, err);
  if (msrt_proc_is_rpc(p)) {
    if (rc == MSRT_E_OK) rc = msrt_proc_rpc_frame(p, &b, err);
  } else if (p->codec != MSRT_CODEC_RAW)
    msrt_sbuf_putc(&b, '\n');
  return msrt_proc_send_done(p, &b, rc, NULL, false, err);
}

/* ---- spawn ------------------------------------------------------------- */

static void link_proc(msrt_procs *r, msrt_proc *p) {
  p->next = r->live;
  if (r->live) r->live->prev = p;
  r->live = p;
  msrt_proc **b = &r->bucket[p->id % BUCKETS];
  p->hnext = *b;
  *b = p;
  r->count++;
}

static void unlink_proc(msrt_procs *r, msrt_proc *p) {
  if (p->prev) p->prev->next = p->next;
  else r->live = p->next;
  if (p->next) p->next->prev = p->prev;
  msrt_proc **b = &r->bucket[p->id % BUCKETS];
  while (*b != p) b = &(*b)->hnext;
  *b = p->hnext;
  r->count--;
}

msrt_proc *msrt_procs_find(msrt_procs *r, uint64_t id) {
  for (msrt_proc *p = r->bucket[id % BUCKETS]; p; p = p->hnext)
    if (p->id == id) return p->released ? NULL : p;
  return NULL;
}

static void proc_free(msrt_proc *p) {
  msrt_procs *r = p->reg;
  unlink_proc(r, p);
  not_due(p);
  drop_queue(p);
  drop_inflight(p);
  if (p->gate) msrt_gate_close(p->gate); /* others may hold it still */
  msrt_gate_unref(p->gate);
  for (size_t i = 0; i < p->rn; i++) free(p->replies[(p->rhead + i) % REPLY_MAX].s);
  for (size_t i = 0; i < p->tn; i++) free(p->tail[(p->thead + i) % TAIL_LINES]);
  msrt_framer_free(&p->fout);
  msrt_framer_free(&p->ferr);
  msrt_sbuf_free(&p->scratch);
  free(p->held);
  free_list(p->allow, p->nallow);
  free_list(p->deny, p->ndeny);
  free(p->name);
  free(p->publish_as);
  free(p->out_subject);
  for (size_t i = 0; i < p->cn; i++) free(p->calls[(p->chead + i) % REPLY_MAX].id);
  free(p->calls);
  free(p->rpc);
  free(p->inbox);
  free(p->ring);
  free(p->start_error);
  free(p);
  if (r->closing && r->count == 0 && r->handles == 0) free(r);
}

static msrt_code check_spec(const msrt_proc_spec *s, msrt_error *err) {
  if (!s->name || !*s->name || strchr(s->name, '.') ||
      msrt_subject_validate(s->name, strlen(s->name), 0, NULL) != MSRT_E_OK)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "process name must be one "
                          "subject token, got \"%s\"", s->name ? s->name : "");
  if (!s->argv || s->argc == 0 || !s->argv[0])
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "process %s: cmd must "
                          "name a program", s->name);
  if (!s->publish_as ||
      msrt_subject_validate(s->publish_as, strlen(s->publish_as), 0, err) != MSRT_E_OK)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "process %s: publish_as "
                          "must be a valid subject", s->name);
  bool rpc = s->codec == MSRT_CODEC_JSONRPC || s->codec == MSRT_CODEC_LSP;
  if (rpc && (!s->rpc || !s->inbox ||
              msrt_subject_validate(s->rpc, strlen(s->rpc), 0, NULL) != MSRT_E_OK ||
              msrt_subject_validate(s->inbox, strlen(s->inbox), 0, NULL) != MSRT_E_OK))
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "process %s: rpc and inbox "
                          "must be valid subjects", s->name);
  for (size_t i = 0; i < s->nallow + s->ndeny; i++) {
    const char *pat = i < s->nallow ? s->allow[i] : s->deny[i - s->nallow];
    msrt_error e2;
    if (msrt_pattern_validate(pat, strlen(pat), 0, &e2) != MSRT_E_OK)
      return msrt_error_set(err, MSRT_E_INVALID_ARG, "process %s: %s",
                            s->name, e2.message);
  }
  return MSRT_E_OK;
}

static msrt_proc *proc_new(msrt_procs *r, const msrt_proc_spec *s) {
  msrt_proc *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->magic = MSRT_HANDLE_MAGIC;
  p->reg = r;
  p->id = ++r->next_id;
  p->name = dup_str(s->name);
  p->publish_as = dup_str(s->publish_as);
  p->pa_len = strlen(s->publish_as);
  p->out_len = p->pa_len + 4;
  p->out_subject = malloc(p->out_len + 1);
  if (p->out_subject) snprintf(p->out_subject, p->out_len + 1, "%s.out", s->publish_as);
  p->allow = dup_list(s->allow, s->nallow);
  p->nallow = s->nallow;
  p->deny = dup_list(s->deny, s->ndeny);
  p->ndeny = s->ndeny;
  p->codec = s->codec;
  if (msrt_proc_is_rpc(p)) {
    p->rpc = dup_str(s->rpc);
    p->rpc_len = strlen(s->rpc);
    p->inbox = dup_str(s->inbox);
    p->inbox_len = strlen(s->inbox);
    p->calls = calloc(REPLY_MAX, sizeof *p->calls);
  }
  p->stop_signal = s->stop_signal ? s->stop_signal : SIGTERM;
  p->grace_ms = s->grace_ms < 0 ? 5000 : s->grace_ms;
  p->eof_wait_ms = s->eof_wait_ms < 0 ? 2000 : s->eof_wait_ms;
  p->cap = s->stdin_capacity ? s->stdin_capacity : 1024;
  msrt_overflow policy = s->overflow == MSRT_OVERFLOW_DEFAULT
                             ? MSRT_OVERFLOW_DROP_NEWEST : s->overflow;
  p->drop_oldest_policy = policy == MSRT_OVERFLOW_DROP_OLDEST;
  p->gate = msrt_gate_new(p->cap, s->stdin_bytes, policy, p->id, p->name);
  p->ring = malloc(p->cap * sizeof *p->ring);
  if (p->codec == MSRT_CODEC_LSP)
    msrt_framer_init_headers(&p->fout, s->max_line, on_out_line, on_out_bad, p);
  else msrt_framer_init(&p->fout, s->max_line, on_out_line, on_out_bad, p);
  msrt_framer_init(&p->ferr, s->max_line, on_err_line, on_err_bad, p);
  if (!p->name || !p->publish_as || !p->out_subject || !p->allow || !p->deny ||
      !p->ring || !p->gate ||
      (msrt_proc_is_rpc(p) && (!p->rpc || !p->inbox || !p->calls))) {
    p->handles = 0;
    link_proc(r, p);
    p->released = p->exited = true;
    proc_free(p);
    return NULL;
  }
  return p;
}

/* Pipes: ours[i] is the host's end, theirs[i] the child's fd i. */
static int make_pipes(int ours[3], int theirs[3]) {
  for (int i = 0; i < 3; i++) ours[i] = theirs[i] = -1;
  for (int i = 0; i < 3; i++) {
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) != 0) return errno;
    ours[i] = i == 0 ? fd[1] : fd[0];
    theirs[i] = i == 0 ? fd[0] : fd[1];
  }
  return 0;
}

static void close_fds(int fds[3]) {
  for (int i = 0; i < 3; i++)
    if (fds[i] >= 0) close(fds[i]);
}

/* The fleet's cgroups, made at the first spawn; where there can be none,
 * the caller is told once (msrt_procs_take_warning). */
static msrt_fleet *fleet_of(msrt_procs *r) {
  if (!r->fleet_tried) {
    r->fleet_tried = true;
    r->fleet = msrt_fleet_open(r->fleet_why, sizeof r->fleet_why);
    r->fleet_warn = !r->fleet;
  }
  return r->fleet;
}

const char *msrt_procs_take_warning(msrt_procs *r) {
  if (!r->fleet_warn) return NULL;
  r->fleet_warn = false;
  snprintf(r->warning, sizeof r->warning, "child processes run without a "
           "cgroup (%s): a grandchild that leaves its process group can "
           "outlive a stop or the host", r->fleet_why);
  return r->warning;
}

/* limits.nproc where RLIMIT_NPROC does not bind (root): pids.max in the
 * child's cgroup, or an error saying why it cannot be applied. */
static msrt_code check_nproc(msrt_procs *r, const msrt_proc_spec *s,
                             long long *pids_max, msrt_error *err) {
  *pids_max = -1;
  if (s->limits.nproc < 0 || !msrt_nproc_exempt()) return MSRT_E_OK;
  msrt_fleet *f = fleet_of(r);
  if (msrt_fleet_has_pids(f)) {
    *pids_max = s->limits.nproc;
    return MSRT_E_OK;
  }
  return msrt_error_set(err, MSRT_E_SPAWN_FAILED, "process %s: limits.nproc "
                        "cannot be applied: the host runs as root (or with "
                        "CAP_SYS_RESOURCE), which RLIMIT_NPROC does not bind, "
                        "and its children have no cgroup pids controller (%s)",
                        s->name, f ? "the host's cgroup does not offer pids"
                                   : r->fleet_why);
}

/* Resolve, make the child's cgroup and start it (not waiting for its
 * exec: *job, spawn.h): MSRT_E_OK, or MSRT_E_SPAWN_FAILED with strerror's
 * text in why. */
static msrt_code start_child(msrt_procs *r, const msrt_proc_spec *s,
                             long long pids_max, const int theirs[3],
                             pid_t *pid, uint64_t *cgroup,
                             msrt_spawn_job **job, msrt_error *why) {
  char path[4096];
  msrt_code rc = msrt_spawn_resolve(s->argv[0], path, sizeof path, why);
  if (rc != MSRT_E_OK) return rc;
  msrt_fleet *f = fleet_of(r);
  int cg_fd = -1;
  *cgroup = 0;
  if (f && (rc = msrt_fleet_child(f, pids_max, cgroup, &cg_fd, why)) !=
               MSRT_E_OK)
    return rc;
  rc = msrt_spawn_start(path, s->argv, s->argc, s->env, s->envc, s->cwd,
                        theirs, &s->limits, cg_fd, pid, job, why);
  if (cg_fd >= 0) close(cg_fd); /* the child has its own */
  if (rc != MSRT_E_OK && *cgroup) {
    msrt_fleet_kill(f, *cgroup);
    *cgroup = 0;
  }
  return rc;
}

/* Wrap our ends on the loop; every handle is counted in p->handles. */
static void open_handles(msrt_procs *r, msrt_proc *p, const int ours[3]) {
  uv_pipe_t *pipes[3] = {&p->in, &p->out, &p->err};
  for (int i = 0; i < 3; i++) {
    uv_pipe_init(r->loop, pipes[i], 0);
    pipes[i]->data = p;
    uv_pipe_open(pipes[i], ours[i]);
  }
  uv_timer_init(r->loop, &p->timer);
  uv_timer_init(r->loop, &p->poll);
  p->timer.data = p->poll.data = p;
  /* the child's pipes, then the SIGCHLD watcher, keep the loop alive */
  uv_unref((uv_handle_t *)&p->timer);
  uv_unref((uv_handle_t *)&p->poll);
  p->handles = 5;
  /* the start's outcome, read on the loop when it comes (never waited on:
   * the child may wait long for a CPU) */
  uv_poll_init(r->loop, &p->started, msrt_spawn_job_fd(p->job));
  p->started.data = p;
  uv_unref((uv_handle_t *)&p->started);
  p->handles++;
  uv_poll_start(&p->started, UV_READABLE, on_started);
  uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
}

/* A cwd that cannot be entered is said as such (the child's chdir would
 * fail with the errno of a missing program). Returns 0 or the errno. */
static int check_cwd(const msrt_proc_spec *s, msrt_error *err) {
  struct stat st;
  if (!s->cwd) return 0;
  int e = stat(s->cwd, &st) != 0      ? errno
          : !S_ISDIR(st.st_mode)       ? ENOTDIR
          : access(s->cwd, X_OK) != 0 ? errno
                                       : 0;
  if (e)
    msrt_error_set(err, MSRT_E_SPAWN_FAILED, "process %s: cwd %s: %s", s->name,
                   s->cwd, strerror(e));
  return e;
}

msrt_proc *msrt_proc_spawn(msrt_procs *r, const msrt_proc_spec *s,
                           msrt_error *err) {
  long long pids_max;
  if (check_spec(s, err) != MSRT_E_OK || check_cwd(s, err) ||
      check_nproc(r, s, &pids_max, err) != MSRT_E_OK)
    return NULL;
  int ours[3], theirs[3];
  int e = make_pipes(ours, theirs);
  pid_t pid = 0;
  uint64_t cgroup = 0;
  msrt_spawn_job *job = NULL;
  msrt_error why;
  msrt_code rc =
      e ? msrt_error_set(&why, MSRT_E_SPAWN_FAILED, "%s", strerror(e))
        : start_child(r, s, pids_max, theirs, &pid, &cgroup, &job, &why);
  close_fds(theirs);
  if (rc != MSRT_E_OK) {
    close_fds(ours);
    msrt_error_set(err, MSRT_E_SPAWN_FAILED, "process %s: cannot start %s: %s",
                   s->name, s->argv[0], why.message);
    return NULL;
  }
  msrt_proc *p = proc_new(r, s);
  if (!p) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    msrt_spawn_job_free(job); /* reaped: it reads it no more */
    if (cgroup) msrt_fleet_kill(r->fleet, cgroup);
    close_fds(ours);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  p->pid = pid;
  p->cgroup = cgroup;
  p->job = job;
  link_proc(r, p);
  open_handles(r, p, ours);
  if (r->unreaped++ == 0) uv_ref((uv_handle_t *)&r->sigchld);
  set_state(p, MSRT_PS_IDLE);
  return p;
}

/* ---- control ----------------------------------------------------------- */

pid_t msrt_proc_pid(const msrt_proc *p) { return p->reaped ? 0 : p->pid; }
uint64_t msrt_proc_id(const msrt_proc *p) { return p->id; }
const char *msrt_proc_name(const msrt_proc *p) { return p->name; }
msrt_proc_state msrt_proc_get_state(const msrt_proc *p) { return p->state; }
void msrt_proc_set_ud(msrt_proc *p, void *ud) { p->ud = ud; }
void *msrt_proc_ud(const msrt_proc *p) { return p->ud; }

void msrt_proc_get_stats(const msrt_proc *p, msrt_proc_stats *st) {
  *st = p->st;
  st->stdin_queued = p->n + p->ninflight;
  st->stdin_queued_bytes = p->qbytes;
  msrt_gate_stats g;
  msrt_gate_get_stats(p->gate, &g);
  st->stdin_dropped += g.dropped; /* drop_newest on the publishing thread */
  st->stdin_refused = g.refused;
  st->stdin_blocked = g.blocked;
}

msrt_gate *msrt_proc_gate(const msrt_proc *p) { return p->gate; }

msrt_code msrt_proc_signal(msrt_proc *p, int signum) {
  if (p->reaped) return MSRT_E_CLOSED;
  if (kill(-p->pid, signum) == 0) return MSRT_E_OK;
  return errno == EINVAL ? MSRT_E_INVALID_ARG
         : errno == EPERM ? MSRT_E_PERMISSION
                          : MSRT_E_CLOSED;
}

void msrt_proc_stop(msrt_proc *p, long grace_ms) {
  if (p->reaped || p->stopped) return;
  p->stopped = true;
  set_state(p, MSRT_PS_STOPPING);
  stdin_close(p); /* many agents end on EOF: the gentlest stop */
  kill(-p->pid, p->stop_signal);
  msrt_timer_start(&p->timer, on_grace,
                   (double)(grace_ms < 0 ? p->grace_ms : grace_ms), 0);
}

void msrt_proc_close_stdin(msrt_proc *p) {
  if (p->stdin_closed || p->stdin_closing) return;
  p->stdin_closing = true;
  msrt_gate_close(p->gate); /* publishers meet it closed from now on */
  flush(p); /* closes now when nothing is queued, else after the last line */
}

void msrt_proc_release(msrt_proc *p) {
  if (p->released) return;
  p->released = true;
  if (!p->reaped) msrt_proc_stop(p, -1);
  if (p->exited && p->handles == 0) proc_free(p);
}

/* ---- the registry ------------------------------------------------------ */

static void on_reg_closed(uv_handle_t *h) {
  msrt_procs *r = h->data;
  if (--r->handles == 0 && r->count == 0) free(r);
}

msrt_procs *msrt_procs_new(uv_loop_t *loop, const msrt_proc_events *ev,
                           void *ud, msrt_error *err) {
  msrt_procs *r = calloc(1, sizeof *r);
  if (!r) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  r->magic = MSRT_HANDLE_MAGIC;
  r->loop = loop;
  r->ev = *ev;
  r->ud = ud;
  int rc = uv_signal_init(loop, &r->sigchld);
  if (rc == 0) rc = uv_signal_start(&r->sigchld, on_sigchld, SIGCHLD);
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_INTERNAL, "libuv: %s", uv_strerror(rc));
    free(r);
    return NULL;
  }
  r->sigchld.data = r;
  r->handles = 3;
  uv_unref((uv_handle_t *)&r->sigchld);
  uv_prepare_init(loop, &r->before_poll);
  uv_check_init(loop, &r->after_poll);
  r->before_poll.data = r->after_poll.data = r;
  uv_prepare_start(&r->before_poll, on_before_poll);
  uv_check_start(&r->after_poll, on_after_poll);
  uv_unref((uv_handle_t *)&r->before_poll); /* referenced while lines wait */
  uv_unref((uv_handle_t *)&r->after_poll);
  /* A write to a child that has gone must fail with EPIPE, not kill the
   * host. Children get SIGPIPE back at its default (spawn.c). */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  /* Orphaned grandchildren come to the host (reap_orphans), not to init:
   * they stay in the host's tree while it lives. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  return r;
}

size_t msrt_procs_count(const msrt_procs *r) { return r->count; }

static int all_reaped(msrt_procs *r) {
  reap_all(r);
  return r->unreaped == 0;
}

/* Blocking: the stop signal to every live group, SIGKILL after timeout. */
static void stop_all_blocking(msrt_procs *r, long timeout_ms) {
  for (msrt_proc *p = r->live; p; p = p->next)
    if (!p->reaped) {
      p->stopped = true;
      kill(-p->pid, p->stop_signal);
    }
  uint64_t deadline = msrt_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  while (!all_reaped(r) && msrt_now_ns() < deadline) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  for (msrt_proc *p = r->live; p; p = p->next)
    if (!p->reaped) kill(-p->pid, SIGKILL);
  while (!all_reaped(r)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Every child cgroup killed at its reap: wait (1 s at most) for them to
 * empty, reaping what was adopted, then remove the fleet's. */
static void close_fleet(msrt_procs *r) {
  if (!r->fleet) return;
  for (int i = 0; i < 1000 && msrt_fleet_sweep(r->fleet) > 0; i++) {
    reap_orphans(r);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  msrt_fleet_close(r->fleet, 100);
  r->fleet = NULL;
}

void msrt_procs_free(msrt_procs *r, long timeout_ms) {
  flush_due(r); /* the lines handed before the end go out before the stop */
  stop_all_blocking(r, timeout_ms);
  close_fleet(r);
  r->closing = true;
  for (msrt_proc *p = r->live, *next; p; p = next) {
    next = p->next;
    /* the group is dead: what is left in the pipes comes now or never
     * (a paused output's held bytes are dropped) */
    p->out_paused = false;
    if (!p->out_eof) stream_eof(p, &p->out);
    if (!p->err_eof) stream_eof(p, &p->err);
    p->out_paused = false; /* a last line may have paused it again */
    check_final(p);
    p->released = true;
    if (p->exited && p->handles == 0) proc_free(p);
  }
  if (!uv_is_closing((uv_handle_t *)&r->sigchld))
    uv_close((uv_handle_t *)&r->sigchld, on_reg_closed);
  while (r->due) { /* (the stop closed their stdin: nothing is queued) */
    r->due->due = false;
    r->due = r->due->due_next;
  }
  if (!uv_is_closing((uv_handle_t *)&r->before_poll))
    uv_close((uv_handle_t *)&r->before_poll, on_reg_closed);
  if (!uv_is_closing((uv_handle_t *)&r->after_poll))
    uv_close((uv_handle_t *)&r->after_poll, on_reg_closed);
}
