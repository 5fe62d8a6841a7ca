"""SDFT (TRL's SDFTTrainer) as `nlft train --method sdft`: its data, the prompts its student and teacher see (on the
token ids the trainer builds), the run directory, and --max-steps."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from nlft.cli import main
from nlft.tasks.prompts import BRIEF_TEMPLATE, prompt_ids, render
from nlft.train.sdft import SDFT_CONTEXT, make_sdft_trainer, sdft_examples
from nlft.utils.files import DataError


def test_sdft_examples_are_the_distinct_questions(records):
    examples = sdft_examples([*records, {**records[0], "reference": "another"}])  # a repeated question counts once
    assert examples == [{"question": r["question"], "reference": r["reference"]} for r in records]
    with pytest.raises(DataError, match=r"d\.jsonl, line 2, field 'reference'"):
        sdft_examples([records[0], {**records[1], "reference": " "}], source="d.jsonl")
    with pytest.raises(DataError, match=r"d\.jsonl, line 1, field 'question'"):
        sdft_examples([{"reference": "#### 1"}], source="d.jsonl")


class BatchRecorder(TrainerCallback):
    """Keeps the ids of every batch the trainer prepares (TRL's ``on_self_distillation_batch_prepared`` hook)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []

    def on_self_distillation_batch_prepared(self, args, state, control, **payload) -> None:
        self.batches.append({k: payload[k].clone() for k in ("prompt_ids", "completion_ids", "teacher_input_ids",
                                                              "teacher_attention_mask")})


def _strip_left(ids: list[int], pad: int) -> list[int]:
    i = 0
    while i < len(ids) and ids[i] == pad:
        i += 1
    return ids[i:]


def _trained_batches(tmp_path, model, tok, records, chat: bool | None, lora_targets: list[str], new_tokens: int
                     ) -> tuple[object, list[dict[str, torch.Tensor]]]:
    """Two optimizer steps of the SDFT trainer (batch 2, one completion a question); every batch it prepared."""
    from peft import LoraConfig
    from trl.experimental.sdft import SDFTConfig

    args = SDFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, num_generations=1,
                      max_completion_length=new_tokens, max_prompt_length=None, report_to="none", save_strategy="no",
                      logging_steps=1, bf16=False, disable_dropout=False, activation_checkpointing=False)
    seen = BatchRecorder()
    trainer = make_sdft_trainer(model, tok, records, args, base_template=BRIEF_TEMPLATE, use_chat_template=chat,
                                callbacks=[seen],
                                peft_config=LoraConfig(r=4, lora_alpha=4, target_modules=lora_targets,
                                                       task_type="CAUSAL_LM"))
    trainer.train()
    return trainer, seen.batches


def _check_prompts(batches, tok, records, chat: bool | None) -> int:
    """Each row's student prompt is a training prompt of ``records``, its teacher prompt the same user text, a blank
    line and the privileged context, followed by the same completion tokens; the number of rows checked."""
    by_student = {tuple(prompt_ids(tok, render(BRIEF_TEMPLATE, question=r["question"]), chat)): r for r in records}
    checked = 0
    for batch in batches:
        n = batch["completion_ids"].shape[1]
        for b in range(batch["prompt_ids"].shape[0]):
            student = _strip_left(batch["prompt_ids"][b].tolist(), tok.pad_token_id)
            record = by_student.get(tuple(student))
            assert record is not None, f"the student's prompt is not a training prompt: {tok.decode(student)!r}"
            assert torch.equal(batch["teacher_input_ids"][b][-n:], batch["completion_ids"][b])
            teacher = batch["teacher_input_ids"][b][:-n][batch["teacher_attention_mask"][b][:-n].bool()].tolist()
            user = render(BRIEF_TEMPLATE, question=record["question"])
            context = SDFT_CONTEXT.format(reference=record["reference"])
            assert teacher == prompt_ids(tok, f"{user}\n\n{context}", chat)
            teacher_text, student_text = tok.decode(teacher), tok.decode(student)
            assert record["reference"] in teacher_text and record["reference"] not in student_text
            assert record["question"] in student_text and "Here is a correct answer" not in student_text
            # the response follows the teacher's prompt as it follows every prompt: the chat turn, or the cue
            assert teacher_text.endswith("<|im_start|>assistant\n" if chat is not False else "question.\nAnswer:\n")
            checked += 1
    return checked


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain"])
def test_teacher_prompt_holds_the_reference_and_the_students_does_not(tmp_path, records, tokenizer, plain_tokenizer,
                                                                     tiny_model, chat):
    """On the ids the trainer feeds its two forward passes: the student's prompt is the training prompt that every
    method uses (prompt_ids of the template with the question); the teacher's adds the reference."""
    tok = tokenizer if chat else plain_tokenizer
    _, batches = _trained_batches(tmp_path, tiny_model, tok, records, chat, ["gate_proj"], 4)
    assert len(batches) == 2  # one generation batch per optimizer step
    assert _check_prompts(batches, tok, records, chat) == 4


def _train(tiny_dir, data_file, out, *extra: str) -> int:
    return main(["train", "--method", "sdft", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(out),
                 "--batch-size", "2", "--sdft-max-new-tokens", "6", "--no-progress", *extra])


def test_train_sdft_writes_a_run_like_every_method(tmp_path, tiny_dir, data_file):
    """A real run of a few steps: exactly --max-steps optimizer steps (4 questions, batch 2: 2 steps an epoch, so 3
    steps end mid-epoch), a loadable adapter with the run's LoRA settings and a model card, the generation's cost in
    the manifest, the plot; `nlft eval --run` and `nlft compare` read it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sdft"
    assert _train(tiny_dir, data_file, out, "--max-steps", "3", "--save-steps", "1", "--lr", "1e-2") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "sdft" and manifest["global_step"] == 3
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["max_steps"] == 3
    logs = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs if "loss" in x] == [1, 2, 3]
    assert all("sdft/distillation_loss" in x for x in logs if "loss" in x)
    cost = manifest["sdft"]["generation"]
    assert cost["optimizer_steps"] == 3 and cost["completions"] == 6  # batch 2, one completion a question
    assert 3 <= cost["tokens"] <= 6 * 6 and cost["step_seconds"] > cost["generation_seconds"] > 0
    assert manifest["sdft"]["privileged_context"] == SDFT_CONTEXT and manifest["sdft"]["teacher"] == "base"
    assert manifest["prompt"]["template"]  # the training prompt, as every run records it
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["down_proj", "gate_proj", "up_proj"]
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 16, 0.05)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), out / "adapter")
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # B starts at zero: trained
    card = (out / "adapter" / "README.md").read_text()
    assert "SDFT" in card and "`sdft_max_new_tokens` 6" in card
    assert (out / "plot_loss.png").exists()

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 3 + 4?", "answer": "#### 7"}) + "\n")
    assert main(["eval", "--run", str(out), "--dataset", str(questions), "--max-new-tokens", "3", "--no-progress"]) == 0
    assert json.loads((out / "eval" / "metrics.json").read_text())["n"] == 1
    assert main(["compare", str(out), "--out", str(tmp_path / "c.png")]) == 0


def test_train_sdft_ema_teacher_and_own_privileged_context(tmp_path, tiny_dir, data_file):
    """The moving-average teacher is an adapter of the same model: the run's adapter folder holds the trained one
    only. A privileged-context file replaces the default, and the manifest records it."""
    template = tmp_path / "context.txt"
    template.write_text("Standard answer:\n{reference}")
    out = tmp_path / "ema"
    assert _train(tiny_dir, data_file, out, "--max-steps", "1", "--sdft-teacher", "ema",
                  "--sdft-context-template", str(template)) == 0
    assert (out / "adapter" / "adapter_model.safetensors").exists() and not (out / "adapter" / "teacher").exists()
    assert (out / "checkpoint-1" / "teacher").is_dir()  # checkpoints keep it, for --resume
    sdft = json.loads((out / "manifest.json").read_text())["sdft"]
    assert (sdft["privileged_context"], sdft["teacher"]) == ("Standard answer:\n{reference}", "ema")


def test_train_sdft_refuses_settings_that_cannot_train(tmp_path, tiny_dir, data_file, capsys):
    assert _train(tiny_dir, data_file, tmp_path / "a", "--sdft-num-generations", "3") == 2
    assert "batch_size x grad_accum (2) must be a multiple of sdft_num_generations (3)" in capsys.readouterr().err
    assert _train(tiny_dir, data_file, tmp_path / "b", "--batch-size", "8") == 2
    assert "4 distinct questions, fewer than the 8 of one optimizer step" in capsys.readouterr().err
    template = tmp_path / "context.txt"
    template.write_text("The answer is somewhere.")
    assert _train(tiny_dir, data_file, tmp_path / "c", "--sdft-context-template", str(template)) == 2
    assert "must contain {reference}" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused before anything is written


@pytest.mark.slow
def test_sdft_on_smollm2_with_its_chat_template(tmp_path, smollm2_path, smollm2_tokenizer, records):
    """Two optimizer steps on the real SmolLM2 (its chat template, with its system turn): the trainer's student and
    teacher prompts are the library's prompt ids, the teacher's with the reference; the adapter is written."""
    from nlft.utils.models import load_model

    trainer, batches = _trained_batches(tmp_path, load_model(smollm2_path), smollm2_tokenizer, records, None,
                                        ["gate_proj", "up_proj", "down_proj"], 8)
    assert trainer.state.global_step == 2 and trainer.generation_cost()["tokens"] > 0
    assert _check_prompts(batches, smollm2_tokenizer, records, None) == 4
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
