/* Starting a child without copying the host's page tables (fork costs
 * grow with the host's memory: 28 spawns/s from a 1 GiB parent against
 * ~1,900/s with vfork: docs/architecture.md "Figures behind the design"):
 * vfork + exec. posix_spawn (glibc's clone(CLONE_VM | CLONE_VFORK)) would
 * do as much but has no action for what the child must do before exec:
 * setrlimit, join its cgroup (cgroup.h) and PR_SET_PDEATHSIG. A small exec
 * wrapper would cost a second exec per spawn and a helper binary to find
 * at run time; doing it from the parent after the spawn (prlimit, moving
 * the pid) races with the child's first instructions. The vfork child
 * only makes system calls (no allocation, no locks) until execve, and
 * every signal is blocked around vfork so no host handler can run on the
 * shared stack; the child resets every handler before unblocking. Its
 * errors come back through a close-on-exec pipe.
 *
 * PR_SET_PDEATHSIG: the child gets SIGKILL when the thread that spawned it
 * ends (the kernel ties it to the thread, not the process). Children are
 * spawned on the hub, which is the main thread of msrt-lua and lives as
 * long as the host, so it fires when the host ends however it ends. The
 * host may die between vfork and the prctl: the child then finds its
 * parent changed and exits.
 */
#include "proc/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A failed system call's errno as the spawn's error (core/error.h). */
static msrt_code spawn_failed(int e, msrt_error *err) {
  return msrt_error_set(err, MSRT_E_SPAWN_FAILED, "%s", strerror(e));
}

/* msrt_spawn_resolve's search: 0 or the errno value. */
static int resolve(const char *prog, char *buf, size_t size) {
  if (!prog || !*prog) return ENOENT;
  if (strchr(prog, '/')) {
    if (strlen(prog) >= size) return ENAMETOOLONG;
    strcpy(buf, prog);
    return access(buf, X_OK) == 0 ? 0 : errno;
  }
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  int found_noexec = 0;
  for (const char *p = path; *p;) {
    const char *end = strchr(p, ':');
    size_t dlen = end ? (size_t)(end - p) : strlen(p);
    int n = snprintf(buf, size, "%.*s%s%s", (int)dlen, p, dlen ? "/" : "",
                     prog);
    struct stat st;
    if (n > 0 && (size_t)n < size && stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(buf, X_OK) == 0) return 0;
      found_noexec = 1;
    }
    p += dlen + (end ? 1 : 0);
  }
  return found_noexec ? EACCES : ENOENT;
}

msrt_code msrt_spawn_resolve(const char *prog, char *buf, size_t size,
                             msrt_error *err) {
  int e = resolve(prog, buf, size);
  return e ? spawn_failed(e, err) : MSRT_E_OK;
}

/* What the vfork child needs, prepared by the parent (no work after vfork
 * but system calls). */
typedef struct {
  const char *path, *cwd;
  char *const *argv, *const *envp;
  const int *stdio;
  const msrt_proc_limits *lim;
  int cgroup_fd; /* its cgroup's cgroup.procs, or -1 */
  pid_t parent;
  int errfd; /* close-on-exec pipe: the child writes errno when it fails.
                Not shared memory, so it also works where vfork is fork
                (ThreadSanitizer turns vfork into fork). */
} vfork_job;

/* 0, or -1 with errno (EPERM: raising a hard limit without the right;
 * EINVAL: above what the kernel allows): a limit the spec asked for that
 * cannot be set is an error, never ignored. */
static int set_limit(int res, long long v) {
  if (v < 0) return 0;
  struct rlimit rl = {(rlim_t)v, (rlim_t)v};
  return setrlimit(res, &rl);
}

static int set_limits(const msrt_proc_limits *l) {
  if (set_limit(RLIMIT_NOFILE, l->nofile) || set_limit(RLIMIT_AS, l->as_bytes) ||
      set_limit(RLIMIT_CPU, l->cpu_s) || set_limit(RLIMIT_NPROC, l->nproc))
    return -1;
  return 0;
}

__attribute__((noinline)) static void vfork_child(vfork_job *j) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
  if (getppid() != j->parent) _exit(127); /* the host is already gone */
  /* first: what it starts from now on is in its cgroup */
  if (j->cgroup_fd >= 0 && write(j->cgroup_fd, "0", 1) != 1) goto fail;
  setpgid(0, 0);
  for (int i = 0; i < 3; i++)
    if (dup2(j->stdio[i], i) < 0) goto fail;
  if (j->errfd > 3) close_range(3, (unsigned)j->errfd - 1, 0);
  close_range((unsigned)j->errfd + 1, ~0u, 0);
  if (j->cwd && chdir(j->cwd) != 0) goto fail;
  if (set_limits(j->lim) != 0) goto fail;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(j->path, j->argv, j->envp);
fail:;
  int e = errno ? errno : EINVAL;
  if (write(j->errfd, &e, sizeof e) < 0) _exit(126);
  _exit(127);
}

/* The child's errno when it failed before exec, or 0 once exec closed the
 * pipe. */
static int child_error(int fd) {
  int e = 0;
  ssize_t n;
  while ((n = read(fd, &e, sizeof e)) < 0 && errno == EINTR) {}
  return n == (ssize_t)sizeof e ? e : 0;
}

static int spawn_vfork(vfork_job *j, pid_t *pid) {
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) != 0) return errno;
  j->errfd = ep[1];
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pid_t c = vfork();
  if (c == 0) vfork_child(j); /* never returns */
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (c >= 0) e = child_error(ep[0]);
  close(ep[0]);
  if (c < 0) return e;
  if (e) { /* it could not exec: reap the child that _exit'ed */
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {}
    return e;
  }
  *pid = c;
  return 0;
}

msrt_code msrt_spawn_child(const char *path, char *const argv[],
                           char *const envp[], const char *cwd,
                           const int stdio[3], const msrt_proc_limits *lim,
                           int cgroup_fd, pid_t *pid, msrt_error *err) {
  vfork_job j = {path, cwd, argv, envp, stdio, lim, cgroup_fd, getpid(), -1};
  int e = spawn_vfork(&j, pid);
  return e ? spawn_failed(e, err) : MSRT_E_OK;
}
