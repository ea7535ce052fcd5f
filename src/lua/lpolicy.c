/* Policy states: see lpolicy.h. The host state is H, the policy state P. */
#include "lua/lpolicy.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/mem.h"
#include "lua/lpolicy_int.h"

#define META "msrt.policy_state"
#define HOOK_EVERY 1000 /* VM instructions between clock reads */

static void *palloc(void *ud, void *p, size_t osize, size_t nsize) {
  pstate *s = ud;
  size_t old = p ? osize : 0;
  if (nsize == 0) {
    s->used -= old;
    msrt_mem_free(p);
    return NULL;
  }
  if (nsize > old && s->used - old + nsize > s->cap) return NULL;
  void *q = msrt_mem_realloc(p, nsize);
  if (q) s->used = s->used - old + nsize;
  return q;
}

static void hook(lua_State *P, lua_Debug *ar) {
  (void)ar;
  void *ud;
  lua_getallocf(P, &ud);
  pstate *s = ud;
  if (s->deadline && uv_hrtime() > s->deadline)
    luaL_error(P, "policy code ran past its time budget of %d ms", s->time_ms);
}

/* Whether the running call's time is up (for the sandbox's pcall, which
 * must not swallow the budget's error). */
static int p_spent(lua_State *P) {
  void *ud;
  lua_getallocf(P, &ud);
  pstate *s = ud;
  lua_pushboolean(P, s->deadline && uv_hrtime() > s->deadline);
  return 1;
}

static int p_getenv(lua_State *P) {
  lua_pushstring(P, getenv(luaL_checkstring(P, 1)));
  return 1;
}

/* ---- a call into P -------------------------------------------------------- */

typedef struct {
  lua_State *H;
  pstate *s;
  int fn_id;    /* the function's id; 0: the chunk below the call */
  int first, n; /* arguments: H's stack slots first .. first + n - 1 */
} call;

/* In P, protected: copy the arguments in, call within the budget, check
 * the results. Stack: [1] the call, [2] the boot chunk when fn_id is 0. */
static int in_policy(lua_State *P) {
  call *c = lua_touserdata(P, 1);
  pstate *s = c->s;
  if (c->fn_id) {
    lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
    lua_rawgeti(P, -1, c->fn_id);
    lua_remove(P, -2);
  } else {
    lua_pushvalue(P, 2);
  }
  luaL_checkstack(P, c->n + 8, "policy arguments");
  for (int k = 0; k < c->n; k++) msrt_lpolicy_copy_in(c->H, c->first + k, P, s, 0);
  int base = lua_gettop(P) - c->n - 1;
  s->deadline = uv_hrtime() + (uint64_t)s->time_ms * 1000000u;
  lua_sethook(P, hook, LUA_MASKCOUNT, HOOK_EVERY);
  lua_call(P, c->n, LUA_MULTRET);
  s->deadline = 0;
  lua_sethook(P, NULL, 0, 0);
  for (int k = base + 1; k <= lua_gettop(P); k++) msrt_lpolicy_prepare(P, s, k, 0);
  return lua_gettop(P) - base;
}

/* Run c in P (nothing on P's stack but, when c->fn_id is 0, the chunk);
 * push the results on H and return how many, or raise the error in H.
 * ps: the pstate's index in H. Nothing here allocates in P outside the
 * protected call (the stack's LUA_MINSTACK slots hold the pushes). */
static int run(lua_State *H, int ps, call *c) {
  pstate *s = c->s;
  lua_State *P = s->P;
  if (!P) return luaL_error(H, "the policy state is closed");
  if (s->deadline) return luaL_error(H, "the policy state is busy");
  int nargs = c->fn_id ? 1 : 2;
  lua_rawgeti(P, LUA_REGISTRYINDEX, s->entry);
  lua_pushlightuserdata(P, c);
  if (!c->fn_id) lua_pushvalue(P, 1), lua_remove(P, 1); /* [entry, c, chunk] */
  int rc = lua_pcall(P, nargs, LUA_MULTRET, 0);
  s->deadline = 0;
  lua_sethook(P, NULL, 0, 0);
  if (rc) {
    char why[96];
    const char *msg = why;
    if (rc == LUA_ERRMEM)
      snprintf(why, sizeof why, "policy code went past its memory budget of %zu bytes", s->cap);
    else if (lua_type(P, -1) == LUA_TSTRING) msg = lua_tostring(P, -1);
    else snprintf(why, sizeof why, "policy code raised a %s", luaL_typename(P, -1));
    lua_pushstring(H, msg);
    lua_settop(P, 0);
    lua_gc(P, LUA_GCCOLLECT, 0);
    return lua_error(H);
  }
  int n = lua_gettop(P);
  luaL_checkstack(H, n + 4, "policy results");
  for (int k = 1; k <= n; k++) msrt_lpolicy_copy_out(P, k, H, ps);
  lua_settop(P, 0);
  return n;
}

int msrt_lpolicy_proxy_call(lua_State *H) {
  int n = lua_gettop(H);
  call c = {H, lua_touserdata(H, lua_upvalueindex(1)),
            (int)lua_tointeger(H, lua_upvalueindex(2)), 1, n};
  lua_pushvalue(H, lua_upvalueindex(1));
  return run(H, n + 1, &c);
}

/* ---- bytecode of a policy function, for an actor -------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} dumpbuf;

static int writer(lua_State *P, const void *p, size_t sz, void *ud) {
  (void)P;
  dumpbuf *d = ud;
  if (d->len + sz > d->cap) {
    size_t cap = (d->len + sz) * 2;
    char *b = realloc(d->buf, cap);
    if (!b) return 1;
    d->buf = b, d->cap = cap;
  }
  memcpy(d->buf + d->len, p, sz);
  d->len += sz;
  return 0;
}

/* In P, protected: [1] the dumpbuf, [2] the function. */
static int dump_in_policy(lua_State *P) {
  dumpbuf *d = lua_touserdata(P, 1);
  luaL_Buffer names;
  luaL_buffinit(P, &names);
  int n = 0;
  for (const char *up; (up = lua_getupvalue(P, 2, n + 1)) != NULL; n++) {
    lua_pop(P, 1);
    if (n) luaL_addstring(&names, ", ");
    luaL_addstring(&names, up);
  }
  luaL_pushresult(&names);
  if (n) return luaL_error(P, "has %d upvalue(s) (%s): actor functions run in their own Lua state and cannot capture locals; pass values in args", n, lua_tostring(P, -1));
  lua_settop(P, 2);
  if (lua_iscfunction(P, 2) || lua_dump(P, writer, d)) return luaL_error(P, "cannot be carried to an actor");
  return 0;
}

/* core.policy_bytecode(f) -> bytecode | nil [, why]: when f is a proxy of
 * a policy function, its bytecode (to run in an actor's state, in the
 * sandbox actor_boot.lua gives it); nil alone for any other function. */
static int l_policy_bytecode(lua_State *H) {
  if (lua_tocfunction(H, 1) != msrt_lpolicy_proxy_call) return lua_pushnil(H), 1;
  lua_getupvalue(H, 1, 1);
  pstate *s = lua_touserdata(H, -1);
  lua_getupvalue(H, 1, 2);
  int id = (int)lua_tointeger(H, -1);
  lua_pop(H, 2);
  lua_State *P = s->P;
  if (!P || s->deadline) return luaL_error(H, "the policy state is closed or busy");
  dumpbuf d = {NULL, 0, 0};
  lua_rawgeti(P, LUA_REGISTRYINDEX, s->dumper);
  lua_pushlightuserdata(P, &d);
  lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
  lua_rawgeti(P, -1, id);
  lua_remove(P, -2);
  int rc = lua_pcall(P, 2, 0, 0);
  lua_pushnil(H);
  if (rc) lua_pushstring(H, rc == LUA_ERRMEM ? "is too large" : lua_tostring(P, -1));
  else lua_pushlstring(H, d.buf, d.len), lua_remove(H, -2);
  lua_settop(P, 0);
  free(d.buf);
  return rc ? 2 : 1;
}

/* The open policy states, from static memory. They would be reachable
 * only through their pstate, which lives in the host state's memory (not
 * malloc's: LeakSanitizer does not scan it), so a host that ends without
 * closing its state (os.exit) would report every policy state as leaked
 * and exit 1 under ASan. Hub thread only, as every function here. */
static lua_State **live;
static size_t nlive, live_cap;

static int live_add(lua_State *P) {
  if (nlive == live_cap) {
    size_t cap = live_cap ? live_cap * 2 : 16;
    lua_State **grown = realloc(live, cap * sizeof *grown);
    if (!grown) return -1;
    live = grown, live_cap = cap;
  }
  live[nlive++] = P;
  return 0;
}

static void live_remove(lua_State *P) {
  for (size_t i = 0; i < nlive; i++)
    if (live[i] == P) {
      live[i] = live[--nlive];
      return;
    }
}

static void close_state(pstate *s) {
  if (s->P) live_remove(s->P), lua_close(s->P);
  s->P = NULL;
}

static int state_gc(lua_State *H) {
  close_state(lua_touserdata(H, 1));
  return 0;
}

static void open_lib(lua_State *P, lua_CFunction fn, const char *name) {
  lua_pushcfunction(P, fn);
  lua_pushstring(P, name);
  lua_call(P, 1, 0);
}

/* Libraries, globals and registry refs of a fresh P; protected
 * (allocations may fail). */
static int setup(lua_State *P) {
  pstate *s = lua_touserdata(P, 1);
  open_lib(P, luaopen_base, "");
  open_lib(P, luaopen_table, LUA_TABLIBNAME);
  open_lib(P, luaopen_string, LUA_STRLIBNAME);
  open_lib(P, luaopen_math, LUA_MATHLIBNAME);
  open_lib(P, luaopen_bit, LUA_BITLIBNAME);
  lua_register(P, "getenv", p_getenv);
  lua_register(P, "spent", p_spent);
  lua_newtable(P);
  s->refs = luaL_ref(P, LUA_REGISTRYINDEX);
  lua_pushcfunction(P, in_policy);
  s->entry = luaL_ref(P, LUA_REGISTRYINDEX);
  lua_pushcfunction(P, dump_in_policy);
  s->dumper = luaL_ref(P, LUA_REGISTRYINDEX);
  return 0;
}

static int l_policy_state(lua_State *H) {
  size_t len;
  const char *boot = luaL_checklstring(H, 1, &len);
  lua_Integer mem = luaL_checkinteger(H, 2);
  lua_Integer ms = luaL_checkinteger(H, 3);
  luaL_argcheck(H, mem >= 1 << 20, 2, "at least 1 MiB");
  luaL_argcheck(H, ms >= 1 && ms <= 3600000, 3, "1 .. 3600000 ms");
  pstate *s = lua_newuserdata(H, sizeof *s);
  memset(s, 0, sizeof *s);
  s->cap = (size_t)mem;
  s->time_ms = (int)ms;
  luaL_getmetatable(H, META);
  lua_setmetatable(H, -2);
  int ps = lua_gettop(H);
  lua_State *P = s->P = lua_newstate(palloc, s);
  if (!P) return luaL_error(H, "cannot make a policy state: out of memory");
  if (live_add(P) != 0) {
    lua_close(P), s->P = NULL;
    return luaL_error(H, "cannot make a policy state: out of memory");
  }
  luaJIT_setmode(P, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  if (lua_cpcall(P, setup, s) != 0) {
    close_state(s);
    return luaL_error(H, "cannot make a policy state: out of memory");
  }
  if (luaL_loadbuffer(P, boot, len, "=policy_boot")) {
    lua_pushstring(H, lua_tostring(P, -1));
    close_state(s);
    return lua_error(H);
  }
  call c = {H, s, 0, 4, ps - 4};
  return run(H, ps, &c);
}

void msrt_lua_open_policy(lua_State *L) {
  if (luaL_newmetatable(L, META)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_policy_state);
  lua_setfield(L, -2, "policy_state");
  lua_pushcfunction(L, l_policy_bytecode);
  lua_setfield(L, -2, "policy_bytecode");
}
