"""The run's scalar log: ``scalars.csv`` (long format ``step,tag,value``) plus TensorBoard when installed."""

from __future__ import annotations

import csv
import os

__all__ = ["Scalars"]


class Scalars:
    """Appends to ``<folder>/scalars.csv``; a resumed run (``resume_step``) first drops the rows after its
    checkpoint, so the log continues where the checkpoint did."""

    def __init__(self, folder: str, resume_step: int | None):
        self.resume_step = resume_step
        self.path = os.path.join(folder, "scalars.csv")
        if resume_step is not None and os.path.isfile(self.path):  # drop rows after the checkpoint
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if len(r) == 3 and int(r[0]) <= resume_step]
        else:
            rows = []
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "tag", "value"])
            w.writerows(rows)
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        self.tb = None
        try:  # optional dependency
            from torch.utils.tensorboard import SummaryWriter

            kw = {} if self.resume_step is None else {"purge_step": self.resume_step + 1}
            self.tb = SummaryWriter(os.path.join(folder, "tb"), **kw)
        except Exception:  # noqa: BLE001 - tensorboard not installed
            self.tb = None

    def log(self, step: int, values: dict) -> None:
        for k, v in values.items():
            self._w.writerow([step, k, f"{float(v):.7g}"])
            if self.tb is not None:
                self.tb.add_scalar(k, float(v), step)
        self._f.flush()

    def close(self):
        self._f.close()
        if self.tb is not None:
            self.tb.close()
