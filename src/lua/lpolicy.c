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

#define META "msrt.policy_state"
#define MAX_DEPTH 64
#define HOOK_EVERY 1000 /* VM instructions between clock reads */

typedef struct {
  lua_State *P;
  size_t used, cap;  /* bytes P holds, and the most it may */
  uint64_t deadline; /* uv_hrtime() at which the running call ends; 0 idle */
  int time_ms;
  int refs;          /* P registry ref: {fn = id, [id] = fn} */
  int entry;         /* P registry ref: the in_policy closure */
  int dumper;        /* P registry ref: the dump_in_policy closure */
  int next_id;
} pstate;

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

static int proxy_call(lua_State *H);

/* ---- host -> policy (runs inside P's protected call) ---------------- */

static int proxy_id(lua_State *H, int i) {
  lua_getupvalue(H, i, 2);
  int id = (int)lua_tointeger(H, -1);
  lua_pop(H, 1);
  return id;
}

/* Whether the function at i is a proxy into s. */
static int own_proxy(lua_State *H, int i, pstate *s) {
  if (lua_tocfunction(H, i) != proxy_call) return 0;
  lua_getupvalue(H, i, 1);
  int mine = lua_touserdata(H, -1) == (void *)s;
  lua_pop(H, 1);
  return mine;
}

/* Whether a table's key or value at i is copied in: plain values,
 * tables and proxies into s. */
static int crosses(lua_State *H, int i, pstate *s) {
  int t = lua_type(H, i);
  return t != LUA_TUSERDATA && t != LUA_TLIGHTUSERDATA && t != LUA_TTHREAD &&
         (t != LUA_TFUNCTION || own_proxy(H, i, s));
}

static void copy_in(lua_State *H, int i, lua_State *P, pstate *s, int depth) {
  i = i < 0 && i > LUA_REGISTRYINDEX ? lua_gettop(H) + i + 1 : i;
  if (depth > MAX_DEPTH) luaL_error(P, "value nested deeper than %d (or a cycle)", MAX_DEPTH);
  luaL_checkstack(P, 4, "policy value");
  if (!lua_checkstack(H, 4)) luaL_error(P, "value nested too deep");
  switch (lua_type(H, i)) {
  case LUA_TNIL: lua_pushnil(P); return;
  case LUA_TBOOLEAN: lua_pushboolean(P, lua_toboolean(H, i)); return;
  case LUA_TNUMBER: lua_pushnumber(P, lua_tonumber(H, i)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *str = lua_tolstring(H, i, &n);
    lua_pushlstring(P, str, n);
    return;
  }
  case LUA_TTABLE:
    lua_newtable(P);
    lua_pushnil(H);
    while (lua_next(H, i)) {
      if (crosses(H, -2, s) && crosses(H, -1, s)) {
        copy_in(H, -2, P, s, depth + 1);
        copy_in(H, -1, P, s, depth + 1);
        lua_rawset(P, -3);
      }
      lua_pop(H, 1);
    }
    return;
  case LUA_TFUNCTION:
    if (own_proxy(H, i, s)) {
      lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
      lua_rawgeti(P, -1, proxy_id(H, i));
      lua_remove(P, -2);
      return;
    }
    __attribute__((fallthrough)); /* a host function stays out, as: */
  default: /* a userdata or a thread */
    lua_pushnil(P);
  }
}

/* ---- policy -> host ------------------------------------------------------ */

/* Check what is to leave P (types, depth) and give each function an id,
 * so that copy_out cannot fail on P's side. Runs protected, in P. */
static void prepare(lua_State *P, pstate *s, int i, int depth) {
  i = i < 0 ? lua_gettop(P) + i + 1 : i;
  if (depth > MAX_DEPTH) luaL_error(P, "value nested deeper than %d (or a cycle)", MAX_DEPTH);
  luaL_checkstack(P, 4, "policy value");
  switch (lua_type(P, i)) {
  case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING: return;
  case LUA_TTABLE:
    lua_pushnil(P);
    while (lua_next(P, i)) {
      prepare(P, s, -2, depth + 1);
      prepare(P, s, -1, depth + 1);
      lua_pop(P, 1);
    }
    return;
  case LUA_TFUNCTION:
    lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
    lua_pushvalue(P, i);
    lua_rawget(P, -2);
    if (lua_isnil(P, -1)) {
      int id = ++s->next_id;
      lua_pushvalue(P, i);
      lua_pushinteger(P, id);
      lua_rawset(P, -4);
      lua_pushvalue(P, i);
      lua_rawseti(P, -3, id);
    }
    lua_pop(P, 2);
    return;
  default:
    luaL_error(P, "a %s cannot leave the policy sandbox", luaL_typename(P, i));
  }
}

/* Push P's value at i onto H; ps is the index of the pstate in H. Only H
 * may raise here (out of memory). */
static void copy_out(lua_State *P, int i, lua_State *H, int ps) {
  i = i < 0 ? lua_gettop(P) + i + 1 : i;
  luaL_checkstack(H, 4, "policy value");
  switch (lua_type(P, i)) {
  case LUA_TBOOLEAN: lua_pushboolean(H, lua_toboolean(P, i)); return;
  case LUA_TNUMBER: lua_pushnumber(H, lua_tonumber(P, i)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *str = lua_tolstring(P, i, &n);
    lua_pushlstring(H, str, n);
    return;
  }
  case LUA_TTABLE:
    lua_newtable(H);
    lua_pushnil(P);
    while (lua_next(P, i)) {
      copy_out(P, -2, H, ps);
      copy_out(P, -1, H, ps);
      lua_rawset(H, -3);
      lua_pop(P, 1);
    }
    return;
  case LUA_TFUNCTION: {
    pstate *s = lua_touserdata(H, ps);
    lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
    lua_pushvalue(P, i);
    lua_rawget(P, -2);
    lua_Integer id = lua_tointeger(P, -1);
    lua_pop(P, 2);
    lua_pushvalue(H, ps);
    lua_pushinteger(H, id);
    lua_pushcclosure(H, proxy_call, 2);
    return;
  }
  default: lua_pushnil(H);
  }
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
  for (int k = 0; k < c->n; k++) copy_in(c->H, c->first + k, P, s, 0);
  int base = lua_gettop(P) - c->n - 1;
  s->deadline = uv_hrtime() + (uint64_t)s->time_ms * 1000000u;
  lua_sethook(P, hook, LUA_MASKCOUNT, HOOK_EVERY);
  lua_call(P, c->n, LUA_MULTRET);
  s->deadline = 0;
  lua_sethook(P, NULL, 0, 0);
  for (int k = base + 1; k <= lua_gettop(P); k++) prepare(P, s, k, 0);
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
  for (int k = 1; k <= n; k++) copy_out(P, k, H, ps);
  lua_settop(P, 0);
  return n;
}

static int proxy_call(lua_State *H) {
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
  if (lua_tocfunction(H, 1) != proxy_call) return lua_pushnil(H), 1;
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
