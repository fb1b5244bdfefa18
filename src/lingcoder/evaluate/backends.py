"""Generation backends: our checkpoints, Hugging Face models, any OpenAI-compatible endpoint.

Each backend answers `complete(prompts, settings)` (base models: continue the text) and
`chat(conversations, settings)` (instruct models), returning `settings.n` texts per input with
stop strings applied. Temperature 0 means greedy decoding.

- `CheckpointBackend`: our own `lingcoder.generation.generate` on a checkpoint directory; chat uses the
  Ling chat template (`<role>HUMAN</role>...<role>ASSISTANT</role>`).
- `HuggingFaceBackend`: `transformers.AutoModelForCausalLM`, installed on demand
  (`pip install 'lingcoder[hf]'`); chat uses the tokenizer's chat template and ends each answer where
  the assistant's turn ends. A local directory is read without asking the hub; a hub id comes from the
  local cache or is downloaded.
- `OpenAIBackend`: `/v1/completions` and `/v1/chat/completions` (vLLM, our server, ...), with the
  key from $OPENAI_API_KEY when set. It speaks HTTP with the standard library: two JSON POST calls
  do not justify a client dependency. Endpoints cap the stop strings of a request (vLLM and OpenAI at
  4), so it sends the first four and cuts the text at all of them.
- `VLLMBackend`: a checkpoint served by vLLM for the run (`lingcoder.vllm_server`), spoken to as above;
  `close()` stops the server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import CHAT_STOPS
from lingcoder.generation.sampling import SamplingParams, cut_at_stop

MAX_STOP_STRINGS = 4  # per request, at vLLM (VLLM_MAX_STOP_STRINGS) and OpenAI


class CheckpointBackend:
    """Our checkpoints through `lingcoder.generation.generate` (imported when first used: it needs torch)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        if not Path(model_dir).is_dir():
            raise LingcoderError(f"{model_dir}: checkpoint directory not found")
        try:
            from lingcoder.generation.generate import generate, load_for_generation
        except ImportError as exc:
            raise LingcoderError(f"the checkpoint backend needs lingcoder.generation.generate ({exc})") from None
        from lingcoder.generation.chat_template import ChatTemplate

        self._generate = generate
        self.model, self.tokenizer = load_for_generation(model_dir, device=device)
        self.chat_template = ChatTemplate.from_model_dir(model_dir)
        self.model_dir = model_dir

    def complete(self, prompts: list[str], settings: SamplingParams) -> list[list[str]]:
        batch = [p for p in prompts for _ in range(settings.n)]
        texts = self._generate(
            self.model,
            self.tokenizer,
            batch,
            max_new_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            stop=list(settings.stop) or None,
            seed=settings.seed,
        )
        texts = [cut_at_stop(t, settings.stop) for t in texts]
        return [texts[i * settings.n : (i + 1) * settings.n] for i in range(len(prompts))]

    def chat(self, conversations: list[list[dict]], settings: SamplingParams) -> list[list[str]]:
        if self.chat_template is None:
            raise LingcoderError(f"{self.model_dir}: no chat template (chat_template.jinja or tokenizer_config.json; "
                                 "use --mode base)")
        prompts = [self.chat_template.render(c) for c in conversations]
        stop = tuple(dict.fromkeys([*settings.stop, *CHAT_STOPS]))
        return self.complete(prompts, dataclasses.replace(settings, stop=stop))


class HuggingFaceBackend:
    """A `transformers` causal LM: a local model directory, or a hub id (from the local cache or downloaded)."""

    def __init__(self, model: str, device: str = "cpu", trust_remote_code: bool = False) -> None:
        try:
            import torch
            import transformers
        except ImportError:
            raise LingcoderError("the hf backend needs transformers: pip install 'lingcoder[hf]'") from None
        local = _is_local_path(model)
        if local and not Path(model).expanduser().is_dir():
            raise LingcoderError(f"{model}: model directory not found")
        source = str(Path(model).expanduser()) if local else model
        self.torch = torch
        self.device = device
        self.model_name = model
        try:
            options = {"local_files_only": local, "trust_remote_code": trust_remote_code}
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(source, **options)
        except (OSError, ValueError) as exc:
            what = "the model directory" if local else "the Hugging Face model"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                reason += " (the model ships its own code: --trust-remote-code runs it, for a model you trust)"
            raise LingcoderError(f"{model}: transformers cannot load {what}: {reason}") from None
        self.model = self.model.to(device).eval()
        vocabulary = self.tokenizer.get_vocab()
        self.turn_ends = frozenset(vocabulary[token] for token in CHAT_STOPS if token in vocabulary)

    def complete(self, prompts: list[str], settings: SamplingParams) -> list[list[str]]:
        return self._generate(prompts, settings)

    def chat(self, conversations: list[list[dict]], settings: SamplingParams) -> list[list[str]]:
        """Answers to the rendered conversations, each cut at the first token that ends the assistant's
        turn: Ling's `<|endoftext|>`, or a `<role>` that opens another turn. transformers stops only at
        the end-of-sequence ids and decoding drops special tokens, so without the cut a Ling model's
        answer would run on into the next turn's text."""
        if not self.tokenizer.chat_template:
            raise LingcoderError(f"{self.model_name}: the tokenizer has no chat template (use --mode base)")
        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        return self._generate(prompts, settings, self.turn_ends)

    def _generate(self, prompts: list[str], settings: SamplingParams, turn_ends: frozenset[int] = frozenset()):
        outputs = []
        pad_token_id = self.tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = self.tokenizer.eos_token_id
        for prompt in prompts:
            inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
            sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
            if settings.top_k:
                sampling["top_k"] = settings.top_k
            if settings.seed is not None:
                self.torch.manual_seed(settings.seed)
            with self.torch.no_grad():
                tokens = self.model.generate(
                    **inputs,
                    max_new_tokens=settings.max_tokens,
                    num_return_sequences=settings.n,
                    pad_token_id=pad_token_id,
                    **(sampling if settings.temperature > 0 else {"do_sample": False}),
                )
            answers = [_cut_at_token(row, turn_ends) for row in tokens[:, inputs["input_ids"].shape[1] :].tolist()]
            texts = self.tokenizer.batch_decode(answers, skip_special_tokens=True)
            outputs.append([cut_at_stop(t, settings.stop) for t in texts])
        return outputs


def _cut_at_token(ids: list[int], ends: frozenset[int]) -> list[int]:
    """`ids` up to the first of `ends`."""
    return next((ids[:i] for i, token in enumerate(ids) if token in ends), ids)


class OpenAIBackend:
    """An OpenAI-compatible HTTP endpoint; `base_url` ends in `/v1` (e.g. http://host:8000/v1)."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, parallel: int = 8, timeout: float = 600.0,
        extra_body: dict | None = None,
    ) -> None:
        self.extra_body = dict(extra_body or {})  # server-specific request fields
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.parallel = parallel
        self.timeout = timeout

    def complete(self, prompts: list[str], settings: SamplingParams) -> list[list[str]]:
        def one(prompt: str) -> list[str]:
            reply = self._post("/completions", {"prompt": prompt, **self._sampling(settings)})
            return [cut_at_stop(c.get("text") or "", settings.stop) for c in _choices(reply, settings.n)]

        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(one, prompts))

    def chat(self, conversations: list[list[dict]], settings: SamplingParams) -> list[list[str]]:
        def one(messages: list[dict]) -> list[str]:
            reply = self._post("/chat/completions", {"messages": messages, **self._sampling(settings)})
            texts = [(c.get("message") or {}).get("content") or "" for c in _choices(reply, settings.n)]
            return [cut_at_stop(t, settings.stop) for t in texts]

        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(one, conversations))

    def _sampling(self, settings: SamplingParams) -> dict:
        body = {
            **self.extra_body,
            "model": self.model,
            "n": settings.n,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
        }
        if settings.top_k:
            body["top_k"] = settings.top_k  # vLLM's and our server's extension of the OpenAI API
        if settings.stop:
            body["stop"] = list(settings.stop)[:MAX_STOP_STRINGS]  # the text is cut at every one of them
        if settings.seed is not None:
            body["seed"] = settings.seed
        return body

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise LingcoderError(f"{url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise LingcoderError(f"{url}: cannot reach the endpoint ({exc})") from None
        except json.JSONDecodeError:
            raise LingcoderError(f"{url}: the reply is not JSON") from None


class VLLMBackend(OpenAIBackend):
    """A checkpoint directory served by vLLM while this backend lives; `close()` stops the server."""

    def __init__(self, model_dir: str | Path, **server_options) -> None:
        from lingcoder.vllm_server import VLLMServer

        self.server = VLLMServer(model_dir, **server_options).start()
        # Keep special tokens in the text, as lingcoder's own engine does (vLLM drops them by default).
        super().__init__(self.server.base_url, self.server.model_name, api_key="",
                         extra_body={"skip_special_tokens": False})

    def close(self) -> None:
        self.server.stop()


def _is_local_path(model: str) -> bool:
    """Whether `model` names a local directory rather than a hub id (`name` or `owner/name`): it exists,
    is absolute or relative (`./`, `~`), has more than one `/`, or its first part is a local directory."""
    if Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        return True
    return "/" in model and Path(model.split("/")[0]).is_dir()


def _choices(reply: dict, n: int) -> list[dict]:
    choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
    if len(choices) != n:
        raise LingcoderError(f"the endpoint returned {len(choices)} choices, expected n={n}")
    return choices


def make_backend(
    kind: str, model: str, *, base_url: str | None = None, device: str = "cpu", api_key: str | None = None,
    trust_remote_code: bool = False,
):
    """Build a backend by name: `checkpoint`, `hf`, `openai` or `vllm` (call its `close()` when done)."""
    if kind == "checkpoint":
        return CheckpointBackend(model, device=device)
    if kind == "hf":
        return HuggingFaceBackend(model, device=device, trust_remote_code=trust_remote_code)
    if kind == "openai":
        if not base_url:
            raise LingcoderError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        return OpenAIBackend(base_url, model, api_key=api_key)
    if kind == "vllm":
        if not Path(model).is_dir():
            raise LingcoderError(f"{model}: checkpoint directory not found (the vllm backend serves a checkpoint)")
        return VLLMBackend(model)
    raise LingcoderError(f"backend {kind!r}: unknown (known: checkpoint, hf, openai, vllm)")
