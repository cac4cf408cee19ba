# Entry point: `snakemake --cores N` runs the default `mini` profile; `--config profile=paper` (or ci)
# switches profile. The rules live in workflow/ (rules/ by stage, scripts/ thin glue).
include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        f"{OUT}/report.html",
        f"{OUT}/MANIFEST",  # the run's last rule (workflow/rules/audit.smk)
        f"{OUT}/tables/table1.csv",
        f"{OUT}/tables/noninferiority.csv",
        f"{OUT}/provenance.json",
        # Every per-space product is a target too: Snakemake does not regenerate a deleted intermediate
        # file while its dependants are up to date, so deleting one space's outputs would otherwise be
        # silently ignored. As targets, a deleted file reruns its job and everything downstream of it.
        expand(f"{OUT}/inversion/{{slug}}/{{name}}", slug=SPACES, name=["codes.pt", "losses.csv", "metrics.csv"]),
        expand(f"{OUT}/edits/{{slug}}/{{name}}", slug=SPACES, name=["identity.csv", "fidelity.csv", "identity_in_domain.csv", "realism.npz"]),
        rules.editing_tables.output,
        rules.figures.output,
        FIG8_OUTPUTS,  # the Fig. 8 section's products, every per-space one too (workflow/rules/fig8.smk)
