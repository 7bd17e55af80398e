"""``infergy fleet status | run``: many ``infergy serve`` nodes, through their MQTT broker.

The controller reads ``[mqtt]`` (broker, TLS, credentials, ``topic_root``) from ``--config``
like a node does; ``--broker``, ``--username`` and ``--password-file`` override it. A job file
is the JSON body of ``POST /v1/runs`` (``--job``) or ``POST /v1/maxq`` (``--maxq``), validated
here by the same model before anything is sent. docs/fleet.md is the guide.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from infergy.cli.common import ConfigOpt
from infergy.cli.console import print_note
from infergy.cli.fleet_console import ConsoleObserver, render_comparison, render_nodes
from infergy.config.settings import Settings, load_settings
from infergy.daemon.fleet.campaign import Campaign, new_campaign_id
from infergy.daemon.fleet.comparison import columns, comparison_rows
from infergy.daemon.fleet.controller import Controller, load_results
from infergy.daemon.fleet.link import survey
from infergy.daemon.fleet.presence import drift, match_nodes
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import FleetError, InfergyError, InputError, MeasurementFailedError
from infergy.exporters.fleet_files import write_comparison

fleet_app = typer.Typer(help="Drive many infergy serve nodes through their MQTT broker.")

BrokerOpt = Annotated[
    str | None,
    typer.Option(
        "--broker", metavar="HOST[:PORT]", help="The broker (overrides \\[mqtt] host/port)."
    ),
]
UserOpt = Annotated[
    str | None, typer.Option("--username", help="Broker user (overrides \\[mqtt] username).")
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="A file holding the broker password (first line)."),
]
_BROKER = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))(?::(?P<port>\d+))?$"
)
DEFAULT_DEADLINE_MARGIN_S = 300.0
MAXQ_DEADLINE_S = 12 * 3600.0


def register(app: typer.Typer) -> None:
    """Add ``fleet`` (and its subcommands) to the command line."""
    app.add_typer(fleet_app, name="fleet")


def _settings(
    config: Path | None, broker: str | None, username: str | None, password_file: Path | None
) -> Settings:
    mqtt: dict[str, Any] = {}
    if broker is not None:
        found = _BROKER.match(broker)
        if found is None or not 1 <= int(found["port"] or 1883) <= 65535:
            msg = f"--broker {broker!r} is not HOST[:PORT]"
            raise InputError(msg, hint="e.g. --broker mqtt.lab:8883 or --broker [::1]:1883")
        mqtt["host"] = found["v6"] or found["host"]
        if found["port"]:
            mqtt["port"] = int(found["port"])
    if username is not None:
        mqtt["username"] = username
    if password_file is not None:
        mqtt |= {"password_file": str(password_file.absolute()), "password": None}
    return load_settings(config, overrides={"mqtt": mqtt} if mqtt else None)


@fleet_app.command("status")
def fleet_status(
    *,
    nodes: Annotated[
        list[str] | None, typer.Option("--nodes", metavar="PATTERN", help="Only these (globs).")
    ] = None,
    stale_after: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds after which an online status is stale "
            "(default: 3 of the node's heartbeats, + 10 s).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    broker: BrokerOpt = None,
    username: UserOpt = None,
    password_file: PasswordFileOpt = None,
    config: ConfigOpt = None,
) -> int:
    """The nodes on the broker: online, stale or offline, with version and config drift."""
    settings = _settings(config, broker, username, password_file)
    views = asyncio.run(survey(settings.mqtt, stale_after_s=stale_after))
    if nodes:
        matched, unknown = match_nodes(nodes, [v.node for v in views])
        if unknown:
            where = f"{settings.mqtt.host}:{settings.mqtt.port}"
            msg = f"no node on the broker at {where} matches {', '.join(map(repr, unknown))}"
            raise FleetError(msg, hint="infergy fleet status (without --nodes) lists them all")
        views = [v for v in views if v.node in matched]
    drifted = drift(views)
    if json_out:
        rows = [{"node": v.node, "state": v.state, "drift": drifted.get(v.node, []),
                 "legacy": v.legacy, "status": dict(v.body)} for v in views]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
    else:
        render_nodes(Console(), views, drifted, now_unix_s=time.time())
    return 0


@fleet_app.command("run")
def fleet_run(
    *,
    nodes: Annotated[
        list[str] | None,
        typer.Option(
            "--nodes",
            metavar="PATTERN",
            help="Nodes to run on: names or globs (edge-*), repeated or comma-separated.",
        ),
    ] = None,
    job: Annotated[
        Path | None, typer.Option("--job", help="A run: the JSON body of POST /v1/runs.")
    ] = None,
    maxq: Annotated[
        Path | None, typer.Option("--maxq", help="A MaxQ sweep: the JSON body of POST /v1/maxq.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="The campaign's folder (state, results, comparison); "
            "default ./fleet-<campaign id>."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Resume the campaign saved in DIR (after a restart)."),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds a node may take from acceptance to result "
            "(default: 3 x the job's idle + warm-up + duration, + 300 s; MaxQ 12 h).",
        ),
    ] = None,
    accept_timeout: Annotated[
        float, typer.Option(min=0.5, help="Seconds a node may take to accept or reject.")
    ] = 15.0,
    offline_grace: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Once the others have finished, seconds to wait for "
            "nodes that went offline mid-job.",
        ),
    ] = 60.0,
    source: Annotated[
        str | None, typer.Option(help="Compare this power source (default: ac, then gpus).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the comparison as one JSON object.")
    ] = False,
    broker: BrokerOpt = None,
    username: UserOpt = None,
    password_file: PasswordFileOpt = None,
    config: ConfigOpt = None,
) -> int:
    """Send one job to many nodes, follow it to their results, compare them."""
    settings = _settings(config, broker, username, password_file)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if resume is not None:
        if job is not None or maxq is not None or nodes:
            msg = "--resume takes the campaign as it was saved: no --job, --maxq or --nodes"
            raise InputError(msg)
        folder = resume
        campaign = Campaign.load(folder)
        campaign.offline_grace_s = offline_grace
    else:
        campaign = _new_campaign(
            settings, nodes=nodes, job=job, maxq=maxq, deadline=deadline,
            accept_timeout=accept_timeout, offline_grace=offline_grace,
        )  # fmt: skip
        folder = out or Path(f"fleet-{campaign.campaign_id}")
        if (folder / "campaign.json").exists():
            msg = f"{folder} already holds a campaign"
            raise InputError(msg, hint=f"resume it (--resume {folder}) or choose another --out")
        print_note(err, f"campaign {campaign.campaign_id} -> {folder}", label="fleet", style="cyan")
    controller = Controller(campaign, settings.mqtt, folder=folder, observer=ConsoleObserver(err))
    done = asyncio.run(controller.run(resume=resume is not None))
    results = load_results(folder, done)
    rows = comparison_rows(done, results, source=source)
    meta = {"campaign_id": done.campaign_id, "kind": done.kind, "outcome": done.outcome,
            "broker": done.broker, "spec": done.spec}  # fmt: skip
    csv_path, json_path = write_comparison(folder, columns(done.kind), rows, meta)
    if json_out:
        typer.echo(json.dumps({"campaign": meta, "rows": rows}, indent=2))
    else:
        render_comparison(Console(), done.kind, rows)
    print_note(err, f"{csv_path}, {json_path}", label="written", style="dim")
    return _exit(done, folder)


def _exit(done: Campaign, folder: Path) -> int:
    phases = {n.node: n.phase for n in done.nodes.values()}
    if done.outcome == "rejected":
        rejected = sorted(n for n, p in phases.items() if p == "rejected")
        msg = f"{len(rejected)} node(s) rejected the job ({', '.join(rejected)}); it was "
        msg += "cancelled on the nodes that had accepted it"
        raise FleetError(msg, hint="the lines above say why each refused it")
    bad: dict[str, str] = {n: p for n, p in phases.items() if p != "done"}
    bad |= {n.node: f"result {n.result_status}" for n in done.nodes.values()
            if n.phase == "done" and n.result_status not in ("ok", "degraded")}  # fmt: skip
    if not bad:
        return 0
    listed = ", ".join(f"{n} ({p.replace('_', ' ')})" for n, p in sorted(bad.items()))
    hint = f"infergy fleet run --resume {folder}" if done.outcome == "incomplete" else None
    msg_0 = f"not every node delivered a result: {listed}"
    raise MeasurementFailedError(msg_0, hint=hint)


def _new_campaign(
    settings: Settings,
    *,
    nodes: list[str] | None,
    job: Path | None,
    maxq: Path | None,
    deadline: float | None,
    accept_timeout: float,
    offline_grace: float,
) -> Campaign:
    if (job is None) == (maxq is None):
        msg = "give exactly one of --job FILE and --maxq FILE"
        raise InputError(msg)
    if not nodes:
        msg = "--nodes PATTERN is required"
        raise InputError(msg, hint="e.g. --nodes 'edge-*'")
    kind: Literal["run", "maxq"] = "maxq" if maxq is not None else "run"
    path = maxq or job
    assert path is not None
    spec = _spec(path, kind)
    campaign_id = new_campaign_id()
    spec.setdefault("label", f"fleet campaign {campaign_id}")
    m = settings.mqtt
    return Campaign(
        campaign_id=campaign_id, kind=kind, spec=spec, patterns=list(nodes),
        broker=f"{m.host}:{m.port}", topic_root=m.topic_root,
        client_id=f"infergy-fleet-{campaign_id}", created_unix_s=time.time(),
        deadline_s=deadline or _default_deadline(kind, spec),
        accept_timeout_s=accept_timeout, offline_grace_s=offline_grace,
    )  # fmt: skip


def _spec(path: Path, kind: str) -> dict[str, Any]:
    """The job file, validated as ``POST /v1/runs`` (or ``/v1/maxq``) validates its body.

    The same model, strict as there (JSON types as the OpenAPI schema states them), so a job
    file gets the errors an HTTP request would, and a node gets what passed here.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        msg = f"job file {path}: {err.strerror or err}"
        raise InputError(msg) from None
    model = MaxqSpec if kind == "maxq" else JobSpec
    try:
        spec = model.model_validate_json(raw, strict=True)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(body)'}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False, include_context=False)
        )
        endpoint = "/v1/maxq" if kind == "maxq" else "/v1/runs"
        msg = f"job file {path} is not a valid {kind}: {problems}"
        hint = f"the fields of POST {endpoint} (infergy serve's /openapi.json)"
        raise InputError(msg, hint=hint) from None
    except InfergyError as err:  # a validator that raised our error (as the API handles it)
        msg = f"job file {path} is not a valid {kind}: {err}"
        raise InputError(msg, hint=err.hint) from None
    return spec.model_dump(mode="json", exclude_unset=True)


def _default_deadline(kind: str, spec: dict[str, Any]) -> float:
    if kind == "maxq":
        return MAXQ_DEADLINE_S
    idle = float(spec.get("idle", 10.0) or 0.0)
    busy = idle + float(spec.get("warmup", 5.0)) + float(spec.get("duration", 60.0))
    return 3 * busy + DEFAULT_DEADLINE_MARGIN_S
