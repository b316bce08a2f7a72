/*
 * The one file that talks to BLIS.  stgrad uses BLIS's sgemm micro-kernel
 * and block sizes for the current CPU and drives it itself (gemm.c).
 *
 * Why not bli_sgemm_ex with a one-thread runtime: measured with Debian's
 * BLIS 0.9 (OpenMP flavour) and GCC 12's libgomp, every level-3 call opens
 * an OpenMP region, and libgomp allocates a team for each region of one
 * thread or nested in another; a step would allocate once per product.  The
 * micro-kernel path allocates nothing, is strictly single-threaded per call,
 * and lets the planner choose the partition of every product.
 */
#include <string.h>

#include <blis.h>

#include "internal.h"

typedef void (*sgemm_ukr)(dim_t m, dim_t n, dim_t k, float *alpha, float *a, float *b,
                          float *beta, float *c, inc_t rs_c, inc_t cs_c, auxinfo_t *data,
                          cntx_t *cntx);

void stgB_query(stgB_info *info)
{
    cntx_t *cntx = bli_gks_query_cntx();
    memset(info, 0, sizeof *info);
    info->cntx = cntx;
    info->ukr = (void (*)(void))bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
    info->mr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, cntx);
    info->nr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, cntx);
    info->mc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, cntx);
    info->kc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, cntx);
    info->nc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NC, cntx);
    /* the packing kernels are listed by panel width: BLIS_PACKM_<w>XK_KER == w */
    info->pack_a = (void (*)(void))bli_cntx_get_packm_ker_dt(BLIS_FLOAT, (l1mkr_t)info->mr, cntx);
    info->pack_b = (void (*)(void))bli_cntx_get_packm_ker_dt(BLIS_FLOAT, (l1mkr_t)info->nr, cntx);
}

typedef void (*spackm_ker)(conj_t conja, pack_t schema, dim_t cdim, dim_t n, dim_t n_max,
                           float *kappa, float *a, inc_t inca, inc_t lda, float *p, inc_t ldp,
                           cntx_t *cntx);

void stgB_pack(const stgB_info *info, bool rows, int64_t dim, int64_t k, const float *src,
               int64_t inc, int64_t ld, float *dst)
{
    float one = 1.0f;
    dim_t max = (dim_t)(rows ? info->mr : info->nr);
    ((spackm_ker)(rows ? info->pack_a : info->pack_b))(
        BLIS_NO_CONJUGATE, rows ? BLIS_PACKED_ROW_PANELS : BLIS_PACKED_COL_PANELS, (dim_t)dim,
        (dim_t)k, (dim_t)k, &one, (float *)src, (inc_t)inc, (inc_t)ld, dst, max,
        (cntx_t *)info->cntx);
}

void stgB_kernel(const stgB_info *info, int64_t m, int64_t n, int64_t k, const float *ap,
                 const float *bp, float beta, float *c, int64_t rsc, int64_t csc,
                 const float *next_a, const float *next_b)
{
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    bli_auxinfo_set_next_ab((void *)next_a, (void *)next_b, &aux);
    float one = 1.0f;
    ((sgemm_ukr)info->ukr)((dim_t)m, (dim_t)n, (dim_t)k, &one, (float *)ap, (float *)bp, &beta,
                           c, (inc_t)rsc, (inc_t)csc, &aux, (cntx_t *)info->cntx);
}
