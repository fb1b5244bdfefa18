"""The OpenAI-compatible server, over real HTTP (the official `openai` client and raw `httpx`) on a loopback port,
serving a micro checkpoint: same answers as `generate()`, streaming, sampling, batching, errors, API key, eval."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import torch

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.generation.chat_template import ChatTemplate
from lingcoder.generation.generate import generate, generate_ids, load_for_generation
from lingcoder.generation.sampling import SamplingParams
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.serve.engine import Engine, GenerationRequest
from lingcoder.serve.server import serve_in_background

from .conftest import embedded_text, micro_config

NAME = "micro-coder"
PROMPTS = ["def add(a, b):", "import os\nclass Path", "x = [1, 2, 3]\nfor", "    return sorted("]
CHAT_STOPS = ["<|endoftext|>", "<role>"]



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tokenizer = train_tokenizer(embedded_text()[:4], vocab_size=400)
    torch.manual_seed(0)
    model = BailingMoeForCausalLM(micro_config(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=1024))
    directory = tmp_path_factory.mktemp("checkpoints") / NAME
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory, model_max_length=model.config.max_position_embeddings)
    return directory


@pytest.fixture(scope="module")
def direct(checkpoint):
    return load_for_generation(checkpoint)


@pytest.fixture(scope="module")
def url(checkpoint):
    with serve_in_background(checkpoint, max_batch_size=8) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def metrics(url) -> dict[str, int]:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    return {name.removeprefix("lingcoder_"): int(value) for name, value in
            (line.split() for line in text.splitlines() if not line.startswith("#"))}


def sse_events(url, path, body):
    with httpx.stream("POST", url + path, json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_models_are_listed_under_the_checkpoint_name(client, url):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).owned_by == "lingcoder"
    missing = httpx.get(f"{url}/models/other")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_greedy_completions_equal_generate_called_directly(client, direct):
    model, tokenizer = direct
    expected = generate(model, tokenizer, PROMPTS, max_new_tokens=24)
    for prompt, text in zip(PROMPTS, expected, strict=True):
        reply = client.completions.create(model=NAME, prompt=prompt, max_tokens=24, temperature=0)
        assert reply.choices[0].text == text
        tokens = len(tokenizer.encode(prompt, add_special_tokens=False).ids)
        assert reply.usage.prompt_tokens == tokens and 1 <= reply.usage.completion_tokens <= 24
        assert reply.choices[0].finish_reason == ("length" if reply.usage.completion_tokens == 24 else "stop")
    # A list of prompts (strings or token ids) is one request; choices come back in prompt order.
    ids = tokenizer.encode(PROMPTS[1], add_special_tokens=False).ids
    batch = client.completions.create(model=NAME, prompt=[PROMPTS[0], PROMPTS[2]], max_tokens=24, temperature=0)
    assert [c.text for c in batch.choices] == [expected[0], expected[2]]
    by_ids = client.completions.create(model=NAME, prompt=ids, max_tokens=24, temperature=0)
    assert by_ids.choices[0].text == expected[1]


def test_stop_strings_and_max_tokens(client, direct):
    model, tokenizer = direct
    free = generate(model, tokenizer, [PROMPTS[0]], max_new_tokens=24)[0]
    stop = free[6:8]
    expected = generate(model, tokenizer, [PROMPTS[0]], max_new_tokens=24, stop=[stop, "zzz"])[0]
    reply = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=24, temperature=0, stop=[stop, "zzz"])
    assert reply.choices[0].text == expected and stop not in expected and reply.choices[0].finish_reason == "stop"
    short = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_chat_renders_the_checkpoints_template_and_ends_the_turn(client, direct, checkpoint):
    model, tokenizer = direct
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sort a list."}]
    prompt = ChatTemplate.from_model_dir(checkpoint).render(messages)
    assert prompt == "<role>SYSTEM</role>You write Python.<role>HUMAN</role>Sort a list.<role>ASSISTANT</role>"
    expected = generate(model, tokenizer, [prompt], max_new_tokens=32, stop=CHAT_STOPS)[0]
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=32, temperature=0)
    assert reply.choices[0].message.content == expected and reply.choices[0].message.role == "assistant"
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    assert reply.usage.prompt_tokens == len(prompt_ids)
    parts = [{"role": "system", "content": [{"type": "text", "text": "You write Python."}]}, messages[1]]
    again = client.chat.completions.create(model=NAME, messages=parts, max_completion_tokens=32, temperature=0)
    assert again.choices[0].message.content == expected


def test_seeded_sampling_with_n_choices(client, direct):
    model, tokenizer = direct
    args = dict(model=NAME, prompt=PROMPTS[0], max_tokens=16, temperature=1.0, top_p=0.9, n=3, seed=11)
    first = [c.text for c in client.completions.create(**args).choices]
    assert len(first) == 3 and len(set(first)) > 1  # three different samples ...
    assert [c.text for c in client.completions.create(**args).choices] == first  # ... reproduced by the seed
    assert [c.text for c in client.completions.create(**(args | {"seed": 12})).choices] != first
    alone = client.completions.create(**(args | {"n": 1})).choices[0].text
    assert alone == generate(model, tokenizer, [PROMPTS[0]], max_new_tokens=16, temperature=1.0, top_p=0.9, seed=11)[0]


def test_streamed_completions_are_openai_chunks_that_add_up(url, client):
    body = {"prompt": PROMPTS[1], "max_tokens": 20, "temperature": 0, "stop": ["e"], "n": 2}
    whole = client.completions.create(model=NAME, **body)
    chunks = sse_events(url, "/completions", {**body, "stream": True})
    assert {c["object"] for c in chunks} == {"text_completion"} and len({c["id"] for c in chunks}) == 1
    for choice in whole.choices:
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == choice.index]
        assert "".join(c["text"] for c in mine) == choice.text
        assert [c["finish_reason"] for c in mine][-1] == choice.finish_reason
        assert all(c["finish_reason"] is None for c in mine[:-1])


def test_streamed_chat_with_usage_through_the_official_client(client):
    messages = [{"role": "user", "content": "Write a loop."}]
    whole = client.chat.completions.create(model=NAME, messages=messages, max_tokens=24, temperature=0.8, n=2,
                                           seed=3)
    stream = client.chat.completions.create(model=NAME, messages=messages, max_tokens=24, temperature=0.8, n=2,
                                            seed=3, stream=True, stream_options={"include_usage": True})
    texts, roles, finish, usage = ["", ""], set(), {}, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            roles.add(choice.delta.role)
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in whole.choices]
    assert finish == {c.index: c.finish_reason for c in whole.choices} and "assistant" in roles
    assert usage.model_dump() == whole.usage.model_dump()


def test_concurrent_requests_share_decode_steps_and_answer_as_alone(url, client, direct):
    model, tokenizer = direct
    alone = generate(model, tokenizer, PROMPTS, max_new_tokens=40)
    before = metrics(url)
    answers, start = {}, threading.Barrier(len(PROMPTS))

    def ask(i):
        start.wait()
        answers[i] = client.completions.create(model=NAME, prompt=PROMPTS[i], max_tokens=40, temperature=0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = metrics(url)
    assert [answers[i].choices[0].text for i in range(len(PROMPTS))] == alone
    steps = after["decode_steps_total"] - before["decode_steps_total"]
    rows = after["decoded_tokens_total"] - before["decoded_tokens_total"]
    assert rows > steps and after["max_rows_in_step"] >= 2  # requests shared decode steps
    assert after["running_rows"] == 0 and after["requests_finished_total"] - before["requests_finished_total"] == 4


def wait_for_cancellations(url, count):
    deadline = time.monotonic() + 30
    while metrics(url)["requests_cancelled_total"] < count:
        assert time.monotonic() < deadline, "an abandoned request was never cancelled"
        time.sleep(0.05)


def test_clients_that_leave_free_their_rows(url, client):
    cancelled = metrics(url)["requests_cancelled_total"]
    body = {"prompt": PROMPTS[2], "max_tokens": 1000, "temperature": 0}  # greedy: 1000 tokens without EOS
    with httpx.stream("POST", url + "/completions", json={**body, "stream": True}, timeout=60) as response:
        next(response.iter_lines())  # generation has started; now go away
    wait_for_cancellations(url, cancelled + 1)
    with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that gives up
        httpx.post(url + "/completions", json=body, timeout=0.5)
    wait_for_cancellations(url, cancelled + 2)
    assert metrics(url)["running_rows"] == 0
    assert client.completions.create(model=NAME, prompt="x", max_tokens=2).choices[0].finish_reason


def test_requests_joining_and_leaving_a_running_batch_decode_as_if_alone(direct):
    model, tokenizer = direct
    prompts = {"running": [5, 6, 7], "longer prompt": list(range(10, 70)), "one token": [8], "brief": [9, 10]}
    max_new = {"running": 150, "longer prompt": 40, "one token": 30, "brief": 3}
    texts, finished = {name: "" for name in prompts}, {name: threading.Event() for name in prompts}
    started = threading.Event()

    def collect(name):
        def on_update(update):
            texts[name] += update.text
            started.set()
            if update.finish_reason:
                finished[name].set()
        return on_update

    engine = Engine(model, tokenizer, max_batch_size=4).start()
    try:
        engine.submit(GenerationRequest(prompts["running"], SamplingParams(max_new["running"]), collect("running")))
        assert started.wait(30)  # the first row is decoding; the others join it (one with a longer prompt)
        for name in ["longer prompt", "one token", "brief"]:
            engine.submit(GenerationRequest(prompts[name], SamplingParams(max_new[name]), collect(name)))
        assert all(event.wait(60) for event in finished.values())
    finally:
        engine.stop()
    for name, prompt in prompts.items():
        ids = generate_ids(model, [prompt], SamplingParams(max_new[name]), eos_token_id=model.config.eos_token_id)[0]
        assert texts[name] == tokenizer.decode(ids, skip_special_tokens=False), name
    assert engine.stats.max_rows_in_step >= 2 and engine.stats.decoded_tokens > engine.stats.decode_steps


def test_a_failing_request_ends_alone_and_the_engine_goes_on(direct):
    model, tokenizer = direct
    engine = Engine(model, tokenizer, max_batch_size=4).start()
    try:
        updates = {"good": []}

        def broken(update):
            raise RuntimeError("consumer exploded")

        done = threading.Event()

        def good(update):
            updates["good"].append(update)
            if update.finish_reason:
                done.set()

        params = SamplingParams(max_tokens=30)
        engine.submit(GenerationRequest([5, 6, 7], params, broken))
        engine.submit(GenerationRequest([8, 9], params, good))
        assert done.wait(30)
        ids = generate_ids(model, [[8, 9]], params, eos_token_id=model.config.eos_token_id)[0]
        assert "".join(u.text for u in updates["good"]) == tokenizer.decode(ids, skip_special_tokens=False)
        assert engine.stats.requests_cancelled == 1 and engine.stats.requests_finished == 1
    finally:
        engine.stop()
    assert engine.stats.running_rows == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "says"),
    [
        ("/completions", b"{not json", 400, None, "not valid JSON"),
        ("/completions", b"[1, 2]", 400, None, "must be a JSON object"),
        ("/completions", {"prompt": "x", "temperature": "hot"}, 422, "temperature", "valid number"),
        ("/completions", {"prompt": "x", "n": 1.5}, 422, "n", "valid integer"),
        ("/completions", {"prompt": 7}, 422, "prompt", "expected a string"),
        ("/completions", {"max_tokens": 3}, 422, "prompt", "required"),
        ("/completions", {"prompt": "x", "temperature": 3}, 422, "temperature", "less than or equal to 2"),
        ("/completions", {"prompt": "x", "colour": "red"}, 400, "colour", "Unrecognized request argument"),
        ("/completions", {"prompt": "x", "logprobs": 2}, 400, "logprobs", "not supported"),
        ("/completions", {"prompt": "x", "stop": [""]}, 400, "stop", "must not be empty"),
        ("/completions", {"prompt": "x", "model": "gpt-9"}, 404, "model", "does not exist"),
        ("/completions", {"prompt": "x", "n": 9}, 400, "n", "max batch size (8)"),
        ("/completions", {"prompt": [[1, 2, 4000]]}, 400, "prompt", "token id 4000 is outside"),
        ("/completions", {"prompt": ""}, 400, "prompt", "empty"),
        ("/completions", {"prompt": [5] * 1000, "max_tokens": 100}, 400, "max_tokens",
         "context length is 1024 tokens, but the prompt has 1000 tokens and max_tokens is 100 (1100 in all)"),
        ("/completions", {"prompt": "x", "max_tokens": 1024}, 400, "max_tokens", "1025 in all"),
        ("/chat/completions", {"messages": []}, 422, "messages", "at least 1 item"),
        ("/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages", "role"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1024}, 400,
         "max_tokens", "context length is 1024"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                               "max_completion_tokens": 3}, 400, "max_completion_tokens", "disagree"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [{}]}, 400, "tools",
         "not supported"),
    ],
)
def test_bad_requests_get_openai_error_bodies(url, path, body, status, param, says):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(url + path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and says in error["message"]


def test_routes_sizes_and_methods_are_checked_and_the_server_survives(url, client):
    assert httpx.get(url + "/completions").status_code == 405
    assert httpx.post(url + "/nothing", json={}).json()["error"]["message"].endswith("Not Found")
    huge = httpx.post(url + "/completions", content=b'{"prompt": "' + b"x" * (9 * 2**20) + b'"}')
    assert huge.status_code == 413 and "at most 8388608" in huge.json()["error"]["message"]
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=NAME, prompt="x", top_p=0)
    assert client.completions.create(model=NAME, prompt="x", max_tokens=2).choices[0].finish_reason


def test_api_key_is_required_when_set(checkpoint):
    with serve_in_background(checkpoint, api_key="s3cret", served_model_name="coder") as base_url:
        body = {"prompt": "x", "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.post(base_url + "/completions", json=body, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
        authorised = openai.OpenAI(base_url=base_url, api_key="s3cret", max_retries=0)
        assert [m.id for m in authorised.models.list().data] == ["coder"]
        assert authorised.completions.create(model="coder", **body).usage.completion_tokens >= 1
        assert httpx.get(base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


@pytest.mark.parametrize("mode", ["base", "instruct"])
def test_eval_through_the_server_equals_eval_of_the_checkpoint(tmp_path, checkpoint, url, mode):
    tasks = ["HumanEval/0", "HumanEval/2", "HumanEval/4"]
    common = dict(tasks=tasks, mode=mode, max_tokens=24, k=[1], progress=False, min_timeout=2.0)
    direct = run_eval(EvalConfig(tmp_path / "checkpoint", backend="checkpoint", model=str(checkpoint), **common))
    served = run_eval(EvalConfig(tmp_path / "served", backend="openai", model=NAME, base_url=url, **common))

    def rows(name, out):
        return [json.loads(line) for line in (tmp_path / out / name).read_text().splitlines()]

    raw = [s["raw"] for s in rows("samples.jsonl", "served")]
    assert raw == [s["raw"] for s in rows("samples.jsonl", "checkpoint")]
    verdicts = [(r["task_id"], r["verdict"]) for r in rows("results.jsonl", "served")]
    assert verdicts == [(r["task_id"], r["verdict"]) for r in rows("results.jsonl", "checkpoint")]
    assert served["pass_at_k"] == direct["pass_at_k"]


def test_serve_command_binds_loopback_and_stops_on_sigint(checkpoint, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lingcoder", "serve", str(checkpoint), "--port", str(port),
               "--served-model-name", "cli-coder", "--max-batch-size", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/v1/models")
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.2)
        assert reply.json()["data"][0]["id"] == "cli-coder"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, 130) and "Traceback" not in stderr, stderr  # 130: ended by SIGINT
    assert "Uvicorn running on http://127.0.0.1:" in stderr


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(LingcoderError, match="checkpoint directory not found"), serve_in_background(tmp_path / "no"):
        pass
