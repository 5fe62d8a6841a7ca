"""Text generation: batched local Hugging Face models, and an OpenAI-compatible HTTP client.

Sampling is reproducible per prompt: each prompt has its own seed (by default derived from the run
seed and the prompt's position, see :func:`derive_seed`) and its own random generator, so the text
drawn for a prompt does not depend on which other prompts share its batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nlft.tasks.grading import _NUMBER

# What a request's body is parsed into (OpenAIChatClient.post).
T = TypeVar("T")

# The solve instruction asks for '{analysis}\n#### {answer}'. Small models then carry on with a new
# few-shot "Question:", so generation stops once the answer line is complete.
_ANSWER_LINE_RE = re.compile(r"####[ \t]*(?:" + _NUMBER + r")[^\n]*(?:\n|$)")
_NEXT_QUESTION_RE = re.compile(r"\n\s*Question:")


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and an item key (row id, sample index): stable across runs."""
    digest = hashlib.sha256(json.dumps([seed, *parts], default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _answer_re(answer_line: str | None) -> re.Pattern[str]:
    return _ANSWER_LINE_RE if answer_line is None else re.compile(answer_line)


def truncate_output(text: str, answer_line: str | None = None) -> str:
    """Cut a solution after its ``#### N`` line, or before a following few-shot ``Question:``.

    ``answer_line``: a task's answer line (:attr:`nlft.tasks.base.Task.answer_line`), instead of ``#### N``.
    """
    cut = len(text)
    answer = _answer_re(answer_line).search(text)
    if answer:
        cut = answer.end()
    nxt = _NEXT_QUESTION_RE.search(text)
    if nxt and nxt.start() < cut:
        cut = nxt.start()
    return text[:cut].strip()


def _answer_done(text: str, pattern: re.Pattern[str] = _ANSWER_LINE_RE) -> bool:
    answer = pattern.search(text)
    return bool(answer and answer.group(0).endswith("\n")) or bool(_NEXT_QUESTION_RE.search(text))


class PrefixCache:
    """The key/value cache of a token prefix that many prompts share (a few-shot block, a system prompt).

    :func:`generate_hf_with_counts` computes it once, for the longest token prefix common to a
    batch, and reuses it for every later batch whose prompts all start with it: a few-shot prompt
    of 500 tokens is then run through the model once per evaluation instead of once per question.
    Holds one prefix at a time. ``hits`` and ``builds`` count reuses and computations.
    """

    def __init__(self, min_tokens: int = 16) -> None:
        self.min_tokens = min_tokens
        self.ids: list[int] = []
        self.kv: Any = None
        self.hits = 0
        self.builds = 0

    def lookup(self, model: Any, rows: Sequence[Sequence[int]]) -> int:
        """Length of the cached prefix to use for ``rows`` (token ids), building it if needed; 0 for none.

        Every row keeps at least one token after the prefix, so that generation starts from a
        fresh forward pass.
        """
        import torch

        if self.kv is not None and all(len(r) > len(self.ids) and list(r[:len(self.ids)]) == self.ids
                                       for r in rows):
            self.hits += 1
            return len(self.ids)
        if len(rows) < 2:
            return 0
        limit = min(len(r) for r in rows) - 1
        n = 0
        while n < limit and all(r[n] == rows[0][n] for r in rows):
            n += 1
        if n < self.min_tokens:
            return 0
        self.ids = list(rows[0][:n])
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([self.ids], device=model.device), use_cache=True)
        self.kv = out.cache
        self.builds += 1
        return n


def generate_hf(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int = 512,
                temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                progress: bool = True, seeds: Sequence[int] | None = None, chat: bool = False,
                stop_at_answer: bool = True, prefix_cache: PrefixCache | None = None,
                answer_line: str | None = None) -> list[str]:
    """Generate one completion per prompt with a local causal LM.

    Batched with left padding and the KV cache; greedy when ``temperature == 0``, otherwise
    temperature / nucleus (``top_p``) sampling with one random generator per prompt seeded by
    ``seeds[i]`` (default ``derive_seed(seed, i)``). ``chat=True`` wraps each prompt with the
    tokenizer's chat template (as one user turn); otherwise prompts are used as given.
    ``stop_at_answer`` ends a completion once its ``#### N`` line is written (see
    :func:`truncate_output`; ``answer_line``: a task's answer line instead). ``prefix_cache``
    (a :class:`PrefixCache`) runs the token prefix
    shared by a batch's prompts through the model once and reuses its key/value cache, also across
    calls; the prompts then sit as ``[prefix][left padding][rest of the prompt]``, with positions
    that skip the padding, so outputs equal those without it up to float rounding. Returns the
    completions, without the prompts.
    """
    return [text for text, _ in generate_hf_with_counts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        seed=seed, batch_size=batch_size, progress=progress, seeds=seeds, chat=chat,
        stop_at_answer=stop_at_answer, prefix_cache=prefix_cache, answer_line=answer_line)]


def generate_hf_with_counts(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int = 512,
                            temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                            batch_size: int = 8, progress: bool = True, seeds: Sequence[int] | None = None,
                            chat: bool = False, stop_at_answer: bool = True,
                            prefix_cache: PrefixCache | None = None,
                            answer_line: str | None = None) -> list[tuple[str, int]]:
    """Like :func:`generate_hf`, returning ``(completion, number of completion tokens)`` pairs."""
    import torch
    from tqdm.auto import tqdm

    from nlft.tasks.prompts import prompt_ids

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if seeds is None:
        seeds = [derive_seed(seed, i) for i in range(len(prompts))]
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    prompt_token_ids = [prompt_ids(tokenizer, p, chat) for p in prompts]
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)

    # A completion can only become done on a token holding a newline or a colon (see _answer_done):
    # decode the whole row only then.
    may_end: dict[int, bool] = {}
    pattern = _answer_re(answer_line)

    def finished(tokens: list[int]) -> bool:
        if not stop_at_answer:
            return False
        last = tokens[-1]
        if last not in may_end:
            piece = tokenizer.decode([last])
            may_end[last] = "\n" in piece or ":" in piece
        return may_end[last] and _answer_done(tokenizer.decode(tokens, skip_special_tokens=True), pattern)

    results: list[tuple[str, int]] = []
    model.eval()
    batches = range(0, len(prompt_token_ids), batch_size)
    for start in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        ids = prompt_token_ids[start:start + batch_size]
        shared = prefix_cache.lookup(model, ids) if prefix_cache is not None else 0
        enc = _prefixed_batch(ids, shared, pad_id, model.device)
        past = prefix_cache.kv if shared else None
        generators = None
        if temperature > 0:
            generators = [torch.Generator(device=model.device).manual_seed(int(s))
                          for s in seeds[start:start + batch_size]]
        with torch.inference_mode():
            rows = _decode(model, enc["input_ids"], enc["attention_mask"], past, max_new_tokens=max_new_tokens,
                           eos=eos, temperature=temperature, top_p=top_p, generators=generators, finished=finished)
        for row in rows:
            text = tokenizer.decode(row, skip_special_tokens=True)
            if stop_at_answer:
                text = truncate_output(text, answer_line)
            n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            results.append((text, n_tokens))
    return results


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the model's generation config's and the tokenizer's."""
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def _decode(model: Any, input_ids: Any, attention_mask: Any, past: Any, *, max_new_tokens: int, eos: set[int],
            temperature: float, top_p: float, generators: list[Any] | None,
            finished: Callable[[list[int]], bool]) -> list[list[int]]:
    """Greedy or sampled decoding of a batch with a key/value cache, dropping each row once it is done.

    ``input_ids`` and ``attention_mask`` are (B, T), padding marked 0 anywhere (left, or between a
    cached prefix and the rest); ``past`` may already hold the first columns (a shared prefix).
    Positions count real tokens only. A row ends at an end-of-sequence token (not kept), when
    ``finished(tokens)`` says so, or after ``max_new_tokens``; finished rows leave the batch and its
    cache (once they are a quarter of it), so long completions do not make the others pay. Sampling
    draws row i's tokens with ``generators[i]`` (temperature, then nucleus ``top_p``), so a row's
    text does not depend on its batch. Returns each row's generated token ids.
    """
    import torch

    batch = input_ids.shape[0]
    out_tokens: list[list[int]] = [[] for _ in range(batch)]
    if max_new_tokens <= 0:
        return out_tokens
    cache, logits = _prefill(model, input_ids, attention_mask, past, min(max_new_tokens, _GROW))
    capacity = input_ids.shape[1] + min(max_new_tokens, _GROW)
    next_pos = attention_mask.sum(-1, keepdim=True)
    active = list(range(batch))  # the rows still in the cache (original indices)
    alive = [True] * batch  # per cache row: still generating (finished rows wait for the next compaction)
    for step in range(max_new_tokens):
        if generators is None:
            chosen = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                sorted_p[sorted_p.cumsum(-1) - sorted_p > top_p] = 0.0
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
            chosen = torch.stack([torch.multinomial(probs[i], 1, generator=generators[row])[0] if alive[i]
                                  else probs.new_zeros((), dtype=torch.long) for i, row in enumerate(active)])
        for i, (row, token) in enumerate(zip(active, chosen.tolist(), strict=True)):
            if not alive[i]:
                continue
            if token in eos:
                alive[i] = False
                continue
            out_tokens[row].append(token)
            alive[i] = not finished(out_tokens[row])
        n_alive = sum(alive)
        if not n_alive or step == max_new_tokens - 1:
            break
        # Finished rows leave the batch once they are a quarter of it: each compaction copies the cache.
        if len(active) - n_alive >= max(1, len(active) // 4):
            keep = [i for i, a in enumerate(alive) if a]
            index = torch.tensor(keep, device=chosen.device)
            _select_rows(cache, index)
            attention_mask, next_pos, chosen = attention_mask[index], next_pos[index], chosen[index]
            active, alive = [active[i] for i in keep], [True] * len(keep)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=-1)
        if attention_mask.shape[1] > capacity:
            capacity = min(capacity + _GROW, input_ids.shape[1] + max_new_tokens)
            cache = _regrow(model, cache, capacity)
        logits = model(input_ids=chosen[:, None], attention_mask=attention_mask, position_ids=next_pos,
                       cache=cache, use_cache=True).logits[:, -1, :]
        next_pos = next_pos + 1
    return out_tokens


_GROW = 32  # columns added to the static cache at a time: attention reads the whole preallocated cache


def _regrow(model: Any, cache: Any, capacity: int) -> Any:
    """A static cache of ``capacity`` columns holding what ``cache`` holds (dynamic caches grow by themselves)."""
    from transformers import StaticCache

    if not isinstance(cache, StaticCache):
        return cache
    used = cache.get_seq_length()
    bigger = StaticCache(config=model.config, max_cache_len=capacity)
    for new, old in zip(bigger.layers, cache.layers, strict=True):
        new.update(old.keys[:, :, :used], old.values[:, :, :used])
    return bigger


def _prefill(model: Any, input_ids: Any, attention_mask: Any, prefix: Any, room: int,
             group: int = 8) -> tuple[Any, Any]:
    """Run the prompts (B, T) through the model; return a cache with ``room`` free columns and the last logits (B, V).

    Rows are prefilled in groups of similar length, each padded only to its own longest prompt,
    so that a batch of mixed lengths does not compute its padding. ``prefix`` (a one-row cache of
    the first columns, shared by all rows) is reused, not recomputed. The groups' keys and values
    are then laid out as one left-padded batch in a preallocated (static) cache: decoding writes
    each new column in place instead of concatenating the whole cache at every step (the dynamic
    cache's cost grows with batch x length: about 0.9 GB of copies per step for 32 rows of 600
    tokens of SmolLM2-135M). Models whose configuration the static cache does not take get a
    dynamic one.
    """
    import torch
    from transformers import DynamicCache, StaticCache

    batch, width = input_ids.shape
    shared = prefix.get_seq_length() if prefix is not None else 0
    real = attention_mask[:, shared:].sum(-1)
    order = sorted(range(batch), key=lambda i: int(real[i]))
    logits = None
    layers: list[tuple[Any, Any]] = []
    for start in range(0, batch, group):
        rows = torch.tensor(order[start:start + group], device=input_ids.device)
        cols = int(real[rows].max())
        part = DynamicCache(config=model.config)
        if prefix is not None:
            for layer, src in zip(part.layers, prefix.layers, strict=True):
                layer.update(src.keys.expand(len(rows), -1, -1, -1), src.values.expand(len(rows), -1, -1, -1))
        ids = input_ids[rows, width - cols:]
        mask = torch.cat([attention_mask[rows, :shared], attention_mask[rows, width - cols:]], dim=-1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=part,
                    use_cache=True, logits_to_keep=1).logits[:, -1, :]
        if logits is None:
            logits = out.new_empty(batch, out.shape[-1])
            layers = [(layer.keys.new_zeros(batch, *layer.keys.shape[1:2], width, layer.keys.shape[-1]),
                       layer.values.new_zeros(batch, *layer.values.shape[1:2], width, layer.values.shape[-1]))
                      for layer in part.layers]
        logits[rows] = out
        for (keys, values), layer in zip(layers, part.layers, strict=True):
            if shared:
                keys[rows, :, :shared] = layer.keys[:, :, :shared]
                values[rows, :, :shared] = layer.values[:, :, :shared]
            keys[rows, :, width - cols:] = layer.keys[:, :, shared:]
            values[rows, :, width - cols:] = layer.values[:, :, shared:]
    try:
        cache = StaticCache(config=model.config, max_cache_len=width + room)
    except (TypeError, ValueError, AttributeError):
        cache = DynamicCache(config=model.config)
    for layer, (keys, values) in zip(cache.layers, layers, strict=True):
        layer.update(keys, values)
    return cache, logits


def _select_rows(cache: Any, index: Any) -> None:
    """Keep the rows ``index`` (1-D tensor) of every layer of a static or dynamic key/value cache."""
    for layer in cache.layers:
        if hasattr(layer, "batch_select_indices"):
            layer.batch_select_indices(index)
        elif getattr(layer, "is_initialized", False):
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
            layer.batch_size = len(index)


def _prefixed_batch(ids: Sequence[Sequence[int]], shared: int, pad_id: int, device: Any) -> dict[str, Any]:
    """``[shared prefix][left padding][rest]`` rows (B, T) and their attention mask (1 on real tokens)."""
    import torch

    width = max(len(r) for r in ids) - shared
    input_ids = torch.full((len(ids), shared + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, row in enumerate(ids):
        rest = row[shared:]
        input_ids[i, :shared] = torch.tensor(row[:shared])
        input_ids[i, shared + width - len(rest):] = torch.tensor(rest)
        mask[i, :shared] = 1
        mask[i, shared + width - len(rest):] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend (OpenAI, vLLM, llama.cpp servers)


class APIError(RuntimeError):
    """A request to an OpenAI-compatible server failed for good (after retries, or not retryable)."""


class AuthenticationError(APIError):
    """The server refused the API key (HTTP 401/403)."""


class OpenAIChatClient:
    """Minimal client for ``POST {base_url}/chat/completions`` with retries and bounded concurrency.

    The API key is read from the environment variable ``api_key_env`` (optional: local servers need
    none). It is sent only in the ``Authorization`` header and removed from every error message.
    Retried with exponential backoff (honouring ``Retry-After``): HTTP 429 and 5xx, timeouts,
    connection errors and responses that are not the expected JSON. HTTP 401/403 raise
    :class:`AuthenticationError` at once.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 4, timeout: float = 60, max_retries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 30.0) -> None:
        import httpx

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._jitter = random.Random(0)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(self.max_backoff, max(delay, float(retry_after)))
        with self._lock:
            delay *= 1 + 0.1 * self._jitter.random()
        time.sleep(delay)

    def complete_with_usage(self, messages: str | list[dict[str, str]], temperature: float = 0.0,
                            max_tokens: int = 512, seed: int | None = None, top_p: float = 1.0,
                            stop: list[str] | None = None) -> tuple[str, int | None]:
        """One chat completion: ``(text, completion_tokens or None)``. A string is one user turn."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                   "max_tokens": max_tokens, "top_p": top_p}
        if seed is not None:
            payload["seed"] = seed
        if stop:
            payload["stop"] = stop
        def parse(body: dict[str, Any]) -> tuple[str, int | None]:
            text = body["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            return text, (body.get("usage") or {}).get("completion_tokens")

        return self.post("chat/completions", payload, parse)

    def post(self, path: str, payload: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T:
        """``POST {base_url}/{path}`` with the retries of this client; ``parse`` reads the JSON body.

        A body that ``parse`` cannot read (ValueError, KeyError, IndexError, TypeError) counts as a failed
        attempt and is retried.
        """
        import httpx

        url = f"{self.base_url}/{path}"
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self._client.post(url, json=payload)
            except httpx.TimeoutException:
                last = "the request timed out"
            except httpx.TransportError as err:
                last = f"connection error ({type(err).__name__})"
            else:
                status = response.status_code
                if status in (401, 403):
                    hint = (f"the key in ${self.api_key_env} was refused" if self._api_key else
                            f"no API key was sent; set the environment variable {self.api_key_env}")
                    raise AuthenticationError(f"{url}: HTTP {status}: {hint}")
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {self._scrub(response.text[:200])}"
                    retry_after = response.headers.get("retry-after")
                elif status >= 400:
                    raise APIError(f"{url}: HTTP {status}: {self._scrub(response.text[:500])}")
                else:
                    try:
                        return parse(response.json())
                    except (ValueError, KeyError, IndexError, TypeError) as err:
                        snippet = self._scrub(response.text[:200])
                        last = f"unexpected response ({type(err).__name__}): {snippet!r}"
            if attempt < self.max_retries:
                self._sleep(attempt, retry_after)
        raise APIError(f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}")

    def prompt_logprobs(self, token_ids: Sequence[int], api: str = "echo") -> list[float | None]:
        """log P of every token of a prompt given as token ids, under the served model (``POST /completions``).

        ``api`` picks the documented request: ``"echo"`` sends ``echo`` with ``logprobs`` (OpenAI's legacy
        completions, llama.cpp, vLLM), answered in ``choices[0].logprobs.token_logprobs`` with the prompt's
        tokens first; ``"vllm"`` sends vLLM's ``prompt_logprobs``, answered in ``choices[0].prompt_logprobs``
        (per position a map from token id to ``{"logprob": ...}``). Either answer is read. Returns one value
        per prompt token; the first is None (it has no context).
        """
        ids = [int(t) for t in token_ids]
        payload: dict[str, Any] = {"model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0}
        if api == "echo":
            payload.update(echo=True, logprobs=1)
        elif api == "vllm":
            payload.update(prompt_logprobs=1)
        else:
            raise ValueError(f"api must be 'echo' or 'vllm', got {api!r}")

        def parse(body: dict[str, Any]) -> list[float | None]:
            choice = body["choices"][0]
            if choice.get("prompt_logprobs") is not None:
                out = [None if pos is None else float(pos[str(t)]["logprob"])
                       for t, pos in zip(ids, choice["prompt_logprobs"])]
            else:
                out = [None if v is None else float(v) for v in choice["logprobs"]["token_logprobs"][: len(ids)]]
            if len(out) != len(ids):
                raise ValueError(f"{len(out)} prompt log-probabilities for {len(ids)} prompt tokens")
            return out

        return self.post("completions", payload, parse)

    def complete(self, messages: str | list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 seed: int | None = None, top_p: float = 1.0, stop: list[str] | None = None) -> str:
        """One chat completion's text. ``messages`` is a list of chat messages or one user prompt."""
        return self.complete_with_usage(messages, temperature, max_tokens, seed, top_p, stop)[0]

    def complete_many(self, prompts: Sequence[str | list[dict[str, str]]], *, temperature: float = 0.0,
                      max_tokens: int = 512, seeds: Sequence[int | None] | None = None, top_p: float = 1.0,
                      stop: list[str] | None = None, progress: bool = True) -> list[tuple[str, int | None]]:
        """Complete many prompts with at most ``max_concurrency`` requests in flight; results in order."""
        from tqdm.auto import tqdm

        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self.complete_with_usage, p, temperature, max_tokens, s, top_p, stop)
                       for p, s in zip(prompts, seeds)]
            results = []
            for future in tqdm(futures, desc="requests", unit="req", disable=not progress):
                results.append(future.result())
        return results
