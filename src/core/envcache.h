/* The envelopes' allocator: a cache per thread in front of core/mem.h
 * (internal to src/core; core/envelope.c is its only user).
 *
 * A message between actors on different CPUs is made on the sender's and
 * freed on the receiver's. mimalloc gives a block freed by another thread
 * back to its owner by one atomic push per block, and the owner collects
 * them by walking the list: one dependent cache miss per block, ~200 ns
 * each way when this VM's two vCPUs are far apart (docs/performance.md,
 * the two levels), then a second miss at the block's first write. Here a
 * block goes back to the thread that made it in batches of ENVCACHE_BATCH
 * with their count and tail (one atomic push per batch, no walk), and
 * the owner takes the next block ahead of need, fetching its lines (a
 * write hint, which GCC's default x86-64 target makes a plain
 * prefetcht0) while the current publish goes on.
 *
 * Blocks of up to 512 bytes are cached (in classes of 64); larger ones go
 * to core/mem.h directly. A thread keeps at most ENVCACHE_KEEP blocks of a
 * class, and about as many on their way home; past that, blocks go back to
 * core/mem.h (so at most ~9 MiB a thread, all classes full, and ~512 KiB
 * for a stream of small messages; past 1,023 threads at once, core/mem.h
 * directly). A thread's cache is
 * tagged with a 16-bit number the envelope carries (msrt_envelope.home),
 * so any thread can send a block home; an exited thread's cache is given
 * to the next thread that needs one (what was on its way home still
 * arrives). Under AddressSanitizer a cached block is poisoned but for its
 * last 32 bytes (the cache's links), so a use after the last unref of the
 * envelope's fields is still reported.
 *
 * Thread-safety: any thread.
 */
#ifndef MSRT_CORE_ENVCACHE_H
#define MSRT_CORE_ENVCACHE_H

#include <stddef.h>
#include <stdint.h>

#define ENVCACHE_BATCH 32
#define ENVCACHE_KEEP 2048

/* A block of at least n bytes; *home gets the tag to free it with (0 when
 * it came from core/mem.h directly). NULL when out of memory. */
void *msrt_envcache_alloc(size_t n, uint16_t *home);

/* Give back p, allocated with the tag home (its size is in the tag). */
void msrt_envcache_free(void *p, uint16_t home);

/* Blocks this thread holds in its cache now, every class (for tests). */
size_t msrt_envcache_held(void);

#endif
