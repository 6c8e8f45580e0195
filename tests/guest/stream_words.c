/* A guest program with a known amount of work, for the instruction-counting plugin's tests:
 * `stream_words WORDS PASSES` loads WORDS 32-bit words in order, PASSES times. Each word costs
 * exactly three instructions (load, count down, branch) and each pass four more. */
#include <stdlib.h>

#define MAX_WORDS (1 << 18)
static unsigned buffer[MAX_WORDS] __attribute__((aligned(64)));

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    unsigned words = (unsigned)strtoul(argv[1], NULL, 10), passes = (unsigned)strtoul(argv[2], NULL, 10);
    if (words == 0 || words > MAX_WORDS || passes == 0) return 2;
#if defined(__arm__)
    __asm__ volatile(
        "1: mov r1, %[base]\n"
        "   mov r3, %[words]\n"
        "2: ldr r2, [r1], #4\n"
        "   subs r3, r3, #1\n"
        "   bne 2b\n"
        "   subs %[passes], %[passes], #1\n"
        "   bne 1b\n"
        : [passes] "+r"(passes) : [base] "r"(buffer), [words] "r"(words) : "r1", "r2", "r3", "cc", "memory");
#elif defined(__aarch64__)
    __asm__ volatile(
        "1: mov x1, %[base]\n"
        "   mov w3, %w[words]\n"
        "2: ldr w2, [x1], #4\n"
        "   subs w3, w3, #1\n"
        "   b.ne 2b\n"
        "   subs %w[passes], %w[passes], #1\n"
        "   b.ne 1b\n"
        : [passes] "+r"(passes) : [base] "r"(buffer), [words] "r"(words) : "x1", "x2", "x3", "cc", "memory");
#else
#error "stream_words is for the boards' cores"
#endif
    return 0;
}
