"""Per-run plots (matplotlib, PNG): power over time, per-query energy, latency.

The two histograms have log axes and log-spaced bins (a run's latencies span decades: on a
linear axis every query fell into one bin). Titles say only what the result knows.

Drawn from the same objects the store keeps (result, traces, query log), so ``infergy plot
RUN_ID`` redraws them identically from the store. An energy counter stored beside its samples
(``gpu0`` and ``gpu0.samples``) is drawn, and split between queries, as the analysis reported
it: anchored to its samples (:func:`plotted_traces`). Simulated sources are labelled SIMULATED
in every legend. matplotlib runs on the Agg backend: no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infergy.core.anchored_source import anchored_curves
from infergy.core.attribution import InFlight
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace, Window
from infergy.errors import InputError
from infergy.exporters.plots_llm import phase_figure

_HEADLINE = ("gpus", "gpu0", "ac", "cpu", "sim")
COUNTER_RATE_S = 0.1
"""A counter is shown as its rate over this many seconds (at least one update)."""


def draw_run_plots(
    run_dir: Path,
    result: Mapping[str, Any],
    traces: Mapping[str, Trace],
    queries: QueryLog | None,
) -> list[Path]:
    """Write ``power.png``, with a query log ``per_query_energy.png`` and ``latency.png``.

    A generative run adds ``llm_phases.png`` (:mod:`.plots_llm`).

    Raises:
        InputError: a file cannot be written.
    """
    import matplotlib as mpl  # noqa: PLC0415 (slow import, only where plots are drawn)

    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    run_dir.mkdir(parents=True, exist_ok=True)
    traces = plotted_traces(traces)
    window = Window(result["window"]["start_unix_ns"], result["window"]["end_unix_ns"])
    label = plot_title(result)
    written = []
    try:
        fig = _power_figure(plt, result, traces, window, label)
        written.append(_save(fig, run_dir / "power.png", plt))
        timeline = (result.get("generative") or {}).get("timeline")
        if timeline:
            series = {}
            for source, trace in sorted(traces.items()):
                t, w = power_series(trace)
                series[_legend(result, source)] = ((t - window.start_ns) / NS_PER_S, w)
            fig = phase_figure(plt, timeline, series, window.start_ns, label)
            written.append(_save(fig, run_dir / "llm_phases.png", plt))
        if queries is not None and len(queries):
            fig = _energy_figure(plt, result, traces, queries, window, label)
            if fig is not None:
                written.append(_save(fig, run_dir / "per_query_energy.png", plt))
            fig = _latency_figure(plt, queries, label, _row_unit(result))
            written.append(_save(fig, run_dir / "latency.png", plt))
    finally:
        plt.close("all")
    return written


def plotted_traces(traces: Mapping[str, Trace]) -> dict[str, Trace]:
    """The traces as drawn: each counter with stored samples replaced by its anchored curve."""
    return dict(traces) | {name: c.trace for name, c in anchored_curves(traces).items()}


def _save(fig: Any, path: Path, plt: Any) -> Path:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as err:
        msg = f"cannot write {path}: {err.strerror or err}"
        raise InputError(msg) from None
    finally:
        plt.close(fig)
    return path


def plot_title(result: Mapping[str, Any]) -> str:
    """The run as the plots name it: only what the result knows, never ``None``.

    An analysed recording knows no backend, model or batch: it is titled as such.
    """
    workload = "/".join(str(result[k]) for k in ("backend", "model") if result.get(k))
    parts = [str(result.get("run_id")), str(result.get("scenario") or "")]
    parts += [workload, str(result.get("precision") or "")]
    if result.get("batch_size") is not None:
        parts.append(f"batch {result['batch_size']}")
    if (result.get("provenance") or {}).get("command") == "analyze":
        parts.append("analysed recordings")
    parts.append(f"[{result.get('status')}]")
    return "  ".join(p for p in parts if p)


def log_histogram(ax: Any, values: np.ndarray, color: str) -> str | None:
    """A histogram on log axes with log-spaced bins.

    A run's queries span decades (a p99 100x the median put every query into one linear
    bin). Returns a note on what is not shown (values <= 0 have no place on a log axis).
    """
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    n_bins = min(80, max(10, int(np.sqrt(max(1, finite.size)))))
    if positive.size and positive.max() > positive.min():
        bins = np.geomspace(positive.min(), positive.max(), n_bins + 1)
        ax.hist(positive, bins=bins, color=color)
        ax.set_xscale("log")
    elif positive.size:  # one value: one bar
        ax.hist(positive, bins=1, color=color)
    ax.set_yscale("log")
    hidden = finite.size - positive.size
    return f"{hidden:,} queries <= 0 not shown" if hidden else None


def _legend(result: Mapping[str, Any], source: str) -> str:
    entry = result.get("power", {}).get(source) or {}
    sim = " (SIMULATED)" if entry.get("simulated") or entry.get("kind") == "sim" else ""
    return f"{source}{sim}"


def power_series(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """(t_ns, watts) to draw: values as they are, a counter as its rate."""
    t, v = trace.t_ns, trace.values
    if trace.semantics is not Semantics.COUNTER:
        return t, v
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size < 2:
        return t[:0], v[:0]
    step = max(1, int(COUNTER_RATE_S * NS_PER_S / max(1, np.median(np.diff(t)))))
    idx = np.arange(0, t.size, step)
    tt, vv = t[idx], v[idx]
    dv, dt = np.diff(vv), np.diff(tt) / NS_PER_S
    rate = np.where(dv >= 0, dv / np.where(dt > 0, dt, np.nan), np.nan)  # resets: no rate
    return tt[1:], rate


def _power_figure(
    plt: Any, result: Mapping[str, Any], traces: Mapping[str, Trace], window: Window, label: str
) -> Any:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    t0 = window.start_ns
    for source, trace in sorted(traces.items()):
        t, w = power_series(trace)
        style = "-" if trace.semantics is not Semantics.INTERVAL_MEAN else "steps-post"
        x = (t - t0) / NS_PER_S
        if style == "steps-post":
            ax.step(x, w, where="pre", lw=1, label=_legend(result, source))
        else:
            ax.plot(x, w, lw=0.8, label=_legend(result, source))
    ax.axvspan(0, window.duration_s, color="tab:green", alpha=0.08, label="measured window")
    idle = (result.get("provenance") or {}).get("idle_window")
    if idle:
        a = (idle["start_unix_ns"] - t0) / NS_PER_S
        b = (idle["end_unix_ns"] - t0) / NS_PER_S
        ax.axvspan(a, b, color="tab:gray", alpha=0.12, label="idle baseline")
        for source, entry in (result.get("power") or {}).items():
            if entry and entry.get("idle_watts") is not None and source in traces:
                ax.hlines(entry["idle_watts"], a, b, colors="k", lw=0.8, linestyles=":")
    ax.set_xlabel("time from window start (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _headline(result: Mapping[str, Any], traces: Mapping[str, Trace]) -> str | None:
    for name in _HEADLINE:
        if name in traces:
            return name
    return next(iter(sorted(traces)), None)


def _energy_figure(  # noqa: PLR0917 (a private drawing helper)
    plt: Any,
    result: Mapping[str, Any],
    traces: Mapping[str, Trace],
    queries: QueryLog,
    window: Window,
    label: str,
) -> Any | None:
    source = _headline(result, traces)
    if source is None:
        return None
    try:
        profile = PowerProfile.of(traces[source])
    except InputError:
        return None
    energy = InFlight.of(queries).apportion(profile, window)
    per_query_mj = energy.per_query_j * 1e3
    fig, ax = plt.subplots(figsize=(7, 4))
    _histogram_with_percentiles(ax, per_query_mj, "tab:orange")
    unit = _row_unit(result)
    ax.set_xlabel(f"energy per {unit}, {_legend(result, source)} (mJ, log scale)")
    ax.set_ylabel(f"{_PLURAL[unit]} (log scale)")
    ax.set_title(label, fontsize=9)
    return fig


def _histogram_with_percentiles(ax: Any, values: np.ndarray, color: str) -> None:
    note = log_histogram(ax, values, color)
    finite = values[np.isfinite(values)]
    if finite.size:
        for q, style in ((50, "-"), (90, "--"), (99, ":")):
            ax.axvline(np.percentile(finite, q), color="k", lw=0.8, ls=style, label=f"p{q}")
    if note:
        ax.plot([], [], " ", label=note)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


_PLURAL = {"batch": "batches", "query": "queries"}


def _row_unit(result: Mapping[str, Any]) -> str:
    """What a query-log row is: an Offline run's rows are batches of its one query."""
    return "batch" if (result.get("performance") or {}).get("batches") is not None else "query"


def _latency_figure(plt: Any, queries: QueryLog, label: str, unit: str = "query") -> Any:
    latency_ms = queries.latency_ns / 1e6
    fig, ax = plt.subplots(figsize=(7, 4))
    _histogram_with_percentiles(ax, latency_ms.astype(np.float64), "tab:blue")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel(f"{_PLURAL[unit]} (log scale)")
    ax.set_title(label, fontsize=9)
    return fig
