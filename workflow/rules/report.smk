# Stage 4: statistics and tables, figures, provenance, the HTML report.


rule tables:
    input:
        metrics=expand(f"{OUT}/inversion/{{slug}}/metrics.csv", slug=SPACES),
        budget_matched=expand(f"{OUT}/inversion/budget_matched/{{slug}}/metrics.csv", slug=BUDGET_MATCHED),
        identity=expand(f"{OUT}/edits/{{slug}}/identity.csv", slug=SPACES),
        directions=expand(f"{OUT}/directions/{{family}}_{{domain}}.npz", family=FAMILIES, domain=DOMAINS),
    output:
        table1=f"{OUT}/tables/table1.csv",
        noninferiority=f"{OUT}/tables/noninferiority.csv",
        identity=f"{OUT}/tables/identity.csv",
        directions=f"{OUT}/tables/directions.csv",
        edit_strength=f"{OUT}/tables/edit_strength.csv",
        # the Fig. 9 table, when a tuning method (one with a pivot space) is compared
        tuning=[f"{OUT}/tables/tuning.csv"] if any(s.pivot is not None for s in SPACES.values()) else [],
    params:
        stage="evaluate.tables_stage",
        kwargs=lambda wc, input, output: dict(metrics_paths=list(input.metrics), identity_paths=list(input.identity),
                                              budget_matched_paths=list(input.budget_matched),
                                              direction_paths=list(input.directions), tables_dir=os.path.dirname(output.table1)),
        settings=settings("inversion.spaces", "perceptual.backend", "statistics"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/tables.tsv"
    log:
        f"{OUT}/logs/tables.log",
    script:
        STAGE_SCRIPT


rule figures:
    input:
        metrics=expand(f"{OUT}/inversion/{{slug}}/metrics.csv", slug=SPACES),
        identity=expand(f"{OUT}/edits/{{slug}}/identity.csv", slug=SPACES),
        editing=rules.editing_tables.output,
        # the extra figures a plugin declares (SAM's latent maps) are drawn from its codes
        space_figures=[f"{OUT}/inversion/{slug}/codes.pt" for slug, s in SPACES.items() if s.figures],
    output:
        directory(f"{OUT}/figures"),
    params:
        stage="evaluate.figures_stage",
        kwargs=lambda wc, output: dict(results_dir=OUT, figures_dir=output[0]),
        settings=settings("inversion.spaces", "perceptual.backend", "report.dpi", "report.grid_images", "statistics.pairs"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/figures.tsv"
    log:
        f"{OUT}/logs/figures.log",
    script:
        STAGE_SCRIPT


def provenance_inputs(wildcards):
    inputs = dict(generator=f"{OUT}/generator.pt")
    if any(space.needs_pn_stats for space in SPACES.values()):
        inputs["pn_stats_summary"] = f"{OUT}/pn_stats.json"  # the whitening choices behind the P_N rows
    return inputs


rule provenance:
    input:
        unpack(provenance_inputs),
    output:
        f"{OUT}/provenance.json",
    params:
        stage="evaluate.provenance_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_path=output[0],
                                              pn_stats_summary_path=input.get("pn_stats_summary")),
        settings=settings(*config),  # the record holds the whole config
    threads: 1
    log:
        f"{OUT}/logs/provenance.log",
    script:
        STAGE_SCRIPT


rule report:
    input:
        rules.tables.output,
        rules.editing_tables.output,
        rules.figures.output,
        rules.provenance.output,
        FIG8_OUTPUTS,  # the Fig. 8 section, when the config has one (workflow/rules/fig8.smk)
        # the run's own audit, shown on the first screen; ancient: a reviewer's later `snakemake audit` rewrites
        # audit.json without making the report stale
        ancient(f"{OUT}/audit.json"),
    output:
        f"{OUT}/report.html",
    params:
        stage="evaluate.report_stage",
        kwargs=lambda wc, output: dict(results_dir=OUT, out_path=output[0]),
        settings=settings("report.title", "perceptual.backend"),
    threads: 1
    log:
        f"{OUT}/logs/report.log",
    script:
        STAGE_SCRIPT
