#include "proc/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PATH 4096
#define WATCH_MS 5000 /* the watcher's wait for the fleet to empty */
#define POOL 8        /* child cgroups made ahead by the keeper */
#define RETRY_MS 5    /* the keeper's retry of a killed, not empty one */

/* A child cgroup made ahead: its number and its cgroup.procs, open. */
typedef struct {
  uint64_t n;
  int procs_fd;
} made;

/* The mkdir of a cgroup and the write to its cgroup.kill wait for the
 * kernel's cgroup lock: 1-13 ms each on a loaded 2-vCPU machine (perf
 * trace of the crash storm, 2026-12-06), up to 41 ms, and the hub's loop
 * stood still meanwhile. So a thread of the fleet's own, the keeper, makes
 * child cgroups ahead (up to POOL) and kills and removes the ones handed
 * back; the hub only takes and hands back, under the keeper's mutex. */
struct msrt_fleet {
  char path[PATH];  /* the fleet's directory */
  bool pids;        /* pids.max can be set in child cgroups */
  pid_t watcher;    /* forked watcher, or 0 */
  int watch_fd;     /* the host's end of the watcher's pipe */
  pthread_t keeper;
  bool has_keeper;  /* else the hub does the keeper's work itself */
  pthread_mutex_t mu; /* guards what follows */
  pthread_cond_t cv;  /* the keeper's wake-up */
  bool stopping;      /* msrt_fleet_close: the keeper drains and ends */
  uint64_t next;      /* the next child cgroup's number */
  made pool[POOL];    /* made ahead (any order will do) */
  size_t npool;
  bool refill_failed; /* until the next take */
  uint64_t *kills;    /* handed back, not yet killed */
  size_t nkills, capkills;
  uint64_t *dead;   /* child cgroups killed and not yet removed */
  size_t ndead, capdead;
};

static void start_keeper(msrt_fleet *f);

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Write s to the file at path; 0 or an errno value. */
static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = write(fd, s, strlen(s));
  int e = n < 0 ? errno : 0;
  close(fd);
  return e;
}

/* Up to size-1 bytes of the file at path, terminated; bytes read or -1. */
static ssize_t read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n;
}

/* The cgroup2 mount point (/proc/self/mountinfo: the field after " - " is
 * the type, the fifth the mount point). 0, or an errno value. */
static int cgroup2_mount(char *out, size_t size) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return errno;
  char line[PATH + 512];
  int e = ENOENT;
  while (e && fgets(line, sizeof line, f)) {
    char *dash = strstr(line, " - cgroup2 ");
    char mnt[PATH];
    if (dash && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
        strlen(mnt) < size) {
      strcpy(out, mnt);
      e = 0;
    }
  }
  fclose(f);
  return e;
}

/* The host's own cgroup v2 path ("0::/path" in /proc/self/cgroup). */
static int own_cgroup(char *out, size_t size) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return errno;
  char line[PATH];
  int e = ENOENT;
  while (e && fgets(line, sizeof line, f)) {
    if (strncmp(line, "0::", 3) != 0) continue;
    line[strcspn(line, "\n")] = 0;
    const char *p = strcmp(line + 3, "/") == 0 ? "" : line + 3;
    if (strlen(p) < size) {
      strcpy(out, p);
      e = 0;
    }
  }
  fclose(f);
  return e;
}

/* ---- the watcher (a forked copy of a threaded host: system calls only) */

/* Remove every directory under the fleet's, then the fleet's. */
static int remove_tree(const char *fleet) {
  int fd = open(fleet, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  char buf[4096];
  long n;
  while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long at = 0; at < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + at);
      at += d->d_reclen;
      if (d->d_type == DT_DIR && strcmp(d->d_name, ".") != 0 &&
          strcmp(d->d_name, "..") != 0)
        unlinkat(fd, d->d_name, AT_REMOVEDIR);
    }
  }
  close(fd);
  return rmdir(fleet) == 0 || errno == ENOENT ? 0 : -1;
}

__attribute__((noreturn)) static void watch(int rfd, const char *fleet,
                                            const char *kill_path) {
  setsid(); /* no terminal's signals: it must outlive the host */
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &ign, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (rfd > 0) close_range(0, (unsigned)rfd - 1, 0);
  close_range((unsigned)rfd + 1, ~0u, 0);
  prctl(PR_SET_NAME, "msrt-watcher");
  char b;
  ssize_t n;
  while ((n = read(rfd, &b, 1)) != 0 && (n > 0 || errno == EINTR)) {
  }
  int fd = open(kill_path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (write(fd, "1", 1) < 0) { /* nothing more it can do */
    }
    close(fd);
  }
  for (int i = 0; i < WATCH_MS / 2 && remove_tree(fleet) != 0; i++) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  _exit(0);
}

static int start_watcher(msrt_fleet *f) {
  char kill_path[PATH + 16];
  snprintf(kill_path, sizeof kill_path, "%s/cgroup.kill", f->path);
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return errno;
  /* fork, not vfork: the watcher lives on. It runs no allocation, lock or
   * atfork-sensitive code, only the system calls of watch(). */
  pid_t pid = fork();
  if (pid == 0) watch(p[0], f->path, kill_path);
  int e = errno;
  close(p[0]);
  if (pid < 0) {
    close(p[1]);
    return e;
  }
  f->watcher = pid;
  f->watch_fd = p[1];
  return 0;
}

/* ---- the fleet ----------------------------------------------------------- */

static bool has_word(const char *list, const char *w) {
  size_t n = strlen(w);
  for (const char *p = list; (p = strstr(p, w)); p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
      return true;
  return false;
}

/* The pids controller for the children, when the host's cgroup offers it. */
static bool enable_pids(const msrt_fleet *f) {
  char path[PATH + 32], buf[512];
  snprintf(path, sizeof path, "%s/cgroup.controllers", f->path);
  if (read_file(path, buf, sizeof buf) < 0 || !has_word(buf, "pids"))
    return false;
  snprintf(path, sizeof path, "%s/cgroup.subtree_control", f->path);
  return write_file(path, "+pids") == 0;
}

msrt_fleet *msrt_fleet_open(char *why, size_t why_size) {
  char mnt[PATH], own[PATH];
  int e = cgroup2_mount(mnt, sizeof mnt);
  if (e) {
    snprintf(why, why_size, "no cgroup2 file system is mounted");
    return NULL;
  }
  if ((e = own_cgroup(own, sizeof own)) != 0) {
    snprintf(why, why_size, "no cgroup v2 path in /proc/self/cgroup");
    return NULL;
  }
  msrt_fleet *f = calloc(1, sizeof *f);
  if (!f) {
    snprintf(why, why_size, "out of memory");
    return NULL;
  }
  f->watch_fd = -1;
  int n = snprintf(f->path, sizeof f->path, "%s%s/msrt-%ld", mnt, own,
                   (long)getpid());
  char probe[PATH + 16];
  snprintf(probe, sizeof probe, "%s/cgroup.kill", f->path);
  if (n <= 0 || (size_t)n >= sizeof f->path ||
      (mkdir(f->path, 0755) != 0 && errno != EEXIST)) {
    snprintf(why, why_size, "cannot make %s: %s", f->path, strerror(errno));
  } else if (access(probe, F_OK) != 0) {
    snprintf(why, why_size, "%s has no cgroup.kill (Linux >= 5.14)", f->path);
    rmdir(f->path);
  } else if ((e = start_watcher(f)) != 0) {
    snprintf(why, why_size, "cannot start the watcher: %s", strerror(e));
    rmdir(f->path);
  } else {
    f->pids = enable_pids(f);
    start_keeper(f);
    return f;
  }
  free(f);
  return NULL;
}

bool msrt_fleet_has_pids(const msrt_fleet *f) { return f && f->pids; }
pid_t msrt_fleet_watcher(const msrt_fleet *f) { return f ? f->watcher : 0; }

static void child_path(const msrt_fleet *f, uint64_t n, const char *file,
                       char *out, size_t size) {
  snprintf(out, size, "%s/c%llu%s%s", f->path, (unsigned long long)n,
           file ? "/" : "", file ? file : "");
}

/* Make child cgroup n and open its cgroup.procs (*procs_fd): 0, or an
 * errno value with the cgroup removed again. */
static int make_child(const msrt_fleet *f, uint64_t n, int *procs_fd) {
  char path[PATH + 64];
  child_path(f, n, NULL, path, sizeof path);
  if (mkdir(path, 0755) != 0) return errno;
  child_path(f, n, "cgroup.procs", path, sizeof path);
  if ((*procs_fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0) return 0;
  int e = errno;
  child_path(f, n, NULL, path, sizeof path);
  rmdir(path);
  return e;
}

static int set_pids_max(const msrt_fleet *f, uint64_t n, long long max) {
  char path[PATH + 64], v[32];
  snprintf(v, sizeof v, "%lld", max);
  child_path(f, n, "pids.max", path, sizeof path);
  return write_file(path, v);
}

/* When cgroup.kill cannot be written: each pid its cgroup.procs lists. */
static void kill_listed(const msrt_fleet *f, uint64_t n) {
  char path[PATH + 64], buf[8192];
  child_path(f, n, "cgroup.procs", path, sizeof path);
  if (read_file(path, buf, sizeof buf) <= 0) return;
  for (char *p = buf, *end; *p; p = end) {
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    if (pid > 0) kill((pid_t)pid, SIGKILL);
  }
}

static bool remove_child(const msrt_fleet *f, uint64_t n) {
  char path[PATH + 64];
  child_path(f, n, NULL, path, sizeof path);
  return rmdir(path) == 0 || errno == ENOENT;
}

/* Append n to a grown array; false when out of memory. */
static bool push_n(uint64_t **a, size_t *len, size_t *cap, uint64_t n) {
  if (*len == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    uint64_t *d = realloc(*a, c * sizeof *d);
    if (!d) return false;
    *a = d;
    *cap = c;
  }
  (*a)[(*len)++] = n;
  return true;
}

/* Kill child cgroup n's tree and remove it; one not empty yet is kept in
 * dead to be tried again (out of memory: left to msrt_fleet_close and the
 * watcher). Called without f->mu held. */
static void kill_child(msrt_fleet *f, uint64_t n) {
  char path[PATH + 64];
  child_path(f, n, "cgroup.kill", path, sizeof path);
  if (write_file(path, "1") != 0) kill_listed(f, n);
  if (remove_child(f, n)) return;
  pthread_mutex_lock(&f->mu);
  push_n(&f->dead, &f->ndead, &f->capdead, n);
  pthread_mutex_unlock(&f->mu);
}

/* Try to remove the dead ones again, the rmdirs without f->mu held (held
 * on entry and on return); those still there go back (out of memory: left
 * to msrt_fleet_close and the watcher). */
static void retry_dead(msrt_fleet *f) {
  uint64_t *d = f->dead;
  size_t nd = f->ndead, k = 0;
  f->dead = NULL;
  f->ndead = f->capdead = 0;
  pthread_mutex_unlock(&f->mu);
  for (size_t i = 0; i < nd; i++)
    if (!remove_child(f, d[i])) d[k++] = d[i];
  pthread_mutex_lock(&f->mu);
  for (size_t i = 0; i < k && push_n(&f->dead, &f->ndead, &f->capdead, d[i]);
       i++) {
  }
  free(d);
}

static void wait_ms(msrt_fleet *f, long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_nsec += ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(&f->cv, &f->mu, &ts);
}

/* The keeper: kills first (a dead child's tree must not run on), then the
 * pool refilled, then the not yet empty retried every RETRY_MS. A refill
 * that fails waits for the next take (the hub's own mkdir then reports
 * the error). */
static void *keeper_main(void *arg) {
  msrt_fleet *f = arg;
  pthread_setname_np(pthread_self(), "msrt-cgroup");
  pthread_mutex_lock(&f->mu);
  for (;;) {
    if (f->nkills) {
      uint64_t n = f->kills[--f->nkills];
      pthread_mutex_unlock(&f->mu);
      kill_child(f, n);
      pthread_mutex_lock(&f->mu);
    } else if (f->stopping) {
      break;
    } else if (f->npool < POOL && !f->refill_failed) {
      made m = {f->next++, -1};
      pthread_mutex_unlock(&f->mu);
      int e = make_child(f, m.n, &m.procs_fd);
      pthread_mutex_lock(&f->mu);
      if (e) f->refill_failed = true;
      else f->pool[f->npool++] = m;
    } else {
      if (f->ndead) retry_dead(f);
      if (f->nkills || f->stopping) continue;
      if (f->ndead) wait_ms(f, RETRY_MS);
      else pthread_cond_wait(&f->cv, &f->mu);
    }
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

/* The keeper, with every signal blocked (libuv's handlers run on the hub);
 * without it (pthread_create failed) the hub does its work inline. */
static void start_keeper(msrt_fleet *f) {
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cv, &ca);
  pthread_condattr_destroy(&ca);
  f->next = 1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  f->has_keeper = pthread_create(&f->keeper, NULL, keeper_main, f) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

msrt_code msrt_fleet_child(msrt_fleet *f, long long pids_max, uint64_t *n,
                           int *procs_fd, msrt_error *err) {
  pthread_mutex_lock(&f->mu);
  made m = {0, -1};
  bool pooled = f->npool > 0;
  if (pooled) m = f->pool[--f->npool];
  else m.n = f->next++;
  f->refill_failed = false;
  pthread_cond_signal(&f->cv);
  pthread_mutex_unlock(&f->mu);
  int e = pooled ? 0 : make_child(f, m.n, &m.procs_fd);
  if (!e && pids_max >= 0 && (e = set_pids_max(f, m.n, pids_max)) != 0) {
    close(m.procs_fd);
    msrt_fleet_kill(f, m.n); /* empty: removed */
  }
  if (e) return msrt_error_set(err, MSRT_E_SPAWN_FAILED, "%s", strerror(e));
  *n = m.n;
  *procs_fd = m.procs_fd;
  return MSRT_E_OK;
}

void msrt_fleet_kill(msrt_fleet *f, uint64_t n) {
  bool queued = false;
  if (f->has_keeper) {
    pthread_mutex_lock(&f->mu);
    queued = push_n(&f->kills, &f->nkills, &f->capkills, n);
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
  }
  if (!queued) kill_child(f, n);
}

size_t msrt_fleet_sweep(msrt_fleet *f) {
  pthread_mutex_lock(&f->mu);
  if (!f->has_keeper && f->ndead) retry_dead(f);
  size_t k = f->nkills + f->ndead;
  pthread_cond_signal(&f->cv); /* the keeper tries again now */
  pthread_mutex_unlock(&f->mu);
  return k;
}

void msrt_fleet_close(msrt_fleet *f, long timeout_ms) {
  if (!f) return;
  if (f->has_keeper) { /* it drains the kills handed to it, then ends */
    pthread_mutex_lock(&f->mu);
    f->stopping = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->keeper, NULL);
  }
  for (size_t i = 0; i < f->npool; i++) close(f->pool[i].procs_fd);
  char path[PATH + 16];
  snprintf(path, sizeof path, "%s/cgroup.kill", f->path);
  write_file(path, "1");
  for (long waited = 0; remove_tree(f->path) != 0 && waited < timeout_ms;
       waited++)
    sleep_ms(1);
  if (f->watch_fd >= 0) close(f->watch_fd); /* the watcher finds it done */
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
  free(f->kills);
  free(f->dead);
  free(f);
}

bool msrt_nproc_exempt(void) {
  if (getuid() == 0) return true;
  char buf[4096];
  if (read_file("/proc/self/status", buf, sizeof buf) <= 0) return false;
  const char *cap = strstr(buf, "CapEff:");
  if (!cap) return false;
  unsigned long long eff = strtoull(cap + 7, NULL, 16);
  return (eff >> 21 & 1) || (eff >> 24 & 1); /* CAP_SYS_ADMIN, _RESOURCE */
}
