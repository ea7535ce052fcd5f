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

/* The memory of actor Lua states (lua/astate.c), freed with msrt_mem_free.
 * A normal build takes it from a region of address space of its own, a
 * mimalloc heap per thread (an exclusive arena), so that making states in
 * bulk can take their fresh pages 2 MiB at a time (msrt_mem_state_bulk).
 * On this kind of VM a fresh 4 KiB page's first touch costs ~10-15 us of
 * CPU (a page fault each; docs/performance.md, spawn rate) and a spawn
 * keeps ~10 of them. Under an RLIMIT_AS cap, with strict overcommit, or
 * once the region is full, these are msrt_mem_alloc/realloc. Same
 * contracts as those; any thread. */
void *msrt_mem_state_alloc(size_t n);
void *msrt_mem_state_realloc(void *p, size_t n);

/* on != 0: pages of the states' region first touched from now on come as
 * transparent huge pages where the kernel has them (MADV_HUGEPAGE; 2 MiB,
 * one fault, ~0.2-8 us per 4 KiB of it against ~10-15 here); 0: 4 KiB
 * pages again, and khugepaged leaves the region alone, so memory the
 * states free (mimalloc's MADV_DONTNEED of whole 64 KiB spans, which
 * splits a huge page) stays given back. Costs a madvise when it changes
 * (the address space's lock for writing). Thread-safe; the last call
 * wins. */
void msrt_mem_state_bulk(int on);

/* A state this thread made, or part of one, was freed (on any thread):
 * now and then (every 64th call on a thread) the thread's states' heap
 * gives back what other threads freed of it and the pages that left
 * empty. mimalloc returns a page freed by another thread only when its
 * owner next allocates there, and the thread that makes states (the hub)
 * may never make another: without this a fleet that shrinks kept the
 * states' pages. A few us per MiB the heap holds; any thread. */
void msrt_mem_state_freed(void);

/* The calling thread's states' heap gives back at once all that was freed
 * of it (a forced collect: what is empty is decommitted now, not after
 * mimalloc's delay). Costs a walk of every page the heap holds and a
 * madvise per span: for when a fleet has ended (lua/msrt/actors.lua, the
 * hub's last actor gone). Any thread. */
void msrt_mem_state_collect(void);

/* "mimalloc" or "libc": which allocator this build uses (for benchmarks). */
const char *msrt_mem_name(void);

#endif
