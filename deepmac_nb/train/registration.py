"""Explicit, idempotent registration with Model Garden's factories (no import side effects)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from official.core import exp_factory, task_factory


def register_family(config_cls: type, task_cls: type, experiments: Mapping[str, Callable]) -> None:
    """Registers ``task_cls`` for ``config_cls`` and every named experiment factory, once."""
    if config_cls not in task_factory._REGISTERED_TASK_CLS:
        task_factory.register_task_cls(config_cls)(task_cls)
    for name, factory in experiments.items():
        if name not in exp_factory._REGISTERED_CONFIGS:
            exp_factory.register_config_factory(name)(factory)
