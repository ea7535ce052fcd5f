/* Starting a child without forking the host and without waiting for it
 * (internal to src/proc).
 *
 * Thread-safety: msrt_spawn_start from any thread (it blocks every signal
 * in the calling thread for the clone system call only); a job is used by
 * one thread at a time.
 */
#ifndef MSRT_PROC_SPAWN_H
#define MSRT_PROC_SPAWN_H

#include <stddef.h>
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

/* A child from its start until it has exec'd or failed to: the memory the
 * child reads until then (its stack, argv, envp...) and the descriptor
 * that tells the outcome. */
typedef struct msrt_spawn_job msrt_spawn_job;

/* Start path with argv (argc strings) and envp (envc "KEY=value" strings:
 * the whole environment) as the leader of a new process group, with
 * stdio[0..2] as its fd 0, 1, 2 (every other descriptor closed), in cwd
 * (NULL: the host's), every signal at its default action and none
 * blocked, SIGKILL as its parent death signal (spawn.c: call it on a
 * thread that lives as long as the host), in the cgroup whose
 * cgroup.procs is open as cgroup_fd (-1: the host's), and the limits of
 * lim applied before exec. Every string is copied: the caller's may go
 * as soon as this returns, and so may the descriptors (the child has its
 * own).
 *
 * Returns without waiting for the child to run: MSRT_E_OK with *pid (its
 * process group id too) and *job set; or MSRT_E_SPAWN_FAILED with
 * strerror's text in err (the clone's, the pipe's or mmap's error, or a
 * limit that setrlimit would refuse: raising a hard limit without
 * CAP_SYS_RESOURCE, RLIMIT_NOFILE above fs.nr_open), nothing started.
 * What fails in the child itself (exec, chdir, the cgroup write, a
 * setrlimit the checks did not foresee) comes later through the job: the
 * child then exits with status 127. */
msrt_code msrt_spawn_start(const char *path, const char *const *argv,
                           size_t argc, const char *const *envp, size_t envc,
                           const char *cwd, const int stdio[3],
                           const msrt_proc_limits *lim, int cgroup_fd,
                           pid_t *pid, msrt_spawn_job **job, msrt_error *err);

/* The job's descriptor (non-blocking): readable once the child has
 * exec'd, failed or died. For a loop to watch; msrt_spawn_job_poll reads
 * it. */
int msrt_spawn_job_fd(const msrt_spawn_job *job);

/* The outcome, without blocking: 0 while the child has not yet exec'd;
 * 1 once it has; -1 when it failed before exec, with the step and
 * strerror's text in err ("exec: Exec format error", "chdir: ..."). Once
 * the child has been reaped the outcome is known (never 0). */
int msrt_spawn_job_poll(msrt_spawn_job *job, msrt_error *err);

/* Free the job: its descriptor and the child's memory. Only once
 * msrt_spawn_job_poll returned non-zero, or the child has been reaped:
 * before that the child may still be reading it. NULL is a no-op. */
void msrt_spawn_job_free(msrt_spawn_job *job);

#endif
