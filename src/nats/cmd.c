/* What a client's commands do (nats/conn.h): CONNECT, PUB/HPUB, SUB,
 * UNSUB, PING/PONG, in nats-server's order of checks and with its words
 * (server/client.go: processConnect, processPub, processSub, processUnsub). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats/auth.h"
#include "nats/internal.h"
#include "router/subject.h"

static void send_str(msrt_nats_conn *c, const char *s) {
  msrt_nats_conn_send(c, s, strlen(s));
}

static void send_err(msrt_nats_conn *c, const char *text) {
  msrt_sbuf e = {0};
  msrt_nats_put_err(&e, text);
  msrt_nats_conn_send(c, e.p, e.len);
  msrt_sbuf_free(&e);
}

static void ok(msrt_nats_conn *c) {
  if (c->opts.verbose) send_str(c, "+OK\r\n");
}

/* -ERR 'Permissions Violation for <what> to "<subject>"' (Go's %q). */
static void violation(msrt_nats_conn *c, const char *what, const char *s,
                      size_t n) {
  char text[512];
  snprintf(text, sizeof text, "Permissions Violation for %s to \"%.*s\"",
           what, (int)(n > 400 ? 400 : n), s);
  send_err(c, text);
}

static int do_connect(msrt_nats_conn *c, const msrt_nats_cmd *cmd) {
  msrt_nats_connect o;
  if (msrt_nats_connect_parse(cmd->arg, cmd->arg_len, &o) != MSRT_E_OK) {
    msrt_nats_connect_free(&o);
    msrt_nats_conn_close(c, MSRT_NATS_ERR_UNKNOWN);
    return 1;
  }
  msrt_nats_connect_free(&c->opts);
  c->opts = o;
  if (o.no_responders && !o.headers) {
    msrt_nats_conn_close(c, MSRT_NATS_ERR_NO_RESP_HDR);
    return 1;
  }
  msrt_nats_server *s = c->srv;
  if (s->has_auth) {
    msrt_nats_perms *p = NULL;
    if (s->auth.authorize(s->auth.ud, &c->opts, &p, c->user,
                          sizeof c->user) != MSRT_E_OK) {
      s->stats.refused++;
      msrt_nats_conn_close(c, MSRT_NATS_ERR_AUTH);
      return 1;
    }
    msrt_nats_conn_set_perms(c, p);
    msrt_nats_resp_rules(c);
  }
  c->connected = true;
  c->no_echo = !o.echo;
  pthread_mutex_lock(&c->mu);
  c->headers = o.headers;
  pthread_mutex_unlock(&c->mu);
  ok(c);
  return 0;
}

/* The 503 nats-server answers a request nobody takes with: to the
 * requester's own subscription matching the reply subject. */
static void no_responders(msrt_nats_conn *c, const char *reply, size_t rlen) {
  sid_table *t = &c->subs;
  for (size_t i = 0; i < t->cap; i++) {
    nats_sub *sub = t->slot[i];
    if (!sub || !msrt_subject_matchesn(sub->subject, strlen(sub->subject),
                                       reply, rlen))
      continue;
    static const char hdr[] = "NATS/1.0 503\r\n\r\n";
    msrt_sbuf m = {0};
    msrt_nats_put_hmsg(&m, reply, rlen, sub->sid, sub->sid_len, NULL, 0, hdr,
                       sizeof hdr - 1, "", 0);
    msrt_nats_conn_send(c, m.p, m.len);
    msrt_sbuf_free(&m);
    return;
  }
}

/* Whether c may publish to subject: its publish list, or a reply it was
 * handed (allow_responses; one use taken). */
static bool may_publish(msrt_nats_conn *c, const char *subject, size_t len) {
  return msrt_nats_perms_publish(c->perms, subject, len) ||
         msrt_nats_resp_take(c, subject, len);
}

/* After routing: the resolved subject (a reply already allowed before
 * routing is not taken twice). */
static bool permit_pub(void *ud, const char *subject, size_t len) {
  msrt_nats_conn *c = ud;
  if (c->pub_subject && len == c->pub_len &&
      memcmp(subject, c->pub_subject, len) == 0)
    return true;
  return may_publish(c, subject, len);
}

/* The envelope of a PUB: its payload as a Lua string, its header block as
 * msrt's pairs. NULL when refused (*err filled; err->code MSRT_E_OK for a
 * header block that is not NATS'). */
static msrt_envelope *make_env(msrt_nats_conn *c, const msrt_nats_cmd *cmd,
                               msrt_error *err) {
  msrt_sbuf_reset(&c->scratch);
  msrt_sbuf_reset(&c->hscratch);
  msrt_lua_put_string(&c->scratch, cmd->payload, cmd->payload_len);
  if (cmd->hdr_len &&
      msrt_nats_hdr_to_pairs(&c->hscratch, cmd->hdr, cmd->hdr_len) !=
          MSRT_E_OK) {
    err->code = MSRT_E_OK;
    return NULL;
  }
  if (c->scratch.oom || c->hscratch.oom) {
    err->code = MSRT_E_NOMEM;
    return NULL;
  }
  return msrt_bus_make(c->srv->bus, cmd->subject, cmd->subject_len,
                       cmd->reply, cmd->reply_len, c->hscratch.p,
                       c->hscratch.len, c->scratch.p, c->scratch.len,
                       MSRT_PRIORITY_DEFAULT, 0, err);
}

/* Route e as c's PUB: c's own subscriptions decline it when it said echo:
 * false (msrt_nats_publishing), and a subject a routing table carries it
 * to is checked again (permit_pub). Returns msrt_bus_publish_as's code
 * (MSRT_E_PERMISSION for that refusal); the copies in *delivered. */
static msrt_code route_pub(msrt_nats_conn *c, const msrt_nats_cmd *cmd,
                           msrt_envelope *e, size_t *delivered) {
  msrt_error err = {0};
  c->pub_subject = cmd->subject, c->pub_len = cmd->subject_len;
  msrt_nats_conn *outer = msrt_nats_publishing;
  msrt_nats_publishing = c;
  msrt_code rc = msrt_bus_publish_as(c->srv->bus, e,
                                     c->perms ? permit_pub : NULL, c,
                                     delivered, NULL, &err);
  msrt_nats_publishing = outer;
  c->pub_subject = NULL;
  return rc;
}

static int do_pub(msrt_nats_conn *c, const msrt_nats_cmd *cmd) {
  msrt_nats_server *s = c->srv;
  if (cmd->hpub && !c->opts.headers) {
    /* nats-server ends such a client as a protocol violation, with no
     * -ERR: it never said it speaks headers */
    msrt_nats_conn_close(c, NULL);
    return 1;
  }
  s->stats.in_msgs++;
  s->stats.in_bytes += cmd->payload_len + cmd->hdr_len;
  if (c->opts.pedantic &&
      msrt_subject_validate(cmd->subject, cmd->subject_len, 0, NULL) !=
          MSRT_E_OK) {
    send_err(c, MSRT_NATS_ERR_PUB_SUBJECT);
    return 0;
  }
  if (!may_publish(c, cmd->subject, cmd->subject_len)) {
    violation(c, "Publish", cmd->subject, cmd->subject_len);
    return 0;
  }
  msrt_error err = {0};
  msrt_envelope *e = make_env(c, cmd, &err);
  if (!e) {
    if (err.code == MSRT_E_OK) msrt_nats_conn_close(c, MSRT_NATS_ERR_UNKNOWN);
    else if (err.code == MSRT_E_PAYLOAD_TOO_BIG)
      msrt_nats_conn_close(c, MSRT_NATS_ERR_PAYLOAD);
    else if (err.code == MSRT_E_INVALID_SUBJECT && c->opts.pedantic)
      send_err(c, MSRT_NATS_ERR_PUB_SUBJECT);
    return c->closed;
  }
  ok(c); /* before the message is routed, as nats-server answers */
  size_t delivered = 0;
  msrt_code rc = route_pub(c, cmd, e, &delivered);
  msrt_env_unref(e);
  if (rc == MSRT_E_PERMISSION) {
    violation(c, "Publish", cmd->subject, cmd->subject_len);
    return 0;
  }
  if (delivered == 0 && cmd->reply && c->opts.no_responders)
    no_responders(c, cmd->reply, cmd->reply_len);
  return 0;
}

static void remove_sub(msrt_nats_conn *c, nats_sub *sub) {
  msrt_sid_del(&c->subs, sub);
  msrt_bus_unsubscribe(c->srv->bus, sub->bus_id);
  msrt_nats_sub_unref(sub);
}

static int do_sub(msrt_nats_conn *c, const msrt_nats_cmd *cmd) {
  msrt_nats_server *s = c->srv;
  if (msrt_pattern_validate(cmd->subject, cmd->subject_len, 0, NULL) !=
          MSRT_E_OK ||
      (cmd->queue &&
       msrt_queue_validate(cmd->queue, cmd->queue_len, 0, NULL) !=
           MSRT_E_OK)) {
    send_err(c, MSRT_NATS_ERR_SUBJECT);
    return 0;
  }
  if (!msrt_nats_perms_subscribe(c->perms, cmd->subject, cmd->subject_len,
                                 cmd->queue, cmd->queue_len)) {
    violation(c, "Subscription", cmd->subject, cmd->subject_len);
    return 0;
  }
  if (msrt_sid_get(&c->subs, cmd->sid, cmd->sid_len)) { /* as nats-server */
    ok(c);
    return 0;
  }
  if (s->opts.max_subs && c->subs.n >= s->opts.max_subs) {
    send_err(c, MSRT_NATS_ERR_MAX_SUBS);
    return 0;
  }
  nats_sub *sub = msrt_nats_sub_new(c, cmd->sid, cmd->sid_len, cmd->subject,
                                    cmd->subject_len, cmd->queue,
                                    cmd->queue_len);
  if (!sub || msrt_sid_put(&c->subs, sub) != 0) {
    if (sub) msrt_nats_sub_unref(sub);
    send_err(c, MSRT_NATS_ERR_SUBJECT);
    return 0;
  }
  msrt_nats_sub_filter(sub); /* before its first delivery */
  if (msrt_bus_subscribe(s->bus, cmd->subject, cmd->subject_len, cmd->queue,
                         cmd->queue_len, msrt_nats_ep(sub), &sub->bus_id,
                         NULL) != MSRT_E_OK) {
    msrt_sid_del(&c->subs, sub);
    msrt_nats_sub_unref(sub);
    send_err(c, MSRT_NATS_ERR_SUBJECT);
    return 0;
  }
  ok(c);
  return 0;
}

static int do_unsub(msrt_nats_conn *c, const msrt_nats_cmd *cmd) {
  nats_sub *sub = msrt_sid_get(&c->subs, cmd->sid, cmd->sid_len);
  if (sub && cmd->max_msgs >= 0 && atomic_load(&sub->count) < cmd->max_msgs)
    atomic_store(&sub->max, cmd->max_msgs); /* deliveries stop there */
  else if (sub)
    remove_sub(c, sub);
  ok(c);
  return 0;
}

/* do_connect, do_pub, ... answer 1 to stop the parse, as on_cmd does. */
static bool on_cmd(void *ud, const msrt_nats_cmd *cmd) {
  msrt_nats_conn *c = ud;
  if (c->closed) return true;
  if (!c->connected && cmd->op != MSRT_NATS_CONNECT && c->srv->has_auth &&
      c->srv->auth.required) {
    c->srv->stats.refused++;
    msrt_nats_conn_close(c, MSRT_NATS_ERR_AUTH);
    return true;
  }
  switch (cmd->op) {
  case MSRT_NATS_CONNECT: return do_connect(c, cmd);
  case MSRT_NATS_PUB: return do_pub(c, cmd);
  case MSRT_NATS_SUB: return do_sub(c, cmd);
  case MSRT_NATS_UNSUB: return do_unsub(c, cmd);
  case MSRT_NATS_PING: send_str(c, "PONG\r\n"); return false;
  case MSRT_NATS_PONG: c->pings_out = 0; return false;
  case MSRT_NATS_ERR: msrt_nats_conn_close(c, NULL); return true;
  default: return false; /* +OK, INFO: nothing to do */
  }
}

msrt_code msrt_nats_conn_feed(msrt_nats_conn *c, const char *buf,
                              size_t len) {
  if (c->closed) return MSRT_E_CLOSED;
  msrt_nats_conn_ref(c); /* a command may end the connection */
  const char *err = NULL;
  msrt_code rc = msrt_nats_parse(&c->parser, buf, len, on_cmd, c, &err);
  if (rc == MSRT_E_INVALID_ARG || rc == MSRT_E_NOMEM)
    msrt_nats_conn_close(c, err ? err : MSRT_NATS_ERR_UNKNOWN);
  rc = c->closed ? MSRT_E_CLOSED : MSRT_E_OK;
  msrt_nats_server_flush(c->srv);
  msrt_nats_conn_unref(c);
  return rc;
}

/* One connection decided again (msrt_nats_server_reauthorize). */
static void reauthorize(msrt_nats_conn *c) {
  msrt_nats_server *s = c->srv;
  msrt_nats_perms *p = NULL;
  if (!c->connected) return; /* its CONNECT will be decided */
  if (s->has_auth && s->auth.authorize(s->auth.ud, &c->opts, &p, c->user,
                                       sizeof c->user) != MSRT_E_OK) {
    msrt_nats_conn_close(c, MSRT_NATS_ERR_AUTH);
    return;
  }
  msrt_nats_conn_set_perms(c, p);
  msrt_nats_resp_rules(c);
  sid_table *t = &c->subs;
  for (size_t i = 0; i < t->cap;) {
    nats_sub *sub = t->slot[i];
    if (!sub || msrt_nats_perms_subscribe(p, sub->subject,
                                          strlen(sub->subject), sub->queue,
                                          sub->queue ? strlen(sub->queue) : 0)) {
      if (sub) msrt_nats_sub_filter(sub); /* kept, under the new deny list */
      i++;
      continue;
    }
    violation(c, "Subscription", sub->subject, strlen(sub->subject));
    remove_sub(c, sub); /* may move another entry into slot i */
  }
  msrt_nats_conn_flush(c);
}

void msrt_nats_server_reauthorize(msrt_nats_server *s) {
  for (msrt_nats_conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* only c may close (and leave the list) */
    reauthorize(c);
  }
}
