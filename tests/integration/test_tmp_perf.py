import asyncio, time
import pytest
from tests.integration.ingest_support import *  # noqa

@pytest.mark.parametrize("k", range(6))
async def test_perf(tmp_path, database_url, mqtt_url, mqtt_protocol, site_id, k):
    site = write_site(tmp_path, site_id)
    n = 5000
    pts = {"moving": True, "door_closed": True, "door_zone": False, "alarm_button": False, "car_floor": 3,
           "direction": 1, "passengers": 2, "load_kg": 150, "service_mode": 0, "fault_code": 0, "speed_mps": 1.2, "run_count": 1000}
    async with (running_ingest(site, database_url, mqtt_url, mqtt_protocol) as c,
                publisher(mqtt_url, mqtt_protocol, f"pub-{site_id}") as pub):
        t0 = time.monotonic()
        futs = []
        for i in range(n):
            futs.append(pub.publish_nowait(topic(site_id, "telemetry"), telemetry(i * 0.01, pts)))
            if len(futs) >= 500:
                async with asyncio.timeout(10):
                    await asyncio.gather(*futs); futs = []
        async with asyncio.timeout(10):
            await asyncio.gather(*futs)
        t1 = time.monotonic()
        print(f"\npublished in {t1-t0:.2f}s")
        await eventually(database_url, rows("SELECT count(*) FROM telemetry"), lambda r: r[0][0] == n * 12, timeout_s=30)
        t2 = time.monotonic()
    print(f"\npublished in {t1-t0:.2f}s, stored {n*12} rows in {t2-t0:.2f}s; {c.summary()}")
