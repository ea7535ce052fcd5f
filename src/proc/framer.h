/* Line framing of a byte stream (a child's stdout or stderr), or
 * Content-Length framing (msrt_framer_init_headers: LSP's base protocol).
 *
 * Bytes are fed in chunks of any size; every complete line ('\n'
 * terminated; a '\r' before the '\n' is removed) is handed to on_line
 * once, whole, whatever the reads that carried it. A line that would exceed
 * max_line bytes is not buffered: on_bad gets the reason "line_too_long",
 * its first MSRT_FRAMER_HEAD bytes and its full length once its end is
 * seen, and framing resumes at the next line. At end of stream
 * (msrt_framer_finish) a last line without '\n' is handed over too.
 *
 * Complete lines inside one chunk are handed out in place (no copy); only
 * a line split across chunks is assembled in the framer's buffer.
 *
 * Pure: no I/O, no globals. Thread-safety: one framer per thread at a time.
 */
#ifndef MSRT_PROC_FRAMER_H
#define MSRT_PROC_FRAMER_H

#include <stddef.h>

#include "core/error.h"

/* Bytes of a bad line kept for its report (DESIGN: "the first 200 bytes"). */
#define MSRT_FRAMER_HEAD 200

/* A whole line (without '\n' or "\r\n"), valid until the callback returns. */
typedef void (*msrt_line_fn)(void *ud, const char *line, size_t len);

/* A line refused by the framer: reason (a static string), its first bytes
 * (head, hlen <= MSRT_FRAMER_HEAD) and its full length in bytes. */
typedef void (*msrt_bad_line_fn)(void *ud, const char *reason,
                                 const char *head, size_t hlen, size_t total);

typedef struct {
  char *buf;        /* the partial line assembled so far */
  size_t len, cap;  /* bytes used / allocated in buf */
  size_t max_line;  /* bytes; a longer line is refused */
  int skipping;     /* in an over-long line: dropping bytes up to '\n' */
  int stop;         /* msrt_framer_stop was called during a feed */
  int headers;      /* Content-Length framing (msrt_framer_init_headers) */
  int in_body;      /* headers done: want more body bytes to come */
  size_t want;      /* body bytes still to come */
  size_t clen;      /* Content-Length seen in this header block, or
                       SIZE_MAX when none yet */
  int hbad;         /* this header block is bad: resync at its end */
  size_t skipped;   /* length of the over-long line so far */
  char head[MSRT_FRAMER_HEAD];
  size_t hlen;
  msrt_line_fn on_line;
  msrt_bad_line_fn on_bad;
  void *ud;
} msrt_framer;

/* Set up f for lines of at most max_line bytes (0 = 16 MiB). Nothing is
 * allocated until a line spans two chunks. */
void msrt_framer_init(msrt_framer *f, size_t max_line, msrt_line_fn on_line,
                      msrt_bad_line_fn on_bad, void *ud);

/* Set up f for LSP's base protocol ("Base Protocol" of the Language
 * Server Protocol specification): each message is a header block of
 * "Name: value" lines ending with an empty line ("\r\n" or "\n"), then
 * exactly Content-Length bytes of body, handed to on_line whole (no line
 * ending removed). Other headers (Content-Type) are ignored. A block
 * without a valid Content-Length, with a line that is not a header or a
 * header line over 1024 bytes is reported once as "invalid_header" (its
 * first bytes) when its empty line comes, and framing resumes after it.
 * A Content-Length over max_line is reported at once as "line_too_long"
 * (head: the header line, total: the announced length) and its body
 * skipped as it streams by, never buffered. At msrt_framer_finish a body
 * cut short is reported as "truncated". */
void msrt_framer_init_headers(msrt_framer *f, size_t max_line,
                              msrt_line_fn on_line, msrt_bad_line_fn on_bad,
                              void *ud);

/* Feed n bytes. Calls on_line / on_bad for every line they complete.
 * Returns MSRT_E_OK, or MSRT_E_NOMEM when out of memory assembling a
 * split line (that line is then reported as "out_of_memory" through
 * on_bad and skipped). */
msrt_code msrt_framer_feed(msrt_framer *f, const char *bytes, size_t n);

/* Feed like msrt_framer_feed, but stop early when a callback called
 * msrt_framer_stop: returns the bytes consumed (n when it did not stop;
 * the caller feeds the rest later). */
size_t msrt_framer_feed_part(msrt_framer *f, const char *bytes, size_t n);

/* From on_line: make the current msrt_framer_feed_part return after this
 * line (backpressure: the consumer cannot take more now). */
void msrt_framer_stop(msrt_framer *f);

/* End of stream: hand over a last unterminated line (or finish reporting
 * an over-long one). The framer is reset and may be fed again. */
void msrt_framer_finish(msrt_framer *f);

/* Free the buffer. f may be fed again after msrt_framer_init. */
void msrt_framer_free(msrt_framer *f);

#endif
