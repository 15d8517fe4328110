"""A local transformers causal LM as the frozen ranker: candidate log-likelihood scoring or generation.

Two modes:

* ``score`` (the fast all-ranking mode): the log-likelihood of each candidate's *label* given the
  prompt, ``log p(label | prompt) = sum_t log p(label_t | prompt, label_<t)``, where the label is
  the candidate's number in the shown list (``index`` output, per the request's ``index_base``),
  ``[`` + that number (``json``) or its displayed text (``title``). The candidates are ranked by
  score, ties broken by shown order. No text is generated and nothing needs parsing. The prompt
  is run once; its key/value cache is shared by the continuations of every multi-token label.
* ``generate``: the chat template when the tokenizer has one, left padding, greedy (temperature
  0) or sampled decoding, batched; the text is grounded to the candidates by
  :func:`promptopt.llm.parsing.parse_ranking`.

torch and transformers are imported when a ranker is built, never when this module is imported.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from promptopt.errors import RankerError
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, TokenUsage

logger = logging.getLogger(__name__)

HFMode = Literal["score", "generate"]
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is present, else ``"cpu"``; other values as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network access."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def model_fingerprint(model_name_or_path: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """A machine-independent ``(name, sha256 of the config)`` for identities and cache keys.

    A local folder is named by its last path component (its absolute path differs between
    machines); a hub id is kept as is. The hash covers the model config with volatile keys
    (``_name_or_path``, ``transformers_version``) removed, so the same weights' config gives the
    same hash wherever it is stored.
    """
    path = Path(model_name_or_path).expanduser()
    name = path.resolve().name if path.is_dir() else model_name_or_path
    stable = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return name, digest[:16]


class HFRanker:
    """Ranks candidates with a local ``AutoModelForCausalLM`` (a hub id or a local folder).

    Args:
        model_name_or_path: A hub id (must already be in the local Hugging Face cache when offline)
            or a folder written by ``save_pretrained``.
        mode: ``"score"`` (label log-likelihood) or ``"generate"`` (free text, then parsing).
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device string.
        dtype: ``"auto"`` (bfloat16 on CUDA when supported, float16 on other CUDA, float32 on CPU),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        batch_size: Sequences per forward pass (prompts, label continuations or generations).
        max_new_tokens: Generation length limit (``generate`` mode).
        temperature: 0 decodes greedily; > 0 samples (``generate`` mode).
        seed: Seed of sampling; with the request's ``sample_id`` it makes repeated samples differ.
        local_files_only: Never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        length_normalize: ``score`` mode: average the label's token log-probabilities instead of
            summing them (fairer between long and short titles).

    Raises:
        RankerError: The model cannot be found or loaded (the message says how to fetch it).
        ValueError: A bad mode, dtype, batch size, token limit or temperature.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        mode: HFMode = "score",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
        local_files_only: bool | None = None,
        length_normalize: bool = False,
    ) -> None:
        if mode not in ("score", "generate"):
            raise ValueError(f"mode must be 'score' or 'generate', got {mode!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.mode: HFMode = mode
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.length_normalize = length_normalize
        self.device = resolve_device(device)
        self._load(model_name_or_path, dtype, hub_offline() if local_files_only is None else local_files_only)

    # ------------------------------------------------------------------ loading
    def _load(self, name: str, dtype: str, offline: bool) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype == "auto":
            if self.device.startswith("cuda"):
                torch_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                torch_dtype = torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
            self.model = AutoModelForCausalLM.from_pretrained(
                name, dtype=torch_dtype, local_files_only=offline
            )
        except (OSError, ValueError) as exc:
            where = "a local folder" if Path(name).expanduser().exists() else "the Hugging Face cache"
            hint = (
                f"download it first on a machine with internet (`hf download {name}`) or pass a local "
                "folder written by save_pretrained"
                if offline or not Path(name).expanduser().exists()
                else "check that the folder holds config.json, the weights and the tokenizer files"
            )
            mode = " (offline: HF_HUB_OFFLINE is set)" if offline else ""
            raise RankerError(
                f"hf ranker: cannot load model {name!r} from {where}{mode}: {hint} "
                f"({exc.__class__.__name__})"
            ) from None
        self.model.to(self.device)
        self.model.eval()
        self.torch_dtype = torch_dtype
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        template = getattr(self.tokenizer, "chat_template", None)
        self.has_chat_template = bool(template)
        # The chat template shapes every prompt, so its content (hashed) is part of the identity.
        self.chat_template_hash = (
            hashlib.sha256(str(template).encode()).hexdigest()[:16] if template else None
        )
        params = inspect.signature(self.model.forward).parameters
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (inputs and outputs).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # Only the last positions' logits are read: skip the vocabulary projection of the rest.
        self._keeps_logits = "logits_to_keep" in params
        self._kv_reuse = True
        config = self.model.config.to_dict()
        self.model_name, self.config_hash = model_fingerprint(name, config)

    @property
    def identity(self) -> Mapping[str, Any]:
        """Backend kind, model name, a hash of its config and the decoding parameters (no paths)."""
        ident: dict[str, Any] = {
            "backend": "hf",
            "model": self.model_name,
            "config_sha256": self.config_hash,
            "mode": self.mode,
            "dtype": str(self.torch_dtype).removeprefix("torch."),
            "chat_template": self.chat_template_hash,
        }
        if self.mode == "generate":
            ident.update(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
            if self.temperature > 0:
                ident["seed"] = self.seed
        else:
            ident["length_normalize"] = self.length_normalize
        return ident

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, request: RankRequest) -> str:
        """The text fed to the model: the chat template with a generation prompt, or the plain prompt."""
        if not self.has_chat_template:
            return request.prompt.rstrip() + "\n"
        import jinja2

        messages = [{"role": role, "content": content} for role, content in request.messages]
        try:
            return str(self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            ))
        except jinja2.TemplateError:
            if len(messages) == 1:
                raise
            # Some chat templates reject a system role: send every message as one user turn.
            merged = "\n\n".join(content for _, content in request.messages)
            return str(self.tokenizer.apply_chat_template(
                [{"role": "user", "content": merged}], tokenize=False, add_generation_prompt=True
            ))

    def _encode(self, text: str) -> list[int]:
        # A chat-templated text already holds its special tokens.
        return list(self.tokenizer(text, add_special_tokens=not self.has_chat_template)["input_ids"])

    @staticmethod
    def label(request: RankRequest, position: int) -> str:
        """The text whose likelihood scores the candidate shown at ``position`` (0-based)."""
        number = position + request.index_base
        if request.output_format == "title":
            return request.candidate_texts[position]
        if request.output_format == "json":
            return f"[{number}"
        return str(number)

    # ------------------------------------------------------------------ ranking
    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Rank every request's candidates (batched forward passes)."""
        if not requests:
            return []
        if self.mode == "score":
            return self._rank_score(list(requests))
        return self._rank_generate(list(requests))

    def score(self, requests: Sequence[RankRequest]) -> list[list[float]]:
        """Label log-likelihood of every candidate, in shown order, per request.

        Shapes: returns ``len(requests)`` lists of ``len(request.candidate_ids)`` floats.
        """
        return self._score(requests)[0]

    def _score(self, requests: Sequence[RankRequest]) -> tuple[list[list[float]], list[int]]:
        """Scores per request and candidate, and each request's prompt length in tokens."""
        prompts = [self._encode(self.prompt_text(r)) for r in requests]
        labels = [
            [list(ids) for ids in self.tokenizer(
                [self.label(r, j) for j in range(len(r.candidate_ids))], add_special_tokens=False
            )["input_ids"]]
            for r in requests
        ]
        for r, request_labels in zip(requests, labels):
            empty = [j for j, ids in enumerate(request_labels) if not ids]
            if empty:
                raise RankerError(
                    f"hf ranker: the label of candidate {r.candidate_ids[empty[0]]} tokenizes to nothing; "
                    "use output_format 'index'"
                )
        scores: list[list[float]] = [[0.0] * len(r.candidate_ids) for r in requests]
        for chunk in self._chunks(prompts, labels):
            self._score_chunk(chunk, prompts, labels, scores)
        if self.length_normalize:
            for row, request_labels in zip(scores, labels):
                for j, ids in enumerate(request_labels):
                    row[j] /= len(ids)
        return scores, [len(p) for p in prompts]

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

        pad = int(self.tokenizer.pad_token_id)
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
        pad = int(self.tokenizer.pad_token_id)
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

        pad = int(self.tokenizer.pad_token_id)
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

    def _rank_score(self, requests: list[RankRequest]) -> list[RankResponse]:
        import numpy as np

        start = time.perf_counter()
        scores, prompt_lengths = self._score(requests)
        latency = (time.perf_counter() - start) / len(requests)
        responses = []
        for request, row, prompt_tokens in zip(requests, scores, prompt_lengths):
            order = np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")
            n = len(request.candidate_ids)
            responses.append(RankResponse(
                ranking=tuple(request.candidate_ids[k] for k in order),
                usage=TokenUsage(prompt_tokens=prompt_tokens),
                latency_s=latency,
                parse=ParseStats(found=n),
                scores=tuple(row),
            ))
        return responses

    def _rank_generate(self, requests: list[RankRequest]) -> list[RankResponse]:
        import torch

        responses: list[RankResponse] = []
        pad = int(self.tokenizer.pad_token_id)
        for start in range(0, len(requests), self.batch_size):
            part = requests[start:start + self.batch_size]
            texts = [self.prompt_text(r) for r in part]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.has_chat_template).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad}
            if self.temperature > 0:
                kwargs.update(do_sample=True, temperature=self.temperature)
            else:
                kwargs.update(do_sample=False)
            # Sampling is seeded by the batch's sample ids (repeated samples differ) on a forked RNG,
            # so the process-wide torch RNG is left as it was.
            devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(self.seed * 1_000_003 + sum(r.sample_id for r in part) * 7919 + start)
                out = self.model.generate(**enc, **kwargs)
            latency = (time.perf_counter() - t0) / len(part)
            width = enc["input_ids"].shape[1]
            eos = self.tokenizer.eos_token_id
            for row, request in enumerate(part):
                new = out[row, width:].tolist()
                completion = [t for t in new if t != pad]
                if eos is not None and eos in new:
                    completion = new[:new.index(eos) + 1]
                text = self.tokenizer.decode(completion, skip_special_tokens=True)
                ranking, stats, unparsed = parse_ranking(text, request)
                responses.append(RankResponse(
                    ranking=ranking,
                    raw_text=text,
                    usage=TokenUsage(int(enc["attention_mask"][row].sum()), len(completion)),
                    latency_s=latency,
                    parse=stats,
                    unparsed=unparsed,
                ))
        return responses
