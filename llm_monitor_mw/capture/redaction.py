"""Scrubbing of secrets before anything is stored: error messages, kept headers and captured content.

Providers (and the self-hosted servers behind OpenAI-compatible APIs) echo keys back, most often in "invalid API
key" errors. :func:`scrub` is the one pass every stored text goes through; it replaces, with ``[redacted]``:

* keys by their shape: OpenAI ``sk-`` (``sk-proj-``, ``sk-svcacct-``, ``sk-admin-``; also the ``sk-`` keys of
  Anthropic ``sk-ant-``, DeepSeek and OpenRouter ``sk-or-v1-``), Google ``AIza``, Groq ``gsk_``, xAI ``xai-``,
  Perplexity ``pplx-``, Cerebras ``csk-``, Fireworks ``fw_``, Together ``tgp_v1_``, Hugging Face ``hf_``,
  Replicate ``r8_``, Stripe-style ``sk_live_``/``sk_test_``/``rk_live_``/``whsec_``, GitHub ``ghp_``/``gho_``/
  ``ghs_``/``github_pat_``, GitLab ``glpat-``, Slack ``xox?-``, AWS access key ids ``AKIA``/``ASIA``, and JWTs;
* whatever follows ``Bearer`` or ``Basic`` (when it looks like a credential, not a word: "Basic authentication"
  stays);
* the value of a credential-named parameter or header, in query strings, headers, JSON and prose:
  ``key=``, ``api_key=``, ``apikey=``, ``api-key:``, ``x-api-key:``, ``x-goog-api-key:``, ``token=``,
  ``access_token=``, ``secret=``, ``password=``, ``aws_secret_access_key=``, ``OPENAI_API_KEY=``, "API key
  provided: ..." (the name is kept, the value goes; a value must look like a credential: a digit in it, or 24
  characters or more, so "Missing required key: messages" stays);
* the password of credentials in a URL (``https://user:password@host``).

Keys without a shape of their own (Mistral, Cohere, Azure) are caught by the last three rules, which is where they
appear. One compiled expression, one scan: it runs on the writer thread for every error message and captured text.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_VALUE = r"""[^\s"'&,;<>()\[\]{}]"""  # one character of a parameter's value
_CREDENTIAL = rf"(?:(?={_VALUE}*\d){_VALUE}{{8,}}|{_VALUE}{{24,}})(?<![.:])"  # a digit in it, or long; no end dot

# Every match starts at the character before the secret (so Python's engine skips in C through letters and digits,
# which cannot start one): scrub() puts a space before the text so that a secret at the very start has one too.
_SECRET = re.compile(
    r"(?P<pre>[^A-Za-z0-9])(?=[aAbBcCeEfFgGhHiIkKpPrRsStTwWxX/])(?:"
    # key=..., "api_key": "...", x-api-key: ..., OPENAI_API_KEY=...: keep the name, drop the value
    r"(?P<name>(?i:api[ _-]?key(?:\s+provided)?|apikey|key|(?:access|auth|refresh|id|session)[_-]?token|token"
    r"|secret(?:[_-]?access[_-]?key)?|client[_-]?secret|password|passwd|subscription[_-]?key)"
    rf"""["']?\s*[:=]\s*["']?){_CREDENTIAL}"""
    # Authorization: Bearer ... / Basic ...
    rf"|(?P<scheme>(?i:bearer|basic)\s+)(?:(?=\S*[\d+/=_.~-])[A-Za-z0-9._~+/-]{{8,}}=*|[A-Za-z0-9]{{24,}})"
    # https://user:password@host
    r"|(?<=:)(?P<userinfo>//[^/\s:@]+:)[^/\s@]+(?=@)"
    # keys by their shape
    r"|(?<=[^_-])(?:"
    r"sk-[A-Za-z0-9_-]{16,}"  # OpenAI (proj-, svcacct-, admin-), Anthropic (ant-), DeepSeek, OpenRouter (or-v1-)
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{16,}"  # Stripe-style
    r"|AIza[0-9A-Za-z_-]{20,}"  # Google
    r"|(?:gsk_|xai-|pplx-|csk-|hf_|r8_)[A-Za-z0-9]{20,}"  # Groq, xAI, Perplexity, Cerebras, Hugging Face, Replicate
    r"|fw_[A-Za-z0-9]{16,}|tgp_v1_[A-Za-z0-9_-]{16,}"  # Fireworks, Together
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}"  # GitHub, GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ids
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWT
    r"))"
)


def _replace(match: re.Match[str]) -> str:
    return match["pre"] + (match["name"] or match["scheme"] or match["userinfo"] or "") + REDACTED


def scrub(text: str) -> str:
    """``text`` with anything that looks like an API key, token or password replaced by ``[redacted]``."""
    scrubbed = _SECRET.sub(_replace, " " + text)
    return scrubbed[1:]
