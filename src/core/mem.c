#include "core/mem.h"

#ifdef MSRT_MIMALLOC
#include <mimalloc.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

void *msrt_mem_alloc(size_t n) { return mi_malloc(n); }
void *msrt_mem_realloc(void *p, size_t n) { return mi_realloc(p, n); }
void msrt_mem_free(void *p) { mi_free(p); }
const char *msrt_mem_name(void) { return "mimalloc"; }

/* The states' region: address space only (MAP_NORESERVE: no commit charge
 * under the default overcommit; strict overcommit refuses the mapping and
 * the states use the process heap), a mimalloc arena of its own, which
 * only the states' heaps use (exclusive). Its start is aligned well beyond
 * mimalloc's segment size (32 MiB in 2.0), which segment addresses are
 * masked with. 16 GiB is ~400,000 idle actors; past it, the process heap. */
#define REGION_SIZE ((size_t)16 << 30)
#define REGION_ALIGN ((size_t)256 << 20)

static pthread_once_t region_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t bulk_lock = PTHREAD_MUTEX_INITIALIZER;
static char *region;
static int region_huge;
static mi_arena_id_t region_arena;
static __thread mi_heap_t *state_heap;

static void region_init(void) {
  struct rlimit rl; /* a cap: keep the address space for the states */
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) return;
  size_t n = REGION_SIZE + REGION_ALIGN;
  char *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  char *start = (char *)(((uintptr_t)p + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1));
  if (start > p) munmap(p, (size_t)(start - p));
  munmap(start + REGION_SIZE, (size_t)(p + n - (start + REGION_SIZE)));
  /* not committed as far as mimalloc knows, so it may decommit (its
   * MADV_DONTNEED) what it frees; committing is an mprotect to what the
   * region already allows, which changes nothing */
  if (!mi_manage_os_memory_ex(start, REGION_SIZE, false, false, true, -1,
                              true, &region_arena)) {
    munmap(start, REGION_SIZE);
    return;
  }
  region = start;
}

static mi_heap_t *thread_state_heap(void) {
  if (state_heap) return state_heap;
  pthread_once(&region_once, region_init);
  if (region) state_heap = mi_heap_new_in_arena(region_arena);
  if (!state_heap) state_heap = mi_heap_get_default();
  return state_heap;
}

void *msrt_mem_state_alloc(size_t n) {
  void *p = mi_heap_malloc(thread_state_heap(), n);
  return p ? p : mi_malloc(n); /* the region is full */
}

void *msrt_mem_state_realloc(void *p, size_t n) {
  void *q = mi_heap_realloc(thread_state_heap(), p, n);
  return q ? q : mi_realloc(p, n);
}

/* Every COLLECT_EVERY calls on a thread, its heap gives back what other
 * threads freed of it and the pages left empty, which mimalloc decommits
 * (its MADV_DONTNEED) once its decommit delay has passed. It walks every
 * page the heap holds, so not at every call; not forced (a forced collect,
 * which decommits at once, cost a spawn and stop ~160k instructions more
 * against ~13k). */
#define COLLECT_EVERY 64
static __thread unsigned freed_calls;

void msrt_mem_state_freed(void) {
  if (++freed_calls % COLLECT_EVERY || !state_heap) return;
  mi_heap_collect(state_heap, false);
}

void msrt_mem_state_collect(void) {
  if (state_heap) mi_heap_collect(state_heap, true);
}

void msrt_mem_state_bulk(int on) {
  pthread_once(&region_once, region_init);
  if (!region) return;
  pthread_mutex_lock(&bulk_lock);
  if (on != region_huge &&
      madvise(region, REGION_SIZE, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0)
    region_huge = on;
  pthread_mutex_unlock(&bulk_lock);
}
#else
#include <stdlib.h>

void *msrt_mem_alloc(size_t n) { return malloc(n); }
void *msrt_mem_realloc(void *p, size_t n) { return realloc(p, n); }
void msrt_mem_free(void *p) { free(p); }
const char *msrt_mem_name(void) { return "libc"; }
void *msrt_mem_state_alloc(size_t n) { return malloc(n); }
void *msrt_mem_state_realloc(void *p, size_t n) { return realloc(p, n); }
void msrt_mem_state_bulk(int on) { (void)on; }
void msrt_mem_state_freed(void) {}
void msrt_mem_state_collect(void) {}
#endif
