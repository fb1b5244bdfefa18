"""The generation engine: one background thread owns the model and decodes all running requests together.

Continuous batching. At each step the engine admits waiting requests (first come, first served, while
their n choices fit in `max_batch_size` rows), prefills their prompts in one left-padded forward, copies
the keys and values into free slots of the running batch (`BatchKVCache`: preallocated, no copy of the
other rows), then runs one decode forward for every row.
A row leaves the batch as soon as it finishes (EOS, a stop string, max_tokens, or its request was
cancelled), so a short request never waits for a long one and a new one never waits for the batch to
drain. Rows of one request share their prompt's prefill and their request's sampling generator.

Callers `submit` a `GenerationRequest` and receive `ChoiceUpdate`s through its `on_update`, called on the
engine thread: new text as it becomes final (stop strings are never sent, so text that could be the start
of one is held back), then a finish reason. A failure, in the model or in one request's callback, ends
only the requests involved (with an `error` update); the engine goes on serving the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tokenizers import Tokenizer

from lingcoder.errors import LingcoderError
from lingcoder.generation.generate import sample_next
from lingcoder.generation.sampling import SamplingParams, cut_at_stop
from lingcoder.model import BailingMoeForCausalLM, KVCache
from lingcoder.serve.batch_cache import BatchKVCache


class InvalidRequest(LingcoderError):
    """A request the engine cannot run; `param` names the offending field, `code` is OpenAI's error code."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


@dataclass(frozen=True)
class ChoiceUpdate:
    choice: int
    text: str  # new final text since the previous update of this choice
    finish_reason: str | None  # "stop" | "length" once finished, else None
    completion_tokens: int  # tokens sampled so far for this choice (an EOS included)
    error: str | None = None  # set when the request failed; no further updates follow


@dataclass(eq=False)
class GenerationRequest:
    prompt_ids: list[int]
    params: SamplingParams
    on_update: Callable[[ChoiceUpdate], None]
    n: int = 1
    cancelled: bool = field(default=False, init=False)

    def cancel(self) -> None:
        """Stop generating for this request (e.g. its client went away); no further updates are sent."""
        self.cancelled = True


@dataclass
class EngineStats:
    requests_submitted: int = 0
    requests_finished: int = 0
    requests_cancelled: int = 0
    requests_failed: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    decoded_tokens: int = 0  # rows summed over decode steps: > decode_steps once requests share steps
    max_rows_in_step: int = 0
    running_rows: int = 0
    waiting_requests: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class Engine:
    """Owns `model` on a background thread between `start()` and `stop()`."""

    def __init__(self, model: BailingMoeForCausalLM, tokenizer: Tokenizer, max_batch_size: int = 32):
        if max_batch_size < 1:
            raise LingcoderError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.tokenizer, self.max_batch_size = model, tokenizer, max_batch_size
        self.config = model.config
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.stats = EngineStats()
        self._waiting: deque[GenerationRequest] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._rows: list[_Row] = []
        self._cache = self._new_cache()
        self._generators: dict[GenerationRequest, torch.Generator | None] = {}
        self._unfinished: dict[GenerationRequest, int] = {}  # choices still running, per admitted request
        self._thread = threading.Thread(target=self._run, name="lingcoder-engine", daemon=True)

    @property
    def context_length(self) -> int:
        return self.config.max_position_embeddings

    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the current step, end every unfinished request with an error, and join the thread."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        """Queue `request`; raises `InvalidRequest` at once when it cannot run."""
        self._validate(request)
        with self._wakeup:
            if self._stopping:
                raise InvalidRequest("the server is shutting down", code="server_shutting_down")
            self._waiting.append(request)
            self.stats.requests_submitted += 1
            self.stats.waiting_requests = len(self._waiting)
            self._wakeup.notify()
        return request

    def _validate(self, request: GenerationRequest) -> None:
        prompt, params, vocab = request.prompt_ids, request.params, self.config.vocab_size
        if not 1 <= request.n <= self.max_batch_size:
            raise InvalidRequest(f"n={request.n}: must be between 1 and the server's max batch size "
                                 f"({self.max_batch_size})", param="n")
        if params.max_tokens < 1:
            raise InvalidRequest(f"max_tokens={params.max_tokens}: must be >= 1", param="max_tokens")
        if not prompt:
            raise InvalidRequest("the prompt is empty (0 tokens)", param="prompt")
        bad = next((t for t in prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequest(f"prompt token id {bad} is outside the model's vocabulary (size {vocab})",
                                 param="prompt")
        if len(prompt) + params.max_tokens > self.context_length:
            raise InvalidRequest(
                f"this model's context length is {self.context_length} tokens, but the prompt has "
                f"{len(prompt)} tokens and max_tokens is {params.max_tokens} "
                f"({len(prompt) + params.max_tokens} in all)",
                param="max_tokens", code="context_length_exceeded",
            )

    # -- the engine thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and not self._waiting and not self._rows:
                    self._wakeup.wait()
                if self._stopping:
                    break
                admitted = self._admit()
            try:
                with torch.inference_mode():
                    if admitted:
                        self._prefill(admitted)
                    if self._rows:
                        self._decode()
            except Exception as exc:  # the rows shared this step: fail their requests, keep serving
                for request in dict.fromkeys([*admitted, *(row.request for row in self._rows)]):
                    self._fail(request, f"generation failed: {exc}")
                self._reset_batch()
        with self._wakeup:
            left = list(dict.fromkeys([*self._waiting, *(row.request for row in self._rows)]))
            self._waiting.clear()
        for request in left:
            self._fail(request, "the server is shutting down")
        self._reset_batch()

    def _admit(self) -> list[GenerationRequest]:
        """Waiting requests that fit in the batch, in arrival order (called with the lock held)."""
        free, admitted = self.max_batch_size - len(self._rows), []
        while self._waiting and self._waiting[0].n <= free:
            request = self._waiting.popleft()
            if request.cancelled:
                self.stats.requests_cancelled += 1
                continue
            admitted.append(request)
            free -= request.n
        self.stats.waiting_requests = len(self._waiting)
        return admitted

    def _prefill(self, requests: list[GenerationRequest]) -> None:
        """One left-padded forward over the new prompts; their rows join the batch with a first token."""
        try:
            longest = max(len(r.prompt_ids) for r in requests)
            pad = self.config.pad_token_id
            input_ids_BT = torch.tensor([[pad] * (longest - len(r.prompt_ids)) + r.prompt_ids for r in requests],
                                        device=self.device)
            mask_BS = torch.zeros(len(requests), longest, dtype=torch.bool, device=self.device)
            for i, r in enumerate(requests):
                mask_BS[i, longest - len(r.prompt_ids):] = True
            prefill = KVCache(self.config, len(requests), longest, self.device, self.dtype)
            logits_BV = self.model(input_ids_BT, attention_mask=mask_BS, cache=prefill,
                                   logits_to_keep=1).logits[:, -1]
            self._cache.add(prefill, mask_BS, [r.n for r in requests])
            repeats = torch.tensor([r.n for r in requests], device=self.device)
        except Exception as exc:  # e.g. out of memory: only these requests fail
            for request in requests:
                self._fail(request, f"prefill failed: {exc}")
            return
        self.stats.prefill_steps += 1
        first = len(self._rows)
        for request in requests:
            seed = request.params.seed
            self._generators[request] = (None if seed is None
                                         else torch.Generator(device=self.device).manual_seed(seed))
            self._unfinished[request] = request.n
            self._rows.extend(_Row(request, choice, self.tokenizer, self.config.eos_token_id)
                              for choice in range(request.n))
        self._sample(self._rows[first:], logits_BV.repeat_interleave(repeats, dim=0))
        self._drop_finished()

    def _decode(self) -> None:
        """One forward of every row's last token."""
        rows = self._rows
        mask_BS, position_ids_B1 = self._cache.begin_step()
        input_ids_B1 = torch.tensor([[row.pending] for row in rows], device=self.device)
        logits_BV = self.model(input_ids_B1, attention_mask=mask_BS, position_ids=position_ids_B1,
                               cache=self._cache, logits_to_keep=1).logits[:, -1]
        self._cache.end_step()
        self.stats.decode_steps += 1
        self.stats.decoded_tokens += len(rows)
        self.stats.max_rows_in_step = max(self.stats.max_rows_in_step, len(rows))
        self._sample(rows, logits_BV)
        self._drop_finished()

    def _sample(self, rows: list[_Row], logits_BV: torch.Tensor) -> None:
        """Draw each row's next token (rows of one request together, with its generator) and report it."""
        by_request: dict[GenerationRequest, list[int]] = {}
        for i, row in enumerate(rows):
            by_request.setdefault(row.request, []).append(i)
        greedy = any(r.params.temperature == 0 for r in by_request)
        greedy_ids = logits_BV.argmax(dim=-1).tolist() if greedy else []  # one device sync for all greedy rows
        for request, indices in by_request.items():
            if request.cancelled:
                continue
            if request.params.temperature == 0:
                tokens = [greedy_ids[i] for i in indices]
            else:
                index = torch.tensor(indices, device=logits_BV.device)
                tokens = sample_next(logits_BV.index_select(0, index), request.params,
                                     self._generators[request]).tolist()
            for i, token in zip(indices, tokens, strict=True):
                self._report(rows[i], rows[i].accept(token))

    def _report(self, row: _Row, update: ChoiceUpdate | None) -> None:
        if update is None or row.request.cancelled:
            return
        try:
            row.request.on_update(update)
        except Exception:  # a broken consumer loses its own request, nobody else's
            row.request.cancel()
            return
        if update.finish_reason is not None:
            self._unfinished[row.request] -= 1
            if self._unfinished[row.request] == 0:
                self.stats.requests_finished += 1

    def _drop_finished(self) -> None:
        keep = [i for i, row in enumerate(self._rows) if not row.finished and not row.request.cancelled]
        for request in {row.request for row in self._rows if row.request.cancelled}:
            if self._unfinished.pop(request, 0):
                self.stats.requests_cancelled += 1
        if len(keep) < len(self._rows):
            self._cache.keep(keep)
            self._rows = [self._rows[i] for i in keep]
        self._forget_finished()

    def _forget_finished(self) -> None:
        running = {row.request for row in self._rows}
        for request in [r for r in self._generators if r not in running]:
            del self._generators[request]
            self._unfinished.pop(request, None)
        self.stats.running_rows = len(self._rows)

    def _fail(self, request: GenerationRequest, message: str) -> None:
        """Tell `request` it failed (one update carrying the error) and stop it."""
        if request.cancelled:
            return
        self.stats.requests_failed += 1
        with contextlib.suppress(Exception):  # nothing more can be told to a broken consumer
            request.on_update(ChoiceUpdate(0, "", None, 0, error=message))
        request.cancel()
        self._unfinished.pop(request, None)

    def _reset_batch(self) -> None:
        self._rows = []
        self._cache = self._new_cache()
        self._forget_finished()

    def _new_cache(self) -> BatchKVCache:
        return BatchKVCache(self.config, self.device, self.dtype, max_rows=min(self.max_batch_size, 8))


class _Row:
    """One choice being decoded: its tokens, its text, and how much of the text was already sent."""

    def __init__(self, request: GenerationRequest, choice: int, tokenizer: Tokenizer, eos_token_id: int | None):
        self.request, self.choice, self.tokenizer, self.eos_token_id = request, choice, tokenizer, eos_token_id
        self.stops = [s for s in request.params.stop if s]
        self.holdback = max((len(s) for s in self.stops), default=1) - 1  # a stop string may be starting
        self.ids: list[int] = []
        self.sampled, self.sent = 0, 0
        self.pending: int | None = None  # the last sampled token, input of the next decode step
        self.finished = False

    def accept(self, token: int) -> ChoiceUpdate | None:
        """Record a sampled token; the update to send, if any."""
        self.sampled += 1
        finish = None
        if token == self.eos_token_id:
            finish = "stop"
        else:
            self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        cut = cut_at_stop(text, self.stops)
        if len(cut) < len(text):
            text, finish = cut, "stop"
        elif finish is None and self.sampled >= self.request.params.max_tokens:
            finish = "length"
        if finish is None:
            self.pending = token
            end = len(text) - self.holdback
            while end > self.sent and text[end - 1] == "\ufffd":  # an incomplete UTF-8 sequence so far
                end -= 1
            text = text[:end]
        else:
            self.finished = True
        if len(text) <= self.sent and finish is None:
            return None
        update = ChoiceUpdate(self.choice, text[self.sent:], finish, self.sampled)
        self.sent = max(self.sent, len(text))
        return update
