/* rt_guard: real-time safety checked by running, for the tests (what LLVM's RealtimeSanitizer
 * does, for a GCC toolchain that lacks it).
 *
 * A Bela project's render() must never allocate, free, lock a mutex, sleep, make a blocking
 * system call or print with stdio. This small LD_PRELOAD library interposes those functions.
 * A program (here tests/bela_standin) calls rt_guard_enter() before render() and rt_guard_leave()
 * after it; they set and clear a thread-local "in real-time context" flag. A guarded function
 * called while the calling thread's flag is set writes one line to stderr, e.g.
 *
 *     rt_guard: malloc called inside render()
 *
 * and ends the process with _exit(86) (RT_GUARD_EXIT). Any other call, and any call from another
 * thread (an auxiliary task, say), goes on to the real function. Programs find the two functions
 * with dlsym(RTLD_DEFAULT, "rt_guard_enter"): without the library preloaded they get NULL.
 *
 * Build and use (natively, then for Bela's armhf under qemu-user):
 *
 *     cc -shared -fPIC -O2 -o librt_guard.so rt_guard.c -ldl
 *     LD_PRELOAD=$PWD/librt_guard.so ./program args
 *
 *     arm-linux-gnueabihf-gcc -shared -fPIC -O2 -o librt_guard.so rt_guard.c -ldl
 *     qemu-arm -cpu cortex-a8 -L /usr/arm-linux-gnueabihf -E LD_PRELOAD=$PWD/librt_guard.so ./program args
 *
 * (qemu-arm's -E, or QEMU_SET_ENV=LD_PRELOAD=..., sets the variable for the guest's dynamic
 * loader only; LD_PRELOAD in qemu's own environment would be read by the host's loader instead.)
 *
 * Two more checks, each turned on by an environment variable (for the guest, through qemu's -E):
 *
 *   RT_GUARD_PAGE_FAULTS=1   count the minor and major page faults of the calling thread
 *                            (getrusage(RUSAGE_THREAD)) across each render(): a first touch of a
 *                            page inside render() is a violation ("rt_guard: page fault called
 *                            inside render()"). Under qemu-user these are the emulator's faults
 *                            while it runs the guest thread, which include the guest's own.
 *   RT_GUARD_FIRST_TOUCH=1   the same for the program's own memory only, and so also under an
 *                            emulator (whose faults, such as translating code it meets for the
 *                            first time, the count above includes): before each render() every
 *                            writable anonymous mapping (/proc/self/maps: heap, stacks, bss,
 *                            malloc's) is asked which of its pages are resident (mincore), and
 *                            after it again; a page that became
 *                            resident was first touched inside render() ("rt_guard: first touch
 *                            of a page called inside render()").
 *   RT_GUARD_MARKERS=1       make a getppid() system call just before render() starts and just
 *                            after it ends, so that a system call trace (qemu-arm -strace, which
 *                            shows the guest's raw system calls, those libc makes inside its own
 *                            functions included) can be cut into render() and the rest.
 *
 * The allocator is forwarded to glibc's __libc_malloc & co., so that nothing here needs dlsym()
 * (which may itself allocate) to allocate. Everything else is looked up with dlsym(RTLD_NEXT)
 * the first time it is called outside the guard. free(NULL) and delete of a null pointer do
 * nothing, so they are allowed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RT_GUARD_EXIT 86
#define EXPORT __attribute__((visibility("default")))

/* initial-exec: the library is loaded at startup, and reading the flag must never allocate */
static __thread int in_realtime __attribute__((tls_model("initial-exec")));

static void violation(const char* function);

/* A system call that does not go through this file's syscall(): glibc's, found once. */
static void raw_write(const char* text)
{
	static long (*real_syscall)(long, ...);
	if(!real_syscall)
		real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if(real_syscall)
		real_syscall(SYS_write, 2, text, strlen(text));
}

static int count_faults, mark, first_touch;
static __thread long faults_before __attribute__((tls_model("initial-exec")));

__attribute__((constructor)) static void rt_guard_options(void)
{
	const char* faults = getenv("RT_GUARD_PAGE_FAULTS");
	const char* markers = getenv("RT_GUARD_MARKERS");
	count_faults = faults && *faults == '1';
	const char* touch = getenv("RT_GUARD_FIRST_TOUCH");
	first_touch = touch && *touch == '1';
	mark = markers && *markers == '1';
}

static long thread_faults(void)
{
	struct rusage usage;
	return getrusage(RUSAGE_THREAD, &usage) == 0 ? usage.ru_minflt + usage.ru_majflt : 0;
}

/* ---- first touches: residency of the writable anonymous mappings, before and after ---- */

#define MAX_REGIONS 1024
#define MAX_PAGES (1 << 20)   /* 4 GiB of 4 KiB pages */
static struct { unsigned long start, end; } regions[MAX_REGIONS];
static int region_count;
static unsigned char resident_before[MAX_PAGES], resident_after[MAX_PAGES];

/* Reads the writable anonymous mappings (no allocation: a fixed buffer, parsed by hand). */
EXPORT int open(const char* path, int flags, mode_t mode);

static char maps[1 << 18];

static void read_regions(void)
{
	region_count = 0;
	int fd = open("/proc/self/maps", 0 /* O_RDONLY: <fcntl.h> would clash with open() below */, 0);
	if(fd < 0)
		return;
	size_t size = 0;
	for(ssize_t got; size < sizeof(maps) - 1 && (got = read(fd, maps + size, sizeof(maps) - 1 - size)) > 0;)
		size += got;
	close(fd);
	maps[size] = '\0';
	for(char* line = maps; *line && region_count < MAX_REGIONS;) {
		char* end = strchr(line, '\n');
		unsigned long start = strtoul(line, &line, 16), stop = strtoul(line + 1, &line, 16);
		int writable_private = line[1] == 'r' && line[2] == 'w' && line[4] == 'p';
		char* field = line + 5;   /* offset, device, inode: anonymous memory has inode 0 */
		strtoul(field, &field, 16);
		while(*field == ' ')
			++field;
		while(*field && *field != ' ')
			++field;
		unsigned long inode = strtoul(field, &field, 10);
		/* File-backed pages count as resident when the file is in the page cache (read-ahead
		 * may finish at any time): only anonymous memory says when this program touched it. */
		if(writable_private && inode == 0) {
			regions[region_count].start = start;
			regions[region_count].end = stop;
			++region_count;
		}
		if(!end)
			break;
		line = end + 1;
	}
}

static void residency(unsigned char* vector)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), used = 0;
	for(int r = 0; r < region_count; ++r) {
		size_t pages = (regions[r].end - regions[r].start) / page;
		if(used + pages > MAX_PAGES)
			break;
		if(mincore((void*)regions[r].start, regions[r].end - regions[r].start, vector + used) != 0)
			memset(vector + used, 1, pages);   /* a mapping that went away: count nothing in it */
		used += pages;
	}
}

static void check_first_touches(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), used = 0;
	residency(resident_after);
	for(int r = 0; r < region_count; ++r) {
		size_t pages = (regions[r].end - regions[r].start) / page;
		if(used + pages > MAX_PAGES)
			break;
		for(size_t i = 0; i < pages; ++i)
			if((resident_after[used + i] & 1) && !(resident_before[used + i] & 1)) {
				char where[96];   /* which page, for whoever has to find out why */
				snprintf(where, sizeof(where), "rt_guard: page %#lx of mapping %#lx-%#lx\n",
					regions[r].start + i * page, regions[r].start, regions[r].end);
				raw_write(where);
				violation("first touch of a page");
			}
		used += pages;
	}
}

/* This file's own buffers are touched once, up front: they must not count as render()'s. */
__attribute__((constructor)) static void rt_guard_touch_buffers(void)
{
	const char* touch = getenv("RT_GUARD_FIRST_TOUCH");
	if(touch && *touch == '1') {
		memset(resident_before, 1, sizeof(resident_before));
		memset(resident_after, 1, sizeof(resident_after));
		memset(maps, 1, sizeof(maps));
	}
}

EXPORT void rt_guard_enter(void)
{
	if(first_touch) {
		read_regions();
		residency(resident_before);
	}
	if(count_faults)
		faults_before = thread_faults();
	if(mark)
		syscall(SYS_getppid);
	in_realtime = 1;
}

EXPORT void rt_guard_leave(void)
{
	in_realtime = 0;
	if(mark)
		syscall(SYS_getppid);
	if(count_faults && thread_faults() != faults_before)
		violation("page fault");
	if(first_touch)
		check_first_touches();
}

/* One line to stderr with the raw system call (write() is interposed here), then out. */
static void violation(const char* function)
{
	char line[160] = "rt_guard: ";
	in_realtime = 0;
	strncat(line, function, sizeof(line) - 40);
	strcat(line, " called inside render()\n");
	raw_write(line);
	_exit(RT_GUARD_EXIT);
}

#define GUARD(name) do { if(in_realtime) violation(name); } while(0)

/* The next definition of a symbol, looked up once (outside the guard: GUARD comes first). */
static void* next(void** cache, const char* name, const char* version)
{
	void* function = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
	if(function)
		return function;
	if(version)
		function = dlvsym(RTLD_NEXT, name, version);
	if(!function)
		function = dlsym(RTLD_NEXT, name);
	if(!function) {
		raw_write("rt_guard: cannot find the real function\n");
		_exit(RT_GUARD_EXIT);
	}
	__atomic_store_n(cache, function, __ATOMIC_RELEASE);
	return function;
}

/* REAL(type, "name") is the real function, of function pointer type `type`. */
#define REAL_VERSION(type, name, version) ({ static void* cache; (type)next(&cache, name, version); })
#define REAL(type, name) REAL_VERSION(type, name, NULL)

/* ---- the allocator ---- */

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);
extern void* __libc_memalign(size_t, size_t);

EXPORT void* malloc(size_t size) { GUARD("malloc"); return __libc_malloc(size); }
EXPORT void* calloc(size_t count, size_t size) { GUARD("calloc"); return __libc_calloc(count, size); }
EXPORT void* realloc(void* pointer, size_t size) { GUARD("realloc"); return __libc_realloc(pointer, size); }
EXPORT void free(void* pointer) { if(pointer) GUARD("free"); __libc_free(pointer); }
EXPORT void* memalign(size_t alignment, size_t size) { GUARD("memalign"); return __libc_memalign(alignment, size); }
EXPORT void* aligned_alloc(size_t alignment, size_t size) { GUARD("aligned_alloc"); return __libc_memalign(alignment, size); }

EXPORT int posix_memalign(void** result, size_t alignment, size_t size)
{
	GUARD("posix_memalign");
	return REAL(int (*)(void**, size_t, size_t), "posix_memalign")(result, alignment, size);
}

/* ---- C++ operator new and delete (Itanium C++ ABI names; size_t is 'm' on 64-bit, 'j' on armhf).
 * std::align_val_t is passed as a size_t. They forward to libstdc++'s, which throw on failure. */

#if __SIZEOF_SIZE_T__ == 8
#define CXX_NAME(before, after) before##m##after
#else
#define CXX_NAME(before, after) before##j##after
#endif
#define STRING(x) #x
#define CXX_STRING(before, after) CXX_STRING_(CXX_NAME(before, after))
#define CXX_STRING_(name) STRING(name)

#define NEW(before, after, what, parameters, arguments) \
	EXPORT void* CXX_NAME(before, after) parameters \
	{ \
		GUARD(what); \
		return REAL(void* (*) parameters, CXX_STRING(before, after)) arguments; \
	}
NEW(_Znw, , "operator new", (size_t size), (size))
NEW(_Zna, , "operator new[]", (size_t size), (size))
NEW(_Znw, RKSt9nothrow_t, "operator new", (size_t size, const void* tag), (size, tag))
NEW(_Zna, RKSt9nothrow_t, "operator new[]", (size_t size, const void* tag), (size, tag))
NEW(_Znw, St11align_val_t, "operator new", (size_t size, size_t alignment), (size, alignment))
NEW(_Zna, St11align_val_t, "operator new[]", (size_t size, size_t alignment), (size, alignment))
NEW(_Znw, St11align_val_tRKSt9nothrow_t, "operator new", (size_t size, size_t alignment, const void* tag),
	(size, alignment, tag))
NEW(_Zna, St11align_val_tRKSt9nothrow_t, "operator new[]", (size_t size, size_t alignment, const void* tag),
	(size, alignment, tag))

#define DELETE(name, what, parameters, arguments) \
	EXPORT void name parameters \
	{ \
		if(pointer) \
			GUARD(what); \
		REAL(void (*) parameters, #name) arguments; \
	}
#define SIZED_DELETE(before, after, what, parameters, arguments) \
	EXPORT void CXX_NAME(before, after) parameters \
	{ \
		if(pointer) \
			GUARD(what); \
		REAL(void (*) parameters, CXX_STRING(before, after)) arguments; \
	}
DELETE(_ZdlPv, "operator delete", (void* pointer), (pointer))
DELETE(_ZdaPv, "operator delete[]", (void* pointer), (pointer))
DELETE(_ZdlPvSt11align_val_t, "operator delete", (void* pointer, size_t alignment), (pointer, alignment))
DELETE(_ZdaPvSt11align_val_t, "operator delete[]", (void* pointer, size_t alignment), (pointer, alignment))
SIZED_DELETE(_ZdlPv, , "operator delete", (void* pointer, size_t size), (pointer, size))
SIZED_DELETE(_ZdaPv, , "operator delete[]", (void* pointer, size_t size), (pointer, size))
SIZED_DELETE(_ZdlPv, St11align_val_t, "operator delete", (void* pointer, size_t size, size_t alignment),
	(pointer, size, alignment))
SIZED_DELETE(_ZdaPv, St11align_val_t, "operator delete[]", (void* pointer, size_t size, size_t alignment),
	(pointer, size, alignment))

/* ---- locks, waits and sleeps ---- */

#define FORWARD(result, name, parameters, arguments) \
	EXPORT result name parameters \
	{ \
		GUARD(#name); \
		return REAL(result (*) parameters, #name) arguments; \
	}

FORWARD(int, pthread_mutex_lock, (pthread_mutex_t* mutex), (mutex))
FORWARD(int, sem_wait, (sem_t* semaphore), (semaphore))
FORWARD(int, sem_timedwait, (sem_t* semaphore, const struct timespec* deadline), (semaphore, deadline))
FORWARD(int, usleep, (useconds_t microseconds), (microseconds))
FORWARD(unsigned int, sleep, (unsigned int seconds), (seconds))
FORWARD(int, nanosleep, (const struct timespec* duration, struct timespec* left), (duration, left))
FORWARD(int, clock_nanosleep, (clockid_t clock, int flags, const struct timespec* duration, struct timespec* left),
	(clock, flags, duration, left))

/* glibc keeps an old pthread_cond_* ABI beside the current one on x86-64 (GLIBC_2.3.2 is the
 * current); dlsym() without a version may give the old one. armhf has only one, found by dlsym. */
EXPORT int pthread_cond_wait(pthread_cond_t* condition, pthread_mutex_t* mutex)
{
	GUARD("pthread_cond_wait");
	return REAL_VERSION(int (*)(pthread_cond_t*, pthread_mutex_t*), "pthread_cond_wait", "GLIBC_2.3.2")(
		condition, mutex);
}

EXPORT int pthread_cond_timedwait(pthread_cond_t* condition, pthread_mutex_t* mutex, const struct timespec* deadline)
{
	GUARD("pthread_cond_timedwait");
	return REAL_VERSION(int (*)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*), "pthread_cond_timedwait",
		"GLIBC_2.3.2")(condition, mutex, deadline);
}

/* ---- blocking input and output ---- */

FORWARD(ssize_t, read, (int fd, void* buffer, size_t size), (fd, buffer, size))
FORWARD(ssize_t, write, (int fd, const void* buffer, size_t size), (fd, buffer, size))
FORWARD(int, poll, (struct pollfd* fds, nfds_t count, int timeout), (fds, count, timeout))
FORWARD(int, select, (int count, fd_set* in, fd_set* out, fd_set* except, struct timeval* timeout),
	(count, in, out, except, timeout))
FORWARD(FILE*, fopen, (const char* path, const char* mode), (path, mode))
FORWARD(size_t, fread, (void* buffer, size_t size, size_t count, FILE* stream), (buffer, size, count, stream))
FORWARD(size_t, fwrite, (const void* buffer, size_t size, size_t count, FILE* stream), (buffer, size, count, stream))

/* ---- stdio printing (GCC turns some printf calls into puts, putchar or fwrite; with
 * _FORTIFY_SOURCE they become the __*_chk functions) ---- */

FORWARD(int, vprintf, (const char* format, va_list args), (format, args))
FORWARD(int, vfprintf, (FILE* stream, const char* format, va_list args), (stream, format, args))
FORWARD(int, __vprintf_chk, (int flag, const char* format, va_list args), (flag, format, args))
FORWARD(int, __vfprintf_chk, (FILE* stream, int flag, const char* format, va_list args), (stream, flag, format, args))
FORWARD(int, puts, (const char* text), (text))
FORWARD(int, fputs, (const char* text, FILE* stream), (text, stream))
FORWARD(int, putchar, (int character), (character))
FORWARD(int, fputc, (int character, FILE* stream), (character, stream))

EXPORT int printf(const char* format, ...)
{
	GUARD("printf");
	va_list args;
	va_start(args, format);
	int written = vprintf(format, args);
	va_end(args);
	return written;
}

EXPORT int fprintf(FILE* stream, const char* format, ...)
{
	GUARD("fprintf");
	va_list args;
	va_start(args, format);
	int written = vfprintf(stream, format, args);
	va_end(args);
	return written;
}

EXPORT int __printf_chk(int flag, const char* format, ...)
{
	GUARD("printf");
	va_list args;
	va_start(args, format);
	int written = __vprintf_chk(flag, format, args);
	va_end(args);
	return written;
}

EXPORT int __fprintf_chk(FILE* stream, int flag, const char* format, ...)
{
	GUARD("fprintf");
	va_list args;
	va_start(args, format);
	int written = __vfprintf_chk(stream, flag, format, args);
	va_end(args);
	return written;
}

/* ---- system calls made through libc's wrappers (a raw one inside libc shows in qemu -strace:
 * see RT_GUARD_MARKERS): on a Bela, a Linux system call from the audio thread switches it out of
 * Xenomai's real-time mode. Reading the clock is one on the BeagleBone's Cortex-A8 (its kernel's
 * vDSO has no timer to read) and under qemu-user. ---- */

EXPORT long syscall(long number, ...)
{
	GUARD("syscall");
	va_list args;
	va_start(args, number);
	long a = va_arg(args, long), b = va_arg(args, long), c = va_arg(args, long);
	long d = va_arg(args, long), e = va_arg(args, long), f = va_arg(args, long);
	va_end(args);
	return REAL(long (*)(long, ...), "syscall")(number, a, b, c, d, e, f);
}

FORWARD(int, clock_gettime, (clockid_t clock, struct timespec* now), (clock, now))
FORWARD(int, gettimeofday, (struct timeval* now, void* zone), (now, zone))
FORWARD(time_t, time, (time_t* now), (now))
FORWARD(void*, mmap, (void* address, size_t length, int protection, int flags, int fd, off_t offset),
	(address, length, protection, flags, fd, offset))
FORWARD(int, munmap, (void* address, size_t length), (address, length))
FORWARD(int, mprotect, (void* address, size_t length, int protection), (address, length, protection))
FORWARD(int, madvise, (void* address, size_t length, int advice), (address, length, advice))
FORWARD(int, open, (const char* path, int flags, mode_t mode), (path, flags, mode))
FORWARD(int, openat, (int directory, const char* path, int flags, mode_t mode), (directory, path, flags, mode))
FORWARD(int, close, (int fd), (fd))
FORWARD(int, sched_yield, (void), ())
FORWARD(int, sched_getcpu, (void), ())
FORWARD(int, pthread_mutex_trylock, (pthread_mutex_t* mutex), (mutex))
FORWARD(int, pthread_rwlock_rdlock, (pthread_rwlock_t* lock), (lock))
FORWARD(int, pthread_rwlock_wrlock, (pthread_rwlock_t* lock), (lock))
FORWARD(int, pthread_spin_lock, (pthread_spinlock_t* lock), (lock))
