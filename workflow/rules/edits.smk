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
    script:
        STAGE_SCRIPT


def direction_inputs(wildcards):
    inputs = dict(generator=f"{OUT}/generator.pt")
    released_z = wildcards.domain == "Z" and config["directions"]["interfacegan"]["boundaries_asset"]
    if wildcards.family == "interfacegan" and not released_z:
        inputs["samples"] = f"{OUT}/directions/interfacegan_samples.npz"
    return inputs


rule directions:
    input:
        unpack(direction_inputs),
    output:
        f"{OUT}/directions/{{family}}_{{domain}}.npz",
    params:
        stage="prepare.directions_stage",
        kwargs=lambda wc, input, output: dict(family=wc.family, domain=wc.domain, generator_path=input.generator,
                                              out_path=output[0], samples_path=input.get("samples")),
        settings=settings("seed", "device", *RENDERING, "perceptual", "directions.unit", "directions.random", "directions.ganspace",
                          "directions.interfacegan"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/directions_{{family}}_{{domain}}.tsv"
    script:
        STAGE_SCRIPT


def edit_inputs(wildcards):
    domain = SPACES[wildcards.slug].domain
    inputs = dict(generator=f"{OUT}/generator.pt", targets=f"{OUT}/targets/targets.csv", codes=f"{OUT}/inversion/{wildcards.slug}/codes.pt")
    inputs.update({f"dir_{family}": f"{OUT}/directions/{family}_{domain}.npz" for family in FAMILIES})
    return inputs


rule edit:
    input:
        unpack(edit_inputs),
    output:
        identity=f"{OUT}/edits/{{slug}}/identity.csv",
        grids=directory(f"{OUT}/edits/{{slug}}/grids"),
    params:
        stage="evaluate.edit_stage",
        kwargs=lambda wc, input, output: dict(
            space_name=SPACES[wc.slug].name, generator_path=input.generator, targets_dir=os.path.dirname(input.targets),
            codes_path=input.codes, direction_paths={f: input[f"dir_{f}"] for f in FAMILIES},
            out_csv=output.identity, grids_dir=output.grids),
        settings=settings(*RENDERING, "editing", "identity", "report.grid_images"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/edit_{{slug}}.tsv"
    script:
        STAGE_SCRIPT
