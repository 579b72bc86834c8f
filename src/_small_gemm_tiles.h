/* The kernel of one dtype, included by _small_gemm.c once per dtype with T (the scalar),
 * S (its suffix), MR and NV (the tile: MR rows x NV vectors) defined. Defines gemm_<S>
 * and tn_<S> (_small_gemm.h says what they compute).
 *
 * C is made in column strips of up to NV vectors (a strip never crosses a panel), and
 * each strip in tiles of MR rows (the last m % MR rows in one smaller tile): the strip of
 * M stays in cache across the row tiles. The last strip of a product whose n is not a
 * multiple of the vector width goes through a small buffer: its tile of C is copied in and
 * out (the columns past n belong to the next row of C), and a row-major M (the transposed
 * variant) is copied in chunks of rows padded with zeros (its rows end before the
 * vectors do). Panels need no copy: their last one is padded with zeros when packed.
 */
#define N(name) RNNX_GLUE(name, S)
#define VEC N(vec)
#define LN ((ptrdiff_t)(RNNX_VECTOR_BYTES / sizeof(T)))
#define INLINE static inline __attribute__((always_inline))

/* unaligned, and allowed to alias the T it is loaded from */
typedef T VEC __attribute__((vector_size(RNNX_VECTOR_BYTES), aligned(sizeof(T)), may_alias));

/* one product op(A) @ M of a tile: op(A)[i, p] = A[i * ai + p * ap], M[p, :] at M + p * ms */
typedef struct {
    ptrdiff_t k;
    const T *A;
    ptrdiff_t ai, ap;
    const T *M;
    ptrdiff_t ms;
} N(operand);

/* the same product for the rows from i0 on */
INLINE N(operand) N(from_row)(N(operand) o, ptrdiff_t i0)
{
    if (o.k)
        o.A += i0 * o.ai;
    return o;
}

/* acc (mr x nv vectors) += op(A)[:mr, :k] @ M[:k, :nv vectors] */
#define RNNX_ACCUMULATE(o)                                                                \
    for (ptrdiff_t p = 0; p < (o).k; p++) {                                               \
        VEC mp[NV];                                                                       \
        for (int v = 0; v < nv && v < NV; v++)                                            \
            mp[v] = *(const VEC *)((o).M + p * (o).ms + v * LN);                          \
        for (int r = 0; r < mr && r < MR; r++) {                                          \
            const T s_ = (o).A[r * (o).ai + p * (o).ap];                                  \
            for (int v = 0; v < nv && v < NV; v++)                                        \
                acc[r][v] += s_ * mp[v];                                                   \
        }                                                                                 \
    }

/* C[:mr, :nv vectors] := beta C + op(A) @ M + op(A2) @ M2 (ldc apart); mr and nv are
   constants wherever this is inlined, so the loops unroll and acc lives in registers */
INLINE void N(tile)(const int mr, const int nv, const int beta, const N(operand) a,
                    const N(operand) b, T *restrict C, const ptrdiff_t ldc)
{
    VEC acc[MR][NV];
    for (int r = 0; r < mr && r < MR; r++)
        for (int v = 0; v < nv && v < NV; v++)
            acc[r][v] = beta ? *(const VEC *)(C + r * ldc + v * LN) : (VEC){0};
    RNNX_ACCUMULATE(a)
    RNNX_ACCUMULATE(b)
    for (int r = 0; r < mr && r < MR; r++)
        for (int v = 0; v < nv && v < NV; v++)
            *(VEC *)(C + r * ldc + v * LN) = acc[r][v];
}

/* the tile of the rows left, rest < MR of them: one instance per count */
INLINE void N(last_rows)(const int rest, const int nv, const int beta, const N(operand) a,
                         const N(operand) b, T *restrict C, const ptrdiff_t ldc)
{
#define RNNX_ROWS(R)                                                                      \
    case R:                                                                               \
        if (R < MR)                                                                       \
            N(tile)(R, nv, beta, a, b, C, ldc);                                           \
        break;
    switch (rest) {
        RNNX_ROWS(1) RNNX_ROWS(2) RNNX_ROWS(3) RNNX_ROWS(4) RNNX_ROWS(5) RNNX_ROWS(6)
        RNNX_ROWS(7)
    default:
        break;
    }
#undef RNNX_ROWS
}

/* C[:m, :nv vectors] (ldc apart) := beta C + ..., every row */
INLINE void N(strip)(const int nv, const ptrdiff_t m, const int beta, const int ahead,
                     const N(operand) a, const N(operand) b, T *restrict C,
                     const ptrdiff_t ldc)
{
    ptrdiff_t i0 = 0;
    for (; i0 + MR <= m; i0 += MR) {
        if (ahead && i0 + 2 * MR <= m)
            for (int r = 0; r < MR; r++)
                for (int v = 0; v < nv && v < NV; v++)
                    __builtin_prefetch(C + (i0 + MR + r) * ldc + v * LN, 0, 1);
        N(tile)(MR, nv, beta, N(from_row)(a, i0), N(from_row)(b, i0), C + i0 * ldc, ldc);
    }
    if (i0 < m)
        N(last_rows)((int)(m - i0), nv, beta, N(from_row)(a, i0), N(from_row)(b, i0),
                     C + i0 * ldc, ldc);
}

/* the same for a strip of cols < nv vectors of C: each tile through a buffer */
INLINE void N(strip_buffered)(const int nv, const ptrdiff_t cols, const ptrdiff_t m,
                              const int beta, const N(operand) a, const N(operand) b,
                              T *restrict C, const ptrdiff_t ldc)
{
    T ct[MR * NV * (RNNX_VECTOR_BYTES / sizeof(T))];
    const ptrdiff_t w = nv * LN;
    memset(ct, 0, sizeof ct);
    for (ptrdiff_t i0 = 0; i0 < m; i0 += MR) {
        const int mr = m - i0 < MR ? (int)(m - i0) : MR;
        if (beta)
            for (int r = 0; r < mr; r++)
                memcpy(ct + r * w, C + (i0 + r) * ldc, cols * sizeof(T));
        if (mr == MR)
            N(tile)(MR, nv, beta, N(from_row)(a, i0), N(from_row)(b, i0), ct, w);
        else
            N(last_rows)(mr, nv, beta, N(from_row)(a, i0), N(from_row)(b, i0), ct, w);
        for (int r = 0; r < mr; r++)
            memcpy(C + (i0 + r) * ldc, ct + r * w, cols * sizeof(T));
    }
}

/* strip_buffered for a row-major M (one product, b.k = 0): M's strip copied in chunks of
   rows into a buffer padded with zeros, the chunks' products added in turn (each entry of
   C is still one chain over p) */
INLINE void N(strip_copied)(const int nv, const ptrdiff_t cols, const ptrdiff_t m,
                            const int beta, const N(operand) a, const N(operand) b,
                            T *restrict C, const ptrdiff_t ldc)
{
    T mb[RNNX_GEMM_KC * NV * (RNNX_VECTOR_BYTES / sizeof(T))];
    const ptrdiff_t w = nv * LN;
    if (a.k == 0) {
        N(strip_buffered)(nv, cols, m, beta, a, b, C, ldc);
        return;
    }
    memset(mb, 0, sizeof mb);
    for (ptrdiff_t p0 = 0; p0 < a.k; p0 += RNNX_GEMM_KC) {
        const ptrdiff_t kc = a.k - p0 < RNNX_GEMM_KC ? a.k - p0 : RNNX_GEMM_KC;
        for (ptrdiff_t p = 0; p < kc; p++)
            memcpy(mb + p * w, a.M + (p0 + p) * a.ms, cols * sizeof(T));
        const N(operand) chunk = {kc, a.A + p0 * a.ap, a.ai, a.ap, mb, w};
        N(strip_buffered)(nv, cols, m, beta || p0 > 0, chunk, b, C, ldc);
    }
}

/* the strip of nv vectors (a constant in each case) by the function F */
#define RNNX_BY_NV(F, ...)                                                                \
    switch (nv) {                                                                         \
    case 1: F(1, __VA_ARGS__); break;                                                     \
    case 2: if (NV >= 2) F(2, __VA_ARGS__); break;                                        \
    case 3: if (NV >= 3) F(3, __VA_ARGS__); break;                                        \
    default: if (NV >= 4) F(4, __VA_ARGS__); break;                                       \
    }

/* C (m, n) := beta C + op(A) @ M + op(A2) @ M2: M and M2 in panels (panels = 1) with
   op(A) = A (m, k), op(A2) = A2 (m, k2); or M row-major (panels = 0) with op(A) = A^T
   for A (k, m) (and the same for A2) */
INLINE void N(product)(const int panels, const ptrdiff_t m, const ptrdiff_t n, const int beta,
                       const ptrdiff_t k, const T *A, const T *M, const ptrdiff_t k2,
                       const T *A2, const T *M2, T *C)
{
    const ptrdiff_t width = NV * LN;
    const int ahead = beta && (size_t)m * n * sizeof(T) >= RNNX_GEMM_PREFETCH_BYTES;
    for (ptrdiff_t j = 0; j < n; j += width) {
        const ptrdiff_t cols = n - j < width ? n - j : width;
        const int nv = (int)((cols + LN - 1) / LN);
        N(operand) a, b;
        if (panels) {
            /* a strip never crosses a panel: width divides RNNX_GEMM_NR */
            const ptrdiff_t j0 = j - j % RNNX_GEMM_NR, jj = j % RNNX_GEMM_NR;
            a = (N(operand)){k, A, k, 1, M + j0 * k + jj, RNNX_GEMM_NR};
            b = (N(operand)){k2, A2, k2, 1, k2 ? M2 + j0 * k2 + jj : NULL, RNNX_GEMM_NR};
        } else {
            a = (N(operand)){k, A, 1, m, M + j, n};
            b = (N(operand)){k2, A2, 1, m, k2 ? M2 + j : NULL, n};
        }
        if (cols == nv * LN) {
            RNNX_BY_NV(N(strip), m, beta, ahead, a, b, C + j, n)
        } else if (panels) {
            RNNX_BY_NV(N(strip_buffered), cols, m, beta, a, b, C + j, n)
        } else {
            RNNX_BY_NV(N(strip_copied), cols, m, beta, a, b, C + j, n)
        }
    }
}

static void N(gemm)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k, const T *A, const T *M,
                    ptrdiff_t k2, const T *A2, const T *M2, T *C)
{
    N(product)(1, m, n, beta, k, A, M, k2, A2, M2, C);
}

static void N(tn)(ptrdiff_t m, ptrdiff_t n, int beta, ptrdiff_t k, const T *A, const T *M,
                  ptrdiff_t k2, const T *A2, const T *M2, T *C)
{
    (void)k2; (void)A2; (void)M2;          /* one product: the weight gradients */
    N(product)(0, m, n, beta, k, A, M, 0, NULL, NULL, C);
}

#undef RNNX_ACCUMULATE
#undef RNNX_BY_NV
#undef N
#undef VEC
#undef LN
#undef INLINE
