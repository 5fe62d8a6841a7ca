"""A reference-style NLFT step: the baseline the lean trainer is measured against.

It computes what :class:`nlft.NLFTTrainer` computes, the way the paper's public code does: every
row contributes its three views (X_base, X_standard and X_judge; a correct output's judgment is
"the response is correct"), stacked into one batch that runs forward with gradients enabled; the
output head runs on every position, and a float32 softmax over the whole vocabulary at every
position gives the probabilities, from which the label tokens are read. The measurement views are
then detached. (The lean trainer runs X_judge for incorrect outputs only: a correct output's
scales use P_std alone.) The loss is the same function of the same probabilities, so with dropout
off the loss and the LoRA gradients equal the lean step's (``tests/train/test_perf_equivalence.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from nlft.method.clustering import cosine_spans, word_spans
from nlft.method.logps import IGNORE_INDEX
from nlft.method.loss import nlft_loss
from nlft.method.scales import batch_token_scales
from nlft.tasks.prompts import CORRECT_JUDGMENT, prompt_ids, view_text
from nlft.train.trainer import JUDGE, STD, NLFTCollator, NLFTTrainer


def stacked_view_logps(model: Any, batch: dict[str, torch.Tensor], *, return_hidden: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of the response tokens under every view, from one stacked forward pass.

    The base rows ``(B, P + R)`` and the view rows ``(V, P' + R)`` of a collated batch are left-padded
    to a common prompt width and run together, with gradients, through the full output head; a float32
    log-softmax over the vocabulary is taken at every response position.

    Returns:
        ``(base_logps (B, R), view_logps (V, R), hidden (B, R, H) or None)``; view log-probs are detached.
    """
    bsz, resp = batch["labels"].shape
    parts_ids, parts_att = [batch["input_ids"]], [batch["attention_mask"]]
    if "view_input_ids" in batch:
        parts_ids.append(batch["view_input_ids"])
        parts_att.append(batch["view_attention_mask"])
    width = max(x.shape[1] for x in parts_ids)
    # Padding positions are masked out, so any id fills them.
    ids = torch.cat([torch.nn.functional.pad(x, (width - x.shape[1], 0), value=0) for x in parts_ids])
    att = torch.cat([torch.nn.functional.pad(x, (width - x.shape[1], 0), value=0) for x in parts_att])
    labels = torch.cat([batch["labels"], batch.get("view_labels", batch["labels"][:0])])
    position_ids = (att.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=att, position_ids=position_ids, use_cache=False,
                output_hidden_states=return_hidden)
    prompt = width - resp
    probs = out.logits.float().softmax(dim=-1)[:, prompt - 1 : width - 1]  # every position, then (B + V, R, vocab)
    picked = probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logps = torch.where(labels != IGNORE_INDEX, picked.clamp(min=1e-30).log(), torch.zeros_like(picked))
    hidden = out.hidden_states[-1][:bsz, prompt:].detach() if return_hidden else None
    return logps[:bsz], logps[bsz:].detach(), hidden


class RefStyleTrainer(NLFTTrainer):
    """:class:`nlft.NLFTTrainer` with its step computed reference-style (see the module docstring).

    Only ``view_probs="dynamic"`` is meaningful here: the views are always part of the stacked batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        views_correct, views_incorrect = self.args.needed_views
        if self.args.loss_type == "nlft":  # all three views for every row, as the reference code
            views_correct = ("standard", "judge")
            records = kwargs.get("train_dataset") or []
            tokenizer = self.processing_class

            def add_judge_view(row: dict[str, Any], idx: int) -> dict[str, Any]:
                if row["correct"] and not row["judge_prompt_ids"]:
                    source = records[idx]
                    text = view_text(self.args.base_template, self.args.judge_template, question=source["question"],
                                     reference=source["reference"], judgment=CORRECT_JUDGMENT)
                    row["judge_prompt_ids"] = prompt_ids(tokenizer, text, self.args.use_chat_template)
                return row

            self.train_dataset = self.train_dataset.map(add_judge_view, with_indices=True)
        self.data_collator = NLFTCollator(self.processing_class.pad_token_id, views_correct, views_incorrect)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        args = self.args
        labels = inputs["labels"]
        response_mask = labels != IGNORE_INDEX
        want_hidden = args.loss_type == "nlft" and args.phrase_rule == "cosine"
        logps, views, hidden = stacked_view_logps(model, inputs, return_hidden=want_hidden)
        p_base = logps.detach().exp()
        p_std = p_judge = None
        if "view_kind" in inputs:
            for kind in (STD, JUDGE):
                sel = inputs["view_kind"] == kind
                if bool(sel.any()):
                    p = torch.zeros_like(p_base)
                    p[inputs["view_row"][sel]] = views[sel].exp()
                    if kind == STD:
                        p_std = p
                    else:
                        p_judge = p
        spans = None
        if want_hidden:
            spans = cosine_spans(hidden, response_mask, threshold=args.phrase_threshold, max_span=args.max_phrase_span)
        elif args.loss_type == "nlft" and args.phrase_rule == "word":
            spans = word_spans(inputs["word_ids"])
        correct = inputs["correct"].to(torch.bool)
        if args.loss_type == "nlft" and p_std is None:
            p_std = torch.zeros_like(p_base)
        ts = batch_token_scales(p_base, p_std, p_judge, correct, response_mask, spans, loss_type=args.loss_type,
                                params=args.scale_params)
        loss = nlft_loss(logps, ts.scales, ts.unlikelihood, response_mask, num_items_in_batch) * args.loss_multiplier
        return (loss, {"logps": logps.detach(), "token_scales": ts.scales}) if return_outputs else loss
