"""One campaign's state: a job, the nodes it goes to, what each node did; saved on every change.

The state file (``<out>/campaign.json``) is written atomically (a temporary file, fsync,
rename) after every change, so a controller killed at any moment resumes from it
(``infergy fleet run --resume DIR``). Each node goes through:

``pending`` -> ``sent`` (the command is published; written *before* publishing) ->
``accepted`` (its reply carried a run id) -> ``done`` (its result arrived).

and ends otherwise as ``rejected`` (its reply refused the job), ``unreachable`` (offline,
stale or never seen when the job was to be sent: not sent), ``no_reply`` (no reply within the
acceptance timeout), ``failed`` (the node says the job ended without a result), ``lost`` (it
went offline while running the job and did not come back within the grace), ``timed_out`` (no
result by its deadline) or ``cancelled`` (the campaign was called off). A resumed campaign
sends the job to ``pending``, ``unreachable`` and ``no_reply`` nodes again and waits once
more for ``lost`` and ``timed_out`` ones (a result that arrives late still counts: results
are matched to nodes by run id, and a second copy of one is counted, not kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infergy.errors import InputError

CAMPAIGN_SCHEMA = "infergy-fleet-campaign/1"
NodePhase = Literal[
    "pending", "sent", "accepted", "done", "rejected", "unreachable", "no_reply", "failed",
    "lost", "timed_out", "cancelled",
]  # fmt: skip
FINAL: frozenset[str] = frozenset(
    {"done", "rejected", "unreachable", "no_reply", "failed", "lost", "timed_out", "cancelled"}
)
"""Phases a node ends a controller's session in."""
RETRIED_ON_RESUME: frozenset[str] = frozenset({"pending", "unreachable", "no_reply", "sent"})
"""Sent (again) by a resumed campaign."""
AWAITED_ON_RESUME: frozenset[str] = frozenset({"accepted", "lost", "timed_out"})
"""Waited for once more by a resumed campaign."""
STATE_FILE = "campaign.json"


class NodeRun(BaseModel):
    """One node in a campaign."""

    model_config = ConfigDict(extra="forbid")

    node: str
    request_id: str
    phase: NodePhase = "pending"
    run_id: str | None = None
    """The node's run id (a sweep id for MaxQ), from its reply."""
    job_state: str | None = None
    """The job's state as the node's status lists it (queued, running, ok, failed...)."""
    errors: list[str] = Field(default_factory=list)
    """Why it was rejected, failed or not reached (one line each)."""
    sent_unix_s: float | None = None
    accepted_unix_s: float | None = None
    finished_unix_s: float | None = None
    deadline_unix_s: float | None = None
    offline_since_unix_s: float | None = None
    result_status: str | None = None
    """The result's (or sweep record's) status once it arrived."""
    duplicates: int = 0
    """Further copies of its result received (delivery is at least once)."""
    version: str | None = None
    config_digest: str | None = None


class Campaign(BaseModel):
    """A campaign: what was asked, of whom, and where each node stands."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str = Field(default=CAMPAIGN_SCHEMA, alias="schema")
    campaign_id: str
    kind: Literal["run", "maxq"]
    spec: dict[str, Any]
    """The validated job (JobSpec or MaxqSpec fields), as sent."""
    patterns: list[str]
    broker: str
    topic_root: str
    client_id: str
    created_unix_s: float
    deadline_s: float
    """Per node: how long after its acceptance its result may take."""
    accept_timeout_s: float
    offline_grace_s: float
    nodes: dict[str, NodeRun] = Field(default_factory=dict)
    outcome: str | None = None
    """How the last controller session ended (``complete``, ``incomplete``, ``rejected``)."""

    @property
    def request_ids(self) -> dict[str, str]:
        """Request id -> node."""
        return {n.request_id: n.node for n in self.nodes.values()}

    @property
    def run_ids(self) -> dict[str, str]:
        """Run (or sweep) id -> node, for the nodes that accepted."""
        return {n.run_id: n.node for n in self.nodes.values() if n.run_id is not None}

    def add_nodes(self, names: list[str]) -> None:
        """Add nodes (``pending``), each with its own request id."""
        for name in names:
            if name not in self.nodes:
                rid = f"{self.campaign_id}-{len(self.nodes):04d}"
                self.nodes[name] = NodeRun(node=name, request_id=rid)

    def save(self, folder: Path) -> Path:
        """Write the state atomically into ``folder``; its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        text = self.model_dump_json(indent=1, by_alias=True)
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        with contextlib.suppress(OSError):  # the rename itself durable (not on every fs)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    @classmethod
    def load(cls, folder: Path) -> Campaign:
        """The campaign saved in ``folder``.

        Raises:
            InputError: there is none, or it cannot be read.
        """
        path = folder / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate(data)
        except FileNotFoundError:
            msg = f"no campaign in {folder}: {STATE_FILE} is missing"
            raise InputError(msg, hint="--resume takes the folder a campaign wrote") from None
        except (OSError, ValueError, ValidationError) as err:
            first = str(err).splitlines()[0]
            msg = f"the campaign state {path} cannot be read: {first}"
            raise InputError(msg) from None


def new_campaign_id(now_unix_s: float | None = None) -> str:
    """``20261203T144339Z-2668ba``: UTC time and 6 random hex digits."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_unix_s))
    return f"{stamp}-{secrets.token_hex(3)}"
