"""The results matrix: meta-train and evaluate every cell of a plan, then write ``results.json`` and ``results.md``.

A plan (``benchmarks/plans/*.yaml``) lists cells: a family, one or more algorithms and seeds, with overrides of the
training config and of the few-shot protocol. Each (family, algo, seed) cell trains a run into
``RESULTS/<plan>/<family>-<algo>-seed<seed>/`` (a ``train.py`` run folder) and evaluates it on every split of the
plan against its baselines into ``<run>/eval/<split>/`` (``evaluate.py``'s ``eval.json``, ``eval.csv`` and
``adaptation.png``; the evaluation seed is the cell's seed, or on ``test`` and ``ood`` its report seed where the plan
reserves them). Everything is cached: an interrupted training resumes, finished work is skipped, so the matrix fills
over several sittings. Afterwards the finished cells are aggregated, per (family, algo, split, method, k), over tasks
× runs into ``results.json`` (mean and IQM of success with their intervals), and ``results.md`` is written from those
records, with one adaptation plot and one within-trial plot per family in ``img/``; a report into ``docs`` also
rewrites the headline table between the README's ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers.

    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --status   # done / partial / todo, hours left
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml            # run what is left, then report
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --only point cheetah   # some families now
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --report   # report what is done, run nothing

Cores to spare: start the same command more than once. Each process holds the cell it works on (a lock beside the
run folder), and a process skips a cell another process holds, so the processes share out the cells.

A plan file:

    out: docs                  # where results.json, results.md and img/ go (default: RESULTS/<plan>)
    notes: headline-notes.md   # optional: Markdown beside the plan that results.md shows under "What mattered"
    eval:                      # the protocol of every cell; a cell's own `eval` overrides single keys
      n_tasks: 20              # tasks per seed
      steps: 3                 # K ≤ 3 inner steps ...
      support_episodes: 6      # ... each from this many fresh episodes per task: K × this ≤ 20
      eval_episodes: 10        # fresh episodes measuring each k
      splits: [test, ood]      # held-out splits: any of val (for tuning), test, ood (default test, ood)
      baselines: [scratch, multitask, sb3, oracle]
      report_seeds: [9101, 9102, 9103]   # optional: the i-th run seed of a family and algo draws its test and ood
                               # tasks with the i-th of these, seeds no tuning measured on (val keeps the run seed)
    families:
      point:
        headline: maml         # the algorithm the plots and videos show, and a candidate of the headline table
        gradient: maml         # optional: the best gradient-based learner (default: headline), plotted within a trial
        in_context: [rl2, context]   # optional: in-context learners beside it (default: the family's rl2/context cells)
        minutes: {train: 1, eval: 0.3}   # until measured: one training run; evaluating one method on one split
        train: {iterations: 150}         # TrainConfig overrides of every point cell
        baseline_settings: {log_std_init: -1}   # optional: the trained baselines' own PPO settings
    cells:
      - {family: point, algo: [maml, reptile], seeds: [0, 1, 2], train: {inner_lr: 1.0}, eval: {baselines: []}}
      - {family: point, algo: [rl2, context], seeds: [0, 1, 2]}

The package: :mod:`.plan` reads a plan file, :mod:`.cells` runs and caches its cells (and estimates what is left),
:mod:`.report` aggregates the finished cells into records and writes the report, ``__main__`` is the command line.
"""
