/*
 * The one file that talks to BLIS: its sgemm micro-kernel, packing kernels
 * and block sizes for the current CPU, behind the interface of gemm.h.
 *
 * Why not bli_sgemm_ex with a one-thread runtime: measured with Debian's
 * BLIS 0.9 (OpenMP flavour) and GCC 12's libgomp, every level-3 call opens
 * an OpenMP region, and libgomp allocates a team for each region of one
 * thread or nested in another; a step would allocate once per product.  The
 * micro-kernel path allocates nothing, is strictly single-threaded per call,
 * and lets the planner choose the partition of every product.
 *
 * These are BLIS 0.9 internals (the context's kernel tables); configure
 * link-tests exactly the calls made here and builds without this file when
 * they are missing, as in BLIS 1.x.
 */
#include <string.h>

#include <blis.h>

#include "gemm.h"

typedef void (*sgemm_ukr)(dim_t m, dim_t n, dim_t k, float *alpha, float *a, float *b,
                          float *beta, float *c, inc_t rs_c, inc_t cs_c, auxinfo_t *data,
                          cntx_t *cntx);
typedef void (*spackm_ker)(conj_t conja, pack_t schema, dim_t cdim, dim_t n, dim_t n_max,
                           float *kappa, float *a, inc_t inca, inc_t lda, float *p, inc_t ldp,
                           cntx_t *cntx);

/* BLIS keeps the sgemm kernel in the context; its packing kernels are
 * listed by panel width (BLIS_PACKM_<w>XK_KER == w). */
typedef struct blis_parts {
    cntx_t *cntx;
    sgemm_ukr ukr;
    spackm_ker pack_a, pack_b;
} blis_parts;

static blis_parts parts;

void stgB_about_query(stgB_about *about)
{
    about->version = bli_info_get_version_str();
    about->arch = bli_arch_string(bli_arch_query_id());
    /* "refrnce" names BLIS's portable C kernel, "optimzd" a hand-written one */
    about->native = strcmp(bli_info_get_gemm_ukr_impl_string(BLIS_NAT, BLIS_FLOAT), "refrnce") != 0;
}

/* BLIS's table of packing kernels has slots for panel widths up to 31 only:
 * for a wider panel (the 32x12 kernel of 'skx') it holds NULL, and BLIS
 * itself packs with a generic copy.  stgK_pack_panel writes the same
 * layout. */
static void pack(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k, const float *src,
                 int64_t inc, int64_t ld, float *dst)
{
    const blis_parts *bp = kr->ctx;
    spackm_ker ker = rows ? bp->pack_a : bp->pack_b;
    if (!ker) {
        stgK_pack_panel(kr, rows, dim, k, src, inc, ld, dst);
        return;
    }
    float one = 1.0f;
    ker(BLIS_NO_CONJUGATE,
                                     rows ? BLIS_PACKED_ROW_PANELS : BLIS_PACKED_COL_PANELS,
                                     (dim_t)dim, (dim_t)k, (dim_t)k, &one, (float *)src, (inc_t)inc,
                                     (inc_t)ld, dst, (inc_t)(rows ? kr->mr : kr->nr), bp->cntx);
}

static void tile(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k, const float *ap,
                 const float *b, float beta, float *c, int64_t rsc, int64_t csc,
                 const float *next_a, const float *next_b)
{
    const blis_parts *bp = kr->ctx;
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    bli_auxinfo_set_next_ab((void *)next_a, (void *)next_b, &aux);
    float one = 1.0f;
    bp->ukr((dim_t)m, (dim_t)n, (dim_t)k, &one, (float *)ap, (float *)b, &beta, c, (inc_t)rsc,
            (inc_t)csc, &aux, bp->cntx);
}

/* Called once per process (kernel_select.c); 'parts' is read-only after. */
void stgB_kernel_init(stgK_kernel *kr)
{
    cntx_t *cntx = bli_gks_query_cntx();
    kr->id = STG_GEMM_BLIS;
    kr->name = "blis";
    kr->mr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, cntx);
    kr->nr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, cntx);
    kr->mc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, cntx);
    kr->kc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, cntx);
    kr->nc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NC, cntx);
    kr->prefers_rows = !bli_cntx_l3_nat_ukr_prefers_cols_dt(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
    parts.cntx = cntx;
    parts.ukr = (sgemm_ukr)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
    parts.pack_a = (spackm_ker)bli_cntx_get_packm_ker_dt(BLIS_FLOAT, (l1mkr_t)kr->mr, cntx);
    parts.pack_b = (spackm_ker)bli_cntx_get_packm_ker_dt(BLIS_FLOAT, (l1mkr_t)kr->nr, cntx);
    kr->ctx = &parts;
    kr->pack = pack;
    kr->tile = tile;
}
