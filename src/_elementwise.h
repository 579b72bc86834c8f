/* Elementwise loops over arrays -- tanh, its derivative, column sums, sums of squares, the
 * non-finite count -- written so the compiler vectorises them.
 *
 * libm's tanh is a scalar call per element; the forward pass applies it to every element
 * of h, where it cost more than the recurrent GEMM itself for H around 100
 * (benchmarks/core_phases.py times the forward loop). These branch-free
 * versions (both branches computed, then selected) vectorise, and on x86-64 Linux with GCC
 * each loop is compiled for AVX-512, AVX2 and the SSE2 baseline and picked at load time
 * (target_clones), so no -march flag is baked into the wheel.
 *
 * Accuracy (checked by tests/test_tanh.py against numpy): within 2 ulp.
 *   |x| < 0.625:  tanh x = x + x^3 P(x^2) / Q(x^2)     (Cephes-style odd rational fit;
 *                 float: an odd polynomial)
 *   |x| >= 0.625: tanh |x| = 1 - 2 / (e + 1), e = exp(2|x|)  (no cancellation: tanh > 0.55)
 * exp(a), a = 2|x| clamped where tanh already rounds to 1: a = n ln2 + r, |r| <= ln2 / 2,
 * exp(r) by its Taylor polynomial, 2^n by writing n into the exponent bits.
 */
#ifndef RNNX_ELEMENTWISE_H
#define RNNX_ELEMENTWISE_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include <Python.h>

#if defined(_MSC_VER) && !defined(__cplusplus)
#  define restrict __restrict      /* MSVC's C spells C99's restrict this way */
#endif

/* GCC >= 12: older ones cannot dispatch on x86-64-v4; glibc: target_clones needs ifunc,
   which musl lacks */
#if defined(__GNUC__) && __GNUC__ >= 12 && !defined(__clang__) && defined(__x86_64__) \
    && defined(__ELF__) && defined(__GLIBC__)
#  define RNNX_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#  define RNNX_MULTIVERSION
#endif

static inline double rnnx_bits_to_d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static inline uint64_t rnnx_d_to_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static inline float rnnx_bits_to_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t rnnx_f_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline double rnnx_tanh_d(double x)
{
    const double y = fabs(x), z = x * x;
    /* small |x| */
    const double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
                     - 1.61468768441708447952e3;
    const double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
                     + 4.84406305325125486048e3;
    /* large |x|: 1 - tanh(22) = 1.6e-19 rounds away in double precision; NaN passes through the clamp */
    const double a = 2.0 * (y > 22.0 ? 22.0 : y);
    const double shift = 6755399441055744.0;             /* 1.5 * 2^52: adding it rounds to an integer */
    const double t = a * 1.4426950408889634 + shift;     /* n = round(a / ln2) in low bits */
    const double n = t - shift;
    const double r = (a - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double e = 1.0 / 6227020800.0;                       /* 1/13! */
    e = e * r + 1.0 / 479001600.0;
    e = e * r + 1.0 / 39916800.0;
    e = e * r + 1.0 / 3628800.0;
    e = e * r + 1.0 / 362880.0;
    e = e * r + 1.0 / 40320.0;
    e = e * r + 1.0 / 5040.0;
    e = e * r + 1.0 / 720.0;
    e = e * r + 1.0 / 120.0;
    e = e * r + 1.0 / 24.0;
    e = e * r + 1.0 / 6.0;
    e = e * r + 0.5;
    e = e * r + 1.0;
    e = e * r + 1.0;
    e *= rnnx_bits_to_d((rnnx_d_to_bits(t) + 1023u) << 52);   /* times 2^n */
    /* one division serves both branches: tanh |x| = base + num / den with
       small: y + (y z p) / q,  large: 1 - 2 / (e + 1); the sign goes on last so that
       tanh(-x) = -tanh(x) exactly, zeros included */
    const int is_small = y < 0.625;
    const double base = is_small ? y : 1.0;
    const double num = is_small ? y * z * p : -2.0;
    return copysign(base + num / (is_small ? q : e + 1.0), x);
}

static inline float rnnx_tanh_f(float x)
{
    const float y = fabsf(x), z = x * x;
    const float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z
                           - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z
                         - 3.33332819422e-1f) * z * y + y;    /* a polynomial: no division */
    /* 1 - tanh(10) = 4e-9 rounds away in single precision */
    const float a = 2.0f * (y > 10.0f ? 10.0f : y);
    const float shift = 12582912.0f;                     /* 1.5 * 2^23 */
    const float t = a * 1.44269504f + shift;
    const float n = t - shift;
    const float r = (a - n * 0.693145752f) - n * 1.42860677e-6f;
    float e = 1.0f / 40320.0f;
    e = e * r + 1.0f / 5040.0f;
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    e *= rnnx_bits_to_f((rnnx_f_to_bits(t) + 127u) << 23);
    const float large = 1.0f - 2.0f / (e + 1.0f);
    return copysignf(y < 0.625f ? small : large, x);   /* odd, zeros included */
}

/* z[r, c] := tanh(z[r, c] + b[c]) for a row-major (rows, cols) block. Returns the number
   of pre-activations z + b that were not finite (an overflow of the products before them,
   which tanh would hide by rounding it to +-1): the caller reports them. They are counted
   by their exponent bits, as rnnx_count_nonfinite does, which keeps the loop vectorised. */
#define RNNX_DEFINE_TANH_BIAS(SUFFIX, T, UINT, EXP_BITS)                               \
    RNNX_MULTIVERSION static Py_ssize_t rnnx_tanh_bias_##SUFFIX(                       \
        T *restrict z, const T *restrict b, Py_ssize_t rows, Py_ssize_t cols)          \
    {                                                                                  \
        Py_ssize_t bad = 0;                                                            \
        for (Py_ssize_t i = 0; i < rows; i++, z += cols)                               \
            for (Py_ssize_t j = 0; j < cols; j++) {                                    \
                const T v = z[j] + b[j];                                               \
                UINT u;                                                                \
                memcpy(&u, &v, sizeof u);                                              \
                bad += (u & EXP_BITS) == EXP_BITS;                                     \
                z[j] = rnnx_tanh_##SUFFIX(v);                                          \
            }                                                                          \
        return bad;                                                                    \
    }

/* dz[i] := delta[i] * (1 - h[i]^2), the backward step through tanh */
#define RNNX_DEFINE_DTANH(SUFFIX, T)                                                   \
    RNNX_MULTIVERSION static void rnnx_dtanh_##SUFFIX(                                 \
        T *restrict dz, const T *restrict delta, const T *restrict h, Py_ssize_t n)    \
    {                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++)                                             \
            dz[i] = delta[i] * (1 - h[i] * h[i]);                                      \
    }

/* acc[j] += sum over rows i of a[i, j] for a row-major (rows, cols) block: column sums */
#define RNNX_DEFINE_ADD_ROWS(SUFFIX, T)                                                \
    RNNX_MULTIVERSION static void rnnx_add_rows_##SUFFIX(                              \
        T *restrict acc, const T *restrict a, Py_ssize_t rows, Py_ssize_t cols)        \
    {                                                                                  \
        for (Py_ssize_t i = 0; i < rows; i++, a += cols)                               \
            for (Py_ssize_t j = 0; j < cols; j++)                                      \
                acc[j] += a[j];                                                        \
    }

/* number of NaN or infinite entries: those whose exponent bits are all ones */
#define RNNX_DEFINE_COUNT_NONFINITE(SUFFIX, T, UINT, SHIFT, EXP_MASK)                  \
    RNNX_MULTIVERSION static Py_ssize_t rnnx_count_nonfinite_##SUFFIX(                 \
        const T *restrict a, Py_ssize_t n)                                             \
    {                                                                                  \
        Py_ssize_t bad = 0;                                                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                           \
            UINT u;                                                                    \
            memcpy(&u, a + i, sizeof u);                                               \
            bad += ((u >> SHIFT) & EXP_MASK) == EXP_MASK;                              \
        }                                                                              \
        return bad;                                                                    \
    }

/* sum of a[i]^2 in double, in a fixed order (8 running sums, added up at the end): the
   same bits whatever else runs, unlike a BLAS dot that may split long vectors over its
   threads. float squares cannot overflow a double; double ones can (the caller checks). */
#define RNNX_DEFINE_SUM_SQUARES(SUFFIX, T)                                             \
    RNNX_MULTIVERSION static double rnnx_sum_squares_##SUFFIX(                         \
        const T *restrict a, Py_ssize_t n)                                             \
    {                                                                                  \
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                        \
        Py_ssize_t i = 0;                                                              \
        for (; i + 8 <= n; i += 8)                                                     \
            for (int k = 0; k < 8; k++)                                                \
                s[k] += (double)a[i + k] * (double)a[i + k];                           \
        for (; i < n; i++)                                                             \
            s[0] += (double)a[i] * (double)a[i];                                       \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));      \
    }

/* the index of the first entry outside [-1, 1] (NaN included), or -1: the check that an
   array is a tanh output, run on h by every rnn_backward. A loop that stops at the first
   bad entry does not vectorise; so each chunk is counted without a branch, and only a
   chunk with a bad entry is searched. */
#define RNNX_UNIT_CHUNK 512
#define RNNX_DEFINE_FIRST_OUTSIDE_UNIT(SUFFIX, T)                                      \
    RNNX_MULTIVERSION static Py_ssize_t rnnx_first_outside_unit_##SUFFIX(              \
        const T *restrict a, Py_ssize_t n)                                             \
    {                                                                                  \
        for (Py_ssize_t i0 = 0; i0 < n; i0 += RNNX_UNIT_CHUNK) {                       \
            const Py_ssize_t i1 = n - i0 < RNNX_UNIT_CHUNK ? n : i0 + RNNX_UNIT_CHUNK; \
            int bad = 0;                                                               \
            for (Py_ssize_t i = i0; i < i1; i++)                                       \
                bad |= !((a[i] >= (T)-1) & (a[i] <= (T)1));                        \
            if (bad)                                                                   \
                for (Py_ssize_t i = i0; i < i1; i++)                                   \
                    if (!(a[i] >= (T)-1 && a[i] <= (T)1))                          \
                        return i;                                                      \
        }                                                                              \
        return -1;                                                                     \
    }

/* C (m, n) += op(A) @ M for a row-major M (k, n): op(A) = A for A (m, k), or A^T for
   A (k, m) with a_trans. Plain loops, vectorised over a row of C: the products by W_xh
   in the time loops of blocks where the register-blocked kernel does not tile D (not a
   multiple of 32), where a BLAS call would start BLAS's own threads. */
#define RNNX_DEFINE_PLAIN_GEMM(SUFFIX, T)                                              \
    RNNX_MULTIVERSION static void rnnx_plain_gemm_##SUFFIX(                            \
        Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, int a_trans, const T *restrict A,    \
        const T *restrict M, T *restrict C)                                            \
    {                                                                                  \
        /* op(A)[i, p] = A[i * si + p * sp] */                                         \
        const Py_ssize_t si = a_trans ? 1 : k, sp = a_trans ? m : 1;                   \
        for (Py_ssize_t i = 0; i < m; i++)                                             \
            for (Py_ssize_t p = 0; p < k; p++) {                                       \
                const T a = A[i * si + p * sp];                                        \
                for (Py_ssize_t j = 0; j < n; j++)                                     \
                    C[i * n + j] += a * M[p * n + j];                                  \
            }                                                                          \
    }

/* a flag that several threads share (set by one, read by the others in their loops) */
static inline int rnnx_flag_get(const int *p) { return *(const volatile int *)p; }
static inline void rnnx_flag_set(int *p) { *(volatile int *)p = 1; }

RNNX_DEFINE_TANH_BIAS(d, double, uint64_t, 0x7ff0000000000000u)
RNNX_DEFINE_TANH_BIAS(f, float, uint32_t, 0x7f800000u)
RNNX_DEFINE_DTANH(d, double)
RNNX_DEFINE_DTANH(f, float)
RNNX_DEFINE_ADD_ROWS(d, double)
RNNX_DEFINE_ADD_ROWS(f, float)
RNNX_DEFINE_COUNT_NONFINITE(d, double, uint64_t, 52, 0x7ffu)
RNNX_DEFINE_COUNT_NONFINITE(f, float, uint32_t, 23, 0xffu)
RNNX_DEFINE_SUM_SQUARES(d, double)
RNNX_DEFINE_SUM_SQUARES(f, float)
RNNX_DEFINE_FIRST_OUTSIDE_UNIT(d, double)
RNNX_DEFINE_FIRST_OUTSIDE_UNIT(f, float)
RNNX_DEFINE_PLAIN_GEMM(d, double)
RNNX_DEFINE_PLAIN_GEMM(f, float)

#endif
