"""`tradesim finteam build`: role corpora -> stage-1 experts -> held-out loss table -> features ->
stage-2 teams (one per FOMC seed, each also without each role), all under
`$TRADESIM_HOME/models/`. Every part is keyed by the hash of its inputs: a rerun loads.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from strategies.finteam.backbone import Backbone, HiddenSet, base_directory, check_unfreezable, content_hash, texts_hash, top_layers
from strategies.finteam.corpora import ROLES, expert_corpora
from strategies.finteam.pretrain import PretrainSettings, fit_expert, loss_table
from strategies.finteam.team import TaskData, TeamSettings, build_team, predict, train_team
from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.evaluation.tasks import FOMC_SEEDS, LABELS, TASKS, Split, load_splits
from tradesim.llm.hf import _load
from tradesim.llm.weights import weights_digest

BUILD_VERSION = 1
DEFAULT_CUTOFF = "2015-08-01"  # ACL18's train end: before its test period and before the sample's backtests
SENTENCE_LENGTH = 128
MOVEMENT_LENGTH = 160  # ACL18 inputs: the tweets and the latest table rows that fit (left truncation)


@dataclass(frozen=True)
class BuildSettings:
    backbone: str = "minilm"
    cutoff: str = DEFAULT_CUTOFF
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    team: TeamSettings = field(default_factory=TeamSettings)
    tasks: tuple[str, ...] = TASKS
    acl18_train_limit: int = 1200
    ablations: bool = True  # also train each team without each role


def progress_factory(enabled: bool):
    from tqdm.auto import tqdm

    def make(total: int, description: str):
        return tqdm(total=total, desc=description, disable=not enabled, leave=False, dynamic_ncols=True)

    return make


def base_identity(spec: str) -> tuple[str, str]:
    """(what to load, an identity for hashes: the weights' digest for a local directory)."""
    source, local = base_directory(spec)
    return source, (f"dir:{weights_digest(Path(local))}" if local else f"hub:{source}")


def shared_paths(shared: Path) -> dict[str, Path]:
    paths = {
        "corpora": shared / "corpora",
        "sentiment": shared / "sentiment",
        "stocknet": shared / "stocknet" / "price_raw",
        "sp500": shared / "sp500" / "sp500_top100_daily_2012_2021.csv",
    }
    for name, path in paths.items():
        if not path.exists():
            raise TradesimError(f"--shared {shared}: {path} not found (the layout of ../shared/data is expected)")
    return paths


def length_for(task: str) -> int:
    return MOVEMENT_LENGTH if task == "acl18" else SENTENCE_LENGTH


class FeatureStore:
    """Pooled features of a model for a list of texts, kept under $TRADESIM_HOME/features/."""

    def __init__(self, home: Path, device: str, progress: bool):
        self.root = home / "features"
        self.device = device
        self.progress = progress
        self._loaded: dict[str, Backbone] = {}

    def backbone(self, source: str, max_length: int) -> Backbone:
        backbone = self._loaded.get(source) or Backbone(source, device=self.device, max_length=max_length)
        self._loaded = {source: backbone}  # one model in memory at a time
        return backbone

    def get(self, model_key: str, source: str, texts: list[str], max_length: int) -> np.ndarray:
        key = content_hash(model_key, max_length, texts_hash(texts))
        path = self.root / f"{key}.npy"
        if path.is_file():
            return np.load(path)
        bar = progress_factory(self.progress)(len(texts), f"features {model_key[:24]}")
        values = self.backbone(source, max_length).features(texts, max_length=max_length, progress=bar)
        bar.close()
        self._keep(path, lambda staging: np.save(staging, values))
        return values

    def hidden(self, model_key: str, source: str, texts: list[str], max_length: int, below_top: int) -> HiddenSet:
        """Token states entering the top `below_top` layers (for teams that tune those layers)."""
        key = content_hash("hidden-2", model_key, max_length, below_top, texts_hash(texts))  # 2: stores the selection
        path = self.root / f"{key}.npz"
        if path.is_file():
            return HiddenSet.load(path)
        bar = progress_factory(self.progress)(len(texts), f"token states {model_key[:24]}")
        values = self.backbone(source, max_length).hidden(texts, below_top, max_length=max_length, progress=bar)
        bar.close()
        self._keep(path, values.save)
        return values

    def _keep(self, path: Path, write) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.{time.time_ns()}.tmp{path.suffix}")
        write(staging)
        staging.replace(path)


def split_texts(splits: list[Split], parts: tuple[str, ...] = ("train", "valid", "test")) -> dict[int, list[str]]:
    """The distinct texts of these parts of every split, by the feature length their task uses."""
    texts: dict[int, dict[str, None]] = {}
    for split in splits:
        for part in (getattr(split, name) for name in parts):
            texts.setdefault(length_for(split.task), {}).update(dict.fromkeys(part["text"]))
    return {length: list(found) for length, found in texts.items()}


def team_groups(experts: list[str], without: str | None = None) -> list[list[int]]:
    roles = [r for r in ROLES if r != without]
    return [[i for i, key in enumerate(experts) if key.split("/")[0] == role] for role in roles]


class Build:
    """A built team: experts, features, teams. `Build.load(directory)` reads one back."""

    def __init__(self, directory: Path, meta: dict, splits: list[Split] | None = None):
        self.directory = directory
        self.meta = meta
        self.splits = splits
        self._teams: dict[str, tuple] = {}

    @property
    def experts(self) -> list[str]:
        return list(self.meta["experts"])

    def expert_dirs(self) -> list[str]:
        return [self.meta["experts"][k]["path"] for k in self.experts]

    @classmethod
    def load(cls, directory: Path) -> "Build":
        path = directory / "build.json"
        if not path.is_file():
            raise TradesimError(f"{directory}: not a FinTeamExperts build (no build.json); make one with `tradesim finteam build`")
        return cls(directory, json.loads(path.read_text()))

    def team(self, name: str):
        """(the team, its record), loaded once per Build."""
        if name not in self._teams:
            self._teams[name] = self._load_team(name)
        return self._teams[name]

    def _load_team(self, name: str):
        import torch

        record = self.meta["teams"][name]
        settings = TeamSettings(**record["settings"])
        columns = sorted(i for g in record["groups"] for i in g)
        tops, config = expert_tops(self.expert_dirs(), settings.unfreeze_top, columns)
        team = build_team(record["groups"], record["dim"], record["heads"], settings, tops, config)
        team.load_state_dict(torch.load(self.directory / "teams" / f"{name}.pt", weights_only=True))
        team.eval()
        return team, record


def expert_tops(expert_dirs: list[str], count: int, columns: list[int] | None = None):
    """(a copy of the top `count` layers of each expert in `columns`, the backbone config), or
    (None, None) when count is 0."""
    if not count:
        return None, None
    tops, config = [], None
    for i in columns if columns is not None else range(len(expert_dirs)):
        backbone = Backbone(expert_dirs[i])
        tops.append(top_layers(backbone.model, count))
        config = backbone.model.config
    return tops, config


def stacked(store: FeatureStore, models: dict[str, str], length: int, texts: list[str]) -> np.ndarray:
    """[n, experts, dim] features of `texts` for every expert (in the order of `models`)."""
    return np.stack([store.get(key, source, texts, length) for key, source in models.items()], axis=1)


def task_features(store, models, splits: list[Split], parts: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, dict[str, np.ndarray]]:
    """[n, experts, dim] features of each split's parts (each distinct text embedded once)."""
    all_texts = split_texts(splits, parts)
    full = {length: stacked(store, models, length, texts) for length, texts in all_texts.items()}
    index = {length: {t: i for i, t in enumerate(texts)} for length, texts in all_texts.items()}
    result = {}
    for split in splits:
        length = length_for(split.task)
        result[split.variant] = {name: full[length][[index[length][t] for t in getattr(split, name)["text"]]] for name in parts}
    return result


def task_hidden(store, models, splits: list[Split], below_top: int, parts: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, dict[str, list[HiddenSet]]]:
    """Like `task_features`, the token states entering the top `below_top` layers: for each split's
    part, one HiddenSet per expert (in the order of `models`)."""
    all_texts = split_texts(splits, parts)
    full = {length: [store.hidden(key, source, texts, length, below_top) for key, source in models.items()] for length, texts in all_texts.items()}
    index = {length: {t: i for i, t in enumerate(texts)} for length, texts in all_texts.items()}
    result = {}
    for split in splits:
        length = length_for(split.task)
        result[split.variant] = {name: [h.take([index[length][t] for t in getattr(split, name)["text"]]) for h in full[length]] for name in parts}
    return result


def team_plan(splits: list[Split]) -> dict[str, list[Split]]:
    """Which splits each team trains on: one team per FOMC seed (FOMC's seeds are different random
    splits of the same sentences), each with every other task; fpb-flare is a test set only."""
    by_variant = {s.variant: s for s in splits}
    others = [s for s in splits if s.task != "fomc" and s.variant != "fpb-flare"]
    seeds = [seed for seed in FOMC_SEEDS if f"fomc-{seed}" in by_variant] or [None]
    return {f"seed-{seed}" if seed else "main": others + ([by_variant[f"fomc-{seed}"]] if seed else []) for seed in seeds}


def newest_build(home: Path) -> Path | None:
    """The most recently completed build under `home` (a build is complete once its build.json is
    in place: staging folders never count), or None."""
    done = [path.parent for path in (home / "models").glob("finteam-*/build.json") if path.is_file()]
    return max(done, key=lambda directory: ((directory / "build.json").stat().st_mtime, directory.name), default=None)


def build(settings: BuildSettings, shared: Path, device: str = "cpu", progress: bool = True, echo=print) -> Build:
    home = tradesim_home()
    paths = shared_paths(shared)
    cutoff = pd.Timestamp(settings.cutoff)
    started = time.perf_counter()
    source, identity = base_identity(settings.backbone)
    if settings.team.unfreeze_top:
        from transformers import AutoConfig

        check_unfreezable(_load(source, AutoConfig.from_pretrained), settings.team.unfreeze_top)
    echo(f"corpora: cut-off {cutoff.date()}, decontaminating against FPB, FiQA-SA and FOMC ...")
    corpora = expert_corpora(paths["corpora"], paths["sentiment"], {"stocknet": paths["stocknet"], "sp500": paths["sp500"]}, cutoff)
    for corpus in corpora:
        removed = ", ".join(f"{k} {v}" for k, v in corpus.record["removed_sentences"].items()) or "none"
        echo(f"  {corpus.spec.key}: {corpus.record['documents']} documents, {corpus.record['characters'] / 1e6:.2f} M characters, removed sentences: {removed}")
    make_bar = progress_factory(progress)
    experts: dict[str, str] = {}
    for corpus in corpora:
        directory = fit_expert(source, identity, corpus.spec.key, corpus.train, settings.pretrain, device, home, corpus.record, make_bar)
        experts[corpus.spec.key] = str(directory)
    splits = [s for task in settings.tasks for s in load_splits(task, shared, settings.acl18_train_limit)]
    key = content_hash(
        {"version": BUILD_VERSION, "settings": asdict(settings), "base": identity},
        {k: Path(v).name for k, v in experts.items()},
        {s.variant: [texts_hash(getattr(s, p)["text"]) for p in ("train", "valid", "test")] for s in splits},
    )
    directory = home / "models" / f"finteam-{key[:24]}"
    if (directory / "build.json").is_file():
        echo(f"build: found {directory}")
        return Build(directory, json.loads((directory / "build.json").read_text()), splits)

    echo("stage 1: held-out loss of the base and of each expert on each corpus ...")
    table = loss_table({"base": source, **experts}, {c.spec.key: c.held_out for c in corpora}, settings.pretrain, device)
    store = FeatureStore(home, device, progress)
    models = {Path(path).name: path for path in experts.values()}
    features = task_features(store, models, splits, ("train", "valid"))  # test features: `tradesim evaluate`
    below = settings.team.unfreeze_top
    hidden = task_hidden(store, models, splits, below, ("train", "valid")) if below else None
    templates, config = expert_tops(list(experts.values()), below)
    staging = Path(tempfile.mkdtemp(dir=home / "models", prefix=f".finteam-{key[:12]}-"))
    (staging / "teams").mkdir()
    expert_keys = list(experts)
    heads = {task: len(LABELS[task]) for task in settings.tasks}
    teams = {}
    for plan_name, plan in team_plan(splits).items():
        for without in (None, *ROLES) if settings.ablations else (None,):
            groups = team_groups(expert_keys, without)
            columns = sorted(i for g in groups for i in g)
            data = [
                TaskData(
                    s.task, features[s.variant]["train"][:, columns], s.train["label"].to_numpy(), features[s.variant]["valid"][:, columns], s.valid["label"].to_numpy(),
                    [hidden[s.variant]["train"][c] for c in columns] if hidden else None,
                    [hidden[s.variant]["valid"][c] for c in columns] if hidden else None,
                )
                for s in plan
            ]
            name = plan_name if without is None else f"{plan_name}-without-{without}"
            bar = make_bar(settings.team.steps, f"stage 2 {name}")
            tops = [copy.deepcopy(templates[c]) for c in columns] if templates else None
            team, record = train_team(groups, data, heads, settings.team, bar, tops, config)
            bar.close()
            import torch

            torch.save(team.state_dict(), staging / "teams" / f"{name}.pt")
            teams[name] = {**record, "groups": groups, "dim": int(data[0].train_x.shape[-1]), "heads": heads, "without": without, "trained_on": [s.variant for s in plan]}
            echo(f"stage 2 {name}: best mean validation accuracy {record['best_mean_valid_accuracy']:.3f}")
    meta = {
        "version": BUILD_VERSION,
        "content_hash": key,
        "settings": asdict(settings),
        "backbone": {"spec": settings.backbone, "source": source, "identity": identity},
        "cutoff": str(cutoff.date()),
        "experts": {k: {"path": v, **json.loads((Path(v) / "expert.json").read_text())} for k, v in experts.items()},
        "held_out_loss": table,
        "splits": {s.variant: {"train": len(s.train), "valid": len(s.valid), "test": len(s.test), **s.record} for s in splits},
        "teams": teams,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (staging / "build.json").write_text(json.dumps(meta, indent=2, default=str))
    try:
        staging.rename(directory)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return Build(directory, meta, splits)


def loss_table_text(meta: dict) -> str:
    """The stage-1 table: rows are models, columns the experts' held-out corpora; * marks the best
    expert on each corpus (the paper's claim: each expert is best on its own role)."""
    table = meta["held_out_loss"]
    corpora = list(next(iter(table.values())))
    width = max(len(c) for c in corpora) + 1
    lines = ["held-out " + ("masked-LM loss" if meta["experts"][corpora[0]]["kind"] == "encoder" else "loss (perplexity = exp)") + " by corpus:"]
    lines.append(f"{'model':<22}" + "".join(f"{c:>{width}}" for c in corpora))
    best = {c: min((m for m in table if m != "base"), key=lambda m: table[m][c]) for c in corpora}
    for model, row in table.items():
        cells = "".join(f"{row[c]:>{width - 1}.3f}{'*' if best[c] == model else ' '}" for c in corpora)
        name = model if model == "base" else next((k for k, v in meta["experts"].items() if Path(v["path"]).name == model or k == model), model)
        lines.append(f"{name:<22}{cells}")
    own_role = sum(best[c].split("/")[0] == c.split("/")[0] for c in corpora)
    lines.append(f"the best expert on a corpus is of that corpus's role for {own_role} of {len(corpora)} corpora")
    return "\n".join(lines)


def with_overrides(settings: BuildSettings, **values) -> BuildSettings:
    pretrain = {k: v for k, v in values.items() if k in PretrainSettings.__dataclass_fields__ and v is not None}
    team = {k[5:]: v for k, v in values.items() if k.startswith("team_") and v is not None}
    top = {k: v for k, v in values.items() if k in BuildSettings.__dataclass_fields__ and v is not None}
    return replace(settings, pretrain=replace(settings.pretrain, **pretrain), team=replace(settings.team, **team), **top)


def team_predictions(build_: Build, team_name: str, split: Split, features: np.ndarray, hidden: list[HiddenSet] | None = None) -> pd.DataFrame:
    """Test predictions of one team with the gate's choices and weights (one row per example).
    `hidden`: every expert's token states of the test texts, for a team that tunes top layers."""
    team, record = build_.team(team_name)
    columns = sorted(i for g in record["groups"] for i in g)
    probs, choices, weights = predict(team, features[:, columns], split.task, [hidden[c] for c in columns] if team.tops is not None else None)
    experts = build_.experts
    roles = [experts[g[0]].split("/")[0] for g in record["groups"]]
    frame = pd.DataFrame({"variant": split.variant, "label": split.test["label"].to_numpy(), "predicted": probs.argmax(1)})
    for c, name in enumerate(split.labels):
        frame[f"p_{name}"] = probs[:, c]
    for r, role in enumerate(roles):
        frame[f"{role}_expert"] = [experts[record["groups"][r][i]] for i in choices[:, r]]
        frame[f"{role}_weight"] = weights[:, r]
    return frame
