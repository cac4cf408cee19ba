"""Thin glue: run the library stage function named by the rule (params.stage = "module.function",
resolved in benchmarks.pipeline) with the validated config and the rule's keyword arguments (params.kwargs).
What the stage prints (warnings, progress) goes to the console and to the rule's log file."""

import importlib

import fzplus  # noqa: F401  (torchvision fallback before anything imports torchvision)
from benchmarks.pipeline import logged_output, use_threads

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
use_threads(snakemake.threads)
module_name, function_name = snakemake.params.stage.rsplit(".", 1)
stage = getattr(importlib.import_module(f"benchmarks.pipeline.{module_name}"), function_name)
with logged_output(snakemake.log[0] if snakemake.log else None):
    stage(snakemake.config, **snakemake.params.kwargs)
