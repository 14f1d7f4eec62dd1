"""A bundled local fake LLM server for tests, benchmarks and the demo.

It speaks the real wire formats of the OpenAI (and Azure OpenAI), Anthropic, Gemini and Ollama HTTP APIs -- the
same field names, SSE event names and NDJSON lines the real services send -- so the official ``openai`` and
``anthropic`` SDKs (and plain httpx code) parse its answers without noticing the difference.

Routes (all ``POST``)::

    /v1/chat/completions   /v1/completions   /v1/embeddings   /v1/responses             OpenAI (also Ollama's /v1)
    /openai/deployments/{deployment}/chat/completions | /embeddings                   Azure OpenAI
    /v1/messages                                                                        Anthropic
    /v1beta/models/{model}:generateContent | :streamGenerateContent[?alt=sse] | :embedContent
                          | :batchEmbedContents | :countTokens                            Gemini
    /api/chat   /api/generate   /api/embed   /api/embeddings                            Ollama native (NDJSON)

Deterministic content: the reply is ``N`` chunks (``x-fake-chunks``, default 5) cycling through the words of
``REPLY_TEXT``, so with the default the text is exactly ``"Hello from the fake LLM."``.  Token counts:

* prompt / input tokens  = ``BASE_PROMPT_TOKENS`` (10) + number of prompt items (messages, contents, inputs)
* completion / output tokens = number of chunks ``N``
* cached tokens = ``CACHED_TOKENS`` (2), reasoning / thoughts tokens = ``REASONING_TOKENS`` (1, at most ``N``),
  reported wherever the provider has such a field (OpenAI chat & Responses, Anthropic cache reads, Gemini)
* embeddings are ``EMBEDDING_DIM`` (8) float32-exact floats per input (base64 when ``encoding_format`` asks,
  which the ``openai`` SDK does by default)
* ``big-body`` answers carry 5 MB of text and ``len(text) // 4`` completion tokens

Tool calls: a request that offers tools (``tools`` in each family's own shape) and whose last turn is the user's
is answered with one call of the first offered function tool, in the family's real shape (OpenAI chat
``tool_calls`` with ``finish_reason: "tool_calls"``, Responses ``function_call`` output items, Anthropic
``tool_use`` blocks with ``stop_reason: "tool_use"``, Gemini ``functionCall`` parts, Ollama ``message.tool_calls``;
streamed as the services stream them: argument pieces by index, ``response.function_call_arguments.delta``,
``input_json_delta``). Arguments fill the tool's top-level schema properties with samples (``"Paris"``, ``1``,
``1.5``, ``true``). A turn that answers a tool (``role: "tool"``, ``tool_result``, ``functionResponse``) gets text.

``FakeLLMServer.requests_seen`` (the same list as ``app.state.requests_seen``) holds one dict per request:
``{"method", "path", "query" (dict of query parameters), "headers" (lower-cased dict), "body" (bytes)}``.

Test-control request headers (any route):

``x-fake-status: N``        answer with status ``N`` and the provider's error body (429 and 5xx also carry
                            ``retry-after: 0`` plus ``retry-after-ms: 1`` so SDK retries are instant; override the
                            seconds with ``x-fake-retry-after``)
``x-fake-fail-times: K``    only the first ``K`` requests with the same ``x-fake-key`` (default: the path) get the
                            ``x-fake-status`` / ``x-fake-behavior`` treatment, later ones succeed
``x-fake-behavior: B``      ``malformed-json`` | ``non-json`` | ``truncate`` | ``malformed-sse`` | ``big-body`` |
                            ``disconnect`` | ``error-event`` (``truncate`` / ``disconnect`` cut a non-streamed
                            JSON body in half; ``malformed-sse`` / ``error-event`` only change streams)
``x-fake-chunk-delay: S``   seconds to sleep between streamed events (once before a non-streamed answer)
``x-fake-gzip: 1``          gzip the body (streams are compressed incrementally, one sync-flush per event)
``x-fake-chunks: N``        number of content chunks
``x-fake-prompt-tokens: N`` report ``N`` prompt / input tokens (instead of 10 + prompt items)
``x-fake-completion-tokens: N`` report ``N`` completion / output tokens (instead of one per chunk)
``x-fake-reasoning-tokens: N`` report ``N`` reasoning / thoughts tokens (at most the completion tokens)
``x-fake-error-message: T`` with ``x-fake-status``: ``T`` as the error body's message (latin-1, as headers are)
``x-fake-tool-calls: N``    answer with ``N`` tool calls (cycling through the offered tools, else ``get_weather``;
                            at most 10,000); ``0``: never, whatever the request offers

Run standalone with ``python -m llm_monitor_mw.fake [--host HOST] [--port PORT]`` (default 127.0.0.1:8700;
``--help`` lists the options; ``python -m llm_monitor_mw.fake_llm`` works too).

Modules: :mod:`.common` (reply, tokens, framing, the request context), one per provider family (:mod:`.openai`
with Azure, :mod:`.anthropic`, :mod:`.gemini`, :mod:`.ollama`: handlers, error bodies, headers, routes),
:mod:`.app` (the ASGI app: test controls, rendering) and :mod:`.server` (:class:`FakeLLMServer`, the command line).
"""

from .app import create_app
from .common import (
    AZURE_CHAT_MODEL,
    AZURE_EMBEDDING_MODEL,
    BASE_PROMPT_TOKENS,
    BIG_BODY_CHARS,
    CACHED_TOKENS,
    DEFAULT_CHUNKS,
    DEFAULT_MODEL,
    EMBEDDING_DIM,
    REASONING_TOKENS,
    REPLY_TEXT,
    REPLY_WORDS,
    SimulatedDisconnect,
    reply_pieces,
)
from .server import FakeLLMServer, main

__all__ = [
    "AZURE_CHAT_MODEL",
    "AZURE_EMBEDDING_MODEL",
    "BASE_PROMPT_TOKENS",
    "BIG_BODY_CHARS",
    "CACHED_TOKENS",
    "DEFAULT_CHUNKS",
    "DEFAULT_MODEL",
    "EMBEDDING_DIM",
    "REASONING_TOKENS",
    "REPLY_TEXT",
    "REPLY_WORDS",
    "FakeLLMServer",
    "SimulatedDisconnect",
    "create_app",
    "main",
    "reply_pieces",
]
