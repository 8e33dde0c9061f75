"""Every route the client port answers, decided: metered, passed through, or an OpenAI error.

vLLM serves more than the gateway meters; a route not listed here gets a JSON 404 (or 405) in
OpenAI's error shape naming the supported routes, never a plain-text 404 and never a redirect
(a trailing slash is a different route, not a 307 to whatever Host the client forged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["metered", "passthrough"]


@dataclass(frozen=True, slots=True)
class Route:
    """How one route is served."""

    method: str
    kind: Kind
    usage_in_stream: bool = False
    """The route streams usage only when the request asks (`stream_options.include_usage`)."""
    default_max_output: int | None = None
    """vLLM's default `max_tokens` for the route; None when the model's limit applies."""
    output_fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens")
    """The fields vLLM's request for this route reads as its output limit, in its order (chat:
    `max_completion_tokens or max_tokens`); the reservation reads the same ones."""


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route("POST", "metered", usage_in_stream=True),
    # vLLM's CompletionRequest defaults max_tokens to 16.
    "/v1/completions": Route(
        "POST",
        "metered",
        usage_in_stream=True,
        default_max_output=16,
        output_fields=("max_tokens",),
    ),
    "/v1/responses": Route("POST", "metered", output_fields=("max_output_tokens",)),
    "/v1/embeddings": Route("POST", "metered", default_max_output=0, output_fields=()),
    "/v1/models": Route("GET", "passthrough"),
    "/tokenize": Route("POST", "passthrough"),
    "/detokenize": Route("POST", "passthrough"),
}
MODEL_BY_ID = Route("GET", "passthrough")
"""`GET /v1/models/{id}`."""

SUPPORTED = (
    "POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, POST /v1/embeddings, "
    "GET /v1/models, GET /v1/models/{model}, POST /tokenize, POST /detokenize"
)


def route_of(path: str) -> Route | None:
    route = ROUTES.get(path)
    if route is None and path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
        return MODEL_BY_ID
    return route
