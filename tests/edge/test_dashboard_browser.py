"""The dashboard in headless Chromium against the trip planner (eight agents, offline model)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natsmesh.config import Settings
from natsmesh.ops.processes import worker_env
from natsmesh.ops.server import stop_pid
from tests.conftest import ROOT, agent_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
AGENTS = {
    "user-prefs-agent": "user_prefs_agent",
    "flight-agent": "flight_agent",
    "hotel-agent": "hotel_agent",
    "weather-agent": "weather_agent",
    "poi-agent": "poi_agent",
    "claude-provider": "claude_provider",
    "openai-provider": "openai_provider",
    "planner-agent": "planner_agent",
}
NATSMESH = [sys.executable, "-c", "from natsmesh_cli.app import main; main()"]
#: set to refresh the screenshot in the docs: NATSMESH_SCREENSHOT=docs/dashboard.png pytest ...
SCREENSHOT = os.environ.get("NATSMESH_SCREENSHOT")

if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"):
    pytest.skip(
        "needs Debian's chromium and chromium-driver (.ci/run installs them)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _env(settings: Settings) -> dict[str, str]:
    env = worker_env(settings)
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):  # the offline model answers
        env.pop(key, None)
    return env


@pytest.fixture
def planner(settings: Settings, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The eight trip-planner agents, each its own worker process."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, folder in AGENTS.items():
        with open(tmp_path / f"{folder}.log", "wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "natsmesh.worker", str(agent_file(folder))],
                env=_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            stop_pid(proc.pid, timeout=5)
        proc.wait(timeout=10)


@pytest.fixture
def dashboard_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``natsmesh dashboard --port 0`` as its own process; yields the URL it prints."""
    proc = subprocess.Popen(
        [*NATSMESH, "dashboard", "--port", "0"],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "dashboard.log", "wb"),  # noqa: SIM115
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.search(r"http://\S+/", line)
    assert match, (
        f"natsmesh dashboard printed {line!r}; log: {(tmp_path / 'dashboard.log').read_text()}"
    )
    yield match.group(0)
    stop_pid(proc.pid, timeout=5)
    proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1600,2100",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


# The page re-renders as events arrive: read it in one script call, and retry clicks on
# elements that were replaced meanwhile.


def agent_nodes(driver: webdriver.Chrome) -> set[str]:
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll('#topology g.node.agent')]"
            ".map(n => n.dataset.agent)"
        )
    )


def edges(driver: webdriver.Chrome) -> set[tuple[str, str]]:
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('#topology g.edge')]"
        ".map(e => [e.dataset.from, e.dataset.to])"
    )
    return {(a, b) for a, b in pairs}


def health(driver: webdriver.Chrome, agent: str) -> str:
    classes = driver.execute_script(
        "const n = document.querySelector(`#topology g.node[data-agent='${arguments[0]}']`);"
        "return n ? n.getAttribute('class') : ''",
        agent,
    )
    return next((c for c in ("healthy", "degraded", "failing") if c in classes.split()), "")


def count(driver: webdriver.Chrome, selector: str) -> int:
    return int(driver.execute_script(f"return document.querySelectorAll('{selector}').length"))


def click(driver: webdriver.Chrome, selector: str) -> None:
    def clicked(d: webdriver.Chrome) -> bool:
        d.find_element(By.CSS_SELECTOR, selector).click()
        return True

    WebDriverWait(driver, 10, ignored_exceptions=[StaleElementReferenceException]).until(clicked)


def call_through_form(driver: webdriver.Chrome, tool: str, fields: dict[str, str]) -> None:
    click(driver, f'#tools li[data-tool="{tool}"]')
    for name, value in fields.items():
        field = driver.find_element(By.CSS_SELECTOR, f'#call-fields [name="{name}"]')
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "call-submit").click()


def test_dashboard_shows_the_trip_planner_live(
    planner: dict[str, subprocess.Popen[bytes]],
    dashboard_url: str,
    browser: webdriver.Chrome,
    tmp_path: Path,
) -> None:
    driver = browser
    wait = WebDriverWait(driver, 60)
    driver.get(dashboard_url)
    try:
        # the eight agents and the declared dependency edges, pushed as they register
        wait.until(lambda d: agent_nodes(d) == set(AGENTS))
        wait.until(
            lambda d: (
                {
                    ("planner-agent", "user-prefs-agent"),
                    ("flight-agent", "user-prefs-agent"),
                    ("poi-agent", "weather-agent"),
                }
                <= edges(d)
            )
        )
        assert "live" in driver.find_element(By.ID, "live").text

        # flight_search through the form
        call_through_form(
            driver, "flight_search", {"origin": "SFO", "destination": "KIX", "date": "2026-06-01"}
        )
        wait.until(lambda d: '"personalized": true' in d.find_element(By.ID, "call-result").text)
        assert "KIX" in driver.find_element(By.ID, "call-result").text

        # plan_trip through the form, then its trace: ten tool spans as a tree and a waterfall
        call_through_form(
            driver,
            "plan_trip",
            {"destination": "Kyoto", "dates": "June 1-5, 2026", "budget": "$2000"},
        )
        wait.until(lambda d: "[offline model]" in d.find_element(By.ID, "call-result").text)
        # plan_trip streams: its tool events and text arrived as chunks before the result
        chunks = driver.find_element(By.ID, "call-chunks").text
        assert '"tool_call"' in chunks and "[offline model]" in chunks, chunks
        click(driver, "#call-trace")
        wait.until(lambda d: count(d, "#trace-tree .tree-node") == 10)
        wait.until(lambda d: count(d, "#trace-waterfall .wf-row") == 10)
        summary = driver.find_element(By.ID, "trace-summary").text
        assert summary.startswith("10 spans across"), summary
        tree = driver.find_element(By.ID, "trace-tree").text
        assert tree.splitlines()[0].startswith("plan_trip (planner-agent)")
        for tool in ("get_user_prefs", "flight_search", "hotel_search", "search_pois"):
            assert tool in tree

        # traffic pushed from the span stream: observed edges, rates, tokens
        wait.until(lambda d: ("planner-agent", "flight-agent") in edges(d))
        wait.until(lambda d: count(d, '#tokens tr[data-model="offline"]') == 1)
        wait.until(
            lambda d: (
                count(d, '#edge-traffic tr[data-caller="dashboard"][data-tool="plan_trip"]') == 1
            )
        )
        driver.execute_script("window.scrollTo(0, 0)")
        shot = ROOT / SCREENSHOT if SCREENSHOT else tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        # an agent that stops leaves the topology
        stop_pid(planner["weather-agent"].pid, timeout=5)
        wait.until(lambda d: agent_nodes(d) == set(AGENTS) - {"weather-agent"})
        assert ("poi-agent", "weather-agent") not in edges(driver)
        # poi-agent's dependency (weather_forecast) has no provider now
        wait.until(lambda d: health(d, "poi-agent") == "degraded")
        assert health(driver, "flight-agent") == "healthy"
    except Exception:
        for entry in driver.get_log("browser"):
            print("browser:", entry)
        raise
