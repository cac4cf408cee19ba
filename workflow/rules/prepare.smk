# Stage 1: the run's generator (normalised to the suite's format), targets, P_N statistics, the encoders
# (F spaces' base-code encoder, IDInvert's W+ encoder: fzplus.encoders.KINDS).


def generator_source(wildcards):
    path = config["generator"]["checkpoint"]
    return [path] if path else []


rule generator:
    input:
        generator_source,
    output:
        f"{OUT}/generator.pt",
    params:
        stage="prepare.build_generator",
        kwargs=lambda wc, output: dict(out_path=output[0]),
        settings=settings("profile", "generator.checkpoint", "generator.asset", "generator.random"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/generator.tsv"
    log:
        f"{OUT}/logs/generator.log",
    script:
        STAGE_SCRIPT


rule targets:
    input:
        generator=f"{OUT}/generator.pt",
    output:
        f"{OUT}/targets/targets.csv",
    params:
        stage="prepare.prepare_targets_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_dir=os.path.dirname(output[0])),
        settings=settings("targets"),
    threads: 1
    benchmark:
        f"{OUT}/benchmarks/targets.tsv"
    log:
        f"{OUT}/logs/targets.log",
    script:
        STAGE_SCRIPT


rule pn_stats:
    input:
        generator=f"{OUT}/generator.pt",
    output:
        stats=f"{OUT}/pn_stats.npz",
        summary=f"{OUT}/pn_stats.json",
    params:
        stage="prepare.pn_stats_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_path=output.stats, summary_path=output.summary),
        settings=settings("seed", "device", "pn_stats"),
    threads: THREADS
    resources:
        gpu=GPU,
    benchmark:
        f"{OUT}/benchmarks/pn_stats.tsv"
    log:
        f"{OUT}/logs/pn_stats.log",
    script:
        STAGE_SCRIPT


def pretrained_file(section):
    path = config[section]["pretrained"]
    return {"pretrained": path} if path else {}


# The encoders the compared plugins ask for (spaces.base.LatentSpace.encoder_kind), one file per kind of
# fzplus.encoders.KINDS: results/<run>/encoder.pt (F spaces' base code), idinvert_encoder.pt (IDInvert's W+).
ENCODER_OF_FILE = {kind.file.removesuffix(".pt"): name for name, kind in ENCODER_KINDS.items()}


rule encoder:
    input:
        unpack(lambda wc: pretrained_file(ENCODER_KINDS[ENCODER_OF_FILE[wc.encoder]].section)),
        generator=f"{OUT}/generator.pt",
    output:
        f"{OUT}/{{encoder}}.pt",
    wildcard_constraints:
        encoder="|".join(ENCODER_OF_FILE),
    params:
        stage="prepare.encoder_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input.generator, out_path=output[0], kind=ENCODER_OF_FILE[wc.encoder]),
        settings=lambda wc: settings("seed", "device", "generator.noise_mode", "perceptual",
                                     ENCODER_KINDS[ENCODER_OF_FILE[wc.encoder]].section, *ENCODER_KINDS[ENCODER_OF_FILE[wc.encoder]].reads),
    # Six inversions and their edits wait for E: start it first. One thread: on 2 CPU cores a 2-thread E
    # was only scheduled once every 1-thread job had finished, then ran alone (mini: 418 s at 1.4 s/step,
    # against ~1.5 s/step on one thread beside other jobs).
    priority: 50
    threads: 1
    resources:
        gpu=GPU,
    benchmark:
        f"{OUT}/benchmarks/{{encoder}}.tsv"
    log:
        f"{OUT}/logs/{{encoder}}.log",
    script:
        STAGE_SCRIPT
