"""``make demo``: a real search on the bundled synthetic benchmark, end to end.

Runs ``python -m tune_m3.search --space demo`` (Optuna TPE + ASHA, 8 trials, a confirm stage, a small SYNTHETIC
MOSEI-shaped dataset built on first use), which prints the best configuration, where MLflow has
the runs and the command that opens the UI; then writes the demo's report (tables and plots,
``python -m analysis.report --experiment demo``) and logs it to the search's parent run.
"""

from __future__ import annotations

import sys

from tune_m3.search import main as search_main


def main(argv: list[str] | None = None) -> int:
    print(
        "tune_m3 demo: Optuna + ASHA search of M3's p_mask, pi_text and lr on SYNTHETIC data\n",
        flush=True,
    )
    rc = search_main(["--space", "demo", *(argv if argv is not None else sys.argv[1:])])
    if rc != 0:
        return rc
    from analysis.report import main as report_main

    print("\nwriting the demo's report", flush=True)
    return report_main(["--experiment", "demo", "--search", "latest"])


if __name__ == "__main__":
    sys.exit(main())
