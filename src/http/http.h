/* An HTTP client on the hub's libuv loop: Debian's libcurl through its
 * multi interface, driven by the loop (curl_multi_socket_action from
 * uv_poll watchers on curl's sockets and a uv_timer armed as curl asks,
 * from the monotonic clock: hub/timer.h). Transfers run side by side on
 * the one thread; nothing blocks. msrt's MCP client over the streamable
 * HTTP transport (lua/msrt/mcp_remote.lua) is its user.
 *
 * Callbacks are never called from inside libcurl: curl's own callbacks
 * only buffer, and what arrived is handed out after each
 * curl_multi_socket_action returns, so a callback may start requests,
 * cancel any request (its own included) or close the client.
 *
 * Thread-safety: the loop's thread only, as for any libuv handle. */
#ifndef MSRT_HTTP_HTTP_H
#define MSRT_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "core/error.h"

typedef struct msrt_http msrt_http;
typedef struct msrt_http_req msrt_http_req;

/* What a request hands back, in this order: head once (the final
 * response's status and header block, "Name: value\r\n" lines, before
 * any body; not called when no response came), body for each piece of
 * the body as it arrives (n > 0), then done once: MSRT_E_OK when the
 * response came whole (whatever its status), else the failure and why
 * (NUL-terminated, libcurl's words: MSRT_E_NETWORK for a connection
 * refused, reset or a name that does not resolve, MSRT_E_TIMEOUT for
 * timeout_ms or connect_timeout_ms passing, MSRT_E_LIMIT for a header
 * block over 64 KiB, MSRT_E_NOMEM). The request is freed after done;
 * nothing is called for a request after msrt_http_cancel. */
typedef struct {
  void (*head)(void *ud, long status, const char *headers, size_t len);
  void (*body)(void *ud, const char *bytes, size_t n);
  void (*done)(void *ud, msrt_code code, const char *why);
} msrt_http_cbs;

typedef struct {
  const char *method;       /* "GET", "POST", "DELETE"... */
  const char *url;          /* http:// or https:// only */
  const char *const *headers; /* "Name: value" strings, n_headers of them */
  size_t n_headers;
  const char *body;         /* copied; NULL: none */
  size_t body_len;
  long timeout_ms;          /* the whole transfer; 0: none */
  long connect_timeout_ms;  /* 0: libcurl's (300 s) */
} msrt_http_opts;

/* A client on loop. Returns NULL when out of memory or when libcurl will
 * not start (err says why). */
msrt_http *msrt_http_new(uv_loop_t *loop, msrt_error *err);

/* Start a request. Returns it (its callbacks get ud), or NULL with err:
 * MSRT_E_INVALID_ARG (no method or url, a scheme other than http(s), a
 * header with CR or LF), MSRT_E_CLOSED (the client is closing),
 * MSRT_E_NOMEM. */
msrt_http_req *msrt_http_request(msrt_http *c, const msrt_http_opts *o,
                                 const msrt_http_cbs *cbs, void *ud,
                                 msrt_error *err);

/* Abandon a request whose done has not been called: its transfer stops
 * (its connection closed if it was mid-response) and no callback of it
 * runs again. */
void msrt_http_cancel(msrt_http_req *r);

/* Requests in flight. */
size_t msrt_http_active(const msrt_http *c);

/* Cancel every request and free the client; its libuv handles close on
 * the loop's next turn. From inside a callback the close happens once
 * the callbacks of that turn have returned. */
void msrt_http_close(msrt_http *c);

#endif
