"""`lingcoder serve`: an OpenAI-compatible HTTP server (Starlette on uvicorn) in front of one `Engine`.

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/completions, POST /v1/chat/completions (the
checkpoint's chat template; generation also ends where the model opens a new turn), each streaming
(server-sent events, ending with `data: [DONE]`) or not; GET /health; GET /metrics (the engine's
counters, Prometheus text format). With an API key, /v1 answers only `Authorization: Bearer KEY`.
Every error is a JSON body {"error": {"message", "type", "param", "code"}}; a request that fails or whose
client goes away ends alone, and its rows leave the decode batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from tokenizers import Tokenizer

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import CHAT_STOPS, ChatTemplate
from lingcoder.generation.generate import load_for_generation
from lingcoder.generation.sampling import SamplingParams
from lingcoder.serve.engine import ChoiceUpdate, Engine, GenerationRequest, InvalidRequest
from lingcoder.serve.packed import pack_for_serving
from lingcoder.serve.protocol import ApiError, ChatRequest, CompletionRequest, parse

MAX_BODY_BYTES = 8 * 2**20
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; chat defaults to the rest of the context


@dataclass
class _Served:
    engine: Engine
    tokenizer: Tokenizer
    chat_template: ChatTemplate | None
    model_name: str
    max_body_bytes: int
    created: int


def build_app(engine: Engine, tokenizer: Tokenizer, chat_template: ChatTemplate | None, model_name: str, *,
              api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app serving `engine` (which the caller starts and stops)."""
    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(_RequireApiKey, api_key=api_key)])
    app.state.served = _Served(engine, tokenizer, chat_template, model_name, max_body_bytes,
                               int(time.time()))
    return app


# -- routes -------------------------------------------------------------------------------------------
async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [_model_card(_served(request))]})


async def get_model(request: Request) -> Response:
    served = _served(request)
    _check_model(request.path_params["model_id"], served, param=None)
    return JSONResponse(_model_card(served))


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    lines = []
    for name, value in _served(request).engine.stats.snapshot().items():
        kind = "gauge" if name in ("running_rows", "waiting_requests", "max_rows_in_step") else "counter"
        metric = f"lingcoder_{name}" + ("_total" if kind == "counter" else "")
        lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def completions(request: Request) -> Response:
    served = _served(request)
    body = parse(CompletionRequest, await _read_json(request, served.max_body_bytes))
    _check_model(body.model, served)
    prompt = body.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    if not prompt:
        raise ApiError(400, "the prompt list is empty", param="prompt")
    texts = [p for p in prompt if isinstance(p, str)]
    encoded = iter(await run_in_threadpool(_encode, served.tokenizer, texts))
    prompts = [next(encoded) if isinstance(p, str) else p for p in prompt]
    params = _sampling(body, body.max_tokens or COMPLETION_DEFAULT_MAX_TOKENS, body.stop_strings())
    return await _respond(request, served, body, prompts, params, "prompt", _CompletionFormat())


async def chat_completions(request: Request) -> Response:
    served = _served(request)
    body = parse(ChatRequest, await _read_json(request, served.max_body_bytes))
    _check_model(body.model, served)
    if served.chat_template is None:
        raise ApiError(400, f"model {served.model_name!r} has no chat template (tokenizer_config.json); "
                            "use /v1/completions", param="messages")
    try:
        text = served.chat_template.render([m.as_template_input() for m in body.messages])
    except LingcoderError as exc:
        raise ApiError(400, str(exc), param="messages") from None
    prompt_ids = (await run_in_threadpool(_encode, served.tokenizer, [text]))[0]
    max_tokens = body.token_limit() or max(served.engine.context_length - len(prompt_ids), 1)
    stops = tuple(dict.fromkeys([*body.stop_strings(), *CHAT_STOPS]))
    params = _sampling(body, max_tokens, stops)
    return await _respond(request, served, body, [prompt_ids], params, "messages", _ChatFormat())


# -- generation through the engine ----------------------------------------------------------------------
def _sampling(body, max_tokens: int, stops: tuple[str, ...]) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=max(body.top_k, 0), stop=stops, seed=body.seed)


class _Generation:
    """The engine requests of one HTTP request (one per prompt, n choices each), their updates on one queue."""

    def __init__(self, engine: Engine, prompts: list[list[int]], params: SamplingParams, n: int, prompt_param: str):
        self.n, self.prompt_tokens = n, sum(len(p) for p in prompts)
        self.queue: asyncio.Queue[tuple[int, ChoiceUpdate]] = asyncio.Queue()
        self.requests: list[GenerationRequest] = []
        loop = asyncio.get_running_loop()
        try:
            for i, prompt in enumerate(prompts):
                deliver = (lambda update, i=i: loop.call_soon_threadsafe(self.queue.put_nowait, (i, update)))
                self.requests.append(engine.submit(GenerationRequest(prompt, params, deliver, n)))
        except InvalidRequest as exc:
            self.cancel()
            param = prompt_param if exc.param == "prompt" else exc.param
            raise ApiError(400, str(exc), param=param, code=exc.code) from None

    async def updates(self) -> AsyncIterator[tuple[int, ChoiceUpdate]]:
        """(choice index over all prompts, update) until every choice has finished."""
        running = len(self.requests) * self.n
        while running:
            i, update = await self.queue.get()
            if update.error is not None:
                raise ApiError(500, f"generation failed: {update.error}", kind="server_error")
            running -= update.finish_reason is not None
            yield i * self.n + update.choice, update

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()


async def _respond(request: Request, served: _Served, body, prompts: list[list[int]], params: SamplingParams,
                   prompt_param: str, fmt) -> Response:
    generation = _Generation(served.engine, prompts, params, body.n, prompt_param)
    head = {"id": f"{fmt.id_prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": served.model_name}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(generation, fmt, head, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    texts = [""] * (len(prompts) * body.n)
    finish: list[str | None] = [None] * len(texts)
    tokens = [0] * len(texts)

    async def collect() -> None:
        async for index, update in generation.updates():
            texts[index] += update.text
            finish[index], tokens[index] = update.finish_reason, update.completion_tokens

    try:
        if not await _unless_disconnected(request, collect()):
            return Response(status_code=499)  # nobody is listening any more
    finally:  # done, failed, or the client went away: free the batch rows
        generation.cancel()
    choices = [fmt.choice(i, text, reason) for i, (text, reason) in enumerate(zip(texts, finish, strict=True))]
    return JSONResponse({**head, "object": fmt.object, "choices": choices,
                         "usage": _usage(generation.prompt_tokens, sum(tokens))})


async def _stream(generation: _Generation, fmt, head: dict, include_usage: bool) -> AsyncIterator[str]:
    def event(choices: list[dict], **extra) -> str:
        chunk = {**head, "object": fmt.chunk_object, "choices": choices, **extra}
        if include_usage:
            chunk.setdefault("usage", None)
        return f"data: {json.dumps(chunk)}\n\n"

    tokens: dict[int, int] = {}
    try:
        for index in range(len(generation.requests) * generation.n):
            opening = fmt.opening_delta(index)
            if opening is not None:
                yield event([opening])
        async for index, update in generation.updates():
            tokens[index] = update.completion_tokens
            for choice in fmt.delta(index, update):
                yield event([choice])
        if include_usage:
            yield event([], usage=_usage(generation.prompt_tokens, sum(tokens.values())))
    except ApiError as exc:
        yield f"data: {json.dumps(exc.body())}\n\n"
    finally:
        generation.cancel()
    yield "data: [DONE]\n\n"


class _CompletionFormat:
    id_prefix, object, chunk_object = "cmpl", "text_completion", "text_completion"

    def choice(self, index: int, text: str, finish_reason: str | None) -> dict:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def opening_delta(self, index: int) -> dict | None:
        return None

    def delta(self, index: int, update: ChoiceUpdate) -> list[dict]:
        return [self.choice(index, update.text, update.finish_reason)]


class _ChatFormat:
    id_prefix, object, chunk_object = "chatcmpl", "chat.completion", "chat.completion.chunk"

    def choice(self, index: int, text: str, finish_reason: str | None) -> dict:
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": finish_reason}

    def opening_delta(self, index: int) -> dict | None:
        return {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                "finish_reason": None}

    def delta(self, index: int, update: ChoiceUpdate) -> list[dict]:
        chunks = []
        if update.text:
            chunks.append({"index": index, "delta": {"content": update.text}, "logprobs": None,
                           "finish_reason": None})
        if update.finish_reason is not None:
            chunks.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": update.finish_reason})
        return chunks


async def _unless_disconnected(request: Request, work) -> bool:
    """Await `work` unless the client disconnects first (then cancel it and return False)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        return False
    task.result()  # re-raise a failure
    return True


async def _disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body was read already, so nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# -- request plumbing -----------------------------------------------------------------------------------
def _served(request: Request) -> _Served:
    return request.app.state.served


def _model_card(served: _Served) -> dict:
    return {"id": served.model_name, "object": "model", "created": served.created, "owned_by": "lingcoder",
            "max_model_len": served.engine.context_length}


def _check_model(name: str | None, served: _Served, param: str | None = "model") -> None:
    if name is not None and name != served.model_name:
        raise ApiError(404, f"The model `{name}` does not exist (this server serves `{served.model_name}`)",
                       param=param, code="model_not_found")


def _encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)] if texts else []


async def _read_json(request: Request, limit: int):
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {int(declared)} bytes; this server accepts at most {limit}",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None


class _RequireApiKey:
    """ASGI middleware: /v1 answers 401 unless `Authorization: Bearer <api_key>` (a pure ASGI middleware, so
    streaming responses and client disconnects pass through untouched)."""

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send) -> None:
        if self.api_key and scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = Headers(scope=scope).get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                error = ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                                 code="invalid_api_key")
                await JSONResponse(error.body(), status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return await _api_error(request, ApiError(exc.status_code, message))


async def _internal_error(request: Request, exc: Exception) -> Response:
    return await _api_error(request, ApiError(500, f"internal error: {exc}", kind="server_error"))


# -- running it -----------------------------------------------------------------------------------------
@contextmanager
def _server(model_dir: str | Path, *, host: str, port: int, api_key: str | None, device: str, dtype: str | None,
            max_batch_size: int, served_model_name: str | None, log_level: str) -> Iterator[uvicorn.Server]:
    """A uvicorn server for `model_dir`, its engine running until the context ends."""
    if not Path(model_dir).is_dir():
        raise LingcoderError(f"{model_dir}: checkpoint directory not found")
    model, tokenizer = load_for_generation(model_dir, device=device, dtype=dtype)
    template = ChatTemplate.from_model_dir(model_dir)
    name = served_model_name or Path(model_dir).resolve().name
    engine = Engine(pack_for_serving(model), tokenizer, max_batch_size=max_batch_size)
    app = build_app(engine, tokenizer, template, name, api_key=api_key)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "info",
                            lifespan="off", timeout_graceful_shutdown=5)
    engine.start()
    try:
        yield uvicorn.Server(config)
    finally:
        engine.stop()


@dataclass
class ServeConfig:
    """`lingcoder serve`."""

    model_dir: str  # a checkpoint directory (with tokenizer.json)
    host: str = "127.0.0.1"  # loopback by default
    port: int = 8000
    api_key: str | None = None  # require 'Authorization: Bearer KEY' on /v1
    device: str = "cpu"  # cpu, cuda, cuda:1, ...
    dtype: str | None = None  # float32, bfloat16, ...; None: as stored
    max_batch_size: int = 32  # rows (choices) decoded together at most
    served_model_name: str | None = None  # the name at /v1/models; None: the directory's name
    engine: str = "lingcoder"  # lingcoder (this server) or vllm (vLLM's server on the checkpoint)

    def __post_init__(self) -> None:
        if self.engine not in ("lingcoder", "vllm"):
            raise LingcoderError(f"serve.engine {self.engine!r}: unknown (known: lingcoder, vllm)")


def serve(config: ServeConfig) -> None:
    """`lingcoder serve`: serve `config.model_dir` until interrupted (with vLLM when `engine = "vllm"`)."""
    if config.engine == "vllm":
        from lingcoder.vllm_server import serve_with_vllm

        serve_with_vllm(config.model_dir, host=config.host, port=config.port, api_key=config.api_key,
                        dtype=config.dtype, served_model_name=config.served_model_name)
        return
    settings = dataclasses.asdict(config)
    settings.pop("engine")
    with _server(settings.pop("model_dir"), **settings, log_level="info") as server:
        server.run()


@contextmanager
def serve_in_background(model_dir: str | Path, **settings) -> Iterator[str]:
    """Serve `model_dir` from a background thread with `ServeConfig` `settings` (port 0, the default here:
    a free one); yields the base URL, ending in /v1."""
    config = ServeConfig(str(model_dir), **{"port": 0, **settings})
    host, port = config.host, config.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LingcoderError(f"cannot listen on {host}:{port} ({exc})") from None
    if config.engine != "lingcoder":
        sock.close()
        raise LingcoderError("serve_in_background runs lingcoder's own engine; for vLLM use lingcoder.vllm_server")
    settings = dataclasses.asdict(config)
    settings.pop("engine")
    with sock, _server(settings.pop("model_dir"), **settings, log_level="warning") as server:
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lingcoder-http",
                                  daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise LingcoderError(f"the server on {host}:{port} did not start")
            time.sleep(0.01)
        bound = sock.getsockname()[1]
        try:
            yield f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{bound}/v1"
        finally:
            server.should_exit = True
            thread.join()
