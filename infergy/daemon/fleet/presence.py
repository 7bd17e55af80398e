"""Who is on the broker: the nodes' retained ``status``, read into one view per node.

A node's status (:mod:`infergy.daemon.node_status`) is JSON with ``state`` ``online`` or
``offline`` (the last will, or a clean stop). An ``online`` status is *stale* when its
heartbeat (``t_unix_s``, republished every ``status_interval_s``) is more than
:data:`STALE_HEARTBEATS` intervals old: the node or its link is hung without the broker having
noticed yet. A node of an infergy before the fleet schema says the bare text ``online`` /
``offline``: it is shown, with no version (never called stale: it sends no heartbeat).

Drift: the version and the config digest most nodes share are the fleet's; a node with
another is marked (``version``, ``config``), so a comparison across nodes says when they did
not measure alike.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

NodeState = Literal["online", "stale", "offline"]
STALE_HEARTBEATS = 3
"""An online status older than this many heartbeat intervals is stale."""
STALE_SLACK_S = 10.0
"""Added to the stale bound: clocks of the node and the controller may differ by this much."""


@dataclass(frozen=True)
class NodeView:
    """One node as its latest ``status`` shows it.

    Attributes:
        node: the node's name (its topic level).
        state: ``online``, ``stale`` or ``offline``.
        body: the status object (``{"state": ...}`` only, for a node of an older infergy).
        legacy: the status was the bare text of an infergy before the fleet schema.
    """

    node: str
    state: NodeState
    body: Mapping[str, Any] = field(default_factory=dict)
    legacy: bool = False

    @property
    def version(self) -> str | None:  # noqa: D102
        return _text(self.body.get("version"))

    @property
    def config_digest(self) -> str | None:  # noqa: D102
        return _text(self.body.get("config_digest"))

    @property
    def seen_unix_s(self) -> float | None:
        """When the node last stamped its status (``None``: a will, or an older infergy)."""
        return _number(self.body.get("t_unix_s"))

    @property
    def gpus(self) -> list[Mapping[str, Any]]:  # noqa: D102
        gpus = self.body.get("gpus")
        return [g for g in gpus if isinstance(g, Mapping)] if isinstance(gpus, list) else []

    def job(self, run_id: str) -> Mapping[str, Any] | None:
        """The node's entry for the job ``run_id`` in its recent ``jobs``, if listed."""
        jobs = self.body.get("jobs")
        for job in jobs if isinstance(jobs, list) else []:
            if isinstance(job, Mapping) and job.get("run_id") == run_id:
                return job
        return None


def parse_status(
    node: str, payload: bytes, *, now_unix_s: float, stale_after_s: float | None = None
) -> NodeView | None:
    """The view of a node from its ``status`` payload (``None``: empty, i.e. a cleared topic).

    Args:
        node: the node's topic level.
        payload: the retained message.
        now_unix_s: the controller's clock.
        stale_after_s: how old an online status may be (``None``: from the node's own
            ``status_interval_s``, :data:`STALE_HEARTBEATS` of them, plus :data:`STALE_SLACK_S`).
    """
    if not payload:
        return None
    text = payload.decode("utf-8", errors="replace").strip()
    if text in ("online", "offline"):
        return NodeView(node, text, {"state": text}, legacy=True)  # type: ignore[arg-type]
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("state") not in ("online", "offline"):
        return NodeView(node, "offline", {"state": "offline", "reason": "unreadable status"})
    if body["state"] == "offline":
        return NodeView(node, "offline", body)
    seen = _number(body.get("t_unix_s"))
    if stale_after_s is None:
        interval = _number(body.get("status_interval_s")) or 30.0
        stale_after_s = STALE_HEARTBEATS * interval + STALE_SLACK_S
    stale = seen is not None and now_unix_s - seen > stale_after_s
    return NodeView(node, "stale" if stale else "online", body)


def split_topic(topic: str, root: str) -> tuple[str, str] | None:
    """``(node, rest)`` of ``<root>/<node>/<rest>``; ``None`` for other topics."""
    prefix = f"{root}/"
    if not topic.startswith(prefix):
        return None
    node, _, rest = topic[len(prefix) :].partition("/")
    return (node, rest) if node and rest and not node.startswith("_") else None


def match_nodes(patterns: Sequence[str], nodes: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(matched nodes, patterns matching none)``: shell-style patterns (``edge-*``, ``gpu?``).

    Each pattern may be a comma-separated list; matching is case-sensitive, like topics.
    """
    names = sorted(set(nodes))
    wanted = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    matched: dict[str, None] = {}
    unknown = []
    for pattern in wanted:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            unknown.append(pattern)
        matched |= dict.fromkeys(hits)
    return sorted(matched), unknown


def drift(views: Iterable[NodeView]) -> dict[str, list[str]]:
    """Per node, what differs from what most nodes have: ``version`` and/or ``config``.

    Only nodes that say both (not older infergy nodes) count. On a tie the smallest value is
    the fleet's, so the marking is deterministic.
    """
    known = [v for v in views if v.version is not None]
    out: dict[str, list[str]] = {v.node: [] for v in known}
    for what, key in (("version", "version"), ("config", "config_digest")):
        counts = Counter(str(v.body.get(key)) for v in known)
        if len(counts) < 2:
            continue
        fleet = min(counts, key=lambda value: (-counts[value], value))
        for v in known:
            if str(v.body.get(key)) != fleet:
                out[v.node].append(what)
    return out


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
