"""benchmarks/growth.py's arithmetic on synthetic job records: rankings, seed noise, growth against scratch."""

from __future__ import annotations

import json

import pytest

from hf_efftrain.docs_gen import benchmark_tables

growth_summary = pytest.importorskip("benchmarks.growth_summary")
Job, plan_jobs = growth_summary.Job, pytest.importorskip("benchmarks.growth_jobs").plan_jobs
Study = pytest.importorskip("benchmarks.growth_setup").Study

NAMES = ("copy_all", "interleave", "top_k(k=2)", "middle(block=2)")
STUDY = Study(steps=10, lag=2, lags=(1, 2, 5), eval_every=5, seeds=(0, 1, 2), candidates=NAMES)
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}


def candidate(i: int, seed: int) -> dict:
    """Candidate ``i``: worse at the end the larger ``i``; the lag agrees, step 0 says the opposite."""
    losses = {0: 5.0 - 0.1 * i, 1: 4.5, 2: 4.0 + 0.05 * i, 5: 3.4 + 0.1 * i, 10: 3.0 + 0.1 * i + NOISE[seed]}
    return {"losses": {str(k): v for k, v in losses.items()}, "params": 1000, "layers": 12, "flops_per_step": 10.0}


def records() -> dict[str, dict]:
    found = {Job("candidate", n, s).key: candidate(i, s) for i, n in enumerate(NAMES) for s in STUDY.seeds}
    scratch = {"losses": {"0": 7.0, "1": 6.5, "2": 6.0, "5": 4.0, "10": 3.45}, "params": 1000, "layers": 12}
    found |= {Job("scratch", "scratch", s).key: {**scratch, "flops_per_step": 10.0} for s in STUDY.seeds}
    base = {"steps": 40, "stopped_by_plateau": True, "heldout_curve": {"20": 4.2, "40": 4.1}, "flops": 200.0}
    found[Job("base", "a", 0).key] = {**base, "train_losses": [4.4, 4.3, 4.2, 4.2], "cpu_seconds": 1.0, "params": 9}
    for arm, final in (("fixed", 3.5), ("adaptive", 3.4)):
        stages = [{"lag_metric": "held-out loss" if arm == "adaptive" else None}]
        found[Job("gradual", arm, 0).key] = {
            "final_heldout_loss": final, "flops": {"main_line": 60.0, "lag_probes": 20.0 * (arm == "adaptive")},
            "stages": stages, "stage_batches_drawn": 10, "stage_batches_distinct": 10,
        }  # fmt: skip
    return found


@pytest.fixture(scope="module")
def result() -> dict:
    return growth_summary.summarize(STUDY, records(), {"eval_tokens": 100})


def test_rankings_use_seed_means_of_growth_candidates_only(result):
    assert result["spearman_lag_vs_final"] == pytest.approx(1.0)
    assert result["spearman_init_vs_final"] == pytest.approx(-1.0)
    assert set(result["candidates"]) == set(NAMES) and not result["scratch_in_ranking"]
    assert result["lag_pick"] == result["best_final"] == "copy_all" and result["lag_pick_final_gap"] == 0
    assert result["init_pick"] == "middle(block=2)"
    assert result["init_pick_final_gap_nats"] == pytest.approx(0.3)
    assert result["init_pick_final_gap"] == pytest.approx(0.3 / 3.0)
    # at k=1 every candidate ties: no rank correlation is defined, and none is invented
    by_k = {row["k"]: row for row in result["spearman_vs_k"]}
    assert by_k[1]["spearman"] is None and by_k[5]["spearman"] == pytest.approx(1.0)


def test_depth_only_ranking_leaves_the_width_growing_candidates_out():
    means = {f"c{i}": {0: 5.0 - 0.1 * i, 2: 4.0 + 0.05 * i, 10: 3.0 + 0.1 * i} for i in range(3)}
    means["net2net_width"] = means["deep_fusion(a,b)"] = {0: 9.0, 2: 1.0, 10: 9.0}  # would break a perfect rank
    study = Study(steps=10, lag=2, lags=(2,), candidates=NAMES)
    depth = growth_summary.depth_only(means, study)
    assert depth["candidates"] == ["c0", "c1", "c2"]
    by_k = {row["k"]: row["spearman"] for row in depth["spearman_vs_k"]}
    assert by_k == {0: pytest.approx(-1.0), 2: pytest.approx(1.0)}


def test_spread_is_measured_against_the_seed_to_seed_std(result):
    assert result["final_spread"] == pytest.approx(0.3)
    assert result["seed_std"] == pytest.approx(0.01)
    assert result["final_spread_over_seed_std"] == pytest.approx(30.0)
    assert result["candidates"]["interleave"]["per_seed"]["2"]["final_heldout_loss"] == pytest.approx(3.11)


def test_growth_against_scratch_counts_steps_and_the_base(result):
    vs = result["growth_vs_scratch"]
    assert vs["steps_to_scratch_final"] == 5 and result["steps_to_scratch_final_ratio"] == pytest.approx(0.5)
    assert vs["steps_to_scratch_final_ratio_with_base"] == pytest.approx((40 + 5) / 10)
    assert vs["flops_to_scratch_final_ratio_with_base"] == pytest.approx((200 + 5 * 10) / (10 * 10))
    assert result["targets"] == {
        "spearman_lag_ge_0.8_and_above_init": True,
        "lag_cost_fraction_le_0.1": False,  # a lag of 2 in 10 steps is 20%
        "final_spread_ge_2_seed_std": True,
        "grown_reaches_scratch_final_in_le_0.5_of_steps": True,
    }


def test_gradual_arms_are_compared_at_the_scratch_budget(result):
    gradual = result["gradual_stacking"]
    assert gradual["adaptive_minus_fixed_final"] == pytest.approx(-0.1)
    assert gradual["arms"]["fixed"]["minus_scratch_final"] == pytest.approx(0.05)
    assert gradual["arms"]["adaptive"]["flops_fraction_with_lag_probes"] == pytest.approx(0.8)
    assert gradual["arms"]["adaptive"]["lag_metric"] == ["held-out loss"]


def test_docs_table_reads_the_result(result, tmp_path):
    facts = {"command": "python -m benchmarks.growth", "device": "cpu", "date": "today", "budget_note": "note"}
    (tmp_path / "growth.json").write_text(json.dumps({**result, **facts}))
    markdown = benchmark_tables("growth", tmp_path)
    assert "`copy_all`" in markdown and "`scratch`" not in markdown  # scratch is not a candidate of the ranking
    assert "scratch (not ranked)" in markdown and "Spearman against the lag" in markdown


def test_jobs_split_the_protocol_and_fusion_waits_for_both_bases():
    jobs = plan_jobs(Study())
    assert len([j for j in jobs if j.kind == "candidate"]) == 9 * 3 and len(jobs) == 2 + 27 + 3 + 2
    fusion = next(j for j in jobs if j.name == "deep_fusion(a,b)")
    assert fusion.needs() == ("base-a-s0", "base-b-s1")
    assert Job("scratch", "scratch", 0).needs() == ()


def test_scratch_trained_as_long_as_base_and_growth_counts_each_candidates_bases(result, tmp_path):
    """The long scratch run's final loss against every grown model, bases counted, in steps and in FLOPs."""
    long_module = pytest.importorskip("benchmarks.growth_scratch_long")
    tokens = 4  # FLOPs per step of a 1000-parameter candidate: 6 * 1000 * 4
    long_curve = {"0": 7.0, "25": 4.0, "50": 3.15}
    runs = {s: {"losses": long_curve, "flops_per_step": 24_000.0} for s in STUDY.seeds}
    section = long_module.compare(result, runs, steps=50, tokens_per_step=tokens)
    assert section["scratch_final_heldout_loss"] == pytest.approx(3.15) and section["scratch_steps"] == 50
    rows = section["candidates"]
    # copy_all ends at 3.0 and is at 3.4 after 5 steps: it reaches 3.15 only at its last step (10)
    assert rows["copy_all"]["steps_after_growth_to_reach"] == 10
    assert rows["copy_all"]["steps_with_base_ratio"] == pytest.approx((40 + 10) / 50)
    assert rows["copy_all"]["flops_with_base_ratio"] == pytest.approx((200 + 10 * 24_000) / (50 * 24_000))
    assert rows["interleave"]["steps_after_growth_to_reach"] == 10  # ends at 3.1
    assert rows["middle(block=2)"]["steps_with_base_ratio"] is None  # ends at 3.3: never reaches 3.15
    assert section["best_grown"] == "copy_all" and section["best_grown_steps_with_base_ratio"] == pytest.approx(1.0)
    facts = {"command": "python -m benchmarks.growth", "device": "cpu", "date": "today", "budget_note": "note"}
    section["command"] = "python -m benchmarks.growth_scratch_long --jobs 3"
    (tmp_path / "growth.json").write_text(json.dumps({**result, **facts, "growth_vs_scratch_long": section}))
    markdown = benchmark_tables("growth", tmp_path)
    assert "Against scratch trained 50 steps" in markdown and "growth_scratch_long --jobs 3" in markdown
    assert "| `middle(block=2)` | 3.300 | 0.150 | – | – | – |" in markdown  # never reaches it: no ratio invented
    recorded = result["scratch"]["per_seed"]["0"]["heldout_curve"]["0"]
    assert long_module.check_same_setup(result, {0: {"losses": {"0": recorded}}}) == {"0": 0.0}
    with pytest.raises(SystemExit, match="step-0 losses differ"):
        long_module.check_same_setup(result, {0: {"losses": {"0": recorded + 0.01}}})


def test_candidates_summary_takes_seed_means_and_the_spread_at_the_last_step():
    horizon = pytest.importorskip("benchmarks.growth_horizon")
    found = records()
    summary = horizon.candidate_summary(found, ["copy_all"], STUDY.seeds)["copy_all"]
    assert summary["final_heldout_loss"] == pytest.approx(3.0)  # 3.0 + the seeds' noise, which averages out
    assert summary["final_std"] == pytest.approx(0.01) and summary["params"] == 1000
    assert summary["per_seed_final"] == {"0": pytest.approx(2.99), "1": pytest.approx(3.0), "2": pytest.approx(3.01)}
    assert summary["mean_curve"]["0"] == pytest.approx(5.0)


@pytest.mark.slow
def test_a_long_run_after_growth_is_compared_with_scratch_trained_base_plus_that_run(tmp_path, monkeypatch):
    """Smoke sizes end to end: scratch trains the base's steps plus the run after growth; the ratio's floor is
    the base's share of them."""
    from datasets.utils import are_progress_bars_disabled, enable_progress_bars

    horizon = pytest.importorskip("benchmarks.growth_horizon")
    monkeypatch.setattr("benchmarks.harness.RESULTS_DIR", tmp_path)
    bars_were_on = not are_progress_bars_disabled()
    try:  # the study's data preparation turns the datasets bars off for its process: give them back to the others
        horizon.main(["--smoke", "--after", "12", "--candidates", "net2net_width", "--work-dir", str(tmp_path / "w")])
    finally:
        if bars_were_on:
            enable_progress_bars()
    result = json.loads((tmp_path / "growth_horizon.json").read_text())
    base_steps = result["bases"]["a"]["steps"]
    assert result["scratch_steps"] == base_steps + 12 and result["steps_after_growth"] == 12
    assert result["ratio_floor_at_step_0"] == pytest.approx(base_steps / (base_steps + 12))
    ratio = result["steps_to_scratch_final_ratio"]
    assert ratio is None or ratio >= result["ratio_floor_at_step_0"]
    assert list(result["per_candidate"]) == ["net2net_width"] and result["seeds"] == [0, 1, 2]


def test_lag_at_the_long_horizon_ranks_the_candidates_run_against_their_finals():
    horizon = pytest.importorskip("benchmarks.growth_horizon")
    lag = horizon.ranking(STUDY, records())  # the lag agrees with the final order, step 0 says the opposite
    assert lag["spearman_lag_vs_final"] == pytest.approx(1.0) and lag["spearman_init_vs_final"] == pytest.approx(-1.0)
    assert lag["lag_pick"] == lag["best_final"] == "copy_all" and lag["lag_pick_final_gap_nats"] == 0
    assert lag["final_spread_over_seed_std"] == pytest.approx(0.3 / 0.01)
    assert [k["k"] for k in lag["spearman_vs_k"]] == [0, 1, 2, 5]
    assert horizon._lag_goal(lag) and not horizon._lag_goal({**lag, "spearman_lag_vs_final": 0.7})


def test_the_variants_are_exact_at_step_0_and_exact_copies_stay_identical_in_training():
    """The init loss cannot rank the variants (the case LAG is for): MSG is the base's function, the Net2Net
    noise settings are one function; without noise the copied MLP units keep equal weights as they train."""
    import torch

    setup = pytest.importorskip("benchmarks.growth_setup")
    study = setup.SMOKE
    ids = torch.randint(0, study.vocab, (4, study.block), generator=torch.Generator().manual_seed(0))

    def loss(model) -> float:
        with torch.no_grad():
            return model.eval()(input_ids=ids, labels=ids).loss.item()

    def built(name: str):
        return setup.BUILDERS[name](study, {"a": setup.fresh_model(study, study.base_layers, seed=7)}, 0)

    base = loss(setup.fresh_model(study, study.base_layers, seed=7))
    for name in ("msg(copy_all,copies)", "msg(copy_all,fresh)", "msg_width(heads,ffn x2)", "no_growth(base a, untied)"):
        assert loss(built(name)) == pytest.approx(base, abs=1e-5), name
    untied = built("no_growth(base a, untied)")
    assert not untied.config.tie_word_embeddings and untied.lm_head.weight is not untied.model.embed_tokens.weight
    widths = [loss(built(n)) for n in ("net2net_width", "net2net_width(noise=0)", "net2net_width(noise=0.1)")]
    assert widths == pytest.approx([widths[0]] * 3, abs=1e-5)
    assert set(setup.VARIANTS) <= set(setup.DESCRIPTIONS) and not set(setup.VARIANTS) & set(setup.CANDIDATES)

    exact = built("net2net_width(noise=0)").train()
    optimizer = torch.optim.AdamW(exact.parameters(), lr=1e-2)
    for _ in range(3):
        exact(input_ids=ids, labels=ids).loss.backward()
        optimizer.step(), optimizer.zero_grad()
    up = exact.model.layers[0].mlp.up_proj.weight  # unit j copies unit j mod ffn (the first half is copied twice)
    assert torch.allclose(up[: study.ffn // 2], up[study.ffn : study.ffn + study.ffn // 2], atol=1e-6)


def test_the_warm_up_after_growth_is_the_candidates_own_and_scratch_keeps_the_studys(tmp_path, monkeypatch):
    from dataclasses import replace
    from types import SimpleNamespace

    jobs = pytest.importorskip("benchmarks.growth_jobs")
    seen = {}

    def fake_select(models, train, lag_steps, args, **kwargs):
        (key,) = models
        seen[key] = args.get_warmup_steps(lag_steps)
        return SimpleNamespace(losses={key: {"0": 5.0}}, train_curves={key: [5.0]})

    monkeypatch.setattr(jobs, "select_growth", fake_select)
    monkeypatch.setattr(jobs, "load_data", lambda work: (None, None))
    monkeypatch.setattr(jobs, "train_flops_per_token", lambda model: 1.0)
    study = Study(steps=1600, warmup_after_growth=20)
    model = SimpleNamespace(num_parameters=lambda: 1, config=SimpleNamespace(num_hidden_layers=12))
    monkeypatch.setattr(jobs, "BUILDERS", {"copy_all": lambda study, bases, seed: model})
    monkeypatch.setattr(jobs.LlamaForCausalLM, "from_pretrained", lambda folder: None)
    monkeypatch.setattr(jobs, "fresh_model", lambda study, layers, seed: model)
    jobs.run_candidate(study, Job("candidate", "copy_all", 0), tmp_path)
    jobs.run_scratch_long(study, Job("scratch_long", "2531", 0), tmp_path)
    assert seen == {Job("candidate", "copy_all", 0).key: 20, Job("scratch_long", "2531", 0).key: 127}  # 5% of 2531
    jobs.run_candidate(replace(study, warmup_after_growth=None), Job("candidate", "copy_all", 1), tmp_path)
    assert seen[Job("candidate", "copy_all", 1).key] == 80  # without it: the study's 5% of 1,600


def test_the_learning_rate_check_pairs_each_side_at_its_own_best_rate(tmp_path, monkeypatch):
    check = pytest.importorskip("benchmarks.growth_lr_check")

    def run(lr: float, scratch: float, grown_curve: dict[int, float]) -> dict:
        grown = {"final_heldout_loss": grown_curve[1600], "per_seed_final": {"0": grown_curve[1600]}}
        grown |= {"mean_curve": {str(k): v for k, v in grown_curve.items()}, "steps_with_base_ratio": 0.7}
        return {
            "study": {"lr": lr}, "seeds": [0], "bases": {"a": {"steps": 900}}, "scratch_steps": 2500,
            "scratch_final_heldout_loss": scratch, "scratch_per_seed_final": {"0": scratch},
            "per_candidate": {"net2net_width": grown},
        }  # fmt: skip

    files = {
        "r1": run(1e-3, 4.5, {0: 5.0, 800: 4.6, 1600: 4.40}),
        "r2": run(2e-3, 4.4, {0: 4.8, 800: 4.3, 1600: 4.20}),  # the grown model's best rate
        "r4": run(4e-3, 4.35, {0: 4.8, 800: 4.5, 1600: 4.25}),  # scratch's best: at the grid's edge
    }
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    monkeypatch.setattr(check, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr("benchmarks.harness.RESULTS_DIR", tmp_path)
    check.main(["r4", "r1", "r2"])
    result = json.loads((tmp_path / "growth_lr_check.json").read_text())
    tuned = result["tuned"]
    assert (tuned["scratch_lr"], tuned["grown_lr"]) == (4e-3, 2e-3) and tuned["either_best_at_the_grid_edge"]
    assert tuned["grown_steps_after_growth_to_reach"] == 800  # 4.30 at 800 is the first point at or below 4.35
    assert result["steps_to_scratch_final_ratio"] == pytest.approx((900 + 800) / 2500)
    assert [r["lr"] for r in result["per_lr"]] == [1e-3, 2e-3, 4e-3]
    assert not result["targets"]["grown_reaches_scratch_final_in_le_0.5_of_steps"]
