"""A model's chat template, rendered on the client: for endpoints that take raw text (``/v1/completions``).

A chat endpoint applies the served model's template itself; a completions endpoint scores exactly
the text it is sent, so a score-mode API ranker renders the template here, from the same source the
hf backend reads (a GGUF header, or a tokenizer folder / hub id), with transformers' own renderer.
The result equals ``tokenizer.apply_chat_template(..., add_generation_prompt=True)`` (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from promptopt.errors import RankerError
from promptopt.llm.model_files import locate_model, read_gguf_header


class ChatTemplate:
    """A Jinja chat template with its special tokens.

    Args:
        template: The Jinja source (``tokenizer.chat_template``).
        special_tokens: ``bos_token`` / ``eos_token`` texts the template may use.
        name: The model it came from, without a path (for logs).
    """

    def __init__(self, template: str, special_tokens: Mapping[str, str], name: str) -> None:
        self.template = template
        self.special_tokens = dict(special_tokens)
        self.name = name

    @property
    def sha256(self) -> str:
        """A short hash of the template (the API ranker's identity holds it)."""
        return hashlib.sha256(self.template.encode()).hexdigest()[:16]

    @classmethod
    def from_model(cls, model: str, gguf_file: str | None = None, *, offline: bool = True) -> ChatTemplate:
        """The chat template of a packaged model, a ``.gguf`` file, a tokenizer folder or a cached hub id.

        A GGUF file's template is read from its header (no tokenizer is built).

        Raises:
            RankerError: The model cannot be found, or has no chat template.
        """
        location = locate_model(model, gguf_file)
        if location.gguf_path is not None:
            header = read_gguf_header(location.gguf_path)
            template, tokens = header.chat_template, header.special_tokens or {}
        else:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(location.source, local_files_only=offline)
            except (OSError, ValueError) as exc:
                raise RankerError(
                    f"ranker.tokenizer {model!r}: cannot load its tokenizer ({exc.__class__.__name__}); "
                    "give a folder with tokenizer files, a cached hub id, a .gguf file or a packaged model"
                ) from None
            template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
            tokens = {
                k: str(getattr(tokenizer, k)) for k in ("bos_token", "eos_token") if getattr(tokenizer, k)
            }
        if not template:
            raise RankerError(f"ranker.tokenizer {model!r} has no chat template: remove ranker.tokenizer "
                              "to score the plain prompt")
        return cls(template, tokens, location.name)

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        """The conversation as the model reads it, ending with the assistant's turn opened."""
        import jinja2
        from transformers.utils.chat_template_utils import render_jinja_template

        def render(conversation: list[dict[str, str]]) -> str:
            rendered, _ = render_jinja_template(
                conversations=[conversation], chat_template=self.template, add_generation_prompt=True,
                **self.special_tokens,
            )
            return str(rendered[0])

        try:
            return render([{"role": role, "content": content} for role, content in messages])
        except jinja2.TemplateError:
            if len(messages) == 1:
                raise
            # Some chat templates reject a system role: send every message as one user turn (as hf does).
            return render([{"role": "user", "content": "\n\n".join(content for _, content in messages)}])
