# microkernelia top-level targets. Kernel-side targets live in kernel/ (own workspace).
CARGO ?= cargo
AARCH64_LINUX_ENV = CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"

.PHONY: test test-host test-inference-arm test-inference-tcg bench-host

test: test-host test-inference-arm test-inference-tcg

test-host:
	$(CARGO) test --workspace

# The inference crate's tests (incl. every NEON / dotprod / i8mm kernel against the scalar
# path) cross-compiled for aarch64 Linux and run under qemu user mode with all CPU features.
test-inference-arm:
	$(AARCH64_LINUX_ENV) $(CARGO) test -p inference --target aarch64-unknown-linux-gnu

# The inference tests again under qemu's x86 TCG (-cpu max: AVX2/FMA/F16C, no AVX-512), the
# CPU model the x86 guest gets, so the kernel selection the guest will make is tested too.
test-inference-tcg:
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu max" $(CARGO) test -p inference --lib

# Kernel matmul benchmark (every variant x quant on SmolLM2 shapes) next to llama.cpp's own
# matmul; builds a cached llama-cpp-python in build/llama-venv on first use. Not part of `test`.
bench-host:
	bash inference/bench/bench-host.sh
