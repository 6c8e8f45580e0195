// run_model: load a model with bela_iree/model.h, run it, print outputs, counters and how many
// heap allocations one steady-state run makes.
//
//   run_model [--value V | --input FILE] [--more-input FILE:D0xD1...]... [--output FILE]
//             [--output-count N | --output-sizes N0,N1...] [--function NAME] [--latencies FILE]
//             [--blocks K] [--reset-at R]
//             MODEL.vmfb RUNS DIM0 [DIM1 ...]
//
// The first float32 input has shape DIM0xDIM1...: every element V (default 0.5), or read from FILE
// (raw little-endian float32); each --more-input adds one more (a model's noise input, say). The output has N floats (default: as many as the input); --output
// writes it to FILE as raw float32; --latencies writes each run's time in microseconds, one per
// line, as bela_iree_model_run measured it (what `bela-iree bench --format emitc` reports).
// --blocks K streams: every input file holds K blocks back to back, run r is fed block r mod K, and
// --output gets every run's output in turn (RUNS outputs): a stateful model's state carries from
// run to run as in render(), which `bench` checks against PyTorch fed the same blocks. --reset-at R
// calls bela_iree_model_reset before run R (a stateful model starts over there). --output-sizes: a
// model with several outputs, each's float count; each run's output is then all of them, joined. Compare with
//   iree-run-module --module=MODEL.vmfb --device=local-sync --function=main --input=1x1024xf32=0.5
//
// Built with -DBELA_IREE_EMITC_QUERY=<kernels.h's query function> (make test-program-emitc), the
// program runs the EmitC module linked into it instead, and MODEL.vmfb is ignored (pass "-").
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bela_iree/model.h"

#if defined(BELA_IREE_EMITC_QUERY)
#include "kernels.h"
iree_status_t module_create(iree_vm_instance_t* instance, iree_allocator_t allocator, iree_vm_module_t** out_module);
#endif

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

// Reads (mode "rb") or writes ("wb") count floats; 0 and a message on failure.
static int transfer(const char* path, const char* mode, float* values, size_t count) {
	FILE* file = fopen(path, mode);
	size_t done = 0;
	if (file) {
		done = mode[0] == 'r' ? fread(values, sizeof(float), count, file) : fwrite(values, sizeof(float), count, file);
		fclose(file);
	}
	if (done != count)
		fprintf(stderr, "%s: expected %zu floats, %s %zu\n", path, count, mode[0] == 'r' ? "read" : "wrote", done);
	return done == count;
}

static int usage(const char* program) {
	fprintf(stderr,
	        "usage: %s [--value V | --input FILE] [--more-input FILE:D0xD1...]... [--output FILE] "
	        "[--output-count N | --output-sizes N0,N1...] [--function NAME] [--latencies FILE] [--blocks K] [--reset-at R] "
	        "MODEL.vmfb RUNS DIM0 [DIM1 ...]\n",
	        program);
	return 2;
}

// "FILE:D0xD1..." -> the file name (cut at the colon) and the shape; its element count, 0 if malformed.
static size_t parse_more_input(char* spec, int* rank, int64_t* shape) {
	char* colon = strrchr(spec, ':');
	if (!colon)
		return 0;
	*colon = 0;
	size_t count = 1;
	*rank = 0;
	for (char* dim = colon + 1; *rank < BELA_IREE_MAX_RANK; ++dim) {
		shape[(*rank)++] = strtoll(dim, &dim, 10);
		count *= (size_t)shape[*rank - 1];
		if (*dim != 'x')
			return *dim == 0 ? count : 0;
	}
	return 0;
}

int main(int argc, char** argv) {
	float value = 0.5f;
	size_t output_count = 0;
	const char* function = NULL;
	const char* input_file = NULL;
	const char* output_file = NULL;
	const char* latencies_file = NULL;
	char* more_inputs[BELA_IREE_MAX_INPUTS - 1];
	int more_count = 0;
	int blocks = 1;
	int reset_at = -1;
	const char* output_sizes = NULL;
	int arg = 1;
	for (; arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0; arg += 2) {
		if (strcmp(argv[arg], "--value") == 0)
			value = strtof(argv[arg + 1], NULL);
		else if (strcmp(argv[arg], "--output-count") == 0)
			output_count = strtoull(argv[arg + 1], NULL, 10);
		else if (strcmp(argv[arg], "--function") == 0)
			function = argv[arg + 1];
		else if (strcmp(argv[arg], "--input") == 0)
			input_file = argv[arg + 1];
		else if (strcmp(argv[arg], "--output") == 0)
			output_file = argv[arg + 1];
		else if (strcmp(argv[arg], "--latencies") == 0)
			latencies_file = argv[arg + 1];
		else if (strcmp(argv[arg], "--blocks") == 0 && atoi(argv[arg + 1]) > 0)
			blocks = atoi(argv[arg + 1]);
		else if (strcmp(argv[arg], "--reset-at") == 0)
			reset_at = atoi(argv[arg + 1]);
		else if (strcmp(argv[arg], "--output-sizes") == 0)
			output_sizes = argv[arg + 1];
		else if (strcmp(argv[arg], "--more-input") == 0 && more_count < BELA_IREE_MAX_INPUTS - 1)
			more_inputs[more_count++] = argv[arg + 1];
		else
			return usage(argv[0]);
	}
	if (argc - arg < 3 || argc - arg - 2 > BELA_IREE_MAX_RANK || (blocks > 1 && !input_file))
		return usage(argv[0]);
	bela_iree_model_options_t options = {0};
#if defined(BELA_IREE_EMITC_QUERY)
	options.emitc_module_create = module_create;
	options.static_library_query = BELA_IREE_EMITC_QUERY;
#else
	options.vmfb_path = argv[arg];
#endif
	options.function = function;
	int runs = atoi(argv[arg + 1]);
	options.input_count = 1 + more_count;
	size_t more_sizes[BELA_IREE_MAX_INPUTS];
	for (int i = 0; i < more_count; ++i) {
		more_sizes[i] = parse_more_input(more_inputs[i], &options.input_ranks[1 + i], options.input_shapes[1 + i]);
		if (!more_sizes[i])
			return usage(argv[0]);
	}
	options.input_ranks[0] = argc - arg - 2;
	size_t count = 1;
	for (int d = 0; d < options.input_ranks[0]; ++d) {
		options.input_shapes[0][d] = atoll(argv[arg + 2 + d]);
		count *= (size_t)options.input_shapes[0][d];
	}
	options.output_element_count = output_count ? output_count : count;
	for (const char* next = output_sizes; next && *next && options.output_count < BELA_IREE_MAX_OUTPUTS;) {
		char* end = NULL;
		options.output_element_counts[options.output_count++] = strtoull(next, &end, 10);
		next = *end == ',' ? end + 1 : end;
	}

	char error[512];
	bela_iree_model_t* model = bela_iree_model_load(&options, error, sizeof(error));
	if (!model) {
		fprintf(stderr, "load failed: %s\n", error);
		return 1;
	}
	// every input's blocks (one unless --blocks), read before the first run
	size_t sizes[BELA_IREE_MAX_INPUTS] = {count};
	float* staged[BELA_IREE_MAX_INPUTS] = {0};
	int loaded = 1;
	for (int i = 0; i < options.input_count; ++i) {
		if (i > 0)
			sizes[i] = more_sizes[i - 1];
		staged[i] = malloc(sizes[i] * blocks * sizeof(float));
		if (i == 0 && !input_file)
			for (size_t e = 0; e < count; ++e)
				staged[0][e] = value;
		else
			loaded = loaded && transfer(i == 0 ? input_file : more_inputs[i - 1], "rb", staged[i], sizes[i] * blocks);
	}
	size_t output_size = 0;   // one run's outputs, joined
	for (int o = 0; o < bela_iree_model_outputs(model); ++o)
		output_size += bela_iree_model_output_size_at(model, o);
	float* outputs = malloc(output_size * sizeof(float) * (runs > 0 ? runs : 1));
	if (!loaded || !outputs) {
		bela_iree_model_free(model);
		return 1;
	}
	uint64_t first_run_allocations = 0, steady_allocations = 0;
	FILE* latencies = latencies_file ? fopen(latencies_file, "w") : NULL;
	if (latencies_file && !latencies) {
		fprintf(stderr, "cannot write %s\n", latencies_file);
		bela_iree_model_free(model);
		return 1;
	}
	for (int r = 0; r < runs; ++r) {
		for (int i = 0; i < options.input_count; ++i)
			memcpy(bela_iree_model_input(model, i), staged[i] + sizes[i] * (r % blocks), sizes[i] * sizeof(float));
		if (r == reset_at && bela_iree_model_reset(model) != 0) {
			fprintf(stderr, "reset failed: %s\n", bela_iree_model_last_error(model));
			bela_iree_model_free(model);
			return 1;
		}
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
		if (latencies)
			fprintf(latencies, "%.3f\n", bela_iree_model_counters(model).last_us);
		for (int o = 0, at = 0; o < bela_iree_model_outputs(model); at += bela_iree_model_output_size_at(model, o++))
			memcpy(outputs + output_size * r + at, bela_iree_model_output_at(model, o),
			       bela_iree_model_output_size_at(model, o) * sizeof(float));
	}
	if (latencies)
		fclose(latencies);
	const float* output = bela_iree_model_output(model);
	// the last run's output; with --blocks, every run's
	if (output_file && !transfer(output_file, "wb", outputs + (blocks > 1 ? 0 : output_size * (runs - 1)),
	                             output_size * (blocks > 1 ? (size_t)runs : 1))) {
		bela_iree_model_free(model);
		return 1;
	}
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
	for (int i = 0; i < options.input_count; ++i)
		free(staged[i]);
	free(outputs);
	return 0;
}
