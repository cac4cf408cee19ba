# Stage 3: edit directions (random, GANSpace, InterfaceGAN) in Z and W, and the editing protocol per space.


rule attribute_samples:
    input:
        generator=f"{OUT}/generator.pt",
    output:
        f"{OUT}/directions/interfacegan_samples.npz",
    params:
        stage="prepare.attribute_samples_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_path=output[0]),
        settings=settings("seed", *RENDERING, "directions.interfacegan.samples", "directions.interfacegan.attributes",
                          "directions.interfacegan.boundaries_asset"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/attribute_samples.tsv"
    log:
        f"{OUT}/logs/attribute_samples.log",
    script:
        STAGE_SCRIPT


def direction_inputs(wildcards):
    inputs = dict(generator=f"{OUT}/generator.pt")
    released_z = wildcards.domain == "Z" and config["directions"]["interfacegan"]["boundaries_asset"]
    if wildcards.family == "interfacegan" and not released_z:
        inputs["samples"] = f"{OUT}/directions/interfacegan_samples.npz"
    if wildcards.domain == "W" and config["directions"]["unit"]["rule"] == "matched":
        inputs["reference"] = f"{OUT}/directions/{wildcards.family}_Z.npz"  # W's unit matches Z's image move
    return inputs


rule directions:
    input:
        unpack(direction_inputs),
    output:
        f"{OUT}/directions/{{family}}_{{domain}}.npz",
    params:
        stage="prepare.directions_stage",
        kwargs=lambda wc, input, output: dict(family=wc.family, domain=wc.domain, generator_path=input.generator,
                                              out_path=output[0], samples_path=input.get("samples"),
                                              reference_path=input.get("reference")),
        settings=settings("seed", "device", *RENDERING, "perceptual", "directions.unit", "directions.random", "directions.ganspace",
                          "directions.interfacegan"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/directions_{{family}}_{{domain}}.tsv"
    log:
        f"{OUT}/logs/directions_{{family}}_{{domain}}.log",
    script:
        STAGE_SCRIPT


GROUND_TRUTH = config["editing"]["ground_truth"]["images"] > 0


rule ground_truth_targets:
    input:
        generator=f"{OUT}/generator.pt",
    output:
        table=f"{OUT}/ground_truth/targets/targets.csv",
        z=f"{OUT}/ground_truth/targets/z.pt",
    params:
        stage="editing.ground_truth_targets_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_dir=os.path.dirname(output.table)),
        settings=settings(*RENDERING, "editing.ground_truth"),
    threads: 1
    log:
        f"{OUT}/logs/ground_truth_targets.log",
    script:
        STAGE_SCRIPT


def reference_inputs(wildcards):
    inputs = dict(generator=f"{OUT}/generator.pt", targets=f"{OUT}/targets/targets.csv")
    if GROUND_TRUTH:
        inputs["ground_truth"] = f"{OUT}/ground_truth/targets/targets.csv"
    return inputs


rule editing_references:
    input:
        unpack(reference_inputs),
    output:
        baselines=f"{OUT}/editing/baselines.csv",
        realism_baselines=f"{OUT}/editing/realism_baselines.csv",
        reference=f"{OUT}/editing/realism_reference.npz",
    params:
        stage="editing.editing_references_stage",
        kwargs=lambda wc, input, output: dict(
            generator_path=input.generator, targets_dir=os.path.dirname(input.targets), out_dir=os.path.dirname(output.baselines),
            ground_truth_dir=os.path.dirname(input.ground_truth) if GROUND_TRUTH else None),
        settings=settings("seed", *RENDERING, "perceptual", "identity", "editing.ground_truth", "editing.realism"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/editing_references.tsv"
    log:
        f"{OUT}/logs/editing_references.log",
    script:
        STAGE_SCRIPT


def edit_inputs(wildcards):
    domain = SPACES[wildcards.slug].domain
    inputs = dict(generator=f"{OUT}/generator.pt", targets=f"{OUT}/targets/targets.csv", codes=f"{OUT}/inversion/{wildcards.slug}/codes.pt")
    inputs.update({f"dir_{family}": f"{OUT}/directions/{family}_{domain}.npz" for family in FAMILIES})
    if GROUND_TRUTH:
        inputs["ground_truth"] = f"{OUT}/ground_truth/targets/z.pt"
        inputs["ground_truth_codes"] = f"{OUT}/ground_truth/inversion/{wildcards.slug}/codes.pt"
    return inputs


rule edit:
    input:
        unpack(edit_inputs),
    output:
        identity=f"{OUT}/edits/{{slug}}/identity.csv",
        fidelity=f"{OUT}/edits/{{slug}}/fidelity.csv",
        identity_in_domain=f"{OUT}/edits/{{slug}}/identity_in_domain.csv",
        realism=f"{OUT}/edits/{{slug}}/realism.npz",
        grids=directory(f"{OUT}/edits/{{slug}}/grids"),
    params:
        stage="editing.edit_stage",
        kwargs=lambda wc, input, output: dict(
            space_name=SPACES[wc.slug].name, generator_path=input.generator, targets_dir=os.path.dirname(input.targets),
            codes_path=input.codes, direction_paths={f: input[f"dir_{f}"] for f in FAMILIES}, out_dir=os.path.dirname(output.identity),
            ground_truth_dir=os.path.dirname(input.ground_truth) if GROUND_TRUTH else None,
            ground_truth_codes_path=input.ground_truth_codes if GROUND_TRUTH else None),
        settings=settings(*RENDERING, "perceptual", "inversion.base_size", "editing", "identity", "report.grid_images"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/edit_{{slug}}.tsv"
    log:
        f"{OUT}/logs/edit_{{slug}}.log",
    script:
        STAGE_SCRIPT


rule editing_tables:
    input:
        identity=expand(f"{OUT}/edits/{{slug}}/identity.csv", slug=SPACES),
        fidelity=expand(f"{OUT}/edits/{{slug}}/fidelity.csv", slug=SPACES),
        identity_in_domain=expand(f"{OUT}/edits/{{slug}}/identity_in_domain.csv", slug=SPACES),
        realism=expand(f"{OUT}/edits/{{slug}}/realism.npz", slug=SPACES),
        references=rules.editing_references.output,
    output:
        verdicts=f"{OUT}/tables/editing_verdicts.csv",
        informative=f"{OUT}/tables/editing_informative.csv",
        baselines=f"{OUT}/tables/editing_baselines.csv",
        realism=f"{OUT}/tables/realism.csv",
        fidelity=f"{OUT}/tables/edit_fidelity.csv",
        matched=f"{OUT}/tables/matched_identity.csv",
        per_image=f"{OUT}/tables/editing_per_image.csv",
        changes=f"{OUT}/tables/attribute_changes.csv",
    params:
        stage="editing.editing_tables_stage",
        kwargs=lambda wc, input, output: dict(edits_dirs={space.name: f"{OUT}/edits/{slug}" for slug, space in SPACES.items()},
                                              references_dir=f"{OUT}/editing", tables_dir=os.path.dirname(output.verdicts)),
        settings=settings("seed", "editing.matched_strength", "statistics"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/editing_tables.tsv"
    log:
        f"{OUT}/logs/editing_tables.log",
    script:
        STAGE_SCRIPT
