# Entry point: `snakemake --cores N` runs the default `mini` profile; `--config profile=paper` (or ci)
# switches profile. The rules live in workflow/.
include: "workflow/Snakefile"
