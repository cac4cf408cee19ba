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
