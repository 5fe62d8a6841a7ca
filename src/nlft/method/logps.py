"""Per-token log-probabilities of a response under a prompt (one "view"), computed lean.

Batches are laid out so that every row's response starts at the same column: prompts are padded
on the left, responses on the right::

    [pad pad prompt prompt | response response pad]
     <------- P ---------> <-------- R --------->

The output head is then evaluated only on the ``R`` columns that predict response tokens (through
the model's ``logits_to_keep`` where it has it), and log-probabilities are gathered for the label
tokens only: no ``(B, S, V)`` softmax is ever built. Position ids are derived from the attention
mask, so left padding does not shift positions.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch

IGNORE_INDEX = -100
LN2 = 0.6931471805599453


def _log_softmax_pick(logits: torch.Tensor, index: torch.Tensor, complement: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    if not complement:
        return picked - lse, None
    logp = picked - lse
    others = logits.scatter(-1, index.unsqueeze(-1), float("-inf"))
    # log(1 - P): logsumexp over the other tokens where P is large (no cancellation near P = 1), log1p(-P)
    # where P < 1/2 (the difference of two near-equal logsumexps loses precision there). The clamp keeps the
    # unused branch's gradient finite.
    near_one = torch.logsumexp(others, dim=-1) - lse
    small = torch.log1p(-logp.clamp(max=-LN2).exp())
    return logp, torch.where(logp < -LN2, small, near_one)


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, *, complement: bool = False,
                          chunk: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log_softmax(logits)[..., index]`` without materialising the full log-softmax.

    Args:
        logits: ``(..., V)`` logits, any float dtype.
        index: ``(...)`` long token ids to read.
        complement: also return ``log(1 - P)`` of the same tokens, computed stably: for P >= 1/2
            as ``logsumexp`` over the other tokens minus ``logsumexp`` over all (exact gradient even
            where P rounds to 1; see :mod:`nlft.method.loss`), below as ``log1p(-P)``.
        chunk: half precision only: positions upcast to float32 at once (default: the size of
            ``logits``' second-to-last dimension, one ``(T, V)`` row). A packed batch of N tokens in
            one row passes the padded row's width, so that it never upcasts ``(N, V)`` at once.

    Returns:
        ``(...)`` float32 log-probabilities of ``index``; with ``complement``, the pair
        ``(log P, log(1 - P))``.
    """
    if logits.dtype in (torch.float32, torch.float64):
        logp, log1mp = _log_softmax_pick(logits, index, complement)
        logp = logp.float()
        log1mp = log1mp.float() if log1mp is not None else None
    else:
        # Half precision: upcast one block of positions at a time, so that only (chunk, V) float32 (and the
        # same again for log(1 - P)) exists at once outside what autograd keeps for backward.
        flat, flat_index = logits.reshape(-1, logits.shape[-1]), index.reshape(-1)
        step = max(1, chunk or (logits.shape[-2] if logits.dim() > 1 else flat.shape[0]))
        pairs = [_log_softmax_pick(flat[s : s + step].float(), flat_index[s : s + step], complement)
                 for s in range(0, flat.shape[0], step)]
        logp = torch.cat([p for p, _ in pairs]).reshape(index.shape)
        log1mp = torch.cat([c for _, c in pairs]).reshape(index.shape) if complement else None
    if complement:
        return logp, log1mp
    return logp


_CACHE_ARGS = frozenset({"cache", "past_key_values"})  # how a forward takes a key/value cache


def unwrap_model(model: Any) -> Any:
    """The model inside distributed and compile wrappers (DDP, DataParallel, FSDP1, DeepSpeed, ``torch.compile``).

    Such wrappers forward ``(*args, **kwargs)``: their own signature and attributes say nothing of the
    model's (``logits_to_keep``, a key/value cache, ``config``), so every capability check reads the
    model inside them, as ``accelerate``'s ``unwrap_model`` does; forward passes still go through the
    wrapper (DDP's gradient hooks, FSDP's gathering of shards). FSDP2 (``fully_shard``) and PEFT keep
    the model's own class and are returned as they are.
    """
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _forward_params(model: Any) -> set[str]:
    """Names of the keyword arguments of the model's forward (inside any wrapper; of the base model, for PEFT)."""
    model = unwrap_model(model)
    forward = getattr(model, "forward", None)
    base = getattr(model, "get_base_model", None)
    if base is not None:  # PEFT passes keyword arguments through to the wrapped model
        forward = base().forward
    try:
        return set(inspect.signature(forward).parameters)
    except (TypeError, ValueError):
        return set()


def view_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    return_hidden: bool = False,
    complement: bool = False,
    prefix_ids: torch.Tensor | None = None,
    prefix_kv: PrefixKV | None = None,
    packed: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Log P(y_t | prompt, y_<t) of each response token of a left/right padded batch.

    With ``prefix_ids``, every row's prompt starts with that shared prefix, which runs through the
    model once, as a batch of one; its keys and values are repeated to the B rows, and the rows
    continue from them (layout ``[prefix][left padding][rest of prompt | response][padding]``,
    positions skipping the padding). With grad mode on, gradients flow back through the repeated
    keys and values into the prefix's computation (LoRA weights included): log-probabilities and
    gradients equal those of the full rows up to float rounding (``tests/method/test_logps.py``). Where the
    model keeps no cache (gradient checkpointing in training, a model without one), the prefix is put
    back in front of every row and the full rows run, with the same result.

    Args:
        model: a causal LM (or a PEFT / accelerate wrapper around one).
        input_ids: ``(B, P + R)`` token ids, prompts left-padded, responses right-padded.
        attention_mask: ``(B, P + R)`` 1 on real tokens.
        labels: ``(B, R)`` response token ids, ``-100`` on response padding.
        return_hidden: also return the last hidden states of the response tokens (the token's own
            position), for phrase clustering.
        complement: also return ``log(1 - P)`` of each response token, computed from the logits
            (the stable unlikelihood term of :mod:`nlft.method.loss`).
        prefix_ids: ``(L,)`` token ids that every row's prompt starts with (:func:`common_prefix`),
            left out of ``input_ids``, whose prompts then hold the rest (at least one token each).
        prefix_kv: the prefix's keys and values already computed (:func:`shared_prefix_kv`), to
            continue from instead of running ``prefix_ids`` again: several batches of one step (the
            measurement views, the base view) then share one computation of the prefix.
        packed: padding-free: the rows' real tokens are packed into as few rows as hold them
            (:func:`pack_rows`, no row longer than the batch's longest), position ids restart at every
            sequence and a block-causal mask keeps sequences apart, so padding is not computed. For
            attention implementations that take such a mask (``sdpa``, ``eager``); others run padded.
            Same log-probabilities and gradients as the padded batch up to float rounding.

    Returns:
        ``(logps, hidden)``: ``(B, R)`` float32 log-probabilities (0 on padding), and ``(B, R, H)``
        detached hidden states or None; with ``complement``, ``(logps, hidden, log1mp)`` where
        ``log1mp`` is ``(B, R)`` (0 on padding). Gradients flow into both when grad mode is on.
    """
    bsz, seq = input_ids.shape
    if seq - labels.shape[1] < 1:
        raise ValueError("every row needs a prompt of at least one token before its response"
                         + (" after the shared prefix" if prefix_ids is not None else ""))
    kwargs: dict[str, Any] = {"use_cache": False}
    params = _forward_params(model)  # read once: a signature lookup per forward is not free
    if packed and supports_packing(model):
        return _packed_view_logps(model, input_ids, attention_mask, labels, params, prefix_ids=prefix_ids,
                                  prefix_kv=prefix_kv, return_hidden=return_hidden, complement=complement)
    if prefix_ids is not None:
        prefix_ids = prefix_ids.to(input_ids.device)
        ones = attention_mask.new_ones(bsz, prefix_ids.shape[0])
        kv = prefix_kv if prefix_kv is not None else _prefix_cache(model, prefix_ids, params)
        if kv is not None:
            kwargs.update(cache=kv.expand(bsz), use_cache=True)
        else:  # no cache to share: the full rows, [prefix][left padding][rest | response]
            input_ids = torch.cat([prefix_ids.expand(bsz, -1), input_ids], dim=1)
            seq = input_ids.shape[1]
        attention_mask = torch.cat([ones, attention_mask], dim=1)
    prompt = seq - labels.shape[1]
    if return_hidden:
        kwargs["output_hidden_states"] = True
    keep = "logits_to_keep" in params
    if keep:
        # Columns P-1 .. P+R-2 predict the response tokens.
        kwargs["logits_to_keep"] = torch.arange(prompt - 1, seq - 1, device=input_ids.device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, attention_mask.shape[1] - seq:]
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
    return _response_logps(out, labels, prompt, keep=keep, return_hidden=return_hidden, complement=complement)


def supports_packing(model: Any) -> bool:
    """Whether the model's attention takes the block-causal 4D mask of ``packed`` batches (sdpa, eager).

    Not with sliding-window attention: one 4D mask would stand for the sliding layers' too.
    """
    config = getattr(unwrap_model(model), "config", None)
    sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    return getattr(config, "_attn_implementation", None) in ("sdpa", "eager") and not sliding


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: group sequence indices into bins whose lengths sum to at most ``capacity``.

    Args:
        lengths: B sequence lengths, each at most ``capacity``. capacity: tokens per packed row.

    Returns:
        bins of indices, in ascending index order within a bin; every index appears once.
    """
    if any(n > capacity for n in lengths):
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit in a packed row of {capacity}")
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return [sorted(b) for b in bins]


def _packed_view_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                       params: set[str], *, prefix_ids: torch.Tensor | None, prefix_kv: PrefixKV | None,
                       return_hidden: bool, complement: bool) -> tuple[torch.Tensor, ...]:
    """:func:`view_logps` on the padding-free layout: packed rows, per-sequence positions, block-causal mask."""
    bsz, seq = input_ids.shape
    resp_cols = labels.shape[1]
    prompt_cols = seq - resp_cols
    device = input_ids.device
    prompt_len = attention_mask[:, :prompt_cols].sum(-1).tolist()
    resp_len = attention_mask[:, prompt_cols:].sum(-1).tolist()
    tokens = [input_ids[i][attention_mask[i].bool()] for i in range(bsz)]
    kv, shared = None, 0
    if prefix_ids is not None:
        prefix_ids = prefix_ids.to(device)
        kv = prefix_kv if prefix_kv is not None else _prefix_cache(model, prefix_ids, params)
        if kv is not None:
            shared = prefix_ids.shape[0]
        else:  # no cache to share: the prefix goes back in front of every sequence
            tokens = [torch.cat([prefix_ids, t]) for t in tokens]
            prompt_len = [n + prefix_ids.shape[0] for n in prompt_len]
    lengths = [t.shape[0] for t in tokens]
    bins = pack_rows(lengths, max(lengths))
    width = max(sum(lengths[i] for i in b) for b in bins)
    rows = len(bins)
    packed = input_ids.new_zeros(rows, width)
    positions = torch.zeros(rows, width, dtype=torch.long, device=device)
    segment = -1 - torch.arange(width, device=device).repeat(rows, 1)  # padding: a segment of its own
    starts = [0] * bsz  # column of each sequence's first token in its packed row
    for r, b in enumerate(bins):
        col = 0
        for i in b:
            n = lengths[i]
            packed[r, col : col + n] = tokens[i]
            positions[r, col : col + n] = torch.arange(shared, shared + n, device=device)
            segment[r, col : col + n] = i
            starts[i] = col
            col += n
    row_of = {i: r for r, b in enumerate(bins) for i in b}
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = (segment[:, :, None] == segment[:, None, :]) & causal
    cache = None
    if kv is not None:
        allowed = torch.cat([allowed.new_ones(rows, width, shared), allowed], dim=-1)
        cache = kv.expand(rows)
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    # Columns that predict a response token: the last prompt token .. the second-to-last response token.
    pick_row, pick_col, out_row, out_col = [], [], [], []
    for i in range(bsz):
        first = starts[i] + prompt_len[i] - 1
        pick_row.extend([row_of[i]] * resp_len[i])
        pick_col.extend(range(first, first + resp_len[i]))
        out_row.extend([i] * resp_len[i])
        out_col.extend(range(resp_len[i]))
    pick_row_t = torch.tensor(pick_row, device=device)
    pick_col_t = torch.tensor(pick_col, device=device)
    keep_cols = torch.unique(pick_col_t)  # columns kept in any packed row (sorted)
    kwargs: dict[str, Any] = {"use_cache": cache is not None}
    if cache is not None:
        kwargs["cache"] = cache
    if return_hidden:
        kwargs["output_hidden_states"] = True
    keep = "logits_to_keep" in params
    if keep:
        kwargs["logits_to_keep"] = keep_cols
    out = model(input_ids=packed, attention_mask=mask[:, None], position_ids=positions, **kwargs)
    logit_col = torch.searchsorted(keep_cols, pick_col_t) if keep else pick_col_t
    logits = out.logits[pick_row_t, logit_col]  # (N, V)
    out_row_t, out_col_t = torch.tensor(out_row, device=device), torch.tensor(out_col, device=device)
    targets = labels[out_row_t, out_col_t]
    valid = targets != IGNORE_INDEX
    # one padded row's width of positions upcast at a time in half precision, as the padded batch does
    picked = selective_log_softmax(logits[None], targets.clamp(min=0)[None], complement=complement, chunk=resp_cols)
    logp_flat, log1mp_flat = (picked[0][0], picked[1][0]) if complement else (picked[0], None)
    logps = labels.new_zeros(labels.shape, dtype=torch.float32).index_put(
        (out_row_t, out_col_t), torch.where(valid, logp_flat, torch.zeros_like(logp_flat)))
    hidden = None
    if return_hidden:
        states = out.hidden_states[-1]
        hidden = states.new_zeros(bsz, resp_cols, states.shape[-1])
        hidden[out_row_t, out_col_t] = states[pick_row_t, pick_col_t + 1].detach()
    if complement:
        log1mp = labels.new_zeros(labels.shape, dtype=torch.float32).index_put(
            (out_row_t, out_col_t), torch.where(valid, log1mp_flat, torch.zeros_like(log1mp_flat)))
        return logps, hidden, log1mp
    return logps, hidden


def _response_logps(out: Any, labels: torch.Tensor, prompt: int, *, keep: bool, return_hidden: bool,
                    complement: bool) -> tuple[torch.Tensor, ...]:
    """The response tokens' log-probabilities (and hidden states, log(1 - P)) from a forward's output."""
    logits = out.logits if keep else out.logits[:, prompt - 1 : prompt - 1 + labels.shape[1]]
    mask = labels != IGNORE_INDEX
    picked = selective_log_softmax(logits, labels.clamp(min=0), complement=complement)
    logps, log1mp = picked if complement else (picked, None)
    logps = torch.where(mask, logps, torch.zeros_like(logps))
    hidden = out.hidden_states[-1][:, prompt:].detach() if return_hidden else None
    if complement:
        return logps, hidden, torch.where(mask, log1mp, torch.zeros_like(log1mp))
    return logps, hidden


def common_prefix(prompts: list[list[int]], *, min_tokens: int = 16) -> int:
    """Length of the token prefix that every prompt starts with, leaving each at least one token after it.

    Args:
        prompts: B prompt id lists (every view of every row of a batch, say).
        min_tokens: below this many shared tokens, 0 (running a tiny prefix apart saves nothing).

    Returns:
        n such that ``prompts[i][:n]`` is the same for all i and ``len(prompts[i]) > n``; 0 for none.
    """
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n if n >= min_tokens else 0


def _checkpointing(model: Any) -> bool:
    """Whether activation (gradient) checkpointing is on: the model then returns no cache in training."""
    model = unwrap_model(model)
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        for obj in (model, getattr(model, "get_base_model", lambda: None)()):
            if obj is not None and name in dir(type(obj)):
                return bool(getattr(obj, name))
    return False


class PrefixKV:
    """The keys and values of a shared prefix (a batch of one), computed once, continued from many times.

    The model appends to the cache it is given, so every forward gets its own copy from
    :meth:`expand`, repeated over its rows. The copies hold the prefix's own tensors: with grad mode
    on, the gradients of every batch that continued from them flow back into the one computation of
    the prefix; under ``no_grad`` a batch that continues from them builds no graph.
    """

    def __init__(self, cache: Any, length: int) -> None:
        self._cache = cache
        self.length = length

    def expand(self, rows: int) -> Any:
        """A fresh cache of the prefix for ``rows`` rows (layer tensors ``(rows, heads, L, head_dim)``)."""
        cache = copy.copy(self._cache)
        cache.layers = [copy.copy(layer) for layer in self._cache.layers]
        cache.batch_repeat_interleave(rows)  # replaces each copied layer's tensors; the prefix's stay
        return cache


def shared_prefix_kv(model: Any, prefix_ids: torch.Tensor, *, eval_mode: bool = False) -> PrefixKV | None:
    """Run ``prefix_ids`` ``(L,)`` through the model once; None where its cache cannot be shared.

    None without a cache argument, under gradient checkpointing in training (no cache is kept), or
    for a cache that cannot be copied and repeated over rows (transformers' layered caches can).
    Grad mode applies as it is; ``eval_mode`` runs the prefix in eval mode (no dropout) and puts the
    model's mode back after.
    """
    return _prefix_cache(model, prefix_ids, _forward_params(model), eval_mode=eval_mode)


def _prefix_cache(model: Any, prefix_ids: torch.Tensor, params: set[str], *, eval_mode: bool = False
                  ) -> PrefixKV | None:
    if (model.training and _checkpointing(model)) or not _CACHE_ARGS & params:
        return None
    device = next(model.parameters()).device
    was_training = model.training
    if eval_mode:
        model.eval()
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # the prefix's logits are not read
    try:
        out = model(input_ids=prefix_ids.to(device)[None], use_cache=True, **keep)
    finally:
        model.train(was_training)
    cache = _cache_of(out)
    if cache is None or not hasattr(cache, "batch_repeat_interleave") or not isinstance(
            getattr(cache, "layers", None), list):
        return None
    if out.logits.requires_grad and cache.layers:
        # FSDP2 gathers a layer's parameters again for backward when a gradient reaches that layer's output; the
        # last layer's output feeds only the unread logits, so its keys and values (read by the rows) would be
        # differentiated with the parameters already resharded. A zero of the logits, added to its keys, routes
        # a gradient through its output first; values and gradients are unchanged.
        last = cache.layers[-1]
        last.keys = last.keys + 0.0 * out.logits.float().sum().to(last.keys.dtype)
    return PrefixKV(cache, prefix_ids.shape[0])


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def supports_shared_prefix(model: Any) -> bool:
    """Whether :func:`view_logps` can share a prefix on ``model``: its forward takes a key/value cache."""
    return bool(_CACHE_ARGS & _forward_params(model))


def pad_views(
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """Build the left/right padded layout of :func:`view_logps` from token id lists.

    Args:
        prompts: B prompt id lists. responses: B response id lists (the same tokens in every view).
        pad_token_id: the id written in padding positions (masked out, never read).

    Returns:
        ``input_ids`` and ``attention_mask`` ``(B, P + R)``, and ``labels`` ``(B, R)``.
    """
    p_max = max(len(p) for p in prompts)
    r_max = max(len(r) for r in responses)
    bsz = len(prompts)
    input_ids = torch.full((bsz, p_max + r_max), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((bsz, p_max + r_max), dtype=torch.long)
    labels = torch.full((bsz, r_max), IGNORE_INDEX, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, p_max - len(p) : p_max] = torch.tensor(p, dtype=torch.long)
        input_ids[i, p_max : p_max + len(r)] = torch.tensor(r, dtype=torch.long)
        attention_mask[i, p_max - len(p) : p_max + len(r)] = 1
        labels[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
