"""Inputs a user can get wrong, one table, each run through the real command line.

Every row runs one CLI (``python -m tune_m3.search | tune_m3.data | tune_m3.train |
tune_m3.tracking | analysis.report``) as a subprocess and checks the contract of
``tune_m3/errors.py``: exit code 2, stderr starting with ``error: `` and naming the input at
fault, no traceback, and nothing half-written: the dataset store is exactly as before (no new
dataset, no temp dir) and the results directory holds no MLflow store, run or Ray directory.

Rows marked ``argparse`` are refused by argparse itself (a flag's type): exit code 2 and its
standard ``usage: ...`` + ``PROG: error: ...`` lines, which name the flag.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_feature_obj, write_pickle
from mlflowserver import closed_port
from searchutil import TINY_FIXED, make_search_env


@dataclass
class Case:
    id: str
    argv: list[str]  # module, then arguments; "{name}" is filled from the world's paths
    expect: list[str]  # substrings of stderr that name the offending input (formatted too)
    store: str = "store"  # which store the command sees ("store" or a broken copy)
    argparse: bool = False
    marks: list = field(default_factory=list)
    env: dict = field(default_factory=dict)  # extra environment variables
    absent: list = field(default_factory=list)  # paths that must not come into existence


class Evil:
    """Unpickling this runs ``touch <marker>``, with plain pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _space(path: Path, **spec) -> str:
    base = {
        "dataset": {"name": "tiny"},
        "fixed": dict(TINY_FIXED),
        "search": {"p_mask": {"uniform": [0.0, 0.3]}},
        "algorithm": {"type": "optuna", "seed": 0},
        "scheduler": {"type": "fifo"},
        "num_samples": 2,
    }
    base.update(spec)
    path.write_text(yaml.safe_dump(base))
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Paths every case may name: a store with 'tiny', broken stores, files, spaces."""
    root = tmp_path_factory.mktemp("bad_input")
    env = make_search_env(root)
    store = Path(env["TUNE_M3_DATA_DIR"])
    w: dict = {"root": root, "env": env, "store": str(store), "port": str(closed_port())}
    files = root / "files"
    files.mkdir()

    # broken stores: a split file cut in half; a meta.json that is not JSON
    for name, breaker in (
        ("cut_split", lambda d: _truncate(d / "train.parquet")),
        ("bad_meta", lambda d: (d / "meta.json").write_text("{not json")),
    ):
        shutil.copytree(store, root / name)
        breaker(root / name / "tiny")
        w[name] = str(root / name)

    # spaces
    w["space_ok"] = _space(files / "ok.yaml")
    w["space_typo"] = _space(files / "typo.yaml", serach={})
    w["space_param"] = _space(files / "param.yaml", fixed={**TINY_FIXED, "p_mask_rate": 0.1})
    w["space_prob"] = _space(files / "prob.yaml", search={"p_mask": {"uniform": [0.0, 1.5]}})
    w["space_grid_asha"] = _space(
        files / "grid_asha.yaml",
        search={"p_mask": {"grid": [0.1]}},
        algorithm={"type": "grid"},
        scheduler={"type": "asha"},
    )
    w["space_metric"] = _space(files / "metric.yaml", metric="test_mae")
    w["space_derived"] = _space(files / "derived.yaml", search={"pi_audio": {"uniform": [0, 1]}})
    w["space_seeds"] = _space(files / "seeds.yaml", seeds=[0, 1])
    w["space_int_uniform"] = _space(files / "int.yaml", search={"hidden": {"uniform": [8, 64]}})
    w["space_int_q"] = _space(files / "intq.yaml", search={"hidden": {"quniform": [8, 64, 0.5]}})
    w["space_enum_range"] = _space(files / "enum.yaml", search={"scheme": {"uniform": [0, 1]}})
    w["space_metric_typo"] = _space(files / "metric_typo.yaml", metric="val_maee")
    obj = [{"metric": "val_mae"}, {"metric": "diag_val_text_missing_30_mae_drop"}]
    w["space_obj_typo"] = _space(
        files / "obj_typo.yaml", objectives=[{"metric": "val_mea"}, obj[1]], metric="val_mea"
    )
    w["space_obj_mode"] = _space(
        files / "obj_mode.yaml", objectives=[obj[0], {**obj[1], "mode": "minimise"}]
    )
    w["space_obj_asha"] = _space(
        files / "obj_asha.yaml", objectives=obj, metric="val_corr", scheduler={"type": "asha"}
    )
    w["space_confirm_k0"] = _space(files / "k0.yaml", confirm={"top_k": 0, "seeds": [1]})
    w["space_confirm_noseeds"] = _space(files / "noseeds.yaml", confirm={"top_k": 2, "seeds": []})
    w["space_confirm_twice"] = _space(
        files / "twice.yaml", confirm={"top_k": 2, "seeds": [1, 2, 1]}
    )
    (files / "a_file").write_text("not a folder\n")
    w["a_file"] = str(files / "a_file")
    w["space_synth"] = _space(  # a synthetic dataset built on first use: never by a failing run
        files / "synth.yaml",
        dataset={"name": "synth_never", "synthetic": {"like": "mosi", "scale": 0.01}},
    )
    (files / "bad_yaml.yaml").write_text("search: {p_mask: [0.1,\n")
    (files / "list.yaml").write_text("- p_mask\n- lr\n")
    (files / "empty.yaml").write_text("")
    for k in ("bad_yaml", "list", "empty"):
        w[f"space_{k}"] = str(files / f"{k}.yaml")
    # hostile space files (safe_yaml.py): an alias bomb under description, 50 MB, not UTF-8
    (files / "bomb.yaml").write_text(
        f"description: {alias_bomb()}\n" + (files / "ok.yaml").read_text()
    )
    with open(files / "big.yaml", "w") as fh:
        fh.write("description: |\n" + ("  " + "x" * 78 + "\n") * (50 * 2**20 // 81))
    (files / "latin1.yaml").write_bytes("description: caf\xe9\n".encode("latin-1"))
    for k in ("bomb", "big", "latin1"):
        w[f"space_{k}"] = str(files / f"{k}.yaml")
    w["bomb"] = alias_bomb()

    # feature files (MulT layout unless said otherwise)
    def feat(name: str, change=None, fmt: str = "mult", **kw) -> None:
        obj = make_feature_obj(fmt, **kw)
        if change:
            obj = change(obj) or obj
        w[f"pkl_{name}"] = str(write_pickle(obj, files / f"{name}.pkl"))

    feat("ok")
    feat("rank", lambda o: o["train"].__setitem__("text", o["train"]["text"][:, :, 0]))
    feat("n_mismatch", lambda o: o["valid"].__setitem__("audio", o["valid"]["audio"][:-1]))
    feat("l_mismatch", lambda o: o["test"].__setitem__("vision", o["test"]["vision"][:, :-2]))
    feat("dims", lambda o: o["valid"].__setitem__("vision", o["valid"]["vision"][:, :, :-1]))
    feat("nan_label", lambda o: o["test"]["labels"].__setitem__((2, 0, 0), np.nan))
    feat("big_label", lambda o: o["train"]["labels"].__setitem__((1, 0, 0), 7.0))
    feat("no_test", lambda o: o.pop("test") and None)
    feat("empty_split", n=(9, 4, 0))
    feat("mmsa", fmt="mmsa")

    def unaligned(o: dict) -> None:  # MMSA unaligned: audio with 10 steps, text 7; bad length
        for sp in o.values():
            for m in ("text", "audio", "vision"):  # MMSA pads at the end: valid steps first
                x, lens = sp[m], sp["audio_lengths"]
                sp[m] = np.stack([np.roll(x[b], lens[b], axis=0) for b in range(len(x))])
            sp["audio"] = np.concatenate([sp["audio"], np.zeros_like(sp["audio"][:, :3])], 1)
        o["valid"]["audio_lengths"] = [11, *o["valid"]["audio_lengths"][1:]]

    feat("unaligned_len", unaligned, fmt="mmsa")
    feat("zero_steps", lambda o: o["train"].__setitem__("text", o["train"]["text"][:, :0]))
    feat("str_labels", lambda o: o["valid"].__setitem__("labels", np.full((4, 1, 1), "pos")))
    w["pkl_list"] = str(write_pickle([1, 2, 3], files / "list.pkl"))
    data = Path(w["pkl_ok"]).read_bytes()
    (files / "truncated.pkl").write_bytes(data[: len(data) // 2])
    w["pkl_truncated"] = str(files / "truncated.pkl")
    (files / "text.pkl").write_text("this is not a pickle\n")
    w["pkl_text"] = str(files / "text.pkl")
    w["marker"] = str(files / "EVIL_RAN")
    w["pkl_evil"] = str(write_pickle({"train": Evil(w["marker"])}, files / "evil.pkl"))
    (files / "garbage.pt").write_bytes(b"\x80\x04garbage")
    w["ckpt_garbage"] = str(files / "garbage.pt")
    import torch

    torch.save({"model": Evil(w["marker"])}, files / "evil.pt")
    w["ckpt_evil"] = str(files / "evil.pt")
    (files / "unlogged.json").write_text("{not json")
    w["unlogged_bad"] = str(files / "unlogged.json")
    w["missing"] = str(files / "does_not_exist")

    # user models, importable by the commands through PYTHONPATH
    (files / "bad_models.py").write_text(BAD_MODELS)
    shutil.copy(Path(__file__).resolve().parent / "failing_models.py", files)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(files), env.get("PYTHONPATH")]))
    no_kw = {k: v for k, v in TINY_FIXED.items() if k not in ("hidden", "proj")}
    w["space_model_out"] = _space(
        files / "model_out.yaml", model={"class": "bad_models:Wide"}, fixed=no_kw
    )
    w["space_model_kw"] = _space(
        files / "model_kw.yaml", model={"class": "m3_baseline", "kwargs": {"hiden": 8}}
    )
    w["space_model_key"] = _space(files / "model_key.yaml", model={"klass": "mult"})
    w.update(_model_spaces(files, no_kw))
    return w


def _model_spaces(files: Path, fixed: dict) -> dict[str, str]:
    """Spaces with a wrong per-modality hook, output_key or model (issue 20), by world key."""
    w: dict[str, str] = {}
    hooks = {"text": "text_subnet", "audio": "audio_subnet", "vision": "video_subnet"}
    for key, cls, at, extra in (
        ("hook_typo", "Subnets", {**hooks, "audio": "audio_subnt"}, {}),
        ("hook_missing", "Subnets", {"text": "text_subnet", "audio": "audio_subnet"}, {}),
        ("hook_no_tensor", "GRUText", hooks, {}),
        ("hook_twice", "SubnetsTwice", hooks, {}),
        ("output_key", "Subnets", hooks, {"output_key": "pred"}),
        ("init_keyerror", "KeyInit", None, {}),
        ("data_steps", "Kernel20", None, {}),
    ):
        model = {"class": f"bad_models:{cls}", **({"augment_at": at} if at else {})}
        w[f"space_{key}"] = _space(files / f"{key}.yaml", model=model, fixed={**fixed, **extra})
    return w


BAD_MODELS = """
import torch
from torch import nn


class NotModule:
    def __init__(self, input_dims):
        pass


class Plain(nn.Module):
    augment_at = "mix"

    def __init__(self, input_dims):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(d, 4) for m, d in input_dims.items()})
        self.mix = nn.Identity()

    def forward(self, mods, lengths):
        pooled = [self.proj[m](x.mean(1)) for m, x in mods.items()]
        return self.mix(pooled)[0].sum(-1)


class TensorHook(Plain):
    def forward(self, mods, lengths):
        pooled = [self.proj[m](x.mean(1)) for m, x in mods.items()]
        return self.mix(torch.cat(pooled, -1)).sum(-1)


class Wide(Plain):
    def forward(self, mods, lengths):
        return torch.stack([super().forward(mods, lengths)] * 2, -1)


class Subnets(nn.Module):
    def __init__(self, input_dims):
        super().__init__()
        self.text_subnet = nn.LSTM(input_dims["text"], 4, batch_first=True)
        self.audio_subnet = nn.Linear(input_dims["audio"], 4)
        self.video_subnet = nn.Linear(input_dims["vision"], 4)

    def forward(self, mods, lengths):
        t, _ = self.text_subnet(mods["text"])
        a, v = self.audio_subnet(mods["audio"]), self.video_subnet(mods["vision"])
        return (t.mean(1) + a.mean(1) + v.mean(1)).sum(-1)


class SubnetsTwice(Subnets):
    def forward(self, mods, lengths):
        self.audio_subnet(mods["audio"])
        return super().forward(mods, lengths)


class GRUText(Subnets):
    def __init__(self, input_dims):
        super().__init__(input_dims)
        self.text_subnet = nn.GRU(input_dims["text"], 4, batch_first=True)


class Kernel20(nn.Module):
    def __init__(self, input_dims):
        super().__init__()
        self.conv = nn.ModuleDict({m: nn.Conv1d(d, 4, 20) for m, d in input_dims.items()})

    def forward(self, mods, lengths):
        return sum(self.conv[m](x.transpose(1, 2)).mean((1, 2)) for m, x in mods.items())


class KeyInit(Plain):
    def __init__(self, input_dims):
        super().__init__({"text": input_dims["txt"]})
"""


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" pattern in YAML flow style: 9**levels strings from ~40 * levels chars."""
    items = ['&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


S, D, T = "tune_m3.search", "tune_m3.data", "tune_m3.train"
slow = pytest.mark.slow  # trains an epoch (seconds)
TINY_TRAIN = ["--dataset", "tiny", "--set", "hidden=8", "--set", "proj=8", "--epochs", "1"]
TRAIN_MODEL = [T, "--dataset", "tiny", "--epochs", "1", "--set"]

CASES = [
    # ---------------------------------------------------------------- search: flags
    Case("space-unknown-name", [S, "--space", "m3_moseii"], ["'m3_moseii'", "m3_mosei"]),
    Case("num-samples-0", [S, "--space", "{space_ok}", "--num-samples", "0"], ["--num-samples"]),
    Case(
        "max-concurrent-0",
        [S, "--space", "{space_ok}", "--max-concurrent", "0"],
        ["--max-concurrent"],
    ),
    Case("cpus-0", [S, "--space", "{space_ok}", "--cpus-per-trial", "0"], ["--cpus-per-trial"]),
    Case("gpus-neg", [S, "--space", "{space_ok}", "--gpus-per-trial", "-1"], ["--gpus-per-trial"]),
    Case(
        "num-samples-not-int",
        [S, "--space", "{space_ok}", "--num-samples", "many"],
        ["--num-samples", "'many'"],
        argparse=True,
    ),
    Case("resume-nothing", [S, "--space", "{space_ok}", "--resume"], ["nothing to resume", "ok"]),
    Case("dataset-missing", [S, "--space", "{space_ok}", "--dataset", "nosuch"], ["'nosuch'"]),
    Case(
        "mlflow-uri-file",
        [S, "--space", "{space_ok}", "--mlflow-uri", "file:///tmp/mlruns"],
        ["tracking URI file:///tmp/mlruns"],
    ),
    Case(
        "mlflow-uri-unreachable",
        [S, "--space", "{space_ok}", "--tracking-uri", "http://127.0.0.1:{port}"],
        ["http://127.0.0.1:{port}", "not reachable"],
    ),
    Case(
        "mlflow-uri-unreachable-synthetic-not-built",
        [S, "--space", "{space_synth}", "--mlflow-uri", "http://127.0.0.1:{port}"],
        ["http://127.0.0.1:{port}"],
    ),
    Case(
        "address-unreachable",
        [S, "--space", "{space_ok}", "--address", "127.0.0.1:{port}"],
        ["--address 127.0.0.1:{port}"],
    ),
    Case(
        "address-unreachable-synthetic-not-built",
        [S, "--space", "{space_synth}", "--address", "127.0.0.1:{port}"],
        ["--address 127.0.0.1:{port}"],
    ),
    Case("address-malformed", [S, "--space", "{space_ok}", "--address", "headnode"], ["headnode"]),
    # ---------------------------------------------------------------- search: space files
    Case("space-file-missing", [S, "--space", "{missing}.yaml"], ["{missing}.yaml"]),
    Case("space-bad-yaml", [S, "--space", "{space_bad_yaml}"], ["{space_bad_yaml}", "YAML"]),
    Case("space-not-mapping", [S, "--space", "{space_list}"], ["{space_list}", "mapping"]),
    Case("space-empty", [S, "--space", "{space_empty}"], ["{space_empty}", "mapping"]),
    Case("space-key-typo", [S, "--space", "{space_typo}"], ["'serach'", "did you mean 'search'"]),
    Case("space-unknown-param", [S, "--space", "{space_param}"], ["fixed.p_mask_rate"]),
    Case("space-probability", [S, "--space", "{space_prob}"], ["search.p_mask", "1.5"]),
    Case("space-grid-asha", [S, "--space", "{space_grid_asha}"], ["scheduler", "fifo"]),
    Case("space-test-metric", [S, "--space", "{space_metric}"], ["metric", "'test_mae'"]),
    Case("space-derived-pi", [S, "--space", "{space_derived}"], ["search.pi_audio"]),
    Case("space-optuna-seeds", [S, "--space", "{space_seeds}"], ["seeds"]),
    Case(
        "space-alias-bomb", [S, "--space", "{space_bomb}", "--dry-run"], ["{space_bomb}", "alias"]
    ),
    Case("space-50mb", [S, "--space", "{space_big}", "--dry-run"], ["{space_big}", "1 MiB"]),
    Case("space-not-utf8", [S, "--space", "{space_latin1}"], ["{space_latin1}", "UTF-8"]),
    Case("set-alias-bomb", [T, *TINY_TRAIN, "--set", "lr={bomb}"], ["--set 'lr=", "alias"]),
    # ---------------------------------------------------------------- names that become paths
    *[
        Case(
            f"name-{cid}{'-dry-run' if dry else ''}",
            [S, "--space", "{space_ok}", "--name", name, *(["--dry-run"] if dry else [])],
            ["--name", repr(name)],
            absent=["{root}/abs_escape"],
        )
        for cid, name in [
            ("dotdot", "../../escape"),
            ("absolute", "{root}/abs_escape"),
            ("slash", "a/b"),
            ("dot", ".."),
            ("hidden", ".hidden"),
            ("blank", "a b"),
            ("too-long", "n" * 201),
        ]
        for dry in (False, True)
    ],
    # ---------------------------------------------------------------- checked before Ray starts
    *[
        Case(f"{cid}{'-dry-run' if dry else ''}", [S, *argv, *(["--dry-run"] if dry else [])], want)
        for cid, argv, want in [
            ("space-int-uniform", ["--space", "{space_int_uniform}"], ["search.hidden", "integer"]),
            ("space-int-q", ["--space", "{space_int_q}"], ["search.hidden", "integer"]),
            ("space-enum-range", ["--space", "{space_enum_range}"], ["search.scheme", "choice"]),
            (
                "space-metric-typo",
                ["--space", "{space_metric_typo}"],
                ["'val_maee'", "did you mean 'val_mae'"],
            ),
            ("storage-is-file", ["--space", "{space_ok}", "--storage", "{a_file}"], ["{a_file}"]),
            (
                "storage-under-file",
                ["--space", "{space_ok}", "--storage", "{a_file}/ray"],
                ["{a_file}/ray", "cannot be created"],
            ),
            ("gpus-absent", ["--space", "{space_ok}", "--gpus-per-trial", "1"], ["0 GPU(s)"]),
            (
                "objective-typo",
                ["--space", "{space_obj_typo}"],
                ["objectives[0].metric", "did you mean 'val_mae'"],
            ),
            ("objective-mode", ["--space", "{space_obj_mode}"], ["objectives.1.mode", "minimise"]),
            ("objective-asha", ["--space", "{space_obj_asha}"], ["'val_corr'", "first objective"]),
            ("confirm-top-k-0", ["--space", "{space_confirm_k0}"], ["confirm.top_k"]),
            ("confirm-no-seeds", ["--space", "{space_confirm_noseeds}"], ["confirm.seeds"]),
            (
                "confirm-seed-twice",
                ["--space", "{space_confirm_twice}"],
                ["confirm.seeds", "[1] appear more than once"],
            ),
            (
                "optuna-storage-unreachable",
                [
                    "--space",
                    "{space_ok}",
                    "--optuna-storage",
                    "postgresql://u:p@127.0.0.1:{port}/optuna",
                ],
                ["--optuna-storage postgresql://", "cannot connect"],
            ),
            (
                "optuna-storage-under-file",
                ["--space", "{space_ok}", "--optuna-storage", "sqlite:///{a_file}/optuna.db"],
                ["--optuna-storage", "cannot create"],
            ),
        ]
        for dry in (False, True)
    ],
    # ---------------------------------------------------------------- --set overrides
    Case("set-probability", [S, "--space", "{space_ok}", "--set", "p_mask=2"], ["p_mask", "2"]),
    Case("set-unknown-key", [S, "--space", "{space_ok}", "--set", "pmask=0.1"], ["pmask"]),
    Case("set-no-equals", [S, "--space", "{space_ok}", "--set", "max_epochs"], ["'max_epochs'"]),
    Case("set-bad-yaml", [T, *TINY_TRAIN, "--set", "lr=[1"], ["lr=[1", "YAML"]),
    Case("set-simplex", [T, *TINY_TRAIN, "--set", "pi_text=0.9"], ["pi_text + pi_audio"]),
    Case("set-bad-choice", [T, *TINY_TRAIN, "--set", "scheme=m4"], ["'scheme'", "'m4'"]),
    Case("epochs-0", [T, *TINY_TRAIN, "--epochs", "0"], ["'max_epochs'"]),
    Case(
        "set-lr-diverges",
        [T, *TINY_TRAIN, "--set", "lr=1e30"],
        ["training diverged", "loss became nan", "lr 1e+30"],
        marks=[pytest.mark.slow],  # trains until the loss is NaN (seconds)
    ),
    # ---------------------------------------------------------------- train: inputs
    Case("train-dataset-missing", [T, "--dataset", "nosuch"], ["'nosuch'"]),
    Case("train-resume-missing", [T, *TINY_TRAIN, "--resume", "{missing}"], ["{missing}"]),
    Case(
        "train-resume-garbage",
        [T, *TINY_TRAIN, "--resume", "{ckpt_garbage}"],
        ["{ckpt_garbage}", "checkpoint"],
    ),
    Case(
        "train-resume-malicious",
        [T, *TINY_TRAIN, "--resume", "{ckpt_evil}"],
        ["{ckpt_evil}", "checkpoint"],
    ),
    # ---------------------------------------------------------------- the store itself
    Case(
        "store-split-truncated",
        [S, "--space", "{space_ok}"],
        ["{cut_split}/tiny/train.parquet"],
        store="cut_split",
    ),
    Case(
        "store-meta-corrupt",
        [S, "--space", "{space_ok}"],
        ["{bad_meta}/tiny/meta.json"],
        store="bad_meta",
    ),
    # ---------------------------------------------------------------- feature files
    Case("import-missing", [D, "import", "{missing}", "--dataset", "x"], ["{missing}"]),
    Case(
        "import-truncated",
        [D, "import", "{pkl_truncated}", "--dataset", "x"],
        ["{pkl_truncated}", "truncated"],
    ),
    Case("import-not-pickle", [D, "import", "{pkl_text}", "--dataset", "x"], ["{pkl_text}"]),
    Case(
        "import-malicious",
        [D, "import", "{pkl_evil}", "--dataset", "x"],
        ["{pkl_evil}", "refused", "system"],
    ),
    Case(
        "import-wrong-rank",
        [D, "import", "{pkl_rank}", "--dataset", "x"],
        ["split 'train', key 'text'", "rank 3"],
    ),
    Case(
        "import-n-mismatch",
        [D, "import", "{pkl_n_mismatch}", "--dataset", "x"],
        ["split 'valid', key 'audio'", "does not match"],
    ),
    Case(
        "import-l-mismatch",
        [D, "import", "{pkl_l_mismatch}", "--dataset", "x"],
        ["split 'test', key 'vision'"],
    ),
    Case(
        "import-dims-differ",
        [D, "import", "{pkl_dims}", "--dataset", "x"],
        ["{pkl_dims}", "feature sizes differ"],
    ),
    Case(
        "import-nan-label",
        [D, "import", "{pkl_nan_label}", "--dataset", "x"],
        ["split 'test', key 'labels'", "non-finite", "index 2"],
    ),
    Case(
        "import-label-range",
        [D, "import", "{pkl_big_label}", "--dataset", "x"],
        ["split 'train', key 'labels'", "[-3, 3]"],
    ),
    Case(
        "import-missing-split",
        [D, "import", "{pkl_no_test}", "--dataset", "x"],
        ["{pkl_no_test}", "['test']"],
    ),
    Case(
        "import-empty-split",
        [D, "import", "{pkl_empty_split}", "--dataset", "x"],
        ["split 'test'", "empty"],
    ),
    Case(
        "import-wrong-layout",
        [D, "import", "{pkl_mmsa}", "--dataset", "x"],
        ["regression_labels", "--format mmsa"],
    ),
    Case("import-not-dict", [D, "import", "{pkl_list}", "--dataset", "x"], ["{pkl_list}", "list"]),
    Case(
        "import-exists", [D, "import", "{pkl_ok}", "--dataset", "tiny"], ["'tiny'", "--overwrite"]
    ),
    Case("import-bad-name", [D, "import", "{pkl_ok}", "--dataset", "../evil"], ["'../evil'"]),
    Case(
        "import-bad-format",
        [D, "import", "{pkl_ok}", "--dataset", "x", "--format", "csv"],
        ["--format", "'csv'"],
        argparse=True,
    ),
    Case("synth-scale-0", [D, "synth", "--scale", "0"], ["scale"]),
    Case("synth-nan-knob", [D, "synth", "--text-strength", "nan"], ["text_strength", "nan"]),
    Case("synth-inf-knob", [D, "synth", "--redundancy", "inf"], ["redundancy", "inf"]),
    Case(
        "import-unaligned-length-too-long",
        [D, "import", "{pkl_unaligned_len}", "--dataset", "x", "--format", "mmsa"],
        ["split 'valid', key 'audio_lengths'", "longer than the 10 steps"],
    ),
    Case(
        "import-zero-steps",
        [D, "import", "{pkl_zero_steps}", "--dataset", "x"],
        ["split 'train', key 'text'", "0 time steps"],
    ),
    Case(
        "import-string-labels",
        [D, "import", "{pkl_str_labels}", "--dataset", "x"],
        ["split 'valid', key 'labels'", "must be numbers", "'pos'"],
    ),
    Case("info-missing", [D, "info", "nosuch"], ["'nosuch'"]),
    # --data-dir after the subcommand is taken (it was refused by argparse), and used
    Case(
        "import-data-dir-after",
        [D, "import", "{missing}", "--dataset", "x", "--data-dir", "{bad_meta}"],
        ["{missing}"],
        store="bad_meta",
    ),
    Case(
        "info-data-dir-after",
        [D, "info", "nosuch", "--data-dir", "{store}"],
        ["'nosuch'", "{store}"],
    ),
    Case(
        "synth-data-dir-after",
        [D, "synth", "--scale", "0", "--data-dir", "{store}"],
        ["scale"],
    ),
    # ---------------------------------------------------------------- model specs (docs/models.md)
    Case("model-unknown", [*TRAIN_MODEL, "model=mul"], ["model 'mul'", "did you mean 'mult'"]),
    Case("model-no-module", [*TRAIN_MODEL, "model=nosuch:X"], ["'nosuch:X'", "PYTHONPATH"]),
    Case("model-no-class", [*TRAIN_MODEL, "model=bad_models:Nope"], ["has no 'Nope'"]),
    Case(
        "model-not-module", [*TRAIN_MODEL, "model=bad_models:NotModule"], ["not a torch.nn.Module"]
    ),
    Case(
        "model-kwarg-refused",
        [*TRAIN_MODEL, "model=bad_models:Plain", "--set", "model.width=3"],
        ["bad_models:Plain", "'width'", "model.kwargs"],
    ),
    Case(
        "model-baseline-kwarg",
        [*TRAIN_MODEL, "model.hiden=3"],
        ["model 'm3_baseline'", "'hiden'"],
    ),
    Case(
        "model-augment-at",
        [*TRAIN_MODEL, "augment_at=fusoin"],
        ["augment_at 'fusoin'", "encoders, fusion"],
    ),
    Case(
        "model-hook-shape",
        [*TRAIN_MODEL, "model=bad_models:TensorHook"],
        ["bad_models:TensorHook", "augment_at 'mix'", "first positional argument"],
    ),
    Case(
        "model-output-shape",
        [*TRAIN_MODEL, "model=bad_models:Wide"],
        ["bad_models:Wide", "returned (4, 2)"],
    ),
    *[  # failures that would repeat (failures.py): one error line, not a traceback
        Case(f"model-{cid}", [*TRAIN_MODEL, f"model=failing_models:{cls}"], want, marks=[slow])
        for cid, cls, want in [
            ("nan-in-eval", "NaNInEval", ["training failed", "32 of 32 values are NaN"]),
            (
                "raises-in-eval",
                "RaisesInEval",
                ["failing_models:RaisesInEval", "ValueError: this model", "failing_models.py:"],
            ),
        ]
    ],
    Case(
        "space-model-output",
        [S, "--space", "{space_model_out}", "--dry-run"],
        ["bad_models:Wide", "returned (4, 2)"],
    ),
    Case("space-model-kwarg", [S, "--space", "{space_model_kw}", "--dry-run"], ["'hiden'"]),
    Case("space-model-key", [S, "--space", "{space_model_key}", "--dry-run"], ["klass"]),
    # per-modality hooks, outputs, constructors (issue 20; docs/models.md)
    Case(
        "space-hook-no-submodule",
        [S, "--space", "{space_hook_typo}", "--dry-run"],
        ["augment_at audio: 'audio_subnt'", "did you mean 'audio_subnet'"],
    ),
    Case(
        "space-hook-modality-missing",
        [S, "--space", "{space_hook_missing}", "--dry-run"],
        ["augment_at", "missing ['vision']"],
    ),
    Case(
        "space-hook-no-tensor",
        [S, "--space", "{space_hook_no_tensor}", "--dry-run"],
        ["bad_models:GRUText", "'text_subnet' output tuple(", "ambiguous", "text_subnet[0]"],
    ),
    Case(
        "space-hook-twice",
        [S, "--space", "{space_hook_twice}", "--dry-run"],
        ["bad_models:SubnetsTwice", "audio: 'audio_subnet' ran 2 times in one forward"],
    ),
    Case(
        "space-output-key",
        [S, "--space", "{space_output_key}", "--dry-run"],
        ["bad_models:Subnets", "output_key 'pred'", "returned a Tensor"],
    ),
    Case(  # passes at 50 steps, not at the dataset's 10: --dry-run says so, not the trials
        "space-model-data-steps",
        [S, "--space", "{space_data_steps}", "--dry-run"],
        ["bad_models:Kernel20", "text (4, 10, 8)", "Kernel size can't be greater"],
    ),
    Case(
        "space-init-keyerror",
        [S, "--space", "{space_init_keyerror}", "--dry-run"],
        ["bad_models:KeyInit", "KeyInit(input_dims=", "raised KeyError: 'txt'"],
    ),
    # ---------------------------------------------------------------- analysis, resync
    Case("report-no-store", ["analysis.report", "--experiment", "e"], ["mlflow.db"]),
    Case(
        "report-unreachable",
        ["analysis.report", "--experiment", "e", "--tracking-uri", "http://127.0.0.1:{port}"],
        ["http://127.0.0.1:{port}"],
    ),
    Case("resync-missing", ["tune_m3.tracking", "resync", "{missing}"], ["{missing}"]),
    # ------------------------------------------------------- environment (CPU kernel switch)
    Case(
        "cpu-linear-typo-search",
        [S, "--space", "{space_ok}"],
        ["$TUNE_M3_CPU_LINEAR='onednnn'", "'blas'"],
        env={"TUNE_M3_CPU_LINEAR": "onednnn"},
    ),
    Case(
        "cpu-linear-typo-search-dry-run",
        [S, "--space", "{space_ok}", "--dry-run"],
        ["$TUNE_M3_CPU_LINEAR='mkl'"],
        env={"TUNE_M3_CPU_LINEAR": "mkl"},
    ),
    Case(
        "cpu-linear-typo-train",
        [T, *TINY_TRAIN],
        ["$TUNE_M3_CPU_LINEAR='fast'"],
        env={"TUNE_M3_CPU_LINEAR": "fast"},
    ),
    Case("resync-not-json", ["tune_m3.tracking", "resync", "{unlogged_bad}"], ["{unlogged_bad}"]),
    # issue 21: a disk without the reserve a search keeps, and typos in the new variables
    Case(
        "disk-without-reserve",
        [S, "--space", "{space_ok}"],
        ["not enough disk space", "MB free", "$TUNE_M3_MIN_FREE_MB"],
        env={"TUNE_M3_MIN_FREE_MB": "1e12"},
    ),
    Case(
        "min-free-typo",
        [S, "--space", "{space_ok}"],
        ["$TUNE_M3_MIN_FREE_MB='lots'"],
        env={"TUNE_M3_MIN_FREE_MB": "lots"},
    ),
    Case(
        "mlflow-retry-typo",
        [S, "--space", "{space_ok}"],
        ["$TUNE_M3_MLFLOW_RETRY_S='-5'"],
        env={"TUNE_M3_MLFLOW_RETRY_S": "-5"},
    ),
]


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, world: dict, tmp_path: Path) -> None:
    store = Path(world[case.store])
    results = tmp_path / "results"  # must not come into existence, or stay empty
    argv = [a.format(**world) for a in case.argv]
    env = {
        **world["env"],
        "TUNE_M3_DATA_DIR": str(store),
        "TUNE_M3_RESULTS": str(results),
        **case.env,
    }
    before = _tree(store)
    out = subprocess.run(
        [sys.executable, "-m", *argv],
        env=env,
        cwd=tmp_path,  # a default ./tune_m3_results would land here, and be seen
        capture_output=True,
        text=True,
        timeout=180,
    )
    err = out.stderr
    assert out.returncode == 2, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err + out.stdout, err[-3000:]
    if case.argparse:
        last = err.strip().splitlines()[-1]  # after argparse's usage lines
        assert re.match(rf"python -m {argv[0]}( \w+)?: error: ", last), err
    else:
        assert err.startswith("error: "), err
    for want in case.expect:
        assert want.format(**world) in err, f"{want.format(**world)!r} not in:\n{err}"
    # nothing half-written
    assert _tree(store) == before, _tree(store) ^ before
    assert not results.exists() or not any(results.iterdir()), _tree(results)
    assert not (tmp_path / "tune_m3_results").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"results"}  # the results' parent: untouched
    for path in case.absent:
        assert not Path(path.format(**world)).exists(), path.format(**world)
    assert not Path(world["marker"]).exists(), "the malicious pickle ran code"


# ``python -m tune_m3.search ARGS``, writing its peak RSS (VmHWM, kB; reset by exec, unlike
# getrusage's ru_maxrss, which keeps the forking test process's size) to the file argv[1]
PEAK_RSS_MAIN = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    hwm = [s for s in open("/proc/self/status") if s.startswith("VmHWM")][0]
    open(out, "w").write(hwm.split()[1])
atexit.register(peak)
sys.argv[0] = "tune_m3.search"
runpy.run_module("tune_m3.search", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("key", ["space_bomb", "space_big"])
def test_hostile_space_file_is_refused_in_seconds_with_bounded_memory(
    key: str, world: dict, tmp_path: Path
) -> None:
    """An alias bomb under ``description:`` (was: 3.6 GB and no end) and a 50 MB space file:
    ``--dry-run`` refuses each in < 3 s with a peak RSS under 150 MB (a 1 GiB address-space
    limit keeps a regression from taking the machine down; it would fail with MemoryError)."""
    import time

    env = {**world["env"], "TUNE_M3_RESULTS": str(tmp_path / "results")}
    limited = ["sh", "-c", 'ulimit -v 1048576 && exec "$0" "$@"', sys.executable]
    peak = tmp_path / "peak_kb"
    argv = [*limited, "-c", PEAK_RSS_MAIN, str(peak), "--space", world[key], "--dry-run"]
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - t0
    peak_mb = int(peak.read_text()) / 1024
    print(f"\n{key}: exit {out.returncode} in {seconds:.2f} s, peak RSS {peak_mb:.0f} MB")
    assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert ("1 MiB" if key == "space_big" else "alias bomb") in out.stderr, out.stderr
    assert seconds < 3, seconds
    assert peak_mb < 150, peak_mb


def test_a_search_folder_linked_outside_the_storage_is_refused(world: dict, tmp_path: Path):
    """``<storage>/NAME`` a symbolic link to a folder elsewhere: ``--resume`` refuses it (exit 2)
    before it locks or writes anything there (``search/paths.py`` ``check_contained``)."""
    results, outside = tmp_path / "results", tmp_path / "outside"
    (results / "ray").mkdir(parents=True)
    outside.mkdir()
    (outside / "tune_m3_search.json").write_text('{"status": "interrupted"}')
    (results / "ray" / "linked").symlink_to(outside)
    env = {**world["env"], "TUNE_M3_RESULTS": str(results)}
    argv = ["--space", world["space_ok"], "--name", "linked", "--resume"]
    out = subprocess.run(
        [sys.executable, "-m", S, *argv], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert f"resolves to {outside}" in out.stderr and "outside" in out.stderr, out.stderr
    assert [p.name for p in outside.iterdir()] == ["tune_m3_search.json"]
    assert (outside / "tune_m3_search.json").read_text() == '{"status": "interrupted"}'
    assert sorted(p.name for p in results.iterdir()) == ["ray"]
