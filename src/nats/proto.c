/* The NATS client protocol parser (nats/proto.h): two states, a control
 * line and a payload; whole commands point into the fed buffer, split ones
 * are gathered (bounded by max_control and the announced size). */
#include "nats/proto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_LINE = 0, ST_PAYLOAD };

void msrt_nats_parser_init(msrt_nats_parser *p, size_t max_control,
                           size_t max_payload) {
  memset(p, 0, sizeof *p);
  p->max_control = max_control ? max_control : MSRT_NATS_MAX_CONTROL_DEFAULT;
  p->max_payload = max_payload ? max_payload : MSRT_NATS_MAX_PAYLOAD_DEFAULT;
}

void msrt_nats_parser_free(msrt_nats_parser *p) {
  free(p->line);
  free(p->msg);
  p->line = p->msg = NULL;
  p->line_len = p->msg_len = p->msg_need = 0;
  p->state = ST_LINE;
}

/* Up to max whitespace-separated arguments of s[0..n); returns how many,
 * or max + 1 when there are more. */
static size_t split_args(const char *s, size_t n, const char **a, size_t *al,
                         size_t max) {
  size_t k = 0, i = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i == n) break;
    if (k == max) return max + 1;
    size_t start = i;
    while (i < n && s[i] != ' ' && s[i] != '\t') i++;
    a[k] = s + start;
    al[k++] = i - start;
  }
  return k;
}

/* A decimal size (digits only, at most 18 of them); -1 when not one. */
static int64_t parse_size(const char *s, size_t n) {
  if (n == 0 || n > 18) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Whether the operation word w (n bytes) is op, in any letter case. */
static bool is_op(const char *w, size_t n, const char *op) {
  return n == strlen(op) && strncasecmp(w, op, n) == 0;
}

/* Fill cmd from a PUB/HPUB argument list; -1 on bad arguments. *size gets
 * the total bytes to read (headers + payload). */
static int pub_args(msrt_nats_cmd *cmd, const char *s, size_t n, bool hpub,
                    int64_t *size) {
  const char *a[5];
  size_t al[5];
  size_t k = split_args(s, n, a, al, 4);
  size_t want = hpub ? 3 : 2;
  if (k != want && k != want + 1) return -1;
  cmd->op = MSRT_NATS_PUB;
  cmd->hpub = hpub;
  cmd->subject = a[0], cmd->subject_len = al[0];
  if (k == want + 1) cmd->reply = a[1], cmd->reply_len = al[1];
  *size = parse_size(a[k - 1], al[k - 1]);
  if (*size < 0) return -1;
  if (hpub) {
    int64_t h = parse_size(a[k - 2], al[k - 2]);
    if (h < 0 || h > *size) return -1;
    cmd->hdr_len = (size_t)h;
  }
  return 0;
}

static int sub_args(msrt_nats_cmd *cmd, const char *s, size_t n) {
  const char *a[4];
  size_t al[4];
  size_t k = split_args(s, n, a, al, 3);
  if (k != 2 && k != 3) return -1;
  cmd->op = MSRT_NATS_SUB;
  cmd->subject = a[0], cmd->subject_len = al[0];
  if (k == 3) cmd->queue = a[1], cmd->queue_len = al[1];
  cmd->sid = a[k - 1], cmd->sid_len = al[k - 1];
  return 0;
}

static int unsub_args(msrt_nats_cmd *cmd, const char *s, size_t n) {
  const char *a[3];
  size_t al[3];
  size_t k = split_args(s, n, a, al, 2);
  if (k != 1 && k != 2) return -1;
  cmd->op = MSRT_NATS_UNSUB;
  cmd->sid = a[0], cmd->sid_len = al[0];
  cmd->max_msgs = k == 2 ? parse_size(a[1], al[1]) : -1;
  return k == 2 && cmd->max_msgs < 0 ? -1 : 0;
}

/* The rest of a line after its operation word, blanks trimmed. */
static void rest_arg(msrt_nats_cmd *cmd, const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n) cmd->arg = s, cmd->arg_len = n;
}

/* Parse one control line (without its line end) into cmd. Returns 0, or
 * -1 for an unknown or malformed command; *size gets a PUB's byte count
 * (-1 for other commands). */
static int parse_line(const char *s, size_t n, msrt_nats_cmd *cmd,
                      int64_t *size) {
  memset(cmd, 0, sizeof *cmd);
  cmd->max_msgs = -1;
  *size = -1;
  size_t w = 0;
  while (w < n && s[w] != ' ' && s[w] != '\t') w++;
  const char *r = s + w;
  size_t rn = n - w;
  if (is_op(s, w, "PUB")) return pub_args(cmd, r, rn, false, size);
  if (is_op(s, w, "HPUB")) return pub_args(cmd, r, rn, true, size);
  if (is_op(s, w, "SUB")) return sub_args(cmd, r, rn);
  if (is_op(s, w, "UNSUB")) return unsub_args(cmd, r, rn);
  rest_arg(cmd, r, rn);
  if (is_op(s, w, "CONNECT")) cmd->op = MSRT_NATS_CONNECT;
  else if (is_op(s, w, "INFO")) cmd->op = MSRT_NATS_INFO;
  else if (is_op(s, w, "-ERR")) cmd->op = MSRT_NATS_ERR;
  else if (is_op(s, w, "PING")) cmd->op = MSRT_NATS_PING;
  else if (is_op(s, w, "PONG")) cmd->op = MSRT_NATS_PONG;
  else if (is_op(s, w, "+OK")) cmd->op = MSRT_NATS_OK;
  else return -1;
  if (cmd->op >= MSRT_NATS_PING && cmd->op <= MSRT_NATS_OK && cmd->arg_len)
    return -1;
  if ((cmd->op == MSRT_NATS_CONNECT || cmd->op == MSRT_NATS_INFO) &&
      !cmd->arg_len)
    return -1;
  return 0;
}

/* Hand a PUB whose headers + payload (size bytes, then CRLF) are at m. */
static int deliver_pub(msrt_nats_cmd *cmd, const char *m, size_t size,
                       msrt_nats_cmd_fn fn, void *ud, const char **err) {
  if (m[size] != '\r' || m[size + 1] != '\n') {
    *err = MSRT_NATS_ERR_UNKNOWN;
    return -1;
  }
  if (cmd->hpub) cmd->hdr = m;
  cmd->payload = m + cmd->hdr_len;
  cmd->payload_len = size - cmd->hdr_len;
  return fn(ud, cmd) ? 1 : 0;
}

/* A PUB split across reads: keep its subject, reply and the bytes so far
 * in one allocation (subject, reply, then size + 2 payload bytes). */
static int gather_pub(msrt_nats_parser *p, const msrt_nats_cmd *cmd,
                      size_t size, const char *have, size_t hn) {
  size_t front = cmd->subject_len + cmd->reply_len;
  p->msg = malloc(front + size + 2);
  if (!p->msg) return -1;
  memcpy(p->msg, cmd->subject, cmd->subject_len);
  if (cmd->reply_len) memcpy(p->msg + cmd->subject_len, cmd->reply,
                             cmd->reply_len);
  memcpy(p->msg + front, have, hn);
  p->pending = *cmd;
  p->arg_off[0] = front;
  p->msg_len = front + hn;
  p->msg_need = front + size + 2;
  p->state = ST_PAYLOAD;
  return 0;
}

/* Feed bytes to a payload being gathered; returns the bytes taken, or
 * (size_t)-1 with rc set when the command ended the parse. */
static size_t feed_payload(msrt_nats_parser *p, const char *buf, size_t len,
                           msrt_nats_cmd_fn fn, void *ud, const char **err,
                           int *rc) {
  size_t take = p->msg_need - p->msg_len;
  if (take > len) take = len;
  memcpy(p->msg + p->msg_len, buf, take);
  p->msg_len += take;
  if (p->msg_len < p->msg_need) return take;
  msrt_nats_cmd cmd = p->pending;
  cmd.subject = p->msg;
  cmd.reply = cmd.reply_len ? p->msg + cmd.subject_len : NULL;
  size_t front = p->arg_off[0];
  *rc = deliver_pub(&cmd, p->msg + front, p->msg_need - front - 2, fn, ud,
                    err);
  free(p->msg);
  p->msg = NULL;
  p->msg_len = p->msg_need = 0;
  p->state = ST_LINE;
  return *rc ? (size_t)-1 : take;
}

/* Keep the start of a control line until its end arrives. */
static int keep_line(msrt_nats_parser *p, const char *s, size_t n,
                     const char **err) {
  if (p->line_len + n > p->max_control + 2) {
    *err = MSRT_NATS_ERR_CONTROL;
    return -1;
  }
  if (!p->line) {
    p->line = malloc(p->max_control + 2);
    if (!p->line) {
      *err = NULL;
      return -1;
    }
  }
  memcpy(p->line + p->line_len, s, n);
  p->line_len += n;
  return 0;
}

/* One control line ending at nl (buf[i..nl)), with its payload when it is
 * a PUB. Returns the index after what was used, or (size_t)-1 with *rc. */
static size_t take_line(msrt_nats_parser *p, const char *buf, size_t len,
                        size_t i, size_t nl, msrt_nats_cmd_fn fn, void *ud,
                        const char **err, int *rc) {
  const char *s = buf + i;
  size_t n = nl - i;
  if (p->line_len) {
    if (keep_line(p, s, n, err)) return *rc = -1, (size_t)-1;
    s = p->line, n = p->line_len;
  }
  if (n && s[n - 1] == '\r') n--;
  p->line_len = 0;
  *err = MSRT_NATS_ERR_CONTROL;
  if (n > p->max_control) return *rc = -1, (size_t)-1;
  msrt_nats_cmd cmd;
  int64_t size;
  *err = MSRT_NATS_ERR_UNKNOWN;
  if (parse_line(s, n, &cmd, &size)) return *rc = -1, (size_t)-1;
  *err = NULL;
  size_t at = nl + 1;
  if (cmd.op != MSRT_NATS_PUB) {
    *rc = fn(ud, &cmd) ? 1 : 0;
    return *rc ? (size_t)-1 : at;
  }
  if ((uint64_t)size > p->max_payload) {
    *err = MSRT_NATS_ERR_PAYLOAD;
    return *rc = -1, (size_t)-1;
  }
  if (len - at >= (size_t)size + 2) {
    *rc = deliver_pub(&cmd, buf + at, (size_t)size, fn, ud, err);
    return *rc ? (size_t)-1 : at + (size_t)size + 2;
  }
  if (gather_pub(p, &cmd, (size_t)size, buf + at, len - at))
    return *rc = -1, (size_t)-1;
  return len;
}

/* msrt_nats_parse's work: 0, 1 (fn asked to stop) or -1 (*err says why;
 * NULL: out of memory). */
static int parse(msrt_nats_parser *p, const char *buf, size_t len,
                 msrt_nats_cmd_fn fn, void *ud, const char **err) {
  const char *dummy;
  if (!err) err = &dummy;
  *err = NULL;
  size_t i = 0;
  int rc = 0;
  while (i < len) {
    size_t next;
    if (p->state == ST_PAYLOAD) {
      size_t took = feed_payload(p, buf + i, len - i, fn, ud, err, &rc);
      next = took == (size_t)-1 ? (size_t)-1 : i + took;
    } else {
      const char *nl = memchr(buf + i, '\n', len - i);
      if (!nl) return keep_line(p, buf + i, len - i, err) ? -1 : 0;
      next = take_line(p, buf, len, i, (size_t)(nl - buf), fn, ud, err, &rc);
    }
    if (next == (size_t)-1) {
      if (rc < 0) msrt_nats_parser_free(p);
      return rc < 0 ? -1 : 1;
    }
    i = next;
  }
  return 0;
}

msrt_code msrt_nats_parse(msrt_nats_parser *p, const char *buf, size_t len,
                          msrt_nats_cmd_fn fn, void *ud, const char **err) {
  const char *why;
  int rc = parse(p, buf, len, fn, ud, &why);
  if (err) *err = why;
  return rc == 0   ? MSRT_E_OK
         : rc > 0  ? MSRT_E_CLOSED
         : why     ? MSRT_E_INVALID_ARG
                   : MSRT_E_NOMEM;
}
