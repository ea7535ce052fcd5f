/* msrt.core's system calls that luv does not offer, for the operator
 * surfaces (lua/msrt/ops.lua) and the policy files (lua/msrt/policy.lua).
 * Hub thread only.
 *
 * core.peer_uid(fd) -> uid | nil, err (io): the uid of the process at the
 *   other end of the connected Unix socket fd (SO_PEERCRED, unix(7)).
 * core.socket_state(path) -> "absent" | "stale" | "live" | "other" [, why]:
 *   what is at path, not following a final symlink: nothing; a Unix socket
 *   nobody listens on (connect(2) is refused); a socket a server accepts
 *   on (or whose backlog is full); anything else ("other", with why:
 *   "a regular file", "a directory", "a symbolic link", ... or an errno
 *   text when lstat fails for another reason than ENOENT).
 * core.read_policy(path, max_bytes) -> text, real_path | nil, err: the
 *   whole of a policy file: path's symlinks are resolved (realpath), then
 *   the real path is opened with O_NOFOLLOW | O_NONBLOCK (a symlink put
 *   there meanwhile is refused; a FIFO does not block the open), checked with
 *   fstat on that descriptor: only a regular file of at most max_bytes is
 *   read. real_path is the opened file's own path (/proc/self/fd), so a
 *   caller's "is it under a watched directory" check is about the file
 *   read, whatever was renamed meanwhile. Errors: not_found (ENOENT),
 *   bad_config (a symlink, not a regular file, larger than max_bytes), io
 *   (any other errno, e.g. EACCES); each message names the path.
 */
#ifndef MSRT_LUA_LSYS_H
#define MSRT_LUA_LSYS_H

#include <lua.h>

/* Register peer_uid, socket_state and read_policy into the table at the
 * top of the stack. */
void msrt_lua_open_sys(lua_State *L);

#endif
