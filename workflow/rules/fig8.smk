# The paper's Fig. 8 (config `fig8:`, null = none): a second generator (the paper: genforce's StyleGAN1 LSUN Cat 256)
# with its own targets, inverted into fig8.spaces (F/Z+ and BDInvert's F/W+) by the pipeline's own stages on the
# section's config (benchmarks.pipeline.fig8.section_config), edited along its GANSpace components, and shown as
# grids and a table in results/<run>/fig8/. Run the section alone with `snakemake --cores 2 fig8`.
from benchmarks.pipeline.fig8 import section_config
from fzplus.config import resolve_path

FIG8 = config["fig8"]
FIG8_OUT = f"{OUT}/fig8"
FIG8_CONFIG = section_config(config) if FIG8 else None
FIG8_SPACES = {s.slug: s for s in map(space_plugins.get, FIG8_CONFIG["inversion"]["spaces"])} if FIG8 else {}
FIG8_INVERSION = ["codes.pt", "losses.csv", "budget.csv", "metrics.csv"]  # fig8_invert's outputs, for `all`


def fig8_settings(*keys, omit=()):
    """settings() of the section's config: a rule reruns when a value its stage reads there changes."""
    return settings(*keys, omit=omit, of=FIG8_CONFIG)


if FIG8:

    rule fig8_generator:
        input:
            [str(resolve_path(FIG8["generator"]["checkpoint"]))] if FIG8["generator"]["checkpoint"] else [],
        output:
            f"{FIG8_OUT}/generator.pt",
        params:
            stage="fig8.section_stage",
            kwargs=lambda wc, output: dict(stage="prepare.build_generator", out_path=output[0]),
            settings=fig8_settings("profile", "generator.checkpoint", "generator.asset", "generator.random"),
        threads: 1
        benchmark:
            f"{OUT}/benchmarks/fig8_generator.tsv"
        log:
            f"{OUT}/logs/fig8_generator.log",
        script:
            STAGE_SCRIPT

    rule fig8_targets:
        input:
            generator=f"{FIG8_OUT}/generator.pt",
        output:
            f"{FIG8_OUT}/targets/targets.csv",
        params:
            stage="fig8.section_stage",
            kwargs=lambda wc, input, output: dict(stage="prepare.prepare_targets_stage", generator_path=input.generator,
                                                  out_dir=os.path.dirname(output[0])),
            settings=fig8_settings("targets"),
        threads: 1
        benchmark:
            f"{OUT}/benchmarks/fig8_targets.tsv"
        log:
            f"{OUT}/logs/fig8_targets.log",
        script:
            STAGE_SCRIPT

    def fig8_direction_inputs(wildcards):
        inputs = dict(generator=f"{FIG8_OUT}/generator.pt")
        if wildcards.domain == "W" and config["directions"]["unit"]["rule"] == "matched":
            inputs["reference"] = f"{FIG8_OUT}/directions/ganspace_Z.npz"  # W's unit matches Z's image move
        return inputs

    rule fig8_directions:
        input:
            unpack(fig8_direction_inputs),
        output:
            f"{FIG8_OUT}/directions/ganspace_{{domain}}.npz",
        params:
            stage="fig8.section_stage",
            kwargs=lambda wc, input, output: dict(stage="prepare.directions_stage", family="ganspace", domain=wc.domain,
                                                  generator_path=input.generator, out_path=output[0],
                                                  reference_path=input.get("reference")),
            settings=fig8_settings("seed", "device", *RENDERING, "perceptual", "directions.unit", "directions.ganspace"),
        threads: 1
        benchmark:
            f"{OUT}/benchmarks/fig8_directions_{{domain}}.tsv"
        log:
            f"{OUT}/logs/fig8_directions_{{domain}}.log",
        script:
            STAGE_SCRIPT

    # the section's base-code encoder, from fig8.encoder checked against its generator (encoder_stage); without one
    # the F spaces start from the generator's mean feature map
    if FIG8["encoder"]:

        rule fig8_encoder:
            input:
                pretrained=str(resolve_path(FIG8["encoder"])),
                generator=f"{FIG8_OUT}/generator.pt",
            output:
                f"{FIG8_OUT}/encoder.pt",
            params:
                stage="fig8.section_stage",
                kwargs=lambda wc, input, output: dict(stage="prepare.encoder_stage", generator_path=input.generator,
                                                      out_path=output[0], kind="base-code"),
                settings=fig8_settings("seed", "device", "generator.noise_mode", "perceptual", "encoder",
                                       *ENCODER_KINDS["base-code"].reads),
            threads: 1
            benchmark:
                f"{OUT}/benchmarks/fig8_encoder.tsv"
            log:
                f"{OUT}/logs/fig8_encoder.log",
            script:
                STAGE_SCRIPT

    def fig8_inversion_inputs(wildcards):
        inputs = dict(generator=f"{FIG8_OUT}/generator.pt", targets=f"{FIG8_OUT}/targets/targets.csv")
        if FIG8["encoder"] and FIG8_SPACES[wildcards.slug].encoder_kind == "base-code":
            inputs["encoder"] = f"{FIG8_OUT}/encoder.pt"
        return inputs

    rule fig8_invert:
        input:
            unpack(fig8_inversion_inputs),
        output:
            codes=f"{FIG8_OUT}/inversion/{{slug}}/codes.pt",
            losses=f"{FIG8_OUT}/inversion/{{slug}}/losses.csv",
            budget=f"{FIG8_OUT}/inversion/{{slug}}/budget.csv",
            metrics=f"{FIG8_OUT}/inversion/{{slug}}/metrics.csv",
        params:
            stage="fig8.section_stage",
            kwargs=lambda wc, input, output: dict(
                stage="evaluate.invert_stage", space_name=FIG8_SPACES[wc.slug].name, generator_path=input.generator,
                targets_dir=os.path.dirname(input.targets), out_dir=os.path.dirname(output.codes),
                encoder_path=input.get("encoder")),
            # as the main invert rule: a space reruns when its own settings change, not those of another method
            settings=lambda wc: fig8_settings("seed", *RENDERING, "perceptual", "inversion",
                                              omit=["inversion.spaces", *(f"inversion.{key}" for key in METHOD_SETTINGS
                                                    if key != FIG8_SPACES[wc.slug].settings_key)]),
        threads: 1
        resources:
            gpu=GPU,
        benchmark:
            f"{OUT}/benchmarks/fig8_invert_{{slug}}.tsv"
        log:
            f"{OUT}/logs/fig8_invert_{{slug}}.log",
        script:
            STAGE_SCRIPT

    rule fig8_edit:
        input:
            generator=f"{FIG8_OUT}/generator.pt",
            codes=f"{FIG8_OUT}/inversion/{{slug}}/codes.pt",
            directions=lambda wc: f"{FIG8_OUT}/directions/ganspace_{FIG8_SPACES[wc.slug].domain}.npz",
            targets=f"{FIG8_OUT}/targets/targets.csv",
        output:
            edits=f"{FIG8_OUT}/edits/{{slug}}/edits.csv",
            images=directory(f"{FIG8_OUT}/edits/{{slug}}/images"),
        params:
            stage="fig8.edit_stage",
            kwargs=lambda wc, input, output: dict(space_name=FIG8_SPACES[wc.slug].name, generator_path=input.generator,
                                                  codes_path=input.codes, directions_path=input.directions,
                                                  out_dir=os.path.dirname(output.edits),
                                                  targets_dir=os.path.dirname(input.targets)),
            settings=fig8_settings(*RENDERING, "perceptual", "editing.alphas", "identity") | settings("fig8.identity"),
        threads: 1
        benchmark:
            f"{OUT}/benchmarks/fig8_edit_{{slug}}.tsv"
        log:
            f"{OUT}/logs/fig8_edit_{{slug}}.log",
        script:
            STAGE_SCRIPT

    rule fig8_summary:
        input:
            targets=f"{FIG8_OUT}/targets/targets.csv",
            metrics=expand(f"{FIG8_OUT}/inversion/{{slug}}/metrics.csv", slug=FIG8_SPACES),
            edits=expand(f"{FIG8_OUT}/edits/{{slug}}/edits.csv", slug=FIG8_SPACES),
            images=expand(f"{FIG8_OUT}/edits/{{slug}}/images", slug=FIG8_SPACES),
        output:
            table=f"{FIG8_OUT}/table.csv",
            markdown=f"{FIG8_OUT}/table.md",
            grids=directory(f"{FIG8_OUT}/grids"),
        params:
            stage="fig8.summary_stage",
            kwargs=lambda wc, input, output: dict(
                targets_dir=os.path.dirname(input.targets), out_dir=FIG8_OUT,
                inversion_dirs={s.name: f"{FIG8_OUT}/inversion/{slug}" for slug, s in FIG8_SPACES.items()},
                edits_dirs={s.name: f"{FIG8_OUT}/edits/{slug}" for slug, s in FIG8_SPACES.items()}),
            settings=fig8_settings("inversion.spaces", "editing.alphas", "report.dpi"),
        threads: 1
        benchmark:
            f"{OUT}/benchmarks/fig8_summary.tsv"
        log:
            f"{OUT}/logs/fig8_summary.log",
        script:
            STAGE_SCRIPT


# what the section writes: the report shows it, the manifest waits for it, and `all` lists every per-space product
# (a deleted one reruns its job, as the main run's do); empty without the section
FIG8_OUTPUTS = [
    *(rules.fig8_summary.output if FIG8 else []),
    *expand(f"{FIG8_OUT}/inversion/{{slug}}/{{name}}", slug=FIG8_SPACES, name=FIG8_INVERSION),
    *expand(f"{FIG8_OUT}/edits/{{slug}}/edits.csv", slug=FIG8_SPACES),
]


rule fig8:
    """The Fig. 8 section alone (nothing without it): `snakemake --cores 2 fig8`."""
    localrule: True
    input:
        FIG8_OUTPUTS,
