/* Starting a child without forking the host (internal to src/proc).
 *
 * Thread-safety: any thread; the vfork path blocks every signal in the
 * calling thread for the few microseconds until the child has exec'd.
 */
#ifndef MSRT_PROC_SPAWN_H
#define MSRT_PROC_SPAWN_H

#include <sys/types.h>

#include "core/error.h"
#include "proc/proc.h"

/* Find prog in the host's PATH when it holds no '/' (like execvp, but in
 * the parent, so the child's own environment need not hold a PATH).
 * Writes the path into buf (size bytes). Returns MSRT_E_OK, or
 * MSRT_E_SPAWN_FAILED with strerror's text in err (ENOENT, EACCES,
 * ENAMETOOLONG). */
msrt_code msrt_spawn_resolve(const char *prog, char *buf, size_t size,
                             msrt_error *err);

/* Start path with argv (NULL-terminated) and envp (NULL-terminated) as
 * the leader of a new process group, with stdio[0..2] as its fd 0, 1, 2
 * (every other descriptor closed), in cwd (NULL: the host's), every
 * signal at its default action and none blocked, SIGKILL as its parent
 * death signal (spawn.c: call it on a thread that lives as long as the
 * host), in the cgroup whose cgroup.procs is open as cgroup_fd (-1: the
 * host's), and the limits of lim applied before exec. Returns MSRT_E_OK
 * with *pid set, or MSRT_E_SPAWN_FAILED with strerror's text in err (of
 * vfork's error, or the exec's, chdir's, setrlimit's or the cgroup
 * write's own when the child could not start; nothing is left running). */
msrt_code msrt_spawn_child(const char *path, char *const argv[],
                           char *const envp[], const char *cwd,
                           const int stdio[3], const msrt_proc_limits *lim,
                           int cgroup_fd, pid_t *pid, msrt_error *err);

#endif
