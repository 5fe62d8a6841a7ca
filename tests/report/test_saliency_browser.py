"""The saliency page in a real headless browser (Debian chromium driven by Selenium).

The page's JavaScript must classify and scale tokens exactly as :func:`nlft.method.scales.batch_token_scales`
does, for any slider setting: it is run in the browser on stored probabilities and compared here.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from nlft.method.clustering import cosine_spans, spans_to_mask, word_spans
from nlft.method.scales import batch_token_scales
from nlft.report.saliency import page_params, write_page

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


@pytest.fixture(scope="module")
def browser():
    missing = "needs selenium and Debian chromium + chromium-driver (apt-get install -y chromium chromium-driver)"
    ready = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and find_spec("selenium") is not None
    if not ready:
        if os.environ.get("NLFT_REQUIRE_BROWSER"):  # CI installs them: a missing browser is a failure there
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="nlft-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _r6(x: float) -> float:
    return float(f"{x:.6g}")


def synthetic_examples(n: int = 8, seed: int = 0) -> list[dict]:
    """Examples whose probabilities hit every class: P_std near 1 for saliency, judge ratios around r0."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(n):
        correct = i % 2 == 0
        length = rng.randint(5, 40)
        p_base = [_r6(10 ** rng.uniform(-4, 0)) for _ in range(length)]
        p_std = [_r6(rng.uniform(0.9, 1.0) if rng.random() < 0.4 else rng.random()) for _ in range(length)]
        p_judge = [_r6(min(1.0, b * math.exp(rng.gauss(0.4, 0.6)))) for b in p_base]
        if not correct:
            for t in range(length):  # some tokens clearly erroneous against both views
                if rng.random() < 0.2:
                    p_std[t] = _r6(p_judge[t] / rng.uniform(1.6, 4.0))
        words, w = [], 0
        for _ in range(length):
            w += rng.random() < 0.5
            words.append(w)
        w_lo, w_hi = word_spans(torch.tensor([words]))
        hidden = torch.randn(1, length, 4, generator=gen) + torch.randn(1, 1, 4, generator=gen)
        c_lo, c_hi = cosine_spans(hidden, torch.ones(1, length, dtype=torch.bool), threshold=0.3, max_span=4)
        examples.append({
            "id": f"s{i}", "correct": correct, "question": f"question {i}", "reference": "ref",
            "judgment": None if correct else "judgment", "tokens": [f"t{t} " for t in range(length)],
            "p_base": p_base, "p_std": p_std, "p_judge": None if correct else p_judge,
            "spans": {"cosine": [c_lo[0].tolist(), c_hi[0].tolist()], "word": [w_lo[0].tolist(), w_hi[0].tolist()]},
        })
    return examples


def python_reference(examples: list[dict], params: dict) -> list[dict]:
    """Classes and scales from nlft.method.scales on the padded batch of all examples (the trainer's code path)."""
    bsz, seq = len(examples), max(len(e["tokens"]) for e in examples)
    pb, ps, pj = (torch.zeros(bsz, seq) for _ in range(3))
    mask = torch.zeros(bsz, seq, dtype=torch.bool)
    pos = torch.arange(seq).expand(bsz, seq)
    lo, hi = pos.clone(), pos.clone()
    for b, e in enumerate(examples):
        n = len(e["tokens"])
        pb[b, :n], ps[b, :n] = torch.tensor(e["p_base"]), torch.tensor(e["p_std"])
        pj[b, :n] = torch.tensor(e["p_judge"] or [0.0] * n)
        mask[b, :n] = True
        if params["phrase_rule"] != "none":
            lo[b, :n], hi[b, :n] = (torch.tensor(x) for x in e["spans"][params["phrase_rule"]])
    correct = torch.tensor([e["correct"] for e in examples])
    spans = None if params["phrase_rule"] == "none" else (lo, hi)
    ts = batch_token_scales(
        pb, ps, pj, correct, mask, spans, p0_correct=params["p0_correct"], c1=params["c1"], c2=params["c2"],
        c3=params["c3"], r0=params["r0"], p0_incorrect=params["p0_incorrect"], irrelevant=params["irrelevant"],
        max_error_fraction=params["max_error_fraction"],
    )
    near = spans_to_mask(ts.erroneous, lo, hi) & mask & ~correct[:, None] if spans else torch.zeros_like(mask)
    cut = batch_token_scales(pb, None, pj, correct, mask, loss_type="cut", cut_threshold=params["cut_threshold"])
    out = []
    for b, e in enumerate(examples):
        n = len(e["tokens"])
        cls = []
        for t in range(n):
            if ts.saliency[b, t]:
                cls.append("saliency")
            elif ts.sub_saliency[b, t]:
                cls.append("sub-saliency")
            elif ts.erroneous[b, t]:
                cls.append("erroneous")
            elif near[b, t]:
                cls.append("near-error")
            else:
                cls.append("irrelevant")
        cut_cls = ["erroneous" if cut.unlikelihood[b, t] else "likelihood" for t in range(n)]
        out.append({"scales": ts.scales[b, :n].tolist(), "cls": cls, "cut_scales": cut.scales[b, :n].tolist(),
                    "cut_cls": cut_cls})
    return out


PARAM_SETS = [
    {},
    {"phrase_rule": "word", "c1": 2.0, "c2": 0.1, "c3": 1.7},
    {"phrase_rule": "none", "p0_correct": 0.97, "r0": 1.2, "p0_incorrect": 0.001},
    {"irrelevant": "reference", "max_error_fraction": 0.5, "r0": 2.0, "cut_threshold": 1.5},
    {"irrelevant": "reference", "max_error_fraction": 0.0, "p0_correct": 0.6, "c2": 0.0},
    {"irrelevant": "likelihood", "max_error_fraction": 0.3},
]


@pytest.mark.parametrize("update", PARAM_SETS, ids=lambda u: ",".join(f"{k}={v}" for k, v in u.items()) or "defaults")
def test_page_javascript_equals_python_scales(browser, tmp_path, update):
    examples = synthetic_examples()
    params = {**page_params(), **update}
    page = write_page(tmp_path / "page.html", examples, page_params())
    _open(browser, page)
    got = browser.execute_script(
        "NLFT.setParams(arguments[0]);"
        "return NLFT.data.examples.map(ex => { const a = NLFT.nlftScales(ex, NLFT.params),"
        " c = NLFT.cutScales(ex, NLFT.params); return {scales: a.scales, cls: a.cls, cut_scales: c.scales,"
        " cut_cls: c.cls}; });", update)
    want = python_reference(examples, params)
    seen = set()
    for g, w in zip(got, want):
        assert g["cls"] == w["cls"]
        assert g["cut_cls"] == w["cut_cls"]
        torch.testing.assert_close(torch.tensor(g["scales"], dtype=torch.float64),
                                   torch.tensor(w["scales"], dtype=torch.float64), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(g["cut_scales"], dtype=torch.float64),
                                   torch.tensor(w["cut_scales"], dtype=torch.float64))
        seen.update(w["cls"])
    # The comparison is only meaningful if every class occurs.
    expected = {"saliency", "erroneous", "irrelevant"}
    if params["phrase_rule"] != "none":
        expected |= {"sub-saliency", "near-error"}
    assert expected <= seen
    # The painted tokens carry the same classes as the computation.
    painted = browser.execute_script(
        "return Array.from(document.querySelectorAll('.pane.nlft .tok')).map(s => s.dataset.cls);")
    assert painted == [c for w in want for c in w["cls"]]


def test_page_shows_tokens_tooltip_and_slider_recolours(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    examples = synthetic_examples(n=4, seed=3)
    examples[0]["tokens"][0] = "</script><b>x</b>"
    page = write_page(tmp_path / "page.html", examples, page_params(), meta={"model": "tiny"})
    _open(browser, page)
    cards = browser.find_elements(By.CSS_SELECTOR, "section.card")
    assert len(cards) == 4
    first = cards[0].find_elements(By.CSS_SELECTOR, ".pane.nlft .tok")
    assert [t.get_attribute("textContent") for t in first] == examples[0]["tokens"]
    assert "tiny" in browser.find_element(By.ID, "meta").text

    # A saliency token of a correct output, with P_std below the slider's maximum.
    t = next(i for i, p in enumerate(examples[0]["p_std"]) if 0.95 < p < 0.999)
    token = first[t]
    assert token.get_attribute("data-cls") == "saliency"
    ActionChains(browser).move_to_element(token).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed()
    assert "saliency" in tip.text and f"{examples[0]['p_std'][t]:.4f}" in tip.text

    slider = browser.find_element(By.ID, "p0_correct")
    slider.send_keys(Keys.END)  # p0_correct -> 0.999: nothing below it is salient any more
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));")
    assert token.get_attribute("data-cls") in ("sub-saliency", "irrelevant")
    assert browser.find_element(By.CSS_SELECTOR, 'output[data-for="p0_correct"]').text == "0.999"

    # The CUT pane of an incorrect output follows its own slider.
    bad = cards[1].find_elements(By.CSS_SELECTOR, ".pane.cut .tok")
    ratios = [j / max(b, 1e-12) for j, b in zip(examples[1]["p_judge"], examples[1]["p_base"])]
    assert [x.get_attribute("data-cls") == "erroneous" for x in bad] == [r > 1.1 for r in ratios]
    browser.find_element(By.ID, "cut_threshold").send_keys(Keys.END)  # 3.0
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));")
    assert [x.get_attribute("data-cls") == "erroneous" for x in bad] == [r > 3.0 for r in ratios]

    browser.find_element(By.ID, "reset").click()
    assert token.get_attribute("data-cls") == "saliency"
    browser.find_element(By.ID, "show_cut").click()
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));")
    assert not cards[0].find_element(By.CSS_SELECTOR, ".pane.cut").is_displayed()
    assert browser.get_log("browser") == []
