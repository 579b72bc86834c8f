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
#include <string.h>

#include "_small_gemm.h"

#if !defined(RNNX_VARIANT) || !defined(RNNX_VECTOR_BYTES)
#  error "compile with -DRNNX_VARIANT=name -DRNNX_VECTOR_BYTES=bytes (see CMakeLists.txt)"
#endif

#define RNNX_GLUE_(a, b) a##_##b
#define RNNX_GLUE(a, b) RNNX_GLUE_(a, b)

/* C from this size on (a weight gradient of H = 512) comes from L3 tile by tile, and the
   tile's loads stall unless the next tile is fetched ahead */
#define RNNX_GEMM_PREFETCH_BYTES (1 << 20)
/* rows of M a partial column strip of a row-major M is copied in at a time */
#define RNNX_GEMM_KC 64

/* The tile of each dtype: MR rows x NV vectors, so that the MR * NV accumulators, NV
   vectors of M and a broadcast fit the register file (32 registers with AVX-512 and on
   arm64, 16 with AVX2 and SSE2), and NV vectors divide the panel. */
#if RNNX_VECTOR_BYTES == 64
#  define RNNX_MR_F 4
#  define RNNX_NV_F 2
#  define RNNX_MR_D 4
#  define RNNX_NV_D 4
#elif RNNX_VECTOR_BYTES == 32
#  define RNNX_MR_F 6
#  define RNNX_NV_F 2
#  define RNNX_MR_D 6
#  define RNNX_NV_D 2
#elif defined(__aarch64__)
#  define RNNX_MR_F 4
#  define RNNX_NV_F 4
#  define RNNX_MR_D 4
#  define RNNX_NV_D 4
#else
#  define RNNX_MR_F 4
#  define RNNX_NV_F 2
#  define RNNX_MR_D 4
#  define RNNX_NV_D 2
#endif

#define T float
#define S f
#define MR RNNX_MR_F
#define NV RNNX_NV_F
#include "_small_gemm_tiles.h"
#undef T
#undef S
#undef MR
#undef NV

#define T double
#define S d
#define MR RNNX_MR_D
#define NV RNNX_NV_D
#include "_small_gemm_tiles.h"
#undef T
#undef S
#undef MR
#undef NV

RNNX_HIDDEN const rnnx_gemm_kernels RNNX_GLUE(rnnx_gemm, RNNX_VARIANT) = {
    gemm_f, tn_f, gemm_d, tn_d
};
