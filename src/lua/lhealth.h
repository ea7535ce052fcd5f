/* The msrt.core functions for health checks (lhealth.c); their one user
 * is lua/msrt/health/books.lua. Hub thread only. */
#ifndef MSRT_LUA_LHEALTH_H
#define MSRT_LUA_LHEALTH_H

#include <lua.h>

/* Register health_new (a child's probe books: src/health, with
 * h:pointer() for the FFI entry points) and the constants health_kinds,
 * health_events and health_defaults into the table at the top of the
 * stack. */
void msrt_lua_open_health(lua_State *L);

#endif
