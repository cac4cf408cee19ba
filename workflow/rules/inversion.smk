# Stage 2: invert every target into each space plugin (one job per space, batched over images).

# the config sections of the plugins' own settings (spaces.base.LatentSpace.settings_key), every registered one
METHOD_SETTINGS = sorted({s.settings_key for s in map(space_plugins.get, space_plugins.names()) if s.settings_key})


def inversion_inputs(wildcards, *, targets=f"{OUT}/targets/targets.csv", inversions=f"{OUT}/inversion"):
    """What a plugin declares it needs (spaces.base): an encoder of its kind, the P_N statistics, its pivot's inversion."""
    space = space_plugins.get(wildcards.slug)  # any plugin: a method's pivot space runs even when not configured
    inputs = dict(generator=f"{OUT}/generator.pt", targets=targets)
    if space.encoder_kind is not None:
        inputs["encoder"] = f"{OUT}/{ENCODER_KINDS[space.encoder_kind].file}"
    if space.needs_pn_stats:
        inputs["pn_stats"] = f"{OUT}/pn_stats.npz"
    if space.pivot is not None:  # PTI, SAM: their first stage is the pivot space's job, reused (engine.invert pivot=)
        pivot = f"{inversions}/{space.pivot.slug}"
        inputs.update(pivot_codes=f"{pivot}/codes.pt", pivot_losses=f"{pivot}/losses.csv", pivot_budget=f"{pivot}/budget.csv")
    return inputs


rule invert:
    input:
        unpack(inversion_inputs),
    output:
        codes=f"{OUT}/inversion/{{slug}}/codes.pt",
        losses=f"{OUT}/inversion/{{slug}}/losses.csv",
        budget=f"{OUT}/inversion/{{slug}}/budget.csv",
        metrics=f"{OUT}/inversion/{{slug}}/metrics.csv",
    params:
        stage="evaluate.invert_stage",
        kwargs=lambda wc, input, output: dict(
            space_name=space_plugins.get(wc.slug).name, generator_path=input.generator, targets_dir=os.path.dirname(input.targets),
            out_dir=os.path.dirname(output.codes), encoder_path=input.get("encoder"), pn_stats_path=input.get("pn_stats"),
            pivot_dir=os.path.dirname(input.pivot_codes) if input.get("pivot_codes") else None),
        # a space reruns when its own settings change, not those of another method
        settings=lambda wc: settings("seed", *RENDERING, "perceptual", "inversion",
                                     omit=["inversion.spaces", *(f"inversion.{key}" for key in METHOD_SETTINGS if key != space_plugins.get(wc.slug).settings_key)]),
    threads: 1
    resources:
        gpu=GPU,
    benchmark:
        f"{OUT}/benchmarks/invert_{{slug}}.tsv"
    log:
        f"{OUT}/logs/invert_{{slug}}.log",
    script:
        STAGE_SCRIPT


# The in-domain targets (editing.ground_truth): seeded generator samples, inverted exactly like the real ones.
use rule invert as invert_ground_truth with:
    input:
        unpack(lambda wc: inversion_inputs(wc, targets=f"{OUT}/ground_truth/targets/targets.csv", inversions=f"{OUT}/ground_truth/inversion")),
    log:
        f"{OUT}/logs/invert_ground_truth_{{slug}}.log",
    output:
        codes=f"{OUT}/ground_truth/inversion/{{slug}}/codes.pt",
        losses=f"{OUT}/ground_truth/inversion/{{slug}}/losses.csv",
        budget=f"{OUT}/ground_truth/inversion/{{slug}}/budget.csv",
        metrics=f"{OUT}/ground_truth/inversion/{{slug}}/metrics.csv",
    benchmark:
        f"{OUT}/benchmarks/invert_ground_truth_{{slug}}.tsv"


# Budget-matched pivot rows (inversion.budget_matched_pivots): for each method on a pivot, its pivot space run for
# the method's whole step cap, so Table 1 tells the method's own contribution from its extra steps.
BUDGET_MATCHED = [slug for slug, s in SPACES.items() if s.pivot is not None] if config["inversion"]["budget_matched_pivots"] else []


rule invert_budget_matched:
    input:
        unpack(lambda wc: inversion_inputs(types.SimpleNamespace(slug=space_plugins.get(wc.slug).pivot.slug))),
    output:
        codes=f"{OUT}/inversion/budget_matched/{{slug}}/codes.pt",
        losses=f"{OUT}/inversion/budget_matched/{{slug}}/losses.csv",
        budget=f"{OUT}/inversion/budget_matched/{{slug}}/budget.csv",
        metrics=f"{OUT}/inversion/budget_matched/{{slug}}/metrics.csv",
    params:
        stage="evaluate.invert_stage",
        kwargs=lambda wc, input, output: dict(
            space_name=space_plugins.get(wc.slug).pivot.name, budget_of=space_plugins.get(wc.slug).name,
            generator_path=input.generator, targets_dir=os.path.dirname(input.targets), out_dir=os.path.dirname(output.codes),
            encoder_path=input.get("encoder"), pn_stats_path=input.get("pn_stats")),
        # the pivot's settings and the method's own (its second stage's cap)
        settings=lambda wc: settings("seed", *RENDERING, "perceptual", "inversion",
                                     omit=["inversion.spaces", *(f"inversion.{key}" for key in METHOD_SETTINGS
                                           if key not in (space_plugins.get(wc.slug).settings_key, space_plugins.get(wc.slug).pivot.settings_key))]),
    threads: 1
    resources:
        gpu=GPU,
    benchmark:
        f"{OUT}/benchmarks/invert_budget_matched_{{slug}}.tsv"
    log:
        f"{OUT}/logs/invert_budget_matched_{{slug}}.log",
    script:
        STAGE_SCRIPT
