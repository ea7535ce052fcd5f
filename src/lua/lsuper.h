/* The msrt.core functions for supervisors (lsuper.c); the Lua face is
 * lua/msrt/supervisor.lua. Hub thread only. */
#ifndef MSRT_LUA_LSUPER_H
#define MSRT_LUA_LSUPER_H

#include <lua.h>

/* Register super_new (a child table with restart books: src/super) and
 * backoff_delay into the table at the top of the stack. */
void msrt_lua_open_super(lua_State *L);

#endif
