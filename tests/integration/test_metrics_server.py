"""facility.metrics_http.MetricsServer answers a real scrape over HTTP on loopback with the
values of the moment, and stops listening when closed."""

from __future__ import annotations

import httpx
import pytest

from facility.metrics_http import MetricsServer, counter
from tests.unit.facility.test_metrics_http import samples


async def test_server_serves_the_current_values_and_stops_listening_when_closed() -> None:
    value = {"n": 1}
    server = MetricsServer(lambda: [counter("t_n", "n", {}, value["n"])], 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            first = await http.get(url)
            value["n"] = 7  # read at scrape time, not when the server started
            second = await http.get(url)
    finally:
        await server.close()
    assert samples(first.text)[("t_n_total", ())] == 1
    assert samples(second.text)[("t_n_total", ())] == 7
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(httpx.ConnectError):  # closed: nothing listens any more
            await http.get(url)
