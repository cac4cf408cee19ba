"""Thin glue: run the library stage function named by the rule (params.stage = "module.function",
resolved in fzplus.stages) with the validated config and the rule's keyword arguments (params.kwargs)."""
import importlib

import fzplus  # noqa: F401  (torchvision fallback before anything imports torchvision)
from fzplus.stages import use_threads

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
use_threads(snakemake.threads)
module_name, function_name = snakemake.params.stage.rsplit(".", 1)
stage = getattr(importlib.import_module(f"fzplus.stages.{module_name}"), function_name)
stage(snakemake.config, **snakemake.params.kwargs)
