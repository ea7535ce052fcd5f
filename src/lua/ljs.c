/* msrt.core's JetStream queues (bridge/js.h) for the hub's Lua: jsq_open
 * and the queue handle's methods (subscribe, take, room, ack, stats,
 * close); lua/msrt/queue_js.lua is their caller. Hub thread only. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/js.h"
#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lrt.h"

static const char JSQ_META[] = "msrt.queue.jetstream";

typedef struct {
  msrt_jsq *q; /* NULL once closed */
} ljsq;

static ljsq *check_q(lua_State *L) {
  ljsq *lq = luaL_checkudata(L, 1, JSQ_META);
  if (!lq->q) luaL_error(L, "the queue is closed");
  return lq;
}

/* A size, count or ms at t[k] (lua/lfield.h: above 0, else 0). */
static int64_t num(lua_State *L, int t, const char *k) {
  return (int64_t)msrt_lua_field_size(L, t, k);
}

/* Strings (or numbers) of the list field k into a malloc'd array. */
static size_t list(lua_State *L, int t, const char *k, const char ***s,
                   int64_t **n) {
  lua_getfield(L, t, k);
  size_t len = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
  if (s) *s = calloc(len + 1, sizeof **s);
  if (n) *n = calloc(len + 1, sizeof **n);
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, -1, (int)i + 1);
    if (s && *s) (*s)[i] = lua_tostring(L, -1); /* anchored in the list */
    if (n && *n) (*n)[i] = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return len;
}

/* jsq_open(bridge, {name, subjects, max_msgs, max_bytes, discard,
 * dedupe_window_ms, ack_wait_ms, max_deliver, backoff, max_ack_pending,
 * wake_id}) -> queue | nil, err (bridge/js.h msrt_jsq_open) */
static int l_open(lua_State *L) {
  msrt_bridge *b = msrt_lua_check_bridge(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  msrt_jsq_config c = {0};
  lua_getfield(L, 2, "name");
  c.name = luaL_checkstring(L, -1);
  lua_getfield(L, 2, "discard");
  c.discard_new = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "new") == 0;
  lua_pop(L, 1);
  const char **subjects;
  int64_t *backoff;
  c.nsubjects = list(L, 2, "subjects", &subjects, NULL);
  c.subjects = subjects;
  c.nbackoff = list(L, 2, "backoff", NULL, &backoff);
  c.backoff_ms = backoff;
  c.max_msgs = num(L, 2, "max_msgs"), c.max_bytes = num(L, 2, "max_bytes");
  c.dedupe_window_ms = num(L, 2, "dedupe_window_ms");
  c.ack_wait_ms = num(L, 2, "ack_wait_ms");
  c.max_deliver = num(L, 2, "max_deliver");
  c.max_ack_pending = num(L, 2, "max_ack_pending");
  c.wake_id = (uint64_t)num(L, 2, "wake_id");
  ljsq *lq = lua_newuserdata(L, sizeof *lq);
  lq->q = NULL;
  luaL_getmetatable(L, JSQ_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  msrt_code rc = subjects && backoff ? msrt_jsq_open(b, &c, &lq->q, &err)
                 : msrt_error_set(&err, MSRT_E_NOMEM, "out of memory");
  free(subjects);
  free(backoff);
  if (rc != MSRT_E_OK) return msrt_lua_fail_err(L, &err);
  return 1;
}

/* q:subscribe(pattern) -> sub_id | nil, err: the queue captures pattern */
static int l_subscribe(lua_State *L) {
  return msrt_lua_queue_subscribe(L, msrt_ep_jsq(check_q(L)->q));
}

static void set_str(lua_State *L, const char *k, const char *s, size_t n) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_event(lua_State *L, const msrt_jsq_event *ev) {
  static const char *const kinds[] = {"ready", "failed", "puback", "msg"};
  lua_createtable(L, 0, 10);
  lua_pushstring(L, kinds[ev->kind]);
  lua_setfield(L, -2, "kind");
  set_num(L, "seq", (double)ev->seq);
  if (ev->kind == MSRT_JSQ_MSG) {
    const msrt_envelope *e = ev->env;
    set_num(L, "delivered", (double)ev->delivered);
    set_str(L, "ack", ev->ack, strlen(ev->ack));
    msrt_lua_queue_msg_fields(L, e);
    return;
  }
  if (ev->reply) set_str(L, "reply", ev->reply, strlen(ev->reply));
  if (ev->duplicate) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "duplicate");
  }
  if (ev->code != MSRT_E_OK) {
    lua_pushstring(L, msrt_code_name(ev->code));
    lua_setfield(L, -2, "code");
    set_str(L, "message", ev->message, strlen(ev->message));
  }
}

/* q:take() -> array of events {kind = "ready" | "failed" | "puback" |
 * "msg", seq, ...}: a PubAck {reply, seq, duplicate, code, message}; a
 * message {seq, delivered, ack, subject, payload, hdr, flags, priority};
 * a failure {code, message} */
static int l_take(lua_State *L) {
  ljsq *lq = check_q(L);
  msrt_jsq_event *ev;
  size_t n = msrt_jsq_take(lq->q, &ev);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_event(L, &ev[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  msrt_jsq_events_free(ev, n);
  return 1;
}

/* q:room(n): the host's consumers can take n more messages */
static int l_room(lua_State *L) {
  msrt_jsq_room(check_q(L)->q, (int64_t)luaL_checknumber(L, 2));
  return 0;
}

/* q:ack(ack_subject, op, delay_ms) -> true | nil, err; op "ack", "nak",
 * "in_progress" or "term" */
static int l_ack(lua_State *L) {
  ljsq *lq = check_q(L);
  const char *ack = luaL_checkstring(L, 2);
  static const char *const ops[] = {"ack", "nak", "in_progress", "term",
                                    NULL};
  static const msrt_jsq_op codes[] = {MSRT_JSQ_ACK, MSRT_JSQ_NAK,
                                      MSRT_JSQ_WPI, MSRT_JSQ_TERM};
  int op = luaL_checkoption(L, 3, NULL, ops);
  msrt_error err;
  if (msrt_jsq_ack(lq->q, ack, codes[op], (int64_t)luaL_optnumber(L, 4, 0),
                   &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* q:stats() -> {published, accepted, duplicates, refused, pulled, pulls,
 * stored, bytes, last_seq, pending, ack_pending_all} (bridge/js.h) */
static int l_stats(lua_State *L) {
  msrt_jsq_stats s;
  msrt_jsq_stats_get(check_q(L)->q, &s);
  lua_createtable(L, 0, 11);
#define F(k) set_num(L, #k, (double)s.k)
  F(published); F(accepted); F(duplicates); F(refused); F(pulled); F(pulls);
  F(stored); F(bytes); F(last_seq); F(pending); F(ack_pending_all);
#undef F
  return 1;
}

/* q:close(): the caller unsubscribed it first; idempotent */
static int l_close(lua_State *L) {
  ljsq *lq = luaL_checkudata(L, 1, JSQ_META);
  if (lq->q) msrt_jsq_close(lq->q);
  lq->q = NULL;
  return 0;
}

void msrt_lua_open_jsq(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"subscribe", l_subscribe}, {"take", l_take}, {"room", l_room},
    {"ack", l_ack}, {"stats", l_stats}, {"close", l_close}, {NULL, NULL}};
  if (luaL_newmetatable(L, JSQ_META)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_open);
  lua_setfield(L, -2, "jsq_open");
}
