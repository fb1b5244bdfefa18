"""The OpenAI request bodies the server accepts, and its errors in OpenAI's shape.

Bodies are validated by pydantic in strict mode: a field of the wrong type or out of range is a 422, an
argument OpenAI does not define is a 400 ("Unrecognized request argument"), as OpenAI answers. Arguments
OpenAI defines but this server does not implement (logprobs, penalties, tools, ...) are accepted only at
their neutral values, so that no request is silently served differently from what it asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Union-typed fields, whose pydantic errors list every alternative: one sentence instead.
_EXPECTED = {
    "prompt": "a string, a list of strings, a list of token ids, or a list of lists of token ids",
    "stop": "a string or a list of strings",
    "messages": "a list of {role: system|user|assistant, content: string or [{type: text, text}]} objects",
}
# Defined by OpenAI, not implemented here: the values that mean "feature off".
_NEUTRAL = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, False, True),
    "response_format": (None, {"type": "text"}),
}


class ApiError(Exception):
    """An HTTP error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class _SamplingRequest(_Body):
    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1)  # an extension (as in vLLM): 0 or -1 = no top-k cut
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # an end-user id for the caller's own bookkeeping; nothing to do with it here
    logprobs: Any = None
    echo: Any = None
    best_of: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if any(not s for s in stops):
            raise ApiError(400, "stop strings must not be empty", param="stop")
        return tuple(stops)

    def check_neutral(self) -> None:
        for name in type(self).model_fields.keys() & _NEUTRAL.keys():
            value = getattr(self, name)
            if value not in _NEUTRAL[name] and not (name == "best_of" and value == self.n):
                raise ApiError(400, f"{name}={value!r} is not supported by this server", param=name,
                               code="unsupported_parameter")


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: Any = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_template_input(self) -> dict[str, str]:
        """{role, content} for the chat template; a developer message is a system message (as in OpenAI)."""
        content = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    top_logprobs: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    response_format: Any = None

    def token_limit(self) -> int | None:
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            raise ApiError(400, f"max_tokens={self.max_tokens} and max_completion_tokens="
                                f"{self.max_completion_tokens} disagree", param="max_completion_tokens")
        return self.max_completion_tokens or self.max_tokens


def parse(model: type[_SamplingRequest], body: Any) -> Any:
    """The validated request, or the `ApiError` OpenAI would answer."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    try:
        request = model.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    request.check_neutral()
    return request


def _validation_error(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
    if unknown:
        return ApiError(400, f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])
    first = errors[0]
    param = str(first["loc"][0]) if first["loc"] else None
    if first["type"] == "missing":
        return ApiError(422, f"'{param}' is a required property", param=param, code="missing_required_parameter")
    if param in _EXPECTED and len([e for e in errors if e["loc"][:1] == first["loc"][:1]]) > 1:
        return ApiError(422, f"invalid '{param}': expected {_EXPECTED[param]}", param=param, code="invalid_type")
    where = ".".join(str(part) for part in first["loc"])
    return ApiError(422, f"invalid '{where}': {first['msg']}", param=param, code="invalid_value")
