#include "lua/astate.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static void *state_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    msrt_mem_free(p);
    return NULL;
  }
  return msrt_mem_realloc(p, nsize);
}

static const luaL_Reg lazy_libs[] = {
    {LUA_IOLIBNAME, luaopen_io},   {LUA_OSLIBNAME, luaopen_os},
    {LUA_MATHLIBNAME, luaopen_math}, {LUA_BITLIBNAME, luaopen_bit},
    {LUA_JITLIBNAME, luaopen_jit},   {NULL, NULL}};

static lua_CFunction lazy_opener(const char *name) {
  for (const luaL_Reg *l = lazy_libs; l->name; l++)
    if (!strcmp(l->name, name)) return l->func;
  return NULL;
}

/* Open library `name` unless package.loaded has it; leave it on the stack.
 * (The openers register the global and package.loaded themselves; what
 * luaopen_jit leaves on top is not the jit table, so the global is read.) */
static void open_named(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_pushcfunction(L, lazy_opener(name));
  lua_pushstring(L, name);
  lua_call(L, 1, 0);
  lua_getglobal(L, name);
}

int msrt_astate_jit(lua_State *L) {
  open_named(L, LUA_JITLIBNAME);
  return 1;
}

/* package.preload entry (upvalue 1: the library's name). */
static int preload_lazy(lua_State *L) {
  open_named(L, lua_tostring(L, lua_upvalueindex(1)));
  return 1;
}

/* _G's __index: a lazy library's name opens it; the metatable goes once
 * every lazy library is open, so undefined globals cost nothing more. */
static int lazy_index(lua_State *L) {
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (!k || !lazy_opener(k)) return 0;
  open_named(L, k);
  int open = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  for (const luaL_Reg *l = lazy_libs; l->name; l++) {
    lua_getfield(L, -1, l->name);
    open += lua_istable(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (open == (int)(sizeof lazy_libs / sizeof *lazy_libs) - 1) {
    lua_pushnil(L);
    lua_setmetatable(L, LUA_GLOBALSINDEX);
  }
  return 1;
}

static void open_lib(lua_State *L, lua_CFunction fn, const char *name) {
  lua_pushcfunction(L, fn);
  lua_pushstring(L, name);
  lua_call(L, 1, 0);
}

static void setup_package(lua_State *L, const char *path, const char *cpath) {
  lua_getglobal(L, LUA_LOADLIBNAME);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_ffi);
  lua_setfield(L, -2, "ffi");
  for (const luaL_Reg *l = lazy_libs; l->name; l++) {
    lua_pushstring(L, l->name);
    lua_pushcclosure(L, preload_lazy, 1);
    lua_setfield(L, -2, l->name);
  }
  lua_pop(L, 1);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

lua_State *msrt_astate_new(int gc_pause, int gc_stepmul, const char *path,
                           const char *cpath) {
  lua_State *L = lua_newstate(state_alloc, NULL);
  if (!L) return NULL;
  lua_gc(L, LUA_GCSETPAUSE, gc_pause);
  lua_gc(L, LUA_GCSETSTEPMUL, gc_stepmul);
  open_lib(L, luaopen_base, "");
  open_lib(L, luaopen_package, LUA_LOADLIBNAME);
  open_lib(L, luaopen_table, LUA_TABLIBNAME);
  open_lib(L, luaopen_string, LUA_STRLIBNAME);
  setup_package(L, path, cpath);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, LUA_GLOBALSINDEX);
  return L;
}
