/* Control groups for the children (internal to src/proc): what keeps a
 * child's whole tree from outliving a stop or the host.
 *
 * A process group does not hold a tree: a grandchild that calls setsid
 * (`setsid -f`, a daemon's double fork) leaves it, and a SIGKILLed host
 * kills nobody. A cgroup v2 holds every descendant whatever it does, and
 * writing "1" to its cgroup.kill (Linux 5.14) SIGKILLs all of them at
 * once. So, where the host may make cgroups under its own (root, or a
 * delegated subtree):
 *
 *   fleet   <cgroup2 mount><the host's cgroup>/msrt-<host pid>, made at
 *           the first spawn;
 *   child   fleet/c<n>, one per child, which the child joins before exec
 *           (spawn.c writes "0" to its cgroup.procs), so nothing it starts
 *           can be outside it; killed when the child is reaped or stopped,
 *           removed once empty;
 *   watcher a small process forked when the fleet is made (it only makes
 *           system calls), in a session of its own, blocked reading a
 *           pipe whose other end only the host holds: when the host dies,
 *           however it dies (SIGKILL, a panic, the OOM killer), the pipe
 *           ends, and the watcher kills the fleet's cgroup and removes its
 *           directories. A host that exits cleanly has done so already.
 *
 * limits.nproc as root: RLIMIT_NPROC does not bind a process with root's
 * uid or CAP_SYS_RESOURCE/CAP_SYS_ADMIN, so the limit goes to the child's
 * cgroup as pids.max (the pids controller, when the host's cgroup offers
 * it to the fleet); without it the spawn fails saying why.
 *
 * Where no cgroup can be made (cgroup v2 not mounted, not writable, an
 * older kernel) msrt_fleet_open says why, the caller reports it once, and
 * children run without: their process groups are still signalled, and
 * PR_SET_PDEATHSIG still ends each child with the host (spawn.c); a
 * grandchild that left its group can then outlive a stop or the host.
 *
 * The keeper, a thread of the fleet's own, makes child cgroups ahead and
 * kills and removes those handed back: a mkdir or a cgroup.kill write
 * waits for the kernel's cgroup lock, 1-41 ms on a loaded machine, which
 * the hub's loop must not wait for (perf trace of the crash storm). The
 * cgroups made ahead (8 at most) hold their cgroup.procs open: 8 file
 * descriptors of the host's; where none is left the keeper stops making
 * them until the next take, and the hub makes its own.
 *
 * Thread-safety: every function here on the hub's thread only (spawns and
 * reaps run there); the keeper shares the fleet under its mutex.
 */
#ifndef MSRT_PROC_CGROUP_H
#define MSRT_PROC_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

typedef struct msrt_fleet msrt_fleet;

/* Make the fleet's cgroup and its watcher. Returns the fleet, or NULL with
 * why (a sentence naming the path and errno's text) when cgroups cannot
 * be used here. */
msrt_fleet *msrt_fleet_open(char *why, size_t why_size);

/* Whether children can be given a pids.max (see above). */
bool msrt_fleet_has_pids(const msrt_fleet *f);

/* A child cgroup for a child about to start (pids_max < 0: no pids.max):
 * its number (*n, for msrt_fleet_kill) and its cgroup.procs, open for the
 * child to join (*procs_fd, close-on-exec; the caller closes it). Taken
 * from those the keeper made ahead (the keeper, above), else made now.
 * Returns MSRT_E_OK, or MSRT_E_SPAWN_FAILED with strerror's text in err
 * (mkdir's, open's or the pids.max write's error; nothing left behind). */
msrt_code msrt_fleet_child(msrt_fleet *f, long long pids_max, uint64_t *n,
                           int *procs_fd, msrt_error *err);

/* SIGKILL everything in child cgroup n (cgroup.kill; before Linux 5.14,
 * each pid listed in its cgroup.procs), then remove it, once empty. Done
 * by the keeper soon after the call, not in it; a cgroup not empty yet is
 * tried again every few ms. */
void msrt_fleet_kill(msrt_fleet *f, uint64_t n);

/* Have the child cgroups handed to msrt_fleet_kill tried again now;
 * returns how many are not removed yet. */
size_t msrt_fleet_sweep(msrt_fleet *f);

/* The watcher's pid (a child of the host, to be reaped if it ends). */
pid_t msrt_fleet_watcher(const msrt_fleet *f);

/* At the host's shutdown: kill what is left, wait up to timeout_ms for
 * the child cgroups to empty, remove them and the fleet's, and let the
 * watcher go. Frees f. */
void msrt_fleet_close(msrt_fleet *f, long timeout_ms);

/* Whether RLIMIT_NPROC does not bind this process's children: real uid 0,
 * or CAP_SYS_ADMIN or CAP_SYS_RESOURCE in the effective set. */
bool msrt_nproc_exempt(void);

#endif
