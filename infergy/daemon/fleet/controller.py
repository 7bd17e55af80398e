"""Run a campaign: send one job to many nodes and follow it to their results, through the broker.

::

    campaign = Campaign(...); campaign.add_nodes(["edge-01", "edge-02"])
    done = await Controller(campaign, settings.mqtt, folder=out).run()

The controller subscribes to every node's ``status``, ``reply/+`` and ``runs`` (``maxq`` for a
sweep; their retained ``.../latest`` too), waits for the retained statuses (a barrier), sends
``cmd/run`` (or ``cmd/maxq``) to each online node and then reacts to messages and a ticker:

- a reply accepts (the run id is recorded, the node's deadline starts) or rejects the job;
- the node's status lists the job's state (queued, running, finished) and says when the node
  went offline (its last will) or came back;
- the result, matched to the node by run id (a second copy only counted), ends the node.

It never waits forever: no reply within ``accept_timeout_s``, no result by a node's deadline,
a job the node says ended without a result (after :data:`RESULT_GRACE_S`), and nodes that are
offline for ``offline_grace_s`` once every other node has finished, each end that node. If a
node rejects the job, the nodes that accepted it are sent ``cmd/cancel`` and the campaign
ends ``rejected`` (a comparison of nodes that ran different things is no comparison). The
state is saved after every change (:mod:`infergy.daemon.fleet.campaign`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from infergy.config.settings import MqttSettings
from infergy.daemon.fleet.campaign import (
    AWAITED_ON_RESUME,
    FINAL,
    RETRIED_ON_RESUME,
    Campaign,
    NodeRun,
)
from infergy.daemon.fleet.link import FleetLink
from infergy.daemon.fleet.presence import NodeView, match_nodes, parse_status, split_topic
from infergy.errors import BrokerError, FleetError

RESULT_GRACE_S = 30.0
"""After a node's status says the job ended, how long its result may take to arrive."""
TICK_S = 0.25
"""How often deadlines are checked."""
SEND_WINDOW = 64
"""Commands in flight at once while dispatching."""
_ENDED_WITHOUT = frozenset({"failed", "cancelled", "aborted"})
_log = logging.getLogger("infergy.fleet")


class CampaignObserver(Protocol):
    """Told what happens, one line per event (the console prints them)."""

    def event(self, node: str, what: str) -> None:
        """``node`` did ``what`` (``accepted run ...``, ``offline``...)."""


class _Quiet:
    def event(self, node: str, what: str) -> None:
        _log.info("%s: %s", node, what)


class Controller:
    """Drives one campaign to its end (see the module docstring).

    Args:
        campaign: the state (new, or loaded for a resume); updated in place and saved.
        mqtt: the broker, TLS and credentials (``[mqtt]``).
        folder: where the state, and each node's result (``results/<node>.json``), are kept.
        observer: told each event.
        clock: Unix time in seconds.
    """

    def __init__(
        self,
        campaign: Campaign,
        mqtt: MqttSettings,
        *,
        folder: Path,
        observer: CampaignObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.campaign = campaign
        self.mqtt = mqtt
        self.folder = folder
        self.observer = observer or _Quiet()
        self.clock = clock
        self.views: dict[str, NodeView] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._root = mqtt.topic_root
        self._ended_seen: dict[str, float] = {}
        self._cancels: dict[str, str] = {}  # cancel request id -> node
        self._cancel_replies: set[str] = set()
        self._dirty = False
        self._changed = asyncio.Event()
        self.link: FleetLink | None = None

    # -- the whole campaign --------------------------------------------------------------------

    async def run(self, *, resume: bool = False) -> Campaign:
        """Dispatch, follow, end; the campaign with its ``outcome`` set.

        Raises:
            BrokerError: the broker cannot be reached, refuses the credentials or is lost.
        """
        c = self.campaign
        self.link = link = FleetLink(
            self.mqtt, client_id=c.client_id, on_message=self._on_message, persistent=True
        )
        try:
            async with link:
                await link.subscribe(*self._filters())
                await link.sync()  # the retained statuses and results, and a resume's queue
                if not c.nodes:
                    self._match()
                await self._drive(resume=resume)
        except (FleetError, BrokerError):
            if all(n.phase in ("pending", "rejected", "cancelled") for n in c.nodes.values()):
                await link.forget()  # nothing is running for it: nothing stays subscribed
            raise
        if c.outcome != "incomplete":
            await link.forget()  # nothing stays subscribed or queued for this controller
        return c

    async def _drive(self, *, resume: bool) -> None:
        c = self.campaign
        if resume:
            self._reopen()
        await self._dispatch()
        await self._follow()
        if any(n.phase == "rejected" for n in c.nodes.values()):
            await self._cancel_accepted()
        c.outcome = _outcome(c)
        self._save()

    def _filters(self) -> list[str]:
        r = self._root
        kind = "maxq" if self.campaign.kind == "maxq" else "runs"
        return [f"{r}/+/status", f"{r}/+/reply/+", f"{r}/+/{kind}", f"{r}/+/{kind}/latest"]

    def _match(self) -> None:
        """A new campaign: its nodes are those seen on the broker that the patterns match.

        Raises:
            FleetError: a pattern matches no node seen.
        """
        c = self.campaign
        matched, unknown = match_nodes(c.patterns, self.views)
        if unknown or not matched:
            seen = ", ".join(sorted(self.views)[:20]) or "none"
            more = f" and {len(self.views) - 20} more" if len(self.views) > 20 else ""
            what = ", ".join(repr(p) for p in unknown) or repr(",".join(c.patterns))
            msg = f"no node on the broker at {c.broker} matches {what} (nodes seen: {seen}{more})"
            raise FleetError(msg, hint="infergy fleet status lists the nodes; patterns are globs")
        c.add_nodes(matched)

    def _reopen(self) -> None:
        """A resume: send again what was not accepted, wait again for what did not finish."""
        now = self.clock()
        for nr in self.campaign.nodes.values():
            if nr.phase in RETRIED_ON_RESUME:
                nr.phase, nr.errors = "pending", []
            elif nr.phase in AWAITED_ON_RESUME:
                nr.phase, nr.errors = "accepted", []
                nr.deadline_unix_s = now + self.campaign.deadline_s
                nr.offline_since_unix_s = None
                view = self.views.get(nr.node)
                if view is not None and view.state == "offline":
                    nr.offline_since_unix_s = now
        self._save()

    async def _dispatch(self) -> None:
        """Send the job to every pending node that is online; the others are unreachable."""
        assert self.link is not None
        c, now = self.campaign, self.clock()
        todo: list[NodeRun] = []
        for nr in c.nodes.values():
            if nr.phase != "pending":
                continue
            view = self.views.get(nr.node)
            if view is None or view.state != "online":
                nr.phase = "unreachable"
                nr.errors = [_why_unreachable(view, now)]
                self.observer.event(nr.node, f"not sent: {nr.errors[0]}")
                continue
            nr.phase, nr.sent_unix_s = "sent", now
            todo.append(nr)
        self._save()  # "sent" is on disk before any command leaves
        verb = "maxq" if c.kind == "maxq" else "run"
        for i in range(0, len(todo), SEND_WINDOW):
            window = todo[i : i + SEND_WINDOW]
            await asyncio.gather(*(
                self.link.publish(f"{self._root}/{nr.node}/cmd/{verb}",
                                  {"request_id": nr.request_id, **c.spec})
                for nr in window
            ))  # fmt: skip
        for nr in todo:
            self.observer.event(nr.node, f"sent cmd/{verb} ({nr.request_id})")

    async def _follow(self) -> None:
        """React to messages (``_on_message``) and the clock until every node has ended."""
        assert self.link is not None
        while True:
            self._tick(self.clock())
            if self._dirty:
                self._save()
            if self.link.lost is not None:
                hint = f"the state is saved: infergy fleet run --resume {self.folder}"
                raise BrokerError(self.link.lost, hint=hint)
            if self._finished():
                return
            await self._next_change()

    async def _next_change(self) -> None:
        """Wait for the next message that changed the campaign, or ``TICK_S`` at most."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TICK_S):
                await self._changed.wait()

    def _finished(self) -> bool:
        nodes = list(self.campaign.nodes.values())
        if any(n.phase == "sent" for n in nodes):
            return False
        if any(n.phase == "rejected" for n in nodes):
            return True  # every reply is in; the accepted ones are cancelled
        return all(n.phase in FINAL for n in nodes)

    async def _cancel_accepted(self) -> None:
        """A node rejected the job: call it off on the nodes that accepted it."""
        assert self.link is not None
        targets = [n for n in self.campaign.nodes.values() if n.phase == "accepted"]
        for nr in targets:
            rid = f"{nr.request_id}-x"
            self._cancels[rid] = nr.node
            assert nr.run_id is not None
            await self.link.publish(f"{self._root}/{nr.node}/cmd/cancel",
                                    {"request_id": rid, "run_id": nr.run_id})  # fmt: skip
        deadline = time.monotonic() + self.mqtt.timeout_s
        while len(self._cancel_replies) < len(targets) and time.monotonic() < deadline:
            await self._next_change()
        for nr in targets:
            nr.phase = "cancelled"
            nr.errors.append("cancelled: another node rejected the job")
            self.observer.event(nr.node, f"cancelled run {nr.run_id} (another node rejected it)")

    # -- the clock -----------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        c = self.campaign
        for nr in c.nodes.values():
            if nr.phase == "sent" and now - (nr.sent_unix_s or now) > c.accept_timeout_s:
                self._end(nr, "no_reply", f"no reply within {c.accept_timeout_s:g} s")
            elif nr.phase == "accepted" and nr.deadline_unix_s and now > nr.deadline_unix_s:
                self._end(nr, "timed_out", f"no result within {c.deadline_s:g} s of acceptance")
            elif nr.phase == "accepted" and now - self._ended_seen.get(nr.node, now) > (
                RESULT_GRACE_S
            ):
                why = f"the node says the job ended {nr.job_state} without a result"
                self._end(nr, "failed", why)
        active = [n for n in c.nodes.values() if n.phase in ("sent", "accepted")]
        if active and all(
            n.offline_since_unix_s is not None and now - n.offline_since_unix_s > c.offline_grace_s
            for n in active
        ):
            for nr in active:
                gone = now - (nr.offline_since_unix_s or now)
                self._end(nr, "lost", f"offline for {gone:.0f} s while running its job")

    def _end(self, nr: NodeRun, phase: str, why: str) -> None:
        nr.phase = phase  # type: ignore[assignment]
        nr.errors.append(why)
        nr.finished_unix_s = self.clock()
        self._dirty = True
        self.observer.event(nr.node, f"{phase.replace('_', ' ')}: {why}")

    # -- messages ------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parts = split_topic(topic, self._root)
        if parts is None:
            return
        node, rest = parts
        if rest == "status":
            view = parse_status(node, payload, now_unix_s=self.clock())
            if view is not None:
                self.views[node] = view
                self._on_status(view)
        elif rest.startswith("reply/"):
            self._on_reply(node, rest.removeprefix("reply/"), payload)
        elif rest in ("runs", "runs/latest", "maxq", "maxq/latest"):
            self._on_result(node, payload)
        self._changed.set()

    def _on_status(self, view: NodeView) -> None:
        nr = self.campaign.nodes.get(view.node)
        if nr is None:
            return
        nr.version, nr.config_digest = view.version, view.config_digest
        now = self.clock()
        if nr.phase in ("sent", "accepted"):
            if view.state == "offline" and nr.offline_since_unix_s is None:
                nr.offline_since_unix_s = now
                self._dirty = True
                reason = view.body.get("reason")
                self.observer.event(nr.node, f"went offline ({reason or 'status offline'})")
            elif view.state != "offline" and nr.offline_since_unix_s is not None:
                nr.offline_since_unix_s = None
                self._dirty = True
                self.observer.event(nr.node, "back online")
        job = view.job(nr.run_id) if nr.run_id else None
        if job is None or job.get("state") == nr.job_state:
            return
        nr.job_state = str(job.get("state"))
        self._dirty = True
        if nr.phase == "accepted":
            self.observer.event(nr.node, f"job {nr.job_state}")
            if nr.job_state in _ENDED_WITHOUT:
                self._ended_seen.setdefault(nr.node, now)
                if job.get("error"):
                    nr.errors.append(str(job["error"]))

    def _on_reply(self, node: str, request_id: str, payload: bytes) -> None:
        if request_id in self._cancels:
            self._cancel_replies.add(request_id)
            return
        nr = self.campaign.nodes.get(node)
        if nr is None or nr.request_id != request_id or nr.phase not in ("sent", "pending"):
            return
        body = _json(payload)
        now = self.clock()
        if body.get("ok") is True:
            run_id = body.get("run_id") or body.get("sweep_id")
            nr.phase, nr.run_id, nr.accepted_unix_s = "accepted", str(run_id), now
            nr.deadline_unix_s = now + self.campaign.deadline_s
            self.observer.event(node, f"accepted: {self.campaign.kind} {run_id}")
        else:
            nr.phase, nr.finished_unix_s = "rejected", now
            nr.errors = [_error_line(e) for e in body.get("errors") or [{"msg": "refused"}]]
            self.observer.event(node, f"rejected the job: {'; '.join(nr.errors)}")
        self._dirty = True

    def _on_result(self, node: str, payload: bytes) -> None:
        nr = self.campaign.nodes.get(node)
        if nr is None or nr.run_id is None:
            return
        body = _json(payload)
        rid = body.get("sweep_id") if self.campaign.kind == "maxq" else body.get("run_id")
        if rid != nr.run_id:
            return
        if nr.phase == "done":
            nr.duplicates += 1  # at-least-once delivery: the copy is counted, never kept
            self._dirty = True
            return
        results = self.folder / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{node}.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
        self.results[node] = body
        nr.phase, nr.result_status, nr.finished_unix_s = "done", body.get("status"), self.clock()
        self._dirty = True
        self.observer.event(node, f"result: {nr.result_status} ({rid})")

    def _save(self) -> None:
        self.campaign.save(self.folder)
        self._dirty = False


def load_results(folder: Path, campaign: Campaign) -> dict[str, dict[str, Any]]:
    """The results a campaign kept so far, per node (for a resumed campaign's comparison)."""
    out: dict[str, dict[str, Any]] = {}
    for name, nr in campaign.nodes.items():
        path = folder / "results" / f"{name}.json"
        if nr.phase == "done" and path.is_file():
            body = _json(path.read_bytes())
            if body:
                out[name] = body
    return out


def _outcome(c: Campaign) -> str:
    phases = {n.phase for n in c.nodes.values()}
    if "rejected" in phases:
        return "rejected"
    waiting = {"pending", "sent", "accepted", "unreachable", "no_reply", "lost", "timed_out"}
    return "incomplete" if phases & waiting else "complete"


def _why_unreachable(view: NodeView | None, now: float) -> str:
    if view is None:
        return "never seen on the broker (no retained status)"
    if view.state == "stale":
        seen = view.seen_unix_s
        ago = f"{now - seen:.0f} s ago" if seen is not None else "long ago"
        return f"stale: its last heartbeat was {ago}"
    reason = view.body.get("reason")
    return f"offline ({reason})" if reason else "offline"


def _error_line(error: object) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    loc = ".".join(str(x) for x in error.get("loc") or [])
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


def _json(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
