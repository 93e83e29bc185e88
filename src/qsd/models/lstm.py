"""LSTM language model (Zaremba et al. 2014) and LSTM sentiment classifier, with the regulariser as
explicit modules on the non-recurrent connections (not ``nn.LSTM(dropout=)``, which skips the last
layer). ``locked=True`` shares one mask across time (Gal & Ghahramani 2016)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .synapse import regularised_linear


class SequenceReg(nn.Module):
    """Applies a regulariser to a (T, B, H) sequence: a fresh mask per step, or one per (B, H)
    shared across time (``locked``: the regulariser sees (B, H, T) with channel granularity)."""

    def __init__(self, make_reg, slot: str, locked: bool):
        super().__init__()
        self.locked = locked
        self.reg = make_reg(slot, granularity="channel") if locked else make_reg(slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.locked:
            return self.reg(x)
        return self.reg(x.movedim(-3, -1)).movedim(-1, -3)  # (T, B, H) <-> (B, H, T), from the end (stack.py)


class LSTMLanguageModel(nn.Module):
    """Embedding -> reg -> [LSTM -> reg] x layers -> Linear (optionally tied to the embedding)."""
    SLOTS = ("embedding", "hidden")  # the rate slots it asks make_reg for

    def __init__(self, make_reg, vocab_size: int, hidden: int = 650, layers: int = 2, tie_weights: bool = False,
                 locked: bool = False, init_range: float = 0.05):
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"model.hidden and model.layers must be >= 1, got {hidden}, {layers}")
        self.embed = nn.Embedding(vocab_size, hidden)
        self.regs = nn.ModuleList([SequenceReg(make_reg, "embedding", locked)] +
                                  [SequenceReg(make_reg, "hidden", locked) for _ in range(layers)])
        self.lstms = nn.ModuleList([nn.LSTM(hidden, hidden) for _ in range(layers)])
        self.decoder = nn.Linear(hidden, vocab_size)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        if tie_weights:
            self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """x: (T, B) token ids -> (T, B, V) logits and the new per-layer (h, c) states."""
        h = self.regs[0](self.embed(x))
        new_state = []
        for i, lstm in enumerate(self.lstms):
            h, s = lstm(h, None if state is None else state[i])
            h = self.regs[i + 1](h)
            new_state.append(s)
        return self.decoder(h), new_state


class LSTMClassifier(nn.Module):
    """Embedding -> reg -> LSTM (uni- or bidirectional) -> final hidden state -> reg -> Linear."""
    SLOTS = ("embedding", "output")  # the rate slots it asks make_reg for
    LINEAR_SLOTS = ("output",)  # those whose regulariser feeds a Linear layer (granularity "synapse" can mask it)

    def __init__(self, make_reg, vocab_size: int, classes: int, embedding: int = 128, hidden: int = 128,
                 bidirectional: bool = False, pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding, padding_idx=pad_id)
        self.reg_in, self.reg_out = make_reg("embedding"), make_reg("output")
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=bidirectional)
        *before, self.head = regularised_linear(self.reg_out, hidden * (2 if bidirectional else 1), classes)
        if not before:  # "synapse": the head masks its own weight
            self.reg_out = nn.Identity()

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Reads each review's hidden state at its last token. One-directional, the LSTM runs over the
        right-padded batch and that state is picked out: padding comes after a review's last token, so
        it never reaches it, and the result equals packing's. Packing is kept for the backward direction,
        which must start at each review's own end; it costs more: PyTorch's CPU backward of a packed LSTM
        grows with the square of the length (docs/speed.md)."""
        x, lengths = batch
        e = self.reg_in(self.embed(x))
        if self.lstm.bidirectional:
            _, (h, _) = self.lstm(pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False))
            h = torch.cat(list(h), dim=1)  # both directions' final states
        else:
            out, _ = self.lstm(e)  # (..., B, T, H); gathered from the end: a stacked model adds a first axis
            last = (lengths.to(out.device) - 1).view(*lengths.shape, 1, 1).expand(*lengths.shape, 1, out.shape[-1])
            h = out.gather(-2, last).squeeze(-2)
        return self.head(self.reg_out(h))
