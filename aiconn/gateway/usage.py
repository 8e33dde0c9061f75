"""Token usage and first/last token times, read from vLLM's answers as they pass through.

A non-streamed answer carries `usage` in its JSON body. A stream carries it only when the request
asked for `stream_options.include_usage`; then vLLM ends the stream with a usage-only chunk
(`"choices": []` plus `usage`) before `data: [DONE]`. The gateway always asks, so it can meter,
and removes that chunk again when the client had not asked, so the client sees the stream it
would have seen from vLLM directly. Every other byte is forwarded unchanged; events are only
split at their blank-line boundary to find the usage chunk and the first content-bearing chunk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_DONE = b"[DONE]"
_CONTENT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")
# The responses API streams typed events: one delta event per token, usage in the last one.
_RESPONSE_DELTAS = frozenset({"response.output_text.delta", "response.reasoning_text.delta"})
# Events that must be parsed even after the first content.
_PARSE_MARKERS = (b'"usage"', b'"error"', b'"type"', b"[DONE]", b'"choices":[]', b'"choices": []')
_CONTENT_MARKERS = (b'"content"', b'"text"', b'"reasoning', b'"tool_calls"')
_EMPTY_MARKERS = (b'"content":""', b'"content": ""', b'"text":""', b'"text": ""')
# A read holding any of these is inspected event by event: the parse markers, empty content (an
# event that is a token but not content), and event ends other than one blank line.
_SLOW_PATH = re.compile(
    rb'"usage"|"error"|"type"|\[DONE\]|"choices": ?\[\]|"content": ?""|"text": ?""|\r|\n\n\n'
)
_CONTENT = re.compile(rb'"content"|"text"|"reasoning|"tool_calls"')
_RESPONSE_DONE = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass(frozen=True, slots=True)
class Usage:
    """Prompt and completion tokens of one request."""

    prompt: int
    completion: int

    @classmethod
    def from_json(cls, value: object) -> Usage | None:
        """OpenAI's usage shapes: chat and completions (`prompt_tokens`, `completion_tokens`),
        responses (`input_tokens`, `output_tokens`), embeddings (`prompt_tokens` alone)."""
        if not isinstance(value, dict):
            return None
        prompt = value.get("prompt_tokens", value.get("input_tokens"))
        completion = value.get("completion_tokens", value.get("output_tokens", 0))
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        return cls(prompt=prompt, completion=completion)


def usage_from_body(body: bytes) -> Usage | None:
    """The `usage` of a non-streamed completion body, or None when absent or not JSON."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return Usage.from_json(document.get("usage")) if isinstance(document, dict) else None


def ask_for_usage(request: dict[str, Any]) -> bool:
    """Make a streamed request ask for usage; True when the client had not asked itself."""
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    kept = options if isinstance(options, dict) else {}
    # Without include_usage the client would get no per-chunk usage either: keep it that way.
    request["stream_options"] = {
        **{key: value for key, value in kept.items() if key != "continuous_usage_stats"},
        "include_usage": True,
    }
    return True


def _event_data(event: bytes) -> bytes | None:
    lines = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _choices(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return []
    return [choice for choice in choices if isinstance(choice, dict)]


def _bears_content(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(delta.get(field) for field in _CONTENT_FIELDS)


def _opens_chat(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    return isinstance(delta, dict) and "role" in delta


class Fed(NamedTuple):
    """What one read of the upstream stream gives the client (a tuple: one per relayed read)."""

    out: bytes
    """Bytes to forward: whole events, the injected usage chunk removed."""
    content: bool
    """Whether `out` holds a content-bearing event (text the client sees)."""
    tokens: int
    """Token events in `out`: one per generated token, including those that decode to ""."""


class StreamMeter:
    """Splits an SSE byte stream into events, meters it and drops the injected usage chunk.

    vLLM sends one event per generated token; a token that ends inside a UTF-8 sequence arrives
    as empty text, so "token event" and "content-bearing event" differ. Chat streams open with a
    role-only event that is neither. Events are parsed as JSON until the first content-bearing
    one (TTFT is exact); after it only events naming usage, an error, a type or the end are, and
    the others are read from their bytes: each is a token event.
    """

    def __init__(self, *, strip_usage: bool) -> None:
        self._strip_usage = strip_usage
        self._pending = b""
        self.usage: Usage | None = None
        self.token_events = 0
        self.failed = False
        self._content_seen = False

    def feed(self, data: bytes) -> Fed:
        buffer = self._pending + data if self._pending else data
        if self._content_seen:
            # The usual read after the first content: whole token events and nothing to parse.
            # One scan over the read finds anything that needs reading event by event.
            end = buffer.rfind(b"\n\n") + 2
            if end > 1:
                block = buffer if end == len(buffer) else buffer[:end]
                if _SLOW_PATH.search(block) is None:
                    self._pending = buffer[end:]
                    # Events end with a blank line (no CR, no third newline, checked above).
                    tokens = block.count(b"\n\ndata: {") + block.startswith(b"data: {")
                    self.token_events += tokens
                    return Fed(block, _CONTENT.search(block) is not None, tokens)
        out: list[bytes] = []
        content = False
        tokens = 0
        start = 0
        for match in _EVENT_END.finditer(buffer):
            event = buffer[start : match.end()]
            start = match.end()
            keep, bears, is_token = self._inspect(event)
            if keep:
                out.append(event)
            content |= bears
            tokens += is_token
        self._pending = buffer[start:]
        self.token_events += tokens
        return Fed(b"".join(out), content, tokens)

    def flush(self) -> bytes:
        """Whatever trailing bytes did not end an event (forwarded as they are)."""
        rest, self._pending = self._pending, b""
        return rest

    def _inspect(self, event: bytes) -> tuple[bool, bool, bool]:
        """(forward it, content-bearing, token event) for one event."""
        if self._content_seen and not any(marker in event for marker in _PARSE_MARKERS):
            # After the first content only usage, errors and the end need reading: an event
            # naming none of them (a quote inside a JSON string is escaped, so the markers are
            # exact) is one more token. Parsing each one cost a quarter of the gateway's CPU.
            bears = any(field in event for field in _CONTENT_MARKERS) and not any(
                empty in event for empty in _EMPTY_MARKERS
            )
            return True, bears, event.startswith(b"data: {")
        keep, bears, is_token = self._inspect_parsed(event)
        self._content_seen |= bears
        return keep, bears, is_token

    def _inspect_parsed(self, event: bytes) -> tuple[bool, bool, bool]:
        data = _event_data(event)
        if data is None or data == _DONE:
            return True, False, False
        try:
            chunk = json.loads(data)
        except ValueError:
            return True, False, False
        if not isinstance(chunk, dict):
            return True, False, False
        if "error" in chunk or chunk.get("object") == "error" or chunk.get("type") == "error":
            self.failed = True
        kind = chunk.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            return self._inspect_response_event(kind, chunk)
        usage = Usage.from_json(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
            if self._strip_usage and chunk.get("choices") == []:
                return False, False, False
        choices = _choices(chunk)
        bears = any(_bears_content(choice) for choice in choices)
        is_token = bears or (bool(choices) and not any(_opens_chat(c) for c in choices))
        return True, bears, is_token

    def _inspect_response_event(self, kind: str, chunk: dict[str, Any]) -> tuple[bool, bool, bool]:
        if kind in _RESPONSE_DELTAS:
            return True, bool(chunk.get("delta")), True
        if kind in _RESPONSE_DONE:
            response = chunk.get("response")
            if isinstance(response, dict):
                self.usage = Usage.from_json(response.get("usage")) or self.usage
            self.failed |= kind == "response.failed"
        return True, False, False
