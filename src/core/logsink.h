/* A log writer that never blocks its callers (README "Operator tools":
 * logs): lines are copied into a bounded buffer and a thread of its own
 * writes them to a file descriptor (the host's stderr), so a slow or
 * stalled reader of stderr cannot stall the hub. When the buffer is full,
 * lines are dropped whole and counted; once there is room again one line
 * says how many ("msrt-lua: N log lines dropped: stderr is not keeping
 * up"). A write error (EPIPE: nobody reads any more) discards what is
 * queued.
 *
 * Thread-safety: every function from any thread.
 */
#ifndef MSRT_CORE_LOGSINK_H
#define MSRT_CORE_LOGSINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct msrt_logsink msrt_logsink;

/* A sink writing to fd with a buffer of capacity bytes (a line longer
 * than that is cut to fit). Returns NULL and fills err (nomem, or the
 * thread could not start). */
msrt_logsink *msrt_logsink_new(int fd, size_t capacity, msrt_error *err);

/* Queue len bytes of text as one line (a '\n' is added when it does not
 * end with one). Whether it was queued: a line that finds no room is
 * dropped and counted (msrt_logsink_dropped), never waited for. */
bool msrt_logsink_write(msrt_logsink *s, const char *text, size_t len);

/* Wait until everything queued so far is written, at most timeout_ms.
 * Returns MSRT_E_OK, or MSRT_E_TIMEOUT when the time ran out (the reader
 * is stalled). */
msrt_code msrt_logsink_flush(msrt_logsink *s, int timeout_ms);

/* Lines dropped so far. */
uint64_t msrt_logsink_dropped(msrt_logsink *s);

/* Flush (at most timeout_ms), stop the thread and free the sink: returns
 * MSRT_E_OK; or MSRT_E_TIMEOUT when the writer is stuck in a write to a
 * stalled reader: the sink is then left to the exiting process. */
msrt_code msrt_logsink_free(msrt_logsink *s, int timeout_ms);

#endif
