"""The reference's windowed no-repeat n-gram guard, batched, with a record of when it intervened.

Semantics of the official ``process/ngram_norepeat.py``: only generated ids count (the prompt is
ignored); when the last ``ngram_size - 1`` generated ids already occurred as the start of an
n-gram that begins within the last ``window_size`` generated positions, the ids that completed
those n-grams are banned for the next step, except whitelisted ids (``<td>``, ``</td>``, so
tables with many empty cells are not cut). The transformers built-in window processor differs: it
also looks at prompt ids and has no whitelist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


class WindowedNoRepeatNGram:
    """A transformers logits processor for one left-padded batch.

    ``prompt_width`` is the padded prompt length (generated ids start there in every row).
    ``limits`` are the rows' own new-token limits; a row past its limit or past EOS no longer
    counts towards :attr:`intervened`, which marks rows whose greedy choice the guard overrode.
    """

    def __init__(
        self,
        *,
        ngram_size: int,
        window_size: int,
        whitelist: Iterable[int],
        prompt_width: int,
        limits: Sequence[int],
        eos_id: int,
    ) -> None:
        if ngram_size < 2:
            raise ValueError(f"ngram_size must be at least 2, got {ngram_size}")
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.ngram_size = ngram_size
        self.window_size = window_size
        self.whitelist = sorted(set(whitelist))
        self.prompt_width = prompt_width
        self.eos_id = eos_id
        self._limits = torch.tensor(list(limits), dtype=torch.long)
        self.intervened = torch.zeros(len(limits), dtype=torch.bool)

    def banned_tokens(self, generated: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """A ``[rows, vocab_size]`` mask of the ids the guard forbids after ``generated``."""
        rows, length = generated.shape
        banned = torch.zeros(rows, vocab_size + 1, dtype=torch.bool, device=generated.device)
        start = max(0, length - self.window_size)
        if length - start < self.ngram_size:
            return banned[:, :vocab_size]
        ngrams = generated[:, start:].unfold(1, self.ngram_size, 1)
        prefix = generated[:, length - self.ngram_size + 1 :]
        repeats = (ngrams[:, :, :-1] == prefix[:, None, :]).all(dim=-1)
        followers = torch.where(repeats, ngrams[:, :, -1], vocab_size)
        banned.scatter_(1, followers, True)
        banned = banned[:, :vocab_size]
        if self.whitelist:
            banned[:, self.whitelist] = False
        return banned

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_width :]
        banned = self.banned_tokens(generated, scores.shape[-1])
        greedy_choice_banned = banned.gather(1, scores.argmax(dim=-1, keepdim=True)).squeeze(1)
        if self._limits.device != generated.device:
            self._limits = self._limits.to(generated.device)
            self.intervened = self.intervened.to(generated.device)
        active = (generated != self.eos_id).all(dim=1) & (generated.shape[1] < self._limits)
        self.intervened |= greedy_choice_banned & active
        return scores.masked_fill(banned, float("-inf"))
