/*
 * GEMM: one driver (gemm.c) over interchangeable micro-kernels.
 *
 * A micro-kernel computes one MR x NR tile of C from two packed panels:
 * an MR-tall panel of A (for each k, MR values) and an NR-wide panel of B
 * (for each k, NR values), both zero-padded to full width.  Its packing
 * routine writes exactly that format, so a kernel and its packing always
 * come together.  The kernels:
 *
 *   blis      BLIS's micro-kernel and packing for this CPU (kernel_blis.c,
 *             the one file that talks to BLIS; absent in builds without it)
 *   avx512    12x32, AVX-512F (kernel_avx512.c)
 *   avx2      6x16, AVX2 + FMA (kernel_avx2.c)
 *   portable  4x8, plain C (kernel_portable.c)
 *
 * stgrad's vector kernels share one body (kernel_simd.h) and one packing
 * routine (stgK_pack_avx2); the portable one packs with stgK_pack_panel.
 * Which kernel runs is chosen once per process (kernel_select.c).
 *
 * Invariants: mr, nr >= 1; mc a multiple of mr, nc a multiple of nr; a tile
 * call gets m <= mr, n <= nr, k >= 1.  Each element of C is a sum over k in
 * order, in KC-sized blocks, so a product's bits depend on the kernel and
 * on KC only, never on how rows or columns are split between calls.
 */
#ifndef STG_GEMM_H
#define STG_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stgrad.h"

typedef struct stgK_kernel stgK_kernel;

/* Packs one panel: 'dim' (<= the panel width: mr for rows of A, nr for
 * columns of B) vectors of length k, element (i, q) at src[i * inc + q * ld];
 * dst[q * width + i], zero-padded to the width. */
typedef void (*stgK_pack_fn)(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k,
                             const float *src, int64_t inc, int64_t ld, float *dst);
/* One tile: C[0:m, 0:n] = Ap Bp (+ C when beta is 1; beta is 0 or 1, and C
 * is not read when it is 0).  next_a and next_b are the panels of the next
 * call, for kernels that prefetch. */
typedef void (*stgK_tile_fn)(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k,
                             const float *ap, const float *bp, float beta, float *c, int64_t rsc,
                             int64_t csc, const float *next_a, const float *next_b);

struct stgK_kernel {
    stg_gemm_kernel id;
    const char *name;
    int64_t mr, nr, mc, kc, nc;
    bool prefers_rows; /* tiles of C with unit column stride run fastest (rows
                          of a tile in vectors: ours, BLIS's for x86-64);
                          otherwise unit row stride */
    stgK_pack_fn pack;
    stgK_tile_fn tile;
    const void *ctx; /* BLIS's context, for its kernels */
};

/* ---- choice (kernel_select.c) ------------------------------------------ */

/* The kernel a plan asking for 'want' runs on, with a line saying why in
 * 'why'.  False when 'want' (or STG_GEMM_KERNEL) names a kernel that this
 * CPU or build cannot run, or STG_GEMM_KERNEL is not a kernel's name; 'why'
 * then holds the error. */
bool stgK_kernel_choose(stg_gemm_kernel want, stgK_kernel *kr, char *why, size_t len);
/* Whether this CPU and build can run kernel 'id'. */
bool stgK_kernel_runs(stg_gemm_kernel id);
/* Fills 'kr' with kernel 'id' (which must run) and its block sizes. */
void stgK_kernel_get(stg_gemm_kernel id, stgK_kernel *kr);
/* Sets the cache blocks MC, KC, NC of one of stgrad's kernels from its MR
 * and NR and the caches of this CPU. */
void stgK_block_sizes(stgK_kernel *kr);

/* ---- the kernels ------------------------------------------------------- */

/* Each fills in id, name, mr, nr, prefers_rows, pack and tile. */
void stgK_avx512_init(stgK_kernel *kr);
void stgK_avx2_init(stgK_kernel *kr);
void stgK_portable_init(stgK_kernel *kr);
/* The packing routine of stgrad's own kernels, and the same with AVX2 (for
 * CPUs that have it: the AVX2 and AVX-512 kernels). */
void stgK_pack_panel(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k, const float *src,
                     int64_t inc, int64_t ld, float *dst);
void stgK_pack_avx2(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k, const float *src,
                    int64_t inc, int64_t ld, float *dst);

/* BLIS (kernel_blis.c, built when configure finds BLIS). */
typedef struct stgB_about {
    const char *version; /* "0.9.0" */
    const char *arch;    /* the sub-configuration BLIS chose: "zen3", "generic" */
    bool native;         /* its sgemm micro-kernel is written for this CPU
                            (not BLIS's reference kernel) */
} stgB_about;
void stgB_about_query(stgB_about *about);
/* BLIS's kernel, packing and block sizes for this CPU. */
void stgB_kernel_init(stgK_kernel *kr);

/* ---- driver (gemm.c) --------------------------------------------------- */

/* Bytes of packing workspace stgK_gemm needs for an m x n x k product.
 * The workspace must be 64-byte aligned: BLIS's kernels load the packed
 * panels with aligned loads. */
size_t stgK_gemm_workspace(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k);
/* Whether stgK_gemm computes C^T = B^T A^T for a C with these strides (so
 * that C's rows are the kernel's columns). */
bool stgK_gemm_transposes(const stgK_kernel *kr, int64_t rsc, int64_t csc);
/* C = A B + beta C (beta 0 or 1) with general strides; single-threaded;
 * allocates nothing. */
void stgK_gemm(const stgK_kernel *kr, float *work, int64_t m, int64_t n, int64_t k,
               const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb,
               int64_t csb, float beta, float *c, int64_t rsc, int64_t csc);

/* B packed once for many products that share it (a recurrent weight, used
 * at every step): its KC blocks one after the other, each as NR-wide
 * panels.  Floats it takes, 64-byte multiples, slack included: */
size_t stgK_packed_b_floats(const stgK_kernel *kr, int64_t k, int64_t n);
/* Packs B (k x n, strides rsb, csb) into 'bp' (64-byte aligned). */
void stgK_pack_b(const stgK_kernel *kr, int64_t k, int64_t n, const float *b, int64_t rsb,
                 int64_t csb, float *bp);
/* Packs B (k x n) as columns [col0, col0 + n) of a packed B of n_all
 * columns (col0 a multiple of NR): a packed B's columns may come from
 * several matrices, in any order of whole panels. */
void stgK_pack_b_cols(const stgK_kernel *kr, int64_t k, int64_t n_all, int64_t col0, int64_t n,
                      const float *b, int64_t rsb, int64_t csb, float *bp);
/* C = A B' + beta C where B' is columns [col0, col0 + n) of a B of n_all
 * columns packed by stgK_pack_b (col0 a multiple of NR): the same bits as
 * stgK_gemm on the unpacked B.  Only for a C that the kernel takes as it is
 * (not stgK_gemm_transposes); false, doing nothing, otherwise.  'work'
 * needs stgK_gemm_workspace(kr, m, n, k) bytes. */
bool stgK_gemm_packed_b(const stgK_kernel *kr, float *work, int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t rsa, int64_t csa, const float *bp, int64_t col0,
                        int64_t n_all, float beta, float *c, int64_t rsc, int64_t csc);

#endif /* STG_GEMM_H */
