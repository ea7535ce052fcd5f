/* The allocator of the message hot paths: envelopes and actor Lua states.
 *
 * In a normal build this is mimalloc (Debian's libmimalloc): with glibc's
 * malloc an envelope made on one worker and freed on another takes the
 * slow cross-arena path, and thousands of actor states fragment it;
 * measured on the 2-vCPU box (scripts/bench/actors.lua), mimalloc takes the
 * 1->1 flood from ~2.4 to ~3.4 M msgs/s and actor spawns from ~20 k to
 * ~28 k/s, and idle actors from 65.6 to 59.6 KiB RSS. Sanitizer builds
 * (MSRT_ASAN, MSRT_TSAN) use libc's malloc so the sanitizers see every
 * allocation.
 *
 * Same contracts as malloc/realloc/free (NULL when out of memory; free of
 * NULL is a no-op). Memory from these must be released with msrt_mem_free,
 * never free(). Thread-safe.
 */
#ifndef MSRT_CORE_MEM_H
#define MSRT_CORE_MEM_H

#include <stddef.h>

void *msrt_mem_alloc(size_t n);
void *msrt_mem_realloc(void *p, size_t n);
void msrt_mem_free(void *p);

/* "mimalloc" or "libc": which allocator this build uses (for benchmarks). */
const char *msrt_mem_name(void);

#endif
