/* msrt.core's actor functions: make, stop and read an actor
 * (lua/actor.h); lua/msrt/actors.lua is their caller. Hub thread only. */
#include <lauxlib.h>

#include "core/mem.h"
#include "lua/actor.h"
#include "lua/lerror.h"
#include "lua/lrt.h"

/* An actor's cell as Lua holds it: typed, holding one reference, given
 * back by actor_release or, failing that, by the garbage collector. */
static const char CELL_META[] = "msrt.actor_cell";

typedef struct {
  msrt_actor *cell; /* NULL once released */
} cell_box;

static msrt_actor *check_cell(lua_State *L, int idx) {
  cell_box *b = luaL_checkudata(L, idx, CELL_META);
  if (!b->cell) luaL_argerror(L, idx, "the actor cell was released");
  return b->cell;
}

/* actor_release(cell): the hub's handle lets go of the cell (once the
 * actor has exited, or after the runtime stopped); again is a no-op. */
static int l_actor_release(lua_State *L) {
  cell_box *b = luaL_checkudata(L, 1, CELL_META);
  msrt_actor_unref(b->cell);
  b->cell = NULL;
  msrt_mem_state_freed(); /* its state was made here (actor.c) */
  return 0;
}

/* actor_collect(): the hub's states' heap gives back at once what the
 * released actors' states freed of it (core/mem.h msrt_mem_state_collect). */
static int l_actor_collect(lua_State *L) {
  (void)L;
  msrt_mem_state_collect();
  return 0;
}

/* actor_new(name, spec, capacity, overflow, patterns, queue, bytes)
 *   -> id, cell, {sub ids of patterns} | nil, err */
static int l_actor_new(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
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
  /* the box first: making it cannot fail once the cell exists */
  cell_box *b = lua_newuserdata(L, sizeof *b);
  b->cell = NULL;
  luaL_getmetatable(L, CELL_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  uint64_t sids[64];
  b->cell = msrt_lactor_new(rt, name, spec, slen, cap, bytes, pol, patterns,
                            np, queue, sids, &err);
  if (!b->cell) return msrt_lua_fail_err(L, &err);
  lua_pushnumber(L, (lua_Number)msrt_actor_id(b->cell));
  lua_insert(L, -2);
  lua_createtable(L, (int)np, 0);
  for (size_t i = 0; i < np; i++) {
    lua_pushnumber(L, (lua_Number)sids[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 3;
}

/* actor_stop(cell [, reason]) */
static int l_actor_stop(lua_State *L) {
  msrt_lactor_stop(check_cell(L, 1), luaL_optstring(L, 2, "normal"));
  return 0;
}

/* actor_mailbox(cell) -> depth, high_water, bytes */
static int l_actor_mailbox(lua_State *L) {
  msrt_actor *a = check_cell(L, 1);
  lua_pushinteger(L, (lua_Integer)msrt_actor_depth(a));
  lua_pushinteger(L, (lua_Integer)msrt_actor_high_water(a));
  lua_pushnumber(L, (lua_Number)msrt_actor_bytes(a));
  return 3;
}

void msrt_lua_open_actor(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"actor_new", l_actor_new}, {"actor_stop", l_actor_stop},
    {"actor_release", l_actor_release}, {"actor_mailbox", l_actor_mailbox},
    {"actor_collect", l_actor_collect},
    {NULL, NULL}};
  if (luaL_newmetatable(L, CELL_META)) {
    lua_pushcfunction(L, l_actor_release);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, fns);
}
