/* libcurl loaded on first use (curl_dl.h says why). */
#include "http/curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

msrt_curl_fns msrt_curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char failure[256]; /* empty once loaded and initialised */

/* Each pointer by its libcurl name: dlsym returns void *, which ISO C
 * does not convert to a function pointer; POSIX guarantees the copy. */
#define SYM(field, name) {(void *)&msrt_curl.field, name}

static void load(void) {
  static const struct {
    void *slot;
    const char *name;
  } syms[] = {
      SYM(global_init, "curl_global_init"), SYM(easy_strerror, "curl_easy_strerror"),
      SYM(easy_init, "curl_easy_init"), SYM(easy_setopt, "curl_easy_setopt"),
      SYM(easy_getinfo, "curl_easy_getinfo"), SYM(easy_cleanup, "curl_easy_cleanup"),
      SYM(multi_init, "curl_multi_init"), SYM(multi_setopt, "curl_multi_setopt"),
      SYM(multi_add_handle, "curl_multi_add_handle"),
      SYM(multi_remove_handle, "curl_multi_remove_handle"),
      SYM(multi_socket_action, "curl_multi_socket_action"),
      SYM(multi_assign, "curl_multi_assign"), SYM(multi_info_read, "curl_multi_info_read"),
      SYM(multi_cleanup, "curl_multi_cleanup"), SYM(slist_append, "curl_slist_append"),
      SYM(slist_free_all, "curl_slist_free_all"),
  };
  /* never closed: libcurl keeps global state for the process's life */
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(failure, sizeof failure, "%s", dlerror());
    return;
  }
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *fn = dlsym(lib, syms[i].name);
    if (!fn) {
      snprintf(failure, sizeof failure, "%s", dlerror());
      return;
    }
    memcpy(syms[i].slot, &fn, sizeof fn);
  }
  CURLcode rc = msrt_curl.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK)
    snprintf(failure, sizeof failure, "curl_global_init: %s", msrt_curl.easy_strerror(rc));
}

msrt_code msrt_curl_load(msrt_error *err) {
  pthread_once(&once, load);
  if (!failure[0]) return MSRT_E_OK;
  msrt_error_set(err, MSRT_E_INTERNAL, "libcurl: %s", failure);
  return MSRT_E_INTERNAL;
}
