"""Label log-likelihood scoring for the hf backend's ``score`` mode.

``log p(label | prompt) = sum_t log p(label_t | prompt, label_<t)``, for every candidate's label at
once: prompts are left-padded and run ``batch_size`` at a time; the first label token's probability
comes from the prompt pass itself, and multi-token labels continue from the prompt's key/value cache
(recomputing the prompt where a model's cache cannot be reused).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

logger = logging.getLogger(__name__)


class LabelScorer:
    """Sums label-token log-probabilities given each prompt with a loaded causal LM.

    Args:
        model: A transformers causal LM in eval mode on ``device``.
        pad_token_id: The tokenizer's padding id.
        device: The model's torch device string.
        batch_size: Rows per forward pass (prompts, or label continuations).
    """

    def __init__(self, model: Any, pad_token_id: int, device: str, batch_size: int) -> None:
        self.model = model
        self.pad = int(pad_token_id)
        self.device = device
        self.batch_size = batch_size
        params = inspect.signature(model.forward).parameters
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (inputs and outputs).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # Only the last positions' logits are read: skip the vocabulary projection of the rest.
        self._keeps_logits = "logits_to_keep" in params
        self._kv_reuse = True

    def score(self, prompts: list[list[int]], labels: list[list[list[int]]]) -> list[list[float]]:
        """Summed log-probability of every label given its prompt.

        Shapes: ``prompts[i]`` token ids; ``labels[i][j]`` the token ids of request ``i``'s candidate
        ``j`` (non-empty) -> ``scores[i][j]``.
        """
        scores: list[list[float]] = [[0.0] * len(request_labels) for request_labels in labels]
        for chunk in self._chunks(prompts, labels):
            self._score_chunk(chunk, prompts, labels, scores)
        return scores

    def _chunks(self, prompts: list[list[int]], labels: list[list[list[int]]]) -> list[list[int]]:
        """Group requests so neither the prompts nor the label continuations exceed ``batch_size`` rows."""
        chunks: list[list[int]] = []
        current: list[int] = []
        rows = 0
        for i in range(len(prompts)):
            need = sum(1 for ids in labels[i] if len(ids) > 1)
            if current and (len(current) >= self.batch_size or rows + need > self.batch_size):
                chunks.append(current)
                current, rows = [], 0
            current.append(i)
            rows += need
        if current:
            chunks.append(current)
        return chunks

    def _score_chunk(
        self,
        chunk: list[int],
        prompts: list[list[int]],
        labels: list[list[list[int]]],
        scores: list[list[float]],
    ) -> None:
        """Fill ``scores`` for the requests in ``chunk``.

        Shapes: prompts are left-padded to ``(B, P)``; multi-token labels become ``R`` rows of
        ``(R, L)`` continuations attending to their prompt's cached keys/values ``(R, heads, P, d)``.
        """
        import torch

        pad = self.pad
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, i in enumerate(chunk):
            ids[b, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[b, width - len(prompts[i]):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        multi = [(b, i, j) for b, i in enumerate(chunk) for j, lab in enumerate(labels[i]) if len(lab) > 1]
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=bool(multi) and self._kv_reuse, **self._last_logits(1))
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
            for b, i in enumerate(chunk):
                for j, lab in enumerate(labels[i]):
                    scores[i][j] = float(first[b, lab[0]])
            if not multi:
                return
            cache = getattr(out, self._cache_kw, None) if self._kv_reuse else None
            if cache is not None:
                try:
                    rest = self._continue_with_cache(cache, mask, multi, labels)
                except (RuntimeError, TypeError, ValueError, AttributeError, IndexError) as exc:
                    logger.warning("hf ranker: key/value cache reuse failed (%s); recomputing prompts", exc)
                    self._kv_reuse = False
                    rest = self._continue_without_cache(chunk, prompts, multi, labels)
            else:
                rest = self._continue_without_cache(chunk, prompts, multi, labels)
        for (_, i, j), value in zip(multi, rest):
            scores[i][j] += value

    def _continue_with_cache(
        self, cache: Any, prompt_mask: Any, multi: list[tuple[int, int, int]], labels: list[list[list[int]]]
    ) -> list[float]:
        """Log-probability of label tokens 2..L given the prompt's cache and the earlier label tokens.

        Rows go ``batch_size`` at a time, each pass with a fresh cache gathered from the chunk's
        prompt rows (the chunk's cache itself stays intact).
        """
        import torch
        from transformers import DynamicCache

        layers = list(cache)
        pad = self.pad
        values: list[float] = []
        for begin in range(0, len(multi), self.batch_size):
            part = multi[begin:begin + self.batch_size]
            rows = torch.tensor([b for b, _, _ in part], device=self.device)
            conts = [labels[i][j] for _, i, j in part]
            length = max(len(c) for c in conts) - 1
            inputs = torch.full((len(part), length), pad, dtype=torch.long)
            targets = torch.full((len(part), length), -1, dtype=torch.long)
            cmask = torch.zeros((len(part), length), dtype=torch.long)
            for r, cont in enumerate(conts):
                inputs[r, :len(cont) - 1] = torch.tensor(cont[:-1])
                targets[r, :len(cont) - 1] = torch.tensor(cont[1:])
                cmask[r, :len(cont) - 1] = 1
            inputs, targets, cmask = inputs.to(self.device), targets.to(self.device), cmask.to(self.device)
            gathered = DynamicCache(
                ddp_cache_data=[(k.index_select(0, rows), v.index_select(0, rows)) for k, v, *_ in layers],
                config=self.model.config,
            )
            pmask = prompt_mask.index_select(0, rows)
            positions = pmask.sum(-1, keepdim=True) + torch.arange(length, device=self.device)
            out = self.model(
                input_ids=inputs,
                attention_mask=torch.cat([pmask, cmask], dim=1),
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: gathered},
            )
            values.extend(self._sum_target_logprobs(out.logits, targets))
        return values

    def _continue_without_cache(
        self,
        chunk: list[int],
        prompts: list[list[int]],
        multi: list[tuple[int, int, int]],
        labels: list[list[list[int]]],
    ) -> list[float]:
        """As :meth:`_continue_with_cache`, recomputing each row's prompt (``batch_size`` rows a pass)."""
        import torch

        pad = self.pad
        values: list[float] = []
        for start in range(0, len(multi), self.batch_size):
            part = multi[start:start + self.batch_size]
            seqs = [(prompts[chunk[b]], labels[i][j]) for b, i, j in part]
            width = max(len(p) + len(c) - 1 for p, c in seqs)
            ids = torch.full((len(part), width), pad, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            targets = torch.full((len(part), width), -1, dtype=torch.long)
            for r, (p, c) in enumerate(seqs):
                seq = p + c[:-1]
                off = width - len(seq)
                ids[r, off:] = torch.tensor(seq)
                mask[r, off:] = 1
                # Position t predicts token t + 1: the label's tokens 2..L follow prompt + label[:t].
                targets[r, width - len(c) + 1:] = torch.tensor(c[1:])
            ids, mask, targets = ids.to(self.device), mask.to(self.device), targets.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(len(c) for _, c in seqs) - 1
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                             **self._last_logits(keep))
            values.extend(self._sum_target_logprobs(out.logits, targets[:, -out.logits.shape[1]:]))
        return values

    def _last_logits(self, n: int) -> dict[str, int]:
        """``logits_to_keep=n`` where the model supports it (the last ``n`` positions' logits)."""
        return {"logits_to_keep": n} if self._keeps_logits else {}

    @staticmethod
    def _sum_target_logprobs(logits: Any, targets: Any) -> list[float]:
        """Shapes: ``logits (R, L, V)``, ``targets (R, L)`` with -1 where nothing is scored -> ``R`` sums."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return [float(x) for x in torch.where(targets >= 0, picked, torch.zeros_like(picked)).sum(-1).cpu()]
