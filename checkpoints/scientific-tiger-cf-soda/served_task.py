"""Which ``sequential-recommendation`` pipeline a saved model's config names: its own copy, or the installed one.

Every saved model names its own copy of the pipeline's code in ``config.json`` (``custom_pipelines``), so
``pipeline("sequential-recommendation", model=dir, trust_remote_code=True)`` works where sidrec is not
installed. ``transformers.pipeline`` lets such an entry win over an installed task, and then demands
``trust_remote_code`` even where sidrec is installed and has registered the very same task. The configs
of sidrec's sequential models therefore read the entry through :class:`ServedPipelineConfigMixin`: once
the task is registered in this process (``import sidrec``), the entry is left out when the config is
read, and the installed pipeline serves the model; the saved ``config.json`` keeps the entry unchanged.
"""

from __future__ import annotations

from typing import Any

TASK = "sequential-recommendation"


def task_registered_here() -> bool:
    """Whether this process has the task registered (``import sidrec`` registers it)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    return TASK in PIPELINE_REGISTRY.supported_tasks


class ServedPipelineConfigMixin:
    """``custom_pipelines`` without the saved copy of the task where the installed task can serve it."""

    @property
    def custom_pipelines(self) -> dict[str, Any]:
        saved = self.__dict__.get("custom_pipelines") or {}
        if TASK in saved and task_registered_here():
            return {task: entry for task, entry in saved.items() if task != TASK}
        return saved

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict[str, Any]) -> None:
        self.__dict__["custom_pipelines"] = value  # to_dict reads __dict__: config.json keeps the entry
