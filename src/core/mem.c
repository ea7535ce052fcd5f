#include "core/mem.h"

#ifdef MSRT_MIMALLOC
#include <mimalloc.h>

void *msrt_mem_alloc(size_t n) { return mi_malloc(n); }
void *msrt_mem_realloc(void *p, size_t n) { return mi_realloc(p, n); }
void msrt_mem_free(void *p) { mi_free(p); }
const char *msrt_mem_name(void) { return "mimalloc"; }
#else
#include <stdlib.h>

void *msrt_mem_alloc(size_t n) { return malloc(n); }
void *msrt_mem_realloc(void *p, size_t n) { return realloc(p, n); }
void msrt_mem_free(void *p) { free(p); }
const char *msrt_mem_name(void) { return "libc"; }
#endif
