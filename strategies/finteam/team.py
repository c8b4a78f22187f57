"""Stage 2: the gate and the head over the experts' features.

The gate reads every expert's (layer-normalised) pooled features. Within each role group it picks
one expert: a straight-through Gumbel-softmax during training (temperature annealed from
`tau_start` to `tau_end`), the argmax at inference. Across roles it weighs the chosen experts with a
softmax. The mixture goes through hidden layers to one linear head per task.

The paper's entropy term is not public in its exact form; here it has two parts with their own
weights: `balance` rewards the entropy of the batch-mean usage (within each role, and of the role
weights), which keeps every expert in use; `sharpness` penalises each sample's own routing entropy,
which keeps routing decisive. Either can be 0.

With `unfreeze_top` N > 0 the team also holds its own copy of each expert's top N layers and
fine-tunes them (at `tuned_learning_rate`). The gate still reads the frozen experts' features, so
routing is decided before any tuned layer runs; then only the chosen expert of each role runs its
tuned layers, over the token states that enter them (computed once, `Backbone.hidden`), and its
tuned features replace its frozen ones in the mixture. An expert that is not chosen keeps its frozen
features, which is what the straight-through gradient of the within-role gate sees for it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from strategies.finteam.backbone import top_pooled


@dataclass(frozen=True)
class TeamSettings:
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    tau_start: float = 1.0
    tau_end: float = 0.1
    balance: float = 0.1
    sharpness: float = 0.0
    eval_every: int = 250
    seed: int = 0
    unfreeze_top: int = 0
    tuned_learning_rate: float = 1e-4


def build_team(groups: Sequence[Sequence[int]], dim: int, heads: dict[str, int], settings: TeamSettings, tops=None, config=None):
    """`tops`: with `settings.unfreeze_top`, one ModuleList of top layers per expert of the team
    (in sorted expert order, `top_layers`), and `config` the backbone's config."""
    import torch
    from torch import nn

    class Team(nn.Module):
        def __init__(self):
            super().__init__()
            self.groups = [list(g) for g in groups]
            self.experts = sorted(i for g in self.groups for i in g)
            self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in self.experts)
            self.gate = nn.Linear(dim * len(self.experts), len(self.experts) + len(self.groups))
            layers: list[nn.Module] = []
            width = dim
            for _ in range(settings.layers):
                layers += [nn.Linear(width, settings.hidden), nn.GELU(), nn.Dropout(settings.dropout)]
                width = settings.hidden
            self.body = nn.Sequential(*layers)
            self.heads = nn.ModuleDict({name.replace("-", "_"): nn.Linear(width, n) for name, n in heads.items()})
            self.tops = nn.ModuleList(tops) if settings.unfreeze_top else None
            self.config = config
            self.tau = settings.tau_start

        def normed(self, features):
            return torch.stack([norm(features[:, i]) for i, norm in enumerate(self.norms)], dim=1)

        def forward(self, features, task: str, hidden=None):
            """features: [batch, experts, dim] frozen features of this team's experts (in
            `self.experts` order); hidden (with tuned top layers): one function per expert giving
            the padded token states and mask of a batch's rows, `hidden[i](rows)`."""
            logits = self.gate(self.normed(features).flatten(1))
            position = {e: i for i, e in enumerate(self.experts)}
            role_weights = torch.softmax(logits[:, len(self.experts) :], dim=-1)
            picks, within_probs = [], []
            for group in self.groups:
                within = logits[:, [position[e] for e in group]]
                within_probs.append(torch.softmax(within, dim=-1))
                if self.training:
                    picks.append(nn.functional.gumbel_softmax(within, tau=self.tau, hard=True))
                else:
                    picks.append(nn.functional.one_hot(within.argmax(-1), len(group)).to(within.dtype))
            if self.tops is not None:
                if hidden is None:
                    raise ValueError("this team fine-tunes its experts' top layers: give the token states (hidden)")
                features = features.clone()
                for group, pick in zip(self.groups, picks):
                    for j, expert in enumerate(group):
                        rows = (pick.argmax(-1) == j).nonzero().squeeze(1)
                        if len(rows):
                            states, mask = hidden[position[expert]](rows.numpy())
                            tuned = top_pooled(self.tops[position[expert]], self.config, states, mask)
                            features = features.index_put((rows, torch.full_like(rows, position[expert])), tuned)
            normed = self.normed(features)
            mixed = 0
            for r, (group, pick) in enumerate(zip(self.groups, picks)):
                chosen = (pick.unsqueeze(-1) * normed[:, [position[e] for e in group]]).sum(1)
                mixed = mixed + role_weights[:, r : r + 1] * chosen
            choices = [pick.argmax(-1) for pick in picks]
            out = self.heads[task.replace("-", "_")](self.body(mixed))
            return out, {"within": within_probs, "roles": role_weights, "choices": torch.stack(choices, 1)}

    return Team()


def entropy(p, dim=-1):
    return -(p * (p.clamp_min(1e-12)).log()).sum(dim)


def gate_regulariser(gate: dict, settings: TeamSettings):
    """−balance · (entropy of batch-mean usage, normalised) + sharpness · (mean per-sample entropy)."""
    terms = [*gate["within"], gate["roles"]]
    balance = sum(entropy(p.mean(0)) / math.log(p.shape[-1]) for p in terms if p.shape[-1] > 1) / len(terms)
    sharp = sum(entropy(p).mean() / math.log(p.shape[-1]) for p in terms if p.shape[-1] > 1) / len(terms)
    return -settings.balance * balance + settings.sharpness * sharp


@dataclass
class TaskData:
    task: str  # the head
    train_x: np.ndarray  # [n, experts, dim]
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    train_hidden: list | None = None  # with tuned top layers: a HiddenSet per expert of the team
    valid_hidden: list | None = None


def rows_of(hidden, offset):
    """`hidden` (HiddenSets, one per expert) as the functions `Team.forward` calls, for a batch
    whose row i is row offset[i] of the sets."""
    if hidden is None:
        return None
    return [lambda rows, h=h: h.batch(offset[rows]) for h in hidden]


def train_team(groups, data: list[TaskData], labels: dict[str, int], settings: TeamSettings, progress=None, tops=None, config=None):
    """Train on every task in turn (one batch each), keep the state with the best mean validation
    accuracy. Returns (team, record)."""
    import torch

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    dim = data[0].train_x.shape[-1]
    team = build_team(groups, dim, labels, settings, tops, config)
    tuned = list(team.tops.parameters()) if team.tops is not None else []
    rest = [p for p in team.parameters() if id(p) not in {id(q) for q in tuned}]
    parameter_groups = [{"params": rest}] + ([{"params": tuned, "lr": settings.tuned_learning_rate}] if tuned else [])
    optimizer = torch.optim.AdamW(parameter_groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    tensors = [(d.task, torch.as_tensor(np.array(d.train_x)), torch.as_tensor(np.array(d.train_y)), d.train_hidden) for d in data]
    best, best_score, history = None, -1.0, []
    for step in range(settings.steps):
        team.train()
        team.tau = settings.tau_start * (settings.tau_end / settings.tau_start) ** (step / max(settings.steps - 1, 1))
        task, x, y, hidden = tensors[step % len(tensors)]
        batch = torch.as_tensor(rng.integers(0, len(y), settings.batch_size))
        logits, gate = team(x[batch], task, rows_of(hidden, batch.numpy()))
        loss = torch.nn.functional.cross_entropy(logits, y[batch]) + gate_regulariser(gate, settings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            scores = {d.task: float((predict(team, d.valid_x, d.task, d.valid_hidden)[0].argmax(1) == d.valid_y).mean()) for d in data}
            score = float(np.mean(list(scores.values())))
            history.append({"step": step + 1, "valid_accuracy": {k: round(v, 4) for k, v in scores.items()}})
            if score > best_score:
                best, best_score = copy.deepcopy(team.state_dict()), score
    team.load_state_dict(best)
    team.eval()
    return team, {"settings": asdict(settings), "best_mean_valid_accuracy": round(best_score, 4), "history": history}


def predict(team, features: np.ndarray, task: str, hidden=None, batch_size: int = 256):
    """(probabilities [n, classes], expert chosen within each role [n, roles], role weights [n, roles]).
    `hidden`: a HiddenSet per expert, for a team with tuned top layers."""
    import torch

    team.eval()
    probs, choices, weights = [], [], []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            rows = np.arange(start, min(start + batch_size, len(features)))
            logits, gate = team(torch.as_tensor(features[start : start + batch_size]), task, rows_of(hidden, rows))
            probs.append(torch.softmax(logits, -1).numpy())
            choices.append(gate["choices"].numpy())
            weights.append(gate["roles"].numpy())
    if not probs:
        n = len(team.groups)
        return np.zeros((0, 1)), np.zeros((0, n), dtype=int), np.zeros((0, n))
    return np.concatenate(probs), np.concatenate(choices), np.concatenate(weights)
