"""The sweep record: the JSON a sweep leaves in the store (``sweeps`` table; docs/maxq.md).

:class:`SweepRecord` is built up while the sweep runs and saved after every measurement, so a
killed sweep keeps what it measured and ``--resume`` can continue it. Its :meth:`body_json`
is the schema-1 record::

    {"schema_version": 1, "kind": "infergy-maxq-sweep", "sweep_id", "status",
     "simulated", "created_unix_ns", "updated_unix_ns", "spec", "objective", "source",
     "plan": {"axes", "grid_points", "expected_measurements", "estimated_s", ...},
     "gpus": [...], "auto_batch_size", "idle_window", "journal", "restore",
     "points": [...], "baseline", "search": {"measurements", "grid_points"},
     "pareto": {"throughput_power", "latency_energy"}, "recommendation", "problems"}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from infergy.core.trace import Window
from infergy.daemon.maxq_points import PointEntry, entry_from_json, entry_json
from infergy.daemon.maxq_record import (
    RECORD_KIND,
    RECORD_SCHEMA,
    baseline_of,
    conclude,
    point_json,
    recommendation_json,
)
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import InfergyError
from infergy.maxq.control import PowerLimitConstraints
from infergy.maxq.journal import Journal, current_owner
from infergy.maxq.plan import Axes
from infergy.maxq.points import Objective
from infergy.maxq.recommend import Constraints


class SweepRecord:
    """A sweep's record while it runs (see the module docstring).

    Args:
        sweep_id: the sweep.
        spec: what it sweeps.
        resume: a stored record to continue (its points, auto batch and problems are kept).
    """

    def __init__(self, sweep_id: str, spec: MaxqSpec, resume: Mapping[str, Any] | None) -> None:
        self.sweep_id = sweep_id
        self.spec = spec
        self.status = "planned"
        self.created_unix_ns = time.time_ns()
        self.entries: list[PointEntry] = []
        self.problems: list[str] = []
        self.auto_batch_size: int | None = None
        self.source: str | None = None
        self.simulated = spec.backend == "sim"
        self.workloads_prepared = 0
        self.prepare_s = 0.0
        self.body: dict[str, Any] = {"plan": None, "gpus": [], "journal": None, "restore": None}
        self.default_power_limit_w: float | None = None
        self._conclusion: dict[str, Any] = {"recommendation": None, "pareto": None}
        me = current_owner()
        self.owner = {"pid": me.pid, "start_ticks": me.start_ticks, "boot_id": me.boot_id}
        """The process writing it: a ``running`` record whose owner is gone was killed."""
        if resume is not None:
            self.created_unix_ns = int(resume.get("created_unix_ns") or self.created_unix_ns)
            self.entries = [entry_from_json(p) for p in resume.get("points") or []]
            self.entries = [e for e in self.entries if e.role != "baseline-end"]
            self.problems = [*resume.get("problems", []), "resumed"]
            self.auto_batch_size = resume.get("auto_batch_size")
            self.source = resume.get("source")

    # -- while it runs -------------------------------------------------------------------------

    def set_plan(
        self,
        *,
        axes: Axes,
        grid_points: int,
        expected: int,
        estimated_s: float,
        point_duration_s: float,
        warmup_s: float,
        settle_s: float,
        idle_s: float,
        changes_settings: bool,
        gpus: list[dict[str, Any]],
        constraints: PowerLimitConstraints | None,
        simulated: bool,
    ) -> None:
        """The plan, as ``--dry-run`` prints it."""
        self.simulated = self.simulated or simulated
        self.default_power_limit_w = None if constraints is None else constraints.default_w
        self.body["gpus"] = gpus
        self.body["plan"] = {
            "axes": {
                "power_limits_w": list(axes.power_limits_w),
                "sm_clocks_mhz": list(axes.sm_clocks_mhz),
                "mem_clocks_mhz": list(axes.mem_clocks_mhz),
                "batch_sizes": list(axes.batch_sizes),
                "precisions": list(axes.precisions),
            },
            "search": self.spec.search,
            "grid_points": grid_points,
            "expected_measurements": expected,
            "baselines": 2,
            "estimated_s": estimated_s,
            "point_duration_s": point_duration_s,
            "warmup_s": warmup_s,
            "settle_s": settle_s,
            "idle_s": idle_s,
            "changes_settings": changes_settings,
            "power_limit_range_w": None
            if constraints is None
            else [constraints.min_w, constraints.max_w],
            "default_power_limit_w": self.default_power_limit_w,
            "auto_batch_size": self.auto_batch_size,
            "simulated": self.simulated,
        }

    def base_batch_size(self, spec: MaxqSpec) -> int | None:
        """The baseline's batch, ``auto`` resolved (``None``: the run's default)."""
        base = spec.base_batch_size()
        if base == "auto":
            if self.auto_batch_size is None:
                msg = "the batch size auto was not resolved"
                raise InfergyError(msg)
            return self.auto_batch_size
        return None if base is None else int(base)

    def journaled(self, journal: Journal) -> None:
        """The restore journal was written (before the first change)."""
        self.body["journal"] = {
            "path": str(journal.path),
            "created_unix_ns": journal.created_unix_ns,
            "original": [
                {"uuid": e.uuid, "label": e.label, "settings": e.settings.describe()}
                for e in journal.entries
            ],
        }

    def restored(self, gpus: list[str] | None, error: str | None) -> None:
        """The end of the sweep's changes: restored and verified, or why not."""
        self.body["restore"] = {"verified": error is None, "gpus": gpus or [], "error": error}
        if error is not None:
            self.problems.append(f"restore failed: {error}")

    def stopped(self, err: InfergyError) -> None:
        """The sweep ended early (kept: every point measured so far)."""
        self.problems.append(f"stopped: {err}" + (f" ({err.hint})" if err.hint else ""))

    def set_idle(self, window: Window) -> None:
        """The one idle baseline of the sweep."""
        self.body["idle_window"] = {"start_unix_ns": window.start_ns, "end_unix_ns": window.end_ns}

    def entry(self, role: str) -> PointEntry | None:
        """The first entry of a role (a resumed sweep reuses its start baseline)."""
        return next((e for e in self.entries if e.role == role), None)

    def add(self, entry: PointEntry, objective: Objective) -> None:
        """A finished measurement."""
        self.entries.append(entry)
        self.simulated = self.simulated or bool(entry.measured and entry.measured.simulated)

    def add_aborted(self, index: int, role: str, run_id: str, point: dict[str, Any] | None) -> None:
        """The measurement cut short by a cancellation (its run is stored as aborted)."""
        self.entries.append(
            PointEntry(index, role, run_id, point or {}, "aborted", ["interrupted"])
        )

    def entry_json(self, entry: PointEntry, objective: Objective) -> dict[str, Any]:
        """An entry as ``points[]`` holds it, with its objective value."""
        value = None if entry.measured is None else objective.value(entry.measured)
        return entry_json(entry, value)

    def conclude(self, objective_name: str, constraints: Constraints) -> None:
        """The recommendation and the fronts from every usable measurement so far."""
        rec, fronts, problems = conclude(
            self.entries, objective_name=objective_name, constraints=constraints
        )
        self.problems += [p for p in problems if p not in self.problems]
        self._conclusion = {
            "recommendation": recommendation_json(rec),
            "pareto": fronts,
        }

    # -- the record ----------------------------------------------------------------------------

    def body_json(self) -> dict[str, Any]:
        """The schema-1 record (see the module docstring)."""
        from infergy.maxq.points import objective as find  # noqa: PLC0415

        obj = find(self.spec.objective)
        baseline = baseline_of(self.entries)
        points = [self.entry_json(e, obj) for e in self.entries]
        measured = sum(1 for e in self.entries if e.role == "point")
        return {
            "schema_version": RECORD_SCHEMA,
            "kind": RECORD_KIND,
            "sweep_id": self.sweep_id,
            "status": self.status,
            "simulated": self.simulated,
            "created_unix_ns": self.created_unix_ns,
            "updated_unix_ns": time.time_ns(),
            "spec": self.spec.model_dump(mode="json"),
            "objective": {
                "name": obj.name,
                "unit": obj.unit,
                "higher_is_better": obj.higher_is_better,
            },
            "source": self.source,
            "owner": self.owner,
            "auto_batch_size": self.auto_batch_size,
            **self.body,
            "points": points,
            "baseline": None
            if baseline is None
            else {
                "samples_per_second": baseline.samples_per_second,
                "average_power_w": baseline.average_power_w,
                "objective": None if (v := obj.value(baseline)) is None else v[0],
                "objective_uncertainty": None if v is None else v[1],
                "point": point_json(baseline.point),
            },
            "search": {
                "strategy": self.spec.search,
                "measurements": measured,
                "grid_points": (self.body.get("plan") or {}).get("grid_points"),
                "workloads_prepared": self.workloads_prepared,
                "prepare_s": self.prepare_s,
            },
            **self._conclusion,
            "problems": self.problems,
        }
