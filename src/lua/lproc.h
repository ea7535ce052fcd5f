/* The msrt.core functions for child processes (lproc.c, its spec reader
 * lproc_spec.c); the Lua face is lua/msrt/process.lua. Hub thread only. */
#ifndef MSRT_LUA_LPROC_H
#define MSRT_LUA_LPROC_H

#include <lua.h>
#include <stdint.h>

#include "core/envelope.h"
#include "lua/rt.h"
#include "proc/proc.h"

/* Register proc_* functions into the table at the top of the stack. */
void msrt_lua_open_proc(lua_State *L);

/* Register json_encode and json_decode (ljson.c: the process edge's JSON
 * rules for Lua code, lua/msrt/json.lua) into the table at the top. */
void msrt_lua_open_json(lua_State *L);

/* Read the spec table at stack index 1 (process.lua's checked table; the
 * fields l_proc_spawn names) into *s (lproc_spec.c). Its strings point
 * into the table and into userdata left on the stack (the lists): keep
 * both there while s is used. Raises a Lua error for a list item that is
 * not a string or an unknown overflow name. */
void msrt_lproc_spec(lua_State *L, msrt_proc_spec *s);

/* An MSRT_IN_PROC item for process id reached the hub: handed to
 * bus/procs.h msrt_bus_proc_item (e, its reference taken, written to the
 * process's stdin; e NULL: room for its paused output), and a line the
 * child cannot be given (bad_input, payload_too_big) reported to
 * process.lua as a bad_input event. */
void msrt_lproc_deliver(msrt_rt *rt, uint64_t id, msrt_envelope *e);

#endif
