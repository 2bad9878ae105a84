"""Training: the Model Garden task, losses, named experiments and the ``train`` command."""
