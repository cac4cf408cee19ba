# Stage 2: invert every target into each space plugin (one job per space, batched over images).

# the config sections of the methods' second stages (spaces.base.LatentSpace.settings_key)
STAGE_SETTINGS = sorted({s.settings_key for s in SPACES.values() if s.settings_key})
ENCODER_FILES = {"base-code": f"{OUT}/encoder.pt", "w-plus": f"{OUT}/idinvert_encoder.pt"}  # spaces.base.ENCODER_KINDS


def inversion_inputs(wildcards, *, targets=f"{OUT}/targets/targets.csv", inversions=f"{OUT}/inversion"):
    space = space_plugins.get(wildcards.slug)  # any plugin: a method's pivot space runs even when not configured
    inputs = dict(generator=f"{OUT}/generator.pt", targets=targets)
    if space.encoder_kind is not None:
        inputs["encoder"] = ENCODER_FILES[space.encoder_kind]
    if getattr(space, "pn_regularised", False):
        inputs["pn_stats"] = f"{OUT}/pn_stats.npz"
    if space.pivot is not None:  # PTI, SAM: their first stage is the pivot space's job, reused (engine.invert pivot=)
        pivot = f"{inversions}/{space.pivot.slug}"
        inputs.update(pivot_codes=f"{pivot}/codes.pt", pivot_losses=f"{pivot}/losses.csv")
    return inputs


rule invert:
    input:
        unpack(inversion_inputs),
    output:
        codes=f"{OUT}/inversion/{{slug}}/codes.pt",
        losses=f"{OUT}/inversion/{{slug}}/losses.csv",
        metrics=f"{OUT}/inversion/{{slug}}/metrics.csv",
    params:
        stage="evaluate.invert_stage",
        kwargs=lambda wc, input, output: dict(
            space_name=space_plugins.get(wc.slug).name, generator_path=input.generator, targets_dir=os.path.dirname(input.targets),
            out_dir=os.path.dirname(output.codes), encoder_path=input.get("encoder"), pn_stats_path=input.get("pn_stats"),
            pivot_dir=os.path.dirname(input.pivot_codes) if input.get("pivot_codes") else None),
        # a space reruns when the settings of its own second stage change, not those of another method's
        settings=lambda wc: settings("seed", *RENDERING, "perceptual", "inversion",
                                     omit=["inversion.spaces", *(f"inversion.{key}" for key in STAGE_SETTINGS if key != space_plugins.get(wc.slug).settings_key)]),
    threads: 1
    resources:
        gpu=GPU,
    benchmark:
        f"{OUT}/benchmarks/invert_{{slug}}.tsv"
    script:
        STAGE_SCRIPT


# The in-domain targets (editing.ground_truth): seeded generator samples, inverted exactly like the real ones.
use rule invert as invert_ground_truth with:
    input:
        unpack(lambda wc: inversion_inputs(wc, targets=f"{OUT}/ground_truth/targets/targets.csv", inversions=f"{OUT}/ground_truth/inversion")),
    output:
        codes=f"{OUT}/ground_truth/inversion/{{slug}}/codes.pt",
        losses=f"{OUT}/ground_truth/inversion/{{slug}}/losses.csv",
        metrics=f"{OUT}/ground_truth/inversion/{{slug}}/metrics.csv",
    benchmark:
        f"{OUT}/benchmarks/invert_ground_truth_{{slug}}.tsv"
