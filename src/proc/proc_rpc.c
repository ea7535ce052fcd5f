/* The jsonrpc and lsp codecs of process children (proc/rpc.h, README
 * "Processes"): their stdout messages into msrt messages, msrt messages
 * into their stdin. The framing is proc/framer.h's; the rest of a child's
 * life is proc.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc/internal.h"
#include "proc/rpc.h"
#include "router/subject.h"

bool msrt_proc_is_rpc(const msrt_proc *p) {
  return p->codec == MSRT_CODEC_JSONRPC || p->codec == MSRT_CODEC_LSP;
}

/* ---- stdout of jsonrpc/lsp children (proc/rpc.h) ------------------------ */

static msrt_code rpc_write(msrt_proc *p, msrt_sbuf *body, msrt_error *err);

/* The child's requests awaiting answers: a ring of REPLY_MAX; the oldest
 * is forgotten when it is full (its answer is then refused as bad input). */
static long find_call(const msrt_proc *p, uint64_t n) {
  for (size_t i = 0; i < p->cn; i++) {
    size_t at = (p->chead + i) % REPLY_MAX;
    if (p->calls[at].n == n) return (long)at;
  }
  return -1;
}

static void forget_call(msrt_proc *p, size_t at) {
  free(p->calls[at].id);
  p->calls[at] = p->calls[p->chead];
  p->calls[p->chead] = (call){0, NULL};
  p->chead = (p->chead + 1) % REPLY_MAX;
  p->cn--;
}

static uint64_t add_call(msrt_proc *p, char *id) {
  if (p->cn == REPLY_MAX) forget_call(p, p->chead);
  uint64_t n = ++p->call_next;
  p->calls[(p->chead + p->cn++) % REPLY_MAX] = (call){n, id};
  return n;
}

/* The handed reply of our request id (ring index), or -1. */
static long find_rpc_reply(const msrt_proc *p, uint64_t id) {
  for (size_t i = 0; i < p->rn; i++) {
    size_t at = (p->rhead + i) % REPLY_MAX;
    if (p->replies[at].rpc_id == id) return (long)at;
  }
  return -1;
}

uint64_t msrt_proc_rpc_id(const msrt_proc *p, const char *reply, size_t n) {
  for (size_t i = 0; msrt_proc_is_rpc(p) && i < p->rn; i++) {
    const handed *h = &p->replies[(p->rhead + i) % REPLY_MAX];
    if (h->rpc_id && strlen(h->s) == n && memcmp(h->s, reply, n) == 0)
      return h->rpc_id;
  }
  return 0;
}

/* "<publish_as>.<kind>.<method>" in s (NUL-terminated), when it is a
 * valid subject; else reported as bad output. */
static bool rpc_subject(msrt_proc *p, msrt_sbuf *s, const char *kind,
                        const char *method, const char *line, size_t len) {
  msrt_sbuf_put(s, p->publish_as, p->pa_len);
  msrt_sbuf_putc(s, '.');
  msrt_sbuf_put(s, kind, strlen(kind));
  msrt_sbuf_putc(s, '.');
  msrt_sbuf_put(s, method, strlen(method));
  msrt_sbuf_putc(s, 0);
  if (!s->oom && msrt_subject_validate(s->p, s->len - 1, 0, NULL) == MSRT_E_OK)
    return true;
  char detail[160];
  snprintf(detail, sizeof detail, "method \"%.100s\" does not make a valid "
           "subject", method);
  msrt_proc_bad(p, "invalid_method", detail, line, len, len);
  return false;
}

/* A response to a request of ours: its result (or error) is the reply. */
static void rpc_response(msrt_proc *p, const msrt_rpc_msg *m,
                         const char *line, size_t len) {
  uint64_t id;
  long at = msrt_rpc_our_id(m->id, &id) ? find_rpc_reply(p, id) : -1;
  if (at < 0) {
    msrt_proc_bad(p, "unknown_id",
                  "a response whose id is no request outstanding", line, len,
                  len);
    return;
  }
  char *reply = strdup(p->replies[at].s);
  msrt_sbuf hdr = {0}, *b = &p->scratch;
  msrt_sbuf_reset(b);
  if (m->error) { /* Rpc-Error: code, Description: message, data */
    char num[32];
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(m->error, "message");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(m->error, "data");
    snprintf(num, sizeof num, "%.0f",
             cJSON_GetObjectItemCaseSensitive(m->error, "code")->valuedouble);
    msrt_sbuf_put(&hdr, "Rpc-Error", 10);
    msrt_sbuf_put(&hdr, num, strlen(num) + 1);
    msrt_sbuf_put(&hdr, "Description", 12);
    for (const char *c = msg->valuestring; *c; c++) /* a header value: one line */
      msrt_sbuf_putc(&hdr, *c == '\r' || *c == '\n' ? ' ' : *c);
    msrt_sbuf_putc(&hdr, 0);
    if (data) msrt_json_to_lua(data, b);
    else msrt_sbuf_putc(b, 0x00); /* nil */
  } else {
    msrt_json_to_lua(m->result, b);
  }
  if (reply)
    msrt_proc_publish(p, reply, strlen(reply), NULL, 0, &hdr, b, line, len);
  free(reply);
  msrt_sbuf_free(&hdr);
}

static void rpc_notify(msrt_proc *p, const msrt_rpc_msg *m, const char *line,
                       size_t len) {
  msrt_sbuf subj = {0};
  if (rpc_subject(p, &subj, "notify", m->method, line, len)) {
    msrt_sbuf_reset(&p->scratch);
    if (m->params) msrt_json_to_lua(m->params, &p->scratch);
    else msrt_sbuf_putc(&p->scratch, 0x00);
    msrt_proc_publish(p, subj.p, subj.len - 1, NULL, 0, NULL, &p->scratch, line,
                      len);
  }
  msrt_sbuf_free(&subj);
}

/* Answer a request of the child's at once with an error. */
static void rpc_refuse(msrt_proc *p, const cJSON *id, long code,
                       const char *msg) {
  char *idt = cJSON_PrintUnformatted(id);
  msrt_sbuf b = {0};
  msrt_error err;
  if (idt) {
    msrt_rpc_put_error(&b, idt, strlen(idt), code, msg, strlen(msg), NULL, 0);
    rpc_write(p, &b, &err);
  }
  free(idt);
}

/* A request from the child: a request on "<publish_as>.request.<method>",
 * its answer written back with the child's id (rpc_answer). */
static void rpc_request(msrt_proc *p, const msrt_rpc_msg *m, const char *line,
                        size_t len) {
  msrt_sbuf subj = {0}, reply = {0};
  char *id = cJSON_PrintUnformatted(m->id);
  if (!id || !rpc_subject(p, &subj, "request", m->method, line, len)) {
    rpc_refuse(p, m->id, MSRT_RPC_METHOD_NOT_FOUND, "method not found");
    free(id);
    msrt_sbuf_free(&subj);
    return;
  }
  uint64_t n = add_call(p, id);
  char num[32];
  msrt_sbuf_put(&reply, p->inbox, p->inbox_len);
  msrt_sbuf_put(&reply, num, (size_t)snprintf(num, sizeof num, ".%llu",
                                              (unsigned long long)n));
  msrt_sbuf_reset(&p->scratch);
  if (m->params) msrt_json_to_lua(m->params, &p->scratch);
  else msrt_sbuf_putc(&p->scratch, 0x00);
  msrt_code rc =
      msrt_proc_publish_as(p, subj.p, subj.len - 1, reply.p, reply.len, true,
                           NULL, &p->scratch, line, len);
  if (rc != MSRT_E_OK) { /* nobody will answer: the child hears it now */
    long at = find_call(p, n);
    if (at >= 0) forget_call(p, (size_t)at);
    rpc_refuse(p, m->id, rc == MSRT_E_NO_RESPONDERS ? MSRT_RPC_METHOD_NOT_FOUND
                                                    : MSRT_RPC_INTERNAL_ERROR,
               rc == MSRT_E_NO_RESPONDERS ? "no responders" : "refused");
  }
  msrt_sbuf_free(&subj);
  msrt_sbuf_free(&reply);
}

static void on_rpc(msrt_proc *p, const cJSON *v, const char *line, size_t len) {
  msrt_rpc_msg m;
  msrt_rpc_classify(v, &m);
  if (m.kind == MSRT_RPC_RESPONSE) rpc_response(p, &m, line, len);
  else if (m.kind == MSRT_RPC_NOTIFICATION) rpc_notify(p, &m, line, len);
  else if (m.kind == MSRT_RPC_REQUEST) rpc_request(p, &m, line, len);
  else
    msrt_proc_bad(p, "invalid_rpc", m.why, line, len, len);
}

/* One message or a batch (an array: each element on its own). */
void msrt_proc_rpc_in(msrt_proc *p, const char *line, size_t len) {
  char detail[128];
  const char *reason;
  if (p->codec == MSRT_CODEC_JSONRPC && msrt_proc_blank(line, len)) return;
  cJSON *v = msrt_json_parse(line, len, &reason, detail, sizeof detail);
  if (!v) {
    msrt_proc_bad(p, reason, detail, line, len, len);
    return;
  }
  if (cJSON_IsArray(v) && !v->child)
    msrt_proc_bad(p, "invalid_rpc", "an empty batch", line, len, len);
  if (cJSON_IsArray(v))
    for (const cJSON *c = v->child; c; c = c->next) on_rpc(p, c, line, len);
  else
    on_rpc(p, v, line, len);
  cJSON_Delete(v);
}

/* ---- stdin of jsonrpc/lsp children (proc/rpc.h) ------------------------- */

/* Whether subject s (n bytes) is prefix.<something>: the tail's offset. */
static size_t tail_of(const char *prefix, size_t plen, const char *s,
                      size_t n) {
  if (!prefix || n <= plen + 1 || memcmp(s, prefix, plen) != 0 || s[plen] != '.')
    return 0;
  return plen + 1;
}

/* The value of header name in e's "name\0value\0" pairs, or NULL. */
static const char *env_header(const msrt_envelope *e, const char *name) {
  const char *h = (const char *)e->headers, *end = h + e->headers_len;
  while (h && h < end) {
    size_t kl = strnlen(h, (size_t)(end - h));
    const char *v = h + kl + 1;
    if (v >= end) return NULL;
    if (strcmp(h, name) == 0) return v;
    h = v + strnlen(v, (size_t)(end - v)) + 1;
  }
  return NULL;
}

/* A message body framed for the child: jsonrpc a line, lsp a
 * Content-Length header block (the body bounded by max_line_bytes). */
msrt_code msrt_proc_rpc_frame(msrt_proc *p, msrt_sbuf *b, msrt_error *err) {
  if (p->codec == MSRT_CODEC_JSONRPC) {
    msrt_sbuf_putc(b, '\n');
    return MSRT_E_OK;
  }
  msrt_code rc = msrt_proc_check_line(p, b, err);
  if (rc != MSRT_E_OK) return rc;
  char head[48];
  msrt_sbuf out = {0};
  msrt_sbuf_put(&out, head, (size_t)snprintf(head, sizeof head,
                "Content-Length: %zu\r\n\r\n", b->len));
  msrt_sbuf_put(&out, b->p, b->len);
  msrt_sbuf_free(b);
  *b = out;
  return MSRT_E_OK;
}

/* Queue a message for the child that no envelope carries. */
static msrt_code rpc_write(msrt_proc *p, msrt_sbuf *body, msrt_error *err) {
  msrt_code rc = msrt_proc_rpc_frame(p, body, err);
  return msrt_proc_send_done(p, body, rc, NULL, false, err);
}

/* The answer (the envelope e on "<inbox>.<n>") to the child's request n:
 * its result, or an error for a no-responders status or an Rpc-Error. */
static msrt_code put_rpc_answer(msrt_proc *p, msrt_sbuf *b,
                                const msrt_envelope *e, size_t at,
                                msrt_error *err) {
  char *end;
  unsigned long long n = strtoull(e->subject + at, &end, 10);
  long c = end == e->subject + e->subject_len ? find_call(p, n) : -1;
  if (c < 0)
    return msrt_error_set(err, MSRT_E_BAD_INPUT, "process %s: an answer to "
                          "no request the child has outstanding", p->name);
  const char *id = p->calls[c].id, *status = env_header(e, "Status");
  const char *rpc_err = env_header(e, "Rpc-Error");
  const char *desc = env_header(e, "Description");
  msrt_sbuf data = {0};
  msrt_code rc =
      msrt_proc_put_data_json(&data, e->payload, e->payload_len, e->flags, err);
  bool none = data.len == 4 && memcmp(data.p, "null", 4) == 0;
  if (status && strcmp(status, "503") == 0)
    msrt_rpc_put_error(b, id, strlen(id), MSRT_RPC_METHOD_NOT_FOUND,
                       "no responders", 13, NULL, 0);
  else if (rpc_err)
    msrt_rpc_put_error(b, id, strlen(id), strtol(rpc_err, NULL, 10),
                       desc ? desc : "error", strlen(desc ? desc : "error"),
                       data.p, none ? 0 : data.len);
  else msrt_rpc_put_result(b, id, strlen(id), data.p, data.len);
  msrt_sbuf_free(&data);
  forget_call(p, (size_t)c);
  return rc;
}

/* A message on "<rpc>.<method>": a request with a fresh id when it has a
 * reply subject (*rid), else a notification; its data the params. */
msrt_code msrt_proc_rpc_put_env(msrt_proc *p, msrt_sbuf *b,
                                const msrt_envelope *e, uint64_t *rid,
                                msrt_error *err) {
  size_t at = tail_of(p->inbox, p->inbox_len, e->subject, e->subject_len);
  if (at) return put_rpc_answer(p, b, e, at, err);
  at = tail_of(p->rpc, p->rpc_len, e->subject, e->subject_len);
  if (!at)
    return msrt_error_set(err, MSRT_E_BAD_INPUT, "process %s: \"%.*s\" is "
                          "not a method subject (%s.<method>)", p->name,
                          (int)(e->subject_len > 200 ? 200 : e->subject_len),
                          e->subject, p->rpc);
  msrt_sbuf params = {0};
  msrt_code rc = msrt_proc_put_data_json(&params, e->payload, e->payload_len,
                                         e->flags, err);
  size_t plen =
      params.len == 4 && memcmp(params.p, "null", 4) == 0 ? 0 : params.len;
  if (rc == MSRT_E_OK && plen && params.p[0] != '{' && params.p[0] != '[')
    rc = msrt_error_set(err, MSRT_E_BAD_INPUT, "process %s: params must be a "
                        "table (a JSON object or array) or nil", p->name);
  *rid = e->reply ? ++p->rpc_next : 0;
  if (rc == MSRT_E_OK)
    msrt_rpc_put_call(b, *rid, e->subject + at, e->subject_len - at, params.p,
                      plen);
  msrt_sbuf_free(&params);
  return rc;
}
