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

Loading (hub id, folder, GGUF file or packaged model; device and dtype) is
:mod:`promptopt.llm.hf_loading`; the label scoring itself is :mod:`promptopt.llm.hf_scoring`.
torch and transformers are imported when a ranker is built, never when this module is imported.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from promptopt.errors import RankerError
from promptopt.llm.grounding import Grounder
from promptopt.llm.hf_loading import DTYPES, hub_offline, load_causal_lm, model_fingerprint, resolve_device
from promptopt.llm.hf_scoring import LabelScorer
from promptopt.llm.model_files import ModelLocation, locate_model
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.score_labels import LENGTH_NORMALIZE, LengthNormalize, label_text, normalizes, plain_prompt
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, TokenUsage

logger = logging.getLogger(__name__)

__all__ = ["HFRanker", "hub_offline", "model_fingerprint", "resolve_device"]

HFMode = Literal["score", "generate"]
PromptStyle = Literal["chat", "plain"]


class HFRanker:
    """Ranks candidates with a local ``AutoModelForCausalLM`` (hub id, folder, GGUF file or packaged model).

    Args:
        model_name_or_path: A hub id (must already be in the local Hugging Face cache when offline),
            a folder written by ``save_pretrained``, a ``.gguf`` file, or a packaged model name
            (``smollm2-135m-instruct``, see :data:`promptopt.llm.model_files.PACKAGED_MODELS`).
        gguf_file: The GGUF file's name when ``model_name_or_path`` is the folder holding it.
        grounder: ``generate`` mode: grounds answer items that match no candidate
            (:mod:`promptopt.llm.grounding`); None counts them as hallucinated.
        mode: ``"score"`` (label log-likelihood) or ``"generate"`` (free text, then parsing).
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device string.
        dtype: ``"auto"`` (bfloat16 on CUDA when supported, float16 on other CUDA; on CPU bfloat16
            only where a start-up probe shows it faster, else float32; the log says which),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        batch_size: Sequences per forward pass (prompts, label continuations or generations).
        max_new_tokens: Generation length limit (``generate`` mode).
        temperature: 0 decodes greedily; > 0 samples (``generate`` mode).
        seed: Seed of sampling; with the request's ``sample_id`` it makes repeated samples differ.
        local_files_only: Never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        length_normalize: ``score`` mode: which labels' token log-probabilities are averaged instead of
            summed: ``"titles"`` (title labels: a summed score favours short, generic titles),
            ``"all"`` or ``"none"``.
        prompt_style: ``"chat"``: the tokenizer's chat template when it has one; ``"plain"``: the
            plain prompt plus a newline (what a completions endpoint gets).

    Raises:
        RankerError: The model cannot be found or loaded (the message says how to fetch it).
        ValueError: A bad mode, dtype, batch size, token limit, temperature, normalisation or style.
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
        length_normalize: LengthNormalize = "titles",
        prompt_style: PromptStyle = "chat",
        gguf_file: str | None = None,
        grounder: Grounder | None = None,
    ) -> None:
        _check_settings(mode, length_normalize, max_new_tokens, temperature)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prompt_style not in ("chat", "plain"):
            raise ValueError(f"prompt_style must be 'chat' or 'plain', got {prompt_style!r}")
        self.mode: HFMode = mode
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.length_normalize: LengthNormalize = length_normalize
        self.prompt_style: PromptStyle = prompt_style
        self.grounder = grounder
        self.device = resolve_device(device)
        location = locate_model(model_name_or_path, gguf_file)
        self._load(location, dtype, hub_offline() if local_files_only is None else local_files_only)

    # ------------------------------------------------------------------ loading
    def _load(self, location: ModelLocation, dtype: str, offline: bool) -> None:
        loaded = load_causal_lm(location, dtype, self.device, offline)
        self.model, self.tokenizer, self.torch_dtype = loaded.model, loaded.tokenizer, loaded.dtype
        self.dtype_reason = loaded.dtype_reason
        self.model_name, self.config_hash = loaded.name, loaded.config_sha256
        self.gguf_hash = loaded.gguf_sha256
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        template = getattr(self.tokenizer, "chat_template", None)
        self.has_chat_template = bool(template) and self.prompt_style == "chat"
        # The chat template shapes every prompt, so its content (hashed) is part of the identity.
        self.chat_template_hash = (
            hashlib.sha256(str(template).encode()).hexdigest()[:16] if self.has_chat_template else None
        )
        self.scorer = LabelScorer(self.model, int(self.tokenizer.pad_token_id), self.device, self.batch_size)

    def variant(
        self,
        *,
        mode: HFMode | None = None,
        length_normalize: LengthNormalize | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        dtype: str | None = None,
    ) -> HFRanker:
        """A ranker sharing this one's loaded model and tokenizer with other scoring or decoding settings.

        Loading a model takes seconds to minutes (a GGUF file is dequantised); comparing modes on the
        same model should not pay it twice. The variant's identity reflects its own settings. A
        different ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"``) copies the weights once.

        Raises:
            ValueError: A bad mode, normalisation, token limit, temperature or dtype.
        """
        other = copy.copy(self)
        if dtype is not None and dtype != str(self.torch_dtype).removeprefix("torch."):
            import torch

            if dtype not in DTYPES or dtype == "auto":
                raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
            other.torch_dtype = getattr(torch, dtype)
            other.dtype_reason = "set by variant(dtype=...)"
            other.model = copy.deepcopy(self.model).to(other.torch_dtype)
            other.scorer = LabelScorer(
                other.model, int(self.tokenizer.pad_token_id), self.device, self.batch_size
            )
        other.mode = self.mode if mode is None else mode
        other.length_normalize = self.length_normalize if length_normalize is None else length_normalize
        other.max_new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        other.temperature = self.temperature if temperature is None else float(temperature)
        _check_settings(other.mode, other.length_normalize, other.max_new_tokens, other.temperature)
        return other

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
        if self.gguf_hash is not None:
            ident["gguf_sha256"] = self.gguf_hash
        if self.mode == "generate":
            ident.update(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
            if self.temperature > 0:
                ident["seed"] = self.seed
            if self.grounder is not None:
                ident["grounding"] = getattr(self.grounder, "identity", type(self.grounder).__name__)
        else:
            ident["length_normalize"] = self.length_normalize
        return ident

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, request: RankRequest) -> str:
        """The text fed to the model: the chat template with a generation prompt, or the plain prompt."""
        if not self.has_chat_template:
            return plain_prompt(request)
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
        return label_text(request, position)

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
        scores = self.scorer.score(prompts, labels)
        for request, row, request_labels in zip(requests, scores, labels):
            if self.normalizes(request):
                for j, ids in enumerate(request_labels):
                    row[j] /= len(ids)
        return scores, [len(p) for p in prompts]

    def normalizes(self, request: RankRequest) -> bool:
        """Whether ``request``'s label scores are averaged over their tokens (see ``length_normalize``)."""
        return normalizes(self.length_normalize, request)

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
                ranking, stats, unparsed = parse_ranking(text, request, self.grounder)
                responses.append(RankResponse(
                    ranking=ranking,
                    raw_text=text,
                    usage=TokenUsage(int(enc["attention_mask"][row].sum()), len(completion)),
                    latency_s=latency,
                    parse=stats,
                    unparsed=unparsed,
                ))
        return responses


def _check_settings(mode: str, length_normalize: str, max_new_tokens: int, temperature: float) -> None:
    if mode not in ("score", "generate"):
        raise ValueError(f"mode must be 'score' or 'generate', got {mode!r}")
    if length_normalize not in LENGTH_NORMALIZE:
        raise ValueError(f"length_normalize must be 'none', 'titles' or 'all', got {length_normalize!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
