# Bootstrap (not part of `all`): train the mini generator from scratch (hours on a CPU). The result is
# reviewed, then committed to models/mini/ with its model card.


rule train_mini_generator:
    output:
        "resources/mini-train/checkpoint.pt",
    params:
        run_dir="resources/mini-train",
    threads: THREADS
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir {params.run_dir} --threads {threads}"


rule export_mini_generator:
    input:
        "resources/mini-train/checkpoint.pt",
    output:
        "models/mini/generator.pt",
    shell:
        "python workflow/scripts/train_mini_generator.py --run-dir resources/mini-train --export {output}"


rule mini_generator_quality:
    input:
        "models/mini/generator.pt",
    output:
        "models/mini/quality.json",
        "models/mini/samples.png",
        "models/mini/style_mixing.png",
        "models/mini/teacher_samples.png",
    threads: THREADS
    shell:
        "python -m benchmarks.mini_generator_quality --generator {input} --out models/mini --threads {threads}"
