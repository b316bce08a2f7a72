"""What the PyTorch peer scripts share: the BENCH.md mlp model and the check
of the environment PyTorch needs to run at its best.

Debian's python3-torch 1.13 does its GEMMs through libblas.so.3: BLIS by
default, or OpenBLAS once libopenblas0-openmp is installed (which of the two
a command gets is chosen by LD_LIBRARY_PATH, see torch_env).  BLIS reads its
thread count from the environment at start-up; torch.set_num_threads() does
not thread those GEMMs.  So the peer scripts run with BLIS_NUM_THREADS=T,
OMP_NUM_THREADS=T (and OPENBLAS_NUM_THREADS=T, if set, equal too) for
--threads T, and with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, all in
that one command only (see ../shared/BENCH.md, "PyTorch at its best").
"""
import os
import sys



def check_env(threads):
    """Warns on stderr about each variable that is off; True if none is."""
    ok = True
    for var in ("BLIS_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var)
        if val != str(threads):
            print("warning: %s=%s but --threads %d; PyTorch will not use the requested "
                  "thread count (see BENCH.md)" % (var, "<unset>" if val is None else val,
                                                   threads), file=sys.stderr)
            ok = False
    # Unset is fine (OpenBLAS then follows OMP_NUM_THREADS); a different count is not.
    val = os.environ.get("OPENBLAS_NUM_THREADS")
    if val is not None and val != str(threads):
        print("warning: OPENBLAS_NUM_THREADS=%s but --threads %d; PyTorch with OpenBLAS will "
              "not use the requested thread count" % (val, threads), file=sys.stderr)
        ok = False
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print("warning: %s is set (%s); BENCH.md says to unset it for the "
                  "PyTorch side" % (var, os.environ[var]), file=sys.stderr)
            ok = False
    return ok


def torch_env(threads, blas_dir=None):
    """The environment of a PyTorch command that should use 'threads' threads.

    blas_dir, when given, goes first in LD_LIBRARY_PATH, so that the command
    loads the libblas.so.3 in it (e.g. /usr/lib/x86_64-linux-gnu/blis-openmp
    or .../openblas-openmp) whatever the system's libblas.so.3 alternative is.
    """
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    for var in ("BLIS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if blas_dir is not None:
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = blas_dir + (":" + old if old else "")
    return env


def percentile(sorted_vals, q):
    """Percentile of sorted values, interpolated linearly between ranks."""
    n = len(sorted_vals)
    if n == 1:
        return float(sorted_vals[0])
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_vals[lo] * (1.0 - frac) + sorted_vals[hi] * frac


def make_model(batch_norm=False, dropout=0.0):
    """784-512-256-10 with ReLU and PyTorch's default nn.Linear init; as
    stg-train's --batch-norm and --dropout P: a BatchNorm1d before each
    hidden ReLU, a Dropout after it."""
    from torch import nn  # here, so that importing this module does not load torch

    layers, width = [], 784
    for out in (512, 256):
        layers.append(nn.Linear(width, out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(out))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = out
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def make_lenet(batch_norm=False, dropout=0.0):
    """BENCH.md's lenet: conv 16 3x3 pad 1 -> max pool 2 -> ReLU -> conv 32 3x3
    pad 1 -> max pool 2 -> ReLU -> 1568-128 -> ReLU -> 128-10, PyTorch's
    default init; it takes (N, 1, 28, 28).  As stg-train's --batch-norm: each
    convolution without bias and followed by a BatchNorm2d; --dropout P: a
    Dropout after the 128-wide ReLU."""
    from torch import nn

    layers, width = [], 1
    for out in (16, 32):
        layers.append(nn.Conv2d(width, out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers += [nn.MaxPool2d(2), nn.ReLU()]
        width = out
    layers += [nn.Flatten(), nn.Linear(1568, 128), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(128, 10))
    return nn.Sequential(*layers)


def make_lstm(hidden=128, rows=28, cols=28):
    """stg-train --model lstm: each image's rows as a sequence (batch-first)
    through nn.LSTM(cols, hidden), a linear classifier on the last step's
    output; PyTorch's default init.  It takes (N, rows * cols)."""
    from torch import nn

    class RowLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(cols, hidden, batch_first=True)
            self.fc1 = nn.Linear(hidden, 10)

        def forward(self, x):
            out, _ = self.lstm(x.reshape(-1, rows, cols))
            return self.fc1(out[:, -1, :])

    return RowLSTM()


def make_charlm(vocab=256, embed=64, hidden=256):
    """stg-charlm's model: bytes -> Embedding(vocab, embed) -> LSTM(embed,
    hidden, batch_first) -> Linear(hidden, vocab); forward(x, state) returns
    the logits (N, T, vocab) and the final state."""
    from torch import nn

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, vocab)

        def forward(self, x, state=None):
            out, state = self.lstm(self.embed(x), state)
            return self.fc(out), state

    return CharLM()
