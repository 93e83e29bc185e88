"""A small text pipeline (torchtext is unmaintained and no longer loads against current torch):
tokenizer, vocabulary, PTB-style batchify + BPTT windows, length-bucketed padded batches."""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Iterator

import torch

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens for reviews: HTML line breaks removed, punctuation split off."""
    return _TOKEN.findall(_MARKUP.sub(" ", text).lower())


class Vocab:
    """Token <-> id map. ``<pad>`` is id 0 and ``<unk>`` id 1 when present; unknown words map to ``<unk>``."""

    def __init__(self, itos: list[str]):
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary has duplicate tokens")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[list[str]], specials: list[str], max_size: int | None = None,
              min_freq: int = 1) -> "Vocab":
        """Most frequent tokens first (ties broken by first appearance), after ``specials``."""
        counts = Counter(t for toks in texts for t in toks)
        words = [w for w, c in counts.most_common() if c >= min_freq and w not in specials]
        if max_size is not None:
            words = words[: max(0, max_size - len(specials))]
        return cls(specials + words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        unk = self.stoi.get(UNK)
        if unk is None:
            missing = [t for t in tokens if t not in self.stoi]
            if missing:
                raise KeyError(f"tokens not in vocabulary and no {UNK}: {missing[:5]}")
        return [self.stoi.get(t, unk) for t in tokens]


def lm_tokens(text: str) -> list[str]:
    """PTB/WikiText word-level tokens: whitespace split, an ``<eos>`` after every non-empty line."""
    out: list[str] = []
    for line in text.split("\n"):
        words = line.split()
        if words:
            out.extend(words)
            out.append(EOS)
    return out


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` contiguous columns: shape (T, batch_size)."""
    steps = ids.numel() // batch_size
    if steps < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for batch size {batch_size}")
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def bptt_windows(data: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input, target) windows of at most ``bptt`` steps over a batchified (T, B) stream."""
    for i in range(0, data.size(0) - 1, bptt):
        n = min(bptt, data.size(0) - 1 - i)
        yield data[i : i + n], data[i + 1 : i + 1 + n]


def pad_batch(seqs: list[torch.Tensor], max_len: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (and truncate to ``max_len``) 1-D id tensors: (B, T) ids and their lengths."""
    lengths = torch.tensor([min(len(s), max_len) for s in seqs]).clamp_min(1)
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : min(len(s), max_len)] = s[:max_len]
    return out, lengths
