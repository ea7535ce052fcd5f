#include "hub/hub.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct msrt_hub {
  unsigned magic; /* MSRT_HANDLE_MAGIC: our handles' data point here */
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  msrt_hub_shutdown_fn on_shutdown;
  void *on_shutdown_ud;
  msrt_hub_hup_fn on_hup;
  void *on_hup_ud;
  int running;
  int stopping;
  int held; /* the shutdown hook goes on on the loop */
  int status;
  char reason[128];
};

/* The force path: a plain signal handler in front of libuv's, so that it
 * works whatever the hub is doing (libuv's only writes to a pipe the loop
 * reads). Process-wide state, as signal dispositions are. */
static atomic_int unseen;  /* SIGINT/SIGTERM the loop has not seen yet */
static atomic_int forcing; /* the hub is shutting down on a signal */
static struct sigaction uv_action[2]; /* libuv's, for SIGINT and SIGTERM */
static void (*_Atomic interrupt_fn)(void *); /* msrt_hub_set_interrupt's */
static void *_Atomic interrupt_ud;

static void die_of(int signum) {
  sigset_t set;
  signal(signum, SIG_DFL);
  sigemptyset(&set);
  sigaddset(&set, signum);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(signum);
  _exit(128 + signum);
}

/* A second SIGINT/SIGTERM ends the process with the signal's default
 * action when the hub already shuts down on one, or when the loop has not
 * got to the first (a busy or stuck hub); otherwise libuv's handler
 * queues it for on_signal. Async-signal-safe. */
static void force_handler(int signum, siginfo_t *info, void *uc) {
  if (atomic_load(&forcing) || atomic_fetch_add(&unseen, 1) >= 1)
    die_of(signum);
  int saved = errno;
  void (*fn)(void *) = atomic_load(&interrupt_fn);
  if (fn && signum == SIGINT) fn(atomic_load(&interrupt_ud));
  const struct sigaction *uv = &uv_action[signum == SIGTERM];
  if (uv->sa_flags & SA_SIGINFO) uv->sa_sigaction(signum, info, uc);
  else if (uv->sa_handler != SIG_DFL && uv->sa_handler != SIG_IGN)
    uv->sa_handler(signum);
  errno = saved;
}

static int install_force(void) {
  static const int sigs[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    struct sigaction sa;
    if (sigaction(sigs[i], NULL, &sa) != 0) return uv_translate_sys_error(errno);
    if ((sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == force_handler)
      continue; /* another hub of this process installed it */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = force_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(sigs[i], &sa, &uv_action[i]) != 0) return uv_translate_sys_error(errno);
  }
  return 0;
}

typedef struct {
  int signum;
  int found;
} signal_probe;

/* An active signal watcher for probe->signum that is not the hub's: the
 * script's (luv's) own handler, e.g. uv.new_signal():start("sigint"). */
static void find_watcher(uv_handle_t *handle, void *arg) {
  signal_probe *probe = arg;
  if (handle->type != UV_SIGNAL || !uv_is_active(handle) ||
      ((uv_signal_t *)handle)->signum != probe->signum)
    return;
  if (!handle->data || *(unsigned *)handle->data != MSRT_HANDLE_MAGIC)
    probe->found = 1;
}

int msrt_hub_script_watches(msrt_hub *h, int signum) {
  signal_probe probe = {signum, 0};
  uv_walk(&h->loop, find_watcher, &probe);
  return probe.found;
}

void msrt_hub_set_interrupt(void (*fn)(void *ud), void *ud) {
  atomic_store(&interrupt_ud, ud);
  atomic_store(&interrupt_fn, fn);
}

static void on_signal(uv_signal_t *sig, int signum) {
  msrt_hub *h = sig->data;
  atomic_store(&unseen, 0); /* the loop runs: it sees signals again */
  if (msrt_hub_script_watches(h, signum)) return; /* the script's handler has it */
  if (signum == SIGHUP) {
    if (h->on_hup) h->on_hup(h, h->on_hup_ud);
    return;
  }
  atomic_store(&forcing, 1);
  msrt_hub_shutdown(h, signum == SIGINT ? "signal:SIGINT" : "signal:SIGTERM",
                    0);
}

static int start_watcher(msrt_hub *h, uv_signal_t *w, int signum) {
  int rc = uv_signal_init(&h->loop, w);
  if (rc == 0) rc = uv_signal_start(w, on_signal, signum);
  w->data = h;
  uv_unref((uv_handle_t *)w);
  return rc;
}

msrt_hub *msrt_hub_new(msrt_error *err) {
  msrt_hub *h = calloc(1, sizeof *h);
  if (!h) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory making the hub");
    return NULL;
  }
  h->magic = MSRT_HANDLE_MAGIC;
  /* A peer that hangs up is an EPIPE on the write, never a fatal signal
   * (children get the default back: spawn resets every disposition). */
  signal(SIGPIPE, SIG_IGN);
  int rc = uv_loop_init(&h->loop);
  if (rc == 0) rc = start_watcher(h, &h->sigint, SIGINT);
  if (rc == 0) rc = start_watcher(h, &h->sigterm, SIGTERM);
  if (rc == 0) rc = start_watcher(h, &h->sighup, SIGHUP);
  if (rc == 0) rc = install_force();
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_INTERNAL, "libuv: %s", uv_strerror(rc));
    free(h);
    return NULL;
  }
  h->loop.data = h;
  return h;
}

void msrt_hub_on_hup(msrt_hub *h, msrt_hub_hup_fn fn, void *ud) {
  h->on_hup = fn;
  h->on_hup_ud = ud;
}

uv_loop_t *msrt_hub_loop(msrt_hub *h) { return &h->loop; }

void msrt_hub_on_shutdown(msrt_hub *h, msrt_hub_shutdown_fn fn, void *ud) {
  h->on_shutdown = fn;
  h->on_shutdown_ud = ud;
}

msrt_code msrt_hub_run_mode(msrt_hub *h, uv_run_mode mode, int *more) {
  if (h->running) return MSRT_E_INVALID_ARG;
  h->running = 1;
  int rc = uv_run(&h->loop, mode);
  h->running = 0;
  if (more) *more = rc;
  return MSRT_E_OK;
}

msrt_code msrt_hub_run(msrt_hub *h) {
  return msrt_hub_run_mode(h, UV_RUN_DEFAULT, NULL);
}

int msrt_hub_running(const msrt_hub *h) { return h->running; }

void msrt_hub_shutdown(msrt_hub *h, const char *reason, int status) {
  if (h->stopping) return;
  h->stopping = 1;
  h->status = status;
  snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "normal");
  h->held = 1;
  if (h->on_shutdown && h->on_shutdown(h, h->reason, h->on_shutdown_ud))
    return; /* it ends with msrt_hub_shutdown_done */
  msrt_hub_shutdown_done(h);
}

void msrt_hub_shutdown_done(msrt_hub *h) {
  h->held = 0;
  /* Closing every handle lets uv_run return; the loop stays usable so the
   * close callbacks run when the caller drains it. */
  uv_stop(&h->loop);
}

int msrt_hub_stopping(const msrt_hub *h) { return h->stopping; }
const char *msrt_hub_reason(const msrt_hub *h) { return h->reason; }
int msrt_hub_status(const msrt_hub *h) { return h->status; }
void msrt_hub_set_status(msrt_hub *h, int status) { h->status = status; }

static void close_one(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

void msrt_hub_close_all(msrt_hub *h) {
  while (h->held && uv_run(&h->loop, UV_RUN_ONCE)) {
  }
  if (h->held && h->on_shutdown) h->on_shutdown(h, NULL, h->on_shutdown_ud);
  h->held = 0;
  /* Several rounds: close callbacks may open or close more, and a pending
   * uv_stop makes the first uv_run return before doing anything. */
  for (int round = 0; round < 8; round++) {
    uv_walk(&h->loop, close_one, NULL);
    if (!uv_loop_alive(&h->loop)) break;
    uv_run(&h->loop, UV_RUN_DEFAULT);
  }
}

msrt_code msrt_hub_free(msrt_hub *h) {
  if (!h) return MSRT_E_OK;
  if (uv_loop_close(&h->loop) != 0) return MSRT_E_INTERNAL;
  free(h);
  return MSRT_E_OK;
}
