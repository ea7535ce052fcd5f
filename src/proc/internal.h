/* Shared by the files of src/proc (not part of its public face): the
 * process record, and the stdout/stdin steps proc.c (every codec) and
 * proc_rpc.c (the jsonrpc and lsp codecs, proc/rpc.h) both use.
 *
 * Thread-safety: the hub thread only, as proc.h's functions.
 */
#ifndef MSRT_PROC_INTERNAL_H
#define MSRT_PROC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "proc/codec.h"
#include "proc/framer.h"
#include "proc/gate.h"
#include "proc/proc.h"

#define TAIL_LINES 8      /* stderr lines kept for the exit record */
#define TAIL_LINE_MAX 512 /* bytes kept of each */
#define REPLY_MAX 1024    /* reply subjects handed and not yet used */
#define BATCH_MAX 256     /* stdin lines per uv_write */

/* A stdin line. Each one queued or in flight holds one slot of the gate
 * and its len bytes. env: the message it came from, kept only by
 * drop_oldest processes (an eviction is reported with the evicted
 * message); NULL otherwise. */
typedef struct {
  char *p;
  size_t len;
  msrt_envelope *env;
} line;

/* A reply subject the child was handed with a message: it may publish to
 * it once, before deadline (CLOCK_MONOTONIC ns; 0 = none). */
typedef struct {
  char *s;
  uint64_t deadline;
  uint64_t rpc_id; /* jsonrpc/lsp: the id of the request it came with */
} handed;

/* A request from a jsonrpc/lsp child, published with the reply subject
 * "<inbox>.<n>": the answer goes back to the child with its own id (JSON
 * text). */
typedef struct {
  uint64_t n;
  char *id;
} call;

struct msrt_proc {
  unsigned magic; /* MSRT_HANDLE_MAGIC: every handle's data points here */
  msrt_procs *reg;
  msrt_proc *prev, *next, *hnext;
  uint64_t id;
  void *ud;
  char *name, *publish_as, *out_subject;
  size_t pa_len, out_len;
  char *rpc, *inbox; /* jsonrpc/lsp: method subjects' prefix, our inbox */
  size_t rpc_len, inbox_len;
  uint64_t rpc_next; /* the last id of a request to the child */
  call *calls;       /* the child's requests awaiting answers (a ring) */
  size_t chead, cn;
  uint64_t call_next;
  char **allow, **deny;
  size_t nallow, ndeny;
  msrt_codec codec;
  int stop_signal;
  long grace_ms, eof_wait_ms;
  pid_t pid;
  uint64_t cgroup; /* its cgroup in the fleet (cgroup.h), 0 = none */
  int status;
  bool reaped, stopped, out_eof, err_eof, stdin_closed, exited, released;
  bool stdin_closing; /* msrt_proc_close_stdin: EOF once the queue is out */
  bool drop_oldest_policy;
  msrt_gate *gate; /* the bound of stdin, shared with publishers (gate.h) */
  bool out_paused; /* msrt_proc_pause_output: stdout not read meanwhile */
  char *held;      /* stdout bytes read but not yet framed while paused */
  size_t held_len;
  msrt_proc_state state;
  uv_pipe_t in, out, err;
  uv_timer_t timer; /* grace, then the wait for EOF after the status */
  uv_timer_t poll;  /* waitpid retries once both streams ended */
  uv_poll_t started; /* the spawn job's pipe: the child exec'd or failed */
  struct msrt_spawn_job *job; /* until then (spawn.h); NULL after */
  char *start_error; /* what failed in the child before exec, or NULL */
  int handles; /* open handles; freed when 0 after release */
  msrt_framer fout, ferr;
  msrt_proc_stats st;
  /* stdin: a ring of lines waiting, and one batch in flight */
  line *ring;
  size_t cap, head, n;
  size_t qbytes; /* bytes of the lines queued and in flight */
  line inflight[BATCH_MAX];
  size_t ninflight;
  uv_write_t wreq;
  /* on the registry's list of processes whose queued lines are written
   * once the loop's turn has queued them all (proc.c, flush_due) */
  struct msrt_proc *due_next;
  bool due;
  handed replies[REPLY_MAX];
  size_t rhead, rn;
  char *tail[TAIL_LINES];
  size_t thead, tn;
  msrt_sbuf scratch;
};

/* ---- proc.c ---- */

/* Count and report a bad output (reason, detail; head: hlen of its first
 * bytes, total its length). */
void msrt_proc_bad(msrt_proc *p, const char *reason, const char *detail,
                   const char *head, size_t hlen, size_t total);

/* Publish a message of the child's through its permissions (reply_ours:
 * the reply subject is the process's own inbox, not one the child named).
 * Returns MSRT_E_OK, or MSRT_E_NO_RESPONDERS (a request nobody took:
 * published, not reported), or the error it was refused with (reported as
 * bad output). */
msrt_code msrt_proc_publish_as(msrt_proc *p, const char *subject, size_t slen,
                               const char *reply, size_t rlen, bool reply_ours,
                               const msrt_sbuf *hdr, const msrt_sbuf *payload,
                               const char *line, size_t llen);

/* msrt_proc_publish_as with a reply subject the child named. */
void msrt_proc_publish(msrt_proc *p, const char *subject, size_t slen,
                       const char *reply, size_t rlen, const msrt_sbuf *hdr,
                       const msrt_sbuf *payload, const char *line, size_t llen);

/* Whether s (n bytes) holds only spaces, tabs and CRs. */
bool msrt_proc_blank(const char *s, size_t n);

/* The data of a payload as JSON (flags as in an envelope). */
msrt_code msrt_proc_put_data_json(msrt_sbuf *b, const void *payload,
                                  size_t plen, uint8_t flags, msrt_error *err);

/* A stdin line within max_line_bytes (its final newline not counted), or
 * MSRT_E_PAYLOAD_TOO_BIG. */
msrt_code msrt_proc_check_line(const msrt_proc *p, const msrt_sbuf *b,
                               msrt_error *err);

/* b built with rc: queued for stdin (taking b's bytes), or freed (and its
 * gate slot given back when held). */
msrt_code msrt_proc_send_done(msrt_proc *p, msrt_sbuf *b, msrt_code rc,
                              msrt_envelope *e, bool held, msrt_error *err);

/* ---- proc_rpc.c ---- */

/* Whether p's codec is jsonrpc or lsp. */
bool msrt_proc_is_rpc(const msrt_proc *p);

/* One framed message of a jsonrpc/lsp child's stdout (a batch: each
 * element on its own): a response answers our request, a notification is
 * published, a request becomes an msrt request answered back. */
void msrt_proc_rpc_in(msrt_proc *p, const char *line, size_t len);

/* The stdin body of e for a jsonrpc/lsp child (*rid: the id of the
 * request it becomes, 0 for a notification or an answer). */
msrt_code msrt_proc_rpc_put_env(msrt_proc *p, msrt_sbuf *b,
                                const msrt_envelope *e, uint64_t *rid,
                                msrt_error *err);

/* Frame a body for the child: jsonrpc a line, lsp Content-Length headers. */
msrt_code msrt_proc_rpc_frame(msrt_proc *p, msrt_sbuf *b, msrt_error *err);

#endif
