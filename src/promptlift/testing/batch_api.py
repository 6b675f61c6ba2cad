"""The providers' Batch APIs, as the loopback server emulates them (``LoopbackServer.batches``).

OpenAI (``{api_base}`` is ``.../v1``):

    POST {api_base}/files                  multipart: purpose=batch, file=JSONL of
                                           {custom_id, method, url, body}      -> {id: file-N, ...}
    POST {api_base}/batches                {input_file_id, endpoint, completion_window} -> batch
    GET  {api_base}/batches/{id}           status validating -> in_progress -> finalizing ->
                                           completed | expired; request_counts; output/error file
    GET  {api_base}/batches?limit=1        the list (what a client asks to learn the API is there)
    GET  {api_base}/files/{id}/content     the JSONL: {id, custom_id, response: {status_code,
                                           request_id, body}, error}

Anthropic (``{root}`` is the server's URL, or ``.../v1``'s parent):

    POST {root}/v1/messages/batches        {requests: [{custom_id, params}]}    -> message_batch
    GET  {root}/v1/messages/batches/{id}   processing_status in_progress -> ended; results_url
    GET  {root}/v1/messages/batches/{id}/results   JSONL: {custom_id, result: {type: succeeded,
                                           message} | {type: errored, error} | {type: expired}}

Each line is answered as the server answers the same request sent live (the handler, the scripts,
the default reply, the prompt-cache emulation), when the job finishes: ``polls_before_done``
retrievals after it was created. Knobs: ``fail`` (a line's custom_id, or its 0-based position in
the job -> the error reply it gets),
``expire_after`` (answer that many lines, then let the job expire: the rest come back expired),
``enabled`` False (every batch path is a 404: a server without a Batch API), ``results_base`` (the
URL Anthropic's ``results_url`` starts with; default the server's own). OpenAI's output file
lists its lines in reverse order (the API promises no order), so a client must match by custom_id.

``created`` is every job created, in order: a test asserts a resumed run created none.
Thread-safety: one lock guards the jobs; called from the server's handler threads.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptlift.testing.replies import Reply

Answer = tuple[int, Any]  # (HTTP status, JSON payload, or bytes sent as JSONL)
LineAnswer = Callable[[str, dict[str, Any], Reply | None], tuple[Reply, dict[str, Any]]]

_ids = itertools.count(1)
_BATCH = re.compile(r"/batches/([^/]+)$")
_CONTENT = re.compile(r"/files/([^/]+)/content$")
_RESULTS = re.compile(r"/messages/batches/([^/]+)/results$")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class Job:
    """One batch job the server holds."""

    id: str
    protocol: str  # "openai" | "anthropic"
    lines: list[tuple[str, dict[str, Any]]]  # (custom_id, request body)
    key: str | None
    endpoint: str = "/v1/chat/completions"
    polls: int = 0
    status: str = "validating"
    answered: list[bytes] = field(default_factory=list)  # output lines
    failed: list[bytes] = field(default_factory=list)  # error-file lines (OpenAI)
    counts: dict[str, int] = field(default_factory=dict)


def is_batch_path(path: str) -> bool:
    return "/batches" in path or path.endswith("/files") or "/files/" in path


class BatchEmulator:
    """Both providers' batch endpoints. ``answer_line(protocol, body, reply)`` is the server's: it
    answers one line as a live request (with ``reply`` when given) and returns the reply and the
    success or error body."""

    def __init__(self, answer_line: LineAnswer, base_url: Callable[[], str]):
        self._answer_line = answer_line
        self._base_url = base_url
        self._lock = threading.Lock()
        self.polls_before_done = 2
        self.fail: dict[str | int, Reply] = {}
        self.expire_after: int | None = None
        self.enabled = True
        self.results_base: str | None = None
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.created: list[Job] = []

    def reset(self) -> None:
        with self._lock:
            self.polls_before_done = 2
            self.fail = {}
            self.expire_after = None
            self.enabled = True
            self.results_base = None
            self.files.clear()
            self.jobs.clear()
            self.created.clear()

    # -- routing -----------------------------------------------------------------------------
    def post(self, path: str, headers: Mapping[str, str], body: bytes, key: str | None) -> Answer:
        if not self.enabled:
            return _not_found(path)
        if path.endswith("/messages/batches"):
            return self._create_anthropic(body, key)
        if path.endswith("/files"):
            return self._upload(headers.get("content-type", ""), body)
        if path.endswith("/batches"):
            return self._create_openai(body, key)
        return _not_found(path)

    def get(self, path: str, query: Mapping[str, str]) -> Answer:
        if not self.enabled:
            return _not_found(path)
        if m := _RESULTS.search(path):
            job = self.jobs.get(m.group(1))
            if job is None or job.status != "ended":
                return 404, {"type": "error", "error": {"type": "not_found_error", "message": "no results"}}
            return 200, b"".join(job.answered)
        if m := _CONTENT.search(path):
            data = self.files.get(m.group(1))
            return (200, data) if data is not None else _not_found(path)
        if path.endswith("/batches"):
            return 200, {"object": "list", "data": [], "has_more": False}
        if m := _BATCH.search(path):
            with self._lock:
                job = self.jobs.get(m.group(1))
                if job is None:
                    return _not_found(path)
                job.polls += 1
                if job.polls >= self.polls_before_done and job.status in ("validating", "in_progress"):
                    self._finish(job)
                elif job.status == "validating":
                    job.status = "in_progress"
                return 200, self._describe(job)
        return _not_found(path)

    # -- OpenAI ------------------------------------------------------------------------------
    def _upload(self, content_type: str, body: bytes) -> Answer:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser().parsebytes(head + body)
        fields: dict[str, bytes] = {}
        for part in message.walk() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = payload if isinstance(payload, bytes) else b""
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, _openai_error("a batch input file needs purpose=batch and a file part")
        file_id = f"file-{next(_ids)}"
        with self._lock:
            self.files[file_id] = fields["file"]
        return 200, {"id": file_id, "object": "file", "bytes": len(fields["file"]), "purpose": "batch"}

    def _create_openai(self, body: bytes, key: str | None) -> Answer:
        spec = _json(body)
        data = self.files.get(str(spec.get("input_file_id")))
        if data is None:
            return 400, _openai_error(f"no file {spec.get('input_file_id')!r}")
        lines = []
        for raw in data.splitlines():
            if raw.strip():
                line = json.loads(raw)
                lines.append((str(line["custom_id"]), dict(line["body"])))
        job = Job(f"batch_{next(_ids)}", "openai", lines, key, str(spec.get("endpoint")))
        return 200, self._add(job)

    # -- Anthropic ---------------------------------------------------------------------------
    def _create_anthropic(self, body: bytes, key: str | None) -> Answer:
        spec = _json(body)
        requests = spec.get("requests")
        if not isinstance(requests, list) or not requests:
            return 400, {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "no requests"},
            }
        lines = [(str(r["custom_id"]), dict(r["params"])) for r in requests]
        job = Job(f"msgbatch_{next(_ids)}", "anthropic", lines, key, status="in_progress")
        return 200, self._add(job)

    # -- the jobs ----------------------------------------------------------------------------
    def _add(self, job: Job) -> dict[str, Any]:
        with self._lock:
            self.jobs[job.id] = job
            self.created.append(job)
            return self._describe(job)

    def _finish(self, job: Job) -> None:
        """Answer the job's lines (up to ``expire_after``), as the server answers live requests."""
        done = {"succeeded": 0, "errored": 0, "expired": 0}
        out: list[bytes] = []
        errs: list[bytes] = []
        for index, (custom_id, body) in enumerate(job.lines):
            if self.expire_after is not None and index >= self.expire_after:
                done["expired"] += 1
                errs.append(_expired_line(job.protocol, custom_id))
                continue
            forced = self.fail.get(custom_id, self.fail.get(index))
            reply, payload = self._answer_line(job.protocol, body, forced)
            ok = reply.error is None and 200 <= reply.status < 300
            done["succeeded" if ok else "errored"] += 1
            line = _result_line(job.protocol, custom_id, reply.status if not ok else 200, payload)
            (out if ok or job.protocol == "anthropic" else errs).append(line)
        if job.protocol == "anthropic":
            job.answered = out + errs
            job.status = "ended"
        else:
            job.answered, job.failed = out[::-1], errs[::-1]  # no order promised
            job.status = "expired" if done["expired"] else "completed"
            if job.answered:
                self.files[f"file-out-{job.id}"] = b"".join(job.answered)
            if job.failed:
                self.files[f"file-err-{job.id}"] = b"".join(job.failed)
        job.counts = done

    def _describe(self, job: Job) -> dict[str, Any]:
        n = len(job.lines)
        c = job.counts
        if job.protocol == "anthropic":
            ended = job.status == "ended"
            counts = {
                "processing": 0 if ended else n,
                "succeeded": c.get("succeeded", 0),
                "errored": c.get("errored", 0),
                "canceled": 0,
                "expired": c.get("expired", 0),
            }
            base = self.results_base or self._base_url()
            results = f"{base}/v1/messages/batches/{job.id}/results" if ended else None
            return {
                "id": job.id,
                "type": "message_batch",
                "processing_status": job.status,
                "request_counts": counts,
                "results_url": results,
                "created_at": "2026-12-04T00:00:00Z",
                "ended_at": "2026-12-04T00:01:00Z" if ended else None,
            }
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": job.endpoint,
            "status": job.status,
            "completion_window": "24h",
            "created_at": int(time.time()),
            "output_file_id": f"file-out-{job.id}" if job.answered else None,
            "error_file_id": f"file-err-{job.id}" if job.failed else None,
            "request_counts": {
                "total": n,
                "completed": c.get("succeeded", 0),
                "failed": c.get("errored", 0) + c.get("expired", 0),
            },
        }


def _result_line(protocol: str, custom_id: str, status: int, payload: dict[str, Any]) -> bytes:
    if protocol == "anthropic":
        if status == 200:
            result: dict[str, Any] = {"type": "succeeded", "message": payload}
        else:
            result = {"type": "errored", "error": payload}
        return (json.dumps({"custom_id": custom_id, "result": result}) + "\n").encode()
    response = {"status_code": status, "request_id": f"req_{next(_ids)}", "body": payload}
    line = {"id": f"batch_req_{next(_ids)}", "custom_id": custom_id, "response": response, "error": None}
    return (json.dumps(line) + "\n").encode()


def _expired_line(protocol: str, custom_id: str) -> bytes:
    if protocol == "anthropic":
        return (json.dumps({"custom_id": custom_id, "result": {"type": "expired"}}) + "\n").encode()
    error = {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    line = {"id": f"batch_req_{next(_ids)}", "custom_id": custom_id, "response": None, "error": error}
    return (json.dumps(line) + "\n").encode()


def _json(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _openai_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _not_found(path: str) -> Answer:
    return 404, {"error": {"message": f"no batch API at {path}", "type": "not_found", "code": None}}


__all__ = ["EXPIRED_MESSAGE", "BatchEmulator", "Job", "is_batch_path"]
