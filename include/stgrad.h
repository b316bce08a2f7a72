/*
 * stgrad — training neural networks on a static graph.
 *
 * Declare a graph once (fixed shapes), create a plan from it (the plan derives
 * the backward graph, lays every buffer out in one arena and precomputes every
 * kernel's parameters), then run training steps that allocate nothing.
 *
 * Conventions used throughout this header:
 * - All tensors are float32, row-major, with 0 to STG_MAX_DIMS dims; a tensor
 *   with 0 dims is a scalar.  Every dim is at least 1.
 * - Builder calls (stg_input ... stg_mse_loss) never fail loudly: an invalid
 *   call records the graph's first error and returns an invalid tensor (id < 0);
 *   every later builder call on that graph returns an invalid tensor too and
 *   changes nothing.  Check stg_graph_status() once after building.
 * - Functions that return stg_status leave their objects unchanged on failure.
 * - A graph or plan may be used by one thread at a time; distinct objects may be
 *   used from distinct threads.
 */
#ifndef STGRAD_H
#define STGRAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(STG_BUILDING) && defined(__GNUC__)
#define STG_API __attribute__((visibility("default")))
#else
#define STG_API
#endif

#define STG_MAX_DIMS 8

/* Status codes: one list generates the enum, the names and the messages. */
#define STG_STATUS_MAP(X)                                                     \
    X(OK, "success")                                                          \
    X(NOMEM, "out of memory")                                                 \
    X(SHAPE, "shapes do not fit the operation")                              \
    X(INVALID, "invalid argument")                                            \
    X(STATE, "object is in a state that does not allow the call")            \
    X(SMALL_ARENA, "caller-provided arena is too small or misaligned")       \
    X(NOT_FOUND, "tensor is not part of the plan or has no such value")      \
    X(NUMERIC, "a step produced a non-finite loss")                          \
    X(INDEX, "an index or label in a step is out of range")                 \
    X(IO, "a file could not be read or written")                            \
    X(FORMAT, "a file is not a valid checkpoint for this plan")                \
    X(PEER, "the step failed on another process of a collective run")         \
    X(COMM, "a collective operation (the gradient sum) failed")

typedef enum stg_status {
#define STG_STATUS_ENUM(name, msg) STG_##name,
    STG_STATUS_MAP(STG_STATUS_ENUM)
#undef STG_STATUS_ENUM
} stg_status;

/* "STG_SHAPE" style name of a status; never NULL ("STG_UNKNOWN" if out of range). */
STG_API const char *stg_status_name(stg_status s);
/* A one-line description of a status; never NULL. */
STG_API const char *stg_status_message(stg_status s);

/* ------------------------------------------------------------------------ */
/* Graph declaration                                                         */
/* ------------------------------------------------------------------------ */

typedef struct stg_graph stg_graph;

/* A node of a graph.  Copyable value; id < 0 means invalid. */
typedef struct stg_tensor {
    int32_t id;
} stg_tensor;

/* Creates an empty graph.  Returns NULL only when memory is exhausted.
 * The caller owns the graph and frees it with stg_graph_free(). */
STG_API stg_graph *stg_graph_new(void);
/* Frees a graph and everything it owns.  NULL is allowed.  Plans created from
 * the graph stay valid: they copied what they need. */
STG_API void stg_graph_free(stg_graph *g);

/* The first error recorded by a builder call, or STG_OK. */
STG_API stg_status stg_graph_status(const stg_graph *g);
/* The message of the first error ("" when there is none).  Owned by the graph,
 * valid until the graph is freed. */
STG_API const char *stg_graph_message(const stg_graph *g);

/* Nonzero when 't' names a node of 'g'. */
STG_API int stg_tensor_valid(const stg_graph *g, stg_tensor t);
/* Number of dims of 't' (-1 if invalid). */
STG_API int stg_tensor_ndim(const stg_graph *g, stg_tensor t);
/* Copies the dims of 't' into 'dims' (room for STG_MAX_DIMS); returns the
 * number of dims or -1 if 't' is invalid. */
STG_API int stg_tensor_shape(const stg_graph *g, stg_tensor t, int64_t *dims);
/* Number of elements of 't' (0 if invalid). */
STG_API int64_t stg_tensor_numel(const stg_graph *g, stg_tensor t);

/* Leaves of the graph.  'name' (may be NULL) is copied; it names the tensor in
 * messages.  'dims' holds 'ndim' positive sizes (may be NULL when ndim is 0).
 * An input is data supplied before each step; a parameter is trained; a
 * constant's 'data' (numel floats) is copied into the graph. */
STG_API stg_tensor stg_input(stg_graph *g, const char *name, int ndim, const int64_t *dims);
STG_API stg_tensor stg_param(stg_graph *g, const char *name, int ndim, const int64_t *dims);
STG_API stg_tensor stg_constant(stg_graph *g, int ndim, const int64_t *dims, const float *data);
/* A running statistic (PyTorch calls it a buffer): not trained, not an
 * input; every element starts at 'value' (finite) when a plan is created.
 * Only the op that owns it writes it, in a training step after the guard
 * (so a failed step leaves it unchanged); checkpoints save it under its
 * name, inference plans read it, and opts.share_params shares it. */
STG_API stg_tensor stg_stat(stg_graph *g, const char *name, int ndim, const int64_t *dims,
                            float value);
/* A scalar constant. */
STG_API stg_tensor stg_scalar(stg_graph *g, float value);
/* An input of int32 values: class labels or indices.  Only the ops that take
 * labels or indices accept it; set it with stg_plan_data_i32/stg_plan_set_i32. */
STG_API stg_tensor stg_input_i32(stg_graph *g, const char *name, int ndim, const int64_t *dims);

/* Products.  stg_matmul follows NumPy/PyTorch matmul exactly:
 *   (K)·(K) -> ();  (...,M,K)·(K) -> (...,M);  (K)·(...,K,N) -> (...,N);
 *   (...,M,K)·(...,K,N) -> (bcast(...),M,N), batch dims broadcast.
 * stg_outer(a (M), b (N)) -> (M,N). */
STG_API stg_tensor stg_matmul(stg_graph *g, stg_tensor a, stg_tensor b);
STG_API stg_tensor stg_outer(stg_graph *g, stg_tensor a, stg_tensor b);

/* Convolutions and pooling, as PyTorch's torch.nn.functional, in NCHW.
 * Parameters come in (H, W) pairs; the 1-d forms read element 0 of each
 * pair, and a zero means the default (stride 1, dilation 1, groups 1,
 * padding 0), so {0} is a plain convolution. */
typedef struct stg_conv_params {
    int64_t stride[2];
    int64_t padding[2];   /* zeros on both sides */
    int64_t dilation[2];
    int64_t groups;
} stg_conv_params;
/* conv2d: x (N, C, H, W), w (O, C/groups, KH, KW), bias b (O) or an invalid
 * tensor ({-1}) for none -> (N, O, OH, OW), OH = (H + 2 padding - dilation
 * (KH - 1) - 1) / stride + 1.  'p' may be NULL.  Lowered to im2col and a
 * matmul (see README.md); a kernel that reaches past the padded input is a
 * shape error. */
STG_API stg_tensor stg_conv2d(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                              const stg_conv_params *p);
/* conv1d: x (N, C, L), w (O, C/groups, K), b (O) or {-1} -> (N, O, L_out). */
STG_API stg_tensor stg_conv1d(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                              const stg_conv_params *p);

/* dropout: in a training plan each element is zeroed with probability p
 * and the others scaled by 1/(1-p), as torch.nn.functional.dropout; in an
 * inference plan (opts.inference) the identity.  The mask of element i is a
 * pure function of (opts.seed, the step number, this node, i): the same at
 * any thread count and after a resume; not PyTorch's generator.  0 <= p <= 1. */
STG_API stg_tensor stg_dropout(stg_graph *g, stg_tensor x, float p);

/* batch_norm, as torch.nn.functional.batch_norm over x (N, C) or (N, C,
 * ...), per channel c:  y = (x - mean) / sqrt(var + eps) * w + b.
 * In a training plan mean and var are the batch's (var biased, over N and
 * every axis after C; more than one value per channel needed), and each
 * training step that succeeds folds them into the running statistics:
 *   running_mean = momentum mean + (1 - momentum) running_mean
 *   running_var  = momentum var n / (n - 1) + (1 - momentum) running_var
 * (stg_plan_forward on a training plan uses the batch's and commits
 * nothing.)  In an inference plan mean and var are the running statistics.
 * w and b (C) are usually parameters; either may be {-1} (PyTorch's
 * affine=False is both).  running_mean and running_var are (C) tensors made
 * by stg_stat (start them at 0 and 1, as PyTorch does); both {-1}: batch
 * statistics in every plan (track_running_stats=False).  'p' may be NULL;
 * a zero field means its default (eps 1e-5, momentum 0.1). */
typedef struct stg_batch_norm_params {
    float eps;
    float momentum; /* in (0, 1] */
} stg_batch_norm_params;
STG_API stg_tensor stg_batch_norm(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                                  stg_tensor running_mean, stg_tensor running_var,
                                  const stg_batch_norm_params *p);

/* layer_norm, as torch.nn.functional.layer_norm over the last 'naxes' axes
 * of x: each row of those axes becomes (x - mean) / sqrt(var + eps) * w + b
 * (var biased).  w and b have the shape of the last 'naxes' axes, or are
 * {-1} (elementwise_affine=False is both).  eps > 0; PyTorch's default is
 * 1e-5. */
STG_API stg_tensor stg_layer_norm(stg_graph *g, stg_tensor x, int naxes, stg_tensor w,
                                  stg_tensor b, float eps);

/* embedding, as torch.nn.functional.embedding: w (V, D) and int32 indices
 * of any shape -> (indices' shape..., D), row idx[i] of w at position i.
 * The gradient adds each position's row into row idx[i] of w's gradient,
 * deterministically (the same bits at any thread count, repeated indices
 * included), except at padding_idx (-1: none), whose row gets no gradient.
 * An index outside [0, V) fails the step with STG_INDEX. */
STG_API stg_tensor stg_embedding(stg_graph *g, stg_tensor w, stg_tensor idx, int64_t padding_idx);

/* Recurrent layers, as torch.nn.RNN, LSTM and GRU: PyTorch's gate order
 * (LSTM i, f, g, o; GRU r, z, n), parameter shapes and names, so weights
 * exported from PyTorch load directly.  Layer l has weight_ih_l<l> (G H,
 * in), weight_hh_l<l> (G H, H), bias_ih_l<l> and bias_hh_l<l> (G H), G = 1
 * (RNN), 4 (LSTM), 3 (GRU); 'in' is input_size for layer 0, H after.
 * PyTorch initialises them all uniform in +-1/sqrt(H) (stg_plan_init with
 * STG_INIT_UNIFORM). */
typedef enum stg_rnn_mode {
    STG_RNN_TANH = 0,
    STG_RNN_RELU,
    STG_LSTM,
    STG_GRU
} stg_rnn_mode;
#define STG_RNN_MAX_LAYERS 8
typedef struct stg_rnn {
    stg_rnn_mode mode;
    int64_t input_size, hidden_size;
    int num_layers;  /* 0 means 1 */
    int batch_first; /* x and the output (N, T, features) instead of (T, N, features) */
    int no_bias;     /* PyTorch's bias=False */
    stg_tensor weight_ih[STG_RNN_MAX_LAYERS], weight_hh[STG_RNN_MAX_LAYERS];
    stg_tensor bias_ih[STG_RNN_MAX_LAYERS], bias_hh[STG_RNN_MAX_LAYERS];
} stg_rnn;
/* Declares the layer's parameters, named as in PyTorch's state_dict:
 * "<prefix>.weight_ih_l0", ... ("weight_ih_l0" with a NULL or empty
 * prefix).  Fill mode, input_size, hidden_size, num_layers, batch_first and
 * no_bias first.  Returns the graph's status. */
STG_API stg_status stg_rnn_params(stg_graph *g, stg_rnn *r, const char *prefix);
/* The layer over the whole sequence x (T, N, input_size), or (N, T,
 * input_size) with batch_first, unrolled over its fixed length T.  h0 (L,
 * N, H) is the initial state, {-1} for zeros; c0 likewise, LSTM only.
 * Returns every step's output of the last layer, (T, N, H) or (N, T, H);
 * *h_n and *c_n (LSTM), when not NULL, get the final states (L, N, H).
 * The input projection of all steps is one product before the recurrence;
 * each step is one product and one fused pass over the gates; the weight
 * gradients of all steps are one product each after it. */
STG_API stg_tensor stg_rnn_apply(stg_graph *g, const stg_rnn *r, stg_tensor x, stg_tensor h0,
                                 stg_tensor c0, stg_tensor *h_n, stg_tensor *c_n);

typedef struct stg_pool_params {
    int64_t kernel[2];
    int64_t stride[2];    /* 0: the kernel size, as PyTorch's default */
    int64_t padding[2];   /* at most half the kernel, as PyTorch requires */
} stg_pool_params;
/* max_pool2d: (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2 padding - KH) /
 * stride + 1; padding counts as -inf.  The gradient goes to the arg-max of
 * each window, the first in row-major order (the last NaN where there are
 * NaNs), as PyTorch's CPU kernel chooses. */
STG_API stg_tensor stg_max_pool2d(stg_graph *g, stg_tensor x, const stg_pool_params *p);
/* avg_pool2d: the mean of each window, padding counted as zeros in it
 * (PyTorch's count_include_pad=True, ceil_mode=False). */
STG_API stg_tensor stg_avg_pool2d(stg_graph *g, stg_tensor x, const stg_pool_params *p);
/* The 1-d forms: (N, C, L) -> (N, C, L_out). */
STG_API stg_tensor stg_max_pool1d(stg_graph *g, stg_tensor x, const stg_pool_params *p);
STG_API stg_tensor stg_avg_pool1d(stg_graph *g, stg_tensor x, const stg_pool_params *p);
/* The mean over every axis after the first two, kept as size 1: (N, C, H, W)
 * -> (N, C, 1, 1), as adaptive_avg_pool2d(x, 1); (N, C, L) -> (N, C, 1). */
STG_API stg_tensor stg_global_avg_pool(stg_graph *g, stg_tensor x);

/* Elementwise arithmetic with NumPy broadcasting. */
STG_API stg_tensor stg_add(stg_graph *g, stg_tensor a, stg_tensor b);
STG_API stg_tensor stg_sub(stg_graph *g, stg_tensor a, stg_tensor b);
STG_API stg_tensor stg_mul(stg_graph *g, stg_tensor a, stg_tensor b);
STG_API stg_tensor stg_div(stg_graph *g, stg_tensor a, stg_tensor b);
/* Elementwise binary cross-entropy of sigmoid(a) against targets b (the
 * terms of stg_bce_with_logits), stable. */
STG_API stg_tensor stg_bce_logits(stg_graph *g, stg_tensor a, stg_tensor b);
/* 1 where a == b, else 0 (no gradient). */
STG_API stg_tensor stg_eq(stg_graph *g, stg_tensor a, stg_tensor b);
/* a / b, and 0 where b is 0. */
STG_API stg_tensor stg_div_or_zero(stg_graph *g, stg_tensor a, stg_tensor b);
STG_API stg_tensor stg_neg(stg_graph *g, stg_tensor a);
/* a * factor, for a constant factor. */
STG_API stg_tensor stg_scale(stg_graph *g, stg_tensor a, float factor);

/* Elementwise functions, each with its PyTorch meaning (and gradient):
 * softplus is PyTorch's with beta 1 and threshold 20, gelu the exact (erf)
 * form, abs'(0) = 0, clamp passes the gradient where lo <= x <= hi. */
STG_API stg_tensor stg_exp(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_log(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_sqrt(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_pow(stg_graph *g, stg_tensor a, float exponent);
STG_API stg_tensor stg_abs(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_sin(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_cos(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_tanh(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_sigmoid(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_relu(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_leaky_relu(stg_graph *g, stg_tensor a, float slope);
STG_API stg_tensor stg_elu(stg_graph *g, stg_tensor a, float alpha);
STG_API stg_tensor stg_softplus(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_gelu(stg_graph *g, stg_tensor a);
STG_API stg_tensor stg_clamp(stg_graph *g, stg_tensor a, float lo, float hi);

/* Reductions over the 'naxes' axes listed in 'axes' (negative counts from the
 * end; each axis at most once).  naxes == 0 reduces over all axes.  With
 * keepdims the reduced axes stay as size 1. */
STG_API stg_tensor stg_sum(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims);
STG_API stg_tensor stg_mean(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims);
/* max and min: the gradient is shared evenly between the elements equal to
 * the result, as PyTorch's amax/amin (and full max/min) do. */
STG_API stg_tensor stg_max(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims);
STG_API stg_tensor stg_min(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims);
/* Unbiased variance (divides by n - 1, torch.var's default). */
STG_API stg_tensor stg_var(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims);
/* log(sum(exp(a))), stable. */
STG_API stg_tensor stg_logsumexp(stg_graph *g, stg_tensor a, int naxes, const int *axes,
                                 int keepdims);
/* The p-norm, p = 1 or 2 (STG_INVALID otherwise); the 2-norm's gradient is 0
 * where the norm is 0, as in PyTorch. */
STG_API stg_tensor stg_norm(stg_graph *g, stg_tensor a, int p, int naxes, const int *axes,
                            int keepdims);

/* Shape changes.  reshape keeps the element count (no -1 wildcard) and is a
 * view when the input is contiguous, a copy otherwise.  transpose permutes the
 * dims (perm has ndim entries) and swapaxes exchanges two; both are views.
 * broadcast_to expands size-1 or missing leading dims, as a view. */
STG_API stg_tensor stg_reshape(stg_graph *g, stg_tensor a, int ndim, const int64_t *dims);
/* torch.flatten: axes start..end (negative counts from the end) merged into
 * one, as a reshape; flatten(x, 1, -1) turns (N, C, H, W) into (N, C H W).
 * A 0-dim tensor becomes (1). */
STG_API stg_tensor stg_flatten(stg_graph *g, stg_tensor a, int start, int end);
STG_API stg_tensor stg_transpose(stg_graph *g, stg_tensor a, const int *perm);
STG_API stg_tensor stg_swapaxes(stg_graph *g, stg_tensor a, int axis1, int axis2);
STG_API stg_tensor stg_broadcast_to(stg_graph *g, stg_tensor a, int ndim, const int64_t *dims);
/* Elements start, start + step, ... (< stop) along 'axis', as a view;
 * negative start/stop count from the end; needs start < stop, step >= 1. */
STG_API stg_tensor stg_slice(stg_graph *g, stg_tensor a, int axis, int64_t start, int64_t stop,
                             int64_t step);
/* The elements along 'axis' in reverse order, as a view. */
STG_API stg_tensor stg_flip(stg_graph *g, stg_tensor a, int axis);
/* 'a' with before[i] / after[i] elements of 'value' added along each axis i
 * ('before' and 'after' have a's number of dims). */
STG_API stg_tensor stg_pad(stg_graph *g, stg_tensor a, const int64_t *before,
                           const int64_t *after, float value);
/* Joins n tensors along an existing axis (concat) or a new one (stack); the
 * other dims must match. */
STG_API stg_tensor stg_concat(stg_graph *g, int n, const stg_tensor *xs, int axis);
STG_API stg_tensor stg_stack(stg_graph *g, int n, const stg_tensor *xs, int axis);
/* Cuts 'a' along 'axis' into n views of sizes[0..n) (which must add up to
 * the axis' size) written to out[0..n).  Returns the graph's status; on
 * error out[] holds invalid tensors. */
STG_API stg_status stg_split(stg_graph *g, stg_tensor a, int axis, int n, const int64_t *sizes,
                             stg_tensor *out);
/* The same values with no gradient flowing back through them (a view). */
STG_API stg_tensor stg_detach(stg_graph *g, stg_tensor a);

/* softmax and log_softmax along 'axis' (negative counts from the end),
 * computed stably (the maximum is subtracted first). */
STG_API stg_tensor stg_softmax(stg_graph *g, stg_tensor a, int axis);
STG_API stg_tensor stg_log_softmax(stg_graph *g, stg_tensor a, int axis);

/* out[...] = a[..., idx[...], ...] along 'axis' (PyTorch's gather): 'idx' is an
 * int32 tensor with a's number of dims and, off 'axis', sizes no larger than
 * a's; the result has idx's shape.  An index out of range in a step makes the
 * step fail with STG_INDEX. */
STG_API stg_tensor stg_gather(stg_graph *g, stg_tensor a, int axis, stg_tensor idx);

/* Losses; each is a scalar.  'reduction' averages or sums over the elements
 * (the rows, for the classification losses). */
typedef enum stg_reduction {
    STG_REDUCE_MEAN = 0,
    STG_REDUCE_SUM
} stg_reduction;
/* Mean squared error mean((pred - target)^2).  Shapes must match. */
STG_API stg_tensor stg_mse_loss(stg_graph *g, stg_tensor pred, stg_tensor target);
/* mean |pred - target|.  Shapes must match. */
STG_API stg_tensor stg_l1_loss(stg_graph *g, stg_tensor pred, stg_tensor target);
/* Cross-entropy of softmax(logits) against int32 class labels: logits
 * (..., C) with classes along the last axis, labels (...) in [0, C).  A label
 * out of range in a step makes the step fail with STG_INDEX. */
STG_API stg_tensor stg_softmax_cross_entropy(stg_graph *g, stg_tensor logits, stg_tensor labels,
                                             stg_reduction reduction);
/* Negative log-likelihood of log-probabilities (..., C) against labels (...). */
STG_API stg_tensor stg_nll_loss(stg_graph *g, stg_tensor logp, stg_tensor labels,
                                stg_reduction reduction);
/* Binary cross-entropy of sigmoid(logits) against targets in [0, 1], stable
 * (PyTorch's binary_cross_entropy_with_logits, mean).  Shapes must match. */
STG_API stg_tensor stg_bce_with_logits(stg_graph *g, stg_tensor logits, stg_tensor target);

/* Asks the plan to compute the gradient of the loss with respect to 't'
 * (parameters always get one; inputs and intermediate tensors only on
 * request). */
STG_API stg_status stg_graph_require_grad(stg_graph *g, stg_tensor t);
/* Asks the plan to keep the value of 't' readable after each step (the loss
 * and all leaves are always kept). */
STG_API stg_status stg_graph_keep(stg_graph *g, stg_tensor t);

/* ------------------------------------------------------------------------ */
/* Plans                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct stg_plan stg_plan;

typedef enum stg_optimizer {
    STG_OPTIM_NONE = 0, /* compute gradients only */
    STG_OPTIM_SGD,      /* PyTorch's SGD: momentum, dampening 0, Nesterov, L2 weight decay */
    STG_OPTIM_ADAM,     /* PyTorch's Adam: weight decay added to the gradient */
    STG_OPTIM_ADAMW     /* PyTorch's AdamW: decoupled weight decay */
} stg_optimizer;

/* The sgemm micro-kernel every matrix product of a plan runs on.  AUTO
 * takes the STG_GEMM_KERNEL environment variable ("blis", "avx512", "avx2",
 * "portable" or "auto"; read once per process) and otherwise chooses once
 * per process by CPU features, never by timing (kernels round differently):
 * BLIS's own micro-kernel where the installed BLIS has one for this CPU,
 * else the widest of stgrad's that the CPU runs.  A value of STG_GEMM_KERNEL
 * that names no kernel fails every AUTO plan with STG_INVALID.  Products
 * round differently with each kernel and with its KC block (which follows
 * the CPU's L1 size), so a run resumed from a checkpoint on another machine
 * may continue with different bits. */
typedef enum stg_gemm_kernel {
    STG_GEMM_AUTO = 0,
    STG_GEMM_BLIS,    /* BLIS's micro-kernel and block sizes for this CPU */
    STG_GEMM_AVX512,  /* stgrad's, AVX-512F, 12x32 */
    STG_GEMM_AVX2,    /* stgrad's, AVX2 + FMA, 6x16 */
    STG_GEMM_PORTABLE /* stgrad's, plain C, 4x8 */
} stg_gemm_kernel;

/* What a training step checks before it updates anything (see
 * stg_plan_step).  GRADIENTS, the default, also reads every parameter's
 * gradient once per step (its cost is in README.md); LOSS is for users who
 * want those microseconds back and accept that a NaN which leaves the loss
 * finite (relu(NaN) is NaN, but max over a row that holds it may not be)
 * reaches the parameters. */
typedef enum stg_guard {
    STG_GUARD_GRADIENTS = 0, /* the loss and every parameter gradient are finite */
    STG_GUARD_LOSS           /* the loss alone is finite */
} stg_guard;

/* How a plan's threads wait for each other inside a step and for the next
 * step between steps (a plan of one thread never waits).  See "Threads and
 * waiting" in README.md for what each costs. */
typedef enum stg_wait {
    STG_WAIT_SPIN_YIELD = 0, /* the default: spin briefly, then sched_yield; a
                                worker idle for 2 ms sleeps in the kernel, and
                                the next step wakes it with one system call */
    STG_WAIT_SPIN,           /* spin only: a step makes no system call at all,
                                and each worker keeps its core busy for as long
                                as the plan lives (for dedicated cores; plan
                                creation refuses more threads than the CPUs
                                this process may run on) */
    STG_WAIT_PASSIVE         /* sleep in the kernel at once (Linux futex;
                                short sleeps elsewhere): for shared or
                                oversubscribed cores, at a few microseconds per
                                barrier */
} stg_wait;

/*
 * Data-parallel training.  Several processes run the same plan, each on its
 * share of the batch, and sum their parameter gradients through a hook
 * the caller provides (libstgrad-mpi implements it over MPI).  The plan
 * keeps every parameter gradient in one region of its arena, in buckets
 * in the order the backward pass completes them; a bucket's sum starts
 * as soon as its last gradient is written, so the exchange overlaps the
 * rest of the backward pass, and is awaited before clipping, the guard and
 * the updates, which then see the sum divided by 'size': the mean
 * gradient, as one process would compute on the whole batch when every
 * process's loss is the mean over an equal share.  A last small bucket
 * carries one float per process, 1 where that process's step failed (a
 * bad label, a non-finite loss): every process then fails the step, with
 * STG_PEER where the failure was elsewhere, and no parameter changes on
 * any of them.
 *
 * stgrad calls the functions from the thread that runs the step, one
 * bucket at a time: in every step, a failed one included, each bucket is
 * started once, in increasing order, and waited for once (also after its
 * start returned an error), and stgrad never touches a started bucket's
 * floats before its wait returns.  Each returns 0, or nonzero to fail the step with
 * STG_COMM.  The sum must give the same bits on every process, or the
 * processes' parameters drift apart.
 */
typedef struct stg_collective {
    int size; /* processes, >= 1 */
    int rank; /* this process, 0 .. size - 1 */
    /* starts summing 'count' floats at 'data' over the processes, in place */
    int (*start_sum)(void *ctx, int bucket, float *data, int64_t count);
    /* returns when the sum is in 'data' */
    int (*wait_sum)(void *ctx, int bucket);
    void *ctx;
    size_t bucket_bytes; /* gradient bytes per bucket (0: 1 MiB); a bucket also
                            closes at 7 gradients */
} stg_collective;

typedef struct stg_plan_options {
    int threads;             /* threads per step, the caller's included (the
                                plan starts threads - 1 workers and joins them
                                in stg_plan_free); 0 means 1 */
    stg_optimizer optimizer; /* default STG_OPTIM_SGD */
    float lr;                /* learning rate, default 0.01 */
    float momentum;          /* SGD, default 0 */
    int nesterov;            /* SGD: Nesterov momentum (needs momentum > 0) */
    float weight_decay;      /* default 0 */
    float beta1, beta2, eps; /* Adam/AdamW, defaults 0.9, 0.999, 1e-8 */
    float clip_norm;         /* > 0: scale all gradients so their global L2 norm is
                                at most this (PyTorch's clip_grad_norm_) */
    float clip_value;        /* > 0: clamp every gradient element to [-v, v] */
    void *arena;             /* caller memory (64-byte aligned) or NULL */
    size_t arena_bytes;      /* size of 'arena' */
    int profile;             /* > 0: time every node of every step and keep the
                                last 'profile' steps (see "Profiling"); 0: no
                                timing calls in a step */
    stg_guard guard;         /* default STG_GUARD_GRADIENTS */
    stg_gemm_kernel gemm_kernel; /* default STG_GEMM_AUTO; forcing a kernel the
                                    CPU (or this build) cannot run fails plan
                                    creation with STG_INVALID */
    stg_wait wait;           /* default STG_WAIT_SPIN_YIELD */
    void (*worker_start)(int worker, void *arg); /* if not NULL, each worker
                                thread calls it once, before its first step
                                (worker is 1 .. threads-1): where a real-time
                                program sets the worker's CPU affinity,
                                scheduling policy and priority, which are
                                otherwise the creating thread's */
    void *worker_arg;        /* passed to worker_start */
    uint64_t seed;           /* the key of dropout's masks (default 0); a run
                                resumed from a checkpoint draws the masks of
                                the straight run when it keeps the seed */
    int inference;           /* 1: an inference plan, for a forward pass with
                                no loss (pass {-1} and keep the tensors to
                                read): dropout is the identity */
    const struct stg_plan *share_params; /* an inference plan only: read the
                                parameters from this plan's storage instead of
                                holding a copy (evaluation during training,
                                with no copy).  Both plans must come from the
                                same graph or from graphs built alike: each
                                parameter is matched by id, name and shape.
                                That plan must outlive this one; this one
                                cannot load checkpoints. */
    const stg_collective *collective; /* a training plan only: sum the
                                gradients over processes through this hook
                                (copied; ctx must outlive the plan); NULL:
                                one process */
} stg_plan_options;

/* Fills 'opts' with the defaults. */
STG_API void stg_plan_options_init(stg_plan_options *opts);

/* Builds a plan that minimises the scalar 'loss' of 'g'.  'opts' may be NULL
 * for the defaults.  'loss' may be an invalid tensor (id < 0) for a forward-only plan that
 * computes the kept tensors.  The graph is not changed and may be freed
 * afterwards.  On success '*out' owns a new plan (free with stg_plan_free).
 * Returns STG_INVALID for a graph with an error or a non-scalar loss (the
 * message is available from stg_plan_last_message()), STG_NOMEM, or
 * STG_SMALL_ARENA when opts->arena cannot hold the plan.
 * The first plan a process creates (or sizes with stg_plan_arena_size)
 * chooses the GEMM kernel, which sets BLIS up for this CPU.  BLIS aborts
 * the process when memory runs out inside that one-time setup, so a program
 * that must survive that creates a plan at start-up; every later allocation
 * failure is reported.  A plan of more than one thread starts its workers
 * here (STG_NOMEM, with a message, when the system refuses one). */
STG_API stg_status stg_plan_create(const stg_graph *g, stg_tensor loss,
                                   const stg_plan_options *opts, stg_plan **out);
/* A plan for the vector-Jacobian product of 'out' (any shape): the backward
 * pass starts from the upstream gradient held by 'gout', a float tensor of
 * out's shape (usually an input the caller fills), as PyTorch's
 * out.backward(gout).  Gradients of parameters and of tensors given to
 * stg_graph_require_grad are computed; with an optimizer they are applied.
 * No loss guard runs (stg_plan_loss returns 0).  Errors as stg_plan_create. */
STG_API stg_status stg_plan_create_vjp(const stg_graph *g, stg_tensor out, stg_tensor gout,
                                       const stg_plan_options *opts, stg_plan **plan);
/* Buckets of a plan with opts.collective (0 without), and the floats of
 * bucket 'b' (0 when out of range): what a hook implementation sizes its
 * buffers by before the first step.  The last bucket is the failure flags. */
STG_API int stg_plan_buckets(const stg_plan *p);
STG_API int64_t stg_plan_bucket_floats(const stg_plan *p, int b);
/* The arena size in bytes that stg_plan_create would need for these arguments
 * (for a caller-provided arena). */
STG_API stg_status stg_plan_arena_size(const stg_graph *g, stg_tensor loss,
                                       const stg_plan_options *opts, size_t *bytes);
/* A message about the last failed stg_plan_create/stg_plan_arena_size call of
 * this thread ("" if none). */
STG_API const char *stg_plan_last_message(void);
STG_API void stg_plan_free(stg_plan *p);

/* One training step: forward, backward and the optimizer update.  Returns
 * STG_NUMERIC when the loss or (with the default opts.guard) a parameter's
 * gradient is not finite, STG_INDEX when a label or index is out of range;
 * then the parameters, optimizer state and step count are left as they
 * were, and stg_plan_message() says what happened: for STG_NUMERIC, what was
 * not finite and the first node of the step whose output was (found by
 * running the step's nodes again one by one, which allocates nothing). */
STG_API stg_status stg_plan_step(stg_plan *p);
/* Forward pass only (no gradients, no update).  Returns STG_INDEX like a step. */
STG_API stg_status stg_plan_forward(stg_plan *p);
/* What went wrong in the last step or forward pass ("" if nothing).  Owned by
 * the plan. */
STG_API const char *stg_plan_message(const stg_plan *p);

/* Pointer to the data of an input, parameter or constant (writable) or of a
 * kept tensor (read it after a step).  Valid for the plan's life; NULL if 't'
 * has no readable storage in this plan. */
STG_API float *stg_plan_data(stg_plan *p, stg_tensor t);
/* Pointer to the gradient of 't' (a parameter or a tensor given to
 * stg_graph_require_grad), valid after stg_plan_step; NULL otherwise. */
STG_API const float *stg_plan_grad(stg_plan *p, stg_tensor t);
/* The data of an int32 input (labels, indices); NULL for other tensors. */
STG_API int32_t *stg_plan_data_i32(stg_plan *p, stg_tensor t);
STG_API stg_status stg_plan_set_i32(stg_plan *p, stg_tensor t, const int32_t *src, int64_t n);
/* Copies 'n' floats into/out of the data of 't'; STG_SHAPE if n != numel,
 * STG_NOT_FOUND if 't' has no readable storage in this plan, STG_INVALID for
 * a NULL plan or buffer. */
STG_API stg_status stg_plan_set(stg_plan *p, stg_tensor t, const float *src, int64_t n);
STG_API stg_status stg_plan_get(stg_plan *p, stg_tensor t, float *dst, int64_t n);
/* The loss value of the last step. */
STG_API float stg_plan_loss(const stg_plan *p);
/* Changes the base learning rate for later steps (no re-planning). */
STG_API stg_status stg_plan_set_lr(stg_plan *p, float lr);

/* Learning-rate schedules, evaluated before every step from the number of
 * steps done so far, t:
 *   STG_SCHED_CONSTANT  lr
 *   STG_SCHED_STEP      lr * gamma^floor(t / step_size)
 *   STG_SCHED_COSINE    lr_min + (lr - lr_min) (1 + cos(pi t / t_max)) / 2
 * (PyTorch's StepLR and CosineAnnealingLR with one scheduler step per
 * training step; like PyTorch's, the cosine climbs back after t_max steps,
 * so set t_max to the length of the run). */
typedef enum stg_schedule_kind {
    STG_SCHED_CONSTANT = 0,
    STG_SCHED_STEP,
    STG_SCHED_COSINE
} stg_schedule_kind;
typedef struct stg_schedule {
    stg_schedule_kind kind;
    int64_t step_size; /* STEP */
    float gamma;       /* STEP */
    int64_t t_max;     /* COSINE */
    float lr_min;      /* COSINE */
} stg_schedule;
/* Returns STG_INVALID (plan unchanged) for a bad schedule. */
STG_API stg_status stg_plan_set_schedule(stg_plan *p, const stg_schedule *s);
/* The learning rate the next step will use. */
STG_API float stg_plan_lr(const stg_plan *p);
/* Training steps completed (restored by stg_plan_load). */
STG_API int64_t stg_plan_steps(const stg_plan *p);

/* Initialisers.  Values come from a counter-based generator: value i of a
 * tensor depends only on (seed, i), so results do not depend on threads or
 * on the order tensors are initialised in.  For fans, a matrix is
 * (fan_in, fan_out), as in x @ W; a tensor of 3 or more dims is a
 * convolution's weight (O, C/groups, K...), with PyTorch's fans: fan_in =
 * C/groups x prod(K), fan_out = O x prod(K); a vector has fan_in = fan_out =
 * its size.
 *   ZEROS, ONES, CONSTANT (a)       the value
 *   UNIFORM (a, b)                  uniform in [a, b)
 *   NORMAL (a, b)                   mean a, standard deviation b
 *   XAVIER_UNIFORM / _NORMAL (a)    Glorot, gain a (1 if 0): bound
 *                                   a sqrt(6 / (fan_in + fan_out)), std a sqrt(2 / (fan_in + fan_out))
 *   KAIMING_UNIFORM / _NORMAL (a)   He for leaky_relu slope a (0: relu):
 *                                   gain sqrt(2 / (1 + a^2)), bound gain sqrt(3 / fan_in),
 *                                   std gain / sqrt(fan_in) */
typedef enum stg_init_kind {
    STG_INIT_ZEROS = 0,
    STG_INIT_ONES,
    STG_INIT_CONSTANT,
    STG_INIT_UNIFORM,
    STG_INIT_NORMAL,
    STG_INIT_XAVIER_UNIFORM,
    STG_INIT_XAVIER_NORMAL,
    STG_INIT_KAIMING_UNIFORM,
    STG_INIT_KAIMING_NORMAL
} stg_init_kind;
/* Fills the data of 't' (any tensor stg_plan_data gives) from 'seed'.
 * STG_INVALID for bad arguments (b <= a for UNIFORM, b < 0 for NORMAL). */
STG_API stg_status stg_plan_init(stg_plan *p, stg_tensor t, stg_init_kind kind, float a, float b,
                                 uint64_t seed);

/* Checkpoints: parameters, optimizer state and the step count.
 * stg_plan_save writes a temporary file beside 'path', flushes it and renames
 * it over 'path', so a crash or a full disk never destroys an earlier
 * checkpoint; STG_IO when the file cannot be written, STG_NOMEM when memory
 * runs out (message in stg_plan_message).
 * stg_plan_load checks the whole file (magic, version, checksum, every
 * tensor's name, dtype and shape, nothing missing or extra) before it
 * changes anything: on STG_IO or STG_FORMAT the plan is unchanged and
 * stg_plan_message says what is wrong.  Tensors are named after parameters
 * (a parameter without a name, or whose name another parameter has, is
 * "param<k>", k counting parameters from 0), optimizer state as
 * "<name>/<state>" (momentum_buffer, exp_avg, exp_avg_sq); two tensors that
 * would get the same name make both calls fail with STG_INVALID (rename a
 * parameter), as do NULL arguments.  The format is described in README.md. */
STG_API stg_status stg_plan_save(stg_plan *p, const char *path);
/* Loads every parameter and running statistic of the plan, by name, from a
 * safetensors file (tools/export_state_dict.py writes one from a PyTorch
 * state_dict; README.md, "Weights from PyTorch").  The whole file is
 * checked first: a missing or unexpected name (BatchNorm's
 * num_batches_tracked excepted), a dtype other than F32, a shape other than
 * the plan's, or a malformed header returns STG_FORMAT with a message
 * naming the tensor, and the plan is unchanged.  Optimizer state and the
 * step count are not touched. */
STG_API stg_status stg_plan_load_safetensors(stg_plan *p, const char *path);
STG_API stg_status stg_plan_load(stg_plan *p, const char *path);

/* Memory: the arena's size, and the sum of the sizes of all buffers it holds
 * (what it would take without lifetime-based reuse). */
STG_API size_t stg_plan_arena_bytes(const stg_plan *p);
STG_API size_t stg_plan_buffer_bytes(const stg_plan *p);
/* The same, broken out: persistent buffers (leaves, gradients, the loss,
 * kept values) live for the plan's life and are never shared; transient ones
 * live for part of a step and share the rest of the arena
 * (arena_bytes - persistent_bytes).  The second line breaks buffer_bytes
 * down by what the buffers hold: parameters (running statistics counted
 * with them), their gradients, optimizer
 * state, inputs and constants, forward activations (with the loss and kept
 * values), the temporaries of the backward pass and the update, and the
 * scratch that kernels use while they run (GEMM packing, for one). */
typedef struct stg_memory_report {
    size_t arena_bytes, buffer_bytes, persistent_bytes, transient_bytes;
    size_t param_bytes, grad_bytes, state_bytes, input_bytes, activation_bytes, temp_bytes;
    size_t scratch_bytes;
} stg_memory_report;
STG_API stg_status stg_plan_memory(const stg_plan *p, stg_memory_report *r);
STG_API int stg_plan_threads(const stg_plan *p);
/* Changes how the plan's threads wait (opts.wait): a spinning worker
 * switches within about a thousand pauses, a yielding one within 2 ms, and a
 * sleeping one at its next wake-up (so the first step after a switch to
 * SPIN may still make one system call).  For example PASSIVE for a plan
 * that will be idle for a while, so that its spinning workers give their
 * cores back, and SPIN again before it is used.
 * Call it between steps, from the thread that runs them.  STG_INVALID for a
 * NULL plan, an unknown policy, or SPIN with more threads than CPUs (as in
 * stg_plan_create). */
STG_API stg_status stg_plan_set_wait(stg_plan *p, stg_wait wait);
/* Number of nodes the plan executes per step (forward, backward, update). */
STG_API int stg_plan_node_count(const stg_plan *p);

/* The GEMM micro-kernel a plan runs on and why it was chosen. */
typedef struct stg_gemm_info {
    stg_gemm_kernel kernel; /* never STG_GEMM_AUTO */
    const char *name;       /* "blis", "avx512", "avx2" or "portable" */
    int mr, nr;             /* register block: a tile of C is mr x nr */
    int mc, kc, nc;         /* cache blocks of the GEMM loops */
    const char *why;        /* one line for people, e.g. "gemm: stgrad avx512
                               12x32 (MC 672, KC 192, NC 4096); BLIS 0.9.0 chose
                               'generic' for this CPU, whose sgemm kernel is its
                               reference one" */
} stg_gemm_info;
/* Fills 'info' (strings owned by the plan).  STG_INVALID if an argument is
 * NULL.  Thread-safe. */
STG_API stg_status stg_plan_gemm_info(const stg_plan *p, stg_gemm_info *info);
/* Name of a kernel ("auto", "blis", ...), or NULL for a value out of range. */
STG_API const char *stg_gemm_kernel_name(stg_gemm_kernel k);

/* ------------------------------------------------------------------------ */
/* Profiling and inspection                                                  */
/* ------------------------------------------------------------------------ */

/* Every executed node, by its position in the schedule (0 to
 * stg_plan_node_count - 1), with what the plan knows of it; a plan created
 * with opts.profile > 0 adds timings, medians over the steps it keeps. */
typedef enum stg_phase {
    STG_PHASE_FORWARD = 0, /* the user's graph and the loss */
    STG_PHASE_BACKWARD,    /* gradients */
    STG_PHASE_OPTIMIZER    /* clipping, the loss guard, updates */
} stg_phase;
/* "forward", "backward" or "optimizer". */
STG_API const char *stg_phase_name(stg_phase ph);

typedef struct stg_node_info {
    const char *op;     /* op name: "matmul", "relu_grad", "sgd", ... */
    const char *about;  /* name of the leaf it updates or reads first, or "" */
    stg_phase phase;
    int serial;         /* 1 if thread 0 alone runs it */
    int ndim;
    int64_t dims[STG_MAX_DIMS]; /* output shape */
    double flops;       /* per step */
    double bytes_read;  /* each input read once (a lower bound for matmul) */
    double bytes_written;
    int64_t offset;     /* output buffer's byte offset in the arena */
    int64_t bytes;      /* output buffer's size */
    double time_ns;     /* median of the slowest thread's time in the kernel */
    double wait_ns;     /* median of the threads' mean wait at the barrier
                           before it (0 where there is none) */
    char attrs[80];     /* the op's attributes, e.g. "axes=0 keepdims", or "" */
    int64_t step;       /* the time step of a recurrent layer's node, else -1 */
} stg_node_info;
STG_API stg_status stg_plan_node_info(const stg_plan *p, int pos, stg_node_info *info);
/* One thread's medians for node 'pos': time in its kernel, wait before it.
 * STG_STATE if the plan does not profile or has recorded no step. */
STG_API stg_status stg_plan_node_thread(const stg_plan *p, int pos, int thread, double *busy_ns,
                                        double *wait_ns);

/* Whole steps (stg_plan_step; for a forward-only plan, stg_plan_forward)
 * that succeeded, over the kept ones. */
typedef struct stg_step_profile {
    int64_t recorded; /* steps timed since creation or the last reset */
    int kept;         /* steps whose timings are kept (the latest ones) */
    double min_ns, p50_ns, p99_ns, max_ns;
} stg_step_profile;
/* STG_STATE if the plan does not profile. */
STG_API stg_status stg_plan_step_profile(const stg_plan *p, stg_step_profile *out);
/* Forgets the recorded steps (for example after a warm-up). */
STG_API stg_status stg_plan_profile_reset(stg_plan *p);

/* Reports and exports.  The tables are plain text for terminals; the files
 * are written all or nothing (STG_IO with a message in stg_plan_message on
 * failure, and an earlier file at 'path' stays as it was).
 *   stg_plan_write_profile  per node: phase, op, shape, time, share of the
 *                           step, FLOPs, GFLOP/s, bytes, per-thread time and
 *                           barrier waits (STG_STATE without profiling)
 *   stg_plan_write_memory   the arena: every buffer's offset, size, lifetime
 *                           and owner, the reuse ratio, the breakdown
 *   stg_plan_write_trace    Chrome trace event JSON of the kept steps, one
 *                           track per thread (Perfetto, chrome://tracing)
 *   stg_plan_write_dot      Graphviz DOT of the forward, backward and
 *                           update graph with shapes and arena offsets */
STG_API stg_status stg_plan_write_profile(const stg_plan *p, FILE *f);
STG_API stg_status stg_plan_write_memory(const stg_plan *p, FILE *f);
STG_API stg_status stg_plan_write_trace(stg_plan *p, const char *path);
STG_API stg_status stg_plan_write_dot(stg_plan *p, const char *path);

/* Checks the plan's invariants: every node runs after its inputs, every buffer
 * lies inside the arena, buffers share bytes only when their lifetimes are
 * disjoint.  Returns STG_OK or STG_STATE with a description in 'msg' (room for
 * 'msglen' bytes; may be NULL). */
STG_API stg_status stg_plan_check(const stg_plan *p, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif

#endif /* STGRAD_H */
