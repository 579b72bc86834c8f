/* A unit test of one build of the register-blocked kernel (src/_small_gemm.c) against plain
 * loops, for a compiler and a CPU (or an emulator) the Python package is not built with:
 *
 *   cc -O2 -Isrc -DRNNX_VARIANT=generic -DRNNX_VECTOR_BYTES=16 \
 *      tests/c/test_small_gemm.c src/_small_gemm.c -o test_small_gemm && ./test_small_gemm
 *
 * (tools/check_kernel_cross.sh builds it for aarch64 and runs it under qemu; the x86-64
 * variants take their flags from CMakeLists.txt.) Every shape is a product the time
 * loops make: both functions, both dtypes, beta 0 and 1, one and two products, m, n and
 * k around the tiles, the panel and the vector width. Prints "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "_small_gemm.h"

#define GLUE_(a, b) a##_##b
#define GLUE(a, b) GLUE_(a, b)
extern const rnnx_gemm_kernels GLUE(rnnx_gemm, RNNX_VARIANT);
#define KERNELS GLUE(rnnx_gemm, RNNX_VARIANT)

static double value(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return ((*state >> 8) & 0xffff) / 32768.0 - 1.0;
}

/* M (k, n) in panels of RNNX_GEMM_NR columns, padded with zeros */
#define PANELS(T, M, k, n, P)                                                            \
    for (ptrdiff_t j = 0; j < ((n) + RNNX_GEMM_NR - 1) / RNNX_GEMM_NR * RNNX_GEMM_NR; j++) \
        for (ptrdiff_t p = 0; p < (k); p++)                                              \
            (P)[(j / RNNX_GEMM_NR) * (k) * RNNX_GEMM_NR + p * RNNX_GEMM_NR + j % RNNX_GEMM_NR] \
                = j < (n) ? (M)[p * (n) + j] : 0;

#define CHECK(T, FN_GEMM, FN_TN, EPS)                                                    \
    static int check_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, ptrdiff_t k2, int beta,  \
                         int tn)                                                          \
    {                                                                                     \
        unsigned s = (unsigned)(m * 7919 + n * 104729 + k * 31 + k2 * 17 + beta + tn);    \
        const ptrdiff_t np = (n + RNNX_GEMM_NR - 1) / RNNX_GEMM_NR * RNNX_GEMM_NR;        \
        T *A = malloc(sizeof(T) * (m * k + 1)), *A2 = malloc(sizeof(T) * (m * k2 + 1));   \
        T *M = malloc(sizeof(T) * (k * n + 1)), *M2 = malloc(sizeof(T) * (k2 * n + 1));   \
        T *P = malloc(sizeof(T) * (k * np + 1)), *P2 = malloc(sizeof(T) * (k2 * np + 1)); \
        T *C = malloc(sizeof(T) * (m * n + 1));                                           \
        double *R = malloc(sizeof(double) * (m * n + 1));                                 \
        int bad = 0;                                                                      \
        for (ptrdiff_t i = 0; i < m * k; i++) A[i] = (T)value(&s);                        \
        for (ptrdiff_t i = 0; i < m * k2; i++) A2[i] = (T)value(&s);                      \
        for (ptrdiff_t i = 0; i < k * n; i++) M[i] = (T)value(&s);                        \
        for (ptrdiff_t i = 0; i < k2 * n; i++) M2[i] = (T)value(&s);                      \
        for (ptrdiff_t i = 0; i < m * n; i++) C[i] = (T)value(&s);                        \
        PANELS(T, M, k, n, P)                                                             \
        PANELS(T, M2, k2, n, P2)                                                          \
        for (ptrdiff_t i = 0; i < m; i++)                                                 \
            for (ptrdiff_t j = 0; j < n; j++) {                                           \
                double r = beta ? C[i * n + j] : 0;                                       \
                for (ptrdiff_t p = 0; p < k; p++)                                         \
                    r += (double)(tn ? A[p * m + i] : A[i * k + p]) * M[p * n + j];       \
                for (ptrdiff_t p = 0; p < k2 && !tn; p++)                                 \
                    r += (double)A2[i * k2 + p] * M2[p * n + j];                          \
                R[i * n + j] = r;                                                         \
            }                                                                             \
        if (tn)                                                                           \
            KERNELS.FN_TN(m, n, beta, k, A, M, 0, NULL, NULL, C);                         \
        else                                                                              \
            KERNELS.FN_GEMM(m, n, beta, k, A, P, k2, A2, P2, C);                          \
        for (ptrdiff_t i = 0; i < m * n; i++)                                             \
            if (!(fabs(C[i] - R[i]) <= EPS * (k + k2 + 1)))                               \
                bad = 1;                                                                  \
        free(A); free(A2); free(M); free(M2); free(P); free(P2); free(C); free(R);        \
        if (bad)                                                                          \
            printf("FAILED %s %s m=%td n=%td k=%td k2=%td beta=%d\n", #T,                 \
                   tn ? "tn" : "gemm", m, n, k, k2, beta);                                \
        return bad;                                                                       \
    }

CHECK(float, gemm_f, tn_f, 1e-5)
CHECK(double, gemm_d, tn_d, 1e-12)

int main(void)
{
    static const ptrdiff_t ms[] = {1, 3, 4, 7, 8, 13, 25};
    static const ptrdiff_t ns[] = {1, 5, 16, 17, 31, 32, 33, 50, 64, 100, 130, 520};
    static const ptrdiff_t ks[] = {1, 3, 20};
    int passed = 0, failed = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++)
                for (int beta = 0; beta < 2; beta++)
                    for (int tn = 0; tn < 2; tn++)
                        for (ptrdiff_t k2 = 0; k2 <= (tn ? 0 : 5); k2 += 5) {
                            const ptrdiff_t m = tn ? ns[b] : ms[a], n = tn ? ms[a] + 15 : ns[b];
                            int bad = check_float(m, n, ks[c], k2, beta, tn)
                                      + check_double(m, n, ks[c], k2, beta, tn);
                            passed += !bad;
                            failed += !!bad;
                        }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
