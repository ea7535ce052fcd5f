/* Agent processes (docs/architecture.md "Processes"):
 * spawning, stdio on the hub loop, framing, publish permissions, stop and
 * kill, reaping.
 *
 * Spawning never forks the host: clone(CLONE_VM) + exec (see spawn.c), so
 * the cost does not grow with the host's memory, and never waits for the
 * child to run (on a loaded machine that wait stalled the hub's loop): the
 * pid is known at once, and what fails in the child before its exec comes
 * as its exit (msrt_proc_exit.start_error). Each child leads its own process
 * group; stopping signals the whole group (the stop signal, then SIGKILL
 * after grace_ms), and when the child itself has exited the rest of its
 * group is killed, and the rest of its cgroup (cgroup.h: every descendant,
 * also one that left the group with setsid), so grandchildren never
 * outlive it. Children never outlive the host either: each has SIGKILL as
 * its parent death signal, and the fleet's cgroup watcher kills every
 * descendant when the host dies (where cgroups are not available, a
 * warning says so at the first spawn). The host is its children's
 * subreaper and reaps the grandchildren it adopts. The environment is exactly spec->env (empty by default). stdin,
 * stdout and stderr are pipes wrapped with uv_pipe_open on the hub loop.
 * Children are reaped by one SIGCHLD watcher per registry that waits for
 * each of its own pids (WNOHANG), so children libuv spawned itself (luv's
 * uv.spawn) are left to libuv.
 *
 * stdout, by codec:
 *   JSON_LINES  each line is one JSON value (cJSON). An object with a
 *               string `subject` (and optional `reply`, `headers` (an
 *               object of string or number values, NATS-style names),
 *               `data`) is published as that message, data encoded for Lua
 *               (proc/codec.h); any other value is published on
 *               "<publish_as>.out". A line over max_line, invalid UTF-8
 *               or invalid JSON goes to on_bad_output with its first 200
 *               bytes and the reason, is counted, and reading goes on.
 *   LINES       each line, as a string, on "<publish_as>.out".
 *   RAW         each read chunk, as a string, on "<publish_as>.out".
 *   JSONRPC     JSON-RPC 2.0 (proc/rpc.h), one message or batch a line;
 *   LSP         the same, framed by Content-Length headers (framer.h).
 *               A response to a request of ours (by id) is published to
 *               that request's reply subject (result as data; an error as
 *               headers Rpc-Error: <code>, Description: <message>, data
 *               its data); a response with an id nothing waits for is bad
 *               output "unknown_id". A notification is published on
 *               "<publish_as>.notify.<method>"; a request on
 *               "<publish_as>.request.<method>" with reply "<inbox>.<n>",
 *               answered with an error at once when nobody takes it
 *               (-32601, "no responders"). Each element of a batch is
 *               handled on its own (answers are not batched back).
 *               Anything else is bad output ("invalid_rpc",
 *               "invalid_method", "invalid_header", "truncated").
 * stderr lines go to on_stderr; the last few are kept for the exit record.
 *
 * Permissions: a publish from a child is allowed when its subject matches
 * publish_as or publish_as.>, or an allow pattern, or is a reply subject
 * the child was handed (once each, until its request's timeout
 * (envelope.h reply_deadline_ns): NATS allow_responses with max 1 and an
 * expiry), and matches no deny pattern (deny wins). The reply subject a
 * child names in a message obeys the same rule (whoever answers publishes
 * there on the child's behalf), and a handed reply used either way is used
 * up. A refused publish is counted and reported through on_bad_output
 * ("permission", naming the subject or reply refused), never routed.
 *
 * stdin: messages are written as JSON lines {"subject","reply","headers",
 * "data"} (JSON_LINES), as text lines, or (JSONRPC/LSP) as JSON-RPC: a
 * message on "<rpc>.<method>" with a reply subject is a request with a
 * fresh id (the reply is handed to the child as above, so its response
 * may answer it once, and an exit answers it with 503), without one a
 * notification, its data the params (a table or nil); a message on
 * "<inbox>.<n>" answers the child's request n (a 503 status as error
 * -32601; Rpc-Error/Description headers as that error); lines wait in a bounded queue
 * while the child does not read. The bound is the process's stdin gate
 * (proc/gate.h, msrt_proc_gate): stdin_capacity slots and stdin_bytes
 * bytes, a slot and the line's bytes held by each line from before it is
 * queued (a publisher on another thread takes them when it routes the
 * message here, counting the message's msrt_env_size, which the hub
 * corrects to the line's length once it has built the line) until it is
 * written. When it is full (either bound):
 * drop_newest (the default) drops the new line, drop_oldest the oldest
 * queued one (both counted and reported to `dropped`), `error` refuses the
 * new one, and `block` makes a publisher that can wait (lua/rt.c) wait for
 * room; here on the hub, a send finding no room is refused (the hub never
 * blocks on a child).
 *
 * The exit is final only after the exit status and EOF on both stdout and
 * stderr (libuv/luv issue 499: the status can arrive before the last
 * output); if grandchildren outside the group keep the pipes open, the
 * pipes are closed eof_wait_ms after the status.
 *
 * Thread-safety: everything here is for the thread that runs the loop (the
 * hub), except where said otherwise.
 */
#ifndef MSRT_PROC_PROC_H
#define MSRT_PROC_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/envelope.h"
#include "core/error.h"
#include "proc/gate.h"

typedef struct msrt_procs msrt_procs;
typedef struct msrt_proc msrt_proc;

typedef enum {
  MSRT_CODEC_JSON_LINES, MSRT_CODEC_LINES, MSRT_CODEC_RAW,
  MSRT_CODEC_JSONRPC, /* JSON-RPC 2.0, newline-delimited (MCP's stdio) */
  MSRT_CODEC_LSP      /* JSON-RPC 2.0, Content-Length headers (LSP's base
                         protocol) */
} msrt_codec;

/* Lifecycle states (docs/architecture.md "Supervision"). A process is initializing
 * until spawned, idle while its stdin queue is below half full, busy
 * above (the child is not keeping up; back to idle under a quarter),
 * paused while its output is held (msrt_proc_pause_output: a message it
 * wrote waits for room in a `block` mailbox or stdin; idle or busy again
 * on resume), stopping once a stop began, then terminated (exit status 0,
 * or stopped on request) or failed (spawn failure, non-zero status, a
 * signal). */
typedef enum {
  MSRT_PS_INITIALIZING, MSRT_PS_IDLE, MSRT_PS_BUSY, MSRT_PS_PAUSED,
  MSRT_PS_STOPPING, MSRT_PS_TERMINATED, MSRT_PS_FAILED
} msrt_proc_state;

/* "initializing", "idle", ... */
const char *msrt_proc_state_name(msrt_proc_state s);

/* Resource limits applied in the child before exec; -1 = not set. */
typedef struct {
  long long nofile;   /* RLIMIT_NOFILE, descriptors */
  long long as_bytes; /* RLIMIT_AS, bytes */
  long long cpu_s;    /* RLIMIT_CPU, seconds */
  long long nproc;    /* RLIMIT_NPROC, processes of the user */
} msrt_proc_limits;

typedef struct {
  const char *name;          /* one subject token; used in reports */
  const char *const *argv;   /* argv[0] is the program (searched in the
                                host's PATH when it holds no '/') */
  size_t argc;
  const char *const *env;    /* "KEY=value" strings: the whole environment */
  size_t envc;
  const char *cwd;           /* NULL: the host's */
  msrt_codec codec;
  const char *publish_as;    /* subject prefix; required */
  const char *const *allow;  /* extra publish patterns */
  size_t nallow;
  const char *const *deny;   /* refused patterns (win over allow) */
  size_t ndeny;
  msrt_proc_limits limits;
  int stop_signal;           /* 0 = SIGTERM */
  long grace_ms;             /* before SIGKILL; <0 = 5000 */
  size_t max_line;           /* bytes; 0 = 16 MiB */
  size_t stdin_capacity;     /* lines queued for stdin; 0 = 1024 */
  size_t stdin_bytes;        /* bytes queued for stdin (gate.h); 0 = 16 MiB */
  msrt_overflow overflow;    /* stdin overflow policy; mind that 0 is
                                MSRT_OVERFLOW_BLOCK: MSRT_OVERFLOW_DEFAULT
                                is drop_newest */
  long eof_wait_ms;          /* after the status; <0 = 2000 */
  const char *rpc;           /* jsonrpc/lsp: a message on "<rpc>.<method>"
                                calls method; required for those codecs */
  const char *inbox;         /* jsonrpc/lsp: the reply subjects of the
                                child's requests are "<inbox>.<n>" (the
                                caller routes them to this process) */
} msrt_proc_spec;

/* How a process ended. */
typedef struct {
  int code;            /* exit status, or -1 when killed by a signal */
  int signal;          /* the signal that killed it, or 0 */
  bool normal;         /* status 0, or it ended on a stop we asked for */
  bool stopped;        /* a stop was asked (stop, or registry shutdown) */
  const char *stderr_tail; /* its last stderr lines, '\n'-separated */
  size_t stderr_tail_len;
  const char *start_error; /* NULL, or what failed in the child before its
                              exec, which it did not reach (code 127):
                              "exec: Exec format error", "chdir: ..." */
} msrt_proc_exit;

/* What the registry calls back (all on the loop's thread). */
typedef struct {
  /* A message the child published (permissions passed). headers: NULL or
   * hlen bytes of "name\0value\0" pairs (the envelope's header form);
   * payload is the string.buffer encoding of its data. Return MSRT_E_OK
   * (taken; the callback may have called msrt_proc_pause_output when it
   * could not deliver it yet), MSRT_E_NO_RESPONDERS (a message with a
   * reply that no subscriber took: counted published, not reported; a
   * jsonrpc/lsp child's request is then answered with an error), or an
   * error (filled in err) that is reported as bad output
   * "refused: <message>". */
  msrt_code (*publish)(void *ud, msrt_proc *p, const char *subject,
                       size_t slen, const char *reply, size_t rlen,
                       const void *headers, size_t hlen, const void *payload,
                       size_t plen, msrt_error *err);
  /* Output that was not published: reason ("line_too_long",
   * "invalid_utf8", "invalid_json", "permission", "refused"...), detail
   * (a message), the line's first bytes and its length. */
  void (*bad_output)(void *ud, msrt_proc *p, const char *reason,
                     const char *detail, const char *head, size_t hlen,
                     size_t total);
  void (*stderr_line)(void *ud, msrt_proc *p, const char *line, size_t len);
  /* A stdin line dropped on overflow (reason "drop_newest"/"drop_oldest"):
   * e is the message it came from (borrowed for the call), or NULL for a
   * line of msrt_proc_send_data. Not called for lines a publisher dropped
   * before they came (msrt_proc_stats counts those too). */
  void (*dropped)(void *ud, msrt_proc *p, const char *reason,
                  const msrt_envelope *e);
  void (*state)(void *ud, msrt_proc *p, msrt_proc_state s);
  /* Final: status and both EOFs are in. The handle stays valid until
   * msrt_proc_release (the caller may release it from this callback). */
  void (*exit)(void *ud, msrt_proc *p, const msrt_proc_exit *x);
} msrt_proc_events;

/* Counters of one process. */
typedef struct {
  uint64_t lines_out;      /* stdout lines/chunks published */
  uint64_t bad_output;     /* stdout lines reported as bad */
  uint64_t refused;        /* publishes refused (permission or router) */
  uint64_t stderr_lines;
  uint64_t stdin_lines;    /* lines written to stdin */
  uint64_t stdin_dropped;  /* lines dropped on stdin overflow (drop_newest
                              by a publisher, or by the queue), or left
                              unwritten when stdin closed under them (the
                              child exited, was stopped or closed it) */
  uint64_t stdin_refused;  /* copies refused, the sender getting
                              mailbox_full: `error`, a `block` publisher
                              that could not wait, a send from the hub */
  uint64_t stdin_blocked;  /* `block` publishes that found it full (and
                              waited, or were refused when they could not) */
  size_t stdin_queued;     /* lines waiting now (queued or being written;
                              not those still on their way from the
                              router) */
  size_t stdin_queued_bytes; /* and their bytes */
} msrt_proc_stats;

/* Make the registry of processes on loop (one SIGCHLD watcher, which keeps
 * the loop alive only while a child is unreaped). Returns NULL and fills
 * err when libuv fails or memory runs out. */
msrt_procs *msrt_procs_new(uv_loop_t *loop, const msrt_proc_events *ev,
                           void *ud, msrt_error *err);

/* Stop every child (stop signal to each group, SIGKILL to what is left
 * after timeout_ms; this waits, blocking, for them), close every handle,
 * run the loop until the handles are closed, and free the registry.
 * Exit callbacks run for the processes still live. For the host's
 * shutdown and for tests. */
void msrt_procs_free(msrt_procs *r, long timeout_ms);

/* Processes spawned and not yet released. */
size_t msrt_procs_count(const msrt_procs *r);

/* Spawn a child, not waiting for it to run or exec. Returns the process
 * (state idle, its pid known) or NULL with err: invalid_arg (a bad spec),
 * spawn_failed (program not found or not executable, a cwd that cannot be
 * entered, clone/pipe failure, a limit that setrlimit would refuse, no
 * cgroup for it; errno's text in the message; limits.nproc when the host
 * runs as root and no cgroup pids controller can apply it). What fails
 * in the child itself after that (an exec the kernel refuses, e.g. a
 * file of no format it runs) comes as its exit: code 127, start_error
 * set, state failed. */
msrt_proc *msrt_proc_spawn(msrt_procs *r, const msrt_proc_spec *spec,
                           msrt_error *err);

/* Where children run without cgroups (proc/cgroup.h: what is lost then),
 * the sentence that says so and why, once: the first call after the spawn
 * that found none; NULL otherwise. The text lives until the next call. */
const char *msrt_procs_take_warning(msrt_procs *r);

/* The child's pid (also its process group id); 0 once reaped. */
pid_t msrt_proc_pid(const msrt_proc *p);
/* A registry-unique id (never reused), for lookups from other threads. */
uint64_t msrt_proc_id(const msrt_proc *p);
const char *msrt_proc_name(const msrt_proc *p);
msrt_proc_state msrt_proc_get_state(const msrt_proc *p);
void msrt_proc_get_stats(const msrt_proc *p, msrt_proc_stats *st);
/* The process's stdin gate (proc/gate.h), valid while the process is; a
 * holder that may outlive it takes a reference (msrt_gate_ref). */
msrt_gate *msrt_proc_gate(const msrt_proc *p);
/* The process with id, or NULL (released or unknown). */
msrt_proc *msrt_procs_find(msrt_procs *r, uint64_t id);

/* The JSON-RPC id of the request a jsonrpc/lsp child was sent with reply
 * subject reply (n bytes) and has not yet answered, or 0 (none, or not an
 * rpc child). What a cancellation names (MCP's notifications/cancelled
 * requestId, LSP's $/cancelRequest id). Hub thread. */
uint64_t msrt_proc_rpc_id(const msrt_proc *p, const char *reply, size_t n);

/* Whether the child may publish to subject s (n bytes) by its patterns:
 * under publish_as or an allow pattern, and no deny pattern (the handed
 * replies are not counted). The check a subject the routing table
 * resolved its message to gets (msrt_bus_publish_as in src/bus/bus.h takes
 * it as its permit). Hub thread. */
bool msrt_proc_permits(void *p, const char *s, size_t n);

/* Caller data carried by the process (the binding's). */
void msrt_proc_set_ud(msrt_proc *p, void *ud);
void *msrt_proc_ud(const msrt_proc *p);

/* Write a message to the child's stdin: JSON_LINES gets the line
 * {"subject":...,"reply":...,"headers":{...},"data":...} (headers from
 * the envelope's "name\0value\0" pairs; data from the
 * envelope's payload: string.buffer encoding when MSRT_ENV_PAYLOAD_BUFFER,
 * JSON text when MSRT_ENV_PAYLOAD_JSON, else the bytes as a string);
 * LINES and RAW get the data as text (strings as they are, other values as
 * JSON) and a newline. A reply subject is remembered as one the child may
 * publish to (once, until e->reply_deadline_ns when set; the newest 1024
 * kept). held: the caller already holds a slot of the
 * process's gate for it (msrt_gate_take), which is then the line's, or
 * given back on failure; else a slot is taken here. drop_oldest
 * processes keep a reference to e while its line is queued. A queued line
 * is written when the loop's turn ends (before it polls or after its I/O
 * callbacks), with every other line the process was handed in that turn
 * (drop_oldest processes: the first at once, as evictions spare a line in
 * flight). Returns
 * MSRT_E_OK (queued or written; with drop_oldest an older line may have
 * been dropped and reported), MSRT_E_CLOSED (stdin closed: the child has
 * exited, is stopping or msrt_proc_close_stdin was called),
 * MSRT_E_MAILBOX_FULL (no room: dropped and reported under drop_newest,
 * counted as refused under error and block), MSRT_E_BAD_INPUT (a payload
 * that cannot be written as JSON), MSRT_E_PAYLOAD_TOO_BIG (the line, its
 * newline not counted, is longer than the spec's max_line: nothing is
 * written), MSRT_E_NOMEM. */
msrt_code msrt_proc_send_env(msrt_proc *p, msrt_envelope *e, bool held,
                             msrt_error *err);

/* Write one value to stdin on its own: JSON_LINES gets its JSON and a
 * newline; LINES a string as it is (other values as JSON) and a newline;
 * RAW a string's bytes as they are (no newline). payload/flags as in an
 * envelope (MSRT_ENV_PAYLOAD_BUFFER: a string.buffer encoding). Same
 * returns as msrt_proc_send_env. */
msrt_code msrt_proc_send_data(msrt_proc *p, const void *payload, size_t plen,
                              uint8_t flags, msrt_error *err);

/* Backpressure on the child's output: from the publish callback, when the
 * message it was handed cannot be delivered yet (a `block` mailbox is
 * full), stop taking stdout after this line: the rest of the read is
 * held, the pipe is not read (the child blocks on a full pipe), and the
 * exit waits. msrt_proc_resume_output frames the held bytes and reads on
 * (it may pause again). Hub thread. */
void msrt_proc_pause_output(msrt_proc *p);
void msrt_proc_resume_output(msrt_proc *p);

/* Signal the child's whole process group. Returns MSRT_E_OK; MSRT_E_CLOSED
 * once it is reaped (or the group is gone: ESRCH); MSRT_E_INVALID_ARG for
 * a bad signal number; MSRT_E_PERMISSION when the kernel refuses. */
msrt_code msrt_proc_signal(msrt_proc *p, int signum);

/* Begin a stop: the stop signal to the group, SIGKILL after grace_ms
 * (grace_ms < 0: the spec's). State stopping. Idempotent; a no-op after the
 * exit. */
void msrt_proc_stop(msrt_proc *p, long grace_ms);

/* Close stdin once every line queued or being written is written: the
 * child reads them all, then EOF. New lines are refused (MSRT_E_CLOSED)
 * from this call on. A stop or the child's exit meanwhile closes it at
 * once; lines left are counted in stdin_dropped. Idempotent. */
void msrt_proc_close_stdin(msrt_proc *p);

/* Drop the caller's hold. A process still running is stopped (stop
 * signal, then SIGKILL) and freed once it has exited; no callback runs
 * after release. */
void msrt_proc_release(msrt_proc *p);

/* "TERM", "KILL"... for a signal number (NULL when not in the list of
 * msrt_signal_from_name). */
const char *msrt_signal_name(int signum);

/* Signal number by name, with or without "SIG": TERM, KILL, INT, HUP,
 * USR1, USR2, QUIT, STOP, CONT, PIPE, ABRT, SEGV, XCPU, ALRM; 0 when
 * unknown. */
int msrt_signal_from_name(const char *name);

#endif
