/* msrt.core's runtime functions (lua/rt.h): start, stop and tune the
 * runtime; the drain of the hub inbox into the Lua dispatcher
 * (lua/msrt/hub.lua) and the timers actors ask for. Hub thread only. */
#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/token.h"
#include "hub/alarm.h"
#include "lua/actor.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lproc.h"
#include "lua/lrt.h"

static const char DISPATCH_KEY = 'd'; /* registry: the Lua dispatcher */

msrt_rt *msrt_lua_rt_opt(lua_State *L) {
  msrt_host *h = msrt_host_get(L);
  return h ? h->rt : NULL;
}

msrt_rt *msrt_lua_rt(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (!rt) luaL_error(L, "the msrt runtime is not started");
  return rt;
}

/* ---- timers actors ask for (hub/alarm.h) ------------------------------ */

static msrt_code alarm_fire(void *cell, uint64_t id) {
  char text[32];
  snprintf(text, sizeof text, "%llu", (unsigned long long)id);
  return msrt_lactor_control(cell, MSRT_CTL_TIMER, text);
}

static void alarm_release(void *cell) { msrt_actor_unref(cell); }

static const msrt_alarm_class ACTOR_ALARM = {alarm_fire, alarm_release};

/* A timer request from an actor (actor.c): "id ms repeat_ms called_ns",
 * holding a reference of its cell; ms < 0 cancels. Due ms after the
 * actor's call, however long the request waited in the hub's inbox. */
static void alarm_request(msrt_rt *rt, msrt_inbox_item *it) {
  long long id = 0, ms = 0, rep = 0;
  unsigned long long called = 0;
  char text[128]; /* the payload is not NUL-terminated */
  size_t n = it->env->payload_len < sizeof text ? it->env->payload_len
                                                : sizeof text - 1;
  memcpy(text, it->env->payload, n);
  text[n] = '\0';
  sscanf(text, "%lld %lld %lld %llu", &id, &ms, &rep, &called);
  if (ms < 0 || !rt->alarms) {
    if (rt->alarms) msrt_alarms_cancel(rt->alarms, it->target, (uint64_t)id);
    msrt_actor_unref(it->ptr);
    return;
  }
  msrt_alarms_set(rt->alarms, it->ptr, it->target, (uint64_t)id,
                  called + (uint64_t)ms * 1000000u, (uint64_t)rep);
}

/* ---- the inbox drain -------------------------------------------------- */

/* The run of items the hub's Lua is taking (msrt_lhub_next). */
static struct {
  msrt_inbox_item *items;
  size_t i, n;
  msrt_envelope *held; /* the item last handed out, released at the next */
} run;

int msrt_lhub_next(msrt_lhub_item *out) {
  if (run.held) msrt_env_unref(run.held);
  run.held = NULL;
  if (run.i >= run.n) return 0;
  msrt_inbox_item *it = &run.items[run.i++];
  msrt_envelope *e = it->env;
  *out = (msrt_lhub_item){.kind = it->kind, .target = (double)it->target,
                          .ptr = (double)(uintptr_t)it->ptr, .ttl_ms = -1};
  if (!e) return 1;
  run.held = e;
  out->priority = e->priority;
  out->flags = e->flags;
  out->id = (double)e->id;
  out->subject = e->subject;
  out->subject_len = e->subject_len;
  out->reply = e->reply;
  out->reply_len = e->reply_len;
  out->payload = (const char *)e->payload;
  out->payload_len = e->payload_len;
  out->headers = e->headers_len ? (const char *)e->headers : NULL;
  out->headers_len = e->headers_len;
  if (e->reply_deadline_ns) {
    uint64_t now = msrt_now_ns();
    out->ttl_ms = e->reply_deadline_ns > now
                      ? (double)(e->reply_deadline_ns - now) / 1e6 : 0;
  }
  return 1;
}

_Static_assert(MSRT_TOKEN_LEN == 22, "lua/msrt/hub.lua's TOKEN_LEN");
int msrt_lhub_token(char *out) { return msrt_token(out) == MSRT_E_OK; }

/* Hand items[0..n), all for the hub's Lua, to the dispatcher until it has
 * taken them all (again after each one that yielded or raised), or drop
 * them when there is none. */
static void pump(lua_State *L, msrt_inbox_item *items, size_t n) {
  run.items = items, run.i = 0, run.n = n;
  while (run.i < run.n) {
    size_t before = run.i;
    lua_pushlightuserdata(L, (void *)&DISPATCH_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    msrt_host_call(L, 0, 0, "error in hub callback");
    if (run.i == before) break; /* it took none: it cannot */
  }
  if (run.held) msrt_env_unref(run.held);
  for (size_t i = run.i; i < run.n; i++) msrt_env_unref(items[i].env);
  run.items = NULL, run.i = run.n = 0, run.held = NULL;
}

static bool for_c(int kind) {
  return kind == MSRT_IN_TIMER || kind == MSRT_IN_PROC;
}

static void drain(msrt_inbox_item *items, size_t n, void *ud) {
  lua_State *L = ud;
  msrt_rt *rt = msrt_lua_rt_opt(L);
  size_t i = 0;
  while (i < n) {
    msrt_inbox_item *it = &items[i];
    if (it->kind == MSRT_IN_TIMER) {
      alarm_request(rt, it);
      msrt_env_unref(it->env);
      i++;
    } else if (it->kind == MSRT_IN_PROC) { /* to a child's stdin (lproc.c) */
      msrt_lproc_deliver(rt, it->target, it->env);
      i++;
    } else {
      size_t j = i + 1;
      while (j < n && !for_c(items[j].kind)) j++;
      pump(L, items + i, j - i);
      i = j;
    }
  }
}

/* ---- msrt.core functions ---------------------------------------------- */

/* The runtime's figures from a resolved profile table at index t. */
static msrt_rt_config config_of(lua_State *L, int t) {
  msrt_rt_config c = {
    .workers = (int)msrt_lua_field_num(L, t, "workers", 1),
    .batch = (int)msrt_lua_field_num(L, t, "batch", 64),
    .spin_us = (int)msrt_lua_field_num(L, t, "spin_us", 50),
    .mailbox_capacity =
        (size_t)msrt_lua_field_num(L, t, "mailbox_capacity", 4096),
    .mailbox_bytes = (size_t)msrt_lua_field_num(L, t, "mailbox_bytes", 0),
    .max_payload = (size_t)msrt_lua_field_num(L, t, "max_payload", 1 << 20),
    .max_subject = (size_t)msrt_lua_field_num(L, t, "max_subject", 1024),
    .stack_size = (size_t)msrt_lua_field_num(L, t, "stack_size", 0),
    .steal_wait_us = (int)msrt_lua_field_num(L, t, "steal_wait_us", 0),
    .slice_ms = (long)msrt_lua_field_num(L, t, "slice_ms", 1000),
    .shutdown_timeout_ms =
        (long)msrt_lua_field_num(L, t, "shutdown_timeout_ms", 5000),
    .gc_pause = 200,
    .gc_stepmul = 200,
    .actor_max_subs =
        (size_t)msrt_lua_field_num(L, t, "max_subscriptions", 0),
  };
  lua_getfield(L, t, "overflow");
  c.overflow = msrt_lua_overflow(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, t, "gc");
  if (lua_istable(L, -1)) {
    c.gc_pause = (int)msrt_lua_field_num(L, -1, "pause", 200);
    c.gc_stepmul = (int)msrt_lua_field_num(L, -1, "stepmul", 200);
  }
  lua_pop(L, 1);
  return c;
}

/* rt_tune(profile) -> true | false (no runtime yet): apply the live figures */
static int l_rt_tune(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (rt) {
    msrt_rt_config c = config_of(L, 1);
    msrt_rt_tune(rt, &c);
  }
  lua_pushboolean(L, rt != NULL);
  return 1;
}

/* rt_start(profile, boot_bytecode, ctx_bytecode) -> true | nil, err
 * (actor_boot.lua's and actor_ctx.lua's, lua/actor.h msrt_lactor_setup) */
static int l_rt_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t blen, mlen;
  const char *boot = luaL_checklstring(L, 2, &blen);
  const char *more = luaL_checklstring(L, 3, &mlen);
  msrt_host *h = msrt_host_get(L);
  if (h->rt) {
    lua_pushboolean(L, 1);
    return 1;
  }
  msrt_rt_config c = config_of(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  msrt_lactor_setup(boot, blen, more, mlen, lua_tostring(L, -2),
                    lua_tostring(L, -1));
  lua_pop(L, 3);
  msrt_error err;
  if (msrt_rt_start(h->hub, &c, msrt_lactor_run, msrt_lactor_release, drain,
                    h->L, &h->rt, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  h->rt->alarms = msrt_alarms_new(msrt_hub_loop(h->hub), &ACTOR_ALARM);
  lua_pushboolean(L, 1);
  return 1;
}

/* rt_stop() -> true | false when a worker is stuck in an actor */
static int l_rt_stop(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (!rt) {
    lua_pushboolean(L, 1);
    return 1;
  }
  msrt_code rc = msrt_rt_stop(rt);
  msrt_alarms_free(rt->alarms);
  rt->alarms = NULL;
  lua_pushboolean(L, rc == MSRT_E_OK);
  return 1;
}

/* keep_alive(bool): whether live actors keep the hub loop running (the
 * hub inbox's handle is referenced while they do). */
static int l_keep_alive(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
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

/* drain_inbox(): handle what other threads queued for the hub, now
 * (msrt_inbox_drain_some; a no-op inside a drain). */
static int l_drain_inbox(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (rt) msrt_inbox_drain_some(rt->inbox);
  return 0;
}

void msrt_lua_open_rt(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"rt_start", l_rt_start}, {"rt_stop", l_rt_stop}, {"rt_tune", l_rt_tune},
    {"set_dispatch", l_set_dispatch}, {"keep_alive", l_keep_alive},
    {"drain_inbox", l_drain_inbox}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
