#!/usr/bin/python3
"""PyTorch run of the BENCH.md main job: the mlp model on Fashion-MNIST.

Fashion-MNIST is read from the gzip'ed IDX files (train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
t10k-labels-idx1-ubyte.gz) in /usr/share/datasets/fashion-mnist (Debian
`dataset-fashion-mnist`; --data DIR to override) with gzip + numpy, pixels
scaled to [0, 1].  Model 784-512-256-10 with ReLU and default nn.Linear init,
softmax cross-entropy (F.cross_entropy on logits, mean), SGD lr 0.05 momentum
0.9, batch 64 (the last, partial batch of an epoch is kept), training set
shuffled each epoch with a seeded torch.Generator.  Per epoch it prints

    epoch E train_loss=... test_acc=...% seconds=...

where train_loss is the mean of the per-batch losses over the epoch and
seconds covers the training loop only (the data is already in memory as
tensors; loading and the test evaluation are excluded).

Run it as BENCH.md says PyTorch runs at its best (tools/torch_peer.py
explains), e.g.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BLIS_NUM_THREADS=2 \\
        OMP_NUM_THREADS=2 /usr/bin/python3 tools/torch_fashion.py --threads 2

The script warns on stderr when BLIS_NUM_THREADS differs from --threads or when
either OPENBLAS variable is set.  Use /usr/bin/python3 (the interpreter with
Debian's torch and numpy).
"""

import argparse
import gzip
import os
import struct
import sys
import time

from torch_peer import check_env, make_model

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"




def read_idx(path):
    """Read a gzip'ed IDX file into a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError("%s: too short for an IDX header" % path)
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    hdr = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, data[4:hdr])
    count = int(np.prod(dims)) if dims else 1
    if len(data) - hdr != count:
        raise ValueError("%s: payload is %d bytes, header says %d"
                         % (path, len(data) - hdr, count))
    return np.frombuffer(data, dtype=np.uint8, offset=hdr).reshape(dims)


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte.gz"))
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s: %d images but %d labels"
                         % (prefix, images.shape[0], labels.shape[0]))
    x = torch.from_numpy(
        images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x.contiguous(), y




@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    correct = 0
    for i in range(0, x.shape[0], batch):
        pred = model(x[i:i + batch]).argmax(dim=1)
        correct += int((pred == y[i:i + batch]).sum())
    return 100.0 * correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="directory with the gzip'ed IDX files (default %s)"
                         % DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads(T); also set BLIS_NUM_THREADS "
                         "and OMP_NUM_THREADS to T in the environment")
    ap.add_argument("--seed", type=int, default=0,
                    help="seeds the init (torch.manual_seed) and the shuffle")
    args = ap.parse_args()
    if args.threads < 1 or args.epochs < 1 or args.batch < 1:
        ap.error("--threads, --epochs and --batch must be >= 1")

    check_env(args.threads)
    torch.set_num_threads(args.threads)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")

    torch.manual_seed(args.seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr,
                          momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    n = x_train.shape[0]

    print("torch fashion-mnist mlp threads=%d batch=%d train=%d test=%d"
          % (args.threads, args.batch, n, x_test.shape[0]), flush=True)

    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        nbatches = 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb = x_train[idx]
            yb = y_train[idx]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            nbatches += 1
        seconds = time.perf_counter() - t0

        model.eval()
        acc = evaluate(model, x_test, y_test)
        print("epoch %d train_loss=%.4f test_acc=%.2f%% seconds=%.3f"
              % (epoch, float(loss_sum) / nbatches, acc, seconds), flush=True)


if __name__ == "__main__":
    main()
