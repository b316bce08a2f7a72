#!/usr/bin/python3
"""Loss and accuracy curves of several training runs, in one picture.

    tools/plot_curves.py OUT.png|OUT.svg NAME=RUN.csv [NAME=RUN.csv ...] [--title T]

Each RUN.csv has the columns that `stg-train --csv` and
`tools/torch_fashion.py --csv` write:

    epoch,train_loss,test_loss,test_acc,seconds,steps_per_s

The left panel shows the training loss (solid) and the test loss (dashed)
per epoch, the right one the test accuracy; each run keeps one colour, and
its legend entry says its mean seconds per epoch.  The format follows OUT's
extension.  Needs matplotlib (Debian python3-matplotlib); use /usr/bin/python3.
"""

import argparse
import csv
import sys

COLUMNS = ("epoch", "train_loss", "test_loss", "test_acc", "seconds", "steps_per_s")


def read_run(path):
    """The CSV's columns as lists of numbers; exits 1 with a message on bad input."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit("plot_curves: cannot read %s: %s" % (path, e.strerror))
    if not rows or any(c not in rows[0] for c in COLUMNS):
        sys.exit("plot_curves: %s: expected the columns %s" % (path, ",".join(COLUMNS)))
    try:
        return {c: [float(r[c]) for r in rows] for c in COLUMNS}
    except (TypeError, ValueError):
        sys.exit("plot_curves: %s: a value is not a number" % path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the picture to write (.png or .svg)")
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN.csv")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    runs = []
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error("'%s' is not NAME=RUN.csv" % spec)
        runs.append((name, read_run(path)))
    try:
        import matplotlib
    except ImportError:
        sys.exit("plot_curves: needs matplotlib (Debian package python3-matplotlib)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (name, r) in enumerate(runs):
        colour = "C%d" % k
        secs = sum(r["seconds"]) / len(r["seconds"])
        label = "%s (%.1f s/epoch)" % (name, secs)
        loss_ax.plot(r["epoch"], r["train_loss"], color=colour, marker="o", ms=3,
                     label=label + ", train")
        loss_ax.plot(r["epoch"], r["test_loss"], color=colour, ls="--", marker="o", ms=3,
                     label=label + ", test")
        acc_ax.plot(r["epoch"], r["test_acc"], color=colour, marker="o", ms=3, label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss (solid: train, dashed: test)")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_title("test accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=110)
    except (OSError, ValueError) as e:
        sys.exit("plot_curves: cannot write %s: %s" % (args.out, e))


if __name__ == "__main__":
    main()
