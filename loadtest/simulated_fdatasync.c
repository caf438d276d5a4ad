// LD_PRELOAD shim for loadtest/bench_compare.sh: fdatasync(2) replaced by a sleep of
// SIMULATED_SYNC_US microseconds that uses neither the disk nor the CPU. A node run with it
// shows what --fsync always could reach if a sync cost only its latency: the bench's floor for
// the pipeline (one sync at a time per log, the disk's flush latency, 64 clients).
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static __thread int slack_set;

int fdatasync(int fd) {
  (void)fd;
  static long us = -1;
  if (us < 0) {
    const char* e = getenv("SIMULATED_SYNC_US");
    us = e != NULL ? atol(e) : 0;
  }
  if (!slack_set) {  // the default 50 us timer slack would lengthen every sleep
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    slack_set = 1;
  }
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) != 0) {
  }
  return 0;
}
