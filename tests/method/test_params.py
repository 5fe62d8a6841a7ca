"""The method's settings are declared once (ScaleParams, LossParams); everything else reads them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nlft.method.params import NLFT_SETTINGS, PAGE_PARAMS, LossParams, ScaleParams, settings_fields
from nlft.method.scales import batch_token_scales


def test_nlft_config_carries_every_setting_with_its_default_and_help():
    from nlft.train.config import NLFTConfig

    config = {f.name: f for f in dataclasses.fields(NLFTConfig)}
    for f in settings_fields():
        assert config[f.name].default == f.default and config[f.name].metadata["help"] == f.metadata["help"]
    cfg = NLFTConfig(output_dir="unused", report_to=[], p0_correct=0.9, kl_coef=0.1)
    assert cfg.scale_params == ScaleParams(p0_correct=0.9) and cfg.loss_params == LossParams(kl_coef=0.1)


def test_train_options_and_page_read_the_same_declaration():
    from nlft.report.saliency import page_params
    from nlft.train.options import NLFT_KNOBS, TrainOptions

    assert NLFT_KNOBS == NLFT_SETTINGS
    opts = TrainOptions()
    assert all(getattr(opts, name) is None for name in NLFT_SETTINGS)  # None: NLFTConfig's default
    page = page_params()
    assert {k: page["irrelevant" if k == "irrelevant_incorrect" else k] for k in PAGE_PARAMS} == {
        k: getattr(ScaleParams(), k) for k in PAGE_PARAMS}


def test_settings_are_checked_where_they_are_declared():
    with pytest.raises(ValueError, match="c2 must be smaller than c3"):
        ScaleParams(c2=0.7, c3=0.6).check()
    with pytest.raises(ValueError, match="irrelevant_incorrect='x' is not valid"):
        ScaleParams(irrelevant_incorrect="x").check()
    with pytest.raises(ValueError, match="view_probs='never' is not valid"):
        LossParams(view_probs="never").check()
    # each message names the field that failed, and only that one
    with pytest.raises(ValueError, match=r"^unlikelihood_weight must be >= 0, got -1") as err:
        ScaleParams(unlikelihood_weight=-1.0).check()
    assert "kl_coef" not in str(err.value)
    with pytest.raises(ValueError, match=r"^kl_coef must be >= 0, got -0.5") as err:
        LossParams(kl_coef=-0.5).check()
    assert "unlikelihood_weight" not in str(err.value)


def test_batch_token_scales_reads_the_params_or_single_settings():
    torch.manual_seed(0)
    p_base, p_std, p_judge = (torch.rand(2, 5) for _ in range(3))
    args = (p_base, p_std, p_judge, torch.tensor([True, False]), torch.ones(2, 5, dtype=torch.bool))
    params = ScaleParams(p0_correct=0.5, r0=1.1, irrelevant_incorrect="likelihood")
    by_params = batch_token_scales(*args, params=params)
    by_keywords = batch_token_scales(*args, p0_correct=0.5, r0=1.1, irrelevant="likelihood")
    for a, b in zip(by_params, by_keywords, strict=True):
        assert torch.equal(a, b)
