"""Capture: recognise LLM calls in httpx traffic and turn them into `CallRecord`s."""
