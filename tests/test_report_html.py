"""`promptlift report RUN --html OUT.html`: one file that a real browser (Chromium, headless) renders
with every plot, offline, fetching nothing; run text is escaped; a program's calls are shown.

Real parts: real runs through the CLI (LiteLLM over HTTP to a loopback task model), the real run
store, Debian's chromium (installed by .ci/run), a real TCP proxy that counts any fetch the page tries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from promptlift.optimize.store import RunStore
from promptlift.report.html import front, parents, render
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

HOSTILE = "<script>window.pwned=1</script>"


def model(request: RecordedRequest) -> Reply:
    messages = request.json["messages"]
    word = messages[-1]["content"].split()[1]
    demos = sum(1 for m in messages if m["role"] == "assistant")
    if demos >= 2:
        return ok("long" if len(word) > 5 else "short")
    return ok(HOSTILE if int(word[-1]) % 2 else "unsure")  # an output that must stay text


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-report-not-a-key-001"}
    return subprocess.run(
        [sys.executable, "-m", "promptlift", *args], capture_output=True, text=True, env=env, timeout=300
    )


def write_config(folder: Path, api_base: str) -> Path:
    rows = [{"text": f"w{'x' * (i % 7)}{i}"} for i in range(40)]
    rows = [{**r, "label": "long" if len(r["text"]) > 5 else "short"} for r in rows]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "config.yaml"
    path.write_text(
        f"model: openai/fake-task\napi_base: {api_base}\n"
        "prompt: {system: 'Label the word.', user: 'Word: {text}', params: {max_tokens: 8}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 3, trials: 4}}\n"
        "budget: {max_calls: 300}\nstore: runs/\n"
    )
    return path


class FetchCounter:
    """A TCP listener standing in for every host: any connection the page opens lands here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []  # each connection's first line: "CONNECT host:443", "GET http://..."
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.requests.append(conn.recv(1024).decode("latin-1").split("\r\n", 1)[0])
            except OSError:
                self.requests.append("?")
            conn.close()


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots, kept after the run


def chromium(html: Path, proxy_port: int, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``html`` with its console logged to stderr; ``mode``: --dump-dom or
    --screenshot=PATH."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed: make test installs Debian's chromium package"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                # the browser's own background traffic off: what reaches the proxy is the page's
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-domain-reliability", "--no-default-browser-check",
                "--disable-client-side-phishing-detection",
                "--disable-features=OptimizationHints,MediaRouter",
                f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{proxy_port}",
                "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=8000",
                "--enable-logging=stderr", "--v=0", "--window-size=1280,4000", *mode, html.as_uri(),
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def chromium_dom(html: Path, proxy_port: int) -> str:
    done = chromium(html, proxy_port, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not errors, errors  # no console error while the page loads and draws
    return done.stdout


# Chromium's own traffic (clock sync, component updates, sign-in), with or without a page.
BROWSER_HOSTS = re.compile(r"\b(?:[\w-]+\.)*(?:google\.com|googleapis\.com|gvt1\.com|gstatic\.com)\b")


def page_fetches(counter: FetchCounter) -> list[str]:
    return [line for line in counter.requests if not BROWSER_HOSTS.search(line)]


PLOTS = ("calls", "cost", "lineage", "spend", "latency", "front")  # every plot a report may hold


def plot_block(dom: str, name: str) -> str:
    """The rendered DOM of one plot: from its div to the next plot's."""
    return dom[dom.index(f'id="plot-{name}"') + 4 :].split('id="plot-', 1)[0]


def assert_drawn(dom: str, name: str) -> None:
    """plotly.js drew the plot: its SVG is there with at least one drawn trace point or line."""
    block = plot_block(dom, name)
    assert "main-svg" in block, f"plot {name} did not render"
    assert re.search(r'class="(?:point|js-line)"', block), f"plot {name} is empty"


def test_the_fetch_counter_sees_a_page_that_fetches(tmp_path: Path) -> None:
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><img src="http://probe.example/x.png"><p>hi</p></body></html>')
    counter = FetchCounter()
    chromium_dom(page, counter.port)
    assert any("probe.example" in line for line in page_fetches(counter)), counter.requests


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("report")
    with LoopbackServer() as server:
        server.handler = model
        config = write_config(folder, server.openai_base)
        done = cli("optimize", str(config), "--json", "--yes")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    out = folder / "out" / "report.html"
    written = cli("report", result["run_id"], "--html", str(out), "--store", str(config))
    assert written.returncode == 0, written.stderr
    return out, result


def test_the_report_is_one_file_that_fetches_nothing(report) -> None:  # type: ignore[no-untyped-def]
    out, _ = report
    html = out.read_text(encoding="utf-8")
    # plotly.js's own source names map-tile hosts (never fetched for these plots): look outside it
    script_end = html.index("</script>")
    html = html[script_end:]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), "a resource from the network"
    assert "<link" not in html
    # score over calls, over cost, the lineage, spend over time, latency; a fewshot run has no front
    assert html.count("Plotly.newPlot") == len(PLOTS) - 1 and 'id="no-front"' in html


def test_a_real_browser_renders_every_plot_offline_and_run_text_stays_text(report) -> None:  # type: ignore[no-untyped-def]
    out, result = report
    counter = FetchCounter()
    dom = chromium_dom(out, counter.port)
    for name in PLOTS[:-1]:
        assert_drawn(dom, name)
    assert page_fetches(counter) == [], "the page tried to fetch something"
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in dom  # shown as text
    assert HOSTILE not in dom  # never as a script element the browser would run
    assert 'id="row-table"' in dom and result["run_id"] in dom
    lineage = plot_block(dom, "lineage")
    assert lineage.count('class="point"') == result["candidates"]  # one node per recorded candidate
    assert re.search(r'<td class="num">~\d+</td>', dom)  # the plan, stored when the run started


def test_the_browsers_screenshot_is_kept_as_an_artifact(report) -> None:  # type: ignore[no-untyped-def]
    out, _ = report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = chromium(out, FetchCounter().port, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # a drawn page


def test_the_report_counts_the_rows_and_shows_the_diff(report) -> None:  # type: ignore[no-untyped-def]
    out, result = report
    html = out.read_text(encoding="utf-8")
    fixed = int(re.search(r"(\d+) fixed</span>", html).group(1))  # type: ignore[union-attr]
    assert fixed > 0 and html.count('<tr class="fixed">') == fixed
    assert '<pre id="diff">' in html and "-&gt; long" in html  # the demos the best prompt added
    assert f"{result['test_best_score']:.3f}" in html


def test_a_programs_report_shows_each_rows_calls(tmp_path: Path) -> None:
    from promptlift.optimize.optimizers import FewShot
    from promptlift.testing.conformance import ProgramConformance

    class Run(ProgramConformance):
        def make_optimizer(self):  # type: ignore[no-untyped-def]
            return FewShot(answer_field="label", max_demos=3, trials=3)

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run("fewshot", {"budget": {"max_calls": 400}})
    Run().run(store=store, run_id=run_id)
    html = render(store.run(run_id), store.candidates(run_id), store.rejected(run_id))
    store.close()
    assert 'id="plan-none"' in html  # started from library code: no plan to compare with
    assert "measure(text=" in html and "label(count=" in html  # the trajectory viewer: the program's calls
    assert "measure.demos" in html  # the diff, per prompt


def test_merge_and_crossover_candidates_have_both_parents() -> None:
    assert parents({"id": 5, "parent": 3, "origin": "merge 3+4"}) == [3, 4]
    assert parents({"id": 5, "parent": 1, "origin": "crossover 1x2"}) == [1, 2]
    assert parents({"id": 5, "parent": 2, "origin": "reflect system"}) == [2]
    rows = lambda *s: {"rows": [{"index": i, "score": v} for i, v in enumerate(s)]}  # noqa: E731
    candidates = [
        {"id": 0, "evaluation": rows(0, 1)},
        {"id": 1, "evaluation": rows(1, 0)},
        {"id": 2, "evaluation": rows(0, 0)},
    ]
    assert front(candidates) == {0, 1}


# -- a reflective Pareto run: rejected proposals, the front, retries, a price ------------------------
USELESS = "Answer carefully and think about the word."
USEFUL = "Count the letters of the word: more than 5 is long, otherwise short."


class ParetoModel:
    """Task and reasoning model behind one endpoint: the first reflection proposes a text that helps
    nothing (rejected on its minibatch), the next one the text that works; the first two requests
    are refused with a 429 (retried), so the call metrics have something to show."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen = 0
        self.reflections = 0

    def __call__(self, request: RecordedRequest) -> Reply:
        from promptlift.testing.replies import rate_limited

        messages = request.json["messages"]
        with self.lock:
            self.seen += 1
            if self.seen <= 2:
                return rate_limited(0)
            if "You improve one part of a prompt" in messages[-1]["content"]:
                self.reflections += 1
                return ok(USELESS if self.reflections == 1 else USEFUL)
        system = " ".join(m["content"] for m in messages if m["role"] == "system")
        word = messages[-1]["content"].split()[1]
        if "Count the letters" in system:
            return ok("long" if len(word) > 5 else "short")
        return ok(HOSTILE if int(word[-1]) % 2 else "unsure")


@pytest.fixture(scope="module")
def pareto_report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pareto-report")
    with LoopbackServer() as server:
        server.handler = ParetoModel()
        config = write_config(folder, server.openai_base)
        text = config.read_text().replace(
            "optimizer: {name: fewshot, params: {max_demos: 3, trials: 4}}",
            "optimizer: {name: pareto, params: {max_metric_calls: 40, minibatch: 3, merge: false}}\n"
            "prices: {openai/fake-task: {input: 1000, output: 2000}}\n"
            "retry: {max_attempts: 4, initial_wait: 0.01, max_wait: 0.02}",
        )
        config.write_text(text)
        done = cli("optimize", str(config), "--json", "--yes")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    out = folder / "report.html"
    written = cli("report", result["run_id"], "--html", str(out), "--store", str(config))
    assert written.returncode == 0, written.stderr
    return out, result


def test_a_pareto_runs_report_draws_every_plot_with_its_rejected_proposals_and_front(pareto_report) -> None:  # type: ignore[no-untyped-def]
    out, result = pareto_report
    assert result["rejected"] >= 1 and result["cost_usd"] > 0
    counter = FetchCounter()
    dom = chromium_dom(out, counter.port)
    assert page_fetches(counter) == [], "the page tried to fetch something"
    for name in PLOTS:
        assert_drawn(dom, name)
    lineage = plot_block(dom, "lineage")
    # one node per recorded candidate: those scored on validation and those rejected on a minibatch
    assert lineage.count('class="point"') == result["candidates"] + result["rejected"]
    assert "rejected before validation" in lineage  # the rejected ones are their own trace
    assert plot_block(dom, "front").count('class="point"') >= 1  # a bar per front candidate
    assert "not better than its parent on the minibatch" in dom and USELESS in dom
    metrics = dom[dom.index('id="call-metrics"') :].split("</table>", 1)[0]
    assert "RateLimited 2" in metrics  # the two refused attempts, retried
    assert re.search(r'<td class="num">~\d+</td>', dom) and 'id="plan-none"' not in dom


def test_the_pareto_reports_screenshot_is_kept_as_an_artifact(pareto_report) -> None:  # type: ignore[no-untyped-def]
    out, _ = pareto_report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-pareto.png"
    shot.unlink(missing_ok=True)
    done = chromium(out, FetchCounter().port, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_multi_objective_runs_front_is_drawn_score_against_length(tmp_path: Path) -> None:
    from promptlift.optimize.optimizers import Evolutionary
    from promptlift.testing.conformance import REASONING_MODEL, OptimizerConformance, synthetic_model

    class Run(OptimizerConformance):
        def make_optimizer(self):  # type: ignore[no-untyped-def]
            return Evolutionary(population=3, generations=2, objectives=["score", "length"])

    texts = iter(f"Answer about word {i}{' carefully' * (i % 4)}." for i in range(1000))

    def model(request):  # type: ignore[no-untyped-def]
        return next(texts) if request.model == REASONING_MODEL else synthetic_model(request)

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run("evolutionary", {})
    result, _ = Run().run(store=store, run_id=run_id, model=model)
    page = tmp_path / "report.html"
    page.write_text(render(store.run(run_id), store.candidates(run_id), store.rejected(run_id)))
    store.close()
    counter = FetchCounter()
    dom = chromium_dom(page, counter.port)
    assert page_fetches(counter) == []
    assert_drawn(dom, "front")
    block = plot_block(dom, "front")
    assert block.count('class="point"') == len(result.history)  # every candidate, the front's joined
    assert "prompt length (tokens)" in block
