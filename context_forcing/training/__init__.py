"""Training: stages (teacher + ERFT, ODE init, stage 1, stage 2) run by one loop (`loop.py`).

Imports nothing on purpose: `context-forcing generate` must not pay for training imports.
"""
