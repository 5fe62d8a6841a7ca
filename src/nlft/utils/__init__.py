"""The bottom layer: files (JSONL, atomic writes, run-directory locks, DataError), console quieting, model and
tokenizer loading, resumable stages. Imports nothing else of nlft.
"""
