/* C := beta C + A @ M + A2 @ M2 (and the same with A^T, A2^T) for the per-step products
 * of a tanh RNN.
 *
 * Every time step multiplies a (B, H) block by the same (H, H) matrix. A BLAS GEMM packs M
 * again on every call, which keeps a per-step product of a few dozen rows well below the
 * rate of one large GEMM (benchmarks/core_phases.py prints each phase's GFLOP/s).
 * This register-blocked kernel takes the weights packed once per call, in 32-column
 * panels: a 4 x 32 tile of C stays in registers while p runs over the shared dimension
 * (C[i, j:j+32] += A[i, p] * M[p, j:j+32]), and j-panels are the outer loop so a panel of
 * M stays in cache across the i-tiles. The transposed variant accumulates the weight
 * gradients (dW_hh += dz[t]^T h[t-1]) inside the backward time loop, while both blocks
 * are still in cache, instead of one large GEMM over every step afterwards.
 * Compiled for AVX-512 (x86-64-v4) and used only where that is present at run time
 * and the shapes tile exactly; everywhere else the caller uses BLAS, so no -march flag is
 * baked into the wheel and other CPUs lose nothing.
 */
#ifndef RNNX_SMALL_GEMM_H
#define RNNX_SMALL_GEMM_H

#include <Python.h>

#define RNNX_GEMM_MR 4      /* rows of a C tile */
#define RNNX_GEMM_NR 32     /* columns of a C tile: 2 (float) or 4 (double) AVX-512 registers */
#define RNNX_GEMM_PREFETCH_BYTES (1 << 20)  /* C from this size on is fetched a tile ahead */

/* GCC >= 12: older ones cannot test for x86-64-v4; glibc: the dispatch needs its ifunc */
#if defined(__GNUC__) && __GNUC__ >= 12 && !defined(__clang__) && defined(__x86_64__) \
    && defined(__ELF__) && defined(__GLIBC__)

/* 1 when the kernel may be used for C (m, n) += A (m, k) @ M (k, n) */
static int rnnx_small_gemm_fits(Py_ssize_t m, Py_ssize_t n)
{
    static int have_avx512 = -1;   /* a benign race: every thread writes the same value */
    if (have_avx512 < 0)
        have_avx512 = __builtin_cpu_supports("x86-64-v4") != 0;
    return have_avx512 && m >= RNNX_GEMM_MR && n % RNNX_GEMM_NR == 0;
}

/* A_AT(A, k, p, i) is the entry of op(A) in row i, column p, for op(A) (m, k):
   A (m, k) row-major for op(A) = A, A (k, m) row-major for op(A) = A^T. */
#define RNNX_SMALL_GEMM_A(A, k, p, i) (A)[(i) * (k) + (p)]
#define RNNX_SMALL_GEMM_AT(A, k, p, i) (A)[(p) * m + (i)]

/* M_AT(M, k, p, j0) points at M[p, j0:j0+NR] for M (k, n): row-major, or in panels (the
   n / NR column panels one after the other, each k x NR row-major). A weight matrix in
   panels is read as one contiguous stream per panel; row-major, its rows n entries apart
   cross a page every few rows, which cost the per-step product at H = 512. */
#define RNNX_SMALL_GEMM_ROWS(M, k, p, j0) ((M) + (p) * n + (j0))
#define RNNX_SMALL_GEMM_PANELS(M, k, p, j0) ((M) + (j0) * (k) + (p) * RNNX_GEMM_NR)

/* acc (the MR x NR tile at rows i0.., columns j0..) += op(A)[i0:i0+MR, :k] @ M[:k, j0:j0+NR] */
#define RNNX_SMALL_GEMM_TILE(A_AT, M_AT, A, M, k)                                           \
    for (Py_ssize_t p = 0; p < (k); p++) {                                                  \
        V mp[NV];                       /* M[p, j0:j0+NR] */                                \
        for (int v = 0; v < NV; v++)                                                        \
            mp[v] = *(const V *)(M_AT(M, k, p, j0) + v * L);                                \
        for (int r = 0; r < MR; r++) {                                                      \
            const S a = A_AT(A, k, p, i0 + r);                                              \
            for (int v = 0; v < NV; v++)                                                    \
                acc[r][v] += a * mp[v];                                                     \
        }                                                                                   \
    }

/* C[i0, j0:j0+NR] += op(A)[i0, :k] @ M[:k, j0:j0+NR], one row left over from the tiles */
#define RNNX_SMALL_GEMM_ROW(A_AT, M_AT, A, M, k)                                            \
    for (Py_ssize_t p = 0; p < (k); p++) {                                                  \
        const S a = A_AT(A, k, p, i0);                                                      \
        for (int j = 0; j < NR; j++)                                                        \
            C[i0 * n + j0 + j] += a * M_AT(M, k, p, j0)[j];                                 \
    }

/* C (m, n) := beta C + op(A) @ M + op(A2) @ M2, beta 0 or 1; M (k, n) and M2 (k2, n)
   laid out as M_AT reads them; k2 = 0 for one product (A2 and M2 are then not read).
   The tile is held as vectors of GCC's vector extension (L = 16 floats or 8 doubles a
   register), so that the compiler keeps it in registers from the load of C to the store;
   with plain arrays GCC copied the tile through the stack on the way in and out, a cost
   that shows most where k is short (the weight gradients: k = B). */
#define RNNX_DEFINE_SMALL_GEMM(NAME, T, A_AT, M_AT)                                         \
    __attribute__((target("arch=x86-64-v4"))) static void NAME(                             \
        Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k, const T *restrict A,            \
        const T *restrict M, Py_ssize_t k2, const T *restrict A2, const T *restrict M2,     \
        T *restrict C)                                                                      \
    {                                                                                       \
        typedef T S;                    /* the scalar type, for the macros above */         \
        /* unaligned, and allowed to alias the T it is loaded from */                       \
        typedef T V __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));        \
        enum { MR = RNNX_GEMM_MR, NR = RNNX_GEMM_NR, L = 64 / sizeof(T), NV = NR / L };     \
        /* a C too large for L2 (a weight gradient of H = 512) comes from L3 tile by tile, \
           and the tile's loads stall unless the next tile is fetched ahead */              \
        const int ahead = beta && (size_t)m * n * sizeof(T) >= RNNX_GEMM_PREFETCH_BYTES;    \
        for (Py_ssize_t j0 = 0; j0 < n; j0 += NR) {                                         \
            Py_ssize_t i0 = 0;                                                              \
            for (; i0 + MR <= m; i0 += MR) {                                                \
                if (ahead && i0 + 2 * MR <= m)                                              \
                    for (int r = 0; r < MR; r++)                                            \
                        for (int v = 0; v < NV; v++)                                        \
                            __builtin_prefetch(C + (i0 + MR + r) * n + j0 + v * L, 0, 1);   \
                V acc[MR][NV];                                                              \
                for (int r = 0; r < MR; r++)                                                \
                    for (int v = 0; v < NV; v++)                                            \
                        acc[r][v] = beta ? *(const V *)(C + (i0 + r) * n + j0 + v * L)      \
                                         : (V){0};                                          \
                RNNX_SMALL_GEMM_TILE(A_AT, M_AT, A, M, k)                                   \
                RNNX_SMALL_GEMM_TILE(A_AT, M_AT, A2, M2, k2)                                \
                for (int r = 0; r < MR; r++)                                                \
                    for (int v = 0; v < NV; v++)                                            \
                        *(V *)(C + (i0 + r) * n + j0 + v * L) = acc[r][v];                  \
            }                                                                               \
            for (; i0 < m; i0++) {          /* the last m % MR rows, one at a time */       \
                if (!beta)                                                                  \
                    for (int j = 0; j < NR; j++)                                            \
                        C[i0 * n + j0 + j] = 0;                                             \
                RNNX_SMALL_GEMM_ROW(A_AT, M_AT, A, M, k)                                    \
                RNNX_SMALL_GEMM_ROW(A_AT, M_AT, A2, M2, k2)                                 \
            }                                                                               \
        }                                                                                   \
    }

#else

static int rnnx_small_gemm_fits(Py_ssize_t m, Py_ssize_t n) { (void)m; (void)n; return 0; }

#define RNNX_DEFINE_SMALL_GEMM(NAME, T, A_AT, M_AT)                                         \
    static void NAME(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k, const T *A,       \
                     const T *M, Py_ssize_t k2, const T *A2, const T *M2, T *C)             \
    {                                                                                       \
        (void)m; (void)n; (void)beta; (void)k; (void)A; (void)M;   /* never called */       \
        (void)k2; (void)A2; (void)M2; (void)C;                                              \
    }

#endif

/* the per-step products: M a weight matrix, in panels */
RNNX_DEFINE_SMALL_GEMM(rnnx_small_gemm_d, double, RNNX_SMALL_GEMM_A, RNNX_SMALL_GEMM_PANELS)
RNNX_DEFINE_SMALL_GEMM(rnnx_small_gemm_f, float, RNNX_SMALL_GEMM_A, RNNX_SMALL_GEMM_PANELS)
/* the weight gradients: M the rows of h or x of one step, row-major */
RNNX_DEFINE_SMALL_GEMM(rnnx_small_gemm_tn_d, double, RNNX_SMALL_GEMM_AT, RNNX_SMALL_GEMM_ROWS)
RNNX_DEFINE_SMALL_GEMM(rnnx_small_gemm_tn_f, float, RNNX_SMALL_GEMM_AT, RNNX_SMALL_GEMM_ROWS)

#endif
