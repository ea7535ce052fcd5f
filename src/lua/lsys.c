/* System calls for ops.lua and policy.lua: see lsys.h. */
#include "lua/lsys.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lua/lerror.h"

static int l_peer_uid(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return msrt_lua_fail(L, MSRT_E_IO, "SO_PEERCRED: %s", strerror(errno));
  lua_pushinteger(L, (lua_Integer)cred.uid);
  return 1;
}

static const char *kind_of(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a socket";
}

/* Whether a server accepts on the Unix socket at path: connect(2) without
 * blocking (ECONNREFUSED: nobody listens; EAGAIN: a full backlog). */
static const char *probe(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return "other";
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "other";
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  int e = errno;
  close(fd);
  if (r == 0 || e == EAGAIN || e == EINPROGRESS) return "live";
  if (e == ECONNREFUSED) return "stale";
  if (e == ENOENT) return "absent";
  return "other";
}

static int l_socket_state(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) {
    lua_pushstring(L, errno == ENOENT ? "absent" : "other");
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  if (!S_ISSOCK(st.st_mode)) {
    lua_pushliteral(L, "other");
    lua_pushstring(L, kind_of(st.st_mode));
    return 2;
  }
  lua_pushstring(L, probe(path));
  return 1;
}

/* The path of the file open on fd; path itself when /proc is missing. */
static void push_real_path(lua_State *L, int fd, const char *path) {
  char link[64], real[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, real, sizeof real - 1);
  if (n > 0 && real[0] == '/') lua_pushlstring(L, real, (size_t)n);
  else if (realpath(path, real)) lua_pushstring(L, real);
  else lua_pushstring(L, path);
}

static int read_fail(lua_State *L, int fd, msrt_code code, const char *path,
                     const char *why) {
  if (fd >= 0) close(fd);
  return msrt_lua_fail(L, code, "%s:0: cannot read policy file: %s", path, why);
}

static int l_read_policy(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  char resolved[PATH_MAX]; /* the symlinks the caller named are followed */
  const char *real = realpath(path, resolved) ? resolved : path;
  int fd = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP) return read_fail(L, -1, MSRT_E_BAD_CONFIG, path, "a symbolic link (refused)");
    return read_fail(L, -1, e == ENOENT ? MSRT_E_NOT_FOUND : MSRT_E_IO, path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return read_fail(L, fd, MSRT_E_IO, path, strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    char why[64];
    snprintf(why, sizeof why, "%s, not a regular file", kind_of(st.st_mode));
    return read_fail(L, fd, MSRT_E_BAD_CONFIG, path, why);
  }
  if (st.st_size > max) {
    char why[96];
    snprintf(why, sizeof why, "%lld bytes, more than the %lld allowed",
             (long long)st.st_size, (long long)max);
    return read_fail(L, fd, MSRT_E_BAD_CONFIG, path, why);
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  for (;;) { /* a file that grows meanwhile is still cut at max + 1 */
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return read_fail(L, fd, MSRT_E_IO, path, strerror(errno));
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    total += (size_t)n;
    if (total > (size_t)max) return read_fail(L, fd, MSRT_E_BAD_CONFIG, path, "grew past the size allowed");
  }
  luaL_pushresult(&b);
  push_real_path(L, fd, real);
  close(fd);
  return 2;
}

void msrt_lua_open_sys(lua_State *L) {
  static const luaL_Reg fns[] = {{"peer_uid", l_peer_uid},
                                 {"socket_state", l_socket_state},
                                 {"read_policy", l_read_policy},
                                 {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
