"""Exporting a run builds no ranker: no API key for an openai run, no model load for an hf run.

Each test trains a real (tiny) run with its backend, then takes away what building that ranker
needs (the key and the server; the model files) and exports: the prompt book must come out whole,
with the identity of the ranker that trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from promptopt.config import load_config
from promptopt.errors import RankerError
from promptopt.experiments import assembly, pipeline
from promptopt.experiments.rundir import RunDir
from promptopt.export import PromptBook
from promptopt.testing import LocalOpenAIServer
from tests.experiments.conftest import tiny_config_dict

KEY_ENV = "PROMPTOPT_EXPORT_TEST_KEY"


def _train(tmp_path: Path, ranker: dict) -> tuple[Path, dict]:
    raw = tiny_config_dict(tmp_path, ranker=ranker, policy={"kind": "mlp"},
                           ppo={"total_timesteps": 64, "n_steps": 8, "checkpoint_every": 32},
                           eval={"selectors": ["random", "policy"]})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    run_dir = pipeline.train(load_config(path), tmp_path / "run")
    return run_dir, RunDir(run_dir).read_metrics()["ranker"]


def _check_book(run_dir: Path, identity: dict) -> None:
    book = PromptBook.load(pipeline.export(run_dir))
    config = load_config(RunDir(run_dir).config)
    _data, split, _catalog, _problem = assembly.build_problem(config)
    assert len(book) == len(split.train) + len(split.val) + len(split.test)
    assert book.to_dict()["ranker"] == identity
    assert all(choice["prompt"] for choice in book.to_dict()["users"])


@pytest.mark.slow
def test_an_openai_run_exports_without_its_key_or_its_server(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-export-test")
    with LocalOpenAIServer() as server:
        run_dir, identity = _train(tmp_path, {"backend": "openai", "model": "local-test",
                                              "base_url": server.base_url, "api_key_env": KEY_ENV})
        assert server.stats().succeeded > 0, "training really ranked through the server"
    monkeypatch.delenv(KEY_ENV)
    config = load_config(RunDir(run_dir).config)
    with pytest.raises(RankerError, match=KEY_ENV):  # what exporting used to need
        assembly.make_run_ranker(config, assembly.build_problem(config)[3])
    _check_book(run_dir, identity)


def _tiny_causal_lm(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<unk>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Rank the candidates 1 2 3 for the user who watched films"] * 5, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                     eos_token="<pad>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(hf_tok), n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_an_hf_run_exports_without_loading_its_model(tmp_path) -> None:
    model = _tiny_causal_lm(tmp_path / "model")
    run_dir, identity = _train(tmp_path, {"backend": "hf", "model": str(model), "hf_mode": "score",
                                          "device": "cpu", "dtype": "float32", "batch_size": 8})
    assert identity["backend"] == "hf"
    shutil.rmtree(model)  # loading the model now fails: exporting must not try
    config = load_config(RunDir(run_dir).config)
    with pytest.raises(RankerError):
        assembly.make_run_ranker(config, assembly.build_problem(config)[3])
    _check_book(run_dir, identity)
