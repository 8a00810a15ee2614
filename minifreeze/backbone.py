"""One backbone, many tasks: load a base once and swap freeze deltas in and out of it, in place.

    backbone = Backbone("bundled:minilm")
    sst2 = backbone.use("runs/sst2/delta")      # the model, now the SST-2 classifier
    rt = backbone.use("runs/rt/delta")          # the same model object, now rotten_tomatoes

Only what a delta holds is swapped: before the next delta goes in, the tensors the last one replaced get
the base's values back, and a head with another number of labels gets its last layer resized. So the
frozen weights are loaded (and held in memory) once, and each task's logits equal its full export's.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import checkpoints, delta
from .errors import MinifreezeError
from .model import SequenceClassifier, load_model


class Backbone:
    def __init__(self, base: str | Path, **load_kwargs):
        self.model: SequenceClassifier = load_model(base, **load_kwargs).eval()
        self.saved: dict[str, object] = {}  # our name -> the base's tensor (or module) the delta replaced
        self.base_config, self.base_task = self.model.config, self.model.task
        self.current: Path | None = None

    def use(self, folder: str | Path, trust_base: bool = False) -> SequenceClassifier:
        """The model with the delta in `folder` applied (and the previous one taken out first)."""
        delta.check_base(folder, self.model.source, trust_base)
        task = delta.read_record(folder)["task"]
        if task["pooling"] != self.model.pooling:
            raise MinifreezeError(
                f"delta {folder} has {task['pooling']} pooling, this backbone {self.model.pooling}"
            )
        self.restore()
        model, table = self.model, checkpoints.name_table(self.model.config, self.model.pooling)
        id2label = {int(i): label for i, label in task["id2label"].items()}
        params = dict(model.named_parameters())
        for key in delta.read_record(folder)["keys"]:
            name = table.get(key.removesuffix(delta.MASK).removesuffix(delta.INDEX))
            if name is not None and name not in self.saved:
                self.saved[name] = params[name].detach().clone()
        if len(id2label) != model.config.num_labels:
            self.resize_head(len(id2label))
        model.config = model.config.with_labels(len(id2label), id2label)
        delta.apply_delta(model, folder)
        self.current = Path(folder)
        return model

    def resize_head(self, num_labels: int) -> None:
        """Give the head's last layer `num_labels` outputs (the delta fills it); the base's layer is kept."""
        head = self.model.head
        attr = "out_proj" if hasattr(head, "out_proj") else "classifier"
        old = getattr(head, attr)
        self.saved.setdefault(f"head.{attr}", old)
        setattr(head, attr, nn.Linear(old.in_features, num_labels).to(old.weight.device, old.weight.dtype))

    def restore(self) -> None:
        """Put the base back where the current delta changed it."""
        for name, module in self.saved.items():
            if isinstance(module, nn.Module):
                setattr(self.model.head, name.split(".")[1], module)
        params = dict(self.model.named_parameters())
        for name, value in self.saved.items():
            if not isinstance(value, nn.Module) and params[name].shape == value.shape:
                params[name].data.copy_(value)
        self.model.config, self.model.task = self.base_config, self.base_task
        self.saved, self.current = {}, None
