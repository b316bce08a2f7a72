#!/usr/bin/python3
"""PyTorch run of stg-charlm's job: the same text, split, model and settings.

Text: every file of --data DIR (default /usr/share/games/fortunes, Debian's
`fortunes`) but the *.dat indexes and *.u8 links, in name order, as bytes;
the first 90% train, the last 10% validate.  Model (tools/torch_peer.py
make_charlm): Embedding(256, 64) -> LSTM(64, 256) -> Linear(256, 256),
cross-entropy against the next byte at every step.  Training: the text cut
into --batch streams, windows of --steps bytes, the LSTM state carried
between windows (detached) and zeroed each epoch; Adam lr 0.002, cosine to 0
over the run stepped per window, gradient norm clipped to 1.  Validation:
the same over the validation text, the mean cross-entropy per byte in bits.
Per epoch it prints

    epoch E train_bpc=... val_bpc=... seconds=...

and with --csv FILE writes stg-charlm's columns
(epoch,train_bpc,val_bpc,seconds,steps_per_s).  Run it as PyTorch runs at
its best (see tools/torch_peer.py), e.g.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BLIS_NUM_THREADS=2 \\
        OMP_NUM_THREADS=2 /usr/bin/python3 tools/torch_charlm.py --threads 2
"""

import argparse
import math
import os
import time

from torch_peer import check_env, make_charlm

import torch
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/games/fortunes"


def read_text(data_dir):
    """The bytes of every file but *.dat, *.u8 and dotfiles, in name order."""
    parts = []
    for name in sorted(os.listdir(data_dir)):
        if name.startswith(".") or name.endswith(".dat") or name.endswith(".u8"):
            continue
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                parts.append(f.read())
    return b"".join(parts)


def streams(data, batch):
    """The text cut into 'batch' equal streams (as stg-charlm), as a
    (batch, stride) int64 tensor."""
    stride = (len(data) - 1) // batch
    t = torch.tensor(list(data[:batch * stride]), dtype=torch.int64)
    return t.reshape(batch, stride), stride


def run_windows(model, s, stride, steps, train, opt=None, sched=None, clip=1.0):
    """Every window of the streams in order, the state carried; returns the
    mean loss (nats) and the number of windows."""
    windows = (stride - 1) // steps
    state, total = None, 0.0
    for w in range(windows):
        x = s[:, w * steps:(w + 1) * steps]
        y = s[:, w * steps + 1:(w + 1) * steps + 1]
        logits, state = model(x, state)
        state = tuple(h.detach() for h in state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if train:
            opt.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
        total += float(loss.detach())
    return total / windows, windows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip-norm", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", help="also write the per-epoch figures to this CSV file")
    args = ap.parse_args()

    check_env(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = read_text(args.data)
    ntrain = len(data) // 10 * 9
    train, stride = streams(data[:ntrain], args.batch)
    val, vstride = streams(data[ntrain:], args.batch)
    model = make_charlm()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    per_epoch = (stride - 1) // args.steps
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch * args.epochs)
    csv = open(args.csv, "w") if args.csv else None
    if csv:
        print("epoch,train_bpc,val_bpc,seconds,steps_per_s", file=csv, flush=True)
    print("torch charlm: %d bytes (%d train), %d streams x %d steps (%d steps/epoch), "
          "threads=%d" % (len(data), ntrain, args.batch, args.steps, per_epoch, args.threads),
          flush=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        tl, n = run_windows(model, train, stride, args.steps, True, opt, sched, args.clip_norm)
        seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            vl, _ = run_windows(model, val, vstride, args.steps, False)
        tb, vb = tl / math.log(2), vl / math.log(2)
        print("epoch %d train_bpc=%.4f val_bpc=%.4f seconds=%.3f" % (epoch, tb, vb, seconds),
              flush=True)
        if csv:
            print("%d,%.6f,%.6f,%.4f,%.3f" % (epoch, tb, vb, seconds, n / seconds), file=csv,
                  flush=True)
    if csv:
        csv.close()


if __name__ == "__main__":
    main()
