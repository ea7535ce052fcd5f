/* core/logsink: a log line never blocks its caller, whatever the reader
 * of the descriptor does; what does not fit is dropped, counted and told. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/logsink.h"
#include "ctest.h"

/* Everything readable from fd now (O_NONBLOCK), NUL-terminated. */
static char *drain(int fd) {
  size_t cap = 1 << 20, n = 0;
  char *buf = malloc(cap + 1);
  ssize_t r;
  fcntl(fd, F_SETFL, O_NONBLOCK);
  while (n < cap && (r = read(fd, buf + n, cap - n)) > 0) n += (size_t)r;
  buf[n] = 0;
  return buf;
}

static void lines_arrive_in_order(void) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  msrt_error err;
  msrt_logsink *s = msrt_logsink_new(fds[1], 4096, &err);
  CHECK(s != NULL);
  CHECK(msrt_logsink_write(s, "one", 3) == 1);
  CHECK(msrt_logsink_write(s, "two\n", 4) == 1);
  CHECK(msrt_logsink_flush(s, 2000) == 0);
  char *got = drain(fds[0]);
  CHECK_STR(got, "one\ntwo\n");
  free(got);
  CHECK(msrt_logsink_free(s, 2000) == 0);
  close(fds[0]);
  close(fds[1]);
}

/* Nobody reads the pipe, already full: 100,000 lines of 100 bytes return
 * at once, most dropped; once the reader drains, the count is told. */
static void a_stalled_reader_never_blocks_the_writer(void) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  fcntl(fds[1], F_SETFL, O_NONBLOCK);
  while (write(fds[1], "f", 1) == 1) {
  }
  fcntl(fds[1], F_SETFL, 0);
  msrt_error err;
  msrt_logsink *s = msrt_logsink_new(fds[1], 8192, &err);
  char line[100];
  memset(line, 'x', sizeof line);
  int queued = 0;
  for (int i = 0; i < 100000; i++) queued += msrt_logsink_write(s, line, sizeof line);
  CHECK(queued < 100000);
  CHECK(msrt_logsink_dropped(s) == (uint64_t)(100000 - queued));
  CHECK(msrt_logsink_flush(s, 100) == MSRT_E_TIMEOUT); /* writer stuck */
  /* the reader comes back: the rest goes out */
  for (int i = 0; i < 100 && msrt_logsink_flush(s, 20) != 0; i++) free(drain(fds[0]));
  free(drain(fds[0]));
  CHECK(msrt_logsink_write(s, "after", 5) == 1);
  CHECK(msrt_logsink_flush(s, 2000) == 0);
  char *got = drain(fds[0]);
  CHECK(strstr(got, " log lines dropped: stderr is not keeping up\n") != NULL);
  CHECK(strstr(got, "after\n") != NULL);
  free(got);
  CHECK(msrt_logsink_free(s, 2000) == 0);
  close(fds[0]);
  close(fds[1]);
}

TEST_MAIN(lines_arrive_in_order, a_stalled_reader_never_blocks_the_writer)
