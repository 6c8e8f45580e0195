// bela_iree/model.c: see include/bela_iree/model.h. Written against the IREE 3.x runtime API
// (iree/runtime/api.h, the local-sync driver and the executable loaders).
#include "bela_iree/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iree/async/util/proactor_pool.h"
#include "iree/base/threading/numa.h"
#include "iree/hal/drivers/local_sync/sync_device.h"
#include "iree/runtime/api.h"

#if defined(BELA_IREE_LOADER_SYSTEM)
#include "iree/hal/local/loaders/system_library_loader.h"
#endif
#if defined(BELA_IREE_LOADER_EMBEDDED)
#include "iree/hal/local/loaders/embedded_elf_loader.h"
#endif
#if defined(BELA_IREE_LOADER_STATIC)
#include "iree/hal/local/loaders/static_library_loader.h"
#endif

struct bela_iree_model {
	iree_runtime_instance_t* instance;
	iree_hal_device_t* device;
	iree_runtime_session_t* session;
	iree_runtime_call_t call;
	int call_ready;
	int input_count;
	size_t input_counts[BELA_IREE_MAX_INPUTS];
	float* inputs[BELA_IREE_MAX_INPUTS];
	iree_hal_buffer_view_t* input_views[BELA_IREE_MAX_INPUTS];
	float* output;
	size_t output_count;
	bela_iree_counters_t counters;
	double total_us;
	char last_error[256];
};

static void describe(iree_status_t status, char* out, size_t size) {
	iree_host_size_t length = 0;
	char* text = NULL;
	iree_allocator_t allocator = iree_allocator_system();
	if (out && size) {
		if (iree_status_to_string(status, &allocator, &text, &length) && text) {
			snprintf(out, size, "%.*s", (int)length, text);
			iree_allocator_free(allocator, text);
		} else {
			snprintf(out, size, "IREE error %d", (int)iree_status_code(status));
		}
	}
	iree_status_ignore(status);
}

static iree_status_t create_loader(const bela_iree_model_options_t* options, iree_allocator_t host,
                                   iree_hal_executable_loader_t** out_loader) {
	if (options->static_library_query) {
#if defined(BELA_IREE_LOADER_STATIC)
		const iree_hal_executable_library_query_fn_t libraries[] = {options->static_library_query};
		return iree_hal_static_library_loader_create(1, libraries, iree_hal_executable_import_provider_null(), host,
		                                             out_loader);
#else
		return iree_make_status(IREE_STATUS_UNAVAILABLE, "runtime built without BELA_IREE_LOADER_STATIC (EmitC)");
#endif
	}
#if defined(BELA_IREE_LOADER_SYSTEM)
	return iree_hal_system_library_loader_create(NULL, host, out_loader);
#elif defined(BELA_IREE_LOADER_EMBEDDED)
	return iree_hal_embedded_elf_loader_create(NULL, host, out_loader);
#else
	return iree_make_status(IREE_STATUS_UNAVAILABLE, "runtime built without a .vmfb kernel loader "
	                        "(define BELA_IREE_LOADER_SYSTEM or BELA_IREE_LOADER_EMBEDDED)");
#endif
}

// The local-sync device: one thread, kernels run inline in bela_iree_model_run().
static iree_status_t create_device(const bela_iree_model_options_t* options, iree_allocator_t host,
                                   iree_hal_device_t** out_device) {
	iree_hal_executable_loader_t* loader = NULL;
	iree_hal_allocator_t* allocator = NULL;
	iree_async_proactor_pool_t* proactors = NULL;
	iree_string_view_t identifier = iree_make_cstring_view("local-sync");
	iree_status_t status = create_loader(options, host, &loader);
	if (iree_status_is_ok(status))
		status = iree_hal_allocator_create_heap(identifier, host, host, &allocator);
	if (iree_status_is_ok(status))
		status = iree_async_proactor_pool_create(iree_numa_node_count(), NULL, iree_async_proactor_pool_options_default(),
		                                         host, &proactors);
	if (iree_status_is_ok(status)) {
		iree_hal_sync_device_params_t params;
		iree_hal_sync_device_params_initialize(&params);
		iree_hal_device_create_params_t create_params = iree_hal_device_create_params_default();
		create_params.proactor_pool = proactors;
		status = iree_hal_sync_device_create(identifier, &params, &create_params, 1, &loader, allocator, host, out_device);
	}
	iree_async_proactor_pool_release(proactors);
	iree_hal_allocator_release(allocator);
	iree_hal_executable_loader_release(loader);
	return status;
}

static iree_status_t load(bela_iree_model_t* model, const bela_iree_model_options_t* options) {
	iree_allocator_t host = iree_allocator_system();
	iree_runtime_instance_options_t instance_options;
	iree_runtime_instance_options_initialize(&instance_options);
	IREE_RETURN_IF_ERROR(iree_runtime_instance_create(&instance_options, host, &model->instance));
	IREE_RETURN_IF_ERROR(create_device(options, host, &model->device));
	iree_runtime_session_options_t session_options;
	iree_runtime_session_options_initialize(&session_options);
	IREE_RETURN_IF_ERROR(iree_runtime_session_create_with_device(model->instance, &session_options, model->device,
	                                                             host, &model->session));
	if (options->emitc_module_create) {
		iree_vm_module_t* module = NULL;
		IREE_RETURN_IF_ERROR(options->emitc_module_create(iree_runtime_instance_vm_instance(model->instance), host,
		                                                  &module));
		iree_status_t status = iree_runtime_session_append_module(model->session, module);
		iree_vm_module_release(module);
		IREE_RETURN_IF_ERROR(status);
	} else {
		if (!options->vmfb_path)
			return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "no vmfb_path and no emitc_module_create");
		IREE_RETURN_IF_ERROR(iree_runtime_session_append_bytecode_module_from_file(model->session, options->vmfb_path));
	}
	const char* function = options->function ? options->function : "module.main";
	IREE_RETURN_IF_ERROR(iree_runtime_call_initialize_by_name(model->session, iree_make_cstring_view(function),
	                                                          &model->call));
	model->call_ready = 1;

	// Inputs: a host buffer the caller fills, and a device buffer view made once, reused every run.
	model->input_count = options->input_count;
	for (int i = 0; i < options->input_count; ++i) {
		iree_hal_dim_t shape[BELA_IREE_MAX_RANK];
		size_t count = 1;
		for (int d = 0; d < options->input_ranks[i]; ++d) {
			shape[d] = (iree_hal_dim_t)options->input_shapes[i][d];
			count *= (size_t)options->input_shapes[i][d];
		}
		model->input_counts[i] = count;
		model->inputs[i] = (float*)calloc(count, sizeof(float));
		if (!model->inputs[i])
			return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "input buffer");
		iree_hal_buffer_params_t params = {.type = IREE_HAL_MEMORY_TYPE_DEVICE_LOCAL | IREE_HAL_MEMORY_TYPE_HOST_VISIBLE,
		                                   .usage = IREE_HAL_BUFFER_USAGE_DEFAULT | IREE_HAL_BUFFER_USAGE_MAPPING};
		IREE_RETURN_IF_ERROR(iree_hal_buffer_view_allocate_buffer_copy(
			model->device, iree_hal_device_allocator(model->device), (iree_host_size_t)options->input_ranks[i], shape,
			IREE_HAL_ELEMENT_TYPE_FLOAT_32, IREE_HAL_ENCODING_TYPE_DENSE_ROW_MAJOR, params,
			iree_make_const_byte_span(model->inputs[i], count * sizeof(float)), &model->input_views[i]));
	}
	model->output_count = options->output_element_count;
	model->output = (float*)calloc(model->output_count ? model->output_count : 1, sizeof(float));
	if (!model->output)
		return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "output buffer");
	return iree_ok_status();
}

bela_iree_model_t* bela_iree_model_load(const bela_iree_model_options_t* options, char* error, size_t error_size) {
	if (!options || options->input_count < 1 || options->input_count > BELA_IREE_MAX_INPUTS) {
		if (error && error_size)
			snprintf(error, error_size, "options: input_count must be 1..%d", BELA_IREE_MAX_INPUTS);
		return NULL;
	}
	bela_iree_model_t* model = (bela_iree_model_t*)calloc(1, sizeof(*model));
	if (!model)
		return NULL;
	iree_status_t status = load(model, options);
	if (!iree_status_is_ok(status)) {
		describe(status, error, error_size);
		bela_iree_model_free(model);
		return NULL;
	}
	return model;
}

float* bela_iree_model_input(bela_iree_model_t* model, int index) {
	return (index >= 0 && index < model->input_count) ? model->inputs[index] : NULL;
}

static double now_us(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static iree_status_t run(bela_iree_model_t* model) {
	iree_runtime_call_reset(&model->call);
	for (int i = 0; i < model->input_count; ++i) {
		IREE_RETURN_IF_ERROR(iree_hal_buffer_map_write(iree_hal_buffer_view_buffer(model->input_views[i]), 0,
		                                               model->inputs[i], model->input_counts[i] * sizeof(float)));
		IREE_RETURN_IF_ERROR(iree_runtime_call_inputs_push_back_buffer_view(&model->call, model->input_views[i]));
	}
	IREE_RETURN_IF_ERROR(iree_runtime_call_invoke(&model->call, 0));
	iree_hal_buffer_view_t* output = NULL;
	IREE_RETURN_IF_ERROR(iree_runtime_call_outputs_pop_front_buffer_view(&model->call, &output));
	iree_device_size_t bytes = iree_hal_buffer_view_byte_length(output);
	if (bytes > model->output_count * sizeof(float))
		bytes = model->output_count * sizeof(float);
	iree_status_t status = iree_hal_buffer_map_read(iree_hal_buffer_view_buffer(output), 0, model->output, bytes);
	iree_hal_buffer_view_release(output);
	return status;
}

int bela_iree_model_run(bela_iree_model_t* model) {
	double start = now_us();
	iree_status_t status = run(model);
	double elapsed = now_us() - start;
	if (!iree_status_is_ok(status)) {
		describe(status, model->last_error, sizeof(model->last_error));
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

const float* bela_iree_model_output(const bela_iree_model_t* model) { return model->output; }
size_t bela_iree_model_output_count(const bela_iree_model_t* model) { return model->output_count; }
bela_iree_counters_t bela_iree_model_counters(const bela_iree_model_t* model) { return model->counters; }
const char* bela_iree_model_last_error(const bela_iree_model_t* model) { return model->last_error; }

void bela_iree_model_free(bela_iree_model_t* model) {
	if (!model)
		return;
	for (int i = 0; i < BELA_IREE_MAX_INPUTS; ++i) {
		iree_hal_buffer_view_release(model->input_views[i]);
		free(model->inputs[i]);
	}
	free(model->output);
	if (model->call_ready)
		iree_runtime_call_deinitialize(&model->call);
	iree_runtime_session_release(model->session);
	iree_hal_device_release(model->device);
	iree_runtime_instance_release(model->instance);
	free(model);
}
