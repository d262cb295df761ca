"""What a search reports at its end: the Pareto set, the winner (``best.*``), the confirmed
ranking and the closing lines. Writes go through the search's MLflow logger (buffered like every
other write); ``stages.py`` calls these from its summary stage.
"""

from __future__ import annotations

import time
from typing import Any

from tune_m3 import names
from tune_m3.names import fmt
from tune_m3.search.paths import SearchPaths
from tune_m3.search.state import Search


def save_table(df, paths: SearchPaths) -> None:
    """``trials.parquet`` and ``summary.csv`` of the search (both stages)."""
    paths.exp_dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(paths.trials_table, index=False)
    df.to_csv(paths.summary_csv, index=False)


def report_pareto(search: Search, df: Any) -> Any:
    """Several objectives: the Pareto set (tagged, printed), its hypervolume on the parent."""
    from tune_m3.names import TAG_PARETO
    from tune_m3.pareto import hypervolume, pareto_rows, reference_point
    from tune_m3.tracking.writes import metric, param

    space, s = search.space, search.session
    objs = [(o.metric, o.mode) for o in space.objectives]
    cols, modes = [m for m, _ in objs], [m for _, m in objs]
    ok = df[(df["stage"] == names.STAGE_SEARCH) & ~df["status"].isin([names.FAILED, names.KILLED])]
    ok = ok.dropna(subset=[c_ for c_ in cols if c_ in ok])
    front = pareto_rows(ok, objs).sort_values(cols[0], ascending=modes[0] == "min")
    df = df.assign(pareto=df["run_id"].isin(front["run_id"]))
    save_table(df, search.paths)
    if front.empty:
        return df
    ref = list(space.reference or reference_point(ok[cols].to_numpy(dtype=float), modes))
    hv = hypervolume(front[cols].to_numpy(dtype=float), ref, modes)
    w = s.logger.writes
    for rid in front["run_id"].dropna():
        w.set_tag(rid, TAG_PARETO, "true")
    w.log_batch(
        s.parent_id,
        metrics=[metric("pareto.hypervolume", hv), metric("pareto.size", len(front))],
        params=[param("pareto.reference", [float(x) for x in ref])],
    )
    print(
        f"\nPareto set ({len(front)} of {len(ok)} trials; objectives "
        + ", ".join(f"{m} ({d})" for m, d in objs)
        + "):"
    )
    keys = space.searched_keys()
    for _, r in front.iterrows():
        shown = ", ".join(f"{k}={fmt(r[f'param_{k}'])}" for k in keys if f"param_{k}" in r)
        values = "  ".join(f"{m}={r[m]:.4g}" for m in cols)
        print(f"  {values}   {shown}")
    print(f"hypervolume {hv:.4g} against the reference point {[round(x, 4) for x in ref]}")
    return df


def log_best(search: Search, best: Any, confirmed: Any = None) -> None:
    """Parent params ``best.*`` (the confirmed winner when there is a confirm stage) + metrics."""
    from tune_m3.search.results import best_metrics, best_params
    from tune_m3.tracking.writes import metric, param

    space, s = search.space, search.session
    params = best_params(best, space)
    if confirmed is not None and len(confirmed):
        top = confirmed.iloc[0]
        keys = [k for k in params if k not in ("trial_id", "run_id")]
        params = {k: top[f"param_{k}"] for k in keys if f"param_{k}" in top}
        params.update(trial_id=top["trial_id"], run_id=top["confirm_of"], confirmed="true")
    s.logger.writes.log_batch(
        s.parent_id,
        metrics=[metric(k, v) for k, v in best_metrics(best).items()],
        params=[param(f"best.{k}", v) for k, v in params.items()],
    )


def log_confirmed(search: Search, df: Any) -> Any:
    """The confirmed ranking: printed, a CSV artifact, ``confirmed.*`` metrics on the parent."""
    import math

    from tune_m3.search import confirm
    from tune_m3.tracking.writes import metric, param

    space, s = search.space, search.session
    rank = confirm.ranking(df, space.metric, space.mode)
    if rank.empty:
        return None
    rank.to_csv(search.paths.confirm_ranking, index=False)
    w = s.logger.writes
    w.log_artifact(s.parent_id, search.paths.confirm_ranking)
    top = rank.iloc[0]
    values = {
        f"confirmed.{col}": float(top[col])
        for col in rank.columns
        if col.endswith(("_mean", "_std")) and not math.isnan(top[col])
    }
    gap = confirm.separation(rank, space.metric)
    if not math.isnan(gap):
        values["confirmed.gap_seed_stds"] = gap
    w.log_batch(s.parent_id, metrics=[metric(k, v) for k, v in values.items()])
    if (
        search.options.confirm_only
    ):  # best.* (the search's pick) is already logged and cannot change
        keys = [k for k in space.searched_keys() if f"param_{k}" in top]
        w.log_batch(
            s.parent_id,
            params=[param(f"confirmed.{k}", top[f"param_{k}"]) for k in keys]
            + [param("confirmed.run_id", top["confirm_of"])],
        )
    print("\n" + confirm.format_ranking(rank, space.metric, space.searched_keys()), flush=True)
    return rank


def print_summary(search: Search, df: Any, best: Any, unlogged: Any, rank: Any = None) -> None:
    """The closing lines: counts, the winner (and the confirmed one), where everything is."""
    from tune_m3.search.results import Counts

    s = search.session
    tag = " [SYNTHETIC data]" if s.synthetic else ""
    print()
    search_df = df[df["stage"] == names.STAGE_SEARCH]
    conf = df[df["stage"] == names.STAGE_CONFIRM]
    extra = f"; {len(conf)} confirm runs ({Counts.of(conf).text()})" if len(conf) else ""
    print(
        f"search '{search.paths.name}' done in {time.time() - s.t0:.0f} s: {len(search_df)} "
        f"trials ({Counts.of(search_df).text()}){extra}{tag}"
    )
    _print_winner(search, best, rank)
    _print_where(search, unlogged, search_df)


def _print_winner(search: Search, best: Any, rank: Any) -> None:
    """The search's best configuration and its metrics; the confirmed winner, if any."""
    from tune_m3.search.results import HEADLINE_KEYS, best_params

    space = search.space
    shown = {k: v for k, v in best_params(best, space).items() if k not in ("trial_id", "run_id")}
    what = "best configuration of the search" if rank is not None else "best configuration"
    print(f"{what}: " + ", ".join(f"{k}={fmt(v)}" for k, v in shown.items()))
    keys = [space.metric, *HEADLINE_KEYS]
    print(
        f"its metrics (best epoch {int(best['best_epoch_metric'])} of {int(best['epochs'])}): "
        + ", ".join(f"{k}={best[k]:.4g}" for k in keys if k in best and best[k] == best[k])
    )
    if rank is not None:
        top = rank.iloc[0]
        conf = {k: top[f"param_{k}"] for k in space.searched_keys() if f"param_{k}" in top}
        print(
            "CONFIRMED winner (best mean over the confirm seeds): "
            + ", ".join(f"{k}={fmt(v)}" for k, v in conf.items())
            + f"; {space.metric} {top[f'{space.metric}_mean']:.4f} ± "
            f"{top[f'{space.metric}_std']:.4f} over {int(top['n'])} seeds"
        )


def _print_links(search: Search, search_df: Any) -> None:
    """The runs page with the search's saved view (its trials by the metric, searched params as
    columns) and the compare page of its completed trials (parallel coordinates)."""
    from tune_m3 import tracking

    s, port = search.session, search.options.ui_port
    view = tracking.view_url(s.uri, s.exp_id, s.parent_id, port)
    print(f"  runs of this search, by {search.space.metric}: {view}")
    done = search_df[search_df["status"].isin([names.COMPLETED, names.EARLY_STOPPED])]
    ids = [r for r in done["run_id"].dropna() if not str(r).startswith(tracking.PENDING)]
    if len(ids) >= 2:
        url = tracking.compare_url(s.uri, s.exp_id, ids, port)
        print(f"  compare its {len(ids)} completed trials (parallel coordinates): {url}")


def _print_where(search: Search, unlogged: Any, search_df: Any) -> None:
    """Where the results are and the commands that open them."""
    from tune_m3 import tracking

    s, paths, port = search.session, search.paths, search.options.ui_port
    print(f"trial results: {paths.trials_table}")
    print(f"Ray results and checkpoints: {paths.ray_path}")
    print(f"MLflow: experiment '{s.experiment}', parent run {s.parent_id} in {s.uri}")
    print(f"open the UI: {tracking.ui_command(s.uri, port)}")
    _print_links(search, search_df)
    if search.space.algorithm.type == "optuna":
        from tune_m3.search import optuna_store

        print(f"Optuna study '{paths.name}' in {search.optuna_url}")
        print(f"  open it: {optuna_store.dashboard_command(search.optuna_url)}")
    failed = search.session.ended and names.FAILED in search.session.ended.values()
    if failed and paths.ray_messages.exists():
        print(f"Ray's own messages about the failed trials: {paths.ray_messages}")
    if unlogged:
        print(
            f"WARNING: {len(unlogged)} MLflow writes failed and are saved in {paths.unlogged}; "
            f"replay them with: python -m tune_m3.tracking resync {paths.unlogged} "
            f"--tracking-uri {s.uri}"
        )
