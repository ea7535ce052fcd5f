/* The bus's side of child processes (docs/architecture.md "Processes"):
 * what a child prints is published (permissions checked after routing);
 * a child whose output meets full `block` mailboxes is paused until they
 * have room, the retry coming through the hub inbox as an MSRT_IN_PROC
 * item without an envelope; the lines the router hands a child (an
 * MSRT_IN_PROC item with its envelope, holding a slot of its stdin gate)
 * are written to its stdin; and every copy that cannot be written, or that
 * the stdin queue drops, moves from delivered to a drop in the router's
 * accounting, announced as the bus announces drops. No Lua on this path.
 *
 * Each process this touches keeps its pending publish in its user data
 * (msrt_proc_set_ud): msrt_bus_proc_release gives it back.
 *
 * Thread-safety: the hub thread (the process registry's), as src/proc. */
#ifndef MSRT_BUS_PROCS_H
#define MSRT_BUS_PROCS_H

#include <stddef.h>

#include "bus/bus.h"
#include "core/error.h"
#include "proc/proc.h"

/* Publish a line child p printed (subject s, reply r, headers h, payload
 * pl; as msrt_proc_events.publish gets them). Returns MSRT_E_OK (also
 * when full `block` mailboxes hold it: p's output is then paused until
 * they have room); MSRT_E_NO_RESPONDERS for a request nobody takes; or
 * msrt_bus_publish_as's refusal, with err filled. */
msrt_code msrt_bus_proc_publish(msrt_bus *bus, msrt_proc *p, const char *s,
                                size_t sl, const char *r, size_t rl,
                                const void *h, size_t hl, const void *pl,
                                size_t plen, msrt_error *err);

/* An MSRT_IN_PROC item for p (NULL when it was released) reached the hub:
 * e NULL is room for p's paused output (retry it, read on); else write e
 * to p's stdin. Takes e's reference. Returns MSRT_E_OK, or why e could not
 * be written, with err filled: then the copy (counted delivered when it
 * went to the hub) is moved to drop_closed (the process has gone, its
 * stdin closed) or drop_other (bad_input, payload_too_big: data that is
 * not JSON for a JSON child, or a line over max_line_bytes; nomem). */
msrt_code msrt_bus_proc_item(msrt_bus *bus, msrt_proc *p, msrt_envelope *e,
                             msrt_error *err);

/* p's stdin queue dropped e (reason "drop_oldest" or "drop_newest"; as
 * msrt_proc_events.dropped gets it): the copy moves from delivered to that
 * drop and the drop is announced on msrt.dropped.<subject>. e NULL (a line
 * of p:send, never counted) is ignored. */
void msrt_bus_proc_dropped(msrt_bus *bus, msrt_proc *p, const char *reason,
                           const msrt_envelope *e);

/* p exits or is released: what its held publish still held is counted
 * refused and let go. bus NULL (no runtime): only freed. */
void msrt_bus_proc_release(msrt_bus *bus, msrt_proc *p);

#endif
