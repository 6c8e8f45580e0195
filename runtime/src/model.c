// bela_iree/model.c: see include/bela_iree/model.h. Written against the IREE 3.x runtime C API
// (iree/runtime/api.h, the local-sync driver, the executable loaders) as of the 3.13 release.

// iree_allocator_system() exists only when the build names the allocator IREE's libraries were
// built with; a runtime built with default options uses libc's (IREE_ALLOCATOR_SYSTEM=libc).
#if !defined(IREE_ALLOCATOR_SYSTEM_CTL)
#define IREE_ALLOCATOR_SYSTEM_CTL iree_allocator_libc_ctl
#endif

#include "bela_iree/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iree/async/util/proactor_pool.h"
#include "iree/base/threading/numa.h"
#include "iree/hal/drivers/local_sync/sync_device.h"
#include "iree/hal/utils/caching_allocator.h"
#include "iree/modules/hal/inline/module.h"
#include "iree/modules/hal/loader/module.h"
#include "iree/modules/hal/types.h"
#include "iree/runtime/api.h"

// From iree/vm/bytecode/module.h, whose includes need flatcc's headers (not in the install).
IREE_API_EXPORT iree_status_t iree_vm_bytecode_module_create(iree_vm_instance_t* instance, uint32_t flags,
                                                             iree_const_byte_span_t archive_contents,
                                                             iree_allocator_t archive_allocator,
                                                             iree_allocator_t allocator, iree_vm_module_t** out_module);

#if defined(BELA_IREE_LOADER_SYSTEM)
#include "iree/hal/local/loaders/system_library_loader.h"
#endif
#if defined(BELA_IREE_LOADER_EMBEDDED)
#include "iree/hal/local/loaders/embedded_elf_loader.h"
#endif
#if defined(BELA_IREE_LOADER_STATIC)
#include "iree/hal/local/loaders/static_library_loader.h"
#endif
#if defined(BELA_IREE_LOADER_VMVX)
#include "iree/hal/local/loaders/vmvx_module_loader.h"
#endif

#define BELA_IREE_MAX_LOADERS 4

// ---- The model's host allocator: every block IREE frees is kept for its next allocation ----
// IREE still allocates small objects on every call (a bytecode module creates a semaphore and
// fences per call: iree_hal_module_fence_create) and frees them after. Everything a model
// allocates goes through this allocator, which keeps freed blocks in free lists by size class
// (powers of two) and hands them out again: once the model has run once (setup()'s warm-up run),
// a run takes its memory from blocks already allocated and touched, so it calls neither malloc
// nor free and touches no new page. The blocks go back to libc when the model is freed. One model
// is used by one thread at a time (handing it to another thread is the caller's release/acquire),
// so nothing here locks.

#define POOL_CLASSES 40                 // blocks of 2^4 .. 2^43 bytes
typedef union pool_block {
	struct {
		union pool_block* next;         // in its class's free list
		uint32_t size_class;
	} header;
	max_align_t align;                  // what follows the header is aligned as malloc's is
	char pad[16];
} pool_block_t;

typedef struct {
	pool_block_t* free_lists[POOL_CLASSES];
} pool_t;

static int pool_class(iree_host_size_t bytes) {
	int size_class = 0;
	while (size_class < POOL_CLASSES - 1 && ((uint64_t)16 << size_class) < (uint64_t)bytes)
		++size_class;
	return size_class;
}

static void* pool_take(pool_t* pool, iree_host_size_t bytes) {
	int size_class = pool_class(bytes);
	pool_block_t* block = pool->free_lists[size_class];
	if (block) {
		pool->free_lists[size_class] = block->header.next;
	} else {
		block = (pool_block_t*)malloc(sizeof(pool_block_t) + ((size_t)16 << size_class));
		if (!block)
			return NULL;
		block->header.size_class = (uint32_t)size_class;
	}
	return block + 1;
}

static void pool_give_back(pool_t* pool, void* pointer) {
	if (!pointer)
		return;
	pool_block_t* block = (pool_block_t*)pointer - 1;
	block->header.next = pool->free_lists[block->header.size_class];
	pool->free_lists[block->header.size_class] = block;
}

static void pool_release(pool_t* pool) {
	for (int c = 0; c < POOL_CLASSES; ++c)
		while (pool->free_lists[c]) {
			pool_block_t* block = pool->free_lists[c];
			pool->free_lists[c] = block->header.next;
			free(block);
		}
}

static iree_status_t pool_ctl(void* self, iree_allocator_command_t command, const void* params, void** inout_ptr) {
	pool_t* pool = (pool_t*)self;
	if (command == IREE_ALLOCATOR_COMMAND_FREE) {
		pool_give_back(pool, *inout_ptr);
		return iree_ok_status();
	}
	iree_host_size_t bytes = ((const iree_allocator_alloc_params_t*)params)->byte_length;
	void* pointer = pool_take(pool, bytes);
	if (!pointer)
		return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "out of memory (%" PRIu64 " bytes)", (uint64_t)bytes);
	if (command == IREE_ALLOCATOR_COMMAND_CALLOC) {
		memset(pointer, 0, bytes);
	} else if (command == IREE_ALLOCATOR_COMMAND_REALLOC && *inout_ptr) {
		pool_block_t* old = (pool_block_t*)*inout_ptr - 1;
		size_t old_bytes = (size_t)16 << old->header.size_class;
		memcpy(pointer, *inout_ptr, old_bytes < bytes ? old_bytes : bytes);
		pool_give_back(pool, *inout_ptr);
	}
	*inout_ptr = pointer;
	return iree_ok_status();
}

typedef struct {
	iree_hal_buffer_view_t* view;        // what the function receives, made once
	iree_hal_buffer_mapping_t mapping;   // persistent mapping of the view's buffer: the caller's input
	int mapped;
	float* staging;                      // only if persistent mapping was refused: copied in per run
	size_t count;
} input_t;

struct bela_iree_model {
	iree_allocator_t host;
	iree_runtime_instance_t* instance;
	iree_hal_device_t* device;
	iree_runtime_session_t* session;
	iree_runtime_call_t call;            // its input and output lists are sized once and reused
	int call_ready;
	// The function's `$async` form (IREE's coarse-fences ABI), when the module has one: it takes a
	// wait fence (none) and a signal fence after the inputs, and run() waits on the signal fence.
	// Calling it directly skips the sync wrapper, whose EmitC translation in IREE 3.13 frees its
	// signal fence before awaiting it (a use-after-free: a crash in hal.fence.await on x86-64,
	// "ref type mismatch" on armv7). One semaphore and two fences serve every run: each run raises
	// a fence's timepoint to the next payload value, so nothing is allocated for it. The fences take
	// turns because a stateful module keeps the signal fence it was given as its state's timepoint
	// and waits on it in the next call: the same fence, raised again, would never be reached.
	iree_hal_semaphore_t* semaphore;
	iree_hal_fence_t* signal_fences[2];
	uint64_t signal_value;
	int is_async;
	// A stateful module's `reset` (its `$async` form when the module has one); absent otherwise.
	iree_runtime_call_t reset_call;
	int reset_ready;
	int reset_is_async;
	int input_count;
	input_t inputs[BELA_IREE_MAX_INPUTS];
	int output_total;                             // how many outputs the function returns
	float* outputs[BELA_IREE_MAX_OUTPUTS];
	size_t output_sizes[BELA_IREE_MAX_OUTPUTS];   // float32 elements of each
	bela_iree_counters_t counters;
	double total_us;
	char last_error[256];
	pool_t pool;                                  // behind `host` (see pool_ctl)
};

// Writes status's message to out (if any) and frees the status.
static void describe(iree_status_t status, iree_allocator_t host, char* out, size_t size) {
	if (out && size) {
		char* text = NULL;
		iree_host_size_t length = 0;
		if (iree_status_to_string(status, &host, &text, &length) && text) {
			snprintf(out, size, "%.*s", (int)length, text);
			iree_allocator_free(host, text);
		} else {
			snprintf(out, size, "IREE error %s", iree_status_code_string(iree_status_code(status)));
		}
	}
	iree_status_ignore(status);
}

// Every loader this file was compiled with; the device asks each in turn whether it can load an
// executable's format, so a .vmfb built for the system loader is never handed to the embedded one.
static iree_status_t create_loaders(bela_iree_model_t* model, const bela_iree_model_options_t* options,
                                    iree_hal_executable_loader_t** loaders, iree_host_size_t* count) {
	*count = 0;
	iree_status_t status = iree_ok_status();
	if (options->static_library_query) {
#if defined(BELA_IREE_LOADER_STATIC)
		const iree_hal_executable_library_query_fn_t libraries[] = {options->static_library_query};
		status = iree_hal_static_library_loader_create(1, libraries, iree_hal_executable_import_provider_null(),
		                                               model->host, &loaders[(*count)++]);
#else
		return iree_make_status(IREE_STATUS_UNAVAILABLE,
		                        "static_library_query given but compiled without BELA_IREE_LOADER_STATIC");
#endif
	}
#if defined(BELA_IREE_LOADER_SYSTEM)
	// No plugin manager: bela-iree's kernels import nothing but libc/libm, which dlopen resolves.
	if (iree_status_is_ok(status))
		status = iree_hal_system_library_loader_create(NULL, model->host, &loaders[(*count)++]);
#endif
#if defined(BELA_IREE_LOADER_EMBEDDED)
	if (iree_status_is_ok(status))
		status = iree_hal_embedded_elf_loader_create(NULL, model->host, &loaders[(*count)++]);
#endif
#if defined(BELA_IREE_LOADER_VMVX)
	if (iree_status_is_ok(status))
		status = iree_hal_vmvx_module_loader_create(iree_runtime_instance_vm_instance(model->instance), 0, NULL,
		                                            model->host, &loaders[(*count)++]);
#endif
	if (!iree_status_is_ok(status)) {
		loaders[--*count] = NULL;  // the failed create left nothing to release
		return status;
	}
	if (*count == 0)
		return iree_make_status(IREE_STATUS_UNAVAILABLE,
		                        "no executable loader: compile with BELA_IREE_LOADER_SYSTEM, _EMBEDDED, _STATIC or _VMVX");
	return status;
}

// The local-sync device, created directly (no driver registry): kernels run inline in
// bela_iree_model_run(), on the caller's thread.
static iree_status_t create_device(bela_iree_model_t* model, const bela_iree_model_options_t* options) {
	iree_hal_executable_loader_t* loaders[BELA_IREE_MAX_LOADERS] = {0};
	iree_host_size_t loader_count = 0;
	iree_hal_allocator_t* allocator = NULL;
	iree_async_proactor_pool_t* proactors = NULL;
	iree_string_view_t identifier = iree_make_cstring_view("local-sync");
	iree_status_t status = create_loaders(model, options, loaders, &loader_count);
	// Buffers are plain host memory (malloc'd by the heap allocator): mappable at no cost. The
	// caching allocator over it keeps the buffers a run frees (its output, its transients) for the
	// next run, so after the first run no buffer comes from malloc: a model's shapes are fixed,
	// so what it caches is bounded by one run's buffers.
	iree_hal_allocator_t* heap = NULL;
	if (iree_status_is_ok(status))
		status = iree_hal_allocator_create_heap(identifier, model->host, model->host, &heap);
	if (iree_status_is_ok(status))
		status = iree_hal_caching_allocator_create_unbounded(heap, model->host, &allocator);
	iree_hal_allocator_release(heap);
	// IREE >= 3.12 requires a proactor pool for device creation; the device retains it.
	if (iree_status_is_ok(status))
		status = iree_async_proactor_pool_create(iree_numa_node_count(), NULL,
		                                         iree_async_proactor_pool_options_default(), model->host, &proactors);
	if (iree_status_is_ok(status)) {
		iree_hal_sync_device_params_t params;
		iree_hal_sync_device_params_initialize(&params);
		iree_hal_device_create_params_t create_params = iree_hal_device_create_params_default();
		create_params.proactor_pool = proactors;
		status = iree_hal_sync_device_create(identifier, &params, &create_params, loader_count, loaders, allocator,
		                                     model->host, &model->device);
	}
	iree_async_proactor_pool_release(proactors);
	iree_hal_allocator_release(allocator);
	for (iree_host_size_t i = 0; i < loader_count; ++i)
		iree_hal_executable_loader_release(loaders[i]);
	return status;
}

// The inline HAL's modules, for a .vmfb compiled with --iree-execution-model=inline-dynamic
// (bela-iree's board builds, service/pipeline/inline_hal.py): `hal_inline` (buffers and views,
// from the device's caching allocator) and `hal_loader` (the kernel library, whose dispatches
// become plain calls). A module that does not import them (the async HAL of host builds) never
// calls them; registering them costs only here.
static iree_status_t append_inline_modules(bela_iree_model_t* model, const bela_iree_model_options_t* options) {
	iree_vm_instance_t* instance = iree_runtime_instance_vm_instance(model->instance);
	iree_vm_module_t* module = NULL;
	IREE_RETURN_IF_ERROR(iree_hal_module_register_inline_types(instance));
	IREE_RETURN_IF_ERROR(iree_hal_module_register_loader_types(instance));
	IREE_RETURN_IF_ERROR(iree_hal_inline_module_create(instance, IREE_HAL_INLINE_MODULE_FLAG_NONE,
	                                                   iree_hal_module_debug_sink_null(),
	                                                   iree_hal_device_allocator(model->device), model->host, &module));
	iree_status_t status = iree_runtime_session_append_module(model->session, module);
	iree_vm_module_release(module);
	IREE_RETURN_IF_ERROR(status);
	iree_hal_executable_loader_t* loaders[BELA_IREE_MAX_LOADERS] = {0};
	iree_host_size_t loader_count = 0;
	status = create_loaders(model, options, loaders, &loader_count);
	module = NULL;
	if (iree_status_is_ok(status))
		status = iree_hal_loader_module_create(instance, IREE_HAL_LOADER_MODULE_FLAG_NONE, loader_count, loaders,
		                                       model->host, &module);
	for (iree_host_size_t i = 0; i < loader_count; ++i)
		iree_hal_executable_loader_release(loaders[i]);   // the module retains them
	if (iree_status_is_ok(status))
		status = iree_runtime_session_append_module(model->session, module);
	iree_vm_module_release(module);
	return status;
}

// The .vmfb read into memory aligned as its constants are (64 bytes). On the inline HAL the
// kernels read the module's constants where they lie, with NEON loads that require 16-byte
// alignment on 32-bit ARM: IREE's own file read (malloc, 8-byte aligned there) made them fault
// (SIGBUS). Read into the heap, not mapped, so no page of it is ever dropped and faulted back in.
static iree_status_t read_aligned(const char* path, iree_const_byte_span_t* out) {
	FILE* file = fopen(path, "rb");
	if (!file)
		return iree_make_status(IREE_STATUS_NOT_FOUND, "cannot open %s", path);
	void* data = NULL;
	long size = fseek(file, 0, SEEK_END) == 0 ? ftell(file) : -1;
	iree_status_t status = iree_ok_status();
	if (size <= 0 || fseek(file, 0, SEEK_SET) != 0)
		status = iree_make_status(IREE_STATUS_DATA_LOSS, "cannot read %s", path);
	else if (posix_memalign(&data, 64, (size_t)size) != 0)
		status = iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "%ld bytes for %s", size, path);
	else if (fread(data, 1, (size_t)size, file) != (size_t)size)
		status = iree_make_status(IREE_STATUS_DATA_LOSS, "short read of %s", path);
	fclose(file);
	if (!iree_status_is_ok(status)) {
		free(data);
		return status;
	}
	*out = iree_make_const_byte_span(data, (iree_host_size_t)size);
	return status;
}

// Frees what read_aligned read, when the bytecode module lets go of it.
static iree_status_t free_ctl(void* self, iree_allocator_command_t command, const void* params, void** inout_ptr) {
	(void)self;
	(void)params;
	if (command != IREE_ALLOCATOR_COMMAND_FREE)
		return iree_make_status(IREE_STATUS_UNIMPLEMENTED, "this allocator only frees");
	free(*inout_ptr);
	return iree_ok_status();
}

static iree_status_t append_module(bela_iree_model_t* model, const bela_iree_model_options_t* options) {
	if (options->emitc_module_create) {
		iree_vm_module_t* module = NULL;
		IREE_RETURN_IF_ERROR(
			options->emitc_module_create(iree_runtime_instance_vm_instance(model->instance), model->host, &module));
		iree_status_t status = iree_runtime_session_append_module(model->session, module);
		iree_vm_module_release(module);
		return status;
	}
	IREE_RETURN_IF_ERROR(append_inline_modules(model, options));
	iree_const_byte_span_t contents = iree_const_byte_span_empty();
	IREE_RETURN_IF_ERROR(read_aligned(options->vmfb_path, &contents));
	iree_vm_module_t* module = NULL;
	iree_allocator_t release = {NULL, free_ctl};   // the module frees the contents with it
	iree_status_t status = iree_vm_bytecode_module_create(iree_runtime_instance_vm_instance(model->instance),
	                                                      0 /* no flags */, contents, release,
	                                                      model->host, &module);
	if (!iree_status_is_ok(status)) {
		free((void*)contents.data);
		return status;
	}
	status = iree_runtime_session_append_module(model->session, module);
	iree_vm_module_release(module);
	return status;
}

// One input: a device buffer and its view, made once. The buffer stays mapped for the model's
// life and the mapping is what bela_iree_model_input() returns, so the caller writes straight
// into the memory the kernels read and run() copies nothing in.
static iree_status_t create_input(bela_iree_model_t* model, input_t* input, int rank, const int64_t* dims) {
	iree_hal_dim_t shape[BELA_IREE_MAX_RANK];
	input->count = 1;
	for (int d = 0; d < rank; ++d) {
		if (dims[d] < 0)
			return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "input dimension %d is negative", d);
		shape[d] = (iree_hal_dim_t)dims[d];
		input->count *= (size_t)dims[d];
	}
	iree_device_size_t bytes = (iree_device_size_t)(input->count * sizeof(float));
	iree_hal_buffer_params_t params = {0};
	params.type = IREE_HAL_MEMORY_TYPE_DEVICE_LOCAL | IREE_HAL_MEMORY_TYPE_HOST_VISIBLE |
	              IREE_HAL_MEMORY_TYPE_HOST_COHERENT;
	params.usage = IREE_HAL_BUFFER_USAGE_DEFAULT | IREE_HAL_BUFFER_USAGE_MAPPING_SCOPED |
	               IREE_HAL_BUFFER_USAGE_MAPPING_PERSISTENT | IREE_HAL_BUFFER_USAGE_MAPPING_ACCESS_RANDOM;
	params.access = IREE_HAL_MEMORY_ACCESS_ALL;
	iree_hal_buffer_t* buffer = NULL;
	IREE_RETURN_IF_ERROR(
		iree_hal_allocator_allocate_buffer(iree_hal_device_allocator(model->device), params, bytes, &buffer));
	iree_status_t status = iree_hal_buffer_view_create(buffer, (iree_host_size_t)rank, shape,
	                                                   IREE_HAL_ELEMENT_TYPE_FLOAT_32,
	                                                   IREE_HAL_ENCODING_TYPE_DENSE_ROW_MAJOR, model->host, &input->view);
	if (iree_status_is_ok(status)) {
		iree_status_t mapped = iree_hal_buffer_map_range(buffer, IREE_HAL_MAPPING_MODE_PERSISTENT,
		                                                 IREE_HAL_MEMORY_ACCESS_ALL, 0, bytes, &input->mapping);
		if (iree_status_is_ok(mapped)) {
			input->mapped = 1;
			memset(input->mapping.contents.data, 0, (size_t)bytes);
		} else {
			// A device without persistent mappings: fill a host copy, written in per run.
			iree_status_ignore(mapped);
			input->staging = (float*)calloc(input->count ? input->count : 1, sizeof(float));
			if (!input->staging)
				status = iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "input staging buffer");
		}
	}
	iree_hal_buffer_release(buffer);  // the view holds it
	return status;
}

// Prefers `<function>$async`; a module without one (no coarse-fences form) is called synchronously.
// NOT_FOUND when the module has neither.
static iree_status_t initialize_call(bela_iree_model_t* model, const char* function, iree_runtime_call_t* call,
                                     int* is_async) {
	char async_name[256];
	snprintf(async_name, sizeof(async_name), "%s$async", function);
	iree_status_t status = iree_runtime_call_initialize_by_name(model->session, iree_make_cstring_view(async_name), call);
	*is_async = iree_status_is_ok(status);
	if (*is_async && !model->semaphore) {
		IREE_RETURN_IF_ERROR(iree_hal_semaphore_create(model->device, IREE_HAL_QUEUE_AFFINITY_ANY, 0ull,
		                                               IREE_HAL_SEMAPHORE_FLAG_DEFAULT, &model->semaphore));
		for (int i = 0; i < 2; ++i) {
			IREE_RETURN_IF_ERROR(iree_hal_fence_create(1, model->host, &model->signal_fences[i]));
		}
	}
	if (*is_async || !iree_status_is_not_found(status))
		return status;
	iree_status_ignore(status);
	return iree_runtime_call_initialize_by_name(model->session, iree_make_cstring_view(function), call);
}

// After the inputs: no wait fence (the inputs are ready), then a signal fence (set per call).
static iree_status_t push_fences(bela_iree_model_t* model, iree_runtime_call_t* call) {
	iree_vm_list_t* inputs = iree_runtime_call_inputs(call);
	iree_vm_ref_t no_wait_fence = iree_vm_ref_null();
	IREE_RETURN_IF_ERROR(iree_vm_list_push_ref_retain(inputs, &no_wait_fence));
	iree_vm_ref_t signal_fence = iree_hal_fence_retain_ref(model->signal_fences[0]);
	return iree_vm_list_push_ref_move(inputs, &signal_fence);
}

// Invokes a call; an `$async` one gets the next fence (its last input) and is waited for.
static iree_status_t invoke(bela_iree_model_t* model, iree_runtime_call_t* call, int is_async) {
	iree_hal_fence_t* fence = NULL;
	if (is_async) {
		fence = model->signal_fences[model->signal_value & 1];
		IREE_RETURN_IF_ERROR(iree_hal_fence_insert(fence, model->semaphore, ++model->signal_value));
		iree_vm_list_t* inputs = iree_runtime_call_inputs(call);
		iree_vm_ref_t ref = iree_hal_fence_retain_ref(fence);
		IREE_RETURN_IF_ERROR(iree_vm_list_set_ref_move(inputs, iree_vm_list_size(inputs) - 1, &ref));
	}
	iree_status_t status = iree_runtime_call_invoke(call, 0);
	if (iree_status_is_ok(status) && fence)
		status = iree_hal_fence_wait(fence, iree_infinite_timeout(), IREE_ASYNC_WAIT_FLAG_NONE);
	return status;
}

static iree_status_t load(bela_iree_model_t* model, const bela_iree_model_options_t* options) {
	if (!options->vmfb_path == !options->emitc_module_create)
		return iree_make_status(IREE_STATUS_INVALID_ARGUMENT,
		                        "set exactly one of vmfb_path (bytecode) and emitc_module_create (EmitC)");
	iree_runtime_instance_options_t instance_options;
	iree_runtime_instance_options_initialize(&instance_options);  // no driver registry: device made below
	IREE_RETURN_IF_ERROR(iree_runtime_instance_create(&instance_options, model->host, &model->instance));
	IREE_RETURN_IF_ERROR(create_device(model, options));
	iree_runtime_session_options_t session_options;
	iree_runtime_session_options_initialize(&session_options);
	IREE_RETURN_IF_ERROR(iree_runtime_session_create_with_device(model->instance, &session_options, model->device,
	                                                             model->host, &model->session));
	IREE_RETURN_IF_ERROR(append_module(model, options));
	IREE_RETURN_IF_ERROR(initialize_call(model, options->function ? options->function : "module.main", &model->call,
	                                     &model->is_async));
	model->call_ready = 1;
	iree_status_t reset = initialize_call(model, "module.reset", &model->reset_call, &model->reset_is_async);
	model->reset_ready = iree_status_is_ok(reset);
	if (!model->reset_ready && !iree_status_is_not_found(reset))
		return reset;
	iree_status_ignore(reset);   // a stateless module has no reset
	if (model->reset_ready && model->reset_is_async) {
		IREE_RETURN_IF_ERROR(push_fences(model, &model->reset_call));
	}

	model->input_count = options->input_count;
	for (int i = 0; i < options->input_count; ++i) {
		if (options->input_ranks[i] < 0 || options->input_ranks[i] > BELA_IREE_MAX_RANK)
			return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "input %d: rank must be 0..%d", i,
			                        BELA_IREE_MAX_RANK);
		IREE_RETURN_IF_ERROR(create_input(model, &model->inputs[i], options->input_ranks[i], options->input_shapes[i]));
		// The inputs list keeps these views for good: invoking reads it and never consumes it.
		IREE_RETURN_IF_ERROR(iree_runtime_call_inputs_push_back_buffer_view(&model->call, model->inputs[i].view));
	}
	if (model->is_async) {
		IREE_RETURN_IF_ERROR(push_fences(model, &model->call));
	}
	model->output_total = options->output_count > 0 ? options->output_count : 1;
	if (model->output_total > BELA_IREE_MAX_OUTPUTS)
		return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "output_count must be 1..%d", BELA_IREE_MAX_OUTPUTS);
	for (int i = 0; i < model->output_total; ++i) {
		size_t size = options->output_element_counts[i];
		model->output_sizes[i] = i == 0 && !size ? options->output_element_count : size;
		model->outputs[i] = (float*)calloc(model->output_sizes[i] ? model->output_sizes[i] : 1, sizeof(float));
		if (!model->outputs[i])
			return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "output buffer %d", i);
	}
	return iree_ok_status();
}

bela_iree_model_t* bela_iree_model_load(const bela_iree_model_options_t* options, char* error, size_t error_size) {
	if (error && error_size)
		error[0] = '\0';
	if (!options || options->input_count < 1 || options->input_count > BELA_IREE_MAX_INPUTS) {
		if (error && error_size)
			snprintf(error, error_size, "options: input_count must be 1..%d", BELA_IREE_MAX_INPUTS);
		return NULL;
	}
	bela_iree_model_t* model = (bela_iree_model_t*)calloc(1, sizeof(*model));
	if (!model) {
		if (error && error_size)
			snprintf(error, error_size, "out of memory");
		return NULL;
	}
	model->host = (iree_allocator_t){.self = &model->pool, .ctl = pool_ctl};
	iree_status_t status = load(model, options);
	if (!iree_status_is_ok(status)) {
		describe(status, model->host, error, error_size);
		bela_iree_model_free(model);
		return NULL;
	}
	return model;
}

float* bela_iree_model_input(bela_iree_model_t* model, int index) {
	if (!model || index < 0 || index >= model->input_count)
		return NULL;
	input_t* input = &model->inputs[index];
	return input->mapped ? (float*)input->mapping.contents.data : input->staging;
}

// The steady-state path: no allocation here; what IREE allocates inside invoke (the output
// buffer and its view, fences, the VM stack) is listed in README.md.
static iree_status_t run(bela_iree_model_t* model) {
	for (int i = 0; i < model->input_count; ++i) {
		input_t* input = &model->inputs[i];
		if (!input->mapped) {
			IREE_RETURN_IF_ERROR(iree_hal_buffer_map_write(iree_hal_buffer_view_buffer(input->view), 0, input->staging,
			                                               input->count * sizeof(float)));
		}
	}
	iree_vm_list_t* outputs = iree_runtime_call_outputs(&model->call);
	iree_status_t status = invoke(model, &model->call, model->is_async);
	for (int i = 0; i < model->output_total && iree_status_is_ok(status); ++i) {
		iree_hal_buffer_view_t* output = iree_vm_list_get_buffer_view_assign(outputs, i);  // borrowed: the list owns it
		if (!output) {
			status = iree_make_status(IREE_STATUS_FAILED_PRECONDITION, "the function returned no tensor %d", i);
			break;
		}
		if (iree_hal_buffer_view_element_type(output) != IREE_HAL_ELEMENT_TYPE_FLOAT_32) {
			status = iree_make_status(IREE_STATUS_FAILED_PRECONDITION, "output %d is not float32", i);
			break;
		}
		iree_device_size_t bytes = iree_hal_buffer_view_byte_length(output);
		if (bytes != (iree_device_size_t)(model->output_sizes[i] * sizeof(float)))
			status = iree_make_status(IREE_STATUS_FAILED_PRECONDITION,
			                          "output %d has %" PRIu64 " floats, its element count is %" PRIu64, i,
			                          (uint64_t)(bytes / sizeof(float)), (uint64_t)model->output_sizes[i]);
		else
			status = iree_hal_buffer_map_read(iree_hal_buffer_view_buffer(output), 0, model->outputs[i], bytes);
	}
	// Drops the outputs (the buffer returns to IREE) but keeps the list's storage.
	iree_status_ignore(iree_vm_list_resize(outputs, 0));
	return status;
}

int bela_iree_model_run(bela_iree_model_t* model) {
	if (!model)
		return -1;
	iree_time_t start = iree_time_now();
	iree_status_t status = run(model);
	double elapsed = (double)(iree_time_now() - start) / 1e3;
	if (!iree_status_is_ok(status)) {
		describe(status, model->host, model->last_error, sizeof(model->last_error));
		model->counters.failures++;
		return -1;
	}
	model->counters.runs++;
	model->counters.last_us = elapsed;
	if (elapsed > model->counters.max_us)
		model->counters.max_us = elapsed;
	model->total_us += elapsed;
	model->counters.mean_us = model->total_us / (double)model->counters.runs;
	return 0;
}

// For a caller on the audio thread (glue = "render"): run() alone, without the two clock reads
// that time it, since reading the clock may be a system call (on the BeagleBone's Cortex-A8 the
// kernel's vDSO has no user-readable timer). Counts runs and failures; times nothing.
int bela_iree_model_run_untimed(bela_iree_model_t* model) {
	if (!model)
		return -1;
	iree_status_t status = run(model);
	if (!iree_status_is_ok(status)) {
		describe(status, model->host, model->last_error, sizeof(model->last_error));
		model->counters.failures++;
		return -1;
	}
	model->counters.runs++;
	return 0;
}

int bela_iree_model_reset(bela_iree_model_t* model) {
	if (!model)
		return -1;
	if (!model->reset_ready)
		return 0;  // stateless: nothing to reset
	iree_status_t status = invoke(model, &model->reset_call, model->reset_is_async);
	iree_status_ignore(iree_vm_list_resize(iree_runtime_call_outputs(&model->reset_call), 0));
	if (!iree_status_is_ok(status)) {
		describe(status, model->host, model->last_error, sizeof(model->last_error));
		return -1;
	}
	return 0;
}

int bela_iree_model_is_stateful(const bela_iree_model_t* model) { return model && model->reset_ready; }

const float* bela_iree_model_output(const bela_iree_model_t* model) { return bela_iree_model_output_at(model, 0); }
size_t bela_iree_model_output_count(const bela_iree_model_t* model) { return bela_iree_model_output_size_at(model, 0); }

int bela_iree_model_outputs(const bela_iree_model_t* model) { return model ? model->output_total : 0; }

const float* bela_iree_model_output_at(const bela_iree_model_t* model, int index) {
	return model && index >= 0 && index < model->output_total ? model->outputs[index] : NULL;
}

size_t bela_iree_model_output_size_at(const bela_iree_model_t* model, int index) {
	return model && index >= 0 && index < model->output_total ? model->output_sizes[index] : 0;
}

bela_iree_counters_t bela_iree_model_counters(const bela_iree_model_t* model) {
	bela_iree_counters_t none = {0};
	return model ? model->counters : none;
}

const char* bela_iree_model_last_error(const bela_iree_model_t* model) { return model ? model->last_error : ""; }

void bela_iree_model_free(bela_iree_model_t* model) {
	if (!model)
		return;
	if (model->call_ready)
		iree_runtime_call_deinitialize(&model->call);  // releases its references to the input views
	if (model->reset_ready)
		iree_runtime_call_deinitialize(&model->reset_call);
	for (int i = 0; i < BELA_IREE_MAX_INPUTS; ++i) {
		input_t* input = &model->inputs[i];
		if (input->mapped)
			iree_status_ignore(iree_hal_buffer_unmap_range(&input->mapping));
		iree_hal_buffer_view_release(input->view);
		free(input->staging);
	}
	for (int i = 0; i < BELA_IREE_MAX_OUTPUTS; ++i)
		free(model->outputs[i]);
	for (int i = 0; i < 2; ++i)
		iree_hal_fence_release(model->signal_fences[i]);
	iree_hal_semaphore_release(model->semaphore);
	iree_runtime_session_release(model->session);
	iree_hal_device_release(model->device);
	iree_runtime_instance_release(model->instance);
	pool_release(&model->pool);
	free(model);
}
