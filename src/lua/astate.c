#include "lua/astate.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

/* A state's first allocations come from one block taken before
 * lua_newstate: in the LuaJIT Debian ships (2.1.0-beta3) an allocation
 * failing inside lua_newstate, before its string table exists, crashes the
 * process (the out-of-memory error is a string it cannot make yet).
 * lua_newstate makes 52 allocations, 11.9 KiB, on x86_64; with the block
 * taken first, running out of memory is a NULL from msrt_astate_new. Later
 * allocations fill the rest of the block, then go to core/mem.h; a piece
 * of the block is never reused once freed (a few KiB per state at most).
 * The block's head is the allocator's state; LuaJIT frees the GG_State,
 * its first allocation, last (lua_close), which frees the block. */
#define BOOT_BLOCK 16384
#define BOOT_HEAD 16
/* LuaJIT's own allocator (lj_alloc.c, MALLOC_ALIGNMENT) aligns to 8 bytes,
 * all its objects need: rounding to 16 cost an idle actor ~0.2 KiB. */
#define ALIGN 8

typedef struct {
  size_t used;
} boot_block;

static void *state_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  boot_block *b = ud;
  char *base = (char *)b;
  int in_block = p && (char *)p >= base && (char *)p < base + BOOT_BLOCK;
  if (nsize == 0) {
    if (!in_block) msrt_mem_free(p);
    else if ((char *)p == base + BOOT_HEAD) msrt_mem_free(b);
    else if ((char *)p + osize == base + b->used) b->used -= osize;
    return NULL;
  }
  if (in_block) { /* shrink in place; grow out of the block */
    if (nsize <= osize) return p;
    void *q = msrt_mem_state_alloc(nsize);
    if (q) memcpy(q, p, osize);
    if (q && (char *)p + osize == base + b->used) b->used -= osize;
    return q;
  }
  size_t at = (b->used + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (!p && at + nsize <= BOOT_BLOCK) {
    b->used = at + nsize;
    return base + at;
  }
  return p ? msrt_mem_state_realloc(p, nsize) : msrt_mem_state_alloc(nsize);
}

static const luaL_Reg lazy_libs[] = {
    {LUA_TABLIBNAME, luaopen_table},
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

/* The loader lazy_searcher gives require (called with the name). */
static int load_lazy(lua_State *L) {
  open_named(L, luaL_checkstring(L, 1));
  return 1;
}

/* package.loaders[2], after package.preload's searcher: a lazy library's
 * name (or ffi) gives its loader. One C function instead of a preload
 * closure per library, and preload stays at LuaJIT's one entry
 * (string.buffer): ~0.6 KB less per state. */
static int lazy_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (!strcmp(name, "ffi")) lua_pushcfunction(L, luaopen_ffi);
  else if (lazy_opener(name)) lua_pushcfunction(L, load_lazy);
  else return 0; /* nothing added to require's "not found" message */
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
  lua_getfield(L, -1, "loaders");
  for (int i = (int)lua_objlen(L, -1); i >= 2; i--) { /* make room at 2 */
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, lazy_searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

typedef struct {
  const char *path, *cpath;
} paths;

/* The libraries and package setup, under lua_cpcall: an allocation that
 * fails raises, and unprotected that would end the process (LuaJIT's
 * panic); protected it is an error this state alone gets. */
static int setup_state(lua_State *L) {
  const paths *p = lua_touserdata(L, 1);
  open_lib(L, luaopen_base, "");
  open_lib(L, luaopen_package, LUA_LOADLIBNAME);
  open_lib(L, luaopen_string, LUA_STRLIBNAME);
  setup_package(L, p->path, p->cpath);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, LUA_GLOBALSINDEX);
  return 0;
}

lua_State *msrt_astate_new(int gc_pause, int gc_stepmul, const char *path,
                           const char *cpath) {
  boot_block *b = msrt_mem_state_alloc(BOOT_BLOCK);
  if (!b) return NULL;
  b->used = BOOT_HEAD;
  lua_State *L = lua_newstate(state_alloc, b);
  if (!L) { /* its GG_State was never made (else it was freed with b) */
    if (b->used == BOOT_HEAD) msrt_mem_free(b);
    return NULL;
  }
  lua_gc(L, LUA_GCSETPAUSE, gc_pause);
  lua_gc(L, LUA_GCSETSTEPMUL, gc_stepmul);
  paths p = {path, cpath};
  if (lua_cpcall(L, setup_state, &p) != 0) {
    lua_close(L);
    return NULL;
  }
  return L;
}
