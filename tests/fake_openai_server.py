"""A real, local, OpenAI-compatible HTTP server for tests: scripted answers and injected faults.

It listens on 127.0.0.1 with an ephemeral port (stdlib ``ThreadingHTTPServer`` in a daemon
thread), so the client under test goes through its whole HTTP stack: connection pooling,
timeouts, SSE parsing, error bodies. It can look like vLLM (``/version``, ``max_model_len`` in
``/v1/models``, vLLM's error wording) or like a generic OpenAI-compatible server.

    server = FakeOpenAIServer().start()          # or the ``fake_openai`` pytest fixture
    server.enqueue(text("hello"), rate_limit(retry_after=0.1), tool_call("add", {"a": 1}))
    model = OpenAICompatModel(server.base_url)
    ...
    server.requests          # JSON bodies of the chat requests it received (probes excluded)
    server.stop()

Scripted items are consumed in order by chat requests; when the queue is empty the ``default``
item (or function of the request body) answers. An item is a ``Reply`` (one choice, replicated
for ``n``), a ``Completion`` (several choices, usage override, per-chunk stream delay), a
``Fault``, or a callable ``body -> item``. Faults can also be injected at random with
``fail_randomly(rate, seed=...)`` (e.g. a quarter of requests failing) and requests carrying a
field can be refused with ``reject_field`` / ``reject_when`` (for capability tests).

Capability probes sent by agentflow carry the ``X-Agentflow-Probe`` header; they are recorded in
``probe_requests`` (not ``requests``), never consume scripted items and never get random faults,
but they are subject to ``reject_*`` rules, exactly like a real server's validation.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBE_HEADER = "x-agentflow-probe"


# --- scripted items ----------------------------------------------------------------------------


@dataclass
class ToolCallSpec:
    name: str
    #: a dict is JSON-encoded; a string is sent verbatim (use it for malformed arguments)
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class Reply:
    """One choice of a chat completion."""

    content: str | None = "OK"
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    #: default: "tool_calls" when there are tool calls, else "stop"
    finish_reason: str | None = None
    #: per-token logprob reported when the request asks for logprobs
    logprob: float = -0.25


@dataclass
class Completion:
    """A whole response: several choices, optional usage override and timing."""

    choices: list[Reply]
    #: override of the computed usage, e.g. {"prompt_tokens": 10, "completion_tokens": 2,
    #: "prompt_tokens_details": {"cached_tokens": 8}}
    usage: dict[str, Any] | None = None
    #: seconds before the response (or the first stream chunk) is sent
    delay: float = 0.0
    #: seconds between stream chunks
    chunk_delay: float = 0.0


@dataclass
class Fault:
    """An injected failure.

    kinds: ``status`` (an HTTP error with a JSON body), ``stall`` (accept and say nothing for
    ``seconds``, then close), ``drop`` (close the socket without a response), ``drop_mid_stream``
    (send the first stream chunks, then close).
    """

    kind: str
    status: int = 500
    message: str = "injected fault"
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    body: dict[str, Any] | None = None


Item = Reply | Completion | Fault | Callable[[dict[str, Any]], Any]


def text(content: str | None, *, finish_reason: str | None = None, logprob: float = -0.25) -> Reply:
    """A plain answer (``None`` or ``""`` for an empty reply)."""
    return Reply(content=content, finish_reason=finish_reason, logprob=logprob)


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, content: str | None = None,
              id: str | None = None, finish_reason: str | None = None) -> Reply:
    """A native tool call; pass a string as ``arguments`` to send malformed JSON verbatim."""
    return Reply(content=content, tool_calls=[ToolCallSpec(name, arguments if arguments is not None else {}, id)],
                 finish_reason=finish_reason)


def tool_calls(*calls: tuple[str, dict[str, Any] | str]) -> Reply:
    return Reply(content=None, tool_calls=[ToolCallSpec(n, a) for n, a in calls])


def leaked_tool_call(name: str, arguments: dict[str, Any] | str, *, style: str = "hermes",
                     prefix: str = "", key: str = "arguments") -> Reply:
    """A tool call written into the content, as a model without a tool parser does.

    styles: ``hermes`` (``<tool_call>...</tool_call>``), ``fenced`` (a json code fence),
    ``bare`` (a JSON object in the text). ``key="parameters"`` uses that spelling; a string
    ``arguments`` is embedded as a JSON string.
    """
    obj = json.dumps({"name": name, key: arguments})
    if style == "hermes":
        body = f"<tool_call>\n{obj}\n</tool_call>"
    elif style == "fenced":
        body = f"```json\n{obj}\n```"
    elif style == "bare":
        body = obj
    else:
        raise ValueError(f"unknown leak style {style!r}")
    return Reply(content=f"{prefix}{body}", finish_reason="stop")


def completion(*choices: Reply, usage: dict[str, Any] | None = None, delay: float = 0.0,
               chunk_delay: float = 0.0) -> Completion:
    return Completion(choices=list(choices), usage=usage, delay=delay, chunk_delay=chunk_delay)


def http_error(status: int, message: str, *, type: str = "BadRequestError", code: Any = None,
               param: str | None = None, headers: dict[str, str] | None = None,
               extra: dict[str, Any] | None = None) -> Fault:
    """An HTTP error with a vLLM-style JSON body ``{"error": {...}}``."""
    body = {"message": message, "type": type, "param": param, "code": code if code is not None else status}
    body.update(extra or {})
    return Fault(kind="status", status=status, message=message, headers=headers or {}, body={"error": body})


def rate_limit(retry_after: float | None = 1.0, *, ms: bool = False) -> Fault:
    """HTTP 429, with ``Retry-After`` seconds (or ``retry-after-ms`` when ``ms``)."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        if ms:
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        else:
            headers["Retry-After"] = f"{retry_after:g}"
    return http_error(429, "Too many requests, please slow down.", type="RateLimitError", headers=headers)


def server_error(status: int = 500, message: str = "Internal server error (injected)") -> Fault:
    return http_error(status, message, type="InternalServerError")


def stall(seconds: float = 5.0) -> Fault:
    """Accept the request and send nothing for ``seconds`` (longer than the client's timeout)."""
    return Fault(kind="stall", seconds=seconds)


def drop() -> Fault:
    """Close the connection without sending a response."""
    return Fault(kind="drop")


def drop_mid_stream() -> Fault:
    """For a streaming request: send the first chunks, then close the connection."""
    return Fault(kind="drop_mid_stream")


def context_length_error(limit: int = 2048, prompt_tokens: int = 3000, output_tokens: int = 100) -> Fault:
    """vLLM's current wording for a prompt that does not fit the context window."""
    return http_error(400, (
        f"This model's maximum context length is {limit} tokens. However, you requested {output_tokens} output "
        f"tokens and your prompt contains at least {prompt_tokens} input tokens, for a total of at least "
        f"{prompt_tokens + output_tokens} tokens. Please reduce the length of the input prompt or the number "
        "of requested output tokens."))


# --- the server ---------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    probe: str | None = None
    time: float = field(default_factory=time.monotonic)


@dataclass
class _Rule:
    predicate: Callable[[dict[str, Any]], bool]
    fault: Fault


def _estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 serving scripted replies and faults.

    Args:
        models: model ids served (the first is what ``/v1/models`` lists first).
        vllm: answer ``/version`` and report ``max_model_len`` like vLLM; False looks like a
            generic OpenAI-compatible server (``/version`` is 404).
        vllm_version: what ``/version`` reports.
        max_model_len: requests whose estimated prompt + max_tokens exceed it get vLLM's
            context-length 400.
        metrics: serve ``/metrics`` (Prometheus text).
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get 401.
        default: the item answering when the queue is empty (or a function of the body).
        stream_chunk_chars: characters of content per streamed chunk.
        ignore_n: answer one choice whatever ``n`` asks for (like servers that ignore ``n``).
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = ("fake-model",),
        vllm: bool = True,
        vllm_version: str = "0.32.0",
        max_model_len: int = 32768,
        metrics: bool = True,
        api_key: str | None = None,
        default: Item | None = None,
        stream_chunk_chars: int = 4,
        ignore_n: bool = False,
    ) -> None:
        self.models = list(models)
        #: False: ``/v1/models`` answers 404, like servers that do not list models
        self.models_listed = True
        self.vllm = vllm
        self.vllm_version = vllm_version
        self.max_model_len = max_model_len
        self.metrics = metrics
        self.api_key = api_key
        self.default: Item = default if default is not None else text("OK")
        self.stream_chunk_chars = stream_chunk_chars
        self.ignore_n = ignore_n
        #: chat requests being handled right now, and the most seen at once
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[RecordedRequest] = []
        self._queue: deque[Item] = deque()
        self._rules: list[_Rule] = []
        self._random_faults: tuple[float, list[Fault], random.Random] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.chat_count = 0
        self.fault_count = 0

    # -- lifecycle --

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # -- scripting --

    def enqueue(self, *items: Item) -> FakeOpenAIServer:
        with self._lock:
            self._queue.extend(items)
        return self

    def fail_next(self, fault: Fault, times: int = 1) -> FakeOpenAIServer:
        """Put ``times`` copies of ``fault`` at the *front* of the queue."""
        with self._lock:
            for _ in range(times):
                self._queue.appendleft(fault)
        return self

    def fail_randomly(self, rate: float, faults: Iterable[Fault] | None = None, *, seed: int = 0) -> FakeOpenAIServer:
        """Fail each chat request with probability ``rate`` (seeded), picking one of ``faults``.

        Faulted requests do not consume scripted items, so a retried request gets the reply it
        was scripted to get. Default faults: HTTP 500, 503, 429 (Retry-After 0) and a dropped
        connection.
        """
        pool = list(faults) if faults is not None else [server_error(500), server_error(503),
                                                       rate_limit(0), drop()]
        self._random_faults = (rate, pool, random.Random(seed))
        return self

    def reject_when(self, predicate: Callable[[dict[str, Any]], bool], message: str, *, status: int = 400,
                    param: str | None = None) -> FakeOpenAIServer:
        """Refuse chat requests (probes included) whose body satisfies ``predicate``."""
        self._rules.append(_Rule(predicate, http_error(status, message, param=param)))
        return self

    def reject_field(self, name: str, message: str | None = None, *, status: int = 400) -> FakeOpenAIServer:
        """Refuse requests that carry the top-level field ``name`` (like a strict validator)."""
        return self.reject_when(lambda body: name in body,
                                message or f"Unrecognized request argument supplied: {name}",
                                status=status, param=name)

    def reject_json_schema(self, message: str = "Invalid request: unsupported response format") -> FakeOpenAIServer:
        """Refuse ``response_format`` json_schema and ``structured_outputs`` (message names neither)."""
        def has_schema(body: dict[str, Any]) -> bool:
            rf = body.get("response_format")
            return (isinstance(rf, dict) and rf.get("type") == "json_schema") or "structured_outputs" in body
        return self.reject_when(has_schema, message)

    def reject_strict_tools(self, message: str = "Invalid request") -> FakeOpenAIServer:
        def has_strict(body: dict[str, Any]) -> bool:
            return any((t.get("function") or {}).get("strict") for t in body.get("tools") or [])
        return self.reject_when(has_strict, message)

    def reject_tool_choice(self, value: str, message: str | None = None) -> FakeOpenAIServer:
        """Refuse ``tool_choice`` ``"auto"``, ``"required"`` or ``"named"`` (a function object)."""
        def matches(body: dict[str, Any]) -> bool:
            tc = body.get("tool_choice")
            return isinstance(tc, dict) if value == "named" else tc == value
        return self.reject_when(matches, message or f"tool_choice {value!r} is not supported")

    def reject_n(self, message: str = "Only one completion choice is allowed") -> FakeOpenAIServer:
        return self.reject_when(lambda body: (body.get("n") or 1) > 1, message)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._random_faults = None
            self.log.clear()
            self.chat_count = 0
            self.fault_count = 0
            self.max_in_flight = 0

    # -- inspection --

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of chat-completion requests, in arrival order (capability probes excluded)."""
        return [r.body or {} for r in list(self.log) if r.path.endswith("/chat/completions") and not r.probe]

    @property
    def probe_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.log) if r.probe]

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- request handling (called from handler threads) --

    def _next_item(self, body: dict[str, Any], probe: str | None) -> Item:
        with self._lock:
            for rule in self._rules:
                try:
                    if rule.predicate(body):
                        return rule.fault
                except Exception:  # a predicate on an unexpected body shape just does not match
                    continue
            if probe:
                # probes get a plain reply: a scripted function is written for real requests
                return self.default if isinstance(self.default, Reply | Completion) else text("OK")
            self.chat_count += 1
            if self._random_faults is not None:
                rate, pool, rng = self._random_faults
                if rng.random() < rate:
                    self.fault_count += 1
                    return rng.choice(pool)
            item = self._queue.popleft() if self._queue else self.default
        while callable(item) and not isinstance(item, Reply | Completion | Fault):
            item = item(body)
        return item


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or drop are part of the tests; their broken pipes are not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- helpers --

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_text(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send_json(404, {"detail": "Not Found"})

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def _record(self, body: dict[str, Any] | None) -> RecordedRequest:
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = RecordedRequest(method=self.command, path=self.path.split("?")[0], headers=headers, body=body,
                              probe=headers.get(PROBE_HEADER))
        self.fake.log.append(rec)
        return rec

    def _authorized(self) -> bool:
        if self.fake.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.fake.api_key}":
            return True
        self._send_json(401, {"error": {"message": "Unauthorized: invalid API key", "type": "AuthenticationError",
                                        "param": None, "code": 401}})
        return False

    # -- routes --

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        rec = self._record(None)
        fake = self.fake
        if rec.path == "/v1/models" and fake.models_listed:
            if not self._authorized():
                return
            data = []
            for mid in fake.models:
                entry: dict[str, Any] = {"id": mid, "object": "model", "created": 0,
                                         "owned_by": "vllm" if fake.vllm else "organization-owner"}
                if fake.vllm:
                    entry["max_model_len"] = fake.max_model_len
                    entry["root"] = mid
                data.append(entry)
            self._send_json(200, {"object": "list", "data": data})
        elif rec.path == "/version" and fake.vllm:
            self._send_json(200, {"version": fake.vllm_version})
        elif rec.path == "/metrics" and fake.metrics:
            self._send_text(200, "# HELP vllm:num_requests_running Number of requests running.\n"
                                 "# TYPE vllm:num_requests_running gauge\n"
                                 f'vllm:num_requests_running{{model_name="{fake.models[0]}"}} 0.0\n'
                                 f"fake_chat_requests_total {fake.chat_count}\n")
        elif rec.path == "/health":
            self._send_text(200, "")
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._record(None)
            self._send_json(400, {"error": {"message": "request body is not JSON", "type": "BadRequestError",
                                            "param": None, "code": 400}})
            return
        rec = self._record(body)
        if rec.path != "/v1/chat/completions":
            self._not_found()
            return
        if not self._authorized():
            return
        with self.fake._lock:
            self.fake.in_flight += 1
            self.fake.max_in_flight = max(self.fake.max_in_flight, self.fake.in_flight)
        try:
            self._chat(body, rec)
        finally:
            with self.fake._lock:
                self.fake.in_flight -= 1

    def _chat(self, body: dict[str, Any], rec: RecordedRequest) -> None:
        fake = self.fake
        model = body.get("model")
        if model not in fake.models:
            self._send_json(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                            "param": "model", "code": 404}})
            return
        prompt_tokens = sum(_estimate_tokens(_message_text(m)) for m in body.get("messages") or [])
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 0
        if prompt_tokens + max_tokens > fake.max_model_len:
            fault = context_length_error(fake.max_model_len, prompt_tokens, max_tokens)
            self._send_json(fault.status, fault.body)
            return
        item = fake._next_item(body, rec.probe)
        if isinstance(item, Fault):
            self._fault(item, body, prompt_tokens)
            return
        comp = item if isinstance(item, Completion) else Completion(choices=[item])
        if comp.delay:
            if fake._stopping.wait(comp.delay):
                return
        if body.get("stream"):
            self._stream(comp, body, prompt_tokens)
        else:
            n = 1 if fake.ignore_n else int(body.get("n") or 1)
            self._send_json(200, _completion_json(comp, body, prompt_tokens, n))

    def _fault(self, fault: Fault, body: dict[str, Any], prompt_tokens: int) -> None:
        if fault.kind == "status":
            self._send_json(fault.status, fault.body or {"error": {"message": fault.message}}, fault.headers)
        elif fault.kind == "stall":
            self.fake._stopping.wait(fault.seconds)
            self._drop()
        elif fault.kind == "drop":
            self._drop()
        elif fault.kind == "drop_mid_stream":
            if not body.get("stream"):
                self._drop()
                return
            comp = Completion(choices=[Reply(content="partial output that never finishes")])
            self._stream(comp, body, prompt_tokens, cut_after=2)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    # -- streaming --

    def _chunk(self, data: str) -> None:
        payload = data.encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _stream(self, comp: Completion, body: dict[str, Any], prompt_tokens: int, cut_after: int | None = None) -> None:
        n = 1 if self.fake.ignore_n else int(body.get("n") or 1)
        choices = _expand_choices(comp.choices, n)
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        model = body.get("model")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0

        def emit(obj: dict[str, Any]) -> bool:
            nonlocal sent
            if cut_after is not None and sent >= cut_after:
                self._drop()
                return False
            if comp.chunk_delay and sent:
                if self.fake._stopping.wait(comp.chunk_delay):
                    return False
            self._chunk(f"data: {json.dumps(obj)}\n\n")
            sent += 1
            return True

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
                  logprobs: Any = None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

        want_logprobs = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0)
        step = max(1, self.fake.stream_chunk_chars)
        for i, reply in enumerate(choices):
            if not emit(chunk(i, {"role": "assistant", "content": ""})):
                return
            content = reply.content or ""
            for start in range(0, len(content), step):
                piece = content[start:start + step]
                lp = {"content": [_token_logprob(piece, reply.logprob, top)]} if want_logprobs else None
                if not emit(chunk(i, {"content": piece}, logprobs=lp)):
                    return
            for j, tc in enumerate(reply.tool_calls):
                args = tc.arguments if isinstance(tc.arguments, str) else json.dumps(tc.arguments)
                first = {"tool_calls": [{"index": j, "id": tc.id or f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                                         "function": {"name": tc.name, "arguments": ""}}]}
                if not emit(chunk(i, first)):
                    return
                for start in range(0, len(args), step * 2):
                    part = {"tool_calls": [{"index": j, "function": {"arguments": args[start:start + step * 2]}}]}
                    if not emit(chunk(i, part)):
                        return
            if not emit(chunk(i, {}, finish=_finish(reply))):
                return
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            usage = comp.usage or _usage(choices, prompt_tokens)
            if not emit({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                         "choices": [], "usage": usage}):
                return
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "") + json.dumps(message.get("tool_calls") or "")


def _expand_choices(replies: list[Reply], n: int) -> list[Reply]:
    """Exactly ``n`` choices: the scripted ones in order, cycled when fewer were scripted."""
    n = max(n, 1)
    return [replies[i % len(replies)] for i in range(n)]


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _token_logprob(token: str, logprob: float, top: int) -> dict[str, Any]:
    alts = [{"token": token, "logprob": logprob, "bytes": None}]
    alts += [{"token": f"{token}~{k}", "logprob": logprob - 1.0 - k, "bytes": None} for k in range(max(0, top - 1))]
    return {"token": token, "logprob": logprob, "bytes": None, "top_logprobs": alts[:top]}


def _usage(choices: list[Reply], prompt_tokens: int) -> dict[str, Any]:
    completion_tokens = 0
    for r in choices:
        completion_tokens += _estimate_tokens(r.content or "")
        for tc in r.tool_calls:
            completion_tokens += _estimate_tokens(tc.arguments if isinstance(tc.arguments, str)
                                                  else json.dumps(tc.arguments))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": 0}}


def _completion_json(comp: Completion, body: dict[str, Any], prompt_tokens: int, n: int) -> dict[str, Any]:
    choices = _expand_choices(comp.choices, n)
    want_logprobs = bool(body.get("logprobs"))
    top = int(body.get("top_logprobs") or 0)
    out = []
    for i, reply in enumerate(choices):
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": tc.id or f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                 "function": {"name": tc.name,
                              "arguments": tc.arguments if isinstance(tc.arguments, str) else json.dumps(tc.arguments)}}
                for tc in reply.tool_calls
            ]
        logprobs = None
        if want_logprobs and reply.content:
            logprobs = {"content": [_token_logprob(tok, reply.logprob, top) for tok in reply.content.split()]}
        out.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": _finish(reply)})
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": out,
        "usage": comp.usage or _usage(choices, prompt_tokens),
    }
