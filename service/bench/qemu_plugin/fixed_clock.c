/* Preloaded into the emulated IREE tools while their work is counted: every clock reads a
 * counter that advances 1 us per call, and the load average is zero, so the tool's own output
 * (timings, dates, load) is the same text on every run and costs the same instructions.
 * Each clock read also makes the system call MARKER (no Linux has it: it fails with ENOSYS),
 * which the counting plugin (insn_count.c) sees: IREE reads the clock a fixed number of times
 * per call, so the reads mark where calls begin and end.
 * Before main, the system call MARKER + 1 tells the plugin that every executable mapping from
 * now on is kernel code (the libraries the program needs are mapped by then), and passes the
 * program's load bias (for kernels linked into the program, insn_count.c's `static`). */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MARKER 48666   /* instruction_count.py passes the same number to the plugin */

static long long fake_ns = 1000000000000000000LL;

static long long tick(void) {
    syscall(MARKER);
    return fake_ns += 1000;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    (void)clock;
    long long now = tick();
    ts->tv_sec = (time_t)(now / 1000000000LL);
    ts->tv_nsec = (long)(now % 1000000000LL);
    return 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    long long now = tick();
    if (tv) {
        tv->tv_sec = (time_t)(now / 1000000000LL);
        tv->tv_usec = (suseconds_t)(now % 1000000000LL / 1000);
    }
    return 0;
}

time_t time(time_t *out) {
    time_t now = (time_t)(tick() / 1000000000LL);
    if (out) *out = now;
    return now;
}

int getloadavg(double loadavg[], int n) {
    for (int i = 0; i < n; i++) loadavg[i] = 0.0;
    return n;
}

static int first_object(struct dl_phdr_info *info, size_t size, void *bias) {
    (void)size;
    *(uintptr_t *)bias = (uintptr_t)info->dlpi_addr;
    return 1;   /* the first object is the program itself */
}

__attribute__((constructor)) static void start_tracking(void) {
    uintptr_t bias = 0;
    dl_iterate_phdr(first_object, &bias);
    syscall(MARKER + 1, bias);
}
