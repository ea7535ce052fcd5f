/* Shared by the files of the bus (not part of its public face). */
#ifndef MSRT_BUS_INTERNAL_H
#define MSRT_BUS_INTERNAL_H

#include <stdint.h>

#include "bus/bus.h"

/* Count n copies in outcome s of subject class cls, on the calling
 * thread's shard of the router's counters (no shared write). */
void msrt_bus_count(msrt_bus *bus, unsigned cls, msrt_stat s, uint64_t n);

#endif
