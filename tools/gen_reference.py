#!/usr/bin/python3
"""Generate the reference data used by the stgrad tests.

Writes two files into tests/data/ (relative to the repository root):

  matmul_ref.txt  matmul over every pair of operand ranks 1..4, every
                  broadcasting pattern of the batch dimensions, and a range
                  of matrix sizes (1, 3, 7, 17 and a few larger shapes).
  ops_ref.txt     elementwise, reduction, shape and loss ops.
  conv_ref.txt    conv1d/conv2d (stride, padding, dilation, groups, bias),
                  max/avg pooling, 1-d and 2-d, the global average, and
                  batch_norm in training (1-d to 4-d, affine or not).
  seq_ref.txt     embedding (repeated and padding indices) and layer_norm
                  (one to three axes, affine or not).
  rnn_ref.txt     nn.RNN (tanh, relu), nn.LSTM and nn.GRU: 1 and 2 layers,
                  batch-first or not, with and without bias and an
                  initial state; outputs, final states, every gradient.
  bn_running_ref.txt  batch norm's running statistics after several
                  training steps, and the inference output that uses them.
  nonfinite_ref.txt  one case of every op of the two files above (every
                  operand rank pair for matmul) with NaN, +inf and -inf
                  in the first positions of each float input: PyTorch's
                  NaN semantics, forward and backward.

Run from the repository root:

    /usr/bin/python3 tools/gen_reference.py

It needs torch and numpy.  The output files are committed, so the tests
never need Python; rerun this script only to change the reference data.
The output is deterministic: every case seeds its own torch.Generator
from the CRC-32 of its name, so two runs give byte-identical files.

File format (plain text, read with fscanf):

    # comment lines, only at the top of the file
    case <name> <op> [attr tokens...]
    tensor <role> <ndim> <d0> ... <d_{ndim-1}>
    <values...>
    tensor ...
    end

Each value list holds prod(dims) numbers (exactly 1 for ndim 0) in
row-major order, written with '%.9g', at most 16 per line.  The roles
appear in the order in0, in1 (one per input), seed, out, grad0, grad1
(one per input).  `seed` has the shape of `out`; gradI is the gradient of
sum(out * seed) with respect to inI.

Inputs and seed are float32 values drawn uniformly from [-1, 1) (the
divisor of `div` is sign * uniform(0.5, 2)).  They are converted to
float64 and out and the gradients are computed in float64 with torch
autograd, so the reference is essentially exact for the float32 inputs.

optim_ref.txt uses the same blocks differently: 'case <name> <optimizer>'
followed by lr momentum nesterov weight_decay beta1 beta2 eps clip_norm
clip_value schedule(0 constant, 1 step, 2 cosine) step_size gamma t_max
lr_min; tensors x, t (data), w, b (initial parameters), w<k>, b<k> (after
step k) and loss (the loss of each step, computed before its update).

Ops and attribute tokens:

    matmul                       torch.matmul(in0, in1)
    outer                        torch.outer(in0, in1), 1-D inputs
    add sub mul div              broadcasting binary ops
    neg
    sum  <keepdims> <naxes> <axes...>   naxes 0: reduce over all axes
    mean <keepdims> <naxes> <axes...>   (axes may be negative)
    exp log sqrt abs sin cos tanh sigmoid relu softplus gelu
    pow <exponent>  leaky_relu <slope>  elu <alpha>  clamp <lo> <hi>
                     (attributes of unary ops are decimal numbers)
    max min var logsumexp <keepdims> <naxes> <axes...>   (as sum; max/min
                                 share the gradient between ties like amax)
    norm <p> <keepdims> <naxes> <axes...>
    slice <axis> <start> <stop> <step>   flip <axis>
    pad <ndim> <before...> <after...> <value>
    concat <axis>  stack <axis>  (two inputs)
    softmax <axis>  log_softmax <axis>
    gather <axis>                in1 holds int indices (as floats)
    cross_entropy <reduction>    classes along the last axis; in1 = int labels;
    nll <reduction>              reduction 0 = mean, 1 = sum
    l1  bce_with_logits
    reshape <ndim> <dims...>     target shape
    transpose <n> <perm...>      torch.permute(in0, perm)
    swapaxes <a> <b>             torch.swapaxes(in0, a, b)
    mse                          mean squared error of in0 (prediction)
                                 against in1 (target); scalar output
"""

import itertools
import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F

VALUES_PER_LINE = 16
SIZES = (1, 3, 7, 17)

# (M, K, N) tuples cycled through for the matmul cases that do not
# enumerate every size; each of 1, 3, 7, 17 appears twice in each position.
MKN_CYCLE = (
    (3, 7, 17), (17, 1, 3), (7, 17, 1), (1, 3, 7),
    (7, 7, 3), (17, 3, 1), (1, 17, 7), (3, 1, 17),
)

# Extent of a non-broadcast batch dimension, from the rightmost batch
# position leftwards; distinct values catch mixed-up batch axes.
BATCH_EXTENT = (3, 2)


# ---------------------------------------------------------------- output

def fmt_shape(shape):
    """Shape as a name fragment: 2x3x4, or 's' for a scalar."""
    return "x".join(str(d) for d in shape) if shape else "s"


def fmt_tensor(role, t):
    """Text block for one tensor: header line and value lines."""
    shape = list(t.shape)
    lines = ["tensor %s %d%s" % (role, len(shape),
                                 "".join(" %d" % d for d in shape))]
    values = t.detach().reshape(-1).tolist()
    for i in range(0, len(values), VALUES_PER_LINE):
        chunk = values[i:i + VALUES_PER_LINE]
        lines.append(" ".join("%.9g" % v for v in chunk))
    return "\n".join(lines) + "\n"


def fmt_case(name, op, attrs, inputs, seed, out, grads):
    """Text block for one case, from 'case' to 'end'."""
    head = " ".join(["case", name, op] + [str(a) for a in attrs])
    parts = [head + "\n"]
    parts += [fmt_tensor("in%d" % i, x) for i, x in enumerate(inputs)]
    parts.append(fmt_tensor("seed", seed))
    parts.append(fmt_tensor("out", out))
    parts += [fmt_tensor("grad%d" % i, g) for i, g in enumerate(grads)
              if g is not None]           # no gradient for integer inputs
    parts.append("end\n")
    return "".join(parts)


def header(title):
    return ("# stgrad reference data: %s\n"
            "# Generated by tools/gen_reference.py; do not edit by hand.\n"
            "# Format: see the docstring of tools/gen_reference.py.\n"
            % title)


def write_file(path, title, cases):
    text = header(title) + "".join(cases)
    data = text.encode("ascii")
    with open(path, "wb") as f:
        f.write(data)
    print("%s: %d cases, %d bytes" % (path, len(cases), len(data)))


# ---------------------------------------------------------------- values

def generator_for(name):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(name.encode("ascii")))
    return g


def uniform(g, shape, lo=-1.0, hi=1.0):
    """float32 values uniform in [lo, hi), returned as float64."""
    u = torch.rand(tuple(shape), generator=g, dtype=torch.float32)
    return (u * (hi - lo) + lo).double()


def divisor(g, shape):
    """float32 values sign * uniform(0.5, 2), returned as float64."""
    mag = uniform(g, shape, 0.5, 2.0)
    sign = torch.where(uniform(g, shape) < 0, -1.0, 1.0).double()
    return mag * sign


# While True, make_case puts NaN, +inf and -inf into every float input
# (nonfinite_ref.txt); the second input of these ops holds integer labels.
INJECT_SPECIALS = False
INT_SECOND_INPUT = ("gather", "cross_entropy", "nll", "embedding")


def inject_specials(op, inputs):
    """NaN, +inf and -inf at the first flat positions of each float input."""
    for i, x in enumerate(inputs):
        if i == 1 and op in INT_SECOND_INPUT:
            continue
        flat = x.view(-1)
        for k, v in enumerate((math.nan, math.inf, -math.inf)[:flat.numel()]):
            flat[k] = v


def make_case(name, op, attrs, fn, inputs):
    """Evaluate fn on float64 inputs, backpropagate a random seed."""
    g = generator_for(name)
    if INJECT_SPECIALS:
        inject_specials(op, inputs)
    xs = [x.requires_grad_(True) for x in inputs]
    out = fn(*xs)
    seed = uniform(g, out.shape)
    out.backward(seed)
    return fmt_case(name, op, attrs, xs, seed, out, [x.grad for x in xs])


def random_inputs(name, shapes, op=None, lo=-1.0, hi=1.0):
    """Inputs for a case; the second input of div is kept away from 0."""
    g = generator_for(name + "/inputs")
    xs = [uniform(g, s, lo, hi) for s in shapes]
    if op == "div":
        xs[1] = divisor(g, shapes[1])
    return xs


def simple_case(name, op, attrs, fn, shapes, lo=-1.0, hi=1.0):
    return make_case(name, op, attrs, fn, random_inputs(name, shapes, op, lo, hi))


# ---------------------------------------------------------------- matmul

def batch_patterns(nba, nbb):
    """All batch-dim broadcasting patterns for operands with nba and nbb
    batch dims.  Yields (batch_a, batch_b) tuples of dims."""
    npos = max(nba, nbb)
    per_pos = []
    for pos in range(npos):                 # pos 0 = rightmost batch dim
        n = BATCH_EXTENT[pos]
        a_opts = (n, 1) if pos < nba else (None,)
        b_opts = (n, 1) if pos < nbb else (None,)
        per_pos.append(list(itertools.product(a_opts, b_opts)))
    for combo in itertools.product(*reversed(per_pos)):   # leftmost first
        ba = tuple(a for a, _ in combo if a is not None)
        bb = tuple(b for _, b in combo if b is not None)
        yield ba, bb


def operand_shapes(ra, rb, ba, bb, m, k, n):
    """Shapes of a (rank ra) and b (rank rb) for sizes M, K, N."""
    sa = (k,) if ra == 1 else ba + (m, k)
    sb = (k,) if rb == 1 else bb + (k, n)
    return sa, sb


def matmul_case(name, sa, sb):
    return simple_case(name, "matmul", [], torch.matmul, [sa, sb])


def matmul_rank_pair(ra, rb, cycle):
    """Cases for one rank pair: every batch pattern; (2,2) gets every
    (M,K,N); pairs with a vector operand cover every K."""
    cases = []
    patterns = list(batch_patterns(max(ra - 2, 0), max(rb - 2, 0)))
    if (ra, rb) == (2, 2):
        sizes = list(itertools.product(SIZES, repeat=3))
        jobs = [(0, patterns[0], mkn) for mkn in sizes]
    else:
        count = len(patterns)
        if 1 in (ra, rb):
            count = max(count, len(SIZES))
        jobs = []
        for i in range(count):
            m, k, n = next(cycle)
            if 1 in (ra, rb):
                k = SIZES[i % len(SIZES)]
            p = i % len(patterns)
            jobs.append((p, patterns[p], (m, k, n)))
    for p, (ba, bb), (m, k, n) in jobs:
        sa, sb = operand_shapes(ra, rb, ba, bb, m, k, n)
        name = "r%dr%d_p%d_a%s_b%s" % (ra, rb, p, fmt_shape(sa), fmt_shape(sb))
        cases.append(matmul_case(name, sa, sb))
    return cases


LARGE_MATMULS = (
    ((64, 128), (128, 96)),
    ((4, 33, 65), (65, 70)),
    ((2, 1, 40, 50), (3, 50, 20)),
    ((17,), (5, 17, 33)),
    ((6, 40, 1, 30), (30, 1)),
)


def matmul_cases():
    cycle = itertools.cycle(MKN_CYCLE)
    cases = []
    for ra in range(1, 5):
        for rb in range(1, 5):
            cases += matmul_rank_pair(ra, rb, cycle)
    for sa, sb in LARGE_MATMULS:
        name = "large_a%s_b%s" % (fmt_shape(sa), fmt_shape(sb))
        cases.append(matmul_case(name, sa, sb))
    return cases


# ---------------------------------------------------------------- ops

BINARY_SHAPES = (
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((5, 1, 3), (1, 4, 1)),
    ((), (2, 3)),
    ((1,), (2, 3)),
    ((2, 3, 4), (1, 3, 1)),
    ((7,), (7,)),
    ((), ()),
    ((17, 1), (1, 17)),
)

BINARY_OPS = (("add", torch.add), ("sub", torch.sub),
              ("mul", torch.mul), ("div", torch.div))


def binary_shape_pairs():
    """BINARY_SHAPES in both orders, without duplicates."""
    pairs = []
    for a, b in BINARY_SHAPES:
        for pair in ((a, b), (b, a)):
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def binary_cases():
    cases = []
    for op, fn in BINARY_OPS:
        for sa, sb in binary_shape_pairs():
            name = "%s_a%s_b%s" % (op, fmt_shape(sa), fmt_shape(sb))
            cases.append(simple_case(name, op, [], fn, [sa, sb]))
    return cases


def neg_cases():
    return [simple_case("neg_%s" % fmt_shape(s), "neg", [], torch.neg, [s])
            for s in ((3, 4), (), (2, 3, 5))]


def reduce_fn(op, axes, keepdims, ndim):
    """torch reduction for op over axes (empty: all axes)."""
    base = torch.sum if op == "sum" else torch.mean
    dims = list(axes) if axes else list(range(ndim))
    if not dims:                                  # scalar input
        return lambda x: base(x)
    return lambda x: base(x, dim=dims, keepdim=bool(keepdims))


def reduce_case(op, shape, axes, keepdims):
    axes_tag = "_".join(str(a).replace("-", "m") for a in axes) or "all"
    name = "%s_%s_ax%s_k%d" % (op, fmt_shape(shape), axes_tag, keepdims)
    attrs = [keepdims, len(axes)] + list(axes)
    fn = reduce_fn(op, axes, keepdims, len(shape))
    return simple_case(name, op, attrs, fn, [shape])


def reduce_cases():
    cases = []
    axes_sets = [(), (0,), (1,), (2,), (-1,), (0, 2), (-1, 0)]
    for op in ("sum", "mean"):
        for axes in axes_sets:
            for keepdims in (0, 1):
                cases.append(reduce_case(op, (2, 3, 4), axes, keepdims))
        cases.append(reduce_case(op, (2, 3, 4), (0, 1, 2), 0))
        for shape in ((), (5,)):
            for keepdims in (0, 1):
                cases.append(reduce_case(op, shape, (), keepdims))
    cases.append(reduce_case("sum", (64, 10), (0,), 0))
    return cases


def reshape_cases():
    cases = []
    for src, dst in (((2, 3, 4), (6, 4)), ((2, 3, 4), (24,)),
                     ((6,), (1, 2, 1, 3)), ((1,), ())):
        name = "reshape_%s_to_%s" % (fmt_shape(src), fmt_shape(dst))
        attrs = [len(dst)] + list(dst)
        fn = (lambda d: lambda x: torch.reshape(x, d))(dst)
        cases.append(simple_case(name, "reshape", attrs, fn, [src]))
    return cases


def transpose_cases():
    cases = []
    for shape, perm in (((2, 3, 4), (2, 0, 1)), ((2, 3), (1, 0)),
                        ((2, 3, 4, 5), (0, 2, 1, 3)), ((2, 3, 4), (0, 1, 2))):
        name = "transpose_%s_p%s" % (fmt_shape(shape),
                                     "".join(str(p) for p in perm))
        attrs = [len(perm)] + list(perm)
        fn = (lambda p: lambda x: torch.permute(x, p))(perm)
        cases.append(simple_case(name, "transpose", attrs, fn, [shape]))
    return cases


def swapaxes_cases():
    cases = []
    for shape, (a, b) in (((2, 3, 4), (0, 2)), ((2, 3, 4), (-1, -2)),
                          ((3, 5), (0, 1))):
        name = "swapaxes_%s_%s_%s" % (fmt_shape(shape),
                                      str(a).replace("-", "m"),
                                      str(b).replace("-", "m"))
        fn = (lambda a, b: lambda x: torch.swapaxes(x, a, b))(a, b)
        cases.append(simple_case(name, "swapaxes", [a, b], fn, [shape]))
    return cases


def outer_cases():
    cases = []
    for sa, sb in (((3,), (4,)), ((1,), (5,)), ((7,), (1,)), ((17,), (3,))):
        name = "outer_a%s_b%s" % (fmt_shape(sa), fmt_shape(sb))
        cases.append(simple_case(name, "outer", [], torch.outer, [sa, sb]))
    return cases


def mse_cases():
    fn = lambda p, t: F.mse_loss(p, t, reduction="mean")
    return [simple_case("mse_%s" % fmt_shape(s), "mse", [], fn, [s, s])
            for s in ((4,), (3, 5), (2, 3, 4), ())]


# Unary ops: (op, attrs, torch function, input range).
UNARY_OPS = (
    ("exp", [], torch.exp, (-2, 2)),
    ("log", [], torch.log, (0.2, 3)),
    ("sqrt", [], torch.sqrt, (0.2, 3)),
    ("pow", [2.5], lambda x: torch.pow(x, 2.5), (0.2, 2)),
    ("pow", [3], lambda x: torch.pow(x, 3), (-2, 2)),
    ("abs", [], torch.abs, (-1, 1)),
    ("sin", [], torch.sin, (-3, 3)),
    ("cos", [], torch.cos, (-3, 3)),
    ("tanh", [], torch.tanh, (-3, 3)),
    ("sigmoid", [], torch.sigmoid, (-6, 6)),
    ("relu", [], torch.relu, (-1, 1)),
    ("leaky_relu", [0.1], lambda x: F.leaky_relu(x, 0.1), (-1, 1)),
    ("elu", [0.7], lambda x: F.elu(x, 0.7), (-2, 2)),
    ("softplus", [], F.softplus, (-4, 4)),
    ("softplus", [], F.softplus, (-30, 30)),
    ("gelu", [], F.gelu, (-3, 3)),
    ("clamp", [-0.5, 0.4], lambda x: torch.clamp(x, -0.5, 0.4), (-1, 1)),
)


def unary_cases():
    cases = []
    for op, attrs, fn, (lo, hi) in UNARY_OPS:
        for shape in ((3, 4), (2, 3, 5)):
            tag = "_".join(str(a).replace("-", "m") for a in attrs)
            name = "%s%s_%s_r%s_%s" % (op, "_" + tag if tag else "", fmt_shape(shape),
                                      str(lo).replace("-", "m"), hi)
            cases.append(simple_case(name, op, attrs, fn, [shape], lo, hi))
    return cases


def labels(name, shape, classes):
    """int labels in [0, classes), as float64 values (exact)."""
    g = generator_for(name + "/labels")
    return torch.randint(0, classes, tuple(shape), generator=g).double()


def softmax_cases():
    cases = []
    for op, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        for shape, axis in (((2, 4, 3), 1), ((3, 5), -1), ((4, 3), 0), ((2, 3, 5), -1)):
            name = "%s_%s_ax%s" % (op, fmt_shape(shape), str(axis).replace("-", "m"))
            f = (lambda fn, a: lambda x: fn(x, a))(fn, axis)
            cases.append(simple_case(name, op, [axis], f, [shape], -3, 3))
    return cases


def index_cases():
    """Ops whose second input holds int labels/indices (written as floats);
    their second gradient is not checked."""
    cases = []
    for xs, axis, ids in (((3, 5), 1, (3, 2)), ((4, 3), 0, (2, 3)), ((2, 3, 4), -1, (2, 3, 1))):
        name = "gather_%s_ax%s_i%s" % (fmt_shape(xs), str(axis).replace("-", "m"), fmt_shape(ids))
        x = random_inputs(name, [xs])[0]
        idx = labels(name, ids, xs[axis])
        f = (lambda a: lambda x, i: torch.gather(x, a, i.long()))(axis)
        cases.append(make_case(name, "gather", [axis], f, [x, idx]))
    for op, red, xs in (("cross_entropy", 0, (6, 5)), ("cross_entropy", 1, (4, 3)),
                        ("cross_entropy", 0, (2, 3, 4)), ("nll", 0, (5, 4)), ("nll", 1, (2, 3))):
        name = "%s_%s_%s" % (op, "mean" if red == 0 else "sum", fmt_shape(xs))
        x = random_inputs(name, [xs], None, -3, 3)[0]
        if op == "nll":
            x = torch.log_softmax(x, -1)
        y = labels(name, xs[:-1], xs[-1])
        fn = F.cross_entropy if op == "cross_entropy" else F.nll_loss
        f = (lambda fn, c, r: lambda x, y: fn(x.reshape(-1, c), y.reshape(-1).long(),
                                            reduction=r))(fn, xs[-1], ["mean", "sum"][red])
        cases.append(make_case(name, op, [red], f, [x, y]))
    return cases


def full_reduce_fn(op, axes, keepdims, ndim):
    """torch's max/min (amax/amin), var, logsumexp over axes (empty: all)."""
    dims = list(axes) if axes else list(range(ndim))
    k = bool(keepdims)
    if op == "max":
        return lambda x: torch.amax(x, dim=dims, keepdim=k)
    if op == "min":
        return lambda x: torch.amin(x, dim=dims, keepdim=k)
    if op == "var":
        return lambda x: torch.var(x, dim=dims, keepdim=k)
    return lambda x: torch.logsumexp(x, dim=dims, keepdim=k)


def more_reduce_cases():
    cases = []
    for op in ("max", "min", "var", "logsumexp"):
        for axes, keepdims in (((), 0), ((1,), 0), ((0, 2), 1), ((-1,), 1)):
            axes_tag = "_".join(str(a).replace("-", "m") for a in axes) or "all"
            name = "%s_2x3x4_ax%s_k%d" % (op, axes_tag, keepdims)
            fn = full_reduce_fn(op, axes, keepdims, 3)
            cases.append(simple_case(name, op, [keepdims, len(axes)] + list(axes), fn,
                                     [(2, 3, 4)], -2, 2))
    # ties: values on a coarse grid, so maxima repeat and share the gradient
    for op in ("max", "min"):
        for axes in ((), (1,)):
            axes_tag = "_".join(str(a) for a in axes) or "all"
            name = "%s_ties_3x4_ax%s" % (op, axes_tag)
            g = generator_for(name + "/inputs")
            x = torch.round(uniform(g, (3, 4), -1, 1) * 2) / 2
            fn = full_reduce_fn(op, axes, 0, 2)
            cases.append(make_case(name, op, [0, len(axes)] + list(axes), fn, [x]))
    for p in (1, 2):
        for axes, keepdims in (((), 0), ((1,), 1), ((0,), 0)):
            axes_tag = "_".join(str(a) for a in axes) or "all"
            name = "norm%d_3x4_ax%s_k%d" % (p, axes_tag, keepdims)
            dims = list(axes) if axes else None
            fn = (lambda p, d, k: lambda x: torch.linalg.vector_norm(x, p, dim=d, keepdim=k))(
                p, dims, bool(keepdims))
            cases.append(simple_case(name, "norm", [p, keepdims, len(axes)] + list(axes), fn,
                                     [(3, 4)]))
    # the 2-norm of an all-zero row: PyTorch's gradient there is 0
    name = "norm2_zero_row_3x4_ax1_k0"
    x = random_inputs(name, [(3, 4)])[0]
    x[1] = 0.0
    fn = lambda x: torch.linalg.vector_norm(x, 2, dim=[1])
    cases.append(make_case(name, "norm", [2, 0, 1, 1], fn, [x]))
    return cases


def slice_fn(axis, start, stop, step):
    def f(x):
        idx = [slice(None)] * x.dim()
        idx[axis] = slice(start, stop, step)
        return x[tuple(idx)]
    return f


def pad_fn(before, after, value):
    pads = []
    for b, a in zip(reversed(before), reversed(after)):
        pads += [b, a]
    return lambda x: F.pad(x, pads, value=value)


def layout_cases():
    cases = []
    for shape, axis, start, stop, step in (((4, 6), 1, 1, 5, 2), ((5, 3), 0, -3, 5, 1),
                                           ((2, 7, 3), 1, 0, 7, 3)):
        name = "slice_%s_ax%d_%s_%d_%d" % (fmt_shape(shape), axis, str(start).replace("-", "m"),
                                         stop, step)
        cases.append(simple_case(name, "slice", [axis, start, stop, step],
                                 slice_fn(axis, start, stop, step), [shape]))
    for shape, axis in (((3, 4), 0), ((2, 3, 4), -1)):
        name = "flip_%s_ax%s" % (fmt_shape(shape), str(axis).replace("-", "m"))
        fn = (lambda a: lambda x: torch.flip(x, [a]))(axis)
        cases.append(simple_case(name, "flip", [axis], fn, [shape]))
    for shape, before, after, value in (((2, 3), (1, 0), (2, 3), 0.5), ((4,), (2,), (1,), 0.0),
                                        ((2, 2, 3), (0, 1, 1), (1, 0, 2), -1.0)):
        name = "pad_%s_%s_%s" % (fmt_shape(shape), fmt_shape(before), fmt_shape(after))
        attrs = [len(shape)] + list(before) + list(after) + [value]
        cases.append(simple_case(name, "pad", attrs, pad_fn(before, after, value), [shape]))
    for sa, sb, axis in (((2, 3), (2, 5), 1), ((3, 4), (1, 4), 0), ((2, 3, 2), (2, 3, 1), -1)):
        name = "concat_%s_%s_ax%s" % (fmt_shape(sa), fmt_shape(sb), str(axis).replace("-", "m"))
        fn = (lambda a: lambda x, y: torch.cat([x, y], a))(axis)
        cases.append(simple_case(name, "concat", [axis], fn, [sa, sb]))
    for shape, axis in (((2, 3), 0), ((2, 3), 2), ((4,), -1)):
        name = "stack_%s_ax%s" % (fmt_shape(shape), str(axis).replace("-", "m"))
        fn = (lambda a: lambda x, y: torch.stack([x, y], a))(axis)
        cases.append(simple_case(name, "stack", [axis], fn, [shape, shape]))
    return cases


def loss_cases():
    cases = []
    for shape in ((3, 4), (5,)):
        name = "l1_%s" % fmt_shape(shape)
        cases.append(simple_case(name, "l1", [], F.l1_loss, [shape, shape]))
        name = "bce_with_logits_%s" % fmt_shape(shape)
        g = generator_for(name + "/inputs")
        xs = [uniform(g, shape, -4, 4), uniform(g, shape, 0, 1)]
        cases.append(make_case(name, "bce_with_logits", [],
                               F.binary_cross_entropy_with_logits, xs))
    return cases


def ops_cases():
    return (binary_cases() + neg_cases() + reduce_cases() + reshape_cases()
            + transpose_cases() + swapaxes_cases() + outer_cases()
            + mse_cases() + unary_cases() + softmax_cases() + index_cases()
            + loss_cases() + more_reduce_cases() + layout_cases())


# ---------------------------------------------------------------- optimizers

# name, optimizer, options, schedule (kind, step_size, gamma, t_max, lr_min)
OPTIM_CASES = (
    ("sgd", "sgd", dict(lr=0.1), None),
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9), None),
    ("sgd_nesterov_wd", "sgd", dict(lr=0.1, momentum=0.9, nesterov=True,
                                   weight_decay=0.01), None),
    ("sgd_wd", "sgd", dict(lr=0.05, weight_decay=0.1), None),
    ("adam", "adam", dict(lr=0.01), None),
    ("adam_wd", "adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                             weight_decay=0.01), None),
    ("adamw", "adamw", dict(lr=0.01, weight_decay=0.1), None),
    ("sgd_clip_norm", "sgd", dict(lr=0.1, momentum=0.5), ("norm", 0.5)),
    ("sgd_clip_value", "sgd", dict(lr=0.1), ("value", 0.05)),
    ("adam_clip_norm", "adam", dict(lr=0.01), ("norm", 0.1)),
    ("sgd_step_lr", "sgd", dict(lr=0.1, momentum=0.9), ("step", 2, 0.5)),
    ("adam_cosine_lr", "adam", dict(lr=0.02), ("cosine", 4, 0.001)),
)
OPTIM_STEPS = 6


def optim_case(name, kind, opts, extra):
    """A linear layer trained with mse for OPTIM_STEPS steps in float32;
    records the parameters after every step and the loss of every step."""
    g = generator_for(name)
    x = uniform(g, (5, 4)).float()
    t = uniform(g, (5, 3)).float()
    w = (uniform(g, (4, 3)) * 0.5).float().requires_grad_(True)
    b = (uniform(g, (3,)) * 0.5).float().requires_grad_(True)
    w0, b0 = w.detach().clone(), b.detach().clone()
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
           "adamw": torch.optim.AdamW}[kind]
    opt = cls([w, b], **opts)
    sched = None
    clip_norm = clip_value = 0.0
    sk, step_size, gamma, t_max, lr_min = 0, 0, 0.0, 0, 0.0
    if extra and extra[0] == "norm":
        clip_norm = extra[1]
    if extra and extra[0] == "value":
        clip_value = extra[1]
    if extra and extra[0] == "step":
        sk, step_size, gamma = 1, extra[1], extra[2]
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)
    if extra and extra[0] == "cosine":
        sk, t_max, lr_min = 2, extra[1], extra[2]
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, t_max, lr_min)
    losses, after = [], []
    for _ in range(OPTIM_STEPS):
        opt.zero_grad()
        loss = F.mse_loss(x @ w + b, t)
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_([w, b], clip_norm)
        if clip_value:
            torch.nn.utils.clip_grad_value_([w, b], clip_value)
        opt.step()
        if sched:
            sched.step()
        losses.append(loss.item())
        after.append((w.detach().clone(), b.detach().clone()))
    betas = opts.get("betas", (0.9, 0.999))
    attrs = [opts["lr"], opts.get("momentum", 0), int(opts.get("nesterov", False)),
             opts.get("weight_decay", 0 if kind != "adamw" else 0.01),
             betas[0], betas[1], opts.get("eps", 1e-8), clip_norm, clip_value,
             sk, step_size, gamma, t_max, lr_min]
    parts = [" ".join(["case", name, kind] + [repr(float(a)) for a in attrs]) + "\n"]
    for role, v in (("x", x), ("t", t), ("w", w0), ("b", b0)):
        parts.append(fmt_tensor(role, v))
    for i, (wi, bi) in enumerate(after):
        parts.append(fmt_tensor("w%d" % (i + 1), wi))
        parts.append(fmt_tensor("b%d" % (i + 1), bi))
    parts.append(fmt_tensor("loss", torch.tensor(losses)))
    parts.append("end\n")
    return "".join(parts)


def optim_cases():
    return [optim_case(*c) for c in OPTIM_CASES]


# ---------------------------------------------------------------- main

# ---------------------------------------------------------------- conv, pool

# conv2d: (x shape, w shape, stride, padding, dilation, groups, bias)
CONV2D = (
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1, 1),
    ((1, 1, 5, 5), (2, 1, 3, 3), (1, 1), (1, 1), (1, 1), 1, 0),
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, 1),
    ((3, 2, 6, 7), (3, 2, 1, 1), (1, 1), (0, 0), (1, 1), 1, 1),   # 1x1: no im2col
    ((1, 6, 5, 5), (6, 1, 3, 3), (1, 1), (1, 1), (1, 1), 6, 0),   # depthwise
    ((2, 3, 8, 8), (5, 3, 5, 5), (3, 3), (2, 2), (1, 1), 1, 1),
    ((1, 2, 4, 4), (3, 2, 4, 4), (1, 1), (0, 0), (1, 1), 1, 1),   # one output position
    ((4, 1, 28, 28), (16, 1, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1),  # lenet's first
    ((2, 16, 14, 14), (32, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1),  # lenet's second
    ((2, 3, 5, 7), (2, 3, 2, 3), (1, 2), (0, 1), (2, 1), 1, 1),
)
# conv1d: (x, w, stride, padding, dilation, groups, bias)
CONV1D = (
    ((2, 3, 11), (4, 3, 3), 1, 0, 1, 1, 1),
    ((1, 4, 9), (4, 2, 2), 2, 1, 2, 2, 0),
    ((3, 2, 5), (2, 2, 1), 1, 0, 1, 1, 1),
)
# pools: (op, x shape, kernel, stride, padding)
POOLS = (
    ("max_pool2d", (2, 3, 6, 6), (2, 2), (2, 2), (0, 0)),
    ("max_pool2d", (1, 2, 7, 5), (3, 2), (2, 1), (1, 1)),
    ("max_pool2d", (2, 1, 5, 5), (3, 3), (1, 1), (1, 0)),
    ("avg_pool2d", (2, 3, 6, 6), (2, 2), (2, 2), (0, 0)),
    ("avg_pool2d", (1, 2, 7, 5), (3, 2), (2, 1), (1, 1)),
    ("max_pool1d", (2, 3, 9), (3,), (2,), (1,)),
    ("avg_pool1d", (2, 3, 9), (3,), (2,), (1,)),
    ("avg_pool1d", (1, 1, 4), (4,), (1,), (0,)),
)


def conv_cases():
    cases = []
    for xs, ws, st, pd, dl, gr, bias in CONV2D:
        name = "conv2d_%s_%s_s%d%d_p%d%d_d%d%d_g%d_b%d" % (fmt_shape(xs), fmt_shape(ws), st[0],
                                                          st[1], pd[0], pd[1], dl[0], dl[1], gr,
                                                          bias)
        shapes = [xs, ws] + ([(ws[0],)] if bias else [])
        f = (lambda st, pd, dl, gr: lambda x, w, b=None: F.conv2d(x, w, b, st, pd, dl, gr))(
            st, pd, dl, gr)
        cases.append(simple_case(name, "conv2d", list(st) + list(pd) + list(dl) + [gr, bias],
                                 f, shapes))
    for xs, ws, st, pd, dl, gr, bias in CONV1D:
        name = "conv1d_%s_%s_s%d_p%d_d%d_g%d_b%d" % (fmt_shape(xs), fmt_shape(ws), st, pd, dl, gr,
                                                    bias)
        shapes = [xs, ws] + ([(ws[0],)] if bias else [])
        f = (lambda st, pd, dl, gr: lambda x, w, b=None: F.conv1d(x, w, b, st, pd, dl, gr))(
            st, pd, dl, gr)
        cases.append(simple_case(name, "conv1d", [st, pd, dl, gr, bias], f, shapes))
    for op, xs, k, st, pd in POOLS:
        name = "%s_%s_k%s_s%s_p%s" % (op, fmt_shape(xs), fmt_shape(k), fmt_shape(st),
                                      fmt_shape(pd))
        fn = getattr(F, op)
        f = (lambda fn, k, st, pd: lambda x: fn(x, k, st, pd))(fn, k, st, pd)
        cases.append(simple_case(name, op, list(k) + list(st) + list(pd), f, [xs]))
    # max pooling over ties: the gradient goes to the first maximum
    name = "max_pool2d_ties_2x2x4x4_k2x2_s1x1_p0x0"
    g = generator_for(name + "/inputs")
    x = torch.round(uniform(g, (2, 2, 4, 4), -1, 1))
    f = lambda x: F.max_pool2d(x, (2, 2), (1, 1), (0, 0))
    cases.append(make_case(name, "max_pool2d", [2, 2, 1, 1, 0, 0], f, [x]))
    for xs in ((2, 3, 4, 5), (3, 2, 7)):
        name = "global_avg_pool_%s" % fmt_shape(xs)
        nd = len(xs)
        f = (lambda nd: lambda x: x.mean(dim=list(range(2, nd)), keepdim=True))(nd)
        cases.append(simple_case(name, "global_avg_pool", [], f, [xs]))
    return cases


# batch norm in training: (x shape, eps, momentum, has weight, has bias)
BATCH_NORMS = (
    ((4, 3), 1e-5, 0.1, 1, 1),
    ((5, 2, 7), 1e-5, 0.1, 1, 1),
    ((2, 3, 4, 5), 1e-3, 0.1, 1, 1),
    ((3, 4, 3, 3), 1e-5, 0.1, 0, 0),
    ((1, 2, 3, 3), 1e-5, 0.1, 1, 0),
    ((6, 1, 2, 2), 1e-5, 0.1, 0, 1),
    ((2, 33, 5), 1e-5, 0.1, 1, 1),
)


def batch_norm_fn(eps, has_w, has_b):
    def f(x, *wb):
        w = wb[0] if has_w else None
        b = wb[has_w] if has_b else None
        return F.batch_norm(x, None, None, w, b, training=True, eps=eps)
    return f


def norm_cases():
    cases = []
    for xs, eps, momentum, has_w, has_b in BATCH_NORMS:
        name = "batch_norm_%s_w%d_b%d" % (fmt_shape(xs), has_w, has_b)
        shapes = [xs] + [(xs[1],)] * (has_w + has_b)
        g = generator_for(name + "/inputs")
        inputs = [uniform(g, s, -1, 1) for s in shapes]
        inputs[0] = inputs[0] * 2.0 + 0.5   # a mean and a spread away from 0 and 1
        cases.append(make_case(name, "batch_norm", [eps, momentum, has_w, has_b],
                               batch_norm_fn(eps, has_w, has_b), inputs))
    return cases


# running statistics over several training steps, then inference:
# (x shape, steps, eps, momentum)
BATCH_NORM_RUNS = (
    ((4, 3, 5, 5), 4, 1e-5, 0.1),
    ((6, 5), 3, 1e-3, 0.3),
)


def running_cases():
    """Each case: 'steps' batches xs (steps, *x shape) through a training
    batch_norm with weight w and bias b, the running statistics after them,
    and the inference output on x_eval."""
    cases = []
    for xs, steps, eps, momentum in BATCH_NORM_RUNS:
        name = "batch_norm_running_%s_t%d" % (fmt_shape(xs), steps)
        g = generator_for(name)
        c = xs[1]
        bn = torch.nn.BatchNorm1d(c, eps=eps, momentum=momentum) if len(xs) < 4 else \
            torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum)
        bn = bn.double()
        with torch.no_grad():
            bn.weight.copy_(uniform(g, (c,), 0.5, 1.5))
            bn.bias.copy_(uniform(g, (c,)))
        batches = uniform(g, (steps,) + xs, -1, 1) * 3.0 + 1.0
        bn.train()
        for t in range(steps):
            bn(batches[t])
        x_eval = uniform(g, xs, -1, 1) * 3.0 + 1.0
        bn.eval()
        y_eval = bn(x_eval)
        head = "case %s batch_norm_running %r %r %d\n" % (name, eps, momentum, steps)
        parts = [head, fmt_tensor("xs", batches), fmt_tensor("w", bn.weight),
                 fmt_tensor("b", bn.bias), fmt_tensor("running_mean", bn.running_mean),
                 fmt_tensor("running_var", bn.running_var), fmt_tensor("x_eval", x_eval),
                 fmt_tensor("y_eval", y_eval), "end\n"]
        cases.append("".join(parts))
    return cases


# embedding: (weight shape, indices shape, padding_idx)
EMBEDDINGS = (
    ((7, 3), (5,), -1),
    ((5, 4), (3, 6), 2),      # repeated indices, some at the padding row
    ((11, 17), (2, 3, 2), 0),
    ((1, 5), (4,), -1),       # one row: every index the same
)
# layer_norm: (x shape, naxes, eps, has weight, has bias)
LAYER_NORMS = (
    ((4, 5), 1, 1e-5, 1, 1),
    ((2, 3, 6), 1, 1e-5, 1, 0),
    ((2, 3, 4, 5), 2, 1e-3, 1, 1),
    ((3, 7), 1, 1e-5, 0, 0),
    ((2, 33), 1, 1e-5, 0, 1),
    ((1, 1, 9), 3, 1e-5, 1, 1),
)


def seq_cases():
    cases = []
    for ws, ids, pad in EMBEDDINGS:
        name = "embedding_%s_i%s_p%d" % (fmt_shape(ws), fmt_shape(ids), pad)
        w = random_inputs(name, [ws])[0]
        idx = labels(name, ids, ws[0])
        f = (lambda p: lambda w, i: F.embedding(i.long(), w,
                                                padding_idx=None if p < 0 else p))(pad)
        cases.append(make_case(name, "embedding", [pad], f, [w, idx]))
    for xs, naxes, eps, has_w, has_b in LAYER_NORMS:
        name = "layer_norm_%s_n%d_w%d_b%d" % (fmt_shape(xs), naxes, has_w, has_b)
        ns = xs[len(xs) - naxes:]
        g = generator_for(name + "/inputs")
        inputs = [uniform(g, xs) * 2.0 + 0.5] + [uniform(g, ns) for _ in range(has_w + has_b)]
        f = (lambda ns, eps, hw, hb: lambda x, *wb: F.layer_norm(
            x, ns, wb[0] if hw else None, wb[hw] if hb else None, eps))(ns, eps, has_w, has_b)
        cases.append(make_case(name, "layer_norm", [naxes, eps, has_w, has_b], f, inputs))
    return cases


# recurrent layers: (mode, T, N, input, hidden, layers, batch_first, bias, initial state)
# mode: 0 RNN tanh, 1 RNN relu, 2 LSTM, 3 GRU (stg_rnn_mode)
RNNS = (
    (2, 5, 3, 4, 6, 1, 0, 1, 0),
    (2, 4, 2, 3, 5, 2, 1, 1, 1),
    (3, 5, 3, 4, 6, 1, 1, 1, 1),
    (3, 3, 2, 5, 4, 2, 0, 1, 0),
    (0, 4, 3, 3, 5, 2, 0, 1, 1),
    (1, 6, 2, 4, 7, 1, 1, 0, 0),
    (2, 3, 12, 5, 96, 1, 0, 1, 1),   # big enough that threads split the hidden units
    (3, 3, 12, 5, 96, 1, 1, 1, 0),
)


def rnn_cases():
    """Each case: the inputs, every parameter (PyTorch's names), the outputs
    and final states, and the gradients of sum(out * seed_out + h_n * seed_hn
    (+ c_n * seed_cn)) with respect to x, h0, c0 and every parameter (g_<name>)."""
    cases = []
    for mode, T, N, I, H, L, bf, bias, init in RNNS:
        kind = ("rnn_tanh", "rnn_relu", "lstm", "gru")[mode]
        name = "%s_t%d_n%d_i%d_h%d_l%d_bf%d_b%d_s%d" % (kind, T, N, I, H, L, bf, bias, init)
        g = generator_for(name)
        if mode < 2:
            m = torch.nn.RNN(I, H, L, nonlinearity=("tanh", "relu")[mode], bias=bool(bias),
                             batch_first=bool(bf))
        else:
            m = (torch.nn.LSTM if mode == 2 else torch.nn.GRU)(I, H, L, bias=bool(bias),
                                                               batch_first=bool(bf))
        m = m.double()
        with torch.no_grad():
            for pname, prm in m.named_parameters():
                prm.copy_(uniform(g, prm.shape, -0.5, 0.5))
        x = uniform(g, (N, T, I) if bf else (T, N, I)).requires_grad_(True)
        h0 = uniform(g, (L, N, H)).requires_grad_(True) if init else None
        c0 = uniform(g, (L, N, H)).requires_grad_(True) if init and mode == 2 else None
        if mode == 2:
            out, (hn, cn) = m(x, (h0, c0)) if init else m(x)
        else:
            out, hn = m(x, h0) if init else m(x)
            cn = None
        seeds = [uniform(g, out.shape), uniform(g, hn.shape)]
        loss = (out * seeds[0]).sum() + (hn * seeds[1]).sum()
        if cn is not None:
            seeds.append(uniform(g, cn.shape))
            loss = loss + (cn * seeds[2]).sum()
        loss.backward()
        parts = ["case %s rnn %d %d %d %d %d %d\n" % (name, mode, I, H, L, bf, bias),
                 fmt_tensor("x", x)]
        if init:
            parts.append(fmt_tensor("h0", h0))
            if c0 is not None:
                parts.append(fmt_tensor("c0", c0))
        for pname, prm in m.named_parameters():
            parts.append(fmt_tensor(pname, prm))
        parts += [fmt_tensor("seed_out", seeds[0]), fmt_tensor("seed_hn", seeds[1])]
        if cn is not None:
            parts.append(fmt_tensor("seed_cn", seeds[2]))
        parts += [fmt_tensor("out", out), fmt_tensor("h_n", hn)]
        if cn is not None:
            parts.append(fmt_tensor("c_n", cn))
        parts.append(fmt_tensor("g_x", x.grad))
        if init:
            parts.append(fmt_tensor("g_h0", h0.grad))
            if c0 is not None:
                parts.append(fmt_tensor("g_c0", c0.grad))
        for pname, prm in m.named_parameters():
            parts.append(fmt_tensor("g_" + pname, prm.grad))
        parts.append("end\n")
        cases.append("".join(parts))
    return cases


def state_dict_case(out_dir):
    """A small PyTorch model's state_dict as tests/data/state_dict.safetensors
    (tools/export_state_dict.py), and state_dict_ref.txt: every tensor by
    name, an input and the model's eval-mode output on it.  Model: bytes ->
    Embedding(10, 4) -> LSTM(4, 5, 2 layers, batch_first) -> LayerNorm(5) on
    the last step -> BatchNorm1d(5) (running statistics moved by two
    training batches) -> Linear(5, 3)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from export_state_dict import save_safetensors

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.lstm = torch.nn.LSTM(4, 5, 2, batch_first=True)
            self.ln = torch.nn.LayerNorm(5)
            self.bn = torch.nn.BatchNorm1d(5)
            self.fc = torch.nn.Linear(5, 3)

        def forward(self, x):
            out, _ = self.lstm(self.emb(x))
            return self.fc(self.bn(self.ln(out[:, -1, :])))

    g = generator_for("state_dict")
    m = Small()
    with torch.no_grad():
        for _, prm in m.named_parameters():
            prm.copy_(uniform(g, prm.shape, -0.8, 0.8).float())
    m.train()
    for _ in range(2):
        m(torch.randint(0, 10, (6, 3), generator=g))
    m.eval()
    x = torch.randint(0, 10, (2, 3), generator=g)
    with torch.no_grad():
        y = m(x)
    sd = m.state_dict()
    save_safetensors(sd, os.path.join(out_dir, "state_dict.safetensors"))
    parts = ["case state_dict small\n"]
    for name, t in sd.items():
        if t.is_floating_point():
            parts.append(fmt_tensor(name, t.double()))
    parts += [fmt_tensor("x", x.double()), fmt_tensor("y", y.double()), "end\n"]
    return ["".join(parts)]


def nonfinite_cases():
    """The first case of every op of ops_ref.txt and of every operand rank
    pair of matmul_ref.txt, with NaN, +inf and -inf in each float input."""
    global INJECT_SPECIALS
    INJECT_SPECIALS = True
    try:
        cases, seen = [], set()
        for text in ops_cases() + matmul_cases() + conv_cases() + norm_cases() + seq_cases():
            op = text.split(None, 3)[2]
            shapes = tuple(line for line in text.splitlines() if line.startswith("tensor in"))
            key = op if op != "matmul" else (op, tuple(len(s.split()) for s in shapes))
            if key not in seen:
                seen.add(key)
                cases.append(text.replace("case ", "case nonfinite_", 1))
        return cases
    finally:
        INJECT_SPECIALS = False


def main():
    torch.set_num_threads(1)          # fixed summation order in matmul
    out_dir = os.path.join("tests", "data")
    if not os.path.isdir(out_dir):
        sys.exit("run from the repository root (tests/data/ not found)")
    write_file(os.path.join(out_dir, "matmul_ref.txt"), "matmul",
               matmul_cases())
    write_file(os.path.join(out_dir, "ops_ref.txt"), "elementwise, "
               "reduction, shape and loss ops", ops_cases())
    write_file(os.path.join(out_dir, "optim_ref.txt"), "optimizers: "
               "parameters after each of %d steps" % OPTIM_STEPS, optim_cases())
    write_file(os.path.join(out_dir, "conv_ref.txt"), "convolutions, pooling and batch "
               "normalisation", conv_cases() + norm_cases())
    write_file(os.path.join(out_dir, "seq_ref.txt"), "embedding and layer_norm",
               seq_cases())
    write_file(os.path.join(out_dir, "rnn_ref.txt"), "recurrent layers: outputs, final "
               "states and every gradient", rnn_cases())
    write_file(os.path.join(out_dir, "state_dict_ref.txt"), "a PyTorch state_dict "
               "(state_dict.safetensors) and its model's output", state_dict_case(out_dir))
    write_file(os.path.join(out_dir, "bn_running_ref.txt"), "batch norm running statistics "
               "over several steps, then inference", running_cases())
    write_file(os.path.join(out_dir, "nonfinite_ref.txt"), "every op with NaN, +inf "
               "and -inf in its inputs", nonfinite_cases())


if __name__ == "__main__":
    main()
