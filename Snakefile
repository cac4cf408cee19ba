# Entry point: `snakemake --cores N` runs the default `mini` profile; `--config profile=paper` (or ci)
# switches profile. The rules live in workflow/ (rules/ by stage, scripts/ thin glue).
include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        f"{OUT}/report.html",
        f"{OUT}/tables/table1.csv",
        f"{OUT}/tables/noninferiority.csv",
        f"{OUT}/provenance.json",
