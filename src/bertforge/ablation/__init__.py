"""The paper's ablations at small scale: one command pre-trains every variant on the same data at the same
compute, fine-tunes each on every task with every seed, and writes the table (``bertforge ablate``)."""

from bertforge.ablation.plan import Study, TaskSpec, Variant, select_variants, variants_of

__all__ = ["Study", "TaskSpec", "Variant", "select_variants", "variants_of", "run_study"]


def run_study(study: Study, log=print) -> dict:
    from bertforge.ablation.run import run_study as run

    return run(study, log)
