"""Tiny random causal LMs for tests: a BPE tokenizer trained on the fly and a 2-layer Llama or GPT-2.

Nothing is downloaded; a model is built and saved with ``save_pretrained`` in a second.
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "You are a movie ranker. Rank the 12 candidates by how well they match the user's taste.",
    "Watched: The Silent Harbor (2001), Golden Kingdom (1999), Lost River (1987), Iron Summit.",
    "Answer with the numbers 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 one per line. [3, 1, 2]",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_model(folder: Path, arch: str, chat: bool) -> Path:
    """A random ``arch`` (``"llama"`` or ``"gpt2"``) model and its tokenizer saved in ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 10, trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    if chat:
        hf_tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
            bos_token_id=1, eos_token_id=2, pad_token_id=3,
        ))
    else:
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(hf_tok), n_embd=32, n_layer=2, n_head=2, n_positions=512,
            bos_token_id=1, eos_token_id=2, pad_token_id=3,
        ))
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder
