"""The image-prior track: images and quality measures, the DIP, the OES mask objective, the
track in the core's pipeline, E12's grid and finding, and every bad input's error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.masks import apply_mask
from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.core.store import Store
from rtstudy.experiments import prior as E
from rtstudy.prior.images import add_noise, check_sigma, load_image, psnr, ssim
from rtstudy.prior.models import Hourglass
from rtstudy.prior.oes import MaskLearner, bernoulli_kl, check_keep, learn_probabilities, topk_mask
from rtstudy.prior.problem import (
    DenoiseEvaluation,
    DenoiseRecipe,
    PriorSource,
    new_network,
    noisy_target,
    parse_target,
    problem,
)

SMALL = PriorSource(image_size=16, depth=2, width=4, skip=2, code_channels=4, seed=0)
TARGET = noisy_target("camera", 0.1, 0)


# ----------------------------------------------------------------------------- images
def test_sample_image_is_resized_in_range_and_noise_is_seeded():
    x = load_image("camera", 32)
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    assert load_image("astronaut", 16, channels=3).shape == (3, 16, 16)
    a, b = add_noise(x, 0.1, 3), add_noise(x, 0.1, 3)
    assert torch.equal(a, b) and not torch.equal(a, add_noise(x, 0.1, 4))
    assert abs(float((a - x).std()) - 0.1) < 0.02
    assert torch.equal(add_noise(x, 0.0, 0), x)


def test_a_user_image_file_is_read(tmp_path):
    import skimage.io

    img = (np.linspace(0, 255, 40 * 40).reshape(40, 40)).astype(np.uint8)
    path = tmp_path / "ramp.png"
    skimage.io.imsave(path, img, check_contrast=False)
    x = load_image(str(path), 40)
    assert torch.allclose(x[0], torch.from_numpy(img / 255.0).float(), atol=1e-6)


def test_psnr_and_ssim_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean = load_image("coins", 32)
    out = add_noise(clean, 0.05, 1).clamp(0, 1)
    expected = peak_signal_noise_ratio(clean.double().numpy(), out.double().numpy(), data_range=1.0)
    assert psnr(out, clean) == pytest.approx(expected, abs=1e-9)
    assert ssim(out, clean) == pytest.approx(structural_similarity(
        clean.double().numpy(), out.double().numpy(), data_range=1.0, channel_axis=0), abs=1e-9)
    assert psnr(clean, clean) == math.inf and ssim(clean, clean) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the prior
def test_hourglass_maps_the_code_to_an_image_and_prunes_every_conv():
    model = new_network(SMALL)
    code, noisy, clean = problem(SMALL, TARGET)
    out = model(code)
    assert out.shape == noisy.shape == clean.shape == (1, 1, 16, 16)
    assert 0 < float(out.detach().min()) and float(out.detach().max()) < 1
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert model.prunable_names() == [f"{n}.weight" for n in convs]
    assert torch.equal(new_network(SMALL).head.weight, model.head.weight)  # seeded


# ----------------------------------------------------------------------------- OES
def _learn(keep: float, **kw):
    model = new_network(SMALL)
    code, noisy, _ = problem(SMALL, TARGET)
    return model, learn_probabilities(model, code, noisy, keep, **kw)


def test_kl_term_pulls_keep_probabilities_to_the_target_rate():
    for keep in (0.1, 0.9):
        _, (probs, history) = _learn(keep, steps=150, lr=0.1, data_weight=0.0, kl_weight=1.0)
        mean = float(torch.cat([p.flatten() for p in probs.values()]).mean())
        assert history[0]["mean_keep"] == pytest.approx(0.5, abs=1e-6)
        assert abs(mean - keep) < 0.05, (keep, mean)
        assert history[-1]["kl"] < history[0]["kl"]
    # without the KL term nothing pulls them there
    _, (probs, _) = _learn(0.1, steps=150, lr=0.1, data_weight=0.0, kl_weight=0.0)
    assert float(torch.cat([p.flatten() for p in probs.values()]).mean()) == pytest.approx(0.5)


def test_bernoulli_kl_is_zero_at_the_target_and_positive_elsewhere():
    p = torch.tensor([0.2, 0.5, 0.9])
    kl = bernoulli_kl(p, 0.2)
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and bool((kl[1:] > 0).all())
    assert float(bernoulli_kl(torch.tensor([0.5]), 0.3)) == pytest.approx(
        0.5 * math.log(0.5 / 0.3) + 0.5 * math.log(0.5 / 0.7))


def test_topk_gives_the_requested_sparsity_exactly():
    gen = torch.Generator().manual_seed(0)
    probs = {"a": torch.rand(7, 5, 3, 3, generator=gen), "b": torch.rand(11, 7, 1, 1, generator=gen),
             "c": torch.full((4, 4), 0.5)}  # ties
    n = sum(v.numel() for v in probs.values())
    for keep in (0.013, 0.1, 0.37, 0.5, 1.0):
        mask = topk_mask(probs, keep)
        assert sum(int(m.sum()) for m in mask.values()) == round(keep * n)
        kept = torch.cat([probs[k][mask[k]] for k in probs])
        dropped = torch.cat([probs[k][~mask[k]] for k in probs])
        if len(kept) and len(dropped):
            assert float(kept.min()) >= float(dropped.max())


def test_weights_stay_frozen_while_the_mask_learns():
    model = new_network(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    code, noisy, _ = problem(SMALL, TARGET)
    learner = MaskLearner(model, code, noisy, 0.2, lr=0.1)
    rec = [learner.step() for _ in range(20)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert rec[-1]["data"] < rec[0]["data"] * 1.5  # it learns something sensible, and ran
    assert any(float((p - 0.5).abs().max()) > 0 for p in learner.probabilities().values())


def test_functional_masked_forward_equals_the_masked_model():
    model = new_network(SMALL)
    code, _, _ = problem(SMALL, TARGET)
    gen = torch.Generator().manual_seed(1)
    mask = {k: torch.rand(p.shape, generator=gen) > 0.5
            for k, p in model.named_parameters() if k in model.prunable_names()}
    params = dict(model.named_parameters())
    out = functional_call(model, {**params, **{k: params[k] * m for k, m in mask.items()}}, (code,))
    apply_mask(model, mask)
    assert torch.allclose(out, model(code), atol=1e-6)


# ----------------------------------------------------------------------------- pipeline
def test_track_in_the_pipeline_stores_init_masks_and_denoising_runs(tmp_path):
    store = Store(tmp_path)
    src = pretrain(SMALL, store=store)
    assert all(torch.equal(v, new_network(SMALL).state_dict()[k]) for k, v in src.model.state_dict().items())
    recipe = DenoiseRecipe(iterations=12)
    oes = TicketDesc(SMALL, "oes", sparsity=0.7, target=TARGET, finetune=recipe, target_fraction=1.0,
                     options={"steps": 4})
    t = draw_ticket(oes, store=store)
    n = sum(m.numel() for m in t.mask.values())
    assert sum(int(m.sum()) for m in t.mask.values()) == round(0.3 * n)
    twin = draw_ticket(oes.with_(scheme="oes_random", seed=1), store=store).mask
    assert all(int(twin[k].sum()) == int(t.mask[k].sum()) for k in t.mask)  # OES's layer budgets
    imp = TicketDesc(SMALL, "imp_target", "unstructured_layerwise", sparsity=0.5, rate=0.5, epochs=3.0,
                     target=TARGET, finetune=recipe, target_fraction=1.0)
    assert draw_ticket(imp, store=store).sparsity == pytest.approx(0.5, abs=0.01)
    run = TransferDesc(SMALL, oes, TARGET, recipe, DenoiseEvaluation(every=4))
    m = transfer(run, store=store).metrics
    assert m["curve_iterations"] == [0, 4, 8, 12]
    assert m["psnr_peak"] == max(m["curve_psnr"]) and m["psnr_final"] == m["curve_psnr"][-1]
    assert m["psnr_drop"] == pytest.approx(m["psnr_peak"] - m["psnr_final"])
    assert m["sparsity"] >= 0.7 - 1e-9  # the mask held through Adam
    assert np.asarray(m["output_u8"]).shape == (1, 16, 16)
    again = transfer(run, store=store)
    assert again.metrics == m  # stored: read back, not recomputed


def test_e12_grid_lists_every_run_and_its_finding_is_computed(tmp_path):
    [grid] = E.grid_e12("smoke")
    descs = grid.descriptions()
    assert len(descs) == len(grid.seeds) * len(grid.images) * (len(E.METHODS) + 1)
    moved = [c for c in grid.cells() if c.method == E.TRANSFERRED]
    assert all(c.mask_from != c.image and c.desc.ticket.target.startswith(c.mask_from + "@") for c in moved)
    [rep] = E.grid_e12("smoke", source_seeds=[100, 101], seeds=[100, 102, 103])  # the replicate's
    assert {d.source.seed for d in rep.descriptions()} == {100, 101}
    assert {d.seed for d in rep.descriptions()} == {100, 102, 103}
    assert all(d.target.endswith(f"#{d.seed}") for d in rep.descriptions())
    # synthetic rows: OES ends 2 dB above dense on every unit (+ noise), ties elsewhere
    rows, rng = [], np.random.default_rng(0)
    for image in ("a", "b", "c"):
        for seed in (0, 1, 2):
            for method in [*E.METHODS, E.TRANSFERRED]:
                final = 25.0 + (2.0 if method != "dense" else 0.0) + rng.normal(0, 0.1)
                for metric, v in (("psnr_final", final), ("psnr_peak", 26.0), ("psnr_drop", 26.0 - final),
                                  ("psnr_peak_iteration", 50)):
                    rows.append({"task": image, "seed": seed, "scheme": method, "metric": metric,
                                 "value": v, "sparsity": 0.9})
    c = E.dB_contrast(rows, "oes", "dense", "psnr_final")
    from scipy import stats

    diffs = [next(r["value"] for r in rows if r["task"] == i and r["seed"] == s and r["scheme"] == "oes"
                  and r["metric"] == "psnr_final")
             - next(r["value"] for r in rows if r["task"] == i and r["seed"] == s and r["scheme"] == "dense"
                    and r["metric"] == "psnr_final") for i in "abc" for s in (0, 1, 2)]
    assert c.diff == pytest.approx(np.mean(diffs)) and c.p == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue)
    text = E.prior_finding(rows)
    assert "OES (learned) beats dense by +1.9" in text and "drops 1.9" in text and "less than dense" in text
    assert "not separated after the Holm correction" in text  # the transferred mask's +0.07 dB
    assert "Over 9 (image, network seed) units × 1 noise seed" in text
    assert "Holm across the 10 contrasts" in text


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_value(tmp_path):
    for bad in (-0.1, float("nan"), "x"):
        with pytest.raises(ValueError, match="sigma"):
            check_sigma(bad)
    with pytest.raises(ValueError, match="sigma"):
        noisy_target("camera", -1, 0)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot be read"):
        load_image(str(junk), 16)
    with pytest.raises(ValueError, match="neither one of scikit-image's samples"):
        load_image("no_such_picture", 16)
    with pytest.raises(ValueError, match="smaller than the requested size 128"):
        load_image("microaneurysms", 128)
    with pytest.raises(ValueError, match="image size 20 does not fit a depth-3"):
        PriorSource(image_size=20, depth=3)
    with pytest.raises(ValueError, match="image size 4 does not fit"):
        PriorSource(image_size=4, depth=2)
    for keep in (0.0, 1.5, -1):
        with pytest.raises(ValueError, match="keep rate"):
            check_keep(keep)
    with pytest.raises(ValueError, match="keep rate"):
        topk_mask({"a": torch.rand(3, 3)}, 0.0)
    with pytest.raises(ValueError, match="sparsity"):
        TicketDesc(SMALL, "oes", sparsity=1.0, target=TARGET, finetune=DenoiseRecipe(), target_fraction=1.0)
    with pytest.raises(ValueError, match="temperature"):
        TicketDesc(SMALL, "oes", sparsity=0.5, target=TARGET, finetune=DenoiseRecipe(), target_fraction=1.0,
                   options={"temperature": 0})
    with pytest.raises(ValueError, match="target"):
        TicketDesc(SMALL, "oes", sparsity=0.5)
    with pytest.raises(ValueError, match="rate/epochs must be None"):
        TicketDesc(SMALL, "oes", sparsity=0.5, target=TARGET, finetune=DenoiseRecipe(), target_fraction=1.0,
                   rate=0.5, epochs=1.0)
    with pytest.raises(ValueError, match="not '<image>@<sigma>#<noise seed>'"):
        parse_target("camera-0.1")
    other = Hourglass(depth=2, width=6, skip=2, code_channels=4)
    mask = {k: torch.ones_like(p, dtype=torch.bool) for k, p in new_network(SMALL).named_parameters()
            if k.endswith("weight") and p.dim() == 4}
    with pytest.raises(ValueError, match="shape"):
        apply_mask(other, mask)
