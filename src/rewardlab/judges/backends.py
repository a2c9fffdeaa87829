"""Where a judge's verdicts come from. A backend answers one question: given a user message, how likely is each of
a few short answers (``"A"`` / ``"B"``, ``"1"`` ... ``"9"``) as the first token of the reply? Log-probabilities, so
a verdict is a probability, not a parsed string.

:class:`LocalBackend` runs a transformers chat model (any causal LM directory or hub name whose tokenizer has a
chat template) on this machine, batched; :class:`CachedBackend` puts a SQLite cache in front of any backend, keyed
by the backend's identity, the message and the answers, so a second run makes no model call.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rewardlab.errors import ConfigError, ModelError


class Backend(Protocol):
    name: str  # identifies the model and its weights (the cache's key includes it)
    calls: int  # model calls made (messages scored)

    def answer_logprobs(self, messages: Sequence[str], answers: Sequence[str]) -> list[list[float]]:
        """For each user message, the log-probability of each answer's first token as the reply's first token."""
        ...


class LocalBackend:
    """A local causal chat model. ``path``: a directory (or hub name) with an ``AutoModelForCausalLM`` and a
    tokenizer that has a chat template; anything else is a :class:`ConfigError` / :class:`ModelError` naming it."""

    def __init__(self, path: str, *, device: str = "cpu", dtype: str | None = None, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"judge model {path}: cannot load its tokenizer ({exc})") from None
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"judge model {path}: its tokenizer has no chat template, so it is not a chat model; a "
                              "judge needs an instruction-tuned (chat) model")  # fmt: skip
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype) if dtype else None)
        except (OSError, ValueError) as exc:
            raise ModelError(f"judge model {path}: not a causal language model ({exc})") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer, self.model = tokenizer, model.to(device).eval()
        self.device, self.batch_size, self.calls = device, batch_size, 0
        weights = sorted(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}"
                         for f in Path(path).glob("*.safetensors")) if Path(path).is_dir() else []  # fmt: skip
        self.name = f"local:{Path(path).resolve() if Path(path).exists() else path}:{','.join(weights)}"

    def answer_tokens(self, answers: Sequence[str]) -> list[int]:
        """The first token of each answer; answers that start with the same token cannot be told apart: an error."""
        ids = [self.tokenizer(a, add_special_tokens=False).input_ids[:1] for a in answers]
        if any(not t for t in ids):
            raise ConfigError("judge answers must not be empty")
        first = [t[0] for t in ids]
        if len(set(first)) != len(first):
            raise ConfigError(f"the judge's answers {list(answers)} do not start with distinct tokens for this "
                              "tokenizer; use a smaller scale (single digits) or other labels")  # fmt: skip
        return first

    def answer_logprobs(self, messages: Sequence[str], answers: Sequence[str]) -> list[list[float]]:
        import torch

        tokens = self.answer_tokens(answers)
        out: list[list[float]] = []
        for start in range(0, len(messages), self.batch_size):
            chunk = messages[start : start + self.batch_size]
            texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False,
                                                        add_generation_prompt=True) for m in chunk]  # fmt: skip
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(**batch, position_ids=positions).logits[:, -1].float()
            logp = torch.log_softmax(logits, -1)[:, tokens]
            out += logp.tolist()
            self.calls += len(chunk)
        return out


class CachedBackend:
    """``backend`` behind a SQLite cache at ``path`` (created when missing; safe across processes, one connection
    per thread). ``hits`` counts the answers read from the cache."""

    def __init__(self, backend: Any, path: str | Path):
        self.backend, self.path = backend, Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.hits = 0
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, logprobs TEXT NOT NULL)")

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def calls(self) -> int:
        return self.backend.calls

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=60)
        return db

    def key(self, message: str, answers: Sequence[str]) -> str:
        blob = json.dumps([self.backend.name, message, list(answers)], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def answer_logprobs(self, messages: Sequence[str], answers: Sequence[str]) -> list[list[float]]:
        keys = [self.key(m, answers) for m in messages]
        db = self._db()
        found: dict[str, list[float]] = {}
        for k in dict.fromkeys(keys):
            row = db.execute("SELECT logprobs FROM verdicts WHERE key = ?", (k,)).fetchone()
            if row is not None:
                found[k] = json.loads(row[0])
        todo = [i for i, k in enumerate(keys) if k not in found]
        todo = list({keys[i]: i for i in todo}.values())  # each new message once
        self.hits += len(messages) - len(todo)
        if todo:
            fresh = self.backend.answer_logprobs([messages[i] for i in todo], answers)
            with db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
                               [(keys[i], json.dumps(lp)) for i, lp in zip(todo, fresh)])  # fmt: skip
            found |= {keys[i]: lp for i, lp in zip(todo, fresh)}
        return [found[k] for k in keys]


def normalized(logprobs: Sequence[float]) -> list[float]:
    """Probabilities of the answers among themselves (a softmax over their log-probabilities)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


class EndpointBackend:
    """An OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp's server, a hosted API): ``url`` is its base
    (``http://host:8000/v1``), ``model`` the served model's name, the key read from the environment variable
    ``api_key_env`` (never from a file, never logged).

    Each message is one ``/chat/completions`` request for a single token with ``logprobs`` and ``top_logprobs``:
    an answer's log-probability is its token's among the top ones (an answer not among them gets the floor
    ``min(top) − 10``). A server that returns no log-probabilities gets its one-token reply parsed instead: the answer
    it names is certain, the others impossible; a reply that names none is *unparseable* — counted in
    ``unparseable`` and scored as no preference (all answers equal). Requests run ``concurrency`` at a time, at most
    ``rate`` a second; a connection error, 429 or 5xx is retried ``retries`` times with exponential backoff (the
    server's ``Retry-After`` when it gives one); 401/403 is a :class:`ConfigError` at once. ``log`` collects one
    ``(seconds, ok)`` per request (latency; the cost log)."""

    def __init__(self, url: str, model: str, *, api_key_env: str | None = None, concurrency: int = 8,
                 rate: float | None = None, retries: int = 4, timeout_s: float = 120.0,
                 top_logprobs: int = 20):  # fmt: skip
        import os

        import httpx

        key = None
        if api_key_env is not None:
            key = os.environ.get(api_key_env) or None
            if key is None:
                raise ConfigError(f"judge endpoint: the environment variable {api_key_env} is empty or unset")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.key_env = model, api_key_env
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(headers=headers, timeout=timeout_s)
        self.concurrency, self.rate, self.retries, self.top = concurrency, rate, retries, top_logprobs
        self.name = f"endpoint:{url.rstrip('/')}:{model}"
        self.calls = 0
        self.unparseable = 0
        self.log: list[tuple[float, bool]] = []
        self.sent: list[float] = []  # time.monotonic() of each request as it left (the rate limit's record)
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def close(self) -> None:
        self.client.close()

    def answer_logprobs(self, messages: Sequence[str], answers: Sequence[str]) -> list[list[float]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, answers), messages))

    def _wait_for_slot(self) -> None:
        """At most ``rate`` requests a second, spread evenly (a request waits for its slot)."""
        import time

        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.rate
        if slot > now:
            time.sleep(slot - now)

    def _one(self, message: str, answers: Sequence[str]) -> list[float]:
        import time

        import httpx

        body = {"model": self.model, "messages": [{"role": "user", "content": message}], "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": self.top}  # fmt: skip
        for attempt in range(self.retries + 1):
            self._wait_for_slot()
            start = time.monotonic()
            with self._lock:
                self.sent.append(start)
            retry_after = None
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (401, 403):
                    self.log.append((time.monotonic() - start, False))
                    hint = f"; check {self.key_env}" if self.key_env else "; set api_key_env"
                    raise ConfigError(f"judge endpoint {self.url} refused the key (HTTP {response.status_code}){hint}")
                if response.status_code == 200:
                    self.log.append((time.monotonic() - start, True))
                    with self._lock:
                        self.calls += 1
                    return self._read(response.json(), answers)
                reason = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in (429, 500, 502, 503, 504):
                    raise ModelError(f"judge endpoint {self.url}: {reason}")
                retry_after = _seconds(response.headers.get("retry-after"))
            self.log.append((time.monotonic() - start, False))
            if attempt < self.retries:
                time.sleep(retry_after if retry_after is not None else 0.5 * 2**attempt)
        raise ModelError(f"judge endpoint {self.url}: no answer after {self.retries + 1} tries ({reason}); is the "
                         "server up and the URL its /v1 base?")  # fmt: skip

    def _read(self, payload: dict[str, Any], answers: Sequence[str]) -> list[float]:
        try:
            choice = payload["choices"][0]
            content = (choice.get("message") or {}).get("content") or ""
            tops = ((choice.get("logprobs") or {}).get("content") or [{}])[0].get("top_logprobs") or []
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelError(
                f"judge endpoint {self.url}: not an OpenAI chat completion: {str(payload)[:200]}"
            ) from None
        if tops:
            seen: dict[str, float] = {}
            for entry in tops:
                token = str(entry.get("token", "")).strip()
                if token and token not in seen:
                    seen[token] = float(entry["logprob"])
            floor = min(seen.values(), default=0.0) - 10.0
            return [seen.get(a, floor) for a in answers]
        named = [a for a in answers if content.strip().startswith(a)]
        if len(named) != 1:
            with self._lock:
                self.unparseable += 1
            return [0.0] * len(answers)
        return [0.0 if a == named[0] else -math.inf for a in answers]


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
