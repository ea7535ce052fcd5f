/* The `rt` table an actor state's Lua calls (lua/msrt/actor_boot.lua;
 * upvalue 1: the record), and the FFI path it switches to at its first
 * message. Worker thread running that actor, unless said otherwise. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "lua/actor_int.h"
#include "lua/astate.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lrt.h"

static lactor *self(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* pop() -> nil | flags, subject, reply, payload, id, priority, headers */
static int a_pop(lua_State *L) {
  msrt_envelope *e = msrt_actor_pop(self(L)->cell);
  if (!e) return 0;
  lua_pushinteger(L, e->flags);
  lua_pushlstring(L, e->subject, e->subject_len);
  if (e->reply) lua_pushlstring(L, e->reply, e->reply_len);
  else lua_pushnil(L);
  lua_pushlstring(L, (const char *)e->payload, e->payload_len);
  lua_pushnumber(L, (lua_Number)e->id);
  lua_pushinteger(L, e->priority);
  if (e->headers_len)
    lua_pushlstring(L, (const char *)e->headers, e->headers_len);
  else
    lua_pushnil(L);
  msrt_env_unref(e);
  return 7;
}

/* What a publish needs for a moment only, kept per worker thread rather
 * than in each actor's record (docs/performance.md, RSS per idle actor):
 * the error of the last publish that failed, which the caller reads at
 * once on the same thread (publish_err), and the pending of a publish in
 * progress, empty again when the publish returns unless it blocked, when
 * it moves into the actor's own (no pointer into it is held until
 * wait_room registers a waker). */
static _Thread_local msrt_error publish_error;
static _Thread_local msrt_bus_pending publish_pending;

/* The publish both paths share: >= 0 delivered endpoints, or -1: an error
 * in publish_error, or, with la->blocked set, held for room in full
 * `block` mailboxes (then wait_room/retry; la->pend holds it, or, when it
 * could not be made, the publish is refused as out of memory). */
static long publish(lactor *la, const char *s, size_t slen, const char *r,
                    size_t rlen, const void *p, size_t plen, int prio,
                    const char *h, size_t hlen, double ttl_ms) {
  la->blocked = 0;
  msrt_envelope *e = msrt_bus_make(la->rt->bus, s, slen, r, rlen, h, hlen, p, plen,
                                  prio, 0, &publish_error);
  if (!e) return -1;
  msrt_bus_reply_ttl(e, ttl_ms);
  size_t delivered;
  msrt_bus_pending *tp = &publish_pending;
  msrt_code rc = msrt_bus_publish(la->rt->bus, e, &delivered, tp, &publish_error);
  msrt_env_unref(e);
  if (rc == MSRT_E_MAILBOX_FULL && tp->n) {
    if (!la->pend) la->pend = calloc(1, sizeof *la->pend);
    if (!la->pend) {
      msrt_bus_pending_clear(la->rt->bus, tp);
      msrt_error_set(&publish_error, MSRT_E_NOMEM, "out of memory");
      return -1;
    }
    msrt_bus_pending_clear(la->rt->bus, la->pend); /* empty: frees its items */
    *la->pend = *tp;
    memset(tp, 0, sizeof *tp);
    la->blocked = 1;
  }
  if (rc != MSRT_E_OK) return -1;
  return (long)delivered;
}

/* The error of the last publish as Lua sees it: nil, err (lerror.h; a
 * blocked err when it was held for room). */
static int publish_err(lua_State *L, lactor *la) {
  return la->blocked ? msrt_lua_blocked(L) : msrt_lua_fail_err(L, &publish_error);
}

/* publish(subject, payload, reply, priority, headers, reply_ttl_ms)
 *   -> delivered | nil, err (blocked: then wait_room/retry)
 * reply_ttl_ms: a request's timeout (msrt_bus_reply_ttl). */
static int a_publish(lua_State *L) {
  lactor *la = self(L);
  msrt_lua_pub_args a;
  msrt_lua_read_pub_args(L, &a);
  long n = publish(la, a.subject, a.subject_len, a.reply, a.reply_len,
                   a.payload, a.payload_len, a.priority, a.headers,
                   a.headers_len, a.reply_ttl_ms);
  if (n < 0) return publish_err(L, la);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* undecodable(subject, reason): this actor could not decode a copy it
 * popped (msrt_bus_undecodable, naming the actor by id). */
static int a_undecodable(lua_State *L) {
  lactor *la = self(L);
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char who[32];
  snprintf(who, sizeof who, "actor %llu", (unsigned long long)la->id);
  msrt_bus_undecodable(la->rt->bus, s, len, luaL_checkstring(L, 2), who);
  return 0;
}

/* last_error() -> nil, err of the FFI path's last -1, as publish gives */
static int a_last_error(lua_State *L) { return publish_err(L, self(L)); }

/* self() -> the record, as the FFI functions' first argument */
static int a_self(lua_State *L) {
  lua_pushlightuserdata(L, self(L));
  return 1;
}

/* ---- the FFI path (declared again in actor_boot.lua's ffi.cdef): the
 * per-message calls, which LuaJIT can compile into a handler's trace where
 * a lua_CFunction call would stop it; the payload is decoded from and
 * encoded into string.buffers in place, without making a Lua string. ---- */

msrt_envelope *msrt_lactor_ffi_pop(void *la) {
  return msrt_actor_pop(((lactor *)la)->cell);
}

void msrt_lactor_ffi_unref(msrt_envelope *e) { msrt_env_unref(e); }

long msrt_lactor_ffi_publish(void *la, const char *s, size_t slen,
                             const char *r, size_t rlen, const void *p,
                             size_t plen, int prio, const char *h,
                             size_t hlen, double ttl_ms) {
  return publish(la, s, slen, r, rlen, p, plen, prio, h, hlen, ttl_ms);
}

int msrt_lactor_ffi_closed(void *la) {
  return msrt_actor_closed(((lactor *)la)->cell);
}

void msrt_lactor_ffi_set_waiting(void *la, int on) {
  msrt_actor_set_waiting(((lactor *)la)->cell, on);
}

int msrt_lactor_ffi_give_way(void *la) {
  return msrt_actor_should_yield(((lactor *)la)->cell);
}

/* now_ms() as the FFI reads it (a request's deadline, actor_boot.lua) */
double msrt_lactor_ffi_now_ms(void) { return (double)msrt_now_ns() / 1e6; }

/* The waker runs on the thread that made room, maybe while this actor
 * ends: the registration holds a reference on the cell, released by the
 * waker or, when the registration is cancelled first, by unwait_cell. */
static void room_waker(void *ud) {
  if (msrt_lactor_room_waker_delay_ms()) {
    struct timespec ts = {(time_t)(msrt_lactor_room_waker_delay_ms() / 1000),
                          (long)(msrt_lactor_room_waker_delay_ms() % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  msrt_lactor_control(ud, MSRT_CTL_ROOM, "");
  msrt_actor_unref(ud);
}

static void unwait_cell(void *ud) { msrt_actor_unref(ud); }

/* wait_room() -> true when a _ROOM control message will come, false when
 * there is room now (retry). */
static int a_wait_room(lua_State *L) {
  lactor *la = self(L);
  if (!la->pend) { /* nothing blocked: room now */
    lua_pushboolean(L, 0);
    return 1;
  }
  msrt_actor_ref(la->cell);
  int rc = msrt_bus_pending_wait(la->pend, room_waker, unwait_cell, la->cell);
  if (rc != MSRT_WAIT_PENDING) msrt_actor_unref(la->cell);
  lua_pushboolean(L, rc == MSRT_WAIT_PENDING);
  return 1;
}

/* retry() -> delivered | nil, blocked err | nil, err: closed, or
 *   mailbox_full (`error` mailboxes refused copies) */
static int a_retry(lua_State *L) {
  lactor *la = self(L);
  msrt_bus_pending none = {0}, *p = la->pend ? la->pend : &none;
  if (msrt_actor_closed(la->cell)) {
    msrt_bus_pending_clear(la->rt->bus, p);
    return msrt_lua_fail(L, MSRT_E_CLOSED, "the actor is stopping");
  }
  if (msrt_bus_pending_retry(la->rt->bus, p) == MSRT_E_MAILBOX_FULL)
    return msrt_lua_blocked(L);
  if (msrt_bus_pending_refused(p, &publish_error))
    return msrt_lua_fail_err(L, &publish_error);
  lua_pushinteger(L, (lua_Integer)p->delivered);
  return 1;
}

/* This actor's inbox prefix, "_INBOX.<token>" (MSRT_INBOX_PREFIX_LEN
 * bytes in la->inbox), random (core/token.h), made and subscribed
 * (<prefix>.> on the sys lane) once. MSRT_E_OK or the error in *err. */
#define MSRT_INBOX_PREFIX_LEN (sizeof "_INBOX." - 1 + MSRT_TOKEN_LEN)
static msrt_code inbox_prefix(lactor *la, msrt_error *err) {
  if (la->inbox_sub) return MSRT_E_OK;
  char *prefix = la->inbox;
  memcpy(prefix, "_INBOX.", 7);
  if (msrt_token(prefix + 7) != 0)
    return msrt_error_set(err, MSRT_E_INTERNAL, "no randomness for an inbox");
  char pattern[sizeof la->inbox + 2];
  int pn = snprintf(pattern, sizeof pattern, "%s.>", prefix);
  msrt_code rc = msrt_bus_subscribe(la->rt->bus, pattern, (size_t)pn, NULL, 0,
                                    msrt_ep_sys(la->cell), &la->inbox_sub, err);
  if (rc == MSRT_E_OK) msrt_lactor_add_sub(la, la->inbox_sub);
  return rc;
}

/* inbox() -> "_INBOX.<token>": this actor's inbox prefix (inbox_prefix);
 * each request adds a random token of its own. */
static int a_inbox(lua_State *L) {
  lactor *la = self(L);
  msrt_error err;
  if (inbox_prefix(la, &err) != MSRT_E_OK) return msrt_lua_fail_err(L, &err);
  lua_pushlstring(L, la->inbox, MSRT_INBOX_PREFIX_LEN);
  return 1;
}

/* (the FFI path's inbox() with this request's token: actor.h) */
long msrt_lactor_ffi_inbox(void *p, char *out) {
  lactor *la = p;
  msrt_error err;
  if (inbox_prefix(la, &err) != MSRT_E_OK) return -1;
  memcpy(out, la->inbox, MSRT_INBOX_PREFIX_LEN);
  out[MSRT_INBOX_PREFIX_LEN] = '.';
  if (msrt_token(out + MSRT_INBOX_PREFIX_LEN + 1) != MSRT_E_OK) return -1;
  return (long)(MSRT_INBOX_PREFIX_LEN + 1 + MSRT_TOKEN_LEN);
}

/* subscribe(pattern, queue) -> sub id | nil, err (resource_exhausted at
 * the profile's max_subscriptions: an actor's code may be hostile, and
 * each subscription holds router memory and costs a change) */
static int a_subscribe(lua_State *L) {
  lactor *la = self(L);
  size_t plen, qlen = 0;
  const char *p = luaL_checklstring(L, 1, &plen);
  const char *q = luaL_optlstring(L, 2, NULL, &qlen);
  uint64_t id;
  msrt_error err;
  size_t cap = atomic_load(&la->rt->actor_max_subs);
  if (cap && la->nsubs >= cap) {
    msrt_error_set(&err, MSRT_E_RESOURCE_EXHAUSTED,
                   "actor %s holds %zu subscriptions, the profile's "
                   "max_subscriptions", la->name, la->nsubs);
    return msrt_lua_fail_err(L, &err);
  }
  if (msrt_bus_subscribe(la->rt->bus, p, plen, q, qlen,
                         msrt_ep_actor(la->cell), &id, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  msrt_lactor_add_sub(la, id);
  lua_pushnumber(L, (lua_Number)id);
  return 1;
}

/* unsubscribe(sid): true | nil, err (not_found: no subscription of this
 * actor's by that id; nomem). Another endpoint's id is not_found too: an
 * actor cannot drop what it does not hold. */
static int a_unsubscribe(lua_State *L) {
  lactor *la = self(L);
  lua_Number n = luaL_checknumber(L, 1);
  uint64_t id = n >= 1 && n < 0x1p63 ? (uint64_t)n : 0;
  msrt_error err;
  msrt_code rc = id == (lua_Number)n ? msrt_lactor_drop_sub(la, id) : MSRT_E_NOT_FOUND;
  if (rc == MSRT_E_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == MSRT_E_NOT_FOUND)
    msrt_error_set(&err, rc, "actor %s holds no subscription %.0f", la->name, n);
  else
    msrt_error_set(&err, rc, "actor %s: unsubscribe %.0f: out of memory", la->name, n);
  return msrt_lua_fail_err(L, &err);
}

/* Whole milliseconds no shorter than ms (a fraction rounds up: a delay
 * must not end early), at most ~31 years. */
static long long ceil_ms(lua_Number ms) {
  return ms > 1e12 ? 1000000000000LL : (long long)ceil(ms);
}

/* timer(timer_id, ms, repeat_ms): the hub fires _TIMER control messages
 * with the timer id; ms < 0 cancels. The delay counts from this call (its
 * CLOCK_MONOTONIC time goes along), not from when the hub reads it. */
static int a_timer(lua_State *L) {
  lactor *la = self(L);
  char text[128];
  snprintf(text, sizeof text, "%lld %lld %lld %llu",
           (long long)luaL_checkinteger(L, 1), ceil_ms(luaL_checknumber(L, 2)),
           ceil_ms(luaL_optnumber(L, 3, 0)),
           (unsigned long long)msrt_now_ns());
  msrt_envelope *e = msrt_env_new("t", 1, NULL, 0, NULL, 0, text, strlen(text),
                                  1, MSRT_ENV_CONTROL, 0);
  if (!e) return luaL_error(L, "out of memory");
  msrt_actor_ref(la->cell);
  msrt_inbox_item it = {MSRT_IN_TIMER, la->id, e, la->cell};
  if (msrt_bus_to_hub(la->rt->bus, it) != 0) msrt_actor_unref(la->cell);
  return 0;
}

static int a_set_waiting(lua_State *L) {
  msrt_actor_set_waiting(self(L)->cell, lua_toboolean(L, 1));
  return 0;
}

/* closed() -> true once the actor was asked to stop */
static int a_closed(lua_State *L) {
  lua_pushboolean(L, msrt_actor_closed(self(L)->cell));
  return 1;
}

/* stop(reason): the actor stops itself after this turn. */
static int a_stop(lua_State *L) {
  msrt_lactor_stop(self(L)->cell, luaL_optstring(L, 1, "normal"));
  return 0;
}

static int a_log(lua_State *L) {
  lactor *la = self(L);
  fprintf(stderr, "%s [%s#%llu] %s\n", luaL_checkstring(L, 1), la->name,
          (unsigned long long)la->id, luaL_checkstring(L, 2));
  return 0;
}

static int a_now_ms(lua_State *L) {
  lua_pushnumber(L, (lua_Number)msrt_now_ns() / 1e6);
  return 1;
}

/* started(): tell the hub that init has returned (OTP's start_link
 * returns then); the hub's supervisor starts the next child. */
static int a_started(lua_State *L) {
  lactor *la = self(L);
  msrt_inbox_item it = {MSRT_IN_STARTED, la->id, NULL, NULL};
  msrt_bus_to_hub(la->rt->bus, it);
  return 0;
}

const luaL_Reg msrt_lactor_fns[] = {
  {"pop", a_pop}, {"publish", a_publish}, {"closed", a_closed},
  {"stop", a_stop}, {"started", a_started}, {"more", msrt_lactor_more},
  {NULL, NULL}};

const luaL_Reg msrt_lactor_more_fns[] = {
  {"wait_room", a_wait_room}, {"retry", a_retry}, {"inbox", a_inbox},
  {"subscribe", a_subscribe}, {"unsubscribe", a_unsubscribe},
  {"timer", a_timer},
  {"set_waiting", a_set_waiting}, {"log", a_log}, {"now_ms", a_now_ms},
  {"jit_on", msrt_astate_jit}, {"last_error", a_last_error},
  {"self", a_self}, {"token", msrt_lua_token},
  {"undecodable", a_undecodable}, {NULL, NULL}};

