# Bootstrap (not part of `all`): train the mini generator from scratch (hours on a CPU), then its F encoder
# (about an hour) and IDInvert's encoder (about half an hour). The results are reviewed, then committed to models/mini/ with their cards.


rule train_mini_generator:
    output:
        "resources/mini-train/checkpoint.pt",
    params:
        run_dir="resources/mini-train",
    threads: THREADS
    log:
        "resources/mini-train/train.log",
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir {params.run_dir} --threads {threads} 2>&1 | tee {log}"


rule export_mini_generator:
    input:
        "resources/mini-train/checkpoint.pt",
    output:
        "models/mini/generator.pt",
    log:
        "resources/mini-train/export.log",
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir resources/mini-train --export {output} 2>&1 | tee {log}"


rule mini_generator_quality:
    input:
        "models/mini/generator.pt",
    output:
        "models/mini/quality.json",
        "models/mini/samples.png",
        "models/mini/style_mixing.png",
        "models/mini/teacher_samples.png",
    threads: THREADS
    log:
        "resources/mini-quality.log",
    shell:
        "python -m benchmarks.studies.mini_generator_quality --generator {input} --out models/mini --threads {threads} 2>&1 | tee {log}"


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
