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
 *   static    LO-HI (hex, the program's link-time addresses): code of the kernels linked into
 *             the program itself (EmitC); moved by the program's load bias, which fixed_clock.c
 *             reports (system call MARKER + 1) from its constructor, before main.
 * Counting is deterministic: instructions by a callback per translation block, memory by a
 * callback per access, both on the guest's first thread only.
 *
 * Kernels and the runtime: instructions executed in kernel code are counted apart. Kernel code
 * is every executable mapping the guest makes after fixed_clock.c's constructor (the kernel
 * library a loader maps: dlopen's mmap, the embedded ELF loader's mprotect), plus `static`. A
 * kernel function is entered from outside kernel code (the runtime calls it once per workgroup);
 * what a kernel calls outside kernel code (memcpy, expf) counts for the kernel when it returns to
 * the instruction after the call. Everything else in a call is the runtime's own. Each distinct
 * entry address is one kernel function, with its instructions, its calls (workgroups) and its
 * runs (dispatches): a call starts a new run unless the previous kernel call was to the same
 * function and fewer than RUN_GAP runtime instructions ago (the runtime's loop over a
 * dispatch's workgroups takes tens of instructions a workgroup; getting from one dispatch to the
 * next, through the VM and the HAL, takes hundreds at the least).
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
typedef void (*syscall_ret_cb)(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, int64_t ret);
void qemu_plugin_register_vcpu_syscall_ret_cb(qemu_plugin_id_t id, syscall_ret_cb cb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, exit_cb cb, void *data);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* --- counts -------------------------------------------------------------------------------- */
static uint64_t instructions, loaded, stored, misses, writebacks;
static char out_path[4096];

/* Marks: the counts at each marker system call. Totals of a whole run depend on how often the
 * tool's start-up and teardown wait for its helper threads, which the host's timing decides;
 * the counts between two marks inside the calls do not. */
static int64_t marker = -1;
#define MARK_FIELDS 8   /* instructions loaded stored misses writebacks kernel_instructions kernel_calls kernel_runs */
static uint64_t (*marks)[MARK_FIELDS];
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

/* --- kernels ------------------------------------------------------------------------------ */
#define MAX_REGIONS 64
#define MAX_FUNCTIONS 1024
static struct { uint64_t lo, hi; } regions[MAX_REGIONS];
static size_t n_regions;
static bool tracking;                   /* set by the start system call: later executable maps are kernels */
static uint64_t static_lo, static_hi;   /* the `static` range, before the load bias */
static uint64_t load_bias;
static uint64_t kernel_instructions, kernel_calls, kernel_runs;
static struct function { uint64_t entry, instructions, calls, runs; } functions[MAX_FUNCTIONS];
static size_t n_functions;
static struct function *current, *last_entered;
#define RUN_GAP 400
static uint64_t left_kernel_at;          /* instructions when the last kernel call returned */
static bool in_kernel, awaiting_return;  /* awaiting_return: the last kernel block ended in a call */
static uint64_t return_address, pending; /* pending: instructions outside kernel code since that call */
static int64_t pending_map_prot = -1;
static int64_t mmap_number = -1, mprotect_number = -1;   /* the guest's: set from its architecture */
static struct function_mark { size_t n; struct function *f; } *function_marks;   /* per mark */
static uint64_t pending_map_len;

typedef struct { uint64_t vaddr, end, executed; unsigned n; bool kernel, ends_in_call; } block_t;

/* profile=PATH: every translated block's address and instructions executed, for finding where
 * the runtime's own instructions go (tools, not the estimate). */
static char profile_path[4096];
static block_t **blocks;
static size_t n_blocks, blocks_capacity;

static void add_region(uint64_t lo, uint64_t hi) {
    if (n_regions < MAX_REGIONS && hi > lo) regions[n_regions].lo = lo, regions[n_regions++].hi = hi;
}

static bool in_regions(uint64_t pc) {
    for (size_t i = 0; i < n_regions; i++)
        if (pc >= regions[i].lo && pc < regions[i].hi) return true;
    return false;
}

static struct function *function_at(uint64_t entry) {
    for (size_t i = 0; i < n_functions; i++)
        if (functions[i].entry == entry) return &functions[i];
    if (n_functions == MAX_FUNCTIONS) return &functions[MAX_FUNCTIONS - 1];
    functions[n_functions].entry = entry;
    return &functions[n_functions++];
}

/* A call instruction: bl/blx (ARM), bl/blr (AArch64), as qemu's disassembler spells them. */
static bool is_call(const char *disas) {
    if (!disas || disas[0] != 'b' || disas[1] != 'l') return false;
    const char *rest = disas + 2;
    if (*rest == 'x' || *rest == 'r') rest++;
    return *rest == ' ' || *rest == '\t' || *rest == '\0';
}

static void on_kernel_block(const block_t *b) {
    if (!in_kernel) {
        if (awaiting_return && b->vaddr == return_address) {
            kernel_instructions += pending;       /* a callee of the kernel returned */
            if (current) current->instructions += pending;
        } else {                                  /* the runtime called a kernel function */
            current = function_at(b->vaddr);
            current->calls++, kernel_calls++;
            if (current != last_entered || instructions - b->n - left_kernel_at >= RUN_GAP) current->runs++, kernel_runs++;
            last_entered = current;
        }
        in_kernel = true;
    }
    pending = 0;
    kernel_instructions += b->n;
    current->instructions += b->n;
    awaiting_return = b->ends_in_call;
    return_address = b->end;
}

/* Only the first thread (vcpu 0) is counted: the IREE tools' helper threads wait on futexes,
 * and how often they wake depends on the host's timing, not on the model. */
static void on_block(unsigned int vcpu, void *data) {
    const block_t *b = data;
    if (vcpu != 0) return;
    instructions += b->n;
    ((block_t *)data)->executed += b->n;
    if (b->kernel) {
        on_kernel_block(b);
    } else {
        if (in_kernel) left_kernel_at = instructions - b->n;
        in_kernel = false;
        if (awaiting_return) pending += b->n;
    }
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
    if (vcpu != 0) return;
    if (tracking && (num == mmap_number || num == mprotect_number)) {
        if (!(a3 & 4 /* PROT_EXEC */)) return;
        if (num == mprotect_number) add_region(a1, a1 + a2);
        else pending_map_prot = (int64_t)a3, pending_map_len = a2;
        return;
    }
    if (marker >= 0 && num == marker + 1) {   /* fixed_clock.c's constructor: a1 is the load bias */
        tracking = true;
        load_bias = a1;
        if (static_hi > static_lo) add_region(static_lo + a1, static_hi + a1);
        return;
    }
    if (num != marker) return;
    if (n_marks == marks_capacity) {
        size_t capacity = marks_capacity ? 2 * marks_capacity : 1024;
        void *grown = realloc(marks, capacity * sizeof *marks);
        if (!grown) return;
        marks = grown, marks_capacity = capacity;
        grown = realloc(function_marks, capacity * sizeof *function_marks);
        if (!grown) return;
        function_marks = grown;
    }
    function_marks[n_marks].n = 0, function_marks[n_marks].f = NULL;
    if (n_functions && (function_marks[n_marks].f = malloc(n_functions * sizeof *functions))) {
        memcpy(function_marks[n_marks].f, functions, n_functions * sizeof *functions);
        function_marks[n_marks].n = n_functions;
    }
    if (!in_kernel && awaiting_return) awaiting_return = false, pending = 0;  /* a clock read is the runtime's */
    uint64_t now[MARK_FIELDS] = {instructions, loaded, stored, misses, writebacks, kernel_instructions, kernel_calls,
                                 kernel_runs};
    memcpy(marks[n_marks++], now, sizeof now);
}

static void on_map_return(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, int64_t ret) {
    (void)id;
    if (vcpu != 0 || num != mmap_number || pending_map_prot < 0) return;
    if (ret > 0 || ret < -4096) add_region((uint64_t)ret, (uint64_t)ret + pending_map_len);
    pending_map_prot = -1;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    block_t *b = calloc(1, sizeof *b);   /* lives as long as the translation; few are made */
    if (!b) return;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n = (unsigned)n;
    b->kernel = n_regions && in_regions(b->vaddr);
    if (b->kernel && n) {
        struct qemu_plugin_insn *last = qemu_plugin_tb_get_insn(tb, n - 1);
        b->end = qemu_plugin_insn_vaddr(last) + qemu_plugin_insn_size(last);
        char *disas = qemu_plugin_insn_disas(last);
        b->ends_in_call = is_call(disas);
        free(disas);
    }
    if (profile_path[0]) {
        if (n_blocks == blocks_capacity) {
            size_t capacity = blocks_capacity ? 2 * blocks_capacity : 4096;
            void *grown = realloc(blocks, capacity * sizeof *blocks);
            if (grown) blocks = grown, blocks_capacity = capacity;
        }
        if (n_blocks < blocks_capacity) blocks[n_blocks++] = b;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
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
    fprintf(f, "load_bias %llu\n", (unsigned long long)load_bias);
    fprintf(f, "kernel_instructions %llu\nkernel_calls %llu\nkernel_runs %llu\n",
            (unsigned long long)kernel_instructions, (unsigned long long)kernel_calls, (unsigned long long)kernel_runs);
    for (size_t i = 0; i < n_marks; i++) {
        fprintf(f, "mark %zu", i);
        for (int k = 0; k < MARK_FIELDS; k++) fprintf(f, " %llu", (unsigned long long)marks[i][k]);
        fputc('\n', f);
    }
    for (size_t i = 0; i < n_marks && function_marks; i++)
        for (size_t j = 0; j < function_marks[i].n; j++)
            fprintf(f, "function %zu %llx %llu %llu %llu\n", i, (unsigned long long)function_marks[i].f[j].entry,
                    (unsigned long long)function_marks[i].f[j].instructions,
                    (unsigned long long)function_marks[i].f[j].calls, (unsigned long long)function_marks[i].f[j].runs);
    if (f != stderr) fclose(f);
    FILE *p = profile_path[0] ? fopen(profile_path, "w") : NULL;
    for (size_t i = 0; p && i < n_blocks; i++)
        if (blocks[i]->executed) fprintf(p, "%llx %llu\n", (unsigned long long)blocks[i]->vaddr,
                                         (unsigned long long)blocks[i]->executed);
    if (p) fclose(p);
}

static unsigned log2_exact(unsigned long v) {
    unsigned s = 0;
    while ((1ul << s) < v) s++;
    return (1ul << s) == v ? s : 0;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    if (!strcmp(info->target_name, "arm")) mmap_number = 192, mprotect_number = 125;          /* mmap2 */
    else if (!strcmp(info->target_name, "aarch64")) mmap_number = 222, mprotect_number = 226;
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
        else if (name == 7 && !strncmp(argv[i], "profile", 7)) snprintf(profile_path, sizeof profile_path, "%s", eq + 1);
        else if (name == 6 && !strncmp(argv[i], "static", 6)) {
            char *dash = NULL;
            static_lo = strtoull(eq + 1, &dash, 16);
            static_hi = dash && *dash == '-' ? strtoull(dash + 1, NULL, 16) : 0;
        }
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
    if (marker >= 0) {
        qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
        qemu_plugin_register_vcpu_syscall_ret_cb(id, on_map_return);
    }
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
