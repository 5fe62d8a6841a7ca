"""A deliberately naive NLFT step, written from the paper's equations, to check NLFTTrainer's step against.

Not a test module. It shares no code with what it checks: no import of ``nlft.method`` (scales, loss,
log-probabilities, clustering) nor of the trainer's collator. It takes the token ids of each row's
views (the tokenized records), joins prompt and response itself, runs every row of every view alone
(no padding, no shared prefix, no packing, no cache), takes a float64 softmax over the whole
vocabulary at every response position, and computes each token's class, scale and loss term in
Python loops, one token at a time:

- correct output (paper Eq. 3): saliency ``P_std > p0``, scale ``1 + ((P_std - p0) / (1 - p0)) ** c1``;
  sub-saliency (in the phrase of a saliency token) ``(P_std / p0) ** c2``; the rest ``(P_std / p0) ** c3``;
  loss ``-S log P_base``;
- incorrect output (Eq. 1, 2, 4): ``r1 = P_judge / P_base``, ``r2 = P_judge / P_std``; erroneous when
  ``r1 > r0``, ``r2 > r0`` and ``P_judge > p0_incorrect``, scale ``2 sigmoid(r1 - r0)``, loss
  ``-S log(1 - P_base)``; near-error (in the phrase of an erroneous token) 0; the rest 0 (the paper),
  ``sqrt(P_std)`` (the reference code) or 1, with likelihood; an output whose erroneous share is above
  ``max_error_fraction`` is excluded (paper section 6.1: every scale 0, the erroneous tokens' too);
- the options: ``error_reference="initial"`` (``r1`` against the initial model's P_base),
  ``unlikelihood_weight``, ``class_balance`` (``N / (2 N_class)`` from the training set's token
  counts), ``kl_coef`` (``exp(d) - d - 1`` with ``d = log P_initial - log P``, on the incorrect
  outputs' tokens that are not erroneous), ``nll_coef``, ``loss_multiplier``;
- Eq. 5: the sum over the batch's response tokens divided by their number.

Phrases: ``cosine`` walks left and right from the centre token while the neighbour's last hidden
state (X_base view, at the token's own position) has cosine similarity >= ``phrase_threshold`` to the
centre's, at most ``max_phrase_span`` tokens each side; ``word`` takes the tokens of the centre's word.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _chat_free_forward(model: Any, prompt: list[int], response: list[int], *, hidden: bool
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """P(y_t | prompt, y_<t) (float64, graph kept when grad mode is on) and the last hidden state of each y_t."""
    ids = torch.tensor([prompt + response])
    out = model(input_ids=ids, output_hidden_states=hidden, use_cache=False)
    probs, states = [], []
    for t, token in enumerate(response):
        row = out.logits[0, len(prompt) - 1 + t].double().softmax(-1)  # the whole vocabulary
        probs.append(row[token])
        if hidden:
            states.append(out.hidden_states[-1][0, len(prompt) + t].detach().double())
    return probs, states


def _measure(model: Any, prompt: list[int], response: list[int]) -> list[float]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs, _ = _chat_free_forward(model, prompt, response, hidden=False)
    finally:
        model.train(was_training)
    return [float(p) for p in probs]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def _phrase(centre: int, n: int, rule: str, states: list[torch.Tensor], words: list[int], s: dict[str, Any]
            ) -> set[int]:
    """The tokens in the phrase of token ``centre`` (itself included)."""
    if rule == "none":
        return {centre}
    if rule == "word":
        return {t for t in range(n) if words[t] == words[centre]}
    members = {centre}
    for step in (1, -1):
        for k in range(1, s["max_phrase_span"] + 1):
            t = centre + step * k
            if not 0 <= t < n or _cosine(states[centre], states[t]) < s["phrase_threshold"]:
                break
            members.add(t)
    return members


def naive_step(model: Any, rows: list[dict[str, Any]], settings: dict[str, Any], *,
               initial_model: Any = None, training_rows: list[dict[str, Any]] | None = None
               ) -> tuple[torch.Tensor, dict[str, int]]:
    """The loss of one batch, from the equations above, with gradients into ``model``'s trainable weights.

    Args:
        model: the model being trained (its train/eval mode is used for X_base, eval mode for the other views).
        rows: tokenized records: ``base_prompt_ids``, ``std_prompt_ids``, ``judge_prompt_ids``,
            ``response_ids``, ``word_ids``, ``correct``.
        settings: the NLFT settings by their names (``p0_correct``, ``c1`` ... ``kl_coef``).
        initial_model: the model before training (for ``error_reference="initial"`` and ``kl_coef``).
        training_rows: the whole training set, for ``class_balance``'s token counts.

    Returns:
        ``(loss, counts)``: the scalar loss and how many tokens fell in each class (and how many
        incorrect outputs counted as entirely wrong, and each incorrect output's erroneous share), to show
        which branches the batch exercised.
    """
    s = settings
    names = ("saliency", "sub_saliency", "irrelevant_correct", "erroneous", "near_error", "irrelevant_incorrect",
             "entirely_wrong", "trained_irrelevant_incorrect")
    counts: dict[str, Any] = dict.fromkeys(names, 0)
    counts["error_shares"] = []
    w_correct = w_incorrect = 1.0
    if s["class_balance"]:
        n_c = sum(len(r["response_ids"]) for r in training_rows if r["correct"])
        n_i = sum(len(r["response_ids"]) for r in training_rows if not r["correct"])
        if n_c and n_i:
            w_correct, w_incorrect = (n_c + n_i) / (2 * n_c), (n_c + n_i) / (2 * n_i)
    total = torch.zeros((), dtype=torch.float64)
    n_tokens = 0
    for row in rows:
        response, n = row["response_ids"], len(row["response_ids"])
        n_tokens += n
        want_states = s["phrase_rule"] == "cosine"
        p_base, states = _chat_free_forward(model, row["base_prompt_ids"], response, hidden=want_states)
        p_std = _measure(model, row["std_prompt_ids"], response)
        if row["correct"]:
            p0 = s["p0_correct"]
            salient = [t for t in range(n) if p_std[t] > p0]
            phrase = set().union(*(_phrase(t, n, s["phrase_rule"], states, row["word_ids"], s) for t in salient))
            for t in range(n):
                if t in salient:
                    counts["saliency"] += 1
                    scale = 1 + ((p_std[t] - p0) / (1 - p0)) ** s["c1"]
                elif t in phrase:
                    counts["sub_saliency"] += 1
                    scale = (p_std[t] / p0) ** s["c2"]
                else:
                    counts["irrelevant_correct"] += 1
                    scale = (p_std[t] / p0) ** s["c3"]
                term = scale * w_correct * -torch.log(p_base[t])
                if s["nll_coef"]:
                    term = term + s["nll_coef"] * -torch.log(p_base[t])
                total = total + term
            continue
        p_judge = _measure(model, row["judge_prompt_ids"], response)
        reference = [float(p) for p in p_base]
        initial = None
        if initial_model is not None:
            initial = _measure(initial_model, row["base_prompt_ids"], response)
            if s["error_reference"] == "initial":
                reference = initial
        erroneous = [t for t in range(n)
                     if p_judge[t] / reference[t] > s["r0"] and p_judge[t] / p_std[t] > s["r0"]
                     and p_judge[t] > s["p0_incorrect"]]
        phrase = set().union(*(_phrase(t, n, s["phrase_rule"], states, row["word_ids"], s) for t in erroneous))
        entirely_wrong = len(erroneous) / n > s["max_error_fraction"]
        counts["error_shares"].append(len(erroneous) / n)
        counts["entirely_wrong"] += int(entirely_wrong)
        for t in range(n):
            if t in erroneous:
                counts["erroneous"] += 1
                scale = 0.0 if entirely_wrong else (
                    2 / (1 + math.exp(-(p_judge[t] / reference[t] - s["r0"]))) * s["unlikelihood_weight"])
                if scale:
                    total = total + scale * w_incorrect * -torch.log(1 - p_base[t])
            else:
                if t in phrase:
                    counts["near_error"] += 1
                    scale = 0.0
                else:
                    counts["irrelevant_incorrect"] += 1
                    rule = s["irrelevant_incorrect"]
                    scale = 0.0 if rule == "zero" or entirely_wrong else (
                        math.sqrt(p_std[t]) if rule == "reference" else 1.0)
                    counts["trained_irrelevant_incorrect"] += int(scale > 0)
                if scale:
                    total = total + scale * w_incorrect * -torch.log(p_base[t])
                if s["kl_coef"]:
                    d = math.log(initial[t]) - torch.log(p_base[t])
                    total = total + s["kl_coef"] * (torch.exp(d) - d - 1)
    return (total / n_tokens * s["loss_multiplier"]).float(), counts
