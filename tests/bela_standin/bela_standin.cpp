// A stand-in for the Bela core, just enough to run a project's setup(), render() and cleanup()
// on a computer: interleaved audio from a raw float32 file through render(), block by block,
// into another. The auxiliary task runs when it is scheduled (on the audio thread: here that
// only changes when inference happens, not what the glue computes).
//
//   bela_standin IN.f32 OUT.f32 CHANNELS FRAMES_PER_BLOCK
#include <Bela.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct StandinTask {
	void (*callback)(void*);
	void* arg;
};

AuxiliaryTask Bela_createAuxiliaryTask(void (*callback)(void*), int, const char*, void* arg)
{
	return new StandinTask{callback, arg};
}

int Bela_scheduleAuxiliaryTask(AuxiliaryTask task)
{
	StandinTask* t = static_cast<StandinTask*>(task);
	t->callback(t->arg);
	return 0;
}

int rt_printf(const char* format, ...)
{
	va_list args;
	va_start(args, format);
	int written = vprintf(format, args);
	va_end(args);
	return written;
}

// BelaContext's fields are const for render(); the core (here, this file) fills them in.
template <typename T> static void set(BelaContext* context, size_t offset, T value)
{
	memcpy(reinterpret_cast<char*>(context) + offset, &value, sizeof(value));
}

int main(int argc, char** argv)
{
	if(argc != 5) {
		fprintf(stderr, "usage: %s IN.f32 OUT.f32 CHANNELS FRAMES_PER_BLOCK\n", argv[0]);
		return 2;
	}
	unsigned int channels = atoi(argv[3]), frames = atoi(argv[4]);
	std::vector<float> input;
	FILE* in = fopen(argv[1], "rb");
	for(float sample; in && fread(&sample, sizeof(sample), 1, in) == 1;)
		input.push_back(sample);
	if(in)
		fclose(in);
	size_t blocks = input.size() / (channels * frames);
	std::vector<float> output(blocks * channels * frames), audioIn(channels * frames), audioOut(channels * frames);

	// zeroed storage, as Bela's (C) core allocates it: BelaContext has no constructor to call
	alignas(BelaContext) static unsigned char storage[sizeof(BelaContext)] = {};
	BelaContext* context = reinterpret_cast<BelaContext*>(storage);
	set(context, offsetof(BelaContext, audioIn), static_cast<const float*>(audioIn.data()));
	set(context, offsetof(BelaContext, audioOut), audioOut.data());
	set(context, offsetof(BelaContext, audioFrames), static_cast<uint32_t>(frames));
	set(context, offsetof(BelaContext, audioInChannels), static_cast<uint32_t>(channels));
	set(context, offsetof(BelaContext, audioOutChannels), static_cast<uint32_t>(channels));
	set(context, offsetof(BelaContext, audioSampleRate), 44100.f);
	set(context, offsetof(BelaContext, flags), static_cast<uint32_t>(BELA_FLAG_INTERLEAVED));

	if(!setup(context, nullptr)) {
		fprintf(stderr, "setup() failed\n");
		return 1;
	}
	for(size_t b = 0; b < blocks; ++b) {
		memcpy(audioIn.data(), &input[b * audioIn.size()], audioIn.size() * sizeof(float));
		render(context, nullptr);
		memcpy(&output[b * audioOut.size()], audioOut.data(), audioOut.size() * sizeof(float));
	}
	cleanup(context, nullptr);
	FILE* out = fopen(argv[2], "wb");
	if(!out || fwrite(output.data(), sizeof(float), output.size(), out) != output.size()) {
		fprintf(stderr, "cannot write %s\n", argv[2]);
		return 1;
	}
	fclose(out);
	return 0;
}
