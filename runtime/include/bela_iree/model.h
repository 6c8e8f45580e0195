// bela_iree/model.h: run a model compiled by bela-iree (IREE 3.x) from a Bela program.
//
//   bela_iree_model_t* model = bela_iree_model_load(&options, error, sizeof(error));  // setup()
//   memcpy(bela_iree_model_input(model, 0), block, bytes);                           // inference thread
//   bela_iree_model_run(model);                                                        // inference thread
//   const float* out = bela_iree_model_output(model);                                 // (output_at for more)
//   bela_iree_model_reset(model);   // a stateful model back to its starting state (setup(), or on demand)
//   bela_iree_model_free(model);                                                       // cleanup()
//
// Two back ends, chosen by the options:
//   - bytecode: a .vmfb read from vmfb_path;
//   - EmitC: the module compiled into the program (module.c's module_create, from
//     `iree-compile --output-format=vm-c`) with its kernels linked in as a static library
//     (kernels.o; kernels.h declares the query function).
// Kernels are loaded by the loaders this file was compiled with (define one or more):
//   BELA_IREE_LOADER_SYSTEM    .vmfb kernels as a system shared library (dlopen); required on 32-bit
//                              ARM, where embedded-ELF kernels crash
//   BELA_IREE_LOADER_EMBEDDED  .vmfb kernels as IREE's embedded ELF (aarch64, x86-64)
//   BELA_IREE_LOADER_STATIC    the EmitC back end's static library (static_library_query)
//   BELA_IREE_LOADER_VMVX      kernels compiled for the VMVX interpreter (--backend vmvx)
// The device is IREE's local-sync driver: kernels run inline on the thread that calls
// bela_iree_model_run(), with no scheduler.
//
// Every buffer is allocated by bela_iree_model_load(); bela_iree_model_run() reuses them (what
// IREE itself still allocates per call is listed in runtime/README.md). One model is used by one
// thread at a time: nothing here locks.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "iree/hal/local/executable_library.h"
#include "iree/vm/api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BELA_IREE_MAX_INPUTS 8
#define BELA_IREE_MAX_OUTPUTS 8
#define BELA_IREE_MAX_RANK 6

// module.c's module_create, as `iree-compile --output-format=vm-c` emits it.
typedef iree_status_t (*bela_iree_module_create_fn_t)(iree_vm_instance_t* instance, iree_allocator_t allocator,
                                                      iree_vm_module_t** out_module);

typedef struct {
	const char* vmfb_path;                                  // bytecode back end: the .vmfb to load
	bela_iree_module_create_fn_t emitc_module_create;       // EmitC back end: module.c's module_create
	iree_hal_executable_library_query_fn_t static_library_query;  // ...and kernels.h's query function
	const char* function;                                   // default "module.main" (its `$async` form is
	                                                        // called when the module has one)
	int input_count;                                        // float32 inputs, 1..BELA_IREE_MAX_INPUTS
	int input_ranks[BELA_IREE_MAX_INPUTS];                  // each input's shape: its element count is
	int64_t input_shapes[BELA_IREE_MAX_INPUTS][BELA_IREE_MAX_RANK];  // the product of its dimensions
	size_t output_element_count;                            // float32 elements of the (first) output
	int output_count;                                       // outputs the function returns (0 means 1)
	size_t output_element_counts[BELA_IREE_MAX_OUTPUTS];    // each one's float32 elements (the first:
	                                                        // output_element_count when 0)
} bela_iree_model_options_t;

typedef struct {
	uint64_t runs;      // successful runs
	uint64_t failures;  // failed runs (see bela_iree_model_last_error)
	double last_us;     // duration of the last successful run
	double max_us;
	double mean_us;
} bela_iree_counters_t;

typedef struct bela_iree_model bela_iree_model_t;

// Loads the module, creates the device and allocates every buffer. On failure returns NULL and
// writes why to error (if error_size > 0).
bela_iree_model_t* bela_iree_model_load(const bela_iree_model_options_t* options, char* error, size_t error_size);

// The buffer of input `index` (float32, its shape's element count), filled by the caller before
// each run. It is the memory the kernels read: no copy is made.
float* bela_iree_model_input(bela_iree_model_t* model, int index);

// Runs the function once on the inputs. 0 on success; -1 on failure (see last_error).
int bela_iree_model_run(bela_iree_model_t* model);

// The same run without timing it (counters' last/max/mean stay 0): what render() calls, where a
// clock read may be a system call. After a warm-up run and reset in setup() it must not allocate,
// lock, make a system call or touch a new page (tests/test_realtime_guard.py checks it).
int bela_iree_model_run_untimed(bela_iree_model_t* model);

// The output of the last successful run (output_element_count floats).
const float* bela_iree_model_output(const bela_iree_model_t* model);
size_t bela_iree_model_output_count(const bela_iree_model_t* model);
// Several outputs: how many, and output `index` of the last successful run and its float count.
int bela_iree_model_outputs(const bela_iree_model_t* model);
const float* bela_iree_model_output_at(const bela_iree_model_t* model, int index);
size_t bela_iree_model_output_size_at(const bela_iree_model_t* model, int index);

// A stateful model (one whose buffers forward() updates) keeps its state in the module from run to
// run, starting from the buffers' values at export. reset() puts them back (it may allocate: call it
// from setup() or the inference thread, never render()). 0 on success, and for a stateless model.
int bela_iree_model_reset(bela_iree_model_t* model);
int bela_iree_model_is_stateful(const bela_iree_model_t* model);

bela_iree_counters_t bela_iree_model_counters(const bela_iree_model_t* model);
const char* bela_iree_model_last_error(const bela_iree_model_t* model);  // "" if none yet

void bela_iree_model_free(bela_iree_model_t* model);  // NULL is fine

#ifdef __cplusplus
}
#endif
