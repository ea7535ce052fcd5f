/* A text/event-stream parser: the WHATWG HTML "Server-sent events" event
 * stream interpretation (section 9.2.6, "Interpreting an event stream"),
 * which MCP's streamable HTTP transport answers a POST with.
 *
 * Bytes are fed as they arrive, split anywhere (a line, a CRLF pair or a
 * UTF-8 sequence may straddle two feeds). Lines end with CRLF, LF or CR;
 * a leading byte order mark is skipped; a line starting with ':' is a
 * comment; `field: value` loses one space after the colon. `data` lines
 * join with "\n", `event` names the event's type ("message" when none),
 * `id` sets the last event id (kept across events; one holding NUL is
 * ignored), `retry` (ASCII digits only) the reconnection time. An empty
 * line dispatches the event when it has data; other fields are ignored.
 * An event left unfinished when the stream ends is dropped (as the
 * standard says): msrt_sse_free forgets it.
 *
 * Limits: a line, and an event's data, are at most max bytes; past it the
 * feed answers MSRT_E_LIMIT and the parser is spent (every later feed
 * answers the same): a stream that never ends its lines cannot grow us.
 *
 * Thread-safety: one parser per stream, used by one thread at a time. */
#ifndef MSRT_HTTP_SSE_H
#define MSRT_HTTP_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
  char *p;
  size_t len, cap;
} msrt_sse_buf;

typedef struct msrt_sse {
  size_t max;            /* bytes a line or an event's data may take */
  msrt_sse_buf line;     /* the line being read */
  msrt_sse_buf data;     /* the event's data lines, each with its "\n" */
  msrt_sse_buf event;    /* the event's type ("" until an event field) */
  msrt_sse_buf id;       /* the last event id */
  int64_t retry_ms;      /* the last retry field's value, -1 when none */
  bool after_cr;         /* the last byte was CR: a LF next is its pair */
  bool started;          /* past the first bytes (the BOM check) */
  bool spent;            /* a limit was met: the parser takes no more */
  uint8_t bom;           /* BOM bytes matched so far */
} msrt_sse;

/* One event: type (NUL-terminated; "message" by default), data (len
 * bytes, NUL-terminated, its last "\n" removed), id (the last event id,
 * NUL-terminated, "" when none). The strings live until the callback
 * returns. Answer true to stop the feed (it then answers MSRT_E_CLOSED
 * and the rest of its bytes are not read). */
typedef bool (*msrt_sse_cb)(void *ud, const char *type, const char *data,
                            size_t len, const char *id);

/* Zero the parser with limit max (bytes; 0: 16 MiB). */
void msrt_sse_init(msrt_sse *p, size_t max);

/* Feed n bytes, calling cb for each event they finish. Returns MSRT_E_OK,
 * MSRT_E_CLOSED (cb stopped it), MSRT_E_LIMIT (a line or an event's data
 * over max: the parser is spent) or MSRT_E_NOMEM (spent too). */
msrt_code msrt_sse_feed(msrt_sse *p, const char *bytes, size_t n,
                        msrt_sse_cb cb, void *ud);

/* Free what the parser holds (an unfinished event is dropped); it can be
 * initialised again. */
void msrt_sse_free(msrt_sse *p);

#endif
