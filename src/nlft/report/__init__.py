"""Reading finished runs: plots, the comparison table and the saliency page.
"""
