// bela_iree/model.h: run a model compiled by bela-iree (IREE 3.x) from a Bela program.
//
//   bela_iree_model_t* model = bela_iree_model_load(&options, error, sizeof(error));  // setup()
//   memcpy(bela_iree_model_input(model, 0), block, bytes);                           // any thread
//   bela_iree_model_run(model);                                                        // inference thread
//   const float* out = bela_iree_model_output(model);
//   bela_iree_model_free(model);                                                       // cleanup()
//
// Two back ends, chosen by the options: a bytecode module (.vmfb) read from a file, or an EmitC
// module compiled into the program (module.c's module_create) with its kernels linked in as a
// static library (kernels.h's query function). Kernels of a .vmfb are loaded by the loader the
// runtime was built with: BELA_IREE_LOADER_SYSTEM (required on 32-bit ARM, where embedded ELF
// kernels crash in math calls) or BELA_IREE_LOADER_EMBEDDED (aarch64, x86-64). The device is
// IREE's local-sync driver: one thread, no scheduling overhead, what a Bela board wants.
//
// Every buffer is allocated by bela_iree_model_load(); bela_iree_model_run() reuses them.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "iree/hal/local/executable_library.h"
#include "iree/vm/api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BELA_IREE_MAX_INPUTS 8
#define BELA_IREE_MAX_RANK 6

typedef iree_status_t (*bela_iree_module_create_fn_t)(iree_vm_instance_t* instance, iree_allocator_t allocator,
                                                      iree_vm_module_t** out_module);

typedef struct {
	const char* vmfb_path;                                  // bytecode back end: the .vmfb to load
	bela_iree_module_create_fn_t emitc_module_create;       // EmitC back end: module.c's module_create
	iree_hal_executable_library_query_fn_t static_library_query;  // ...and kernels.h's query function
	const char* function;                                   // default "module.main"
	int input_count;                                        // the model's inputs (input, then noise)
	int input_ranks[BELA_IREE_MAX_INPUTS];
	int64_t input_shapes[BELA_IREE_MAX_INPUTS][BELA_IREE_MAX_RANK];
	size_t output_element_count;                            // float32 elements of the (one) output
} bela_iree_model_options_t;

typedef struct {
	uint64_t runs;
	uint64_t failures;
	double last_us;
	double max_us;
	double mean_us;
} bela_iree_counters_t;

typedef struct bela_iree_model bela_iree_model_t;

// Loads the module and allocates every buffer. On failure returns NULL and writes why to error.
bela_iree_model_t* bela_iree_model_load(const bela_iree_model_options_t* options, char* error, size_t error_size);

// The host buffer of input `index` (float32, input_shapes[index] elements), filled by the caller.
float* bela_iree_model_input(bela_iree_model_t* model, int index);

// Runs the function once on the inputs. 0 on success; on failure see bela_iree_model_last_error().
int bela_iree_model_run(bela_iree_model_t* model);

// The output of the last successful run (output_element_count floats).
const float* bela_iree_model_output(const bela_iree_model_t* model);
size_t bela_iree_model_output_count(const bela_iree_model_t* model);

bela_iree_counters_t bela_iree_model_counters(const bela_iree_model_t* model);
const char* bela_iree_model_last_error(const bela_iree_model_t* model);

void bela_iree_model_free(bela_iree_model_t* model);

#ifdef __cplusplus
}
#endif
