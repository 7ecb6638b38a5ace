"""Serve a service's Prometheus metrics on ``http://host:port/metrics`` with
prometheus_client, the ecosystem's library (exposition format, escaping, HTTP server).

The services keep their counters as plain attributes that their hot paths bump (an ``int``
increment costs a fraction of a prometheus_client ``Counter.inc()``, which takes a lock:
bench/metrics.py measures both). Each service hands a ``collect`` callable that turns those
counters into metric families at scrape time; ``SnapshotCollector`` registers it in a
registry of the service's own (no global registry), and ``MetricsServer`` serves that
registry from prometheus_client's WSGI server on a daemon thread. ``collect`` then runs on
that thread: it must only read (copying a dict with ``list(d.items())`` is atomic under the
GIL) and never block."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["Collect", "MetricsServer", "SnapshotCollector", "counter", "counter_by", "gauge",
           "gauge_by", "text"]

log = logging.getLogger(__name__)
Collect = Callable[[], Iterable[Metric]]


class SnapshotCollector(Collector):
    """A prometheus_client collector whose metric families come from ``collect``."""

    def __init__(self, collect: Collect) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())


def registry_of(collect: Collect) -> CollectorRegistry:
    """A registry of its own holding one snapshot collector (no process-wide state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(collect))
    return registry


def text(collect: Collect) -> str:
    """The exposition text of ``collect``'s families, as a scrape would return it."""
    return generate_latest(registry_of(collect)).decode()


Family = TypeVar("Family", CounterMetricFamily, GaugeMetricFamily)


def counter(name: str, help_text: str, labels: Mapping[str, str], value: float) -> Metric:
    """A counter family (``name`` without ``_total``) with one sample under ``labels``."""
    return _one(CounterMetricFamily, name, help_text, labels, value)


def gauge(name: str, help_text: str, labels: Mapping[str, str], value: float) -> Metric:
    """A gauge family with one sample under ``labels``."""
    return _one(GaugeMetricFamily, name, help_text, labels, value)


def counter_by(name: str, help_text: str, labels: Mapping[str, str], key: str,
               values: Mapping[str, float]) -> Metric:
    """A counter family with one sample per entry of ``values``, its key under label
    ``key`` beside ``labels``."""
    return _many(CounterMetricFamily, name, help_text, labels, key, values)


def gauge_by(name: str, help_text: str, labels: Mapping[str, str], key: str,
             values: Mapping[str, float]) -> Metric:
    """As ``counter_by``, for a gauge."""
    return _many(GaugeMetricFamily, name, help_text, labels, key, values)


def _one(kind: type[Family], name: str, help_text: str, labels: Mapping[str, str],
         value: float) -> Family:
    family = kind(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _many(kind: type[Family], name: str, help_text: str, labels: Mapping[str, str], key: str,
          values: Mapping[str, float]) -> Family:
    family = kind(name, help_text, labels=[*labels, key])
    base: list[str] = list(labels.values())
    for k, v in sorted(list(values.items())):
        family.add_metric([*base, k], v)
    return family


class MetricsServer:
    """prometheus_client's HTTP server for one collect callable, on ``host:port``
    (0: any free port, read back from ``port`` after ``start``)."""

    def __init__(self, collect: Collect, port: int, host: str = "127.0.0.1") -> None:
        self._registry = registry_of(collect)
        self._host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        server, self._thread = await asyncio.to_thread(
            start_http_server, self.port, self._host, self._registry)
        self._server = server
        self.port = int(server.server_port)
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # ends serve_forever (0.5 s poll)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
