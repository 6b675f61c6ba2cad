"""The user guide (docs/*.md) as written: every example in it runs, every link resolves, and the
troubleshooting page covers exactly the exceptions promptlift defines.

Each fenced block of a guide page is an example, tested by its language:

- ``yaml``: a config, written into a copy of ``examples/`` and loaded by the real loader; then
  ``promptlift optimize --dry-run`` plans it (no call is made).
- ``python``: executed in a fresh namespace, from a copy of the repository's ``examples/`` folder,
  with every provider's base URL pointed at a loopback server (``promptlift.testing.server``) and a
  made-up key in each provider's variable. The example hosts a page shows (``HOSTS``) are rewritten
  to that server. Where the paragraph after the block says "prints `X`" (or "then `Y`"), X and Y
  are checked against what the block printed.
- ``sh`` / ``console``: every ``promptlift ...`` line is parsed by the real CLI parser; ``make X``
  must be a Makefile target and ``pip install 'promptlift[E]'`` an extra of pyproject.toml.
- ``json``: every line parses. ``text`` blocks are output samples and trees, not examples.

An HTML comment right before a block, ``<!-- doc-test: WORDS -->``, says how to run it. The words:

- ``fragment``: a part of a config, merged over ``BASE`` (or, with ``in DIR``, over DIR's
  ``config.yaml``), then loaded and planned;
- ``load-only``: loaded, not planned (its fields are not in the data the test has);
- ``in DIR``: run in that folder of the copy of ``examples/`` (its files beside the config);
- ``file NAME``: a file the page has the reader write (getting-started): written, then used by the
  page's ``run`` blocks;
- ``run``: a ``console`` block whose commands run in order, in the folder of the page's files
  (getting-started only; the one change: the config's embedded model is replaced by an
  ``openai/`` model on the loopback server, so the whole flow takes a second, not a minute);
- ``model``: runs the embedded model (``pytest.mark.model``).

Python blocks ``in examples/agent`` get the agent example's scripted tool-calling model
(``examples/agent/scripted.py``) as the server's handler.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import promptlift.errors as errors_module
from promptlift.cli import build_parser, main
from promptlift.optimize.config import load_config
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDE = (
    "getting-started.md",
    "providers.md",
    "optimizers.md",
    "programs-and-agents.md",
    "reliability.md",
    "security.md",
    "troubleshooting.md",
)
BLOCK = re.compile(  # an optional marker comment, the fence and its language, the body, the next line
    r"^(?:<!-- doc-test: (?P<mark>[^>]*?) -->\n)?"
    r"```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*\n(?=\s*(?P<after>(?:[^\n]+\n)*))",
    re.M | re.S,
)
BASE: dict[str, Any] = {  # what a fragment is merged over: the bundled sentiment example's essentials
    "prompt": {"system": "Classify the sentiment of the review.", "user": "Review: {text}\nSentiment:"},
    "dataset": {"path": "{examples}/sentiment/reviews.jsonl"},
    "metric": {"type": "exact_match", "field": "label"},
}
KEYS = {  # made-up keys, one per variable a page's examples read
    "OPENAI_API_KEY": "sk-docs-guide-000000000001",
    "AZURE_API_KEY": "az-docs-guide-000000000001",
    "ANTHROPIC_API_KEY": "sk-ant-docs-guide-0000001",
    "GEMINI_API_KEY": "gm-docs-guide-000000000001",
    "LITELLM_PROXY_KEY": "sk-proxy-docs-guide-00001",
}
HOSTS = {  # example endpoints the pages show -> the loopback server ("{url}" or "{openai}")
    "https://my-resource.openai.azure.com": "{url}",
    "http://localhost:8000/v1": "{openai}",
    "http://localhost:4000": "{url}",
}
LANGS = {"yaml", "python", "sh", "console", "json", "text"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    marks: tuple[str, ...]
    after: str  # the paragraph after the block

    def has(self, word: str) -> bool:
        return word in self.marks

    def value(self, word: str) -> str | None:
        marks = list(self.marks)
        return marks[marks.index(word) + 1] if word in marks else None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [
        Block(
            page,
            text.count("\n", 0, m.start("body")),
            m["lang"],
            m["body"],
            tuple((m["mark"] or "").split()),
            m["after"],
        )
        for m in BLOCK.finditer(text)
    ]


ALL = [b for page in GUIDE for b in blocks(page)]


def of(*langs: str, skip: str | None = None) -> list[Any]:
    out = []
    for b in ALL:
        if b.lang in langs and not (skip and b.has(skip)):
            marks = [pytest.mark.model] if b.has("model") else []
            out.append(pytest.param(b, id=b.id, marks=marks))
    return out


# -- the sandbox every example runs in -------------------------------------------------------------
@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of examples/ (no runs, no caches); the cwd is restored and new modules forgotten after."""
    shutil.copytree(
        ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md")
    )
    modules = set(sys.modules)
    path = list(sys.path)
    yield tmp_path
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]


def where(block: Block, root: Path) -> Path:
    folder = block.value("in")
    return root / folder if folder else root


def config_text(block: Block, root: Path) -> str:
    if not block.has("fragment"):
        return block.body
    folder = block.value("in")
    base = (
        yaml.safe_load((root / folder / "config.yaml").read_text())
        if folder
        else json.loads(json.dumps(BASE).replace("{examples}", str(root / "examples")))
    )
    return yaml.safe_dump({**base, **yaml.safe_load(block.body)})


@pytest.fixture
def providers_on_loopback(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_BASE", loopback.openai_base)
    for name in ("ANTHROPIC_API_BASE", "GEMINI_API_BASE", "AZURE_API_BASE"):
        monkeypatch.setenv(name, loopback.url)
    return loopback


def on_loopback(code: str, server: LoopbackServer) -> str:
    for host, to in HOSTS.items():
        code = code.replace(host, to.format(url=server.url, openai=server.openai_base))
    return code


# -- the examples ------------------------------------------------------------------------------
def test_every_block_is_of_a_kind_this_file_tests() -> None:
    assert len(ALL) > 30, "the guide's blocks were not found"
    for b in ALL:
        assert b.lang in LANGS, f"{b.id}: a ```{b.lang} block is tested by nothing"
        assert set(b.marks) <= {"fragment", "load-only", "in", "file", "run", "model", *b.marks[1:]}, b.id


@pytest.mark.parametrize("block", of("yaml", skip="file"))
def test_every_config_loads_and_plans(
    block: Block, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = where(block, sandbox) / "doc-config.yaml"
    path.write_text(config_text(block, sandbox), encoding="utf-8")
    load_config(path)
    if block.has("load-only"):
        return
    code = main(["optimize", str(path), "--dry-run", "--json"])
    assert code == 0, f"{block.id}: {capsys.readouterr().err}"
    assert json.loads(capsys.readouterr().out)["stages"], block.id


@pytest.mark.parametrize("block", of("python", skip="file"))
def test_every_python_example_runs(
    block: Block,
    sandbox: Path,
    providers_on_loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = providers_on_loopback
    folder = where(block, sandbox)
    monkeypatch.chdir(folder)
    sys.path.insert(0, str(folder))  # as `python example.py` run in that folder would
    if block.value("in") == "examples/agent":
        from scripted import handle  # the agent example's scripted model, from the sandbox copy

        server.handler = handle
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(on_loopback(block.body, server), block.id, "exec"), {"__name__": "__doc_example__"})
    own_provider = re.search(r"\bprovider=", block.body)  # a test double, not the loopback server
    if ".complete(" in block.body and not own_provider and not block.has("model"):
        assert server.requests, f"{block.id}: the example made no call"
    if "credential_provider=" in block.body:  # the page says the token goes as a bearer token
        assert server.requests[-1].headers["authorization"].startswith("Bearer eyJ"), block.id
    for claim in re.findall(r"(?:prints|then)\s+`([^`]+)`", block.after):
        assert claim in out.getvalue(), (
            f"{block.id}: the page says it prints {claim!r}; it printed {out.getvalue()!r}"
        )


def commands(block: Block) -> list[list[str]]:
    out = []
    for line in block.body.splitlines():
        line = line.removeprefix("$ ").strip()
        if line:
            out.append(shlex.split(line, comments=True))
    return [c for c in out if c]


EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


@pytest.mark.parametrize("block", of("sh", "console"))
def test_every_command_parses(
    block: Block, sandbox: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parsed by the real parser; an `optimize` of a config the repository has is also planned
    (`--dry-run`, from a copy of the repository's examples: no call, nothing written)."""
    parser = build_parser()
    makefile = (ROOT / "Makefile").read_text()
    monkeypatch.chdir(sandbox)
    for argv in commands(block):
        if argv[0] == "promptlift":
            try:
                parser.parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{block.id}: the CLI refuses {shlex.join(argv)}")
            if argv[1] == "optimize" and (ROOT / argv[2]).is_file() and not block.has("run"):
                # a page's run id is made up: the sandbox's store has no such run (a dry run checks)
                planned = _without_resume(argv[1:])
                assert main([*planned, "--dry-run"]) == 0, f"{block.id}: {capsys.readouterr().err}"
        elif argv[0] == "make":
            assert re.search(rf"^{argv[1]}:", makefile, re.M), f"{block.id}: no make target {argv[1]}"
        elif argv[:2] == ["pip", "install"]:
            for extra in re.findall(r"promptlift\[([\w,]+)\]", " ".join(argv)):
                assert set(extra.split(",")) <= EXTRAS, f"{block.id}: no extra {extra}"
        else:
            pytest.fail(f"{block.id}: {argv[0]} is not a command this test knows how to check")


def _without_resume(argv: list[str]) -> list[str]:
    """``optimize CONFIG --resume RUN_ID [--new-run]`` planned as ``optimize CONFIG``."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--resume":
            next(words, None)
        elif not word.startswith(("--resume=", "--new-run")):
            out.append(word)
    return out


def subcommand(
    parser: argparse.ArgumentParser, words: list[str]
) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)command parser the leading words name, and the words left."""
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def test_every_inline_command_and_extra_exists() -> None:
    """`promptlift COMMAND ...` and `pip install 'promptlift[EXTRA]'` in the pages' prose: the
    command exists and takes every flag named beside it (prose names commands without all their
    arguments, so it is not parsed whole)."""
    for page in GUIDE:
        text = re.sub(r"```.*?```", "", (DOCS / page).read_text(encoding="utf-8"), flags=re.S)
        for span in re.findall(r"`(promptlift [a-z][^`]*)`", text):
            argv = shlex.split(span)
            parser, rest = subcommand(build_parser(), argv[1:])
            assert parser.prog != "promptlift", f"{page}: `{span}`: no such command"
            flags = {o for a in parser._actions for o in a.option_strings}
            for word in rest:
                if word.startswith("--"):
                    assert word.split("=")[0] in flags, f"{page}: `{span}`: {parser.prog} has no {word}"
        for extra in re.findall(r"promptlift\[([\w,]+)\]", text):
            assert set(extra.split(",")) <= EXTRAS, f"{page}: no extra {extra}"


@pytest.mark.parametrize("block", of("json"))
def test_every_json_block_parses(block: Block) -> None:
    for line in block.body.splitlines():
        json.loads(line)


# -- getting started, end to end -----------------------------------------------------------------
def test_getting_started_runs_as_written(
    tmp_path: Path,
    providers_on_loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The files the page has you write, then its commands in order; the shown plan is the real one."""
    page = blocks("getting-started.md")
    files = {b.value("file"): b.body for b in page if b.has("file")}
    assert {"tickets.jsonl", "route_metric.py", "config.yaml"} <= set(files)
    for name, body in files.items():
        (tmp_path / str(name)).write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    # the plan as the page shows it, from the config as written (no call: the embedded model is not loaded)
    assert main(["optimize", "config.yaml", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    shown = next(b.body for b in page if b.lang == "text" and b.body.startswith("plan:"))
    assert plan == shown

    config = (tmp_path / "config.yaml").read_text()
    assert config.startswith("model: local/gemma-3-270m\n")
    (tmp_path / "config.yaml").write_text(config.replace("local/gemma-3-270m", "openai/gpt-4o-mini", 1))
    run_id = None
    ran = []
    for block in (b for b in page if b.has("run")):
        for argv in commands(block):
            assert argv[0] == "promptlift", block.id
            if "RUN_ID" in argv:
                if run_id is None:
                    store = RunStore(tmp_path / "runs", create=False)
                    run_id = store.runs()[0]["id"]
                    store.close()
                argv = [run_id if a == "RUN_ID" else a for a in argv]
            code = main(argv[1:])
            assert code == 0, f"{block.id}: {shlex.join(argv)} exited {code}: {capsys.readouterr().err}"
            ran.append(argv[1])
    assert ran[:2] == ["optimize", "optimize"] and "report" in ran and ran.count("eval") == 2
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "best" / "best.yaml").is_file()
    assert server_saw_the_run(providers_on_loopback)


def server_saw_the_run(server: LoopbackServer) -> bool:
    return any("Ticket:" in json.dumps(r.json) for r in server.requests)


# -- troubleshooting covers every exception --------------------------------------------------------
def exception_classes() -> set[str]:
    return {
        name
        for name, obj in vars(errors_module).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors_module.__name__
    }


def test_troubleshooting_has_a_section_for_every_exception_and_no_other() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^### `(\w+)`", text, flags=re.M))
    assert exception_classes() - sections == set(), "exceptions without a section"
    assert sections - exception_classes() == set(), "sections for classes promptlift.errors does not have"


def test_every_exception_class_is_drawn_in_the_errors_module_tree() -> None:
    doc = errors_module.__doc__ or ""
    drawn = set(re.findall(r"[├└]── (\w+)", doc)) | {"PromptliftError"}
    assert drawn == exception_classes()


# -- links --------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_resolves(page: Path) -> None:
    for target in links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.is_file(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(dest), f"{page.name}: link to {target}: no such heading"


def test_the_readme_links_every_guide_page() -> None:
    linked = {t.partition("#")[0] for t in links(ROOT / "README.md")}
    assert {f"docs/{p}" for p in (*GUIDE, "configuration.md", "scale.md")} <= linked


def test_the_link_checker_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    page.write_text("# Title\n\n[x](b.md#nope) [y](#title) [z](c.md)\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert links(page) == ["b.md#nope", "#title", "c.md"]
    assert "nope" not in anchors(tmp_path / "b.md") and "title" in anchors(page)
    assert slug("`metric: exact_match`") == "metric-exact_match"
