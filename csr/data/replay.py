"""Replay of frozen work: each training batch, with the outputs of the frozen networks, used ``reuse`` times.

When the encoder is frozen and a teacher supplies targets (the fast decoder, decoders trained on a
downloaded encoder), most of a step is spent in networks that do not learn: on the 2-core machines
a step that runs the encoder and the LIIF teacher took 2.40 s, one that reads their outputs back 0.73 s
(lmf-edsr-baseline's log). Those outputs depend only on the batch,
so a batch generated once (crop, scale, queries, encoder features, teacher targets) can be trained on
several times. This keeps ``slots`` batches on disk; step ``s`` trains on generated batch::

    gen(s) = (s // (slots * reuse)) * slots + s % slots

so ``slots`` fresh batches are generated, then trained on ``reuse`` times each, in the same order,
``slots`` steps apart, then the next ``slots`` fresh ones. The batch of a step depends only on the
step, as without replay: a resumed run continues the same curve (the slots on disk are checked by
their generation number and rebuilt when stale or missing, for example on a new machine), and
``reuse: 1`` is exactly the run without replay. Slots made under another data spec, batch size,
seed, process count, teacher or precision are rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from ..io import atomic_write


class BatchReplay:
    def __init__(self, folder, make_batch: Callable[[int], dict], slots: int = 256, reuse: int = 4,
                 key: object = None, device="cpu"):
        """``key``: everything a batch depends on besides its number (data spec, batch size, seed,
        rank and world size, teacher, precision); a slot made under another key is rebuilt.
        ``device``: where slots read back from disk go (``make_batch`` makes them there too)."""
        if slots < 1 or reuse < 1:
            raise ValueError(f"replay needs slots >= 1 and reuse >= 1, got slots={slots}, reuse={reuse}")
        self.folder, self.make_batch = Path(folder), make_batch
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).digest()
        self.key = torch.tensor(int.from_bytes(digest[:8], "little", signed=True))
        self.slots, self.reuse, self.device = int(slots), int(reuse), device

    def gen(self, step: int) -> int:
        """Which generated batch step ``step`` trains on."""
        return (step // (self.slots * self.reuse)) * self.slots + step % self.slots

    def __call__(self, step: int) -> dict:
        g = self.gen(step)
        if self.reuse == 1:
            return self.make_batch(g)
        path = self.folder / f"slot{step % self.slots:05d}.pt"
        if path.is_file():
            try:
                st = torch.load(path, map_location="cpu", weights_only=True)
                if int(st.pop("gen")) == g and torch.equal(st.pop("key"), self.key):
                    return {k: v.to(self.device) for k, v in st.items()}
            except Exception:  # a torn or foreign file: rebuild it below
                pass
        b = self.make_batch(g)
        self.folder.mkdir(parents=True, exist_ok=True)
        st = {k: v.detach().cpu() for k, v in b.items()}
        st["gen"], st["key"] = torch.tensor(g), self.key
        atomic_write(path, lambda tmp: torch.save(st, tmp))
        return b

    def clear(self):
        """Delete the slots (at the end of a run: gigabytes for a full-size config)."""
        shutil.rmtree(self.folder, ignore_errors=True)
