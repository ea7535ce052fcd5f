/* The msrt.core functions for health checks (lhealth.c); the Lua face is
 * lua/msrt/health.lua. Hub thread only. */
#ifndef MSRT_LUA_LHEALTH_H
#define MSRT_LUA_LHEALTH_H

#include <lua.h>

/* Register health_new (a child's probe books: src/health) into the table
 * at the top of the stack. */
void msrt_lua_open_health(lua_State *L);

#endif
