"""Prometheus metrics: a prometheus-client ``Collector`` over the framework's own counters.

The framework counts with plain integers where things happen (:mod:`qakeapi.core.counters`);
nothing calls prometheus-client per message. At scrape time :class:`MetricsCollector` takes a
reading (:func:`qakeapi.core.snapshot.take`) and hands it to prometheus-client as metric
families. :meth:`Application.expose_metrics <qakeapi.core.application.Application.expose_metrics>`
(or :func:`expose_metrics`) serves them at ``GET /metrics``, after whatever the
prometheus-client default registry holds (the process collector, the application's own
metrics).

Under a multi-process server (``uvicorn --workers N``) each worker keeps its own counters; with
a directory (``directory=`` or the ``QAKEAPI_METRICS_DIR`` environment variable) every worker
writes its reading there each second and whichever worker answers a scrape adds them all up
(:mod:`qakeapi.core.worker_metrics`).

Needs the ``metrics`` extra (``pip install 'qakeapi-realtime[metrics]'``); without it
``import qakeapi`` still works and only exposing metrics raises
:class:`~qakeapi.exceptions.MissingDependencyError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from qakeapi.core.counters import default_node
from qakeapi.core.requests import Request
from qakeapi.core.responses import Response
from qakeapi.core.snapshot import Family, Histogram, take
from qakeapi.core.worker_metrics import METRICS_DIR_VARIABLE, WorkerMetrics
from qakeapi.exceptions import MissingDependencyError

if TYPE_CHECKING:
    from qakeapi.core.routing import Routes

__all__ = ["DEFAULT_METRICS_PATH", "MetricsCollector", "expose_metrics", "prometheus_client"]

DEFAULT_METRICS_PATH = "/metrics"


def prometheus_client() -> Any:
    """Import prometheus-client.

    Raises:
        MissingDependencyError: It is not installed (the ``metrics`` extra).
    """
    try:
        import prometheus_client as client
    except ImportError:
        raise MissingDependencyError("prometheus-client", "metrics") from None
    return client


class MetricsCollector:
    """A prometheus-client collector of QakeAPI's metrics (register it on a ``CollectorRegistry``).

    Args:
        node: The ``node`` label of this process's metrics; ``None``: :func:`~qakeapi.core.counters.default_node` at
            each scrape.
        read: Returns the families to export (by default this process's reading,
            :func:`~qakeapi.core.snapshot.take`; a multi-process server passes the merged one).
    """

    def __init__(self, node: str | None = None, read: Callable[[str], list[Family]] | None = None) -> None:
        self.node = node
        self.read = read if read is not None else take

    def collect(self) -> Iterator[Any]:
        """Yield prometheus-client metric families (called by the registry at each scrape)."""
        from prometheus_client import core  # the extra, imported when scraped

        for family in self.read(self.node or default_node()):
            yield _to_prometheus(core, family)


def _to_prometheus(core: Any, family: Family) -> Any:
    names = sorted({name for labels, _ in family.samples for name, _ in labels})
    if family.kind == "histogram":
        metric = core.HistogramMetricFamily(family.name, family.help, labels=names)
    elif family.kind == "counter":
        metric = core.CounterMetricFamily(family.name, family.help, labels=names)
    else:
        metric = core.GaugeMetricFamily(family.name, family.help, labels=names)
    for labels, value in family.samples:
        values = [dict(labels).get(name, "") for name in names]
        if isinstance(value, Histogram):
            buckets = [("+Inf" if math.isinf(bound) else repr(bound), count) for bound, count in value.buckets]
            metric.add_metric(values, buckets, value.sum)
        else:
            metric.add_metric(values, value)
    return metric


def expose_metrics(
    app: Routes,
    path: str = DEFAULT_METRICS_PATH,
    *,
    node: str | None = None,
    registry: Any = None,
    directory: str | None = None,
) -> MetricsCollector:
    """Serve QakeAPI's metrics (and ``registry``'s) in the Prometheus text format at ``GET path``.

    Registers the endpoint only; :meth:`Application.expose_metrics
    <qakeapi.core.application.Application.expose_metrics>` also times the hooks of the
    application's connections.

    Args:
        app: The application (or anything that takes routes and lifespan hooks).
        path: The path of the endpoint.
        node: The ``node`` label (``None``: :func:`~qakeapi.core.counters.default_node`).
        registry: Other metrics to serve first (``None``: prometheus-client's default
            registry: the process collector and whatever the application registered).
        directory: Where the workers of a multi-process server share their readings
            (``None``: the ``QAKEAPI_METRICS_DIR`` environment variable, if set).

    Returns:
        The collector (its readings are also served at ``path``).

    Raises:
        MissingDependencyError: prometheus-client is not installed.
    """
    client = prometheus_client()
    directory = directory if directory is not None else os.environ.get(METRICS_DIR_VARIABLE) or None
    workers = WorkerMetrics(directory, node=node or "") if directory is not None else None
    collector = MetricsCollector(node, workers.read if workers is not None else None)
    own = client.CollectorRegistry(auto_describe=False)
    own.register(collector)
    others = registry if registry is not None else client.REGISTRY
    content_type = client.CONTENT_TYPE_LATEST
    if workers is not None:
        app.on_startup(workers.start)
        app.on_shutdown(workers.stop)

    async def metrics(request: Request) -> Response:
        body = client.generate_latest(others) + client.generate_latest(own)
        return Response(body, headers={"content-type": content_type})

    app.get(path)(metrics)
    return collector
