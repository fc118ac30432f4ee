/* Edge-ish coverage of a gcc-built extension for libFuzzer (atheris), without clang.
 *
 * gcc's -fsanitize-coverage=trace-pc calls __sanitizer_cov_trace_pc() at the start of
 * every basic block; libFuzzer only implements that hook as a deprecated stub. This
 * shim implements it: the caller's address is hashed into an array of 8-bit counters
 * registered with libFuzzer (__sanitizer_cov_8bit_counters_init), which is what clang's
 * -fsanitize=fuzzer-no-link would emit inline. gcc's trace-cmp hooks go straight to
 * libFuzzer (value profile and the compare table that guides mutations).
 *
 * Compile this file WITHOUT coverage flags and link it into the instrumented extension
 * (fuzz/native/build.py). libFuzzer's symbols must be global when the extension loads:
 * fuzz/native/loader.py promotes atheris's libFuzzer core with RTLD_GLOBAL first.
 */
#include <stdint.h>

#define VC_COV_BITS 16
#define VC_COV_SIZE (1u << VC_COV_BITS)

void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);

static uint8_t vc_cov_counters[VC_COV_SIZE];

__attribute__((constructor)) static void vc_cov_register(void) {
    __sanitizer_cov_8bit_counters_init(vc_cov_counters, vc_cov_counters + VC_COV_SIZE);
}

/* hidden: the extension's calls must bind to this definition, not to libFuzzer's stub */
__attribute__((visibility("hidden"))) void __sanitizer_cov_trace_pc(void) {
    uint64_t pc = (uint64_t)(uintptr_t)__builtin_return_address(0);
    uint32_t h = (uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> (64 - VC_COV_BITS));
    uint8_t c = vc_cov_counters[h];
    vc_cov_counters[h] = (uint8_t)(c + (c != 255)); /* saturating, like -fsanitize-coverage */
}

/* gcc also traces float compares; libFuzzer has no hooks for them: ignore. */
__attribute__((visibility("hidden"))) void __sanitizer_cov_trace_cmpf(float a, float b) {
    (void)a; (void)b;
}
__attribute__((visibility("hidden"))) void __sanitizer_cov_trace_cmpd(double a, double b) {
    (void)a; (void)b;
}
