/* The register-blocked kernel (interface and dispatch: _small_gemm.h), one source for every
 * variant. CMakeLists.txt compiles this file once per variant with
 *     -DRNNX_VARIANT=<name> -DRNNX_VECTOR_BYTES=<64 | 32 | 16>
 * and that variant's instruction-set flags; it defines rnnx_gemm_<name>.
 *
 * The tile of C is held as vectors of GCC's vector extension (which clang compiles too),
 * RNNX_VECTOR_BYTES wide, so that the compiler keeps it in registers from the load of C to
 * the store; with plain arrays GCC copied the tile through the stack on the way in and out,
 * a cost that shows most where k is short (the weight gradients: k = B). The tile shape
 * (rows MR x vectors NV) per dtype is chosen below from the registers each instruction set
 * has. Every entry of C is the same chain of multiply-adds over p whatever tile it falls
 * in (full, the last rows, the last columns), so that splitting the rows into blocks
 * changes no bit of a result.
 */
#include <stdlib.h>

#include "_small_gemm.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#  include <immintrin.h>           /* masked loads and stores of a partial last vector */
#endif

#if !defined(RNNX_VARIANT) || !defined(RNNX_VECTOR_BYTES)
#  error "compile with -DRNNX_VARIANT=name -DRNNX_VECTOR_BYTES=bytes (see CMakeLists.txt)"
#endif

#define RNNX_GLUE_(a, b) a##_##b
#define RNNX_GLUE(a, b) RNNX_GLUE_(a, b)

/* C from this size on (a weight gradient of H = 512) comes from L3 tile by tile, and the
   tile's loads stall unless the next tile is fetched ahead */
#define RNNX_GEMM_PREFETCH_BYTES (1 << 20)

/* The tiles, rows x vectors, of the two products (gemm: by weights in panels, m the rows
   of a block; tn: the weight gradients, m = H) of each dtype: the accumulators, a row of
   vectors of M and a broadcast fit the register file (32 registers with AVX-512 and on
   arm64, 16 with AVX2 and SSE2), the vectors of a row divide the panel, and the more rows,
   the fewer loads of M per multiply-add (benchmarks/kernels.py measures the result). */
#if RNNX_VECTOR_BYTES == 64
#  define RNNX_TILES_F 8, 2, 12, 2
#  define RNNX_TILES_D 6, 4, 12, 2
#elif RNNX_VECTOR_BYTES == 32
#  define RNNX_TILES_F 6, 2, 6, 2
#  define RNNX_TILES_D 6, 2, 6, 2
#elif defined(__aarch64__)
#  define RNNX_TILES_F 6, 4, 12, 2
#  define RNNX_TILES_D 6, 4, 12, 2
#else
#  define RNNX_TILES_F 6, 2, 6, 2
#  define RNNX_TILES_D 6, 2, 6, 2
#endif
#ifdef RNNX_TRY_TILES_F           /* benchmarks of other tiles: -DRNNX_TRY_TILES_F=8,2,12,2 */
#  undef RNNX_TILES_F
#  define RNNX_TILES_F RNNX_TRY_TILES_F
#endif
#ifdef RNNX_TRY_TILES_D
#  undef RNNX_TILES_D
#  define RNNX_TILES_D RNNX_TRY_TILES_D
#endif
#define RNNX_PICK_(i, a, b, c, d) RNNX_PICK_##i(a, b, c, d)
#define RNNX_PICK_0(a, b, c, d) a
#define RNNX_PICK_1(a, b, c, d) b
#define RNNX_PICK_2(a, b, c, d) c
#define RNNX_PICK_3(a, b, c, d) d
#define RNNX_PICK(i, tiles) RNNX_PICK_(i, tiles)

#define T float
#define S f
#define MR_GEMM RNNX_PICK(0, RNNX_TILES_F)
#define NV_GEMM RNNX_PICK(1, RNNX_TILES_F)
#define MR_TN RNNX_PICK(2, RNNX_TILES_F)
#define NV_TN RNNX_PICK(3, RNNX_TILES_F)
#include "_small_gemm_tiles.h"

#define T double
#define S d
#define MR_GEMM RNNX_PICK(0, RNNX_TILES_D)
#define NV_GEMM RNNX_PICK(1, RNNX_TILES_D)
#define MR_TN RNNX_PICK(2, RNNX_TILES_D)
#define NV_TN RNNX_PICK(3, RNNX_TILES_D)
#include "_small_gemm_tiles.h"

RNNX_HIDDEN const rnnx_gemm_kernels RNNX_GLUE(rnnx_gemm, RNNX_VARIANT) = {
    gemm_f, tn_f, gemm_d, tn_d
};
