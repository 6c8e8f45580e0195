// Functions IREE's runtime calls that the oldest Bela image's glibc (2.24, Debian Stretch) lacks.
// bela-iree links this into every program and library it builds for a board, so they load there;
// on a newer glibc the program's own definition is used instead of libc's, with the same effect.
#include <string.h>

// glibc 2.25. A memset the compiler may not remove: the barrier says the memory is still read.
void explicit_bzero(void* pointer, size_t size)
{
	memset(pointer, 0, size);
	__asm__ __volatile__("" : : "r"(pointer) : "memory");
}
