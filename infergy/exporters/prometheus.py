"""Prometheus exposition of the live metrics: one Collector over the metric table.

:class:`TelemetryCollector` has the one method Prometheus' client needs, ``collect()``: it
takes one :class:`~infergy.exporters.telemetry.Telemetry` snapshot per scrape and walks
:data:`~infergy.exporters.metrics.METRICS`. It lives in a private registry (never the global
default one, whose process metrics and import-time side effects we do not want), built by
:func:`build_registry`; :func:`render_metrics` turns a registry into a response body.

The HTTP API mounts it like this (``web.Response(content_type=...)`` rejects a content type
with a charset, so the header is set directly)::

    registry = build_registry(live_telemetry)

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = render_metrics(registry, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from infergy.exporters.metrics import METRICS, MetricSpec, Sample
from infergy.exporters.telemetry import TelemetrySource

__all__ = ["TelemetryCollector", "build_registry", "render_metrics"]


class TelemetryCollector:
    """A Prometheus collector over the metric table (``prometheus_client``'s Collector).

    Args:
        source: where each scrape's snapshot comes from.
        table: the metrics to expose (default: all of :data:`METRICS`).
    """

    def __init__(self, source: TelemetrySource, table: Sequence[MetricSpec] = METRICS) -> None:
        self._source = source
        self._table = tuple(table)

    def collect(self) -> Iterator[Metric]:
        """Every metric of the table, from one snapshot."""
        snapshot = self._source.telemetry()
        for spec in self._table:
            yield _family(spec, spec.read(snapshot))


def _family(spec: MetricSpec, samples: Iterable[Sample]) -> Metric:
    labels = list(spec.labels)
    if spec.type == "counter":  # the family drops "_total"; its sample gets it back
        counter = CounterMetricFamily(spec.name, spec.help, labels=labels, unit=spec.unit)
        for values, value in samples:
            counter.add_metric(list(values), value)
        return counter
    if spec.type == "info":
        info = InfoMetricFamily(spec.name.removesuffix("_info"), spec.help, labels=labels)
        for values, _one in samples:
            info.add_metric(list(values), {})
        return info
    if spec.type == "summary":  # quantiles only: prometheus_client's family cannot add them
        summary = Metric(spec.name, spec.help, "summary", spec.unit)
        for values, value in samples:
            summary.add_sample(spec.name, dict(zip(labels, values, strict=True)), value)
        return summary
    gauge = GaugeMetricFamily(spec.name, spec.help, labels=labels, unit=spec.unit)
    for values, value in samples:
        gauge.add_metric(list(values), value)
    return gauge


def build_registry(source: TelemetrySource) -> CollectorRegistry:
    """A private registry holding one :class:`TelemetryCollector` over ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(source))
    return registry


def render_metrics(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition of ``registry`` as (body, Content-Type), negotiated from ``accept``.

    Without an Accept header this is the classic text format (version 0.0.4, what
    ``promtool check metrics`` validates); Prometheus itself asks for OpenMetrics and gets it.
    """
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
