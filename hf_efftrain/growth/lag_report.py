"""What a LAG selection found, and how it is reported: the ranking, a Markdown table, a JSON file, a plot.

Kept apart from the training harness (:mod:`~hf_efftrain.growth.lag`) so that reading, comparing or re-plotting a
finished selection (``hf-efftrain lag``'s output, a grown model's card) needs no Trainer. Example::

    result = LagResult.load("lag_report/")
    result.pick; print(result.to_markdown())
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from hf_efftrain.atomic import atomic_file, write_json, write_text
from hf_efftrain.errors import GrowthError
from hf_efftrain.extras import pyplot


@dataclass
class LagResult:
    """Losses of every candidate at step 0 and each lag, the training curves, and the ranking."""

    lag_steps: int
    lags: list[int]
    metric: str
    losses: dict[str, dict[int, float]]
    train_curves: dict[str, list[float]]
    ranking: list[str] = field(default_factory=list)
    recipes: dict[str, dict] = field(default_factory=dict)

    @property
    def pick(self) -> str:
        """The candidate with the lowest loss at ``lag_steps``."""
        return self.ranking[0]

    def table(self) -> list[dict]:
        """One row per candidate in ranking order: rank, name, loss at step 0 and at each lag."""
        rows = []
        for rank, name in enumerate(self.ranking, start=1):
            row = {"rank": rank, "candidate": name}
            row.update({f"step {s}": round(self.losses[name][s], 4) for s in sorted(self.losses[name])})
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        """The ranking as a Markdown table, with a line naming the metric and the pick."""
        rows = self.table()
        columns = list(rows[0])
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
        note = f"Ranked by {self.metric} at step {self.lag_steps}; pick: **{self.pick}**."
        return note + "\n\n" + "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """PNG of the early training curves (and held-out points) of every candidate."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7, 4))
        for name in self.ranking:
            (line,) = ax.plot(range(len(self.train_curves[name])), self.train_curves[name], alpha=0.5, label=name)
            steps = sorted(self.losses[name])
            ax.plot(steps, [self.losses[name][s] for s in steps], "o-", color=line.get_color())
        ax.axvline(self.lag_steps, color="grey", linestyle=":")
        ax.set_xlabel("step after growth")
        ax.set_ylabel("loss (line: train, dots: " + self.metric + ")")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return Path(path)

    def to_dict(self) -> dict:
        """A JSON-able dict (step keys as strings, as JSON requires); :meth:`load` turns them back into ints."""
        data = dataclasses.asdict(self)
        data["losses"] = {n: {str(s): v for s, v in d.items()} for n, d in self.losses.items()}
        return data

    def save(self, folder: str | Path) -> Path:
        """``lag_report.json``, ``lag_report.md`` and ``lag_curves.png`` in ``folder``."""
        folder = Path(folder)
        write_json(folder / "lag_report.json", self.to_dict())
        write_text(folder / "lag_report.md", "# LAG selection\n\n" + self.to_markdown())
        self.plot(folder / "lag_curves.png")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LagResult:
        """Read ``lag_report.json`` back; a missing or foreign file is a :class:`GrowthError` naming it."""
        path = Path(folder) / "lag_report.json"
        if not path.is_file():
            raise GrowthError(f"{path} not found: pass a folder written by `hf-efftrain lag`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["losses"] = {n: {int(s): v for s, v in d.items()} for n, d in data["losses"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise GrowthError(f"{path}: not a LAG report ({type(err).__name__}: {err})") from None
