// run_model: load a .vmfb with bela_iree/model.h, run it, print outputs, counters and how many
// heap allocations one steady-state run makes.
//
//   run_model [--value V] [--output-count N] [--function NAME] MODEL.vmfb RUNS DIM0 [DIM1 ...]
//
// One float32 input of shape DIM0xDIM1..., every element V (default 0.5); the output has N
// floats (default: as many as the input). Compare with
//   iree-run-module --module=MODEL.vmfb --device=local-sync --function=main --input=1x1024xf32=0.5
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bela_iree/model.h"

// Built with -Wl,--wrap=malloc etc. (see the Makefile): every allocation made by this program's
// static libraries (IREE, libbela_iree) passes here and is counted.
static uint64_t allocations;
void* __real_malloc(size_t size);
void* __real_calloc(size_t count, size_t size);
void* __real_realloc(void* pointer, size_t size);
void* __real_aligned_alloc(size_t alignment, size_t size);
int __real_posix_memalign(void** out, size_t alignment, size_t size);
void* __wrap_malloc(size_t size) { ++allocations; return __real_malloc(size); }
void* __wrap_calloc(size_t count, size_t size) { ++allocations; return __real_calloc(count, size); }
void* __wrap_realloc(void* pointer, size_t size) { ++allocations; return __real_realloc(pointer, size); }
void* __wrap_aligned_alloc(size_t alignment, size_t size) { ++allocations; return __real_aligned_alloc(alignment, size); }
int __wrap_posix_memalign(void** out, size_t alignment, size_t size) {
	++allocations;
	return __real_posix_memalign(out, alignment, size);
}

static int usage(const char* program) {
	fprintf(stderr, "usage: %s [--value V] [--output-count N] [--function NAME] MODEL.vmfb RUNS DIM0 [DIM1 ...]\n",
	        program);
	return 2;
}

int main(int argc, char** argv) {
	float value = 0.5f;
	size_t output_count = 0;
	const char* function = NULL;
	int arg = 1;
	for (; arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0; arg += 2) {
		if (strcmp(argv[arg], "--value") == 0)
			value = strtof(argv[arg + 1], NULL);
		else if (strcmp(argv[arg], "--output-count") == 0)
			output_count = strtoull(argv[arg + 1], NULL, 10);
		else if (strcmp(argv[arg], "--function") == 0)
			function = argv[arg + 1];
		else
			return usage(argv[0]);
	}
	if (argc - arg < 3 || argc - arg - 2 > BELA_IREE_MAX_RANK)
		return usage(argv[0]);
	bela_iree_model_options_t options = {0};
	options.vmfb_path = argv[arg];
	options.function = function;
	int runs = atoi(argv[arg + 1]);
	options.input_count = 1;
	options.input_ranks[0] = argc - arg - 2;
	size_t count = 1;
	for (int d = 0; d < options.input_ranks[0]; ++d) {
		options.input_shapes[0][d] = atoll(argv[arg + 2 + d]);
		count *= (size_t)options.input_shapes[0][d];
	}
	options.output_element_count = output_count ? output_count : count;

	char error[512];
	bela_iree_model_t* model = bela_iree_model_load(&options, error, sizeof(error));
	if (!model) {
		fprintf(stderr, "load failed: %s\n", error);
		return 1;
	}
	float* input = bela_iree_model_input(model, 0);
	for (size_t i = 0; i < count; ++i)
		input[i] = value;
	uint64_t first_run_allocations = 0, steady_allocations = 0;
	for (int r = 0; r < runs; ++r) {
		uint64_t before = allocations;
		if (bela_iree_model_run(model) != 0) {
			fprintf(stderr, "run %d failed: %s\n", r, bela_iree_model_last_error(model));
			bela_iree_model_free(model);
			return 1;
		}
		if (r == 0)
			first_run_allocations = allocations - before;
		else
			steady_allocations += allocations - before;
	}
	const float* output = bela_iree_model_output(model);
	size_t shown = bela_iree_model_output_count(model) < 8 ? bela_iree_model_output_count(model) : 8;
	printf("output[0..%zu] =", shown);
	for (size_t i = 0; i < shown; ++i)
		printf(" %g", output[i]);
	printf("\n");
	bela_iree_counters_t c = bela_iree_model_counters(model);
	printf("runs %llu failures %llu last %.1f us max %.1f us mean %.1f us\n", (unsigned long long)c.runs,
	       (unsigned long long)c.failures, c.last_us, c.max_us, c.mean_us);
	printf("heap allocations: first run %llu, later runs %.1f per run\n", (unsigned long long)first_run_allocations,
	       runs > 1 ? (double)steady_allocations / (runs - 1) : 0.0);
	bela_iree_model_free(model);
	return 0;
}
