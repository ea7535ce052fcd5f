/* msrt.core's publish path (bus/bus.h) for the hub's Lua: publish and
 * its blocked retries, subscriptions of hub callbacks and of heartbeat
 * stamps, readiness, inbox tokens; lua/msrt/hub.lua is their caller. Hub
 * thread only. */
#include <lauxlib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bus/interest.h"
#include "core/token.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lrt.h"

static const char PENDING_META[] = "msrt.pending";

static int pending_gc(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  msrt_rt *rt = msrt_lua_rt_opt(L);
  /* cells outlive a finished publish (env NULL): free them too */
  if (rt && (p->env || p->items)) msrt_bus_pending_clear(rt->bus, p);
  return 0;
}

void msrt_lua_read_pub_args(lua_State *L, msrt_lua_pub_args *a) {
  a->reply_len = a->headers_len = 0;
  a->subject = luaL_checklstring(L, 1, &a->subject_len);
  a->payload = luaL_checklstring(L, 2, &a->payload_len);
  a->reply = luaL_optlstring(L, 3, NULL, &a->reply_len);
  a->priority = msrt_lua_priority(L, 4);
  a->headers = luaL_optlstring(L, 5, NULL, &a->headers_len);
  a->reply_ttl_ms = luaL_optnumber(L, 6, 0);
}

/* The hub's last publish that did not go through (publish_args' -1):
 * its error, and its pending when full `block` endpoints held it, until
 * l_publish_error hands them to Lua. Hub thread only. */
static struct {
  msrt_error err;
  msrt_bus_pending pend;
  bool blocked;
} last;

/* Publish a: how many endpoints took it, or -1 with the error (and the
 * pending, when it blocked) in last. */
static long publish_args(msrt_rt *rt, const msrt_lua_pub_args *a) {
  last.blocked = false;
  /* the pending moves into a userdata only when the publish blocked (it
   * holds no pointer into itself until pending_wait registers a waker): a
   * publish that went through makes no garbage for the collector. It is
   * the hub's one, empty again whenever a publish returns (cleared, or
   * moved out and zeroed), as an actor's publish_pending (actor_rt.c):
   * one zeroed on the stack for every publish cost ~80 instructions (it
   * holds an error's 512-byte text). msrt_bus_send makes no envelope for
   * a message that only goes to the NATS bridge's export. */
  static msrt_bus_pending pend;
  size_t delivered;
  msrt_code rc = msrt_bus_send(
      rt->bus, a->subject, a->subject_len, a->reply, a->reply_len, a->headers,
      a->headers_len, a->payload, a->payload_len, a->priority,
      a->reply_ttl_ms, &delivered, &pend, &last.err);
  if (rc == MSRT_E_MAILBOX_FULL && pend.n) {
    last.pend = pend;
    memset(&pend, 0, sizeof pend);
    last.blocked = true;
    return -1;
  }
  if (pend.env || pend.items) msrt_bus_pending_clear(rt->bus, &pend);
  return rc == MSRT_E_OK ? (long)delivered : -1;
}

/* publish_error() -> nil, err | nil, blocked err, pending (lerror.h): the
 * last publish that did not go through (publish_args' or
 * msrt_lhub_publish's -1), as publish answers it. */
static int l_publish_error(lua_State *L) {
  if (!last.blocked) return msrt_lua_fail_err(L, &last.err);
  last.blocked = false;
  msrt_bus_pending *p = lua_newuserdata(L, sizeof *p);
  *p = last.pend;
  memset(&last.pend, 0, sizeof last.pend);
  if (luaL_newmetatable(L, PENDING_META)) {
    lua_pushcfunction(L, pending_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  msrt_lua_blocked(L);
  lua_pushvalue(L, -3);
  return 3;
}

/* publish(subject, payload, reply, priority, headers, reply_ttl_ms)
 *   -> delivered | nil, err | nil, blocked err, pending (lerror.h)
 * reply_ttl_ms: a request's timeout, how long its inbox (reply) is valid
 * to a process handed it (msrt_bus_reply_ttl). */
static int l_publish(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  msrt_lua_pub_args a;
  msrt_lua_read_pub_args(L, &a);
  long n = publish_args(rt, &a);
  if (n < 0) return l_publish_error(L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

long msrt_lhub_publish(void *rt, const char *s, size_t slen, const char *r,
                       size_t rlen, const void *p, size_t plen, int prio,
                       const char *h, size_t hlen, double ttl_ms) {
  msrt_lua_pub_args a = {.subject = s, .subject_len = slen, .reply = r,
                         .reply_len = rlen, .payload = p, .payload_len = plen,
                         .priority = prio, .headers = h, .headers_len = hlen,
                         .reply_ttl_ms = ttl_ms};
  return publish_args(rt, &a);
}

/* hub_rt() -> the runtime, msrt_lhub_publish's first argument (a light
 * userdata; it lives as long as the host) | nil before rt_start */
static int l_hub_rt(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (rt) lua_pushlightuserdata(L, rt);
  else lua_pushnil(L);
  return 1;
}

int msrt_lua_token(lua_State *L) {
  char t[MSRT_TOKEN_LEN + 1];
  if (msrt_token(t) != 0)
    return msrt_lua_fail(L, MSRT_E_INTERNAL, "no randomness for an inbox token");
  lua_pushlstring(L, t, MSRT_TOKEN_LEN);
  return 1;
}

/* undecodable(subject, reason, who): a hub receiver could not decode a
 * copy it was handed (msrt_bus_undecodable). */
static int l_undecodable(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  msrt_bus_undecodable(msrt_lua_rt(L)->bus, s, len, luaL_checkstring(L, 2),
                      luaL_optstring(L, 3, NULL));
  return 0;
}

/* pending_wait(pending, wake_id) -> true (a "wake" dispatch will come) |
 * false (retry now; also when no memory is left for the waker) */
static int l_pending_wait(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  void *w = msrt_rt_hub_waker(msrt_lua_rt(L), (uint64_t)luaL_checknumber(L, 2));
  int rc = w ? msrt_bus_pending_wait(p, msrt_inbox_wake, msrt_inbox_unwake, w)
             : MSRT_E_OK;
  if (w && rc != MSRT_WAIT_PENDING) msrt_inbox_unwake(w);
  lua_pushboolean(L, rc == MSRT_WAIT_PENDING);
  return 1;
}

/* pending_retry(pending) -> delivered | nil, blocked err | nil, err (full
 * `error` mailboxes refused copies of the same publish) */
static int l_pending_retry(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  if (msrt_bus_pending_retry(msrt_lua_rt(L)->bus, p) == MSRT_E_MAILBOX_FULL)
    return msrt_lua_blocked(L);
  msrt_error err;
  if (msrt_bus_pending_refused(p, &err)) return msrt_lua_fail_err(L, &err);
  lua_pushinteger(L, (lua_Integer)p->delivered);
  return 1;
}

/* subscribe(pattern, queue, hub_id) -> sub_id | nil, err */
static int l_subscribe(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  size_t plen, qlen = 0;
  const char *p = luaL_checklstring(L, 1, &plen);
  const char *q = luaL_optlstring(L, 2, NULL, &qlen);
  uint64_t hub_id = (uint64_t)luaL_checknumber(L, 3), sid;
  msrt_error err;
  if (msrt_bus_subscribe(rt->bus, p, plen, q, qlen, msrt_ep_hub(hub_id), &sid,
                         &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)sid);
  return 1;
}

static int l_unsubscribe(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  lua_pushboolean(L, msrt_bus_unsubscribe(rt->bus, (uint64_t)luaL_checknumber(L, 1)) ==
                         MSRT_E_OK);
  return 1;
}

/* set_ready(sub_id, ready) -> true | nil, err (not_found): readiness
 * probes take a subscription out of its queue groups and put it back */
static int l_set_ready(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  uint64_t sid = (uint64_t)luaL_checknumber(L, 1);
  if (msrt_bus_set_ready(rt->bus, sid, lua_toboolean(L, 2)) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_NOT_FOUND, "no subscription %llu",
                         (unsigned long long)sid);
  lua_pushboolean(L, 1);
  return 1;
}

/* stamp_subscribe(pattern) -> sub_id, slot | nil, err: a subscription
 * whose messages only stamp the time they came (a stamp endpoint,
 * bus/endpoints.h) into slot (a light userdata: an _Atomic uint64_t of CLOCK_MONOTONIC ns, 0 until
 * the first; lua/msrt/health/probes.lua reads it with msrt_lhub_stamp). The slot is
 * released by stamp_unsubscribe. */
static int l_stamp_subscribe(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  size_t plen;
  const char *p = luaL_checklstring(L, 1, &plen);
  _Atomic uint64_t *slot = malloc(sizeof *slot);
  if (!slot) return msrt_lua_fail(L, MSRT_E_NOMEM, "out of memory");
  atomic_init(slot, 0);
  uint64_t sid;
  msrt_error err;
  if (msrt_bus_subscribe(rt->bus, p, plen, NULL, 0, msrt_ep_stamp(slot), &sid,
                         &err) != MSRT_E_OK) {
    free(slot);
    return msrt_lua_fail_err(L, &err);
  }
  lua_pushnumber(L, (lua_Number)sid);
  lua_pushlightuserdata(L, (void *)slot);
  return 2;
}

uint64_t msrt_lhub_stamp(const void *slot) {
  return atomic_load_explicit((_Atomic uint64_t *)slot, memory_order_relaxed);
}

/* stamp_unsubscribe(sub_id, slot): the slot is freed once no publishing
 * thread can still be writing it. */
static int l_stamp_unsubscribe(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  luaL_checktype(L, 2, LUA_TLIGHTUSERDATA);
  void *slot = lua_touserdata(L, 2);
  /* an unknown id was never this slot's; with no memory to defer the free,
   * the 8 bytes are left rather than freed under a writer */
  if (msrt_bus_unsubscribe(rt->bus, (uint64_t)luaL_checknumber(L, 1)) == MSRT_E_OK)
    (void)msrt_router_defer(rt->router, free, slot);
  return 0;
}

void msrt_lua_open_bus(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"publish", l_publish}, {"publish_error", l_publish_error},
    {"hub_rt", l_hub_rt}, {"pending_wait", l_pending_wait},
    {"pending_retry", l_pending_retry}, {"subscribe", l_subscribe},
    {"unsubscribe", l_unsubscribe}, {"set_ready", l_set_ready},
    {"stamp_subscribe", l_stamp_subscribe},
    {"stamp_unsubscribe", l_stamp_unsubscribe},
    {"undecodable", l_undecodable}, {"token", msrt_lua_token}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
