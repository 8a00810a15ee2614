"""`python -m minifreeze.inspect`: its numbers add up, agree with profiling, and show what freezing does."""

from __future__ import annotations

import json

import pytest

import minifreeze
from minifreeze import cli
from minifreeze.config import config_from_dict
from minifreeze.inspect import main, random_batch, report, training_step
from minifreeze.profiling import saved_bytes

B, T = 3, 12  # small: every test here builds a model and runs a real step

# Tiny random configs of the three families, odd sizes on purpose (see conftest.TINY for the parity ones).
FAMILIES = {
    "bert": dict(
        model_type="bert", vocab_size=97, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=40,
    ),
    "roberta": dict(
        model_type="roberta", vocab_size=97, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=40, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1,
    ),
    "distilbert": dict(model_type="distilbert", vocab_size=97, dim=24, n_layers=3, n_heads=2, hidden_dim=40),
}  # fmt: skip


def check_invariants(rep: dict, model) -> None:
    """What must hold for every report: rows add up, the prefix saves nothing, AdamW is two moments."""
    rows = rep["rows"]
    for row in rows:
        assert row["trainable"] + row["frozen"] == row["params"], row["module"]
        assert row["adamw_bytes"] == 2 * row["grad_bytes"], row["module"]  # fp32 model: 2 fp32 moments
        if row["runs"] == "no_grad":
            assert row["saved_bytes"] == 0 and row["grad_bytes"] == 0, row["module"]
    assert sum(r["runs"] == "no_grad" for r in rows) == model.encoder.frozen_blocks
    assert rep["total"]["params"] == sum(p.numel() for p in model.parameters())
    for key, total in rep["total"].items():
        assert total == sum(r[key] for r in rows), key


def same_step_saved_bytes(model) -> int:
    """profiling.saved_bytes of the step inspect runs (same model, same freeze, same batch)."""
    inputs = random_batch(model, B, T)
    return saved_bytes(lambda: training_step(model, inputs), list(model.parameters()))


@pytest.fixture
def tiny():
    return minifreeze.random_model("tiny")


def test_rows_per_module_and_totals(tiny):
    rep = report(tiny, "2", B, T)
    names = [r["module"] for r in rep["rows"]]
    assert names == ["embeddings", "layer 0", "layer 1", "layer 2", "layer 3", "pooler", "head", "loss"]
    assert [r["runs"] for r in rep["rows"]][:4] == ["no_grad", "no_grad", "no_grad", "autograd"]
    check_invariants(rep, tiny)
    assert rep["total"]["trainable"] == sum(p.numel() for p in tiny.parameters() if p.requires_grad)
    assert all(r["saved_bytes"] > 0 for r in rep["rows"][3:])  # every module with autograd keeps something
    assert rep["total"]["saved_bytes"] == same_step_saved_bytes(tiny)


def test_random_mask_frees_no_gradient_memory(tiny):
    """random:P trains a fraction of the elements, but gradients and AdamW moments are whole tensors."""
    rep = report(tiny, "random:0.5", B, T)
    check_invariants(rep, tiny)
    embeddings = rep["rows"][0]
    assert 0.4 < embeddings["trainable"] / embeddings["params"] < 0.6
    assert embeddings["grad_bytes"] == embeddings["weight_bytes"]
    assert rep["total"]["saved_bytes"] == same_step_saved_bytes(tiny)


def test_requires_grad_freezing_prunes_only_without_trainable_embeddings(tiny):
    """The doc's claim: autograd prunes a frozen bottom by itself, unless something below it trains."""
    frozen_bottom = report(tiny, "2", B, T, mode="requires_grad")
    assert all(r["runs"] == "autograd" for r in frozen_bottom["rows"])
    assert [r["saved_bytes"] for r in frozen_bottom["rows"][:3]] == [0, 0, 0]
    trainable_embeddings = report(tiny, r"regex:embeddings|layers\.[23]\.|head", B, T, mode="requires_grad")
    assert all(r["saved_bytes"] > 0 for r in trainable_embeddings["rows"][:3])
    check_invariants(trainable_embeddings, tiny)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("spec", ["1", "top:1", "bitfit"])
def test_three_families(family, spec):
    model = minifreeze.random_model(config_from_dict(dict(FAMILIES[family], num_labels=3)))
    rep = report(model, spec, B, T)
    check_invariants(rep, model)
    assert ("pooler" in [r["module"] for r in rep["rows"]]) == (family == "bert")
    assert rep["total"]["saved_bytes"] == same_step_saved_bytes(model)


def test_textbook_attention_and_mean_pooling_run(capsys):
    main(["--model", "tiny", "--attention", "textbook", "--pooling", "mean", "--batch", "2", "--seq", "8"])
    out = capsys.readouterr().out
    assert "attention textbook, pooling mean" in out and "\nloss " in out and "\ntotal " in out


def test_compare_json_shows_the_deeper_freeze_smaller(capsys):
    main(["--model", "tiny", "--freeze", "-1", "--compare", "3", "--batch", "2", "--seq", "8", "--json"])
    shallow, deep = json.loads(capsys.readouterr().out)["reports"]
    assert (shallow["freeze"]["spec"], deep["freeze"]["spec"]) == ("-1", "3")
    for key in ("saved_bytes", "grad_bytes", "adamw_bytes", "trainable"):
        assert deep["total"][key] < shallow["total"][key], key
    main(["--model", "tiny", "--freeze", "-1", "--compare", "3", "--batch", "2", "--seq", "8"])
    assert "B / A: saved for backward x" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "./no/such/folder"], "does not exist"),
        (["--model", "tiny", "--freeze", "9"], "N must be in -1..4"),
        (["--model", "tiny", "--compare", "top:x"], "cannot read the number"),
        (["--model", "tiny", "--seq", "600"], "exceeds the model's 512 positions"),
    ],
)
def test_bad_input_is_one_line_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, [*argv, "--batch", "1"])
    assert exit_info.value.code == 2  # like every other command
    text = capsys.readouterr().err.strip()
    assert text.startswith("error: ") and message in text and "\n" not in text


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines to the terminal width
    assert "(default: 32)" in out and "(default: bundled:minilm)" in out and "--compare" in out


def test_bundled_minilm(minilm_dir):
    model = minifreeze.load_model("bundled:minilm")
    rep = report(model, "3", B, T)
    check_invariants(rep, model)
    assert rep["layers"] == 6 and rep["freeze"]["prefix_blocks"] == 4
    assert rep["total"]["trainable"] == sum(r["params"] for r in rep["rows"][4:])
    assert rep["total"]["saved_bytes"] == same_step_saved_bytes(model)


def test_byte_counts_read_in_binary_units():
    from minifreeze.runtime import human_bytes

    sizes = [512, 1536, 20 * 2**20, 1.25 * 2**30]
    assert [human_bytes(n) for n in sizes] == ["512 B", "1.5 KiB", "20.0 MiB", "1.25 GiB"]
