"""Test-only probes that `lightning fit` subprocesses load by class path (``tests/`` on their PYTHONPATH): a callback
that records what each rank trains on and validates, and a checkpoint writer that records its saves and can kill
its own process half way through one. Shared by tests/test_resume.py and tests/test_ddp.py."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from zoo.systems.checkpointing import AtomicCheckpointIO


def digest(tensor: torch.Tensor) -> str:
    """A short SHA-256 of a tensor's bytes (equal digests: bit-identical tensors)."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def read_records(path: str | Path) -> list[dict]:
    """The JSON lines of a probe file ([] when it does not exist)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class BatchRecorder(Callback):
    """Appends to ``<prefix>.rank<r>.jsonl``: for each training batch its step (1-based), keys, digests of ``lq`` and
    ``gt`` and of the torch RNG state the step starts with; after each validation the logged ``val/*`` values."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _file(self, trainer: Any) -> Path:
        return Path(f"{self.prefix}.rank{trainer.global_rank}.jsonl")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: dict, batch_idx: int) -> None:
        _append(self._file(trainer), {"step": trainer.global_step + 1, "epoch": trainer.current_epoch,
                                      "batch_idx": batch_idx, "key": list(batch["key"]), "lq": digest(batch["lq"]),
                                      "gt": digest(batch["gt"]), "rng": digest(torch.get_rng_state())})

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        _append(self._file(trainer), {"val_at": trainer.global_step, "metrics": metrics})


class ProbeCheckpointIO(AtomicCheckpointIO):
    """:class:`AtomicCheckpointIO` that logs each save (rank, file name, step) to ``log`` and, with ``kill_at_step``,
    SIGKILLs its process after writing half of the ``kill_name`` checkpoint of that step into the temporary file."""

    def __init__(self, log: str | None = None, kill_at_step: int | None = None, kill_name: str = "last.ckpt") -> None:
        super().__init__()
        self.log, self.kill_at_step, self.kill_name = log, kill_at_step, kill_name

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if self.log:
            _append(Path(self.log), {"rank": _rank(), "pid": os.getpid(), "name": Path(path).name,
                                     "step": checkpoint["global_step"]})
        self._step = checkpoint["global_step"]
        super().save_checkpoint(checkpoint, path, storage_options)

    def _write(self, checkpoint: dict[str, Any], file: Any) -> None:
        if self._step == self.kill_at_step and Path(file.name).name.startswith(f".{self.kill_name}."):
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            data = buffer.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            os.fsync(file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        super()._write(checkpoint, file)
