# The audit (benchmarks/audit): the run's own audit before its report (audit.json), the manifest as the run's last
# rule (MANIFEST), and the `audit` target a reviewer runs on a results folder:
#   snakemake --cores 2 audit --config profile=ci                      manifest, recomputation, provenance
#   snakemake --cores 2 audit --config profile=ci audit='{deep: 2}'    and re-run 2 images of the first space
# The rules run Python in the job (`run:`), so that they get the validated config of this invocation. `audit` is
# a local rule: on a cluster it runs where it is asked for, beside the results folder.

# keys that change no output; `audit` holds the audit target's own settings
AUDIT_IGNORED_KEYS = (*NO_EFFECT, "audit")

# what the run writes, as the default target lists it: the manifest waits for all of it and is rewritten when a
# job reruns (a job rerun makes every job downstream of it rerun)
RUN_OUTPUTS = [
    *rules.report.output,
    *rules.tables.output,
    *rules.editing_tables.output,
    *rules.figures.output,
    *rules.provenance.output,
    *expand(f"{OUT}/inversion/{{slug}}/{{name}}", slug=SPACES, name=["codes.pt", "losses.csv", "metrics.csv"]),
    *expand(f"{OUT}/edits/{{slug}}/{{name}}", slug=SPACES, name=["identity.csv", "fidelity.csv", "identity_in_domain.csv", "realism.npz"]),
]


rule self_audit:
    """The run audits itself before its report: every table recomputed from its rows, and its provenance. A
    finding does not fail the run; it is recorded in audit.json (and audit.md), which the report shows."""
    input:
        rules.tables.output,
        rules.editing_tables.output,
        rules.provenance.output,
        expand(f"{OUT}/inversion/{{slug}}/metrics.csv", slug=SPACES),
        expand(f"{OUT}/inversion/budget_matched/{{slug}}/metrics.csv", slug=BUDGET_MATCHED),
    output:
        json=f"{OUT}/audit.json",
        markdown=f"{OUT}/audit.md",
    threads: 1
    # no log file: audit.md holds what it prints, and a file the manifest lists would go stale when this rule
    # alone reruns (the manifest does not wait for audit.json's date, see below)
    run:
        from benchmarks.audit import audit_run
        from benchmarks.audit.summary import print_result

        print_result(audit_run(OUT, config=config, in_run=True, ignore_keys=AUDIT_IGNORED_KEYS))


rule manifest:
    """The run's last rule: results/<run>/MANIFEST, the sha256 and size of every file of the run."""
    input:
        RUN_OUTPUTS,
        # waits for the run's own audit, but its rewriting audit.json (a later `snakemake audit`, a forced rerun)
        # reruns nothing: audit.json and audit.md are not listed
        ancient(rules.self_audit.output.json),
    output:
        f"{OUT}/MANIFEST",
    threads: 1
    run:
        from benchmarks.audit.manifest import write_manifest

        write_manifest(OUT)


rule audit:
    """Audit the results folder as it is on disk (no inputs: it never runs the pipeline; no outputs: it runs every
    time it is asked for, and Snakemake keeps audit.md and audit.json when it fails). Exits non-zero on any failure."""
    localrule: True
    threads: 1
    run:
        from benchmarks.audit import audit_run
        from benchmarks.audit.summary import print_result

        found = audit_run(OUT, config=config, deep=config["audit"]["deep"], deep_space=config["audit"]["space"],
                          ignore_keys=AUDIT_IGNORED_KEYS)
        print_result(found)
        if not found.passed:
            raise WorkflowError(f"the audit of {OUT} found {len(found.failures)} failures; see {found.markdown_path}")
