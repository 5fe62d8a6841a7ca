"""What a task is: question sources, prompt templates and the one rule that joins a prompt to its response
(chat template or plain text), and reading / checking answers.
"""
