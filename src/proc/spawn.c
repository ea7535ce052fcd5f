/* Starting a child without copying the host's page tables and without
 * waiting for it to be scheduled.
 *
 * Why not fork: its cost grows with the host's memory (28 spawns/s from a
 * 1 GiB parent against ~1,900/s with vfork: docs/architecture.md "Figures
 * behind the design"). Why not vfork or posix_spawn (glibc's
 * clone(CLONE_VM | CLONE_VFORK)): the parent is suspended until the child
 * execs, and on a loaded machine the new child can wait 25-140 ms for a
 * CPU, which stalls the hub's whole loop once per process started
 * (docs/performance.md, the crash storm's stalls). posix_spawn also has no action
 * for what the child must do before exec: setrlimit, join its cgroup
 * (cgroup.h) and PR_SET_PDEATHSIG.
 *
 * So: clone(CLONE_VM) without CLONE_VFORK, the child on a stack of its
 * own, the parent going on at once with the pid. The child shares the
 * host's memory until exec, so it touches nothing but a block prepared for
 * it (the job: its stack, argv, envp, cwd, path, limits, descriptors),
 * which the parent frees only once the child has exec'd or died: the
 * job's close-on-exec pipe reads EOF only then (the kernel swaps the
 * memory before closing those descriptors at exec, and releases it before
 * closing them at exit). The child makes raw system calls only (below:
 * glibc's wrappers would set errno, which is the spawning thread's, the
 * child running on that thread's TLS), runs no sanitizer instrumentation
 * (the runtime's state is per thread too), and starts with every signal
 * blocked (blocked around the clone in the parent) so no host handler can
 * run in it; it resets every handler to the default before unblocking.
 * Its errors come back through the pipe as (step, errno).
 *
 * An exec failure now arrives after msrt_spawn_start has returned. The
 * common ones stay synchronous: the caller resolves the program (PATH,
 * X_OK) and checks cwd before, and the limits a setrlimit would refuse
 * are checked here. The process group is made by both sides (the parent's
 * setpgid right after the clone, the child's own), so a signal to the
 * group right after the start reaches the child.
 *
 * PR_SET_PDEATHSIG: the child gets SIGKILL when the thread that spawned it
 * ends (the kernel ties it to the thread, not the process). Children are
 * spawned on the hub, which is the main thread of msrt-lua and lives as
 * long as the host, so it fires when the host ends however it ends. The
 * host may die between the clone and the prctl: the child then finds its
 * parent changed and exits.
 */
#include "proc/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc/cgroup.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#else
#define UNDER_VALGRIND() 0
#endif

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

/* ---- the child's side: raw system calls, no instrumentation ------------ */

/* Nothing the sanitizers add may run in the child: their state is the
 * spawning thread's. */
#if defined(__clang__)
/* (clang's no_sanitize("thread") alone still calls the runtime at entry
 * and exit; "coverage": the fuzz build's counters) */
#if __has_attribute(disable_sanitizer_instrumentation)
#define CHILD_NO_INSTR __attribute__((disable_sanitizer_instrumentation))
#else
#define CHILD_NO_INSTR
#endif
#define CHILD_CODE                                                          \
  __attribute__((no_sanitize("address", "thread", "undefined", "coverage"))) \
  CHILD_NO_INSTR
#else
#define CHILD_CODE                                                          \
  __attribute__((no_sanitize_address, no_sanitize_thread,                    \
                 no_sanitize_undefined))
#endif

#if defined(__x86_64__)
/* A system call: its result, or -errno; errno untouched. */
CHILD_CODE static inline __attribute__((always_inline)) long
sc(long n, long a, long b, long c, long d) {
  register long r10 __asm__("r10") = d;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}
#else
/* Elsewhere glibc's syscall(): a failing call in the child then writes
 * the spawning thread's errno, which that thread may be reading. */
CHILD_CODE static long sc(long n, long a, long b, long c, long d) {
  long r = syscall(n, a, b, c, d);
  return r == -1 ? -errno : r;
}
#endif

/* The steps the child can fail at, as its error names them. */
enum { ST_PDEATHSIG, ST_CGROUP, ST_DUP, ST_CHDIR, ST_LIMIT, ST_EXEC };
static const char *const STEP_NAMES[] = {"prctl", "cgroup", "dup2", "chdir",
                                         "setrlimit", "exec"};

#define NLIMITS 4
static const int LIMIT_RES[NLIMITS] = {RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU,
                                       RLIMIT_NPROC};

struct msrt_spawn_job {
  /* read by the child until exec; written by the parent before the clone */
  const char *path, *cwd; /* cwd NULL: the host's */
  char **argv, **envp;
  int stdio[3];
  int cgroup_fd; /* its cgroup's cgroup.procs, or -1 */
  int errfd;     /* the pipe's write end (close-on-exec) */
  pid_t parent;
  long long limits[NLIMITS]; /* -1: not set */
  /* the parent's (never written after the clone but these: the memory is
   * shared, the child reads the fields above until exec) */
  int fd;        /* the pipe's read end (non-blocking) */
  bool errfd_open; /* errfd still open in the parent (before the clone) */
  int got;       /* bytes of msg read */
  int msg[2];    /* the child's (step, errno) */
  size_t size;   /* of the mapping */
};

/* The kernel's struct sigaction (not glibc's). */
typedef struct {
  void *handler;
  unsigned long flags;
  void *restorer;
  unsigned long mask;
} k_sigaction;

CHILD_CODE __attribute__((noreturn)) static void child_exit(int code) {
  for (;;) sc(SYS_exit_group, code, 0, 0, 0);
}

CHILD_CODE __attribute__((noreturn)) static void child_fail(
    const msrt_spawn_job *j, int step, long rc) {
  int msg[2] = {step, rc < 0 ? (int)-rc : EINVAL};
  if (sc(SYS_write, j->errfd, (long)msg, sizeof msg, 0) < 0) child_exit(126);
  child_exit(127);
}

CHILD_CODE __attribute__((noreturn, noinline)) static void child_main(
    void *arg) {
  const msrt_spawn_job *j = arg;
  k_sigaction dfl = {SIG_DFL, 0, 0, 0};
  for (long s = 1; s <= 64; s++)
    if (s != SIGKILL && s != SIGSTOP)
      sc(SYS_rt_sigaction, s, (long)&dfl, 0, 8);
  long rc = sc(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
  if (rc < 0) child_fail(j, ST_PDEATHSIG, rc);
  if (sc(SYS_getppid, 0, 0, 0, 0) != j->parent)
    child_exit(127); /* the host is already gone */
  /* first: what it starts from now on is in its cgroup */
  if (j->cgroup_fd >= 0 &&
      (rc = sc(SYS_write, j->cgroup_fd, (long)"0", 1, 0)) != 1)
    child_fail(j, ST_CGROUP, rc);
  sc(SYS_setpgid, 0, 0, 0, 0);
  for (int i = 0; i < 3; i++) {
    /* dup3 refuses equal descriptors; an fd already in place only loses
     * its close-on-exec flag */
    rc = j->stdio[i] == i ? sc(SYS_fcntl, i, F_SETFD, 0, 0)
                          : sc(SYS_dup3, j->stdio[i], i, 0, 0);
    if (rc < 0) child_fail(j, ST_DUP, rc);
  }
  if (j->errfd > 3) sc(SYS_close_range, 3, j->errfd - 1, 0, 0);
  sc(SYS_close_range, j->errfd + 1, ~0u, 0, 0);
  if (j->cwd && (rc = sc(SYS_chdir, (long)j->cwd, 0, 0, 0)) < 0)
    child_fail(j, ST_CHDIR, rc);
  for (int i = 0; i < NLIMITS; i++) {
    if (j->limits[i] < 0) continue;
    struct rlimit rl = {(rlim_t)j->limits[i], (rlim_t)j->limits[i]};
    if ((rc = sc(SYS_prlimit64, 0, LIMIT_RES[i], (long)&rl, 0)) < 0)
      child_fail(j, ST_LIMIT, rc);
  }
  unsigned long none = 0;
  sc(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8);
  rc = sc(SYS_execve, (long)j->path, (long)j->argv, (long)j->envp, 0);
  child_fail(j, ST_EXEC, rc);
}

/* clone(CLONE_VM | SIGCHLD) with the child on stack_top running fn(arg)
 * (which never returns). The pid, or -errno. Under valgrind, which
 * refuses such a clone (and ends the program), vfork: valgrind makes it a
 * fork, so the parent does not wait there either. */
static long clone_vm(void (*fn)(void *), void *arg, void *stack_top) {
  unsigned long flags = CLONE_VM | SIGCHLD;
  if (UNDER_VALGRIND()) {
    pid_t pid = vfork();
    if (pid == 0) fn(arg); /* never returns */
    return pid < 0 ? -errno : pid;
  }
#if defined(__x86_64__)
  /* raw: the child must not run glibc's clone wrapper's parent-side code,
   * nor a sanitizer's interceptor of it */
  register long r10 __asm__("r10") = 0; /* child_tid */
  register long r8 __asm__("r8") = 0;   /* tls */
  long ret;
  __asm__ volatile("syscall\n\t"
                   "test %%rax, %%rax\n\t"
                   "jnz 1f\n\t"
                   /* the child, on its own 16-byte aligned stack */
                   "xor %%ebp, %%ebp\n\t"
                   "mov %[arg], %%rdi\n\t"
                   "call *%[fn]\n\t"
                   "ud2\n"
                   "1:"
                   : "=a"(ret)
                   : "a"((long)SYS_clone), "D"(flags), "S"(stack_top),
                     "d"(0L), "r"(r10), "r"(r8), [fn] "r"(fn), [arg] "r"(arg)
                   : "rcx", "r11", "memory");
  return ret;
#else
  int (*entry)(void *) = (int (*)(void *))(void *)fn;
  int pid = clone(entry, stack_top, (int)flags, arg);
  return pid < 0 ? -errno : pid;
#endif
}

/* ---- the parent's side -------------------------------------------------- */

#define STACK_BYTES (32 << 10) /* the child's, its lowest page a guard */

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* A limit the child's setrlimit would refuse: EPERM, or 0. Raising a hard
 * limit takes CAP_SYS_RESOURCE, and RLIMIT_NOFILE never goes above
 * fs.nr_open. What this misses fails in the child, later. */
static int check_limits(const msrt_proc_limits *l) {
  const long long v[NLIMITS] = {l->nofile, l->as_bytes, l->cpu_s, l->nproc};
  for (int i = 0; i < NLIMITS; i++) {
    struct rlimit cur;
    if (v[i] < 0 || getrlimit(LIMIT_RES[i], &cur) != 0 ||
        cur.rlim_max == RLIM_INFINITY || (rlim_t)v[i] <= cur.rlim_max)
      continue;
    if (LIMIT_RES[i] == RLIMIT_NOFILE) {
      FILE *f = fopen("/proc/sys/fs/nr_open", "r");
      unsigned long long nr = 0;
      int ok = f && fscanf(f, "%llu", &nr) == 1;
      if (f) fclose(f);
      if (ok && (unsigned long long)v[i] > nr) return EPERM;
    }
    if (!msrt_nproc_exempt()) return EPERM; /* CAP_SYS_RESOURCE or root */
  }
  return 0;
}

/* Copy s into the job's memory at *at. */
static char *put_str(char **at, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = memcpy(*at, s, n);
  *at += n;
  return d;
}

/* Mappings of POOL_BYTES are kept for the next start (POOL_MAX of them:
 * at most ~3 touched pages each): a start then makes no mmap, mprotect or
 * munmap, which take the host's mmap lock for writing, and the munmap of
 * pages a child touched on another CPU costs an interrupt there. */
#define POOL_BYTES (64 << 10)
#define POOL_MAX 16
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static char *pool[POOL_MAX];
static int pool_n;

/* A mapping of size bytes (POOL_BYTES when it fits), its lowest page a
 * guard, or NULL with errno. */
static char *map_take(size_t *size) {
  char *base = NULL;
  if (*size <= POOL_BYTES) {
    *size = POOL_BYTES;
    pthread_mutex_lock(&pool_mu);
    if (pool_n) base = pool[--pool_n];
    pthread_mutex_unlock(&pool_mu);
    if (base) return base;
  }
  base = mmap(NULL, *size, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) return NULL;
  mprotect(base, page_size(), PROT_NONE); /* an overflow faults, corrupts
                                             nothing */
  return base;
}

static void map_give(char *base, size_t size) {
  if (size == POOL_BYTES) {
    pthread_mutex_lock(&pool_mu);
    if (pool_n < POOL_MAX) pool[pool_n++] = base, base = NULL;
    pthread_mutex_unlock(&pool_mu);
  }
  if (base) munmap(base, size);
}

/* One mapping: a guard page, the stack, the job, then argv's and envp's
 * pointers and every string. */
static msrt_spawn_job *job_new(const char *path, const char *const *argv,
                               size_t argc, const char *const *envp,
                               size_t envc, const char *cwd) {
  size_t strs = strlen(path) + 1 + (cwd ? strlen(cwd) + 1 : 0);
  for (size_t i = 0; i < argc; i++) strs += strlen(argv[i]) + 1;
  for (size_t i = 0; i < envc; i++) strs += strlen(envp[i]) + 1;
  size_t ps = page_size();
  size_t size = STACK_BYTES + sizeof(msrt_spawn_job) +
                (argc + envc + 2) * sizeof(char *) + strs;
  size = (size + ps - 1) / ps * ps;
  char *base = map_take(&size);
  if (!base) return NULL;
  msrt_spawn_job *j = (msrt_spawn_job *)(base + STACK_BYTES);
  memset(j, 0, sizeof *j); /* a reused mapping holds the last job */
  j->size = size;
  j->argv = (char **)(j + 1);
  j->envp = j->argv + argc + 1;
  char *at = (char *)(j->envp + envc + 1);
  for (size_t i = 0; i < argc; i++) j->argv[i] = put_str(&at, argv[i]);
  for (size_t i = 0; i < envc; i++) j->envp[i] = put_str(&at, envp[i]);
  j->argv[argc] = j->envp[envc] = NULL;
  j->path = put_str(&at, path);
  j->cwd = cwd ? put_str(&at, cwd) : NULL;
  j->fd = j->errfd = -1;
  return j;
}

static void *job_base(msrt_spawn_job *j) { return (char *)j - STACK_BYTES; }

void msrt_spawn_job_free(msrt_spawn_job *j) {
  if (!j) return;
  if (j->fd >= 0) close(j->fd);
  if (j->errfd_open) close(j->errfd);
  map_give(job_base(j), j->size);
}

msrt_code msrt_spawn_start(const char *path, const char *const *argv,
                           size_t argc, const char *const *envp, size_t envc,
                           const char *cwd, const int stdio[3],
                           const msrt_proc_limits *lim, int cgroup_fd,
                           pid_t *pid, msrt_spawn_job **job,
                           msrt_error *err) {
  int e = check_limits(lim);
  if (e) return spawn_failed(e, err);
  msrt_spawn_job *j = job_new(path, argv, argc, envp, envc, cwd);
  if (!j) return spawn_failed(errno, err);
  int ep[2];
  if (pipe2(ep, O_CLOEXEC | O_NONBLOCK) != 0) {
    e = errno;
    msrt_spawn_job_free(j);
    return spawn_failed(e, err);
  }
  j->fd = ep[0];
  j->errfd = ep[1];
  j->errfd_open = true;
  for (int i = 0; i < 3; i++) j->stdio[i] = stdio[i];
  j->cgroup_fd = cgroup_fd;
  j->parent = getpid();
  const long long v[NLIMITS] = {lim->nofile, lim->as_bytes, lim->cpu_s,
                                lim->nproc};
  memcpy(j->limits, v, sizeof v);
  /* no host handler may run in the child: it starts with all blocked */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  long c = clone_vm(child_main, j, j); /* the stack ends where the job is */
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(j->errfd); /* the child has its own: EOF when it is gone or exec'd */
  j->errfd_open = false;
  if (c < 0) {
    msrt_spawn_job_free(j);
    return spawn_failed((int)-c, err);
  }
  /* its group from now on, whichever of us runs first (EACCES once it has
   * exec'd: it made the group itself) */
  setpgid((pid_t)c, (pid_t)c);
  *pid = (pid_t)c;
  *job = j;
  return MSRT_E_OK;
}

int msrt_spawn_job_fd(const msrt_spawn_job *j) { return j->fd; }

int msrt_spawn_job_poll(msrt_spawn_job *j, msrt_error *err) {
  for (;;) {
    ssize_t n = read(j->fd, (char *)j->msg + j->got, sizeof j->msg - (size_t)j->got);
    if (n > 0) {
      j->got += (int)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0; /* not yet (or the message
                                               before the child's exit) */
    break; /* EOF: it exec'd or is gone */
  }
  if (j->got != (int)sizeof j->msg) return 1;
  int step = j->msg[0], e = j->msg[1];
  msrt_error_set(err, MSRT_E_SPAWN_FAILED, "%s: %s",
                 step >= 0 && step <= ST_EXEC ? STEP_NAMES[step] : "start",
                 strerror(e));
  return -1;
}
