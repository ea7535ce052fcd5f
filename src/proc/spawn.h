/* Starting a child without forking the host (internal to src/proc).
 *
 * Thread-safety: any thread; the vfork path blocks every signal in the
 * calling thread for the few microseconds until the child has exec'd.
 */
#ifndef MSRT_PROC_SPAWN_H
#define MSRT_PROC_SPAWN_H

#include <sys/types.h>

#include "proc/proc.h"

/* Find prog in the host's PATH when it holds no '/' (like execvp, but in
 * the parent, so the child's own environment need not hold a PATH).
 * Writes the path into buf (size bytes). Returns 0, or an errno value
 * (ENOENT, EACCES, ENAMETOOLONG). */
int msrt_spawn_resolve(const char *prog, char *buf, size_t size);

/* Start path with argv (NULL-terminated) and envp (NULL-terminated) as
 * the leader of a new process group, with stdio[0..2] as its fd 0, 1, 2
 * (every other descriptor closed), in cwd (NULL: the host's), every
 * signal at its default action and none blocked, SIGKILL as its parent
 * death signal (spawn.c: call it on a thread that lives as long as the
 * host), in the cgroup whose cgroup.procs is open as cgroup_fd (-1: the
 * host's), and the limits of lim applied before exec. Returns 0 with *pid
 * set, or an errno value (the exec's, chdir's, setrlimit's or the cgroup
 * write's own error when the child could not start). */
int msrt_spawn_child(const char *path, char *const argv[], char *const envp[],
                     const char *cwd, const int stdio[3],
                     const msrt_proc_limits *lim, int cgroup_fd, pid_t *pid);

#endif
