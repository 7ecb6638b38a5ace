"""The monthly report as a PDF: the month's figures with their charts and a month-over-month
trend of the last 12 months (MTTA, MTTR, SLA compliance, alarm load), drawn as SVG on the
server and printed by headless Chromium (``--print-to-pdf``).

Why Chromium: it is already a system package of the platform (the browser tests drive it),
it renders the same HTML, SVG and CJK fonts (fonts-wqy-microhei) as the pages, and it needs
no Python dependency with native libraries (WeasyPrint needs Pango; ReportLab would redraw
every chart in its own API). Without a Chromium (FACILITY_API_CHROMIUM empty or not found)
the PDF route answers 503 and says so; the browser's own print of the report page still
works. ``trend`` reads the database; ``bars`` and ``render_html`` are pure; ``print_pdf``
runs one Chromium process per report, with a timeout, in a throwaway profile."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.reports import month_summary

HERE = Path(__file__).resolve().parent
PDF_TIMEOUT_S = 60.0
_ENV = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]))


class PdfUnavailable(RuntimeError):
    """No Chromium to print with, or it failed: ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def previous_months(month: str, count: int = 12) -> list[str]:
    """The ``count`` months ending with ``month`` (YYYY-MM), oldest first."""
    year, mon = (int(p) for p in month.split("-"))
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{mon:02d}")
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return out[::-1]


async def trend(conn: psycopg.AsyncConnection[Any], site: str, month: str,
                tz: ZoneInfo) -> list[dict[str, Any]]:
    """Per month of the last 12: alarms, MTTA of alarms and orders, MTTR, SLA resolve."""
    return [await month_summary(conn, site, m, tz) for m in previous_months(month)]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


def bars(values: list[float | None], labels: list[str], fmt: str = "{:.0f}",
         width: float = 480, height: float = 120) -> list[Bar]:
    """A bar chart's geometry (SVG user units); a missing value is an empty slot."""
    top = max([v for v in values if v is not None] + [1e-9])
    slot = width / max(1, len(values))
    out = []
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = 0.0 if v is None else (v / top) * (height - 16)
        out.append(Bar(x=i * slot + slot * 0.15, y=height - h, width=slot * 0.7, height=h,
                       label=label, value="—" if v is None else fmt.format(v)))
    return out


def _minutes(s: float | None) -> float | None:
    return None if s is None else s / 60


def render_html(report: dict[str, Any], months: list[dict[str, Any]], site_name: str) -> str:
    labels = [m["month"][2:] for m in months]
    charts = [
        ("报警数 Alarms per month", bars([m["alarms"] for m in months], labels)),
        ("MTTA 接单 (min)", bars([_minutes(m["mtta_s"]) for m in months], labels, "{:.1f}")),
        ("MTTR 修复 (min)", bars([_minutes(m["mttr_s"]) for m in months], labels, "{:.0f}")),
        ("SLA resolve 按时完成 (%)",
         bars([None if m["sla_resolve"] is None else m["sla_resolve"] * 100 for m in months],
              labels, "{:.0f}")),
    ]
    trade_bars = bars([t["count"] for t in report["by_trade"]],
                      [str(t["trade"]) for t in report["by_trade"]])
    css = _print_css()
    return _ENV.get_template("report_print.html").render(
        report=report, months=months, charts=charts, trade_bars=trade_bars,
        site_name=site_name, css=css)


@functools.cache
def _print_css() -> str:
    return (HERE / "static" / "report_print.css").read_text(encoding="utf-8")


def chromium_path(configured: str) -> str | None:
    if not configured:
        return None
    return shutil.which(configured)


async def print_pdf(html: str, chromium: str, timeout_s: float = PDF_TIMEOUT_S) -> bytes:
    """The HTML printed to PDF by headless Chromium (A4, no header or footer)."""
    with tempfile.TemporaryDirectory(prefix="facility-pdf-") as tmp:
        page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer",
            f"--print-to-pdf={out}", page.as_uri(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise PdfUnavailable(f"chromium did not print within {timeout_s:.0f} s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0 or not out.exists():
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
            raise PdfUnavailable(f"chromium exited with status {proc.returncode}"
                                 f"{': ' + tail[0] if tail else ''}")
        return out.read_bytes()
