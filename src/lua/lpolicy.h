/* Policy states: a Lua state of its own for the code of policy files
 * (routing tables, profiles, supervision trees, strategies), so that what
 * a file may reach and spend is decided here, not by the hub's globals.
 * The Lua face is lua/msrt/policy.lua (README "Policy files"). Hub thread
 * only.
 *
 * core.policy_state(boot, memory_bytes, time_ms, ...) -> what boot returns
 *   Makes a state with only the base, string, table, math and bit
 *   libraries, the JIT off (compiled loops would not run the budget's
 *   hook), C functions as the globals `getenv` (os.getenv) and `spent`
 *   (whether the running call's time is up: a pcall in the sandbox must
 *   not swallow the budget's error), and an allocator
 *   that refuses to hold more than memory_bytes; runs the text boot (the
 *   host's own code, lua/msrt/policy_boot.lua) with the other arguments;
 *   returns its results copied into the caller's state.
 *
 * Values cross between the states by copy: nil, booleans, numbers,
 *   strings and tables (their raw contents; no metatables), nested at most
 *   64 deep. A function of the policy state comes out as a proxy: a host
 *   function that copies its arguments in, runs the function there and
 *   copies its results out; a proxy going back in is the function again.
 *   Going in, any other function, a userdata or a thread is left out (nil
 *   as an argument, absent as a table's key or value: a child record's
 *   methods do not enter); coming out, a userdata or thread is refused.
 *
 * Every call into the state (boot, each proxy call) runs within a budget:
 *   a count hook every 1000 VM instructions ends it once time_ms of wall
 *   clock have passed since the call began ("ran past its time budget of
 *   N ms"), and an allocation past memory_bytes fails it ("went past its
 *   memory budget of N bytes"). A proxy raises such errors, and the
 *   policy's own, as a string error in the caller; the state stays usable.
 *   A single library call (a string pattern over a long subject) is not
 *   interrupted: the hook runs between instructions.
 *
 * core.policy_bytecode(f) -> bytecode | nil [, why]: the bytecode of the
 *   policy function behind the proxy f, for an actor to run (inline actor
 *   code in a tree file; the actor gives it the policy sandbox's library,
 *   lua/msrt/actor_boot.lua); nil, why when it has upvalues; nil alone
 *   when f is not a proxy.
 *
 * The state is closed when the last proxy into it is collected.
 */
#ifndef MSRT_LUA_LPOLICY_H
#define MSRT_LUA_LPOLICY_H

#include <lua.h>

/* Register policy_state and policy_bytecode into the table at the top of the stack. */
void msrt_lua_open_policy(lua_State *L);

#endif
