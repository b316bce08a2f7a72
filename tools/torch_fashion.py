#!/usr/bin/python3
"""PyTorch run of the BENCH.md main job (the mlp model) or of lenet on Fashion-MNIST.

Fashion-MNIST is read from the gzip'ed IDX files (train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
t10k-labels-idx1-ubyte.gz) in /usr/share/datasets/fashion-mnist (Debian
`dataset-fashion-mnist`; --data DIR to override) with gzip + numpy, pixels
scaled to [0, 1].  Model 784-512-256-10 with ReLU and default nn.Linear init
(--model lenet: BENCH.md's lenet, tools/torch_peer.py), softmax cross-entropy
(F.cross_entropy on logits, mean), SGD lr 0.05 momentum 0.9, batch 64 (the
last, partial batch of an epoch is kept, unless --drop-last, as stg-train
does), constant lr (--schedule cosine: to 0 over the run, stepped per batch,
as stg-train's default), training set shuffled each epoch with a seeded
torch.Generator.  Per epoch it prints

    epoch E train_loss=... test_loss=... test_acc=...% seconds=...

and with --csv FILE writes the same columns as stg-train --csv
(epoch,train_loss,test_loss,test_acc,seconds,steps_per_s).

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

from torch_peer import check_env, make_lenet, make_lstm, make_model

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
    """(mean test loss, accuracy in %)."""
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = model(x[i:i + batch])
            loss_sum += float(F.cross_entropy(logits, y[i:i + batch], reduction="sum"))
            correct += int((logits.argmax(dim=1) == y[i:i + batch]).sum())
    return loss_sum / x.shape[0], 100.0 * correct / x.shape[0]


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
    ap.add_argument("--model", choices=("mlp", "lenet", "lstm"), default="mlp")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--hidden", type=int, default=128, help="lstm: the state size")
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    ap.add_argument("--drop-last", action="store_true",
                    help="drop each epoch's last partial batch (as stg-train)")
    ap.add_argument("--csv", help="also write the per-epoch figures to this CSV file")
    ap.add_argument("--batch-norm", action="store_true", help="as stg-train's --batch-norm")
    ap.add_argument("--dropout", type=float, default=0.0, help="as stg-train's --dropout")
    args = ap.parse_args()
    if args.threads < 1 or args.epochs < 1 or args.batch < 1:
        ap.error("--threads, --epochs and --batch must be >= 1")

    check_env(args.threads)
    torch.set_num_threads(args.threads)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")

    if args.model == "lenet":
        x_train = x_train.reshape(-1, 1, 28, 28)
        x_test = x_test.reshape(-1, 1, 28, 28)
    torch.manual_seed(args.seed)
    if args.model == "lstm":
        model = make_lstm(args.hidden)
    else:
        make = make_lenet if args.model == "lenet" else make_model
        model = make(batch_norm=args.batch_norm, dropout=args.dropout)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    n = x_train.shape[0]
    per_epoch = n // args.batch if args.drop_last else (n + args.batch - 1) // args.batch
    sched = None
    if args.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch * args.epochs)
    csv = open(args.csv, "w") if args.csv else None
    if csv:
        print("epoch,train_loss,test_loss,test_acc,seconds,steps_per_s", file=csv, flush=True)

    print("torch fashion-mnist %s threads=%d batch=%d train=%d test=%d schedule=%s "
          "batch_norm=%d dropout=%g"
          % (args.model, args.threads, args.batch, n, x_test.shape[0], args.schedule,
             args.batch_norm, args.dropout), flush=True)

    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        nbatches = 0
        for i in range(0, per_epoch * args.batch, args.batch):
            idx = perm[i:i + args.batch]
            xb = x_train[idx]
            yb = y_train[idx]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            loss_sum += loss.detach()
            nbatches += 1
        seconds = time.perf_counter() - t0

        model.eval()
        test_loss, acc = evaluate(model, x_test, y_test)
        train_loss = float(loss_sum) / nbatches
        print("epoch %d train_loss=%.4f test_loss=%.4f test_acc=%.2f%% seconds=%.3f"
              % (epoch, train_loss, test_loss, acc, seconds), flush=True)
        if csv:
            print("%d,%.6f,%.6f,%.4f,%.4f,%.3f" % (epoch, train_loss, test_loss, acc, seconds,
                                                   nbatches / seconds), file=csv, flush=True)
    if csv:
        csv.close()


if __name__ == "__main__":
    main()
