/* The register-blocked kernel's interface: C := beta C + op(A) @ M + op(A2) @ M2 for the
 * per-step products of a tanh RNN, in several builds of one source (src/_small_gemm.c).
 *
 * Every time step multiplies a (B, H) block by the same (H, H) matrix. A BLAS GEMM packs M
 * again on every call, which keeps a per-step product of a few dozen rows well below the
 * rate of one large GEMM (benchmarks/core_phases.py prints each phase's GFLOP/s). The
 * kernel takes the weights packed once per call in RNNX_GEMM_NR-column panels (the last
 * one padded with zeros, so any n works) and keeps a tile of C in registers while p runs
 * over the shared dimension; the transposed variant adds up the weight gradients
 * (dW_hh += dz[t]^T h[t-1]) inside the backward time loop, while both blocks are in cache.
 *
 * src/_small_gemm.c is compiled once per variant, each with its own vector width and
 * compiler flags (CMakeLists.txt): on x86-64 "avx512" (16 floats a register), "avx2"
 * (x86-64-v3: 8 floats) and "generic" (the SSE2 baseline: 4 floats), picked at run time
 * from what the CPU runs; elsewhere "generic" alone, the baseline of the architecture
 * (NEON on arm64). CMake defines RNNX_HAVE_<VARIANT> for each variant it built; a
 * compiler without GCC's vector extensions (MSVC) builds none, and BLAS makes every
 * product. No -march flag touches the rest of the module.
 */
#ifndef RNNX_SMALL_GEMM_H
#define RNNX_SMALL_GEMM_H

#include <stddef.h>

#define RNNX_GEMM_NR 32          /* columns of a panel of packed weights */
#define RNNX_GEMM_MIN_COLS 16    /* narrower products waste most of a tile: BLAS or plain loops */

/* C (m, n) := beta C + op(A) @ M + op(A2) @ M2, beta 0 or 1, k2 = 0 for one product.
   gemm: op(A) = A (m, k) row-major, M (k, n) in panels; tn: op(A) = A^T for A (k, m)
   row-major, M (k, n) row-major (the rows of h or x of one step). */
typedef void (*rnnx_gemm_f_fn)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k,
                               const float *A, const float *M, ptrdiff_t k2,
                               const float *A2, const float *M2, float *C);
typedef void (*rnnx_gemm_d_fn)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k,
                               const double *A, const double *M, ptrdiff_t k2,
                               const double *A2, const double *M2, double *C);

/* the functions of one variant */
typedef struct {
    rnnx_gemm_f_fn gemm_f, tn_f;
    rnnx_gemm_d_fn gemm_d, tn_d;
} rnnx_gemm_kernels;

#if defined(__GNUC__) && !defined(_WIN32)
#  define RNNX_HIDDEN __attribute__((visibility("hidden")))
#else
#  define RNNX_HIDDEN
#endif

/* the variants, fastest first: the order "auto" tries them in */
enum { RNNX_KERNEL_AVX512 = 0, RNNX_KERNEL_AVX2 = 1, RNNX_KERNEL_GENERIC = 2,
       RNNX_KERNEL_COUNT = 3 };

#ifdef RNNX_HAVE_AVX512
RNNX_HIDDEN extern const rnnx_gemm_kernels rnnx_gemm_avx512;
#endif
#ifdef RNNX_HAVE_AVX2
RNNX_HIDDEN extern const rnnx_gemm_kernels rnnx_gemm_avx2;
#endif
#ifdef RNNX_HAVE_GENERIC
RNNX_HIDDEN extern const rnnx_gemm_kernels rnnx_gemm_generic;
#endif

/* The functions of variant id where it was built, else NULL. */
static inline const rnnx_gemm_kernels *rnnx_gemm_built(int id)
{
    switch (id) {
#ifdef RNNX_HAVE_AVX512
    case RNNX_KERNEL_AVX512: return &rnnx_gemm_avx512;
#endif
#ifdef RNNX_HAVE_AVX2
    case RNNX_KERNEL_AVX2: return &rnnx_gemm_avx2;
#endif
#ifdef RNNX_HAVE_GENERIC
    case RNNX_KERNEL_GENERIC: return &rnnx_gemm_generic;
#endif
    default: return NULL;
    }
}

/* Whether this CPU (and its OS, which must save the wide registers) runs variant id;
   the x86-64 variants are only ever built on x86-64. */
static inline int rnnx_gemm_cpu_runs(int id)
{
#if (defined(RNNX_HAVE_AVX512) || defined(RNNX_HAVE_AVX2)) && defined(__GNUC__)
    __builtin_cpu_init();
#endif
    switch (id) {
#ifdef RNNX_HAVE_AVX512
    case RNNX_KERNEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#ifdef RNNX_HAVE_AVX2
    case RNNX_KERNEL_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    case RNNX_KERNEL_GENERIC:
        return rnnx_gemm_built(id) != NULL;
    default:
        return 0;
    }
}

#endif
