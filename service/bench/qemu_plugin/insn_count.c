/* Counts the guest instructions qemu-user executes, the bytes they load and store, and the
 * traffic a board's last-level cache would send to DRAM, for bela-iree's counted-work estimate
 * (service/bench/instruction_count.py). Written against QEMU's documented TCG plugin API,
 * version 1 (QEMU 7.x; docs/devel/tcg-plugins.rst). Debian does not package qemu-plugin.h, so
 * the few declarations used are written out here from that documentation.
 *
 * Arguments (-plugin libinsn.so,out=PATH[,marker=N,cache_kb=256,ways=8,line=64]):
 *   out       file the counts are written to at exit ("name value" lines)
 *   marker    a system call number no guest uses: each time the first thread makes it, the
 *             counts so far are recorded ("mark i instructions loaded stored misses writebacks"
 *             lines). fixed_clock.c makes it on every clock read, which an IREE tool does a fixed
 *             number of times per call: two marks that many apart enclose exactly one call.
 *   cache_kb  size of the simulated cache (0: no simulation, bytes are still counted)
 *   ways      associativity (LRU), line: line size in bytes
 * Counting is deterministic: instructions by a callback per translation block, memory by a
 * callback per access, both on the guest's first thread only.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the documented plugin API, version 1 ------------------------------------------------ */
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*mem_cb)(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *data);
typedef void (*exit_cb)(qemu_plugin_id_t id, void *data);
typedef void (*exec_cb)(unsigned int vcpu, void *data);
typedef void (*syscall_cb)(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, exec_cb cb, enum qemu_plugin_cb_flags flags,
                                          void *data);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, mem_cb cb, enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *data);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, exit_cb cb, void *data);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* --- counts -------------------------------------------------------------------------------- */
static uint64_t instructions, loaded, stored, misses, writebacks;
static char out_path[4096];

/* Marks: the counts at each marker system call. Totals of a whole run depend on how often the
 * tool's start-up and teardown wait for its helper threads, which the host's timing decides;
 * the counts between two marks inside the calls do not. */
static int64_t marker = -1;
static uint64_t (*marks)[5];
static size_t n_marks, marks_capacity;

/* The cache: sets of `ways` tags kept in LRU order (most recent first); tag 0 = empty. */
static unsigned ways, line_shift, set_bits;
static uint64_t *tags;      /* line number + 1, per way */
static uint8_t *dirty;

static void touch(uint64_t vaddr, bool store) {
    uint64_t line = (vaddr >> line_shift) + 1;
    uint64_t set = (line - 1) & ((1u << set_bits) - 1);
    uint64_t *way = tags + set * ways;
    uint8_t *d = dirty + set * ways;
    unsigned hit = ways;
    for (unsigned i = 0; i < ways; i++) {
        if (way[i] == line) { hit = i; break; }
    }
    uint8_t was_dirty = 0;
    if (hit == ways) {          /* miss: fetch the line, evict the least recent (written back if dirty) */
        misses++;
        if (way[ways - 1] && d[ways - 1]) writebacks++;
        hit = ways - 1;
    } else {
        was_dirty = d[hit];
    }
    memmove(way + 1, way, hit * sizeof *way);
    memmove(d + 1, d, hit);
    way[0] = line;
    d[0] = was_dirty | store;
}

/* Only the first thread (vcpu 0) is counted: the IREE tools' helper threads wait on futexes,
 * and how often they wake depends on the host's timing, not on the model. */
static void on_block(unsigned int vcpu, void *n_insns) {
    if (vcpu == 0) instructions += (uintptr_t)n_insns;
}

static void on_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *data) {
    (void)data;
    if (vcpu != 0) return;
    unsigned size = 1u << qemu_plugin_mem_size_shift(info);
    bool store = qemu_plugin_mem_is_store(info);
    if (store) stored += size; else loaded += size;
    if (tags) {
        touch(vaddr, store);
        if (((vaddr + size - 1) >> line_shift) != (vaddr >> line_shift)) touch(vaddr + size - 1, store);
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    (void)id; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    (void)a1;
    if (vcpu != 0 || num != marker) return;
    if (n_marks == marks_capacity) {
        size_t capacity = marks_capacity ? 2 * marks_capacity : 1024;
        void *grown = realloc(marks, capacity * sizeof *marks);
        if (!grown) return;
        marks = grown, marks_capacity = capacity;
    }
    uint64_t now[5] = {instructions, loaded, stored, misses, writebacks};
    memcpy(marks[n_marks++], now, sizeof now);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    for (size_t i = 0; i < n; i++)
        qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_access, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_RW, NULL);
}

static void write_counts(qemu_plugin_id_t id, void *data) {
    (void)id; (void)data;
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f) return;
    fprintf(f, "instructions %llu\nloaded_bytes %llu\nstored_bytes %llu\n", (unsigned long long)instructions,
            (unsigned long long)loaded, (unsigned long long)stored);
    if (tags)
        fprintf(f, "cache_misses %llu\ncache_writebacks %llu\ncache_line_bytes %u\n", (unsigned long long)misses,
                (unsigned long long)writebacks, 1u << line_shift);
    for (size_t i = 0; i < n_marks; i++)
        fprintf(f, "mark %zu %llu %llu %llu %llu %llu\n", i, (unsigned long long)marks[i][0],
                (unsigned long long)marks[i][1], (unsigned long long)marks[i][2], (unsigned long long)marks[i][3],
                (unsigned long long)marks[i][4]);
    if (f != stderr) fclose(f);
}

static unsigned log2_exact(unsigned long v) {
    unsigned s = 0;
    while ((1ul << s) < v) s++;
    return (1ul << s) == v ? s : 0;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    unsigned long cache_kb = 0, n_ways = 8, line = 64;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq) { fprintf(stderr, "insn_count: argument %s is not name=value\n", argv[i]); return -1; }
        size_t name = (size_t)(eq - argv[i]);
        if (name == 3 && !strncmp(argv[i], "out", 3)) snprintf(out_path, sizeof out_path, "%s", eq + 1);
        else if (name == 8 && !strncmp(argv[i], "cache_kb", 8)) cache_kb = strtoul(eq + 1, NULL, 10);
        else if (name == 4 && !strncmp(argv[i], "ways", 4)) n_ways = strtoul(eq + 1, NULL, 10);
        else if (name == 4 && !strncmp(argv[i], "line", 4)) line = strtoul(eq + 1, NULL, 10);
        else if (name == 6 && !strncmp(argv[i], "marker", 6)) marker = strtoll(eq + 1, NULL, 10);
        else { fprintf(stderr, "insn_count: unknown argument %s\n", argv[i]); return -1; }
    }
    if (cache_kb) {
        line_shift = log2_exact(line);
        unsigned long sets = cache_kb * 1024 / (line * (n_ways ? n_ways : 1));
        set_bits = log2_exact(sets);
        if (!line_shift || !n_ways || !set_bits) {
            fprintf(stderr, "insn_count: cache_kb/ways/line must give a power-of-two number of sets\n");
            return -1;
        }
        ways = (unsigned)n_ways;
        tags = calloc(sets * ways, sizeof *tags);
        dirty = calloc(sets * ways, 1);
        if (!tags || !dirty) return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    if (marker >= 0) qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
