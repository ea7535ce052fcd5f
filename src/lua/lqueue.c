/* msrt.core's durable queues (queue/queue.h) for the hub's Lua:
 * queue_open and the queue handle's methods (subscribe, flush_begin,
 * flush_seal, flush_state, flush_run, flush_end, intake, get, scan, stats, purge, close), queue_puback; lua/msrt/queue.lua is their caller. Hub thread
 * only. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lrt.h"
#include "proc/codec.h"
#include "queue/queue.h"

static const char QUEUE_META[] = "msrt.queue";

typedef struct {
  msrt_queue *q; /* NULL once closed */
} lqueue;

static lqueue *check_q(lua_State *L) {
  lqueue *lq = luaL_checkudata(L, 1, QUEUE_META);
  if (!lq->q) luaL_error(L, "the queue is closed");
  return lq;
}

/* queue_open{name, path, sync_full, max_msgs, max_bytes, discard = "old" |
 * "new", dedupe_window_ms, wake_id, spin_us} -> queue | nil, err (queue/queue.h
 * msrt_queue_open's errors) */
static int l_queue_open(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_queue_config c = {0};
  lua_getfield(L, 1, "name");
  lua_getfield(L, 1, "path");
  c.name = luaL_checkstring(L, -2);
  c.path = luaL_checkstring(L, -1);
  c.sync_full = msrt_lua_field_bool(L, 1, "sync_full");
  const char *d = msrt_lua_field_str(L, 1, "discard");
  c.discard = d && strcmp(d, "new") == 0 ? MSRT_QUEUE_DISCARD_NEW
                                         : MSRT_QUEUE_DISCARD_OLD;
  c.max_msgs = (uint64_t)msrt_lua_field_size(L, 1, "max_msgs");
  c.max_bytes = (uint64_t)msrt_lua_field_size(L, 1, "max_bytes");
  c.dedupe_window_ms = (uint64_t)msrt_lua_field_size(L, 1, "dedupe_window_ms");
  c.wake_id = (uint64_t)msrt_lua_field_size(L, 1, "wake_id");
  c.spin_ns = (uint64_t)msrt_lua_field_size(L, 1, "spin_us") * 1000u;
  c.bus = msrt_lua_rt(L)->bus;
  lqueue *lq = lua_newuserdata(L, sizeof *lq);
  lq->q = NULL;
  luaL_getmetatable(L, QUEUE_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  lq->q = msrt_queue_open(&c, &err);
  if (!lq->q) return msrt_lua_fail_err(L, &err);
  return 1;
}

int msrt_lua_queue_subscribe(lua_State *L, msrt_endpoint ep) {
  size_t plen;
  const char *p = luaL_checklstring(L, 2, &plen);
  uint64_t sid;
  msrt_error err;
  if (msrt_bus_subscribe(msrt_lua_rt(L)->bus, p, plen, NULL, 0, ep, &sid,
                         &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)sid);
  return 1;
}

void msrt_lua_queue_msg_fields(lua_State *L, const msrt_envelope *e) {
  lua_pushlstring(L, e->subject, e->subject_len);
  lua_setfield(L, -2, "subject");
  lua_pushlstring(L, (const char *)e->payload, e->payload_len);
  lua_setfield(L, -2, "payload");
  if (e->headers_len) {
    lua_pushlstring(L, (const char *)e->headers, e->headers_len);
    lua_setfield(L, -2, "hdr");
  }
  lua_pushinteger(L, e->flags);
  lua_setfield(L, -2, "flags");
  lua_pushinteger(L, e->priority);
  lua_setfield(L, -2, "priority");
}

/* q:subscribe(pattern) -> sub_id | nil, err: the queue captures pattern */
static int l_subscribe(lua_State *L) {
  return msrt_lua_queue_subscribe(L, msrt_ep_queue(check_q(L)->q));
}

/* A Lua array of seqs at idx (nil: none) into a malloc'd vector. */
static uint64_t *seqs(lua_State *L, int idx, size_t *n) {
  *n = lua_istable(L, idx) ? lua_objlen(L, idx) : 0;
  if (!*n) return NULL;
  uint64_t *v = malloc(*n * sizeof *v);
  if (!v) luaL_error(L, "not enough memory");
  for (size_t i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    v[i] = (uint64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  return v;
}

/* col[k] = the bytes s[0..len) (nothing when s is NULL), taken from
 * col[k - 1] when the previous result had the same bytes (p, plen): a
 * batch's messages share their reply, subject and headers, and a string
 * taken again is not hashed and interned again. */
static void put_str(lua_State *L, int col, int k, const char *s, size_t len,
                    const char *p, size_t plen) {
  if (!s) return;
  if (p && plen == len && memcmp(s, p, len) == 0)
    lua_rawgeti(L, col, k - 1);
  else
    lua_pushlstring(L, s, len);
  lua_rawseti(L, col, k);
}

/* q:flush_begin(deliver, acks, dead, deliver_new[, open]) -> true | nil,
 * err: one transaction of these lists and the intake, on the queue's
 * writer thread (msrt_queue_flush_begin; its outcome comes with an
 * MSRT_IN_QUEUE item); with open, the intake as it is at q:flush_seal()
 * (msrt_queue_flush_open). */
static int l_flush_begin(lua_State *L) {
  lqueue *lq = check_q(L);
  msrt_queue_ops ops;
  ops.deliver = seqs(L, 2, &ops.ndeliver);
  ops.acks = seqs(L, 3, &ops.nacks);
  ops.dead = seqs(L, 4, &ops.ndead);
  ops.deliver_new = (size_t)luaL_optnumber(L, 5, 0);
  msrt_error err;
  msrt_code c = lua_toboolean(L, 6) ? msrt_queue_flush_open(lq->q, &ops, &err)
                                     : msrt_queue_flush_begin(lq->q, &ops, &err);
  free((void *)ops.deliver), free((void *)ops.acks), free((void *)ops.dead);
  if (c != MSRT_E_OK) return msrt_lua_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* q:flush_seal(): the flush in flight may take the intake now */
static int l_flush_seal(lua_State *L) {
  msrt_queue_flush_seal(check_q(L)->q);
  return 0;
}

/* q:flush_state() -> 0 (none in flight), 1 (running), 2 (done) */
static int l_flush_state(lua_State *L) {
  lua_pushinteger(L, msrt_queue_flush_state(check_q(L)->q));
  return 1;
}

/* q:flush_run() -> q:flush_state()'s, after running the flush in flight
 * here when the writer has not begun it (msrt_queue_flush_run) */
static int l_flush_run(lua_State *L) {
  lua_pushinteger(L, msrt_queue_flush_run(check_q(L)->q));
  return 1;
}


/* A flush's results kept in C until the hub hands their messages out
 * (l_flush_end's `later`): the envelopes stay referenced until then. */
static const char RESULTS_META[] = "msrt.queue.results";

typedef struct {
  msrt_queue_result *res; /* NULL once their fields were taken */
  size_t n;
} lresults;

/* The outcome columns of a flush, what its PubAcks and books need: {n,
 * seq, reply, code, duplicate}, each column an array indexed 1..n (reply,
 * code and duplicate hold nil where a result has none). At t. */
static void push_outcome(lua_State *L, int t, const msrt_queue_result *res,
                         size_t n) {
  lua_createtable(L, (int)n, 0); /* seq */
  lua_createtable(L, (int)n, 0); /* reply */
  lua_createtable(L, 0, 0);      /* code */
  lua_createtable(L, 0, 0);      /* duplicate */
  int c0 = t + 1;
  const msrt_envelope *p = NULL;
  for (size_t i = 0; i < n; i++) {
    const msrt_queue_result *r = &res[i];
    const msrt_envelope *e = r->env;
    int k = (int)i + 1;
    lua_pushnumber(L, (lua_Number)r->seq);
    lua_rawseti(L, c0, k);
    put_str(L, c0 + 1, k, e->reply, e->reply_len, p ? p->reply : NULL,
            p ? p->reply_len : 0);
    if (r->code != MSRT_E_OK) {
      lua_pushstring(L, msrt_code_name(r->code));
      lua_rawseti(L, c0 + 2, k);
    }
    if (r->duplicate) {
      lua_pushboolean(L, 1);
      lua_rawseti(L, c0 + 3, k);
    }
    p = e;
  }
  lua_setfield(L, t, "duplicate");
  lua_setfield(L, t, "code");
  lua_setfield(L, t, "reply");
  lua_setfield(L, t, "seq");
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, t, "n");
}

/* The message columns of a flush, what handing its messages out needs,
 * added to the results table at t: {subject, payload, text, hdr, flags,
 * priority} (hdr nil where a message has none; a payload that serializes
 * one string is that string in text, nil in payload). */
static void push_fields(lua_State *L, int t, const msrt_queue_result *res,
                        size_t n) {
  enum { F_SUBJECT, F_PAYLOAD, F_TEXT, F_HDR, F_FLAGS, F_PRIO, F__N };
  static const char *const FCOL[F__N] = {"subject", "payload", "text",
                                         "hdr",     "flags",   "priority"};
  for (int c = 0; c < F__N; c++)
    lua_createtable(L, c == F_HDR ? 0 : (int)n, 0);
  int c0 = lua_gettop(L) - F__N + 1;
  const msrt_envelope *p = NULL;
  for (size_t i = 0; i < n; i++) {
    const msrt_envelope *e = res[i].env;
    int k = (int)i + 1;
    put_str(L, c0 + F_SUBJECT, k, e->subject, e->subject_len,
            p ? p->subject : NULL, p ? p->subject_len : 0);
    /* a string's serialization is handed back as the string (text), so
     * that Lua neither makes the serialized copy nor decodes it */
    const char *str;
    size_t slen;
    if ((e->flags & MSRT_ENV_PAYLOAD_BUFFER) &&
        msrt_lua_get_string(e->payload, e->payload_len, &str, &slen)) {
      lua_pushlstring(L, str, slen);
      lua_rawseti(L, c0 + F_TEXT, k);
    } else {
      lua_pushlstring(L, (const char *)e->payload, e->payload_len);
      lua_rawseti(L, c0 + F_PAYLOAD, k);
    }
    put_str(L, c0 + F_HDR, k,
            e->headers_len ? (const char *)e->headers : NULL, e->headers_len,
            p && p->headers_len ? (const char *)p->headers : NULL,
            p ? p->headers_len : 0);
    lua_pushinteger(L, e->flags);
    lua_rawseti(L, c0 + F_FLAGS, k);
    lua_pushinteger(L, e->priority);
    lua_rawseti(L, c0 + F_PRIO, k);
    p = e;
  }
  for (int c = F__N - 1; c >= 0; c--) lua_setfield(L, t, FCOL[c]);
}

/* q:flush_end([later]) -> ok, err, results, evicted: the flush in
 * flight's outcome, waited for (msrt_queue_flush_end). ok is true, or nil
 * with err (then nothing of the three lists was applied and every result
 * is refused). results: the intake messages' outcomes in intake order, by
 * column (a table per message, its fields set through the C API, was ~4k
 * instructions a message): push_outcome's and push_fields' columns; with
 * later, push_outcome's only and results.view, whose :fields(results)
 * adds push_fields' (the messages stay referenced until then, or until
 * the view is collected): the PubAcks, which the next flush waits for,
 * are sent without the columns only a delivery reads. evicted: an array
 * of seqs. */
static int l_flush_end(lua_State *L) {
  lqueue *lq = check_q(L);
  int later = lua_toboolean(L, 2);
  msrt_queue_result *res;
  uint64_t *ev;
  size_t n, nev;
  msrt_error err;
  msrt_code c = msrt_queue_flush_end(lq->q, &res, &n, &ev, &nev, &err);
  if (c == MSRT_E_OK) {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
  }
  lua_createtable(L, 0, 12);
  int t = lua_gettop(L);
  push_outcome(L, t, res, n);
  if (later && n) {
    lresults *v = lua_newuserdata(L, sizeof *v);
    v->res = NULL, v->n = 0;
    luaL_getmetatable(L, RESULTS_META);
    lua_setmetatable(L, -2);
    v->res = res, v->n = n; /* the view's now (its __gc frees them) */
    lua_setfield(L, t, "view");
  } else {
    push_fields(L, t, res, n);
    msrt_queue_results_free(res, n);
  }
  lua_createtable(L, (int)nev, 0);
  for (size_t i = 0; i < nev; i++) {
    lua_pushnumber(L, (lua_Number)ev[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  free(ev);
  return 4;
}

/* view:fields(results): push_fields' columns added to results (the table
 * flush_end returned with this view), and the messages released; a view
 * whose fields were taken adds nothing. */
static int l_results_fields(lua_State *L) {
  lresults *v = luaL_checkudata(L, 1, RESULTS_META);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!v->res) return 0;
  push_fields(L, 2, v->res, v->n);
  msrt_queue_results_free(v->res, v->n);
  v->res = NULL, v->n = 0;
  return 0;
}

static int l_results_gc(lua_State *L) {
  lresults *v = luaL_checkudata(L, 1, RESULTS_META);
  if (v->res) msrt_queue_results_free(v->res, v->n);
  v->res = NULL, v->n = 0;
  return 0;
}

/* q:intake() -> how many messages wait for a flush */
static int l_intake(lua_State *L) {
  msrt_queue_stats s;
  msrt_queue_stats_get(check_q(L)->q, &s);
  lua_pushinteger(L, (lua_Integer)s.intake);
  return 1;
}

/* q:get(seq) -> {subject, payload, hdr, flags, priority, delivered} |
 * nil, err (not_found, io, nomem) */
static int l_get(lua_State *L) {
  lqueue *lq = check_q(L);
  msrt_envelope *e;
  uint32_t delivered;
  msrt_error err;
  if (msrt_queue_get(lq->q, (uint64_t)luaL_checknumber(L, 2), &e, &delivered,
                     &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_createtable(L, 0, 6);
  msrt_lua_queue_msg_fields(L, e);
  msrt_env_unref(e);
  lua_pushinteger(L, delivered);
  lua_setfield(L, -2, "delivered");
  return 1;
}

static int scan_one(void *ud, uint64_t seq, uint32_t delivered) {
  lua_State *L = ud;
  int n = (int)lua_objlen(L, -2) + 1;
  lua_pushnumber(L, (lua_Number)seq);
  lua_rawseti(L, -3, n);
  lua_pushinteger(L, delivered);
  lua_rawseti(L, -2, n);
  return 0;
}

/* q:scan(after, limit) -> seqs, delivered (two arrays) | nil, err */
static int l_scan(lua_State *L) {
  lqueue *lq = check_q(L);
  uint64_t after = (uint64_t)luaL_optnumber(L, 2, 0);
  size_t limit = (size_t)luaL_optnumber(L, 3, 0);
  lua_newtable(L);
  lua_newtable(L);
  msrt_error err;
  if (msrt_queue_scan(lq->q, after, limit, scan_one, L, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  return 2;
}

/* q:stats() -> {stored, bytes, last_seq, acked, redelivered,
 * dead_lettered, refused, intake, commits} */
static int l_stats(lua_State *L) {
  lqueue *lq = check_q(L);
  msrt_queue_stats s;
  msrt_queue_stats_get(lq->q, &s);
  lua_createtable(L, 0, 8);
#define F(k)                                                                 \
  lua_pushnumber(L, (lua_Number)s.k);                                        \
  lua_setfield(L, -2, #k)
  F(stored); F(bytes); F(last_seq); F(acked); F(redelivered);
  F(dead_lettered); F(refused); F(intake); F(commits);
#undef F
  return 1;
}

/* q:purge() -> purged | nil, err */
static int l_purge(lua_State *L) {
  lqueue *lq = check_q(L);
  uint64_t n;
  msrt_error err;
  if (msrt_queue_purge(lq->q, &n, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)n);
  return 1;
}

/* q:close(): the caller unsubscribed it first; idempotent */
static int l_close(lua_State *L) {
  lqueue *lq = luaL_checkudata(L, 1, QUEUE_META);
  if (lq->q) msrt_queue_close(lq->q);
  lq->q = NULL;
  return 0;
}

/* queue_puback(reply, payload) -> copies | nil, err: publish a PubAck (a
 * string.buffer encoding) on reply, marked MSRT_ENV_PUBACK (core/
 * envelope.h): only this binding, which the hub's queue.lua calls, makes
 * such envelopes. Never blocks: a full mailbox drops it (the publisher
 * times out, as when it is lost). */
static int l_puback(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  size_t slen, plen;
  const char *s = luaL_checklstring(L, 1, &slen);
  const char *p = luaL_checklstring(L, 2, &plen);
  msrt_error err;
  msrt_envelope *e = msrt_bus_make(rt->bus, s, slen, NULL, 0, NULL, 0, p, plen,
                                   MSRT_PRIORITY_DEFAULT, 0, &err);
  if (!e) return msrt_lua_fail_err(L, &err);
  e->flags |= MSRT_ENV_PUBACK; /* not published yet: still only ours */
  size_t delivered;
  msrt_code rc = msrt_bus_publish(rt->bus, e, &delivered, NULL, &err);
  msrt_env_unref(e);
  if (rc != MSRT_E_OK) return msrt_lua_fail_err(L, &err);
  lua_pushinteger(L, (lua_Integer)delivered);
  return 1;
}

void msrt_lua_open_queue(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"subscribe", l_subscribe}, {"flush_begin", l_flush_begin},
    {"flush_seal", l_flush_seal},
    {"flush_state", l_flush_state}, {"flush_run", l_flush_run},
    {"flush_end", l_flush_end},
    {"intake", l_intake}, {"get", l_get},
    {"scan", l_scan}, {"stats", l_stats}, {"purge", l_purge},
    {"close", l_close}, {NULL, NULL}};
  if (luaL_newmetatable(L, QUEUE_META)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, RESULTS_META)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_results_fields);
    lua_setfield(L, -2, "fields");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_results_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_queue_open);
  lua_setfield(L, -2, "queue_open");
  lua_pushcfunction(L, l_puback);
  lua_setfield(L, -2, "queue_puback");
}
