"""How the study's claims are judged from the cells' means and spreads (no training: synthetic cells)."""

from types import SimpleNamespace

from bertforge.ablation.plan import MIXES
from bertforge.ablation.report import ROBUST, judge


def cell(*scores):
    import statistics

    return {"per_seed": {str(i): s for i, s in enumerate(scores)}, "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores)}


def study(*tasks):
    return SimpleNamespace(specs=[SimpleNamespace(name=t) for t in tasks])


def results(cells):
    return {"variants": {name: {"tasks": {"ner": c}} for name, c in cells.items()}}


def mixes(**overrides):
    """Fine-tuned masking rows all at 0.50 +- 0.01, except the overrides (mix name -> cell)."""
    return {f"mask-{m.replace(',', '-')}": overrides.get(m.replace(",", "-"), cell(0.49, 0.50, 0.51)) for m in MIXES}


def verdicts(cells, claim):
    return [v for v in judge(results(cells), study("ner")) if v["claim"].startswith(claim)]


def test_a_pairwise_claim_needs_a_difference_beyond_the_larger_std():
    high, low = "mask-80-10-10-features", "mask-100-0-0-features"
    claim = "Feature-based NER suffers from [MASK] alone"
    (held,) = verdicts({high: cell(0.60, 0.62, 0.64), low: cell(0.50, 0.52, 0.54)}, claim)
    assert held["verdict"] == "holds" and abs(held["difference"] - 0.10) < 1e-9
    (close,) = verdicts({high: cell(0.50, 0.55, 0.60), low: cell(0.50, 0.52, 0.54)}, claim)
    assert close["verdict"].startswith("not resolved")
    (reversed_,) = verdicts({high: cell(0.40, 0.41, 0.42), low: cell(0.50, 0.52, 0.54)}, claim)
    assert reversed_["verdict"].startswith("does not hold")


def test_masking_robustness_names_the_mixes_that_stand_apart():
    (robust,) = verdicts(mixes(), ROBUST)
    assert robust["verdict"] == "holds" and robust["apart"] == [] and robust["spread"] < 1e-9
    (fragile,) = verdicts(mixes(**{"0-100-0": cell(0.40, 0.41, 0.42)}), ROBUST)
    assert fragile["apart"] == ["0,100,0"] and fragile["verdict"].startswith("does not hold (1 of 5")
    assert abs(fragile["spread"] - 0.09) < 1e-9


def test_masking_robustness_waits_for_every_mix():
    cells = mixes()
    del cells["mask-0-80-20"]
    assert verdicts(cells, ROBUST) == []


def test_size_perplexity_is_judged_on_the_sizes_pre_trained():
    def sized(**ppl):
        return {"variants": {f"size-{s}": {"pretrain": {"eval_perplexity": p}} for s, p in ppl.items()}}

    assert [v for v in judge(sized(tiny=590.0), study("ner")) if "perplexity" in v["claim"]] == []
    (two,) = [v for v in judge(sized(tiny=590.0, mini=420.0), study("ner")) if "perplexity" in v["claim"]]
    assert two["verdict"] == "holds" and two["claim"].endswith("(perplexity tiny > mini)")
    (three,) = [v for v in judge(sized(tiny=590.0, mini=420.0, small=450.0), study("ner"))
                if "perplexity" in v["claim"]]
    assert three["verdict"] == "does not hold" and three["perplexities"] == [590.0, 420.0, 450.0]
