/* Shared by the files of the bus (not part of its public face). */
#ifndef MSRT_BUS_INTERNAL_H
#define MSRT_BUS_INTERNAL_H

#include <stdint.h>

#include "bus/bus.h"
#include "bus/interest.h"

/* The hub inbox the bus hands items to (bus/procs.c's wakers). */
msrt_inbox *msrt_bus_inbox(msrt_bus *bus);

/* Count n copies in outcome s of subject class cls, on the calling
 * thread's shard of the router's counters (no shared write). */
void msrt_bus_count(msrt_bus *bus, unsigned cls, msrt_stat s, uint64_t n);

/* The interest table of a bus (bus/interest.h, interest.c): subscribe,
 * unsubscribe and set_ready through it keep the keys in step with the
 * router; each takes the table's mutex around the router call. */
typedef struct msrt_interest msrt_interest;
msrt_interest *msrt_interest_new(void);
void msrt_interest_free(msrt_interest *in);
msrt_code msrt_interest_subscribe(msrt_interest *in, msrt_router *r,
                                  const char *p, size_t n, const char *q,
                                  size_t qn, msrt_endpoint ep, uint64_t *id,
                                  msrt_error *err);
msrt_code msrt_interest_unsubscribe(msrt_interest *in, msrt_router *r,
                                    uint64_t sub_id, void **obj, void **cls);
msrt_code msrt_interest_set_ready(msrt_interest *in, msrt_router *r,
                                  uint64_t sub_id, bool ready);
void msrt_interest_hook_set(msrt_interest *in, const msrt_interest_hook *h);
size_t msrt_interest_local_groups(msrt_interest *in, const char *subject,
                                  char *buf, size_t cap);

#endif
