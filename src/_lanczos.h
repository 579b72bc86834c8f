/* The vector loops of one Lanczos step of src/_spectral_norm.pxd: the product by a lag's
 * Gram matrix R R^T in one pass over R, the dot product and the three-term recurrence
 * with full reorthogonalisation. The product by a formed Gram matrix G stays BLAS's dsymv:
 * a loop over G's upper triangle was slower at H = 512 in back-to-back runs.
 *
 * A lag's step is a handful of operations on vectors of H entries (H of a hidden layer:
 * tens to hundreds) against a few dozen Lanczos vectors: a dozen BLAS level-1 and level-2
 * calls (ddot, daxpy, two dgemv per Gram-Schmidt pass), or these loops, which work
 * on four vectors at a time with two accumulators each (a multiply-add waits on the one
 * before it in the same accumulator). Either way the step is bound by reading R or G
 * from the cache (benchmarks/diagnostics.py times the spectral norm against the Frobenius
 * norm, whose products are the same); the loops keep it in one place, with no call in
 * between.
 */
#ifndef RNNX_LANCZOS_H
#define RNNX_LANCZOS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "_elementwise.h"        /* RNNX_MULTIVERSION */

#if defined(__GNUC__) || defined(__clang__)
#  define RNNX_LANCZOS_VECTOR 1
typedef double rnnx_v4d __attribute__((vector_size(32), aligned(8), may_alias));
#  define RNNX_V4(p) (*(rnnx_v4d *) (p))
#  define RNNX_SUM4(a) (((a)[0] + (a)[1]) + ((a)[2] + (a)[3]))
#else
#  define RNNX_LANCZOS_VECTOR 0
#endif

/* x . y for x, y (n,): four accumulators, as a multiply-add waits on the one before it in
   the same accumulator */
RNNX_MULTIVERSION static double rnnx_dot(const double *x, const double *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    double t = 0;
#if RNNX_LANCZOS_VECTOR
    rnnx_v4d a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= n; i += 16) {
        a0 += RNNX_V4(x + i) * RNNX_V4(y + i);
        a1 += RNNX_V4(x + i + 4) * RNNX_V4(y + i + 4);
        a2 += RNNX_V4(x + i + 8) * RNNX_V4(y + i + 8);
        a3 += RNNX_V4(x + i + 12) * RNNX_V4(y + i + 12);
    }
    for (; i + 4 <= n; i += 4)
        a0 += RNNX_V4(x + i) * RNNX_V4(y + i);
    a0 += a1;
    a2 += a3;
    a0 += a2;
    t = RNNX_SUM4(a0);
#endif
    for (; i < n; i++)
        t += x[i] * y[i];
    return t;
}

/* w := alpha R R^T v = alpha sum_c r_c (r_c . v) for R (H, H) column-major with leading
   dimension ld, in one pass over R: four columns at a time, their dots (four vector
   accumulators sharing the loads of v), then their axpys while they are in L1. Two
   matrix-vector products read R twice. */
RNNX_MULTIVERSION static void rnnx_gram_apply(const double *R, ptrdiff_t H, ptrdiff_t ld,
                                              double alpha, const double *v, double *w)
{
    ptrdiff_t c = 0, i, n4 = H & ~(ptrdiff_t) 3;
    memset(w, 0, (size_t) H * sizeof(double));
#if RNNX_LANCZOS_VECTOR
    for (; c + 4 <= H; c += 4) {
        const double *r0 = R + c * ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
        rnnx_v4d a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
        rnnx_v4d b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        double t0, t1, t2, t3;
        /* eight rows at a time: two accumulators a column, eight chains of multiply-adds */
        for (i = 0; i + 8 <= n4; i += 8) {
            rnnx_v4d x = RNNX_V4(v + i), y = RNNX_V4(v + i + 4);
            a0 += RNNX_V4(r0 + i) * x;
            a1 += RNNX_V4(r1 + i) * x;
            a2 += RNNX_V4(r2 + i) * x;
            a3 += RNNX_V4(r3 + i) * x;
            b0 += RNNX_V4(r0 + i + 4) * y;
            b1 += RNNX_V4(r1 + i + 4) * y;
            b2 += RNNX_V4(r2 + i + 4) * y;
            b3 += RNNX_V4(r3 + i + 4) * y;
        }
        for (; i < n4; i += 4) {
            rnnx_v4d x = RNNX_V4(v + i);
            a0 += RNNX_V4(r0 + i) * x;
            a1 += RNNX_V4(r1 + i) * x;
            a2 += RNNX_V4(r2 + i) * x;
            a3 += RNNX_V4(r3 + i) * x;
        }
        a0 += b0;
        a1 += b1;
        a2 += b2;
        a3 += b3;
        t0 = RNNX_SUM4(a0);
        t1 = RNNX_SUM4(a1);
        t2 = RNNX_SUM4(a2);
        t3 = RNNX_SUM4(a3);
        for (i = n4; i < H; i++) {
            t0 += r0[i] * v[i]; t1 += r1[i] * v[i]; t2 += r2[i] * v[i]; t3 += r3[i] * v[i];
        }
        t0 *= alpha; t1 *= alpha; t2 *= alpha; t3 *= alpha;
        for (i = 0; i < n4; i += 4)
            RNNX_V4(w + i) += t0 * RNNX_V4(r0 + i) + t1 * RNNX_V4(r1 + i)
                              + t2 * RNNX_V4(r2 + i) + t3 * RNNX_V4(r3 + i);
        for (i = n4; i < H; i++)
            w[i] += t0 * r0[i] + t1 * r1[i] + t2 * r2[i] + t3 * r3[i];
    }
#endif
    for (; c < H; c++) {                  /* the last H mod 4 columns (or all) */
        const double *r = R + c * ld;
        double t = 0;
        for (i = 0; i < H; i++)
            t += r[i] * v[i];
        t *= alpha;
        for (i = 0; i < H; i++)
            w[i] += t * r[i];
    }
}

/* The Lanczos recurrence's residual, V holding the m orthonormal rows v_0..v_{m-1} of H:
   w (which holds G v_{m-1}) := w - a v_{m-1} - b v_{m-2} (b unused where m = 1), then
   orthogonal to every row of V (full reorthogonalisation: rounding, which Lanczos
   amplifies, leaves components along the earlier rows) by classical Gram-Schmidt,
   repeated where a pass removed more than 1 - 1/sqrt(2) of w's norm (the criterion of
   Daniel, Gragg, Kaufman and Stewart: after such a pass w is orthogonal to V to working
   precision). Returns ||w||. c: m of scratch. */
RNNX_MULTIVERSION static double rnnx_lanczos_residual(const double *V, ptrdiff_t m,
                                                      ptrdiff_t H, double a, double b,
                                                      double *w, double *c)
{
    const double *vj = V + (m - 1) * H, *vp = m > 1 ? V + (m - 2) * H : vj;
    ptrdiff_t i, r, pass;
    double before, after = 0;
    if (m == 1)
        b = 0;
    for (i = 0; i < H; i++)
        w[i] -= a * vj[i] + b * vp[i];
    before = sqrt(rnnx_dot(w, w, H));
    for (pass = 0; pass < 2; pass++) {
        /* c := V w   (m,) = (m, H) @ (H,) */
        for (r = 0; r < m; r++)
            c[r] = rnnx_dot(V + r * H, w, H);
        /* w := w - V^T c   (H,) = (H,) - (H, m) @ (m,), four rows of V at a time */
        r = 0;
#if RNNX_LANCZOS_VECTOR
        for (; r + 4 <= m; r += 4) {
            const double *x0 = V + r * H, *x1 = x0 + H, *x2 = x1 + H, *x3 = x2 + H;
            const double c0 = c[r], c1 = c[r + 1], c2 = c[r + 2], c3 = c[r + 3];
            for (i = 0; i + 4 <= H; i += 4)
                RNNX_V4(w + i) -= c0 * RNNX_V4(x0 + i) + c1 * RNNX_V4(x1 + i)
                                  + c2 * RNNX_V4(x2 + i) + c3 * RNNX_V4(x3 + i);
            for (; i < H; i++)
                w[i] -= c0 * x0[i] + c1 * x1[i] + c2 * x2[i] + c3 * x3[i];
        }
#endif
        for (; r < m; r++)
            for (i = 0; i < H; i++)
                w[i] -= c[r] * V[r * H + i];
        after = sqrt(rnnx_dot(w, w, H));
        if (after >= 0.7071 * before)
            break;
        before = after;
    }
    return after;
}

#endif
