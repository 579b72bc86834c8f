/* The kernel of one dtype, included by _small_gemm.c once per dtype with T (the scalar),
 * S (its suffix), and the tiles (rows x vectors) of the two products: MR_GEMM x NV_GEMM
 * (weights in panels) and MR_TN x NV_TN (the weight gradients). Defines gemm_<S> and
 * tn_<S> (_small_gemm.h says what they compute), and undefines those parameters at its end.
 *
 * C is made in column strips of up to nvf vectors (a strip never crosses a panel), and
 * each strip in tiles of mrf rows (the last m % mrf rows in one smaller tile): the strip
 * of M stays in cache across the row tiles. Where n is not a multiple of the vector
 * width, the last vector of the last strip is partial: its lanes past n are neither read
 * from C nor written (they belong to C's next row, or lie past its end), nor read from a
 * row-major M (the transposed variant: its rows end there too); panels need no care, their
 * last one is padded with zeros when packed.
 */
#define N(name) RNNX_GLUE(name, S)
#define VEC N(vec)
#define LN ((int)(RNNX_VECTOR_BYTES / sizeof(T)))
#define INLINE static inline __attribute__((always_inline))
#define MAX_(a, b) ((a) > (b) ? (a) : (b))
#define MR MAX_(MR_GEMM, MR_TN)           /* the largest tile: the size of the arrays */
#define NV MAX_(NV_GEMM, NV_TN)

/* unaligned, and allowed to alias the T it is loaded from */
typedef T VEC __attribute__((vector_size(RNNX_VECTOR_BYTES), aligned(sizeof(T)), may_alias));

/* the first rem lanes of p (0 < rem < LN), the others zero; the lanes past rem are not
   touched (masked loads where the instruction set has them, else lane by lane) */
INLINE VEC N(load_part)(const T *p, const int rem)
{
#if RNNX_VECTOR_BYTES == 64 && defined(__AVX512F__)
    if (sizeof(T) == 4)
        return (VEC)_mm512_maskz_loadu_ps((__mmask16)((1u << rem) - 1), p);
    return (VEC)_mm512_maskz_loadu_pd((__mmask8)((1u << rem) - 1), p);
#elif RNNX_VECTOR_BYTES == 32 && defined(__AVX2__)
    if (sizeof(T) == 4)
        return (VEC)_mm256_maskload_ps((const float *)p, _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    return (VEC)_mm256_maskload_pd((const double *)p, _mm256_cmpgt_epi64(
        _mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3)));
#else
    VEC v = {0};
    for (int l = 0; l < rem; l++)
        v[l] = p[l];
    return v;
#endif
}

/* p[:rem] := the first rem lanes of v */
INLINE void N(store_part)(T *p, const VEC v, const int rem)
{
#if RNNX_VECTOR_BYTES == 64 && defined(__AVX512F__)
    if (sizeof(T) == 4)
        _mm512_mask_storeu_ps(p, (__mmask16)((1u << rem) - 1), (__m512)v);
    else
        _mm512_mask_storeu_pd(p, (__mmask8)((1u << rem) - 1), (__m512d)v);
#elif RNNX_VECTOR_BYTES == 32 && defined(__AVX2__)
    if (sizeof(T) == 4)
        _mm256_maskstore_ps((float *)p, _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), (__m256)v);
    else
        _mm256_maskstore_pd((double *)p, _mm256_cmpgt_epi64(
            _mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3)), (__m256d)v);
#else
    for (int l = 0; l < rem; l++)
        p[l] = v[l];
#endif
}

/* the vector v of a row of nv at p: whole, or the first rem lanes where part and v is the
   last (part is a constant wherever this is inlined) */
#define RNNX_LOAD(p, v, part)                                                             \
    ((part) && (v) == nv - 1 ? N(load_part)((p) + (v) * LN, rem)                          \
                             : *(const VEC *)((p) + (v) * LN))

/* one product op(A) @ M of a tile: op(A)[i, p] = A[i * ai + p * ap], M[p, :] at M + p * ms;
   the tile of the rows from i0 (a multiple of the tile height) on starts at A + i0 * ti */
typedef struct {
    ptrdiff_t k;
    const T *A;
    ptrdiff_t ai, ap, ti;
    const T *M;
    ptrdiff_t ms;
} N(operand);

/* the same product for the rows from i0 on */
INLINE N(operand) N(from_row)(N(operand) o, ptrdiff_t i0)
{
    if (o.k)
        o.A += i0 * o.ti;
    return o;
}

/* acc (mr x nv vectors) += op(A)[:mr, :k] @ M[:k, :nv vectors]; a partial last vector of
   M is read lane by lane where M is row-major (part_m) */
#define RNNX_ACCUMULATE(o, part_m)                                                        \
    for (ptrdiff_t p = 0; p < (o).k; p++) {                                               \
        VEC mp[NV];                                                                       \
        for (int v = 0; v < nv && v < NV; v++)                                            \
            mp[v] = RNNX_LOAD((o).M + p * (o).ms, v, part_m);                             \
        for (int r = 0; r < mr && r < MR; r++) {                                          \
            const T s_ = (o).A[r * (o).ai + p * (o).ap];                                  \
            for (int v = 0; v < nv && v < NV; v++)                                        \
                acc[r][v] += s_ * mp[v];                                                  \
        }                                                                                 \
    }

/* C[:mr, :nv vectors] := beta C + op(A) @ M + op(A2) @ M2 (ldc apart), the last vector
   rem lanes wide where part (rows: part_m too); mr, nv, part and part_m are constants
   wherever this is inlined, so the loops unroll and acc lives in registers */
INLINE void N(tile)(const int mr, const int nv, const int part, const int part_m,
                    const int rem, const int beta, const N(operand) a, const N(operand) b,
                    T *restrict C, const ptrdiff_t ldc)
{
    VEC acc[MR][NV];
    for (int r = 0; r < mr && r < MR; r++)
        for (int v = 0; v < nv && v < NV; v++)
            acc[r][v] = beta ? RNNX_LOAD(C + r * ldc, v, part) : (VEC){0};
    RNNX_ACCUMULATE(a, part_m)
    RNNX_ACCUMULATE(b, part_m)
    for (int r = 0; r < mr && r < MR; r++)
        for (int v = 0; v < nv && v < NV; v++) {
            if (part && v == nv - 1)
                N(store_part)(C + r * ldc + v * LN, acc[r][v], rem);
            else
                *(VEC *)(C + r * ldc + v * LN) = acc[r][v];
        }
}

/* C[:m, :nv vectors] (ldc apart) := beta C + ..., every row: tiles of mrf rows, then one
   of the rows left (an instance per count) */
INLINE void N(strip)(const int mrf, const int nv, const int part, const int part_m,
                     const int rem, const ptrdiff_t m, const int beta, const int ahead,
                     const N(operand) a, const N(operand) b, T *restrict C,
                     const ptrdiff_t ldc)
{
    ptrdiff_t i0 = 0;
    for (; i0 + mrf <= m; i0 += mrf) {
        if (ahead && i0 + 2 * mrf <= m)
            for (int r = 0; r < mrf; r++)
                for (int v = 0; v < nv && v < NV; v++)
                    __builtin_prefetch(C + (i0 + mrf + r) * ldc + v * LN, 0, 1);
        N(tile)(mrf, nv, part, part_m, rem, beta, N(from_row)(a, i0), N(from_row)(b, i0),
                C + i0 * ldc, ldc);
    }
    const N(operand) ar = N(from_row)(a, i0), br = N(from_row)(b, i0);
#define RNNX_ROWS(R)                                                                      \
    case R:                                                                               \
        if (R < mrf)                                                                      \
            N(tile)(R, nv, part, part_m, rem, beta, ar, br, C + i0 * ldc, ldc);           \
        break;
    switch (m - i0) {
        RNNX_ROWS(1) RNNX_ROWS(2) RNNX_ROWS(3) RNNX_ROWS(4) RNNX_ROWS(5) RNNX_ROWS(6)
        RNNX_ROWS(7) RNNX_ROWS(8) RNNX_ROWS(9) RNNX_ROWS(10) RNNX_ROWS(11) RNNX_ROWS(12)
        RNNX_ROWS(13) RNNX_ROWS(14) RNNX_ROWS(15)
    default:
        break;
    }
#undef RNNX_ROWS
}

/* the strip of nv vectors (a constant in each case) */
#define RNNX_BY_NV(part, part_m)                                                          \
    switch (nv) {                                                                         \
    case 1: N(strip)(mrf, 1, part, part_m, rem, m, beta, ahead, a, b, C + j, n); break;   \
    case 2: if (nvf >= 2)                                                                 \
                N(strip)(mrf, 2, part, part_m, rem, m, beta, ahead, a, b, C + j, n);      \
            break;                                                                        \
    case 3: if (nvf >= 3)                                                                 \
                N(strip)(mrf, 3, part, part_m, rem, m, beta, ahead, a, b, C + j, n);      \
            break;                                                                        \
    default: if (nvf >= 4)                                                                \
                N(strip)(mrf, 4, part, part_m, rem, m, beta, ahead, a, b, C + j, n);      \
            break;                                                                        \
    }

/* pack (k * (m + mrf) entries) := A^T for A (k, m), in tiles of mrf rows one after the
   other, each (k, mrf) row-major, the rows past m zeros */
static void N(pack_rows)(const int mrf, const ptrdiff_t m, const ptrdiff_t k, const T *A,
                         T *pack)
{
    for (ptrdiff_t i0 = 0; i0 < m; i0 += mrf, pack += k * mrf)
        for (ptrdiff_t p = 0; p < k; p++)
            for (int r = 0; r < mrf; r++)
                pack[p * mrf + r] = i0 + r < m ? A[p * m + i0 + r] : 0;
}

/* C (m, n) := beta C + op(A) @ M + op(A2) @ M2: M and M2 in panels (panels = 1) with
   op(A) = A (m, k), op(A2) = A2 (m, k2); or M row-major (panels = 0) with op(A) = A^T
   for A (k, m) (and the same for A2). pack, unless NULL (panels = 0, one product), has
   room for k * (m + mrf + nvf vectors) entries: op(A) and each strip of M are copied
   there and read from there, one contiguous stream each. Without it the rows of A and M
   of a large product lie pages apart, and a tile that reads k of them misses the TLB
   on every row (benchmarks/kernels.py, H = 512). */
INLINE void N(product)(const int panels, const ptrdiff_t m, const ptrdiff_t n, const int beta,
                       const ptrdiff_t k, const T *A, const T *M, const ptrdiff_t k2,
                       const T *A2, const T *M2, T *C, T *pack)
{
    const int mrf = panels ? MR_GEMM : MR_TN, nvf = panels ? NV_GEMM : NV_TN;
    const ptrdiff_t width = nvf * LN;
    const int ahead = beta && (size_t)m * n * sizeof(T) >= RNNX_GEMM_PREFETCH_BYTES;
    T *strip = pack ? pack + k * (m + mrf) : NULL;
    if (pack)
        N(pack_rows)(mrf, m, k, A, pack);
    for (ptrdiff_t j = 0; j < n; j += width) {
        const ptrdiff_t cols = n - j < width ? n - j : width;
        const int nv = (int)((cols + LN - 1) / LN), rem = (int)(cols % LN);
        N(operand) a, b;
        if (panels) {
            /* a strip never crosses a panel: width divides RNNX_GEMM_NR */
            const ptrdiff_t j0 = j - j % RNNX_GEMM_NR, jj = j % RNNX_GEMM_NR;
            a = (N(operand)){k, A, k, 1, k, M + j0 * k + jj, RNNX_GEMM_NR};
            b = (N(operand)){k2, A2, k2, 1, k2, k2 ? M2 + j0 * k2 + jj : NULL, RNNX_GEMM_NR};
        } else if (pack) {
            /* op(A) in tiles of mrf rows, each (k, mrf); M's strip (k, nv vectors) */
            for (ptrdiff_t p = 0; p < k; p++)
                for (ptrdiff_t c = 0; c < nv * LN; c++)
                    strip[p * nv * LN + c] = c < cols ? M[p * n + j + c] : 0;
            a = (N(operand)){k, pack, 1, mrf, k, strip, nv * LN};
            b = (N(operand)){0, NULL, 0, 0, 0, NULL, 0};
        } else {
            a = (N(operand)){k, A, 1, m, 1, M + j, n};
            b = (N(operand)){k2, A2, 1, m, 1, k2 ? M2 + j : NULL, n};
        }
        if (rem == 0) {
            RNNX_BY_NV(0, 0)
        } else if (panels || pack) {
            RNNX_BY_NV(1, 0)
        } else {
            RNNX_BY_NV(1, 1)
        }
    }
}

static void N(gemm)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k, const T *A, const T *M,
                    ptrdiff_t k2, const T *A2, const T *M2, T *C)
{
    N(product)(1, m, n, beta, k, A, M, k2, A2, M2, C, NULL);
}

static void N(tn)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k, const T *A, const T *M,
                  ptrdiff_t k2, const T *A2, const T *M2, T *C)
{
    /* pages apart: rows of 2 KiB or more */
    T *pack = k2 == 0 && (m >= 2048 / (ptrdiff_t)sizeof(T) || n >= 2048 / (ptrdiff_t)sizeof(T))
                  ? malloc(sizeof(T) * k * (m + MR_TN + NV_TN * LN)) : NULL;
    N(product)(0, m, n, beta, k, A, M, k2, A2, M2, C, pack);
    free(pack);
}

#undef RNNX_ACCUMULATE
#undef RNNX_LOAD
#undef RNNX_BY_NV
#undef MAX_
#undef MR
#undef NV
#undef N
#undef VEC
#undef LN
#undef INLINE
/* the parameters of this instance, so that the next one can set them again */
#undef T
#undef S
#undef MR_GEMM
#undef NV_GEMM
#undef MR_TN
#undef NV_TN
