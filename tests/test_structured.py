"""Structured output: a prompt's JSON schema (a mapping or a pydantic model), its YAML and what an
export loads back, the answer parsed and validated, the evaluator scoring a broken answer 0 without
calling the metric, the json_fields metric, and the schema reaching OpenAI, Anthropic and Gemini
through the real Client, real LiteLLM and the loopback server."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from promptlift import Client, ClientConfig, Secret
from promptlift.errors import ConfigError
from promptlift.optimize.config import load_config
from promptlift.optimize.dataset import Row
from promptlift.optimize.evaluation import NOT_VALID_JSON, Evaluation, Evaluator
from promptlift.optimize.json_metrics import FieldMatch, JsonFields
from promptlift.optimize.metrics import Score, check_metric, metric_fields, metric_from_config
from promptlift.optimize.optimizers.fewshot import demo_answer
from promptlift.optimize.plan import tool_tokens
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.session import load_splits
from promptlift.optimize.structured import OutputSchema, extract_json
from promptlift.optimize.tools import Tool
from promptlift.testing import FunctionProvider
from promptlift.testing.server import LoopbackServer, ok

ORDER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
                "required": ["name", "price"],
            },
        },
    },
    "required": ["customer", "items"],
}
SCHEMA = OutputSchema("order", ORDER)
GOOD = '{"customer": "Ada", "items": [{"name": "tea", "price": 3.5}]}'


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"  {GOOD}\n",
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here is the order:\n```json\n{GOOD}\n```\nAnything else?",
        f"Sure! {GOOD} Hope that helps.",
        f"The answer {{is below}}: {GOOD}",  # a brace that starts no JSON is passed over
    ],
)
def test_parse_reads_the_object_through_fences_and_prose(text: str) -> None:
    parsed = SCHEMA.parse(text)
    assert parsed.ok and parsed.error == ""
    assert parsed.value == json.loads(GOOD)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the output is empty"),
        ("I cannot tell.", "no JSON object found (Expecting value at character 0)"),
        ('{"customer": "Ada", "items": [', "no JSON object found"),
        ('{"customer": "Ada"}', "$: 'items' is a required property"),
        (
            '{"customer": "Ada", "items": [{"name": "a", "price": 1}, {"name": "b", "price": 2}, '
            '{"name": "c", "price": "x"}]}',
            "$.items[2].price: 'x' is not of type 'number'",
        ),
        ('```json\n{"customer": 7, "items": []}\n```', "$.customer: 7 is not of type 'string'"),
        ("[1, 2]", "$: [1, 2] is not of type 'object'"),
    ],
)
def test_parse_failures_are_one_line_naming_the_failing_path(text: str, error: str) -> None:
    parsed = SCHEMA.parse(text)
    assert not parsed.ok and parsed.value is None
    assert parsed.error.startswith(error), parsed.error
    assert "\n" not in parsed.error


def test_extract_json_applies_no_schema() -> None:
    assert extract_json("x = [1, 2] and more").value == [1, 2]
    assert extract_json('"just text"').value == "just text"
    assert not extract_json("nothing here").ok


class Item(pydantic.BaseModel):
    name: str
    price: float


class Order(pydantic.BaseModel):
    customer: str
    items: list[Item]


def test_a_pydantic_model_becomes_its_json_schema_and_validates_nested_models() -> None:
    schema = OutputSchema.of(Order, strict=True)
    assert schema.name == "Order" and schema.strict
    assert schema.schema == Order.model_json_schema()  # nested models by $ref into $defs
    assert schema.parse(GOOD).value == json.loads(GOOD)
    bad = schema.parse('{"customer": "Ada", "items": [{"name": "tea"}]}')
    assert bad.error == "$.items[0]: 'price' is a required property"
    assert schema.response_format() == {
        "type": "json_schema",
        "json_schema": {"name": "Order", "schema": Order.model_json_schema(), "strict": True},
    }


def test_output_schema_of_a_mapping_and_its_refusals() -> None:
    assert OutputSchema.of(ORDER).name == "output"
    assert OutputSchema.of({**ORDER, "title": "My order!"}).name == "My_order_"
    assert OutputSchema.of(SCHEMA) is SCHEMA
    with pytest.raises(ConfigError, match="type: object"):
        OutputSchema.of({"type": "array"})
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        OutputSchema.of({"type": "object", "properties": {"a": {"type": "integr"}}})
    with pytest.raises(ConfigError, match="output schema name 'two words'"):
        OutputSchema.of(ORDER, name="two words")
    with pytest.raises(ConfigError, match="pydantic model class, got int"):
        OutputSchema.of(3)


# -- the prompt ------------------------------------------------------------------------------------
def test_the_schema_is_part_of_the_prompts_identity_and_round_trips() -> None:
    plain = Prompt(user="Order: {text}", system="Extract the order.")
    structured = plain.replace(output_schema=SCHEMA)
    assert set(plain.to_dict()) == {"system", "user", "demos", "params"}  # unchanged without a schema
    assert structured.to_dict()["output_schema"] == {"name": "order", "schema": ORDER, "strict": False}
    assert structured.key() != plain.key()
    assert (
        structured.key() != structured.replace(output_schema=OutputSchema("order", ORDER, strict=True)).key()
    )
    back = Prompt.from_dict(json.loads(json.dumps(structured.to_dict())))
    assert back == structured and back.key() == structured.key()
    assert Prompt(user="{text}", output_schema=Order).output_schema == OutputSchema.of(Order)  # type: ignore[arg-type]
    assert "[output schema order]" in structured.describe()


def test_from_dict_takes_the_exported_shape_or_a_bare_schema() -> None:
    assert Prompt.from_dict({"user": "{text}", "output_schema": ORDER}).output_schema == OutputSchema(
        "output", ORDER
    )
    assert OutputSchema.from_dict(SCHEMA.to_dict()) == SCHEMA
    with pytest.raises(ConfigError, match=r"`output_schema.strict` must be true or false"):
        OutputSchema.from_dict({"schema": ORDER, "strict": "yes"})


def test_a_response_format_param_beside_a_schema_is_refused() -> None:
    with pytest.raises(ConfigError, match="drop the param"):
        Prompt(user="{text}", params={"response_format": {"type": "json_object"}}, output_schema=SCHEMA)
    assert Prompt(user="{text}", params={"response_format": {"type": "json_object"}}).output_schema is None


def test_every_task_call_carries_the_schema_as_its_response_format() -> None:
    prompt = Prompt(user="{text}", params={"max_tokens": 50}, output_schema=SCHEMA)
    assert prompt.request_params() == {
        "temperature": 0.0,
        "max_tokens": 50,
        "response_format": SCHEMA.response_format(),
    }
    assert "response_format" not in Prompt(user="{text}").request_params()


def test_the_plan_counts_the_schemas_tokens_on_every_call() -> None:
    plain = Prompt(user="{text}")
    assert tool_tokens(plain) == 0
    assert tool_tokens(plain.replace(output_schema=SCHEMA)) > len(json.dumps(ORDER)) // 8


# -- YAML ------------------------------------------------------------------------------------------
def write_config(
    tmp_path: Path, prompt_yaml: str, metric: str = "{type: exact_match, field: customer}"
) -> Path:
    (tmp_path / "data.jsonl").write_text(
        "\n".join(json.dumps({"text": f"order {i}", "customer": "Ada", "total": i}) for i in range(8))
    )
    path = tmp_path / "config.yaml"
    body = textwrap.indent(textwrap.dedent(prompt_yaml).strip(), "  ")
    path.write_text(
        f"model: openai/gpt-4o-mini\nprompt:\n{body}\ndataset: {{path: data.jsonl}}\nmetric: {metric}\n"
    )
    return path


def test_yaml_takes_a_bare_json_schema_or_one_with_its_name_and_strict_flag(tmp_path: Path) -> None:
    bare = load_config(
        write_config(
            tmp_path,
            """
            user: "Order: {text}"
            output_schema:
              type: object
              properties: {customer: {type: string}, total: {type: number}}
              required: [customer]
            """,
        )
    ).prompt
    assert bare.output_schema == OutputSchema(
        "output",
        {
            "type": "object",
            "properties": {"customer": {"type": "string"}, "total": {"type": "number"}},
            "required": ["customer"],
        },
    )
    wrapped = load_config(
        write_config(
            tmp_path,
            """
            user: "Order: {text}"
            output_schema:
              name: order
              strict: true
              schema: {type: object, properties: {customer: {type: string}}}
            """,
        )
    ).prompt
    assert wrapped.output_schema is not None
    assert (wrapped.output_schema.name, wrapped.output_schema.strict) == ("order", True)


@pytest.mark.parametrize(
    ("prompt_yaml", "message"),
    [
        (
            "output_schema: {type: object, properties: {age: {type: integr}}}",
            r"`prompt.output_schema.properties.age.type` is not a valid JSON schema: 'integr' is not valid",
        ),
        (
            "output_schema: {schema: {type: object, required: customer}}",
            r"`prompt.output_schema.schema.required` is not a valid JSON schema",
        ),
        ("output_schema: {type: array}", r"`prompt.output_schema` must be a schema of `type: object`"),
        ("output_schema: [customer]", r"`prompt.output_schema` must be a JSON schema"),
        (
            "output_schema: {schema: {type: object}, strct: true}",
            r"`prompt.output_schema.strct`; did you mean `strict`",
        ),
        (
            "output_schema: {schema: {type: object}, strict: yes please}",
            r"`prompt.output_schema.strict` must be true",
        ),
        (
            "output_schema: {schema: {type: object}, name: a b}",
            r"`prompt.output_schema`: output schema name 'a b'",
        ),
        (
            "output_schema: {type: object}\nparams: {response_format: {type: json_object}}",
            r"`prompt.params.response_format`: the prompt has an `output_schema`",
        ),
    ],
)
def test_a_bad_output_schema_in_yaml_is_one_line_naming_its_key(
    tmp_path: Path, prompt_yaml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write_config(tmp_path, 'user: "Order: {text}"\n' + prompt_yaml))
    assert "\n" not in str(caught.value) and "config.yaml" in str(caught.value)


def test_what_a_run_exports_pastes_into_the_next_config_unchanged(tmp_path: Path) -> None:
    prompt = Prompt(
        user="Order: {text}",
        system="Extract it.",
        params={"max_tokens": 80},
        output_schema=OutputSchema.of(Order),
    )
    exported = json.loads(json.dumps(prompt.to_dict()))  # best_prompt in --json
    path = write_config(tmp_path, yaml.safe_dump(exported, sort_keys=False))
    loaded = load_config(path).prompt
    assert loaded == prompt and loaded.key() == prompt.key()
    assert loaded.to_dict() == exported


# -- the evaluator ---------------------------------------------------------------------------------
class Counting:
    """A metric that counts the outputs it was given."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, row: Row, output: str) -> Score:
        self.seen.append(output)
        return Score(1.0)


def evaluate(prompt: Prompt, answers: dict[str, str], metric: Any) -> tuple[Evaluation, FunctionProvider]:
    provider = FunctionProvider(lambda request: answers[request.messages[-1].text])
    data = [Row(i, {"text": text}) for i, text in enumerate(answers)]
    with Client(ClientConfig(models=("scripted/task",)), provider=provider) as client:
        return asyncio.run(Evaluator(client, metric).evaluate(prompt, data)), provider


def test_an_answer_that_is_not_valid_json_for_the_schema_scores_0_and_the_metric_never_sees_it() -> None:
    prompt = Prompt(user="{text}", output_schema=SCHEMA)
    answers = {
        "a": f"```json\n{GOOD}\n```",
        "b": "I could not find an order.",
        "c": '{"customer": "Bo", "items": [{"name": "jam", "price": "cheap"}]}',
    }
    metric = Counting()
    evaluation, provider = evaluate(prompt, answers, metric)
    assert metric.seen == [answers["a"]]  # the valid answer only, as the text the model gave
    assert evaluation.scores == [1.0, 0.0, 0.0]
    good, prose, wrong = evaluation.rows
    assert good.reason == "" and good.output == answers["a"]
    assert prose.reason.startswith(f"{NOT_VALID_JSON}: no JSON object found")
    assert wrong.reason == f"{NOT_VALID_JSON}: $.items[0].price: 'cheap' is not of type 'number'"
    assert wrong.error == "" and wrong.output == answers["c"]  # kept for reflection to read
    assert all(r.response_format == SCHEMA.response_format() for r in provider.requests)


def test_without_a_schema_the_same_answers_all_reach_the_metric() -> None:
    answers = {"a": GOOD, "b": "I could not find an order."}
    metric = Counting()
    evaluation, provider = evaluate(Prompt(user="{text}"), answers, metric)
    assert metric.seen == list(answers.values()) and evaluation.scores == [1.0, 1.0]
    assert all(r.response_format is None for r in provider.requests)


def test_json_fields_scores_valid_answers_in_the_evaluator() -> None:
    prompt = Prompt(user="{text}", output_schema=SCHEMA)
    metric = JsonFields({"customer": FieldMatch("text")})
    answers = {"Ada": GOOD, "Bo": GOOD}
    evaluation, _ = evaluate(prompt, answers, metric)
    assert evaluation.scores == [1.0, 0.0]
    assert evaluation.rows[1].reason == 'customer: expected "Bo", got "Ada"'


# -- json_fields -----------------------------------------------------------------------------------
ROW = Row(
    0,
    {
        "city": "Oslo",
        "total": "12.50",
        "tags": '["red", "blue", "green"]',
        "count": 3,
        "zip": "0150",
        "note": "fragile",
        "order": {"id": 7},
    },
)


def score(fields: dict[str, Any], answer: dict[str, Any] | str) -> Score:
    metric = metric_from_config({"type": "json_fields", "fields": fields})
    return metric(ROW, answer if isinstance(answer, str) else json.dumps(answer))


def test_json_fields_exact_matches_values_ignoring_case_and_numbers_as_numbers() -> None:
    assert score({"city": "city", "count": "count"}, {"city": " oslo ", "count": 3.0}).value == 1.0
    assert score({"count": "count"}, {"count": "3"}).value == 0.0  # a string is not the number 3
    assert score({"order": {}}, {"order": {"id": 7}}).value == 1.0  # expected defaults to the same name
    missed = score({"city": "city"}, {"city": "Bergen"})
    assert missed == Score(0.0, 'city: expected "Oslo", got "Bergen"')


def test_json_fields_numeric_within_a_tolerance() -> None:
    assert score({"total": {"match": "numeric"}}, {"total": 12.5}).value == 1.0
    assert score({"total": {"match": "numeric"}}, {"total": "12.5"}).value == 1.0
    assert score({"total": {"match": "numeric"}}, {"total": 12.51}).value == 0.0
    assert score({"total": {"match": "numeric", "abs_tol": 0.02}}, {"total": 12.51}).value == 1.0
    assert score({"total": {"match": "numeric", "rel_tol": 0.1}}, {"total": 13.6}).value == 1.0
    assert score({"total": {"match": "numeric", "rel_tol": 0.1}}, {"total": 14}).value == 0.0
    assert (
        score({"total": {"match": "numeric"}}, {"total": "a lot"}).reason
        == 'total: expected "12.50", got "a lot"'
    )


def test_json_fields_set_is_the_overlap_of_lists() -> None:
    assert score({"tags": {"match": "set"}}, {"tags": ["Green", "red", "blue"]}).value == 1.0
    half = score({"tags": {"match": "set"}}, {"tags": ["red", "blue", "pink", "green", "black", "white"]})
    assert half.value == pytest.approx(0.5)  # 3 shared of 6 in all
    assert half.reason.endswith("(overlap 0.50)")
    assert score({"tags": {"match": "set"}}, {"tags": "red, blue"}).value == pytest.approx(2 / 3)
    assert score({"tags": {"match": "set"}}, {"tags": []}).value == 0.0


def test_json_fields_contains_text_or_an_item() -> None:
    assert score({"note": {"match": "contains"}}, {"note": "Handle with care: FRAGILE."}).value == 1.0
    assert score({"note": {"match": "contains"}}, {"note": ["heavy", "fragile"]}).value == 1.0
    assert score({"note": {"match": "contains"}}, {"note": "sturdy"}).value == 0.0


def test_json_fields_weights_missing_fields_and_nested_paths() -> None:
    fields = {
        "city": {"expected": "city", "weight": 3},
        "address.zip": {"expected": "zip"},
        "items.0.count": {"expected": "count"},
    }
    assert score(fields, {"city": "Oslo", "address": {"zip": "0150"}, "items": [{"count": 3}]}).value == 1.0
    partial = score(fields, {"city": "Oslo", "address": {}, "items": [{"count": 4}]})
    assert partial.value == pytest.approx(3 / 5)
    assert partial.reason == 'address.zip: missing (expected "0150"); items.0.count: expected 3, got 4'
    assert score({"address.zip": "zip"}, {"address.zip": "0150"}).value == 1.0  # a dotted key as written
    weighted = score({"city": {"weight": 0}, "count": {"weight": 1}}, {"city": "Rome", "count": 3})
    assert weighted.value == 1.0


def test_json_fields_on_an_answer_that_is_not_json_or_a_row_without_the_field() -> None:
    assert score({"city": "city"}, "Oslo, I think.").value == 0.0
    assert score({"city": "city"}, "Oslo, I think.").reason.startswith("output is not JSON: no JSON object")
    assert score({"city": "city"}, '["Oslo"]') == Score(0.0, 'city: missing (expected "Oslo")')
    with pytest.raises(ConfigError, match=r"'cty', which row 1 does not have.*did you mean `city`"):
        score({"city": "cty"}, {"city": "Oslo"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, r"`metric.fields` must be a mapping of answer fields"),
        (
            {"city": {"match": "fuzzy"}},
            r"`metric.fields.city.match` must be one of exact, numeric, set, contains",
        ),
        ({"city": {"expect": "city"}}, r"`metric.fields.city.expect`; did you mean `expected`"),
        ({"city": {"weight": -1}}, r"`metric.fields.city.weight` must be a number of at least 0"),
        ({"city": {"weight": 0}}, r"the weights are all 0"),
        ({"city": 3}, r"`metric.fields.city` must be a mapping"),
    ],
)
def test_a_bad_json_fields_config_names_its_key(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_metric({"type": "json_fields", "fields": fields})


def test_json_fields_names_the_dataset_fields_it_reads(tmp_path: Path) -> None:
    spec = check_metric(
        {"type": "json_fields", "field": "answer", "fields": {"a.b": "x", "c": {"match": "set"}}}
    )
    assert metric_fields(spec) == [
        ("field", "answer"),
        ("fields.a.b.expected", "x"),
        ("fields.c.expected", "c"),
    ]
    path = write_config(
        tmp_path,
        'user: "{text}"',
        "{type: json_fields, field: customer, fields: {customer: {expected: custmer}}}",
    )

    with pytest.raises(ConfigError, match=r"`metric.fields.customer.expected` is 'custmer'.*did you mean"):
        load_splits(load_config(path))


# -- on the wire: real Client → real LiteLLM → loopback ---------------------------------------------
KEY = "sk-structured-test-0123456789"
ROUTES = {
    "openai": ("openai/gpt-4o-mini", "openai"),
    "anthropic": ("anthropic/claude-3-5-haiku-20241022", "anthropic"),
    "gemini": ("gemini/gemini-2.5-flash", "gemini"),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_prompts_schema_reaches_each_provider_and_its_answers_are_scored(
    loopback: LoopbackServer, route: str
) -> None:
    model, protocol = ROUTES[route]
    base = loopback.openai_base if protocol == "openai" else loopback.url
    config = ClientConfig(
        models=(model,), api_base=base, api_key=Secret(KEY), strict_params=True, concurrency=1
    )  # one row at a time: the rows take the scripted replies in order
    loopback.script(ok(GOOD), ok("Sorry, no order here."))
    prompt = Prompt(user="Order: {text}", output_schema=SCHEMA)
    metric = JsonFields({"customer": "who", "items.0.price": FieldMatch("price", "numeric")})
    data = [
        Row(0, {"text": "tea for Ada", "who": "ada", "price": "3.5"}),
        Row(1, {"text": "-", "who": "x", "price": 1}),
    ]
    with Client(config) as client:
        evaluation = asyncio.run(Evaluator(client, metric).evaluate(prompt, data))
    assert evaluation.scores == [1.0, 0.0]
    assert evaluation.rows[1].reason.startswith(NOT_VALID_JSON)
    bodies = [r.json for r in loopback.requests]
    assert [r.protocol for r in loopback.requests] == [protocol, protocol]
    for body in bodies:
        if protocol == "openai":
            assert body["response_format"] == SCHEMA.response_format()
        elif protocol == "anthropic":  # claude-3-5-haiku: the schema as a forced tool's input
            assert body["tools"] == [{"name": "json_tool_call", "input_schema": ORDER}]
            assert body["tool_choice"] == {"name": "json_tool_call", "type": "tool"}
        else:
            config_ = body["generationConfig"]
            assert config_.get("response_mime_type") == "application/json"
            assert config_.get("response_json_schema") == ORDER


def test_a_request_without_a_schema_sends_no_response_format(loopback: LoopbackServer) -> None:
    config = ClientConfig(models=("openai/gpt-4o-mini",), api_base=loopback.openai_base, api_key=Secret(KEY))
    with Client(config) as client:
        asyncio.run(Evaluator(client, Counting()).evaluate(Prompt(user="{text}"), [Row(0, {"text": "x"})]))
    (request,) = loopback.requests
    assert "response_format" not in request.json


def letters(word: str) -> int:
    """The number of letters in a word."""
    return len(word)


def test_an_anthropic_agent_whose_schema_would_become_a_forced_tool_is_refused_or_warned(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """claude-3-5-haiku has no native structured output: LiteLLM sends the schema as a forced
    json_tool_call tool, so an agent's own tools could never be called. Strict mode refuses it
    before any request; otherwise a warning says so. A model with native structured output gets
    the schema as output_format, and its tools stay callable."""
    agent = Prompt(user="Word: {text}", tools=(Tool.from_function(letters),), output_schema=SCHEMA)
    data = [Row(0, {"text": "tea"})]

    def build(model: str, strict: bool) -> ClientConfig:
        return ClientConfig(models=(model,), api_base=loopback.url, api_key=Secret(KEY), strict_params=strict)

    with (
        Client(build("anthropic/claude-3-5-haiku-20241022", True)) as client,
        pytest.raises(ConfigError, match=r"json_tool_call tool on every call.*own tools are never called"),
    ):
        asyncio.run(Evaluator(client, Counting()).evaluate(agent, data))
    assert loopback.requests == []

    loopback.set_default(ok(GOOD))
    with (
        caplog.at_level(logging.WARNING, logger="promptlift"),
        Client(build("anthropic/claude-3-5-haiku-20241022", False)) as client,
    ):
        asyncio.run(Evaluator(client, Counting()).evaluate(agent, data))
    assert any("own tools are never called" in r.getMessage() for r in caplog.records)
    assert loopback.requests[-1].json["tool_choice"] == {"name": "json_tool_call", "type": "tool"}

    with Client(build("anthropic/claude-sonnet-4-5-20250929", True)) as client:
        evaluation = asyncio.run(Evaluator(client, Counting()).evaluate(agent, data))
    assert evaluation.scores == [1.0]
    body = loopback.requests[-1].json
    assert body["output_format"]["type"] == "json_schema"
    assert [t["name"] for t in body["tools"]] == ["letters"] and "tool_choice" not in body
    # LiteLLM closes the schema's objects for output_format; the prompt's own schema is untouched
    assert body["output_format"]["schema"]["properties"]["items"]["items"]["additionalProperties"] is False
    assert agent.output_schema is not None and agent.output_schema.schema == ORDER


# -- fewshot's demos on a structured prompt --------------------------------------------------------
def test_fewshot_on_a_structured_prompt_needs_demo_answers_that_follow_the_schema(tmp_path: Path) -> None:
    schema = "output_schema: {type: object, properties: {customer: {type: string}}, required: [customer]}"
    bare = write_config(tmp_path, f'user: "Order: {{text}}"\n{schema}')  # metric field: customer, a bare name
    with pytest.raises(
        ConfigError, match=r"fewshot shows `customer` as each demo's answer.*row 1's is not valid"
    ):
        load_splits(load_config(bare))
    (tmp_path / "data.jsonl").write_text(
        "\n".join(json.dumps({"text": f"order {i}", "customer": {"customer": "Ada"}}) for i in range(8))
    )  # a native object in the JSONL: shown as JSON
    load_splits(load_config(bare))
    assert demo_answer({"customer": "Ada"}) == '{"customer": "Ada"}' and demo_answer("long") == "long"


def test_a_weighted_metric_takes_json_fields_as_a_part() -> None:
    spec = {
        "type": "weighted",
        "parts": [
            {"type": "json_fields", "fields": {"city": "city"}, "weight": 3},
            {"type": "steps", "max": 1, "weight": 1},
        ],
    }
    assert ("parts.0.fields.city.expected", "city") in metric_fields(check_metric(spec))
    metric = metric_from_config(spec)
    assert metric(ROW, '{"city": "Oslo"}', None).value == 1.0  # type: ignore[call-arg]
    missed = metric(ROW, '{"city": "Rome"}', None)  # type: ignore[call-arg]
    assert missed.value == pytest.approx(0.25) and 'city: expected "Oslo", got "Rome"' in missed.reason


def test_a_dangling_ref_in_the_schema_is_one_line_naming_it_before_any_call() -> None:
    from promptlift.optimize.schema import At
    from promptlift.optimize.structured import config_output_schema

    bad = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/Nope"}},
        "$defs": {"X": {"type": "string"}},
    }
    for value in (bad, {"schema": bad}):
        with pytest.raises(ConfigError) as caught:
            config_output_schema(value, At("c.yaml", "prompt.output_schema"))
        message = str(caught.value)
        assert "properties.a.$ref" in message and "'#/$defs/Nope'" in message and "\n" not in message
        assert message.count("c.yaml") == 1
    good = {"type": "object", "properties": {"a": {"$ref": "#/$defs/X"}}, "$defs": {"X": {"type": "string"}}}
    schema = config_output_schema(good, At("c.yaml", "prompt.output_schema"))
    assert schema.parse('{"a": "x"}').ok and not schema.parse('{"a": 1}').ok


def test_a_bad_bare_schema_names_the_file_and_key_once() -> None:
    from promptlift.optimize.schema import At
    from promptlift.optimize.structured import config_output_schema

    for value in ({"type": "objekt"}, {"type": "array"}):
        with pytest.raises(ConfigError) as caught:
            config_output_schema(value, At("c.yaml", "prompt.output_schema"))
        assert str(caught.value).count("c.yaml") == 1 and "\n" not in str(caught.value)


SCHEMA_YAML = """
user: "Order: {text}"
output_schema:
  type: object
  properties:
    customer: {type: string}
    total: {type: number}
    address: {type: object, properties: {city: {type: string}}}
    notes: {type: object, additionalProperties: true}
"""


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ("{totl: total}", "`metric.fields.totl`: the output schema has no 'totl' there"),
        ("{address.cty: customer}", "no 'cty' there (it has city)"),
    ],
)
def test_a_json_fields_path_the_schema_lacks_is_one_line_at_load(
    tmp_path: Path, fields: str, says: str
) -> None:
    from promptlift.optimize.config import load_config

    path = write_config(tmp_path, SCHEMA_YAML, metric=f"{{type: json_fields, fields: {fields}}}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_json_fields_paths_the_schema_lists_or_leaves_open_load(tmp_path: Path) -> None:
    from promptlift.optimize.config import load_config

    fields = "{customer: customer, total: total, address.city: customer, notes.anything: customer}"
    path = write_config(tmp_path, SCHEMA_YAML, metric=f"{{type: json_fields, fields: {fields}}}")
    path.write_text(path.read_text() + "optimizer: metaprompt\n")  # fewshot would want a whole-answer field
    config = load_config(path)
    assert set(config.metric["fields"]) == {"customer", "total", "address.city", "notes.anything"}
