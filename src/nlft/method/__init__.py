"""The method itself, on tensors only (torch and the standard library): per-token log-probabilities of the
views, phrase clustering, token scales (paper Eq. 1-4, CUT) and the losses.
"""
