"""Per-model endpoints and keys, and the host allow-list, from YAML and the CLI, on the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.config import load_config
from promptlift.optimize.session import prepare
from promptlift.testing.server import LoopbackServer, ok, server_error

EXAMPLE = Path(__file__).parent.parent / "examples" / "sentiment"
SERVED = "openai/loop-positive"
Capture = pytest.CaptureFixture[str]


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FIRST_KEY", "sk-first-from-env-000001")
    monkeypatch.setenv("SECOND_KEY", "sk-second-from-env-00002")


def write_config(tmp_path: Path, head: str) -> Path:
    body = (EXAMPLE / "config.yaml").read_text().replace("model: local/gemma-3-270m\n", head)
    path = tmp_path / "config.yaml"
    path.write_text(body.replace("path: reviews.jsonl", f"path: {EXAMPLE / 'reviews.jsonl'}"))
    return path


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("promptlift: error: "), err
    return lines[0]


# -- models compare --api-base (case 3) -------------------------------------------------------------


def test_compare_api_base_splits_at_the_first_equals_sign(
    tmp_path: Path, loopback: LoopbackServer, capsys: Capture
) -> None:
    loopback.set_default(ok("positive"))
    config = write_config(tmp_path, f"model: {SERVED}\n")
    base = f"{loopback.url}/tenant=a=b/v1"  # a gateway's route with '=' in it
    argv = ["models", "compare", str(config), "--api-base", f"{SERVED}={base}", "--price", f"{SERVED}=1,1"]
    assert main([*argv, "--rows", "validation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["failed_calls"] == 0
    assert len(loopback.requests) == 26  # all to the endpoint given, none to the public one
    assert {r.path for r in loopback.requests} == {"/tenant=a=b/v1/chat/completions"}


def test_a_model_and_value_flag_keeps_a_urls_query_whole() -> None:
    from promptlift.cli.endpoints import model_and_value

    assert model_and_value(f"{SERVED}=http://h:1/v1?x=1&y=2", "--api-base") == (
        SERVED,
        "http://h:1/v1?x=1&y=2",
    )
    assert model_and_value("https://h/v1?x=1", "--api-base") == (None, "https://h/v1?x=1")


@pytest.mark.parametrize(
    "flag",
    [["--api-base", "openai/loop-positve=http://127.0.0.1:9/v1"], ["--price", "openai/loop-positve=1,1"]],
)
def test_compare_refuses_a_flag_for_a_model_that_is_not_compared(
    tmp_path: Path, loopback: LoopbackServer, capsys: Capture, flag: list[str]
) -> None:
    config = write_config(tmp_path, f"model: {SERVED}\napi_base: {loopback.openai_base}\n")
    assert main(["models", "compare", str(config), *flag]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'openai/loop-positve', which is not a model of this run (openai/loop-positive)" in line
    assert loopback.requests == []


def test_compare_refuses_a_url_alone_as_api_base(tmp_path: Path, capsys: Capture) -> None:
    config = write_config(tmp_path, f"model: {SERVED}\n")
    assert main(["models", "compare", str(config), "--api-base", "http://127.0.0.1:9/v1?x=1"]) == 2
    assert "takes MODEL=VALUE" in one_error_line(capsys.readouterr().err)


def test_compare_checks_the_allow_list_before_any_call(
    tmp_path: Path, loopback: LoopbackServer, capsys: Capture
) -> None:
    config = write_config(tmp_path, f"model: {SERVED}\n")
    argv = ["models", "compare", str(config), "--api-base", f"{SERVED}={loopback.openai_base}"]
    assert main([*argv, "--allow-host", "api.openai.com"]) == 2
    assert "is not in the allowed hosts" in one_error_line(capsys.readouterr().err)
    assert loopback.requests == []


# -- YAML: a chain of mappings, allowed_hosts (cases 1 and 2) ---------------------------------------


def test_a_yaml_chain_gives_each_model_its_own_endpoint_and_key_variable(
    tmp_path: Path, loopback: LoopbackServer, other: LoopbackServer
) -> None:
    loopback.set_default(server_error())
    head = (
        "model:\n"
        f"  - {{model: openai/first, api_base: '{loopback.openai_base}', api_key_env: FIRST_KEY}}\n"
        f"  - {{model: openai/second, api_base: '{other.openai_base}', api_key_env: SECOND_KEY,"
        " extra: {seed: 7}}\n"
        "retry: {max_attempts: 1}\n"
        "allowed_hosts: [127.0.0.1]\n"
    )
    config = load_config(write_config(tmp_path, head))
    assert config.models == ("openai/first", "openai/second")
    prepared = prepare(config)
    with prepared.client as client:
        assert client.complete("hi").model == "openai/second"
    assert [r.key for r in loopback.requests] == ["sk-first-from-env-000001"]
    (second,) = other.requests
    assert second.key == "sk-second-from-env-00002" and second.json["seed"] == 7


def test_a_key_in_the_yaml_is_refused_without_quoting_it(tmp_path: Path, capsys: Capture) -> None:
    head = "model: [{model: openai/x, api_key: sk-yaml-secret-0000001}]\n"
    assert main(["optimize", str(write_config(tmp_path, head)), "--dry-run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "api_key_env" in line and "sk-yaml-secret" not in line


def test_yaml_allowed_hosts_refuses_an_endpoint_before_any_call(tmp_path: Path, capsys: Capture) -> None:
    head = (
        "model: {model: openai/x, api_base: 'http://10.1.2.3:8000/v1'}\nallowed_hosts: [.openai.azure.com]\n"
    )
    assert main(["optimize", str(write_config(tmp_path, head)), "--dry-run"]) == 2
    assert "host '10.1.2.3' is not in the allowed hosts" in one_error_line(capsys.readouterr().err)


# -- complete: a chain of mappings, MODEL=URL, --allow-host (cases 1 and 2) ------------------------


def test_complete_takes_each_models_endpoint_and_key_variable(
    loopback: LoopbackServer, other: LoopbackServer, capsys: Capture
) -> None:
    loopback.script(server_error())
    first = f"{{model: openai/first, api_key_env: FIRST_KEY, api_base: '{loopback.openai_base}'}}"
    argv = ["complete", "--model", first, "--model", "{model: openai/second, api_key_env: SECOND_KEY}"]
    argv += ["--api-base", f"openai/second={other.openai_base}", "--max-retries", "0", "--json", "hi"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "openai/second"
    assert [r.key for r in loopback.requests] == ["sk-first-from-env-000001"]
    assert [r.key for r in other.requests] == ["sk-second-from-env-00002"]


def test_complete_allow_host_refuses_an_endpoint_with_one_line(
    loopback: LoopbackServer, capsys: Capture
) -> None:
    argv = [
        "complete",
        "--model",
        "openai/x",
        "--api-base",
        loopback.openai_base,
        "--allow-host",
        "api.openai.com",
    ]
    assert main([*argv, "hi"]) == 2
    assert "host '127.0.0.1' is not in the allowed hosts" in one_error_line(capsys.readouterr().err)
    assert loopback.requests == []


def test_complete_refuses_an_api_base_for_a_model_not_in_the_chain(
    loopback: LoopbackServer, capsys: Capture
) -> None:
    argv = ["complete", "--model", "openai/x", "--api-base", f"openai/y={loopback.openai_base}", "hi"]
    assert main(argv) == 2
    assert "'openai/y', which is not a model of this run" in one_error_line(capsys.readouterr().err)
    assert loopback.requests == []


def test_eval_and_batch_take_allow_host(tmp_path: Path, loopback: LoopbackServer, capsys: Capture) -> None:
    config = write_config(tmp_path, f"model: openai/x\napi_base: '{loopback.openai_base}'\n")
    assert main(["eval", str(config), "--allow-host", "api.openai.com"]) == 2
    assert "host '127.0.0.1' is not in the allowed hosts" in one_error_line(capsys.readouterr().err)
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"id": 1, "prompt": "hi"}\n')
    argv = ["batch", "--input", str(lines), "--output", str(tmp_path / "out.jsonl"), "--model", "openai/x"]
    argv += ["--api-base", loopback.openai_base, "--no-cache", "--allow-host", ".openai.azure.com"]
    assert main(argv) == 2
    assert "host '127.0.0.1' is not in the allowed hosts" in one_error_line(capsys.readouterr().err)
    assert loopback.requests == []
