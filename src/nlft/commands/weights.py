"""Export NLFT's per-token weights of a data file, measured once with the initial model, as JSONL.

Every row holds X_base's prompt and the output as token ids and text pieces, and for every output token
its NLFT class, its scale and its loss (likelihood or unlikelihood); ``likelihood_weights`` is the
likelihood part alone as one float per token. A sidecar ``<name>.meta.json`` records the model and
settings. The file trains with TRL (``nlft.integrations.trl.NLFTWeightsTrainer``), with ``nlft train
--from-weights``, or, through ``likelihood_weights``, with any trainer that takes per-token loss weights.
An interrupted export resumes when rerun with the same arguments.

Examples::

    nlft weights --data data/nlft.jsonl --out weights.jsonl
    nlft weights --data data/nlft.jsonl --model HuggingFaceTB/SmolLM2-135M-Instruct --preset robust --out w.jsonl
    nlft weights --data data/nlft.jsonl --model HuggingFaceTB/SmolLM2-135M-Instruct --backend openai \\
        --base-url http://localhost:8000/v1 --phrase-rule word --out w.jsonl
"""

from __future__ import annotations

import argparse

from nlft.commands._types import at_least_one

_FLAG_SETTINGS = ("p0_correct", "c1", "c2", "c3", "r0", "p0_incorrect", "irrelevant_incorrect", "max_error_fraction",
                  "unlikelihood_weight", "phrase_rule", "phrase_threshold", "max_phrase_span", "class_balance",
                  "nll_coef", "loss_multiplier")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``nlft weights``."""
    from dataclasses import fields

    from nlft.method.params import LossParams, ScaleParams

    parser.add_argument("--data", required=True, help="NLFT jsonl (question, reference, output, correct, judgment)")
    parser.add_argument("--out", required=True, help="weights JSONL to write (its sidecar: NAME.meta.json)")
    parser.add_argument("--model", default="smollm2",
                        help="the model to be trained, before training (name or path; default: smollm2, offline)")
    parser.add_argument("--preset", default=None, choices=("paper", "robust"),
                        help="NLFT settings to start from (default: paper); the views are always those of the "
                             "initial model (view_probs=cached, error_reference=initial)")
    parser.add_argument("--limit", type=at_least_one, default=None, help="only the first N records")
    parser.add_argument("--batch-size", type=at_least_one, default=4, help="records per forward pass (default: 4)")
    parser.add_argument("--max-length", type=at_least_one, default=None,
                        help="prompt + output token limit (default: the model's, at most 4096)")
    parser.add_argument("--truncation", choices=("error", "response"), default="error",
                        help="rows over --max-length: stop with an error (default) or cut the output's end")
    parser.add_argument("--dtype", default=None, help="float32 (default on CPU), bfloat16, float16 or auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    server = parser.add_argument_group("measuring the views on an OpenAI-compatible server (--backend openai)")
    server.add_argument("--backend", choices=("local", "openai"), default="local",
                        help="'local' runs the model here; 'openai' asks a server for the prompt log-probabilities "
                             "of every view (completions with echo and logprobs, or vLLM's prompt_logprobs), so "
                             "only the tokenizer of --model is loaded here; needs --phrase-rule word or none")
    server.add_argument("--base-url", default=None, help="the server's base URL, e.g. http://localhost:8000/v1")
    server.add_argument("--server-model", default=None, help="the model name the server serves (default: --model)")
    server.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key (default: OPENAI_API_KEY; optional)")
    server.add_argument("--logprobs-api", choices=("echo", "vllm"), default="echo",
                        help="how the prompt log-probabilities are asked for: 'echo' (echo with logprobs: OpenAI's "
                             "completions, llama.cpp, vLLM; default) or 'vllm' (vLLM's prompt_logprobs)")
    server.add_argument("--max-concurrency", type=at_least_one, default=4, help="requests in flight (default: 4)")
    settings = {f.name: f for f in (*fields(ScaleParams), *fields(LossParams))}
    group = parser.add_argument_group("NLFT settings (on top of the preset)")
    for name in _FLAG_SETTINGS:
        f = settings[name]
        kwargs = {"default": None, "help": f"{f.metadata['help']} (default {f.default})"}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        elif isinstance(f.default, bool):
            kwargs["type"] = lambda text: text.lower() in ("1", "true", "yes")
            kwargs["metavar"] = "BOOL"
        elif isinstance(f.default, int | float):
            kwargs["type"] = type(f.default)
        group.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)


def run(args: argparse.Namespace) -> int:
    """Load the records and the model (or the server), write the weights (:func:`nlft.train.weights.write_weights`)."""
    import sys

    import torch

    from nlft.train.config import DEFAULT_PRESET
    from nlft.train.weights import weights_config, write_weights
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_model, load_tokenizer, resolve_model_path

    records = read_jsonl(args.data)[: args.limit]
    overrides = {name: getattr(args, name) for name in _FLAG_SETTINGS if getattr(args, name) is not None}
    config = weights_config(args.preset or DEFAULT_PRESET, max_length=args.max_length, truncation=args.truncation,
                            **overrides)
    path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(path)
    model = measure = client = None
    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--backend openai needs --base-url")
        from nlft.data.generation import OpenAIChatClient
        from nlft.train.weights import server_measure

        client = OpenAIChatClient(args.base_url, args.server_model or args.model, api_key_env=args.api_key_env,
                                  max_concurrency=args.max_concurrency)
        measure = server_measure(client, api=args.logprobs_api)
    else:
        model = load_model(path, dtype=args.dtype)
        if torch.cuda.is_available():
            model = model.to("cuda")
    try:
        result = write_weights(records, args.out, tokenizer=tokenizer, model=model, model_name=args.model,
                               config=config, batch_size=args.batch_size, measure=measure, backend=args.backend,
                               source=args.data, progress=not args.no_progress)
    finally:
        if client is not None:
            client.close()
    n_ul = sum(loss == "unlikelihood" for row in result.rows for loss in row["loss"])
    n_tok = sum(len(row["loss"]) for row in result.rows)
    print(f"nlft weights: {len(result.rows)} rows, {n_tok} response tokens ({n_ul} unlikelihood) -> {result.path} "
          f"(settings: {result.meta_path})", file=sys.stderr)
    return 0
