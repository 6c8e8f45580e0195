# The Makefile of a stand-in Bela folder (tests/bela_ide.py, tests/sshd.py): the targets the Bela
# IDE and `make -C ~/Bela PROJECT=NAME run` use, with a real compiler and a real running program.
#
#   all / Bela   compile projects/$(PROJECT)/render.cpp with the Bela stand-in (tests/bela_standin)
#                against Bela's real headers; a broken render.cpp fails with g++'s own errors
#   runide / run stop what runs, then run the built program in the foreground: it waits for audio
#                on a FIFO nothing writes to, so it keeps running (playing) until stopped
#   stop         end the running program (its pid is in $(ROOT)/.running.pid)
#
# The including Makefile sets STANDIN_SOURCE and BELA_INCLUDE.
ROOT := $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
PROJECT_DIR := $(ROOT)/projects/$(PROJECT)
OUTPUT_FILE := $(PROJECT_DIR)/$(PROJECT)
STANDIN_OBJECT := $(ROOT)/build/bela_standin.o
CXX ?= g++
CXXFLAGS := -std=c++17 -O0 -I$(BELA_INCLUDE) -I$(PROJECT_DIR)

.PHONY: all Bela run runide stop syntax

all: Bela
Bela: $(OUTPUT_FILE)

$(STANDIN_OBJECT): $(STANDIN_SOURCE)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(OUTPUT_FILE): $(PROJECT_DIR)/render.cpp $(STANDIN_OBJECT)
	@mkdir -p $(PROJECT_DIR)/build
	$(CXX) $(CXXFLAGS) -c $(PROJECT_DIR)/render.cpp -o $(PROJECT_DIR)/build/render.o
	$(CXX) $(PROJECT_DIR)/build/render.o $(STANDIN_OBJECT) -o $@ -lpthread -ldl

syntax:
	$(CXX) $(CXXFLAGS) -fsyntax-only $(PROJECT_DIR)/render.cpp

run runide: stop Bela
	@echo "Running $(OUTPUT_FILE)"
	@rm -f $(PROJECT_DIR)/build/audio-in.f32 && mkfifo $(PROJECT_DIR)/build/audio-in.f32
	@cd $(PROJECT_DIR) && echo $$$$ > $(ROOT)/.running.pid && exec $(OUTPUT_FILE) build/audio-in.f32 build/audio-out.f32 1 16

stop:
	@if [ -f $(ROOT)/.running.pid ]; then kill `cat $(ROOT)/.running.pid` 2>/dev/null; rm -f $(ROOT)/.running.pid; fi; true
