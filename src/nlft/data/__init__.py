"""Making training data: generation of outputs, judging of the incorrect ones, and :func:`prepare` (questions ->
outputs -> grades -> judgments -> NLFT records).
"""
