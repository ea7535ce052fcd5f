/* The one reader of Lua option tables in C (src/lua): field k of the
 * table at stack index t, read with lua_getfield (a metatable's __index
 * answers, as it would to Lua code reading the table), the stack left as
 * it was. A field that is absent or of another type reads as the default:
 * the Lua side has checked the table against its schema already
 * (lua/msrt/schema.lua). Routing rules are the exception, read raw by
 * lroutes.c: they are plain data that no metamethod may change while they
 * are compiled. Any thread that owns L. */
#ifndef MSRT_LUA_LFIELD_H
#define MSRT_LUA_LFIELD_H

#include <lua.h>
#include <stdbool.h>

/* The number at t[k] (or a string that reads as one), or d. */
lua_Number msrt_lua_field_num(lua_State *L, int t, const char *k,
                              lua_Number d);

/* The string at t[k] (a number is not converted), or NULL. The table
 * keeps it alive: use it while the table is on the stack. */
const char *msrt_lua_field_str(lua_State *L, int t, const char *k);

/* Whether t[k] is true (Lua truth: anything but nil and false). */
bool msrt_lua_field_bool(lua_State *L, int t, const char *k);

/* The number at t[k] when it is above 0, else 0 (absent, another type,
 * 0, negative, NaN): a size, a count or a time in ms whose 0 means "the
 * part's default" or "none". */
lua_Number msrt_lua_field_size(lua_State *L, int t, const char *k);

/* The strings of the list at t[k] (1..#list; nil or another type: none),
 * in order, in a NULL-terminated array held by a userdata this pushes on
 * the stack: leave it there, and t's list there, while the array is used
 * (the list keeps the strings alive). *n gets their count. An item that
 * is not a string (a number is not converted) raises "k[i] must be a
 * string". */
const char **msrt_lua_field_strs(lua_State *L, int t, const char *k,
                                 size_t *n);

#endif
