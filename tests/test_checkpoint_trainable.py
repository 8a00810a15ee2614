"""DIR/last holds only what trains: the frozen part is the base, loaded again (and its hash checked) on
--resume. These tests drive save_state/load_state directly on the toy model; the kill -9 and signal resume
tests in test_train.py run a frozen block end to end and demand bit-identical weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from minifreeze import MinifreezeError, freeze
from minifreeze.model import load_model
from minifreeze.optim import make_optimizer, make_scheduler
from minifreeze.resume import Progress, load_state, save_state


def trained_parts(folder, spec: str):
    model = load_model(folder, num_labels=2, reinit_head="mismatch")
    plan = freeze(model, spec)
    optimizer = make_optimizer(model, plan, lr=1e-2, weight_decay=0.01)
    scheduler = make_scheduler(optimizer, total_steps=10, warmup_steps=0)
    return model, (model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False))


def one_step(model, optimizer, scheduler) -> None:
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 8, 3]])
    torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1])).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("spec", ["1", "bitfit", "head"])
def test_last_holds_the_trainable_part_and_the_head_and_restores_the_whole_model(toy_model, tmp_path, spec):
    torch.manual_seed(0)
    model, trained = trained_parts(toy_model, spec)
    one_step(*trained[:3])
    save_state(tmp_path / "last", *trained, Progress(step=1))
    saved = load_file(str(tmp_path / "last" / "model.safetensors"))
    params = dict(model.named_parameters())
    assert set(saved) == {n for n, p in params.items() if p.requires_grad or n.startswith("head.")}
    assert len(saved) < len(params)  # the frozen layers are not in it
    torch.manual_seed(1)  # another fresh head: the checkpoint must put the trained one back
    again, parts = trained_parts(toy_model, spec)
    assert load_state(tmp_path / "last", *parts).step == 1
    for name, value in again.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_a_whole_model_checkpoint_from_before_still_resumes(toy_model, tmp_path):
    model, trained = trained_parts(toy_model, "1")
    save_state(tmp_path / "last", *trained, Progress(step=2))
    full = {n: p.detach() for n, p in model.named_parameters()}  # what round 1 wrote: every parameter
    save_file(full, str(tmp_path / "last" / "model.safetensors"))
    assert load_state(tmp_path / "last", *trained_parts(toy_model, "1")[1]).step == 2


def test_a_checkpoint_of_another_freeze_spec_is_refused(toy_model, tmp_path):
    _, trained = trained_parts(toy_model, "1")
    save_state(tmp_path / "last", *trained, Progress(step=1))
    with pytest.raises(MinifreezeError, match="different model or freeze spec; start a new --out"):
        load_state(tmp_path / "last", *trained_parts(toy_model, "0")[1])  # layer 0 trains but is not saved


def test_a_base_changed_since_the_checkpoint_is_refused(toy_model, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(toy_model, base)
    _, trained = trained_parts(base, "1")
    save_state(tmp_path / "last", *trained, Progress(step=1))
    other = load_model(base)
    with torch.no_grad():
        next(other.encoder.embeddings.parameters()).add_(1.0)  # frozen: the checkpoint lacks it
    other.save_pretrained(base)
    with pytest.raises(MinifreezeError) as error:
        load_state(tmp_path / "last", *trained_parts(base, "1")[1])
    assert "model.safetensors" in str(error.value) and "changed since the checkpoint" in str(error.value)
    assert "\n" not in str(error.value)
