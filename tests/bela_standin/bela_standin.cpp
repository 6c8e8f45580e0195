// A stand-in for the Bela core, just enough to run a project's setup(), render() and cleanup()
// on a computer: interleaved audio from a raw float32 file through render(), block by block,
// into another.
//
// As on Bela, each auxiliary task has its own thread, woken by a semaphore. A task scheduled from
// render() is woken when render() returns, as on a Bela's single core, where the audio thread's
// priority keeps every task waiting until render() is done (so render() itself makes no system
// call to schedule it); scheduled from elsewhere, it is woken at once. To keep results
// deterministic, after each render() returns the main loop waits until every scheduled run has
// finished before it feeds the next block: a CPU fast enough for the task, so the output is what
// running the task inline gave.
//
// With tests/rt_guard's library preloaded (LD_PRELOAD), render() runs between rt_guard_enter()
// and rt_guard_leave(): an allocation, lock, sleep, blocking call or printf in it ends the
// program (exit code 86). Without it, those hooks are not found and nothing is checked.
//
//   bela_standin IN.f32 OUT.f32 CHANNELS FRAMES_PER_BLOCK [ANALOG_IN.f32 ANALOG_CHANNELS]
//
// IN.f32 "-" reads the input from stdin a block at a time, as it comes (a test paces the program
// by what it writes, e.g. to change files between blocks), until stdin ends.
//
// With ANALOG_IN.f32 (interleaved float32 frames of ANALOG_CHANNELS analog inputs, one analog frame
// per audio frame), render() also sees analog inputs; otherwise it has none (analogFrames 0).
//
// Build with the project: c++ -std=c++17 -I BELA_INCLUDE render.cpp bela_standin.cpp -lpthread -ldl
#include <Bela.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <semaphore.h>
#include <thread>
#include <vector>

struct StandinTask {
	void (*callback)(void*);
	void* arg;
	sem_t wake;     // one post per scheduled run
	sem_t started;  // posted once the thread has started and touched its stack
	std::thread thread;
};

static std::vector<StandinTask*> gTasks;
static std::atomic<bool> gStopping{false};
static std::atomic<unsigned int> gPendingRuns{0};  // scheduled runs the main loop has not waited for
static sem_t gRunFinished;                          // one post per finished run

static void taskThread(StandinTask* task)
{
	// A new thread's first steps touch its stack: done here, before any render(), so that
	// rt_guard's first-touch check sees render()'s own pages only (as on a Bela, where the audio
	// thread keeps every task from running until render() returns).
	volatile char stack[64 * 1024];
	memset(const_cast<char*>(stack), 0, sizeof(stack));
	sem_post(&task->started);
	for(;;) {
		sem_wait(&task->wake);
		if(gStopping.load())
			return;
		task->callback(task->arg);
		sem_post(&gRunFinished);
	}
}

AuxiliaryTask Bela_createAuxiliaryTask(void (*callback)(void*), int, const char*, void* arg)
{
	StandinTask* task = new StandinTask{callback, arg, {}, {}, {}};
	sem_init(&task->wake, 0, 0);
	sem_init(&task->started, 0, 0);
	task->thread = std::thread(taskThread, task);
	sem_wait(&task->started);
	gTasks.push_back(task);
	return task;
}

static thread_local bool tInRender = false;
static StandinTask* gWakeAfterRender[64];   // tasks render() scheduled, woken when it returns
static unsigned int gWakeAfterRenderCount = 0;

// Real-time safe: an atomic increment, and from render() a store (the wake-up waits for render()
// to return), from elsewhere a sem_post. Every call gives one run (in order).
int Bela_scheduleAuxiliaryTask(AuxiliaryTask task)
{
	gPendingRuns.fetch_add(1);
	if(tInRender && gWakeAfterRenderCount < sizeof(gWakeAfterRender) / sizeof(gWakeAfterRender[0]))
		gWakeAfterRender[gWakeAfterRenderCount++] = static_cast<StandinTask*>(task);
	else
		sem_post(&static_cast<StandinTask*>(task)->wake);
	return 0;
}

static void wakeTasksScheduledInRender()
{
	for(unsigned int i = 0; i < gWakeAfterRenderCount; ++i)
		sem_post(&gWakeAfterRender[i]->wake);
	gWakeAfterRenderCount = 0;
}

AuxiliaryTask Bela_runAuxiliaryTask(void (*callback)(void*), int priority, void* arg)
{
	AuxiliaryTask task = Bela_createAuxiliaryTask(callback, priority, "", arg);
	Bela_scheduleAuxiliaryTask(task);
	return task;
}

// Not real-time: the main loop calls it outside render(). A task scheduling a task (itself
// included) counts its new run before its own finishes, so this waits for that one too.
static void waitForScheduledRuns()
{
	for(; gPendingRuns.load() > 0; gPendingRuns.fetch_sub(1))
		sem_wait(&gRunFinished);
}

static void stopAuxiliaryTasks()
{
	gStopping.store(true);
	for(StandinTask* task : gTasks) {
		sem_post(&task->wake);
		task->thread.join();
		sem_destroy(&task->wake);
		sem_destroy(&task->started);
		delete task;
	}
	gTasks.clear();
}

// rt_printf is real-time safe on Bela (Xenomai formats into a buffer that another thread prints).
// Here, called from render() it formats with vsnprintf (no allocation, no lock, not guarded) into
// a fixed buffer that the main loop prints once render() has returned; from any other thread it
// prints at once.
static char gRenderPrints[16384];
static size_t gRenderPrintsSize = 0;

int rt_printf(const char* format, ...)
{
	va_list args;
	va_start(args, format);
	int written;
	if(tInRender) {
		written = vsnprintf(gRenderPrints + gRenderPrintsSize, sizeof(gRenderPrints) - gRenderPrintsSize, format, args);
		if(written > 0)  // kept up to the buffer's end; the rest is dropped
			gRenderPrintsSize = std::min(gRenderPrintsSize + written, sizeof(gRenderPrints) - 1);
	} else {
		written = vprintf(format, args);
	}
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
	if(argc != 5 && argc != 7) {
		fprintf(stderr, "usage: %s IN.f32 OUT.f32 CHANNELS FRAMES_PER_BLOCK [ANALOG_IN.f32 ANALOG_CHANNELS]\n", argv[0]);
		return 2;
	}
	unsigned int analogChannels = argc == 7 ? atoi(argv[6]) : 0;
	std::vector<float> analogInput;
	if(analogChannels) {
		FILE* analog = fopen(argv[5], "rb");
		for(float sample; analog && fread(&sample, sizeof(sample), 1, analog) == 1;)
			analogInput.push_back(sample);
		if(analog)
			fclose(analog);
	}
	unsigned int channels = atoi(argv[3]), frames = atoi(argv[4]);
	bool streaming = strcmp(argv[1], "-") == 0;
	std::vector<float> input;
	FILE* in = streaming ? nullptr : fopen(argv[1], "rb");
	for(float sample; in && fread(&sample, sizeof(sample), 1, in) == 1;)
		input.push_back(sample);
	if(in)
		fclose(in);
	size_t blocks = streaming ? SIZE_MAX : input.size() / (channels * frames);
	std::vector<float> audioIn(channels * frames), audioOut(channels * frames);

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
	std::vector<float> analogIn(analogChannels * frames), analogOut(analogChannels * frames);
	if(analogChannels) {
		set(context, offsetof(BelaContext, analogIn), static_cast<const float*>(analogIn.data()));
		set(context, offsetof(BelaContext, analogOut), analogOut.data());
		set(context, offsetof(BelaContext, analogFrames), static_cast<uint32_t>(frames));
		set(context, offsetof(BelaContext, analogInChannels), static_cast<uint32_t>(analogChannels));
		set(context, offsetof(BelaContext, analogOutChannels), static_cast<uint32_t>(analogChannels));
		set(context, offsetof(BelaContext, analogSampleRate), 44100.f);
	}

	// rt_guard's hooks when its library is preloaded, else null
	auto guardEnter = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "rt_guard_enter"));
	auto guardLeave = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "rt_guard_leave"));
	bool guarded = guardEnter && guardLeave;
	sem_init(&gRunFinished, 0, 0);

	FILE* out = nullptr;   // opened after the first render() has returned
	if(!setup(context, nullptr)) {
		fprintf(stderr, "setup() failed\n");
		stopAuxiliaryTasks();
		return 1;
	}
	waitForScheduledRuns();
	for(size_t b = 0; b < blocks; ++b) {
		if(!streaming)
			memcpy(audioIn.data(), &input[b * audioIn.size()], audioIn.size() * sizeof(float));
		else if(fread(audioIn.data(), sizeof(float), audioIn.size(), stdin) != audioIn.size())
			break;   // stdin ended
		if(analogChannels && (b + 1) * analogIn.size() <= analogInput.size())
			memcpy(analogIn.data(), &analogInput[b * analogIn.size()], analogIn.size() * sizeof(float));
		tInRender = true;
		if(guarded)
			guardEnter();
		render(context, nullptr);
		if(guarded)
			guardLeave();
		tInRender = false;
		wakeTasksScheduledInRender();
		// written as it comes (a long streamed run keeps no growing buffer), outside render()
		if(!out)
			out = fopen(argv[2], "wb");
		if(!out || fwrite(audioOut.data(), sizeof(float), audioOut.size(), out) != audioOut.size()) {
			fprintf(stderr, "cannot write %s\n", argv[2]);
			return 1;
		}
		if(gRenderPrintsSize) {
			fwrite(gRenderPrints, 1, gRenderPrintsSize, stdout);
			gRenderPrintsSize = 0;
		}
		waitForScheduledRuns();
	}
	cleanup(context, nullptr);
	waitForScheduledRuns();
	stopAuxiliaryTasks();
	sem_destroy(&gRunFinished);
	if(!out)
		out = fopen(argv[2], "wb");
	if(!out || fclose(out) != 0) {
		fprintf(stderr, "cannot write %s\n", argv[2]);
		return 1;
	}
	return 0;
}
