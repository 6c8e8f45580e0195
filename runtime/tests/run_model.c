// run_model: load a .vmfb with bela_iree/model.h, run it, print outputs and counters.
//   run_model MODEL.vmfb RUNS DIM0 [DIM1 ...]       (one float32 input of that shape, filled with 0.5)
#include <stdio.h>
#include <stdlib.h>

#include "bela_iree/model.h"

int main(int argc, char** argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: %s MODEL.vmfb RUNS DIM0 [DIM1 ...]\n", argv[0]);
		return 2;
	}
	bela_iree_model_options_t options = {0};
	options.vmfb_path = argv[1];
	options.input_count = 1;
	options.input_ranks[0] = argc - 3;
	size_t count = 1;
	for (int d = 0; d < argc - 3 && d < BELA_IREE_MAX_RANK; ++d) {
		options.input_shapes[0][d] = atoll(argv[3 + d]);
		count *= (size_t)options.input_shapes[0][d];
	}
	options.output_element_count = count;
	char error[512];
	bela_iree_model_t* model = bela_iree_model_load(&options, error, sizeof(error));
	if (!model) {
		fprintf(stderr, "load failed: %s\n", error);
		return 1;
	}
	float* input = bela_iree_model_input(model, 0);
	for (size_t i = 0; i < count; ++i)
		input[i] = 0.5f;
	int runs = atoi(argv[2]);
	for (int r = 0; r < runs; ++r) {
		if (bela_iree_model_run(model) != 0) {
			fprintf(stderr, "run failed: %s\n", bela_iree_model_last_error(model));
			return 1;
		}
	}
	const float* output = bela_iree_model_output(model);
	printf("output[0..3] = %g %g %g %g\n", output[0], output[1], output[2], output[3]);
	bela_iree_counters_t c = bela_iree_model_counters(model);
	printf("runs %llu failures %llu last %.1f us max %.1f us mean %.1f us\n", (unsigned long long)c.runs,
	       (unsigned long long)c.failures, c.last_us, c.max_us, c.mean_us);
	bela_iree_model_free(model);
	return 0;
}
