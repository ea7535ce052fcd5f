/* libcurl, loaded when the first HTTP client is made rather than linked:
 * its dependencies (TLS, Kerberos, LDAP, SSH, HTTP/2: 26 libraries on
 * Debian 12) cost every msrt-lua start ~15-25 ms in the dynamic loader,
 * including the many that never make an HTTP request, and a start that
 * slow leaves a SIGINT sent early with its default action (README
 * "msrt-lua"). client.c calls libcurl by libcurl's own names; the macros
 * below route those names through the pointers msrt_curl_load fills.
 *
 * Private to src/http. Thread-safety: msrt_curl_load may be called from
 * any thread (pthread_once); the pointers are read-only once loaded. */
#ifndef MSRT_HTTP_CURL_DL_H
#define MSRT_HTTP_CURL_DL_H

#define CURL_DISABLE_TYPECHECK /* the typecheck macros wrap the names below */
#include <curl/curl.h>

#include "core/error.h"

typedef struct msrt_curl_fns {
  CURLcode (*global_init)(long flags);
  const char *(*easy_strerror)(CURLcode code);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
  CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
  void (*easy_cleanup)(CURL *e);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
  CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
  CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
  CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t fd, int ev, int *running);
  CURLMcode (*multi_assign)(CURLM *m, curl_socket_t fd, void *p);
  CURLMsg *(*multi_info_read)(CURLM *m, int *left);
  CURLMcode (*multi_cleanup)(CURLM *m);
  struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
  void (*slist_free_all)(struct curl_slist *l);
} msrt_curl_fns;

extern msrt_curl_fns msrt_curl;

/* Load libcurl.so.4 and curl_global_init it, once per process. Returns
 * MSRT_E_OK, or MSRT_E_INTERNAL with err naming what failed (the library
 * or a symbol not found: dlerror's words; curl_global_init's error). */
msrt_code msrt_curl_load(msrt_error *err);

#define curl_global_init msrt_curl.global_init
#define curl_easy_strerror msrt_curl.easy_strerror
#define curl_easy_init msrt_curl.easy_init
#undef curl_easy_setopt /* curl.h's pass-through macro */
#define curl_easy_setopt msrt_curl.easy_setopt
#undef curl_easy_getinfo /* curl.h's pass-through macro */
#define curl_easy_getinfo msrt_curl.easy_getinfo
#define curl_easy_cleanup msrt_curl.easy_cleanup
#define curl_multi_init msrt_curl.multi_init
#undef curl_multi_setopt /* curl.h's pass-through macro */
#define curl_multi_setopt msrt_curl.multi_setopt
#define curl_multi_add_handle msrt_curl.multi_add_handle
#define curl_multi_remove_handle msrt_curl.multi_remove_handle
#define curl_multi_socket_action msrt_curl.multi_socket_action
#define curl_multi_assign msrt_curl.multi_assign
#define curl_multi_info_read msrt_curl.multi_info_read
#define curl_multi_cleanup msrt_curl.multi_cleanup
#define curl_slist_append msrt_curl.slist_append
#define curl_slist_free_all msrt_curl.slist_free_all

#endif
