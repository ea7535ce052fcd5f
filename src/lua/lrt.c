/* The hub's side of the runtime: msrt.core functions for actors, publish,
 * subscribe and metrics, the drain of the hub inbox into Lua, the timers
 * actors ask for, and the overload watchdog. Hub thread only. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/timer.h"
#include "lua/actor.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lproc.h"
#include "lua/rt.h"
#include "core/token.h"
#include "router/routes.h"

static const char DISPATCH_KEY = 'd'; /* registry: the Lua dispatcher */

static msrt_rt *need_rt(lua_State *L) {
  msrt_rt *rt = msrt_rt_get();
  if (!rt) luaL_error(L, "the msrt runtime is not started");
  return rt;
}

static int fail_err(lua_State *L, const msrt_error *err) {
  lua_pushnil(L);
  msrt_lua_push_error(L, err);
  return 2;
}

/* ---- timers actors ask for ------------------------------------------- */

typedef struct atimer {
  unsigned magic; /* MSRT_HANDLE_MAGIC: not luv's */
  uv_timer_t t;
  msrt_actor *cell; /* reference */
  uint64_t actor, id;
  struct atimer *prev, *next;
} atimer;

static atimer *timers;

static void atimer_free(uv_handle_t *h) {
  atimer *t = h->data;
  msrt_actor_unref(t->cell);
  free(t);
}

static void atimer_close(atimer *t) {
  if (t->prev) t->prev->next = t->next;
  else timers = t->next;
  if (t->next) t->next->prev = t->prev;
  uv_close((uv_handle_t *)&t->t, atimer_free);
}

static void atimer_fire(uv_timer_t *h) {
  atimer *t = h->data;
  char text[32];
  snprintf(text, sizeof text, "%llu", (unsigned long long)t->id);
  int rc = msrt_lactor_control(t->cell, MSRT_CTL_TIMER, text);
  if (rc != MSRT_E_OK || !uv_timer_get_repeat(&t->t)) atimer_close(t);
}

/* A timer request from an actor: "id ms repeat_ms called_ns"; ms < 0
 * cancels. Due ms after the actor's call (hub/timer.h), however long the
 * request waited in the hub's inbox. */
static void atimer_request(msrt_rt *rt, msrt_inbox_item *it) {
  long long id = 0, ms = 0, rep = 0;
  unsigned long long called = 0;
  char text[128]; /* the payload is not NUL-terminated */
  size_t n = it->env->payload_len < sizeof text ? it->env->payload_len
                                                : sizeof text - 1;
  memcpy(text, it->env->payload, n);
  text[n] = '\0';
  sscanf(text, "%lld %lld %lld %llu", &id, &ms, &rep, &called);
  msrt_actor *cell = it->ptr;
  if (ms < 0) {
    for (atimer *t = timers; t; t = t->next)
      if (t->actor == it->target && t->id == (uint64_t)id) {
        atimer_close(t);
        break;
      }
    msrt_actor_unref(cell);
    return;
  }
  atimer *t = calloc(1, sizeof *t);
  if (!t || uv_timer_init(msrt_hub_loop(rt->hub), &t->t) != 0) {
    free(t);
    msrt_actor_unref(cell);
    return;
  }
  t->magic = MSRT_HANDLE_MAGIC;
  t->t.data = t;
  t->cell = cell;
  t->actor = it->target;
  t->id = (uint64_t)id;
  t->next = timers;
  if (timers) timers->prev = t;
  timers = t;
  uv_unref((uv_handle_t *)&t->t); /* actors keep the hub alive, not timers */
  msrt_timer_start_at(&t->t, atimer_fire, called + (uint64_t)ms * 1000000u,
                      (uint64_t)rep);
}

static void atimers_close_all(void) {
  while (timers) atimer_close(timers);
}

/* ---- the inbox drain -------------------------------------------------- */

static const char *const kinds[] = {NULL,   "deliver",  "exit", NULL,
                                    "wake", "overload", NULL,   "started"};

static void drain(msrt_inbox_item *items, size_t n, void *ud) {
  lua_State *L = ud;
  msrt_rt *rt = msrt_rt_get();
  for (size_t i = 0; i < n; i++) {
    msrt_inbox_item *it = &items[i];
    if (it->kind == MSRT_IN_TIMER) {
      atimer_request(rt, it);
      msrt_env_unref(it->env);
      continue;
    }
    if (it->kind == MSRT_IN_PROC) { /* to a child's stdin (lproc.c) */
      msrt_lproc_deliver(it->target, it->env);
      continue;
    }
    lua_pushlightuserdata(L, (void *)&DISPATCH_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      msrt_env_unref(it->env);
      continue;
    }
    lua_pushstring(L, kinds[it->kind]);
    lua_pushnumber(L, (lua_Number)it->target);
    int nargs = 2;
    msrt_envelope *e = it->env;
    if (e) {
      lua_pushlstring(L, e->subject, e->subject_len);
      if (e->reply) lua_pushlstring(L, e->reply, e->reply_len);
      else lua_pushnil(L);
      lua_pushlstring(L, (const char *)e->payload, e->payload_len);
      lua_pushnumber(L, (lua_Number)e->id);
      lua_pushinteger(L, e->priority);
      lua_pushinteger(L, e->flags);
      if (e->headers_len)
        lua_pushlstring(L, (const char *)e->headers, e->headers_len);
      else
        lua_pushnil(L);
      nargs += 7;
    } else if (it->kind == MSRT_IN_OVERLOAD) {
      lua_pushnumber(L, (lua_Number)(uintptr_t)it->ptr);
      nargs++;
    } else if (it->kind == MSRT_IN_EXIT) { /* a plain reason, no record */
      lua_pushnil(L);
      lua_pushnil(L);
      lua_pushstring(L, (uintptr_t)it->ptr == 2 ? "shutdown"
                                                 : "out of memory (no exit record)");
      lua_pushnumber(L, 0);
      lua_pushinteger(L, 1);
      lua_pushinteger(L, 0);
      nargs += 6;
    }
    msrt_env_unref(e);
    msrt_host_call(L, nargs, 0, "error in hub callback");
  }
}

/* ---- the overload watchdog --------------------------------------------- */

static struct {
  unsigned magic;
  uv_timer_t t;
} watchdog = {MSRT_HANDLE_MAGIC, {0}};

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  msrt_rt *rt = msrt_rt_get();
  if (rt) msrt_rt_watchdog(rt);
}

/* ---- msrt.core functions ---------------------------------------------- */

msrt_overflow msrt_lua_overflow(lua_State *L, int idx) {
  static const char *const names[] = {"block", "drop_oldest", "drop_newest",
                                      "error", NULL};
  static const msrt_overflow values[] = {
    MSRT_OVERFLOW_BLOCK, MSRT_OVERFLOW_DROP_OLDEST, MSRT_OVERFLOW_DROP_NEWEST,
    MSRT_OVERFLOW_ERROR};
  if (lua_isnoneornil(L, idx)) return MSRT_OVERFLOW_DEFAULT;
  return values[luaL_checkoption(L, idx, NULL, names)];
}

static lua_Integer field_int(lua_State *L, int t, const char *k, lua_Integer d) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : d;
  lua_pop(L, 1);
  return v;
}

/* The runtime's figures from a resolved profile table at index idx. */
static msrt_rt_config config_of(lua_State *L, int idx) {
  msrt_rt_config c = {
    .workers = (int)field_int(L, idx, "workers", 1),
    .batch = (int)field_int(L, idx, "batch", 64),
    .spin_us = (int)field_int(L, idx, "spin_us", 50),
    .mailbox_capacity = (size_t)field_int(L, idx, "mailbox_capacity", 4096),
    .mailbox_bytes = (size_t)field_int(L, idx, "mailbox_bytes", 0),
    .max_payload = (size_t)field_int(L, idx, "max_payload", 1 << 20),
    .max_subject = (size_t)field_int(L, idx, "max_subject", 1024),
    .slice_ms = (long)field_int(L, idx, "slice_ms", 1000),
    .shutdown_timeout_ms = (long)field_int(L, idx, "shutdown_timeout_ms", 5000),
  };
  lua_getfield(L, idx, "overflow");
  c.overflow = msrt_lua_overflow(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "gc");
  c.gc_pause = lua_istable(L, -1) ? (int)field_int(L, -1, "pause", 200) : 200;
  c.gc_stepmul = lua_istable(L, -1) ? (int)field_int(L, -1, "stepmul", 200) : 200;
  lua_pop(L, 1);
  return c;
}

/* rt_tune(profile) -> true | false (no runtime yet): apply the live figures */
static int l_rt_tune(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_rt *rt = msrt_rt_get();
  if (rt) {
    msrt_rt_config c = config_of(L, 1);
    msrt_rt_tune(rt, &c);
  }
  lua_pushboolean(L, rt != NULL);
  return 1;
}

/* rt_start(profile, boot_bytecode) -> true | nil, err */
static int l_rt_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t blen;
  const char *boot = luaL_checklstring(L, 2, &blen);
  if (msrt_rt_get()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  msrt_rt_config c = config_of(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  msrt_lactor_setup(boot, blen, lua_tostring(L, -2), lua_tostring(L, -1));
  lua_pop(L, 3);
  msrt_host *h = msrt_host_get(L);
  msrt_error err;
  if (msrt_rt_start(h->hub, &c, msrt_lactor_run, msrt_lactor_release, drain,
                    h->L, &err) != MSRT_E_OK)
    return fail_err(L, &err);
  uv_timer_init(msrt_hub_loop(h->hub), &watchdog.t);
  watchdog.t.data = &watchdog;
  uv_unref((uv_handle_t *)&watchdog.t);
  uint64_t every = c.slice_ms / 2 < 5 ? 5 : (uint64_t)c.slice_ms / 2;
  uv_timer_start(&watchdog.t, on_watchdog, every, every);
  lua_pushboolean(L, 1);
  return 1;
}

/* rt_stop() -> true | false when a worker is stuck in an actor */
static int l_rt_stop(lua_State *L) {
  msrt_rt *rt = msrt_rt_get();
  if (!rt) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!uv_is_closing((uv_handle_t *)&watchdog.t))
    uv_close((uv_handle_t *)&watchdog.t, NULL);
  int rc = msrt_rt_stop(rt);
  atimers_close_all();
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* keep_alive(bool): whether live actors keep the hub loop running (the
 * hub inbox's handle is referenced while they do). */
static int l_keep_alive(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  msrt_inbox_keep_alive(rt->inbox, lua_toboolean(L, 1));
  return 0;
}

static int l_set_dispatch(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushlightuserdata(L, (void *)&DISPATCH_KEY);
  lua_pushvalue(L, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* actor_new(name, spec, capacity, overflow, patterns, queue, bytes)
 *   -> id, cell, {sub ids of patterns} | nil, err */
static int l_actor_new(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  const char *name = luaL_checkstring(L, 1);
  size_t slen;
  const char *spec = luaL_checklstring(L, 2, &slen);
  size_t cap = (size_t)luaL_optinteger(L, 3, 0);
  msrt_overflow pol = msrt_lua_overflow(L, 4);
  const char *patterns[64];
  size_t np = 0;
  if (lua_istable(L, 5)) {
    np = lua_objlen(L, 5);
    if (np > 64) return luaL_argerror(L, 5, "at most 64 subscriptions");
    for (size_t i = 0; i < np; i++) {
      lua_rawgeti(L, 5, (int)i + 1);
      patterns[i] = lua_tostring(L, -1); /* kept alive by the table */
      lua_pop(L, 1);
      if (!patterns[i]) return luaL_argerror(L, 5, "subjects must be strings");
    }
  }
  const char *queue = luaL_optstring(L, 6, NULL);
  size_t bytes = (size_t)luaL_optnumber(L, 7, 0);
  msrt_error err;
  uint64_t sids[64];
  msrt_actor *cell = msrt_lactor_new(rt, name, spec, slen, cap, bytes, pol,
                                     patterns, np, queue, sids, &err);
  if (!cell) return fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)msrt_actor_id(cell));
  lua_pushlightuserdata(L, cell);
  lua_createtable(L, (int)np, 0);
  for (size_t i = 0; i < np; i++) {
    lua_pushnumber(L, (lua_Number)sids[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 3;
}

static int l_actor_stop(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  msrt_lactor_stop(lua_touserdata(L, 1), luaL_optstring(L, 2, "normal"));
  return 0;
}

static int l_actor_unref(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  msrt_actor_unref(lua_touserdata(L, 1));
  return 0;
}

/* actor_mailbox(cell) -> depth, high_water, bytes */
static int l_actor_mailbox(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  msrt_actor *a = lua_touserdata(L, 1);
  lua_pushinteger(L, (lua_Integer)msrt_actor_depth(a));
  lua_pushinteger(L, (lua_Integer)msrt_actor_high_water(a));
  lua_pushnumber(L, (lua_Number)msrt_actor_bytes(a));
  return 3;
}

static const char PENDING_META[] = "msrt.pending";

static int pending_gc(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  msrt_rt *rt = msrt_rt_get();
  /* cells outlive a finished publish (env NULL): free them too */
  if (rt && (p->env || p->items)) msrt_bus_pending_clear(rt->bus, p);
  return 0;
}

/* publish(subject, payload, reply, priority, headers, reply_ttl_ms)
 *   -> delivered | "blocked", pending | nil, err
 * reply_ttl_ms: a request's timeout, how long its inbox (reply) is valid
 * to a process handed it (msrt_bus_reply_ttl). */
static int l_publish(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  size_t slen, plen, rlen = 0;
  const char *s = luaL_checklstring(L, 1, &slen);
  const char *p = luaL_checklstring(L, 2, &plen);
  const char *r = luaL_optlstring(L, 3, NULL, &rlen);
  int prio = msrt_lua_priority(L, 4);
  size_t hlen = 0;
  const char *h = luaL_optlstring(L, 5, NULL, &hlen);
  msrt_error err;
  msrt_envelope *e =
      msrt_bus_make(rt->bus, s, slen, r, rlen, h, hlen, p, plen, prio, 0, &err);
  if (!e) return fail_err(L, &err);
  msrt_bus_reply_ttl(e, luaL_optnumber(L, 6, 0));
  msrt_bus_pending *pend = lua_newuserdata(L, sizeof *pend);
  memset(pend, 0, sizeof *pend);
  if (luaL_newmetatable(L, PENDING_META)) {
    lua_pushcfunction(L, pending_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  size_t delivered;
  msrt_code rc = msrt_bus_publish(rt->bus, e, &delivered, pend, &err);
  msrt_env_unref(e);
  if (rc == MSRT_E_MAILBOX_FULL && pend->n) {
    lua_pushliteral(L, "blocked");
    lua_insert(L, -2);
    return 2;
  }
  if (rc != MSRT_E_OK) return fail_err(L, &err);
  lua_pushinteger(L, (lua_Integer)delivered);
  return 1;
}

/* token() -> 22 random characters (core/token.h) | nil, err */
static int l_token(lua_State *L) {
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
  msrt_bus_undecodable(need_rt(L)->bus, s, len, luaL_checkstring(L, 2),
                      luaL_optstring(L, 3, NULL));
  return 0;
}

/* pending_wait(pending, wake_id) -> true (a "wake" dispatch will come) |
 * false (retry now) */
static int l_pending_wait(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  uintptr_t id = (uintptr_t)luaL_checknumber(L, 2);
  lua_pushboolean(L, msrt_bus_pending_wait(p, msrt_rt_hub_waker, NULL, (void *)id) ==
                         MSRT_WAIT_PENDING);
  return 1;
}

/* pending_retry(pending) -> delivered | "blocked" | nil, err (full
 * `error` mailboxes refused copies of the same publish) */
static int l_pending_retry(lua_State *L) {
  msrt_bus_pending *p = luaL_checkudata(L, 1, PENDING_META);
  if (msrt_bus_pending_retry(need_rt(L)->bus, p) == MSRT_E_MAILBOX_FULL) {
    lua_pushliteral(L, "blocked");
    return 1;
  }
  msrt_error err;
  if (msrt_bus_pending_refused(p, &err)) return fail_err(L, &err);
  lua_pushinteger(L, (lua_Integer)p->delivered);
  return 1;
}

/* subscribe(pattern, queue, hub_id) -> sub_id | nil, err */
static int l_subscribe(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  size_t plen, qlen = 0;
  const char *p = luaL_checklstring(L, 1, &plen);
  const char *q = luaL_optlstring(L, 2, NULL, &qlen);
  uint64_t hub_id = (uint64_t)luaL_checknumber(L, 3), sid;
  msrt_error err;
  if (msrt_bus_subscribe(rt->bus, p, plen, q, qlen, msrt_ep_hub(hub_id), &sid,
                         &err) != MSRT_E_OK)
    return fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)sid);
  return 1;
}

static int l_unsubscribe(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  lua_pushboolean(L, msrt_bus_unsubscribe(rt->bus, (uint64_t)luaL_checknumber(L, 1)) ==
                         MSRT_E_OK);
  return 1;
}

/* set_ready(sub_id, ready) -> true | nil, err (not_found): readiness
 * probes take a subscription out of its queue groups and put it back */
static int l_set_ready(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  uint64_t sid = (uint64_t)luaL_checknumber(L, 1);
  if (msrt_router_set_ready(rt->router, sid, lua_toboolean(L, 2)) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_NOT_FOUND, "no subscription %llu",
                         (unsigned long long)sid);
  lua_pushboolean(L, 1);
  return 1;
}

/* stamp_subscribe(pattern) -> sub_id, slot | nil, err: a subscription
 * whose messages only stamp the time they came (a stamp endpoint,
 * bus/endpoints.h) into slot (a light userdata: an _Atomic uint64_t of CLOCK_MONOTONIC ns, 0 until
 * the first; lua/msrt/health.lua reads it through the FFI). The slot is
 * released by stamp_unsubscribe. */
static int l_stamp_subscribe(lua_State *L) {
  msrt_rt *rt = need_rt(L);
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
    return fail_err(L, &err);
  }
  lua_pushnumber(L, (lua_Number)sid);
  lua_pushlightuserdata(L, (void *)slot);
  return 2;
}

/* stamp_unsubscribe(sub_id, slot): the slot is freed once no publishing
 * thread can still be writing it. */
static int l_stamp_unsubscribe(lua_State *L) {
  msrt_rt *rt = need_rt(L);
  luaL_checktype(L, 2, LUA_TLIGHTUSERDATA);
  void *slot = lua_touserdata(L, 2);
  /* an unknown id was never this slot's; with no memory to defer the free,
   * the 8 bytes are left rather than freed under a writer */
  if (msrt_bus_unsubscribe(rt->bus, (uint64_t)luaL_checknumber(L, 1)) == MSRT_E_OK)
    (void)msrt_router_defer(rt->router, free, slot);
  return 0;
}

static void push_worker(lua_State *L, const msrt_worker_stats *w) {
  lua_createtable(L, 0, 5);
  msrt_lua_set_num(L, "handled", (double)w->handled);
  msrt_lua_set_num(L, "turns", (double)w->turns);
  msrt_lua_set_num(L, "parks", (double)w->parks);
  msrt_lua_set_num(L, "wakes", (double)w->wakes);
  msrt_lua_set_num(L, "steals", (double)w->steals);
}

static void push_stats(lua_State *L, const msrt_router_stats *rs) {
  for (int i = 0; i < MSRT_STAT__COUNT; i++)
    msrt_lua_set_num(L, msrt_stat_name((msrt_stat)i), (double)rs->v[i]);
  msrt_lua_set_num(L, "dropped", (double)rs->dropped);
}

/* The router's counters: the totals, and per subject class under
 * `classes` (one read, so the totals are the classes' sum). */
static void push_router(lua_State *L, msrt_router *r) {
  msrt_class_stats cs[MSRT_CLASS_MAX];
  size_t n = msrt_account_classes(msrt_router_account(r), cs, MSRT_CLASS_MAX);
  msrt_router_stats total = {0};
  lua_createtable(L, 0, MSRT_STAT__COUNT + 3);
  lua_createtable(L, 0, (int)n);
  for (size_t c = 0; c < n; c++) {
    for (int i = 0; i < MSRT_STAT__COUNT; i++) total.v[i] += cs[c].stats.v[i];
    total.dropped += cs[c].stats.dropped;
    lua_createtable(L, 0, MSRT_STAT__COUNT + 1);
    push_stats(L, &cs[c].stats);
    lua_setfield(L, -2, cs[c].name);
  }
  lua_setfield(L, -2, "classes");
  push_stats(L, &total);
  msrt_lua_set_num(L, "subscriptions", (double)msrt_router_sub_count(r));
}

/* drain_inbox(): handle what other threads queued for the hub, now
 * (msrt_inbox_drain_some; a no-op inside a drain). */
static int l_drain_inbox(lua_State *L) {
  (void)L;
  msrt_rt *rt = msrt_rt_get();
  if (rt) msrt_inbox_drain_some(rt->inbox);
  return 0;
}

/* metrics() -> table (see msrt.metrics) */
static int l_metrics(lua_State *L) {
  msrt_rt *rt = msrt_rt_get();
  lua_newtable(L);
  if (!rt) return 1;
  msrt_worker_stats per[256];
  msrt_sched_stats st;
  msrt_sched_stats_get(rt->sched, &st, per);
  msrt_lua_set_num(L, "workers", (double)st.workers);
  msrt_lua_set_num(L, "actors", (double)st.actors);
  msrt_lua_set_num(L, "runnable", (double)st.runnable);
  msrt_lua_set_num(L, "parked", (double)st.parked);
  push_worker(L, &st.total);
  lua_setfield(L, -2, "total");
  lua_createtable(L, (int)st.workers, 0);
  for (size_t i = 0; i < st.workers; i++) {
    push_worker(L, &per[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "per_worker");
  lua_createtable(L, 0, 3);
  msrt_lua_set_num(L, "drop_oldest", (double)st.drops_oldest);
  msrt_lua_set_num(L, "drop_newest", (double)st.drops_newest);
  msrt_lua_set_num(L, "refused_full", (double)st.refused_full);
  lua_setfield(L, -2, "drops");
  push_router(L, rt->router);
  lua_setfield(L, -2, "router");
  msrt_lua_set_num(L, "hub_inbox", (double)msrt_inbox_depth(rt->inbox));
  return 1;
}

/* ---- routing tables ---------------------------------------------------- */

static const char ROUTES_META[] = "msrt.routes";

/* A compiled table; t is NULL once the router owns it (or it was freed). */
typedef struct {
  msrt_routes *t;
} routes_box;

static int routes_gc(lua_State *L) {
  routes_box *b = luaL_checkudata(L, 1, ROUTES_META);
  msrt_routes_free(b->t);
  b->t = NULL;
  return 0;
}

static const char *const RULE_KEYS[] = {"match", "rewrite", "split",
                                        "dead_letter", NULL};
static const char *const TARGET_KEYS[] = {"to", "weight", NULL};

/* Push field k of the table at idx (absolute) without metamethods: a rule
 * is plain data, and an __index could hand out a different (or
 * unanchored) value each time it is asked. */
static int raw_field(lua_State *L, int idx, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, idx);
  return lua_type(L, -1);
}

/* Refuse a key of the table at idx (absolute) that is not in keys: a typo
 * such as `dead_leter` must not pass as a rule without its action. */
static msrt_code check_keys(lua_State *L, int idx, const char *const *keys,
                            const char *where, msrt_error *err) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    size_t klen = 0;
    const char *k =
        lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &klen) : NULL;
    int i = 0; /* the length too: "rewrite\0typo" is not "rewrite" */
    while (k && keys[i] && (strlen(keys[i]) != klen || strcmp(k, keys[i])))
      i++;
    if (!k || !keys[i]) {
      msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: unknown field %s%s%s",
                     where, k ? "'" : "(a ", k ? k : luaL_typename(L, -1),
                     k ? "'" : " key)");
      lua_pop(L, 1);
      return MSRT_E_BAD_CONFIG;
    }
  }
  return MSRT_E_OK;
}

/* Field k of the table at idx as a string (NULL when absent). The table
 * keeps the string alive (a raw get: the value is in the table). */
static msrt_code str_field(lua_State *L, int idx, const char *k,
                           const char *where, const char **out,
                           msrt_error *err) {
  raw_field(L, idx, k);
  size_t len = 0;
  int type = lua_type(L, -1);
  *out = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  lua_pop(L, 1);
  if (type != LUA_TSTRING && type != LUA_TNIL)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: %s must be a string, got %s", where, k,
                          lua_typename(L, type));
  if (*out && strlen(*out) != len)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: %s holds a NUL byte",
                          where, k);
  return MSRT_E_OK;
}

/* Split target j (1-based) of rule no: the table at the top of the stack. */
static msrt_code read_target(lua_State *L, size_t no, size_t j,
                             msrt_route_target *t, msrt_error *err) {
  char where[64];
  snprintf(where, sizeof where, "rule %zu: split target %zu", no, j);
  int idx = lua_gettop(L);
  if (!lua_istable(L, idx))
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: a target is a table {to = subject, weight = "
                          "n}, got %s", where, luaL_typename(L, idx));
  msrt_code c = check_keys(L, idx, TARGET_KEYS, where, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "to", where, &t->subject, err);
  if (c != MSRT_E_OK) return c;
  if (!t->subject)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: no 'to' subject", where);
  int is_num = raw_field(L, idx, "weight") == LUA_TNUMBER;
  t->weight = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!is_num)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: weight must be a number", where);
  return MSRT_E_OK;
}

/* Rule no (1-based): the table at idx; its split targets go to tg. */
static msrt_code read_rule(lua_State *L, int idx, size_t no,
                           msrt_route_rule *r, msrt_route_target *tg,
                           msrt_error *err) {
  char where[32];
  snprintf(where, sizeof where, "rule %zu", no);
  memset(r, 0, sizeof *r);
  if (!lua_istable(L, idx))
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: a rule is a table, "
                          "got %s", where, luaL_typename(L, idx));
  msrt_code c = check_keys(L, idx, RULE_KEYS, where, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "match", where, &r->match, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "rewrite", where, &r->rewrite, err);
  if (c == MSRT_E_OK)
    c = str_field(L, idx, "dead_letter", where, &r->dead_letter, err);
  if (c != MSRT_E_OK) return c;
  int st = raw_field(L, idx, "split");
  if (st != LUA_TNIL && st != LUA_TTABLE) {
    lua_pop(L, 1);
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: split must be a list "
                          "of {to, weight}, got %s", where, lua_typename(L, st));
  }
  if (st == LUA_TTABLE) {
    r->split = tg;
    r->nsplit = lua_objlen(L, -1);
    for (size_t j = 0; j < r->nsplit && c == MSRT_E_OK; j++) {
      lua_rawgeti(L, -1, (int)j + 1);
      c = read_target(L, no, j + 1, &tg[j], err);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return c;
}

/* Split targets over all rules (the size of the scratch array). */
static size_t count_targets(lua_State *L, int rules, size_t n) {
  size_t total = 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, rules, (int)i);
    if (lua_istable(L, -1)) {
      raw_field(L, lua_gettop(L), "split");
      if (lua_istable(L, -1)) total += lua_objlen(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return total;
}

/* Read and compile the list at index 1 into *out. */
static msrt_code compile_list(lua_State *L, size_t max_subject,
                              msrt_routes **out, msrt_error *err) {
  size_t n = lua_objlen(L, 1), nt = count_targets(L, 1, n);
  /* scratch as userdata: collected whatever happens */
  msrt_route_rule *rules = lua_newuserdata(L, (n ? n : 1) * sizeof *rules);
  msrt_route_target *tg = lua_newuserdata(L, (nt ? nt : 1) * sizeof *tg);
  msrt_code c = MSRT_E_OK;
  size_t i = 0;
  for (size_t used = 0; i < n && c == MSRT_E_OK; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    c = read_rule(L, lua_gettop(L), i + 1, &rules[i], tg + used, err);
    used += rules[i].nsplit;
    lua_pop(L, 1);
  }
  if (c != MSRT_E_OK && i > 1) { /* name the first bad rule, as routes.c does */
    msrt_error early;
    msrt_routes *t = NULL;
    if (msrt_routes_compile(rules, i - 1, max_subject, &t, &early) != MSRT_E_OK)
      *err = early;
    msrt_routes_free(t);
  }
  if (c == MSRT_E_OK) c = msrt_routes_compile(rules, n, max_subject, out, err);
  lua_pop(L, 2);
  return c;
}

/* routes_compile(rules [, max_subject]) -> routes | nil, err
 * A pure function of the list (and the limit: the runtime's max_subject
 * once it runs, else the argument): nothing is installed. err.code is
 * bad_config with err.rule the failing rule's position (from 1). */
static int l_routes_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_rt *rt = msrt_rt_get();
  size_t max = rt ? rt->cfg.max_subject : (size_t)luaL_optinteger(L, 2, 0);
  routes_box *b = lua_newuserdata(L, sizeof *b);
  b->t = NULL;
  luaL_getmetatable(L, ROUTES_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  if (compile_list(L, max, &b->t, &err) == MSRT_E_OK) return 1;
  unsigned long no;
  fail_err(L, &err);
  if (sscanf(err.message, "rule %lu:", &no) == 1) {
    lua_pushnumber(L, (lua_Number)no);
    lua_setfield(L, -2, "rule");
  }
  return 2;
}

/* routes_install(routes) -> true | nil, err: the router's table becomes
 * routes (swapped atomically; the old one is freed once no reader sees
 * it). A compiled table installs once. */
static int l_routes_install(lua_State *L) {
  routes_box *b = luaL_checkudata(L, 1, ROUTES_META);
  msrt_rt *rt = need_rt(L);
  if (!b->t) return luaL_argerror(L, 1, "this routing table was installed already");
  /* no rules: remove the table, so that publishing skips routing */
  msrt_routes *t = msrt_routes_count(b->t) ? b->t : NULL;
  if (msrt_router_set_routes(rt->router, t) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_NOMEM, "out of memory installing routes");
  msrt_routes_free(t ? NULL : b->t);
  b->t = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

void msrt_lua_open_rt(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"rt_start", l_rt_start}, {"rt_stop", l_rt_stop}, {"rt_tune", l_rt_tune},
    {"set_dispatch", l_set_dispatch}, {"actor_new", l_actor_new},
    {"actor_stop", l_actor_stop}, {"actor_unref", l_actor_unref},
    {"actor_mailbox", l_actor_mailbox}, {"publish", l_publish},
    {"pending_wait", l_pending_wait}, {"pending_retry", l_pending_retry},
    {"subscribe", l_subscribe}, {"unsubscribe", l_unsubscribe},
    {"set_ready", l_set_ready}, {"stamp_subscribe", l_stamp_subscribe},
    {"stamp_unsubscribe", l_stamp_unsubscribe},
    {"metrics", l_metrics}, {"keep_alive", l_keep_alive},
    {"drain_inbox", l_drain_inbox}, {"undecodable", l_undecodable},
    {"token", l_token},
    {"routes_compile", l_routes_compile},
    {"routes_install", l_routes_install}, {NULL, NULL}};
  if (luaL_newmetatable(L, ROUTES_META)) {
    lua_pushcfunction(L, routes_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, fns);
}
