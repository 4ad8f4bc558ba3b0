# SPDX-License-Identifier: MIT
# Everything is built into build/ (plus node-gyp's addon/build and tsc's dist/). V=1 shows full commands.
.DELETE_ON_ERROR:
.SUFFIXES:

OUT        := build
CLANG      ?= clang
BPFTOOL    ?= bpftool
NODE_GYP   ?= node $(shell npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js
ARCH       := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_HDRS   := $(wildcard bpf/*.h)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.bpf.o,$(BPF_SRCS))
# Test fixtures: built for the tests only, never part of the product's build/.
TEST_OBJS  := $(OUT)/test/native_smoke.bpf.o
# Node's own headers (Debian's nodejs, or a node install prefix): never downloaded.
NODE_DIR   ?= $(shell node -p "require('path').resolve(process.execPath, '../..')")
ADDON      := addon/build/Release/proctap.node
LAYOUT     := src/native/layout.generated.ts
TS_SRCS    := $(shell find src test -name '*.ts' 2>/dev/null) $(LAYOUT)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.PHONY: all build deps demo test test-unit test-e2e bench clean
all: build

deps: $(OUT)/.deps
$(OUT)/.deps: scripts/install-deps.sh package.json
	$(call msg,DEPS,apt + npm)
	$(Q)bash scripts/install-deps.sh
	$(Q)mkdir -p $(OUT) && touch $@

build: $(OUT)/.deps $(BPF_OBJS) $(OUT)/proctap-launch $(ADDON) $(OUT)/.tsc

$(OUT)/vmlinux.h: | $(OUT)/.deps
	$(call msg,BTF,$@)
	$(Q)mkdir -p $(OUT) && $(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(OUT)/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(OUT)/bpf && $(CLANG) -g -O2 -Wall -target bpf -D__TARGET_ARCH_$(ARCH) -I$(OUT) -Ibpf -c $< -o $@

$(OUT)/test/native_smoke.bpf.o: test/fixtures/native_smoke.bpf.c $(OUT)/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(OUT)/test && $(CLANG) -g -O2 -Wall -target bpf -D__TARGET_ARCH_$(ARCH) -I$(OUT) -Ibpf -c $< -o $@

$(OUT)/gen-layout: scripts/gen-layout.c bpf/proctap.h addon/batch_records.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(OUT) && $(CC) -O1 -Wall -o $@ $<

$(LAYOUT): $(OUT)/gen-layout
	$(call msg,GEN,$@)
	$(Q)$(OUT)/gen-layout > $@

$(OUT)/proctap-launch: launcher/proctap-launch.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(OUT) && $(CC) -O2 -Wall -Wextra -o $@ $<

$(ADDON): $(wildcard addon/*.cc addon/*.h) addon/binding.gyp | $(OUT)/.deps
	$(call msg,GYP,$@)
	$(Q)test -f $(NODE_DIR)/include/node/node_api.h || { echo 'no Node headers in $(NODE_DIR)/include/node'; exit 1; }
	$(Q)cd addon && $(NODE_GYP) rebuild --nodedir=$(NODE_DIR) $(if $(filter 1,$(V)),--verbose,--silent)

$(OUT)/.tsc: $(TS_SRCS) tsconfig.json | $(OUT)/.deps
	$(call msg,TSC,dist/)
	$(Q)rm -rf dist && npx --no-install tsc -p . && touch $@

test: build $(TEST_OBJS)
	$(Q)bash scripts/run-tests.sh

test-unit: build
	$(Q)node --test --test-concurrency=1 dist/test/unit/

test-e2e: build $(TEST_OBJS)
	$(Q)node --test --test-concurrency=1 dist/test/e2e/

demo: build
	$(Q)bash scripts/demo.sh

clean:
	rm -rf $(OUT) dist addon/build

# Kernel matrix (issue #8): the e2e accuracy suite on Debian's stock 6.1 kernel under QEMU (TCG), once per
# backend (kprobe, fentry, auto). See docs/kernels.md; BACKENDS, KERNELS, KMATRIX_TESTS narrow it down.
.PHONY: test-kernels
test-kernels: build
	$(Q)bash scripts/kernels/test-kernels.sh

# Benchmarks (issue #7): proctap next to untraced runs and bpftrace/tcpdump/nsntrace, medians, ratios from
# one run; table on stdout, build/bench.json. QUICK=1: about a minute. See docs/performance.md.
bench: build
	$(Q)QUICK=$(QUICK) python3 scripts/bench/bench.py
