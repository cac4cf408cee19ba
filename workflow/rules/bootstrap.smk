# Bootstrap (not part of `all`): train the mini generator from scratch (hours on a CPU), then its F encoder
# (about an hour) and IDInvert's encoder (about half an hour). The results are reviewed, then committed to models/mini/ with their cards.
# The mini StyleGAN1 (issue 28, Fig. 8) is trained, exported and measured by the same rules with its own run folder
# and model folder (`*_mini_stylegan1`, models/mini-stylegan1/), and so is its base-code encoder (Fig. 8).


rule train_mini_generator:
    output:
        "resources/mini-train/checkpoint.pt",
    params:
        run_dir="resources/mini-train",
        architecture="stylegan2",
    threads: THREADS
    log:
        "resources/mini-train/train.log",
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir {params.run_dir} --architecture {params.architecture} --threads {threads} 2>&1 | tee {log}"


rule export_mini_generator:
    input:
        "resources/mini-train/checkpoint.pt",
    output:
        "models/mini/generator.pt",
    params:
        run_dir="resources/mini-train",
    log:
        "resources/mini-train/export.log",
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir {params.run_dir} --export {output} 2>&1 | tee {log}"


rule mini_generator_quality:
    input:
        "models/mini/generator.pt",
    output:
        "models/mini/quality.json",
        "models/mini/samples.png",
        "models/mini/style_mixing.png",
        "models/mini/teacher_samples.png",
    params:
        out="models/mini",
    threads: THREADS
    log:
        "resources/mini-quality.log",
    shell:
        "python -m benchmarks.studies.mini_generator_quality --generator {input} --out {params.out} --threads {threads} 2>&1 | tee {log}"


use rule train_mini_generator as train_mini_stylegan1 with:
    output:
        "resources/mini-stylegan1-train/checkpoint.pt",
    params:
        run_dir="resources/mini-stylegan1-train",
        architecture="stylegan1",
    log:
        "resources/mini-stylegan1-train/train.log",


use rule export_mini_generator as export_mini_stylegan1 with:
    input:
        "resources/mini-stylegan1-train/checkpoint.pt",
    output:
        "models/mini-stylegan1/generator.pt",
    params:
        run_dir="resources/mini-stylegan1-train",
    log:
        "resources/mini-stylegan1-train/export.log",


use rule mini_generator_quality as mini_stylegan1_quality with:
    input:
        "models/mini-stylegan1/generator.pt",
    output:
        "models/mini-stylegan1/quality.json",
        "models/mini-stylegan1/samples.png",
        "models/mini-stylegan1/style_mixing.png",
        "models/mini-stylegan1/teacher_samples.png",
    params:
        out="models/mini-stylegan1",
    log:
        "resources/mini-stylegan1-quality.log",


# Writes to resources/, not to models/mini/: the run reads models/mini/encoder.pt, and a rule producing it
# would let a fresh clone's file dates (generator newer than encoder) schedule an hour of retraining.
rule train_mini_encoder:
    """The mini profile's pretrained encoder, trained on the committed generator with the profile's encoder
    recipe; review resources/mini-encoder/ and copy the three files into models/mini/ after every
    generator change."""
    input:
        "models/mini/generator.pt",
    output:
        encoder="resources/mini-encoder/encoder.pt",
        card="resources/mini-encoder/encoder.json",
        preview="resources/mini-encoder/encoder_preview.png",
    params:
        stage="prepare.train_pretrained_encoder_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input[0], out_path=output.encoder, card_path=output.card, preview_path=output.preview,
                                              checkpoint_path="resources/mini-encoder/checkpoint.pt"),
    threads: THREADS
    log:
        "resources/mini-encoder/train.log",
    script:
        STAGE_SCRIPT


use rule train_mini_encoder as train_mini_idinvert_encoder with:
    """The mini profile's IDInvert encoder (fzplus.encoders.domain_training, the profile's `idinvert:` recipe);
    review resources/mini-idinvert/ and copy the three files into models/mini/ after every generator change."""
    log:
        "resources/mini-idinvert/train.log",
    output:
        encoder="resources/mini-idinvert/idinvert_encoder.pt",
        card="resources/mini-idinvert/idinvert_encoder.json",
        preview="resources/mini-idinvert/idinvert_preview.png",
    params:
        stage="prepare.train_pretrained_encoder_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input[0], out_path=output.encoder, card_path=output.card, preview_path=output.preview,
                                              checkpoint_path="resources/mini-idinvert/checkpoint.pt", kind="w-plus"),


use rule train_mini_encoder as train_mini_stylegan1_encoder with:
    """The base-code encoder of the mini StyleGAN1 (the Fig. 8 section's `fig8.encoder`, BDInvert's starting point
    for F/W+), the profile's encoder recipe at the main base size; review resources/mini-stylegan1-encoder/ and copy
    the three files into models/mini-stylegan1/ after every change of that generator."""
    input:
        "models/mini-stylegan1/generator.pt",
    log:
        "resources/mini-stylegan1-encoder/train.log",
    output:
        encoder="resources/mini-stylegan1-encoder/encoder.pt",
        card="resources/mini-stylegan1-encoder/encoder.json",
        preview="resources/mini-stylegan1-encoder/encoder_preview.png",
    params:
        stage="prepare.train_pretrained_encoder_stage",
        kwargs=lambda wc, input, output: dict(generator_path=input[0], out_path=output.encoder, card_path=output.card, preview_path=output.preview,
                                              checkpoint_path="resources/mini-stylegan1-encoder/checkpoint.pt"),
