"""Training: one loop for every task (checkpoints, resume, best-model export) and the task definitions."""
