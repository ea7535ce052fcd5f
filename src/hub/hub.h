/* The hub: the main thread's libuv loop, signals and shutdown
 * (docs/architecture.md "Threads and the path of a message").
 *
 * The hub owns one uv_loop_t that everything on the main thread shares
 * (luv included). SIGINT and SIGTERM start a graceful shutdown unless the
 * script has a signal watcher of its own for that signal (then only the
 * script's handler runs). A second one while shutting down, or before the
 * loop got to the first (a busy or stuck hub), ends the process at once
 * with the signal's default action (status 130/143), from a plain signal
 * handler that does not need the loop. SIGHUP that nothing else watches
 * goes to the hup hook; SIGPIPE is ignored (a write to a closed peer is
 * EPIPE). Shutdown runs the registered hook (which stops actors and
 * processes), then closes every handle still open so that msrt_hub_run
 * returns.
 *
 * Thread-safety: every function here is for the hub (main) thread only.
 */
#ifndef MSRT_HUB_HUB_H
#define MSRT_HUB_HUB_H

#include <stdbool.h>
#include <uv.h>

#include "core/error.h"
#include "core/handle.h" /* MSRT_HANDLE_MAGIC: every non-luv handle's tag */

typedef struct msrt_hub msrt_hub;

/* Called once when shutdown begins. reason is "signal:SIGINT",
 * "signal:SIGTERM" or the caller's reason; status is the exit status the
 * host will return unless the hook changes it with msrt_hub_set_status.
 * Returns false when the shutdown is done (the loop is stopped then), or
 * true when it goes on on the loop (supervision trees stopping child by child,
 * README "Supervisors") and the hook calls msrt_hub_shutdown_done when it
 * ends. msrt_hub_close_all calls it again with reason NULL if it has not
 * ended by then: finish at once. */
typedef bool (*msrt_hub_shutdown_fn)(msrt_hub *h, const char *reason,
                                     void *ud);

/* Called on SIGHUP when no other watcher on the loop handles it. */
typedef void (*msrt_hub_hup_fn)(msrt_hub *h, void *ud);

/* Make the hub and its loop; installs the signal watchers (unreferenced,
 * so they never keep the loop alive on their own). Returns NULL and fills
 * err when libuv fails. */
msrt_hub *msrt_hub_new(msrt_error *err);

uv_loop_t *msrt_hub_loop(msrt_hub *h);

void msrt_hub_on_shutdown(msrt_hub *h, msrt_hub_shutdown_fn fn, void *ud);
void msrt_hub_on_hup(msrt_hub *h, msrt_hub_hup_fn fn, void *ud);

/* Run the loop until nothing is left that can produce work, or a shutdown
 * closed everything. Returns MSRT_E_OK, or MSRT_E_INVALID_ARG at once for
 * a re-entrant call (from inside a callback): libuv is never re-entered. */
msrt_code msrt_hub_run(msrt_hub *h);

/* The same with a libuv run mode (UV_RUN_ONCE, UV_RUN_NOWAIT...); *more
 * (more may be NULL) gets uv_run's result: non-zero when more work is
 * pending. Same returns. */
msrt_code msrt_hub_run_mode(msrt_hub *h, uv_run_mode mode, int *more);

/* 1 while msrt_hub_run is on the stack. */
int msrt_hub_running(const msrt_hub *h);

/* While fn is set, the first SIGINT also calls fn(ud) from the signal
 * handler, before the loop is told: for Lua code that runs outside the
 * loop (a script's main chunk), fn arms an interrupt as luajit's front end
 * does from its own SIGINT handler (README "msrt-lua"). fn runs in a
 * signal handler, on whichever thread took the signal: it must be
 * async-signal-safe. NULL clears it. Process-wide, as signal dispositions
 * are; set and cleared from the hub thread. */
void msrt_hub_set_interrupt(void (*fn)(void *ud), void *ud);

/* 1 when the script (luv) has an active watcher of its own for signum on
 * the hub's loop (uv.new_signal():start(...)): the hub then leaves that
 * signal to it. */
int msrt_hub_script_watches(msrt_hub *h, int signum);

/* Begin a graceful shutdown with an exit status (0 normal). A second call
 * while one is under way is ignored. reason is copied. */
void msrt_hub_shutdown(msrt_hub *h, const char *reason, int status);

/* The shutdown hook's asynchronous part has ended: stop the loop. */
void msrt_hub_shutdown_done(msrt_hub *h);

/* 1 once a shutdown has begun. */
int msrt_hub_stopping(const msrt_hub *h);
const char *msrt_hub_reason(const msrt_hub *h);

int msrt_hub_status(const msrt_hub *h);
void msrt_hub_set_status(msrt_hub *h, int status);

/* Close every handle still open (signal watchers included) and run the
 * loop until they are all closed. Used by shutdown and at exit. A
 * shutdown still going on (its hook returned 1) first runs the loop until
 * it ends, or is told to finish at once if nothing left can end it. */
void msrt_hub_close_all(msrt_hub *h);

/* Close the loop and free the hub; handles must already be closed
 * (msrt_hub_close_all). Returns MSRT_E_OK, or MSRT_E_INTERNAL when
 * something is still open (libuv's UV_EBUSY: the hub and its loop are then
 * left, never freed under a handle). NULL is ignored. */
msrt_code msrt_hub_free(msrt_hub *h);

#endif
