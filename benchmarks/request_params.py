"""What reading a request's generation parameters costs the writer: ``python benchmarks/request_params.py [--runs R]``.

Prints microseconds of CPU per body (median of ``--runs`` rounds) for :func:`read_params` on bodies shaped as
the SDKs write them — small (parsed), and 5 MB prompts with the parameters after the prompt (OpenAI), before and
after it (Anthropic), in Gemini's ``generationConfig``, and behind 40 KiB of tool schemas (where the parameters
placed between the prompt and the tools are unknown) — next to ``json.loads`` of the same body, which the bounded
scan replaces. Also the cost of ``gen_ai.client.operation.time_per_output_chunk`` per streamed call on the writer
(one SDK histogram observation per chunk).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from llm_monitor_mw.capture.request_params import read_params

PROMPT = "All work and no play makes Jack a dull boy. " * 120_000  # 5.3 MB
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "Looks something up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    for i in range(250)
]


def bodies() -> dict[str, bytes]:
    openai_small = {"messages": MESSAGES[:1], "model": "gpt-4o", "max_tokens": 100, "temperature": 0.5}
    return {
        "small (parsed)": json.dumps(openai_small).encode(),
        "OpenAI, 5 MB prompt": json.dumps(
            {"messages": MESSAGES, "model": "gpt-4o", "max_tokens": 100, "seed": 1, "temperature": 0.5}
        ).encode(),
        "Anthropic, 5 MB prompt": json.dumps(
            {"max_tokens": 100, "messages": MESSAGES, "model": "claude-sonnet-4-5", "temperature": 0.5}
        ).encode(),
        "Gemini, 5 MB prompt": json.dumps(
            {
                "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topK": 40},
            }
        ).encode(),
        "OpenAI, 5 MB + 40 KiB tools": json.dumps(
            {"messages": MESSAGES, "model": "gpt-4o", "max_tokens": 100, "tools": TOOLS, "top_p": 0.9}
        ).encode(),
    }


def cpu_us(fn: Callable[[], object], runs: int, inner: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(inner):
            fn()
        samples.append((time.process_time() - start) / inner * 1e6)
    return statistics.median(samples)


def chunk_metric_us(chunks: int, runs: int) -> float:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    histogram = provider.get_meter("bench").create_histogram("h", unit="s")
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m"}

    def one_call() -> None:
        for _ in range(chunks):
            histogram.record(0.02, attributes)

    return cpu_us(one_call, runs, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'body':32} {'bytes':>10} {'read_params µs':>15} {'json.loads µs':>14}  found")
    for name, body in bodies().items():
        scan = cpu_us(lambda body=body: read_params(body), args.runs, 50)
        full = cpu_us(lambda body=body: json.loads(body), args.runs, 2)
        print(f"{name:32} {len(body):>10} {scan:>15.1f} {full:>14.1f}  {read_params(body)}")
    print()
    print(f"{'streamed call, chunks':32} {'time_per_output_chunk µs per call (writer)':>44}")
    for chunks in (10, 100, 1000):
        print(f"{chunks:<32} {chunk_metric_us(chunks, args.runs):>44.1f}")


if __name__ == "__main__":
    main()
