/* The Lua state of an actor: made small and fast to create, because a
 * host runs thousands of them (docs/performance.md, "Actor spawn and
 * memory per actor": about 38 KiB RSS per idle actor and 34,000 actors
 * spawned a second on a 2-vCPU VM, 2026-12-06).
 *
 *  - Memory comes from core/mem.h (mimalloc; msrt_mem_state_alloc, the
 *    states' region, in 2 MiB pages while a fleet grows: lua/actor.c),
 *    not LuaJIT's per-state mmap arenas: with thousands of states those
 *    cost a page fault per fresh page and contend on the process's mmap
 *    lock (perf: 60% of spawn time in the kernel). A custom allocator needs LuaJIT's GC64 mode (the x64
 *    default); without it lua_newstate returns NULL, reported as out of
 *    memory.
 *  - base, package and string are opened at once; table, io, os, math
 *    and bit (11.3 KB together; table 2.7 KB, which an idle actor's
 *    own code does not use) and jit (whose CPU detection alone costs
 *    ~23 us per state on this machine kind; opening it turns the JIT on)
 *    are opened on the first read of their global or on require: _G has a
 *    metatable whose __index opens them, removed once all are open. So
 *    rawget(_G, "io") is nil until then, and a module that replaces _G's
 *    metatable (strict.lua) should first touch the libraries it uses.
 *  - ffi only on require (it alone doubles creation time and adds 13 KB);
 *    no debug library.
 *  - require finds the lazy libraries and ffi through a searcher of its
 *    own, package.loaders[2] (after package.preload's), not through
 *    package.preload entries (a closure each).
 *
 * Thread-safety: each state belongs to one thread at a time (the worker
 * running its actor); these functions touch only the state given. */
#ifndef MSRT_LUA_ASTATE_H
#define MSRT_LUA_ASTATE_H

#include <lua.h>

/* A new state with the libraries above, the GC tuned (pause, stepmul in
 * percent, as lua_gc's LUA_GCSETPAUSE / LUA_GCSETSTEPMUL) and
 * package.path / cpath set (copied). NULL when out of memory (the setup
 * runs under lua_cpcall, so running out never ends the process). Any
 * thread; the state may then move to another thread (one at a time). */
lua_State *msrt_astate_new(int gc_pause, int gc_stepmul, const char *path,
                           const char *cpath);

/* lua_CFunction: open the jit library if it is not open (turning the JIT
 * on) and return the jit table. */
int msrt_astate_jit(lua_State *L);

#endif
