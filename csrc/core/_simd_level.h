/* core/_simd_level.h: the one SIMD selection. Which level this CPU runs, for the kernels compiled
 * at several levels (_conv_direct.h, _packed_gemm.h): 2 AVX-512F + FMA, 1 AVX2 + FMA, 0 the
 * portable 16-byte build. Levels 1 and 2 exist only on x86-64 with GCC or clang (CYDNN_SIMD_X86).
 * CYDNN_CLONES marks a plain C function for GCC's target_clones, the same three levels picked by
 * the loader (x86-64-v4 ~ level 2, x86-64-v3 ~ level 1, default ~ level 0): the recurrent cell
 * kernels use it until they move to the explicit levels. */
#ifndef CYDNN_SIMD_LEVEL_H
#define CYDNN_SIMD_LEVEL_H

#if defined(__x86_64__) && defined(__GNUC__)
#define CYDNN_SIMD_X86 1
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CYDNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CYDNN_CLONES
#endif

/* The widest level this CPU runs. */
static int cydnn_simd_best_level(void) {
#ifdef CYDNN_SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* `level` clamped to what the CPU runs; negative: the widest. */
static int cydnn_simd_clamp_level(int level) {
    int best = cydnn_simd_best_level();
    return (level < 0 || level > best) ? best : level;
}

#endif
