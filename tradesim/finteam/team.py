"""Stage 2: the gate and the head over the experts' features.

The gate reads every expert's (layer-normalised) pooled features. Within each role group it picks
one expert: a straight-through Gumbel-softmax during training (temperature annealed from
`tau_start` to `tau_end`), the argmax at inference. Across roles it weighs the chosen experts with a
softmax. The mixture goes through hidden layers to one linear head per task.

The paper's entropy term is not public in its exact form; here it has two parts with their own
weights: `balance` rewards the entropy of the batch-mean usage (within each role, and of the role
weights), which keeps every expert in use; `sharpness` penalises each sample's own routing entropy,
which keeps routing decisive. Either can be 0.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


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


def build_team(groups: Sequence[Sequence[int]], dim: int, heads: dict[str, int], settings: TeamSettings):
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
            self.tau = settings.tau_start

        def forward(self, features, task: str):
            """features: [batch, experts, dim] for this team's experts (in `self.experts` order)."""
            normed = torch.stack([norm(features[:, i]) for i, norm in enumerate(self.norms)], dim=1)
            logits = self.gate(normed.flatten(1))
            position = {e: i for i, e in enumerate(self.experts)}
            role_weights = torch.softmax(logits[:, len(self.experts) :], dim=-1)
            mixed, within_probs, choices = 0, [], []
            for r, group in enumerate(self.groups):
                columns = [position[e] for e in group]
                within = logits[:, columns]
                probs = torch.softmax(within, dim=-1)
                if self.training:
                    pick = nn.functional.gumbel_softmax(within, tau=self.tau, hard=True)
                else:
                    pick = nn.functional.one_hot(within.argmax(-1), len(group)).to(within.dtype)
                chosen = (pick.unsqueeze(-1) * normed[:, columns]).sum(1)
                mixed = mixed + role_weights[:, r : r + 1] * chosen
                within_probs.append(probs)
                choices.append(pick.argmax(-1))
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


def train_team(groups, data: list[TaskData], labels: dict[str, int], settings: TeamSettings, progress=None):
    """Train on every task in turn (one batch each), keep the state with the best mean validation
    accuracy. Returns (team, record)."""
    import torch

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    dim = data[0].train_x.shape[-1]
    team = build_team(groups, dim, labels, settings)
    optimizer = torch.optim.AdamW(team.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    tensors = [(d.task, torch.as_tensor(np.array(d.train_x)), torch.as_tensor(np.array(d.train_y))) for d in data]
    best, best_score, history = None, -1.0, []
    for step in range(settings.steps):
        team.train()
        team.tau = settings.tau_start * (settings.tau_end / settings.tau_start) ** (step / max(settings.steps - 1, 1))
        task, x, y = tensors[step % len(tensors)]
        batch = torch.as_tensor(rng.integers(0, len(y), settings.batch_size))
        logits, gate = team(x[batch], task)
        loss = torch.nn.functional.cross_entropy(logits, y[batch]) + gate_regulariser(gate, settings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            scores = {d.task: float((predict(team, d.valid_x, d.task)[0].argmax(1) == d.valid_y).mean()) for d in data}
            score = float(np.mean(list(scores.values())))
            history.append({"step": step + 1, "valid_accuracy": {k: round(v, 4) for k, v in scores.items()}})
            if score > best_score:
                best, best_score = copy.deepcopy(team.state_dict()), score
    team.load_state_dict(best)
    team.eval()
    return team, {"settings": asdict(settings), "best_mean_valid_accuracy": round(best_score, 4), "history": history}


def predict(team, features: np.ndarray, task: str, batch_size: int = 1024):
    """(probabilities [n, classes], expert chosen within each role [n, roles], role weights [n, roles])."""
    import torch

    team.eval()
    probs, choices, weights = [], [], []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            logits, gate = team(torch.as_tensor(features[start : start + batch_size]), task)
            probs.append(torch.softmax(logits, -1).numpy())
            choices.append(gate["choices"].numpy())
            weights.append(gate["roles"].numpy())
    if not probs:
        n = len(team.groups)
        return np.zeros((0, 1)), np.zeros((0, n), dtype=int), np.zeros((0, n))
    return np.concatenate(probs), np.concatenate(choices), np.concatenate(weights)
