"""Training: NLFTConfig, tokenising the views, NLFTTrainer, the baselines (SFT, DFT, ReFT), the training recipe
(:func:`run_training`), run directories, callbacks and model cards.
"""
