"""The SuperTickets' speed figures for ``rtstudy.bench``: what the search and the pruning add
to a training step, and how much faster the slimmed SuperTicket runs than the supernet.

``superticket_train_step_vs_dense_step``: a training step of the default profile's source
network with the two-in-one bookkeeping attached (the scales' proximal step and the mask
re-applied after every step, plus each event's search, pruning and regrowth spread over the
steps between events) / the same step without it, timed alternately.

``superticket_slim_speedup``: latency of the dense supernet / the physically slimmed
SuperTicket of E13 (the profile's natural source, seed 0, drawn or read from the store),
timed round-robin on one batch.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from rtstudy.core.store import Store
from rtstudy.vision import supernet
from rtstudy.vision.models import build_model
from rtstudy.vision.supertickets import TwoInOne, cubic_targets, total_steps
from rtstudy.vision.track import source_task
from rtstudy.vision.train import make_optimizer


def _entry(value: float, unit: str, target: str, ok: bool | None, note: str = "") -> dict:
    return {"value": round(value, 4), "unit": unit, "target": target, "ok": ok, "note": note}


def bench_supertickets(profile: str, device: torch.device, repeats: int, batch: int = 128,
                       store: Store | None = None) -> dict:
    """Both figures (see the module doc) at ``profile``'s sizes (``nox -s bench``: the
    default profile); the SuperTicket is drawn into ``store`` (default: the usual store)
    where it is not there yet."""
    from rtstudy.experiments import supertickets as E13
    from rtstudy.profiles import get_profile

    P = get_profile(profile)
    S = E13.sizes(P)
    src = E13.standard_sources(P)[0]
    out = {}

    # --- the training step
    def make():
        m = build_model(P.model, 10, in_channels=P.channels, image_size=P.image_size,
                        width=P.width, seed=0).to(device).train()
        return m, make_optimizer(m.parameters(), P.pretrain)

    dense, dense_opt = make()
    hooked, hooked_opt = make()
    n = round(len(source_task(src).train_y) * src.fraction)
    steps_total = total_steps(n, P.pretrain.with_(epochs=S.epochs))
    per_event = steps_total * S.prune_end / S.events
    two = TwoInOne(hooked, targets=cubic_targets(S.sparsity, S.events), steps=[10**9] * S.events,
                   penalty=S.penalty, threshold=S.threshold, widths=S.widths, regrow=S.regrow)
    two.attach(hooked_opt)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, P.channels, P.image_size, P.image_size, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    def step(model, opt):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times: dict[str, list[float]] = {"dense": [], "hooked": [], "event": []}
    for i in range(repeats + 2):
        for name, fn in (("dense", lambda: step(dense, dense_opt)),
                         ("hooked", lambda: step(hooked, hooked_opt)),
                         ("event", lambda: (two.event(S.sparsity), two.apply()))):
            t0 = time.perf_counter()
            fn()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    d, h, e = (statistics.median(times[k]) for k in ("dense", "hooked", "event"))
    ratio = (h + e / per_event) / d
    out["superticket_train_step_vs_dense_step"] = _entry(
        ratio, "ratio", "<= 1.15", ratio <= 1.15,
        f"{P.model} {P.image_size}px batch {batch}: dense step {1e3 * d:.1f} ms, with the "
        f"penalty and mask {1e3 * h:.1f} ms, an event {1e3 * e:.1f} ms every {per_event:.0f} "
        f"steps ({S.events} events over {S.prune_end:.0%} of {steps_total} steps)")

    # --- the slim SuperTicket
    from rtstudy.core.pipeline import draw_ticket, pretrain

    store = store or Store()
    source = pretrain(src, store=store)
    [ticket_spec] = [t for t in E13.tickets(P) if t.scheme == E13.SUPERTICKET]
    ticket = draw_ticket(ticket_spec.desc(P, src, P.targets[0], 0), store=store, source=source)
    model = source.model.cpu().eval()
    xb = torch.rand(S.latency_batch, P.channels, P.image_size, P.image_size, generator=gen)
    lat = supernet.latencies(model, {"dense": None, "slim": ticket.mask}, xb, repeats=max(5, repeats))
    speedup = lat["dense"] / lat["slim"]
    widths = supernet.searched_widths(model, ticket.mask)
    out["superticket_slim_speedup"] = _entry(
        speedup, "ratio", "> 1", speedup > 1,
        f"{P.model} {P.image_size}px batch {S.latency_batch}, CPU: dense {1e3 * lat['dense']:.1f} ms, "
        f"slim SuperTicket {1e3 * lat['slim']:.1f} ms; searched widths "
        + ", ".join(f"{k} {v:.0%}" for k, v in widths.items()))
    return out
