"""What the gateway needs to know of a request body before it forwards it, and nothing more.

The body is parsed once, here: `stream` is coerced exactly as vLLM's pydantic request models do
(lax mode: `true`, `1`, `"yes"`, `"on"`, ... stream; a value pydantic refuses is refused here with
400 instead of guessed), and the coerced boolean is what vLLM receives, so the gateway and vLLM
never disagree on whether an answer is a stream. A streamed chat or completion is made to ask for
usage. The most the request can spend (`Budget`) is read from `max_tokens` (or
`max_completion_tokens`, `max_output_tokens`) and `n`, coerced the same way.

Bad bodies are 400s, never 500s: invalid JSON, JSON nested beyond Python's recursion limit
(`RecursionError`), a body that is not an object, fields pydantic would refuse. `parse` is pure
and imports only `json` and pydantic, so `BodyParser` runs it in a separate process for bodies
large enough to hold the event loop (a C JSON parse holds the GIL: a thread would not help).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from aiconn.gateway.usage import Usage, ask_for_usage, usage_from_body

log = logging.getLogger(__name__)
_T = TypeVar("_T")

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop (a few hundred microseconds at most)."""

TEMPLATE_ALLOWANCE = 256
"""Tokens allowed for a chat template and special tokens on top of the prompt's bytes."""
PER_MESSAGE_ALLOWANCE = 32
"""Tokens allowed per chat message for its role markers."""

_BOOL: TypeAdapter[bool | None] = TypeAdapter(bool | None)
_COUNT: TypeAdapter[int | None] = TypeAdapter(int | None)


class BadRequest(ValueError):
    """A body the gateway refuses with 400; the message names the field and what is accepted."""


@dataclass(frozen=True, slots=True)
class Budget:
    """The most tokens a request can spend, from its own fields."""

    prompt_bound: int
    """An upper bound on its prompt tokens: one per byte of the body, plus the template (a
    byte-level tokenizer makes at most one token of each byte of text)."""
    max_output: int | None
    """Its `max_tokens` (or equivalent); None when unset (the model's limit applies)."""
    n: int
    """Completions asked for."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A request body as the gateway forwards it."""

    body: bytes
    """What vLLM receives: the client's bytes, re-serialized only when the gateway changed it."""
    stream: bool
    strip_usage: bool
    """The gateway asked for the usage chunk; it is removed before the client sees it."""
    budget: Budget


def _coerce(adapter: TypeAdapter[Any], request: dict[str, Any], field: str, accepted: str) -> Any:
    value = request.get(field)
    if value is None or type(value) is (bool if adapter is _BOOL else int):
        return value  # already what pydantic returns; validating it would cost microseconds
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise BadRequest(f"{field}: {json.dumps(value)[:40]} is not {accepted}") from None


OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
"""Every field that can bound a request's output; each is checked, the route says which count."""


def _budget(
    request: dict[str, Any],
    size: int,
    *,
    default_max_output: int | None,
    output_fields: tuple[str, ...],
) -> Budget:
    given: dict[str, int] = {}
    for field in OUTPUT_FIELDS:
        value = _coerce(_COUNT, request, field, "an integer")
        if value is not None:
            if value < 0:
                raise BadRequest(f"{field}: {value} is negative; give 0 or more")
            given[field] = value
    # As vLLM reads them: the route's fields in order, the first one set and not 0 (chat takes
    # `max_completion_tokens or max_tokens`); a field the route ignores never lowers the budget.
    max_output = next((given[f] for f in output_fields if given.get(f)), None)
    if max_output is None and len(output_fields) == 1 and output_fields[0] in given:
        max_output = given[output_fields[0]]  # a route with one field takes even its 0
    n = _coerce(_COUNT, request, "n", "an integer")
    n = 1 if n is None else n
    if n < 1:
        raise BadRequest(f"n: {n} is below 1")
    messages = request.get("messages")
    message_count = len(messages) if isinstance(messages, list) else 0
    # The body's size bounds its text's UTF-8 bytes (JSON only adds quotes and escapes).
    prompt_bound = size + PER_MESSAGE_ALLOWANCE * message_count + TEMPLATE_ALLOWANCE
    return Budget(
        prompt_bound=prompt_bound,
        max_output=default_max_output if max_output is None else max_output,
        n=n,
    )


def parse(
    body: bytes,
    *,
    usage_in_stream: bool,
    default_max_output: int | None,
    output_fields: tuple[str, ...] = OUTPUT_FIELDS[:2],
) -> Parsed:
    """The body as forwarded; raises `BadRequest`.

    `usage_in_stream`: the route streams usage only when asked (`stream_options`), as chat and
    completions do. `default_max_output`: the route's own default for an unset `max_tokens`
    (vLLM's completions default to 16), None when the model's limit applies. `output_fields`: the
    fields the route's vLLM request reads for its output limit, in vLLM's order.
    """
    try:
        request = json.loads(body)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError:
        raise BadRequest("the request body must be a JSON object") from None
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    changed = False
    raw_stream = request.get("stream")
    stream = bool(_coerce(_BOOL, request, "stream", "a boolean (true or false)"))
    if "stream" in request and raw_stream is not stream and raw_stream is not None:
        request["stream"], changed = stream, True
    strip_usage = False
    if stream and usage_in_stream:
        strip_usage = ask_for_usage(request)
        changed |= strip_usage
    budget = _budget(
        request, len(body), default_max_output=default_max_output, output_fields=output_fields
    )
    return Parsed(
        body=json.dumps(request).encode() if changed else body,
        stream=stream,
        strip_usage=strip_usage,
        budget=budget,
    )


def tokenize_payload(body: bytes) -> bytes | None:
    """The `/tokenize` request that counts a forwarded body's prompt as vLLM will, or None.

    Chat messages are tokenized with the chat template and generation prompt (what vLLM
    prefills); a completion's prompt as it is; other shapes have no exact count.
    """
    request = json.loads(body)
    model = request.get("model")
    if isinstance(request.get("messages"), list):
        counted: dict[str, Any] = {
            "model": model,
            "messages": request["messages"],
            "add_generation_prompt": True,
        }
    elif isinstance(request.get("prompt"), str):
        counted = {"model": model, "prompt": request["prompt"]}
    elif isinstance(request.get("input"), str):
        counted = {
            "model": model,
            "messages": [{"role": "user", "content": request["input"]}],
            "add_generation_prompt": True,
        }
    else:
        return None
    return json.dumps(counted).encode()


def token_count(body: bytes) -> int | None:
    """The `count` of vLLM's `/tokenize` answer, or None."""
    document = json.loads(body)
    count = document.get("count") if isinstance(document, dict) else None
    return count if isinstance(count, int) else None


class BodyParser:
    """Parses small JSON bodies inline and large ones in a worker process.

    Used for every body the gateway reads whole: requests (`parse`), the prompts it counts
    (`tokenize_payload`, `token_count`) and non-streamed answers (`usage`). The worker starts on
    first need and again after it died (killed, out of memory): a dead worker breaks its pool for
    good, so the pool is replaced and the body sent once more. Should the new worker die on the
    same body, it is parsed inline: slower for everyone for a moment, but still metered.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def parse(
        self,
        body: bytes,
        *,
        usage_in_stream: bool,
        default_max_output: int | None,
        output_fields: tuple[str, ...] = OUTPUT_FIELDS[:2],
    ) -> Parsed:
        if len(body) <= INLINE_PARSE_BYTES:
            return parse(
                body,
                usage_in_stream=usage_in_stream,
                default_max_output=default_max_output,
                output_fields=output_fields,
            )
        return await self._off_loop(
            _parse_positional, body, usage_in_stream, default_max_output, output_fields
        )

    async def usage(self, body: bytes) -> Usage | None:
        """`usage_from_body`, off the event loop for a large answer (embeddings, logprobs)."""
        if len(body) <= INLINE_PARSE_BYTES:
            return usage_from_body(body)
        return await self._off_loop(usage_from_body, body)

    async def tokenize_payload(self, body: bytes) -> bytes | None:
        """`tokenize_payload`, off the event loop for a large request."""
        if len(body) <= INLINE_PARSE_BYTES:
            return tokenize_payload(body)
        return await self._off_loop(tokenize_payload, body)

    async def token_count(self, body: bytes) -> int | None:
        """`token_count`, off the event loop for a long prompt's answer."""
        if len(body) <= INLINE_PARSE_BYTES:
            return token_count(body)
        return await self._off_loop(token_count, body)

    async def _off_loop(self, function: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        for _ in range(2):
            if self._pool is None:
                # forkserver: the worker starts from a clean interpreter, not a copy of this one.
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("forkserver")
                )
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, function, *args)
            except BrokenProcessPool:
                log.warning("the JSON parsing worker died; starting another")
                if self._pool is pool:
                    self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        return function(*args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _parse_positional(
    body: bytes,
    usage_in_stream: bool,
    default_max_output: int | None,
    output_fields: tuple[str, ...],
) -> Parsed:
    return parse(
        body,
        usage_in_stream=usage_in_stream,
        default_max_output=default_max_output,
        output_fields=output_fields,
    )
