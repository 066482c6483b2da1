"""`serve --http`: Prometheus metrics that match the store, and the read-only page, loaded in
a real headless Chromium (Debian's package, which `make browser` installs) from a running
fleet: what it shows is checked, not only that it loads."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.services.predictors import predictors_version
from coordinator.state import Devices, Store
from tests.cli_output import campaign_id, cli
from tests.fleet import QUICK_FLAGS, Fleet, wait_for
from tests.test_tls import make_certificates

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def http_address(fleet: Fleet) -> str:
    """The `http on HOST:PORT` line `serve` prints after `listening on`."""
    line = fleet.server.stdout.readline().decode()
    assert line.startswith("http on "), line
    return line.split()[-1]


@pytest.fixture(scope="module")
def live(tmp_path_factory, measured):
    """A coordinator serving the measured fleet's database with --http, a predictor trained
    for `cpu`, agent `web-a` online for `cpu`, and a campaign for `rpi4` (its one agent
    offline) running."""
    folder = tmp_path_factory.mktemp("web")
    fleet = Fleet(folder)
    try:
        shutil.copy(measured[0], fleet.db)
        cli("predictor", "train", "--db", fleet.db, "--device", "cpu", "--kind", "lut-ridge")
        store = Store(fleet.db)  # a Pi that registered once and is offline now
        pi = store.token_by_secret(store.create_token("pi", labels=["rpi4"]))
        store.register_agent(pi, "", ["rpi4"], {"machine": "aarch64"}, 4, "0.1")
        store.close()
        fleet.start_server(extra=("--http", "127.0.0.1:0"))
        url = f"http://{http_address(fleet)}"
        fleet.start_agent("web-a", labels=("cpu",))
        agent = fleet.agent_id("web-a")
        created = cli(
            *("campaign", "create", "--db", fleet.db, "--name", "pi-sweep", "--label", "rpi4"),
            *("--workload", "random", "--count", 2, "--resolutions", 64, *QUICK_FLAGS, "--start"),
        )
        yield fleet, url, agent, campaign_id(created)
    finally:
        fleet.close()  # also when setting up failed: no process outlives the module


def get(url: str, method: str = "GET", context: ssl.SSLContext | None = None):
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of /metrics, read by Prometheus' own parser."""
    status, headers, body = get(f"{url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_parse_and_match_the_store(live):
    fleet, url, agent, _ = live
    heartbeat = ("ofa_rpc_seconds_count", (("code", "OK"), ("method", "Heartbeat")))
    # the agent's first heartbeat comes an interval after it registered: a busy machine
    # can scrape before it (seen once in a full run)
    wait_for(lambda: heartbeat in scrape(url), 30, "the agent's first heartbeat")
    samples = scrape(url)
    jobs = fleet.store.job_counts()
    for state in ("queued", "leased", "done", "failed", "disturbed", "cancelled"):
        assert samples[("ofa_jobs", (("state", state),))] == jobs.get(state, 0), state
    assert jobs.get("queued", 0) >= 2  # the rpi4 campaign waits for an agent
    agents = fleet.store.list_agents()
    assert samples[("ofa_agents_online", ())] == sum(a["online"] for a in agents) >= 1
    assert samples[("ofa_agent_online", (("agent", agent),))] == 1
    stored = {k: v for k, v in samples.items() if k[0] == "ofa_results"}
    assert sum(stored.values()) == fleet.store.result_counts()["stored"] > 0
    # every RPC the agent made was timed: it registered once and heartbeats
    assert samples[("ofa_rpc_seconds_count", (("code", "OK"), ("method", "Register")))] >= 1
    assert samples[heartbeat] >= 1


def load_page(url: str, profile: Path) -> _Page:
    """The page as headless Chromium drew it, after letting it fetch the status."""
    assert CHROMIUM, "Chromium is not installed: run `make browser` (Debian's chromium)"
    dom = subprocess.run(
        [
            CHROMIUM,
            *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",  # let the page fetch and draw the status
            "--dump-dom",
            f"{url}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    page = _Page()
    page.feed(dom)
    return page


class _Page(HTMLParser):
    """The text of each table row, by table id, the images' sources, and the text of the
    error line and of the plots' boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.texts: dict[str, str] = {"error": "", "luts": "", "predictors": ""}
        self._table = self._row = None
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append("")
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("span", "div") and attrs.get("id") in self.texts:
            self._in = attrs["id"]

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.rows[self._table].append(self._row)
        if tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag in ("span", "div"):
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.texts[self._in] += data
        elif self._row is not None and self._row:
            self._row[-1] += data


def test_the_page_in_chromium_shows_the_agents_the_campaign_the_lut_and_the_predictor(
    live, tmp_path
):
    fleet, url, agent, campaign = live
    page = load_page(url, tmp_path / "chromium")
    assert page.texts["error"] == "", page.texts["error"]
    agents = {row[0]: row for row in page.rows["agents"]}
    assert agents[agent][1] == "online" and agents[agent][2] == "cpu"
    assert "CPU" in agents[agent][3]
    total = sum(fleet.store.job_counts(campaign).values())
    (running,) = [row for row in page.rows["campaigns"] if row[0] == campaign]
    assert running[1:3] == ["pi-sweep", "running"] and running[4] == f"0/{total}"
    labels = {row[0]: row for row in page.rows["labels"]}
    assert labels["rpi4"][1] == str(total) and labels["rpi4"][5] == "0"  # queued, none online
    # cpu2 measured whole subnets only: no LUT, no predictor. A LUT plot's address carries
    # how many entries were measured, so that it is fetched again as more arrive, and a
    # predictor plot's when the predictors were last trained, for the same reason
    entries = fleet.store.accepted_count(Devices("cpu"), "lut")
    assert entries >= 96
    trained = predictors_version(fleet.db, "cpu")
    assert page.images == [
        f"plots/lut/cpu.png?v={entries}",
        f"plots/predictor/cpu.png?v={trained}",
    ]
    for plot in page.images:
        status, headers, png = get(f"{url}/{plot}")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_the_page_is_read_only_and_says_what_it_does_not_have(live):
    _, url, _, _ = live
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = get(f"{url}/api/status", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD", method
    status, _, body = get(f"{url}/nothing-here")
    assert status == 404 and b"/nothing-here: no such page" in body
    status, _, body = get(f"{url}/plots/predictor/cpu2.png")
    assert status == 404 and b"no predictor trained for 'cpu2'" in body
    status, _, body = get(f"{url}/plots/lut/cpu2.png")
    assert status == 404 and b"no LUT campaign has targeted label 'cpu2'" in body
    status, _, body = get(f"{url}/plots/predictor/..%2Fetc.png")
    assert status == 404


def test_with_tls_the_page_is_served_over_https_only(tmp_path):
    ca, cert, key = make_certificates(tmp_path / "certs")
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server(extra=("--tls-cert", cert, "--tls-key", key, "--http", "127.0.0.1:0"))
        address = http_address(fleet)
        context = ssl.create_default_context(cafile=ca)
        status, _, body = get(f"https://{address}/api/status", context=context)
        assert status == 200 and b'"agents": []' in body
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            get(f"http://{address}/api/status")
    finally:
        fleet.close()


def test_a_new_fleets_page_says_it_has_no_lut_and_no_predictor_yet(fleet_http, tmp_path):
    page = load_page(fleet_http, tmp_path / "chromium")
    assert page.texts["error"] == "" and page.images == []
    assert page.texts["luts"].startswith("no LUT entry measured yet")
    assert page.texts["predictors"].startswith("none trained")


@pytest.fixture
def fleet_http(tmp_path):
    """A new fleet's coordinator with --http: its address."""
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server(extra=("--http", "127.0.0.1:0"))
        yield f"http://{http_address(fleet)}"
    finally:
        fleet.close()


def test_a_bad_http_address_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "serve", "--db", tmp_path / "fleet.db"]
        + ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--http: expected HOST:PORT with a port in 0..65535" in result.stderr
    assert not Path(tmp_path / "fleet.db").exists()
