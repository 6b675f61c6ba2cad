"""A user's own optimizer: registered by name, or named ``module:Class`` in a config beside it; the
shipped conformance suite runs on it as on the built-ins; every mistake is one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from promptlift.errors import ConfigError
from promptlift.optimize.config import load_config
from promptlift.optimize.optimizers import OPTIMIZERS, Optimizer, build_optimizer, register_optimizer
from promptlift.optimize.plan import make_plan
from promptlift.testing.conformance import OptimizerConformance

HERE = Path(__file__).resolve().parent / "data" / "user_optimizer"
sys.path.insert(0, str(HERE))
from hint import Hint  # noqa: E402


class TestHintConformance(OptimizerConformance):
    """The user's optimizer keeps the contract: budgets, stop rules, no test leak, a seed, history."""

    def make_optimizer(self) -> Optimizer:
        return Hint(hints=["Be careful.", "Count the letters of the word."])


def test_the_suite_finds_the_users_gain() -> None:
    result, _ = TestHintConformance().run()
    assert result.best.prompt.system.endswith("Count the letters of the word.")
    assert result.best_test.mean > result.initial_test.mean


def write_config(folder: Path, optimizer: object) -> Path:
    (folder / "hint.py").write_text((HERE / "hint.py").read_text())
    (folder / "rows.jsonl").write_text("".join(f'{{"text": "w{i}", "label": "short"}}\n' for i in range(12)))
    config = {
        "model": "openai/any",
        "api_base": "http://127.0.0.1:9/v1",
        "prompt": {"system": "Label the word.", "user": "{text}"},
        "dataset": {"path": "rows.jsonl"},
        "metric": {"type": "exact_match", "field": "label"},
        "optimizer": optimizer,
        "budget": {"max_calls": 100},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def test_a_config_names_a_users_optimizer_by_module_and_class(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"name": "hint:Hint", "params": {"hints": ["One.", "Two."]}})
    config = load_config(path)
    assert config.optimizers[0].name == "hint:Hint"
    plan = make_plan(config)
    assert "cannot estimate this optimizer's own calls" in plan.render()


@pytest.mark.parametrize(
    ("optimizer", "says"),
    [
        ({"name": "hint:Nope"}, "`optimizer.name`"),
        ({"name": "nomodule:Hint"}, "cannot import 'nomodule'"),
        ({"name": "yaml:safe_load"}, "is not an Optimizer subclass"),
        ({"name": "hint:Hint", "params": {"hint": ["x"]}}, "`optimizer.params.hint`"),
        ({"name": "hint:Hint", "params": {"hints": "x"}}, "`optimizer.params.hints`"),
        ({"name": "hnt"}, "or module:Class"),
    ],
)
def test_a_bad_user_optimizer_is_one_line(tmp_path: Path, optimizer: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, optimizer))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_register_optimizer_makes_a_name_and_refuses_a_taken_one() -> None:
    class Renamed(Hint):
        name: ClassVar[str] = "hint_registered"

    try:
        assert register_optimizer(Renamed) is Renamed
        assert isinstance(build_optimizer("hint_registered", {"hints": ["A."]}), Renamed)
        with pytest.raises(ConfigError, match="taken by FewShot"):
            register_optimizer(type("Clash", (Hint,), {"name": "fewshot"}))
        with pytest.raises(ConfigError, match="not an Optimizer subclass"):
            register_optimizer(dict)  # type: ignore[arg-type]
    finally:
        OPTIMIZERS.pop("hint_registered", None)
    assert OPTIMIZERS["fewshot"].__name__ == "FewShot"
