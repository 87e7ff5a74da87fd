"""Pilot: does the dense pretrained model beat training from scratch on each target?

    python tools/pilot_transfer.py [--store DIR] [--fractions 0.02,0.05] [--seeds 0,1,2]

Pretrains the default profile's natural source (and the robust one at eps*) and, for each
target, fraction and recipe, finetunes the dense pretrained model and its from-scratch
control under several seeds; prints mean gain (points) with a 95% t interval and the
seconds per transfer. Its output chose the default profile's transfer recipe (see the
profile's docstring).
"""

from __future__ import annotations

import argparse
import statistics
import time

from scipy import stats

from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.core.store import Store
from rtstudy.profiles import get_profile
from rtstudy.vision.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None)
    ap.add_argument("--targets", default="mnist5k,digits")
    ap.add_argument("--fractions", default="0.02,0.05,0.25")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recipes", default="5:0.05:100,2:0.05:40")  # epochs:lr:min_steps
    ap.add_argument("--robust", action="store_true", help="also the robust source at eps*")
    ap.add_argument("--source-fraction", type=float, default=None, help="of S's training set")
    ap.add_argument("--pretrain-epochs", type=float, default=None)
    ap.add_argument("--sparsity", type=float, default=0.0, help="> 0: also OMP and random tickets")
    args = ap.parse_args()
    store = Store(args.store)
    P = get_profile("default")
    if args.source_fraction is not None:
        P = get_profile("default", source_fraction=args.source_fraction)
    if args.pretrain_epochs is not None:
        P = get_profile(
            P.name, **{**_overrides(P), "pretrain": P.pretrain.with_(epochs=args.pretrain_epochs)}
        )
    sources = [P.source_model(0.0)] + ([P.source_model(P.eps_star)] if args.robust else [])
    for desc in sources:
        t0 = time.perf_counter()
        src = pretrain(desc, store=store, progress=False)
        print(
            f"# source {desc.label}: test acc {src.artifact.metrics['test_acc']:.4f} "
            f"({time.perf_counter() - t0:.0f} s incl. loading)",
            flush=True,
        )
        for spec in args.recipes.split(","):
            ep, lr, ms = spec.split(":")
            recipe = TrainConfig(
                epochs=float(ep), batch_size=32, lr=float(lr), schedule="cosine", min_steps=int(ms)
            )
            Q = get_profile("default", **{**_overrides(P), "finetune": recipe})
            tickets = {"dense": None}
            if args.sparsity > 0:
                for scheme in ("omp", "random"):
                    tickets[scheme] = draw_ticket(
                        Q.ticket(desc, scheme, "unstructured", args.sparsity),
                        store=store,
                        source=src,
                    )
            for target in args.targets.split(","):
                for frac in map(float, args.fractions.split(",")):
                    for name, tk in tickets.items():
                        accs = {"pretrained": [], "scratch": []}
                        t1 = time.perf_counter()
                        for seed in map(int, args.seeds.split(",")):
                            for init in accs:
                                d = Q.transfer(
                                    desc,
                                    tk and tk.desc,
                                    target,
                                    fraction=frac,
                                    seed=seed,
                                    init=init,
                                )
                                accs[init].append(
                                    transfer(d, store=store, source=src).metrics["test_acc"]
                                )
                        secs = (time.perf_counter() - t1) / (2 * len(accs["scratch"]))
                        diffs = [
                            100 * (a - b)
                            for a, b in zip(accs["pretrained"], accs["scratch"], strict=True)
                        ]
                        ci = stats.ttest_1samp(diffs, 0).confidence_interval()
                        print(
                            f"{desc.label:>18} {spec:>12} {target:>8} frac {frac:<5} {name:>6} "
                            f"pre {100 * statistics.mean(accs['pretrained']):5.1f} "
                            f"scratch {100 * statistics.mean(accs['scratch']):5.1f} "
                            f"gain {statistics.mean(diffs):+5.1f} [{ci.low:+.1f}, {ci.high:+.1f}] "
                            f"{secs:.1f} s/transfer",
                            flush=True,
                        )


def _overrides(P) -> dict:
    return {"source_fraction": P.source_fraction, "pretrain": P.pretrain}


if __name__ == "__main__":
    main()
