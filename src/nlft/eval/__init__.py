"""Accuracy of a model on a question set: batched generation, grading, intervals and paired tests.
"""
