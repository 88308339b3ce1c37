"""A representative prior of acceptance, and its posterior given what a generation has seen so far.

**Prior.**  Acceptance for planning comes from a recording of the pair over
many prompts of every kind (``multidraft record``; code, chat, summaries and
web text for the bundled pair, shipped with the package): per recorded
position the rank rates of every planned (scheme, k)
(:func:`multidraft.planning.acceptance.rank_rates`) and the *agreement*
a = sum_y min(p(y), q(y)), the single-draft acceptance rate, exact on the
recorded top-N tokens plus the tail, and per confidence threshold tau the
rates a chain stopped on the draft's confidence needs
(:func:`multidraft.planning.acceptance.stop_rates`).  Each recorded prompt j is one
hypothesis about the prompt being generated: "its positions look like
prompt j's".  The prior puts equal weight on every recorded prompt.

**Posterior.**  During a generation the decoder sees p and q at the nodes
its walk visits (the root of every step and the accepted drafts): positions
of text with the target's law, as the recorded positions are.  Their
agreements are the evidence, read on the scale x = log(1 - a + eps),
eps = :data:`SCALE_FLOOR` (:func:`agreement_scale`): it tells 0.98 from
0.999, where a long chain's length is decided, and eps keeps one exact
agreement from dominating.  Under prompt j the observed x_1..x_n are
modelled as independent draws from the kernel density of j's recorded ones,

    f_j(x) = (1 / T_j) sum_t phi((x - x_{j,t}) / h) / h,   h = :data:`BANDWIDTH`,

so the posterior weight of prompt j is

    w_j ∝ exp(tau * sum_i log(f_j(y_i) + eps)),

tempered by tau < 1 because consecutive positions of one text are not
independent.  The planner then uses the recorded positions weighted by
w_j / T_j (:meth:`RankRates.weighted`): a mixture of the recorded prompts
that looks like this one.  With no evidence it is the prior (every
recorded position alike).

**The prompt.**  Before a generation's first token the decoder has seen
only its prompt, and the draft's agreement with the target on the prompt's
own last tokens says which recorded prompts it resembles.  In the bundled
pair's recording (T = 0.6) the mean agreement on the last
:data:`PROMPT_POSITIONS` positions of a prompt is 0.68-0.88 for five of the
six requests for code (0.54 for the sixth), whose answers average 0.85-0.99,
and 0.38-0.64 for every other prompt but one (a chat request for code, 0.82),
whose answers range from 0.58 (encyclopedic text continued) to 0.95.  So the
prompt's mean g is one more observation: recorded prompt j keeps g_j, the
same mean on its own prompt (:func:`mean_agreement`), and the posterior
gains the factor phi((g - g_j) / H), H = :data:`PROMPT_BANDWIDTH`,
untempered since it is a single number.  It tells a request for code from
the rest; it cannot tell a chat answer from a summary, which the answer's
own agreements then do.  A prior without the g_j (an older recording, a
one-prompt pilot) ignores it.

**The local state.**  Within one text, acceptance comes in runs: a chain of
28 drafts pays where the text copies, not where it merely agrees on
average, and a prompt's rates averaged over all its positions cannot see
that.  So every recorded position t also has a *state* s_t, the mean of x
over the :data:`STATE_POSITIONS` agreements just before it in its text, and
the generation has one, s*, the same mean over its last observed
agreements.  The generation's next position is modelled as one of prompt
j's positions, alike a priori, whose state is s* up to the kernel: the
joint posterior of (prompt, position) is

    P(j, t) ∝ w_j (1 / T_j) phi((s_t - s*) / h)

(:meth:`Prior.cell_posterior`), and the planner predicts from the recorded
continuations of the positions it weights.  A plan table keeps one mean per
cell (prompt j, state bin; :data:`STATE_BINS` bins, and one cell more for
the positions that open a text, which have no state), not per position, and
the cell carries the sum of its positions' weights.  With no agreement seen
every position keeps its prompt's weight: the mixture of the prompts'
means.  ``benchmarks/prior_calibration.py`` measures what this and the
scale do to predictions, leaving each recorded prompt out in turn.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from multidraft.planning.acceptance import RankRates, rates_from_recording, stop_rates

#: eps of the scale log(1 - a + eps) on which agreements a are compared.
SCALE_FLOOR = 0.01
#: Kernel bandwidth of the agreement densities and of the local state on that scale (it spans [-4.6, 0]).
BANDWIDTH = 0.5
#: Tempering of the likelihood: consecutive positions of one text are correlated.
TEMPERING = 0.5
#: Density floor: no recorded prompt is ruled out by one surprising position.
FLOOR = 1e-3
#: Last positions of a prompt whose mean agreement the posterior conditions on (module docstring).
PROMPT_POSITIONS = 32
#: Kernel bandwidth of that mean.
PROMPT_BANDWIDTH = 0.1
#: Agreements just before a position that make its local state (module docstring).
STATE_POSITIONS = 4
#: Equal bins of the state between log(eps) and log(1 + eps); one more cell holds the openings of texts.
STATE_BINS = 12
#: Cells per recorded prompt.
STATE_CELLS = STATE_BINS + 1


def agreement_scale(agreement) -> np.ndarray:
    """x = log(1 - a + eps) of agreements a (rounding above 1 read as 1), eps = :data:`SCALE_FLOOR`."""
    return np.log1p(SCALE_FLOOR - np.minimum(np.asarray(agreement, dtype=np.float64), 1.0))


def state_bin(state: np.ndarray) -> np.ndarray:
    """The cell of each state [n] within its prompt: a bin 0..STATE_BINS - 1, or STATE_BINS where NaN."""
    low, high = math.log(SCALE_FLOOR), math.log1p(SCALE_FLOOR)
    scaled = np.nan_to_num((state - low) / (high - low) * STATE_BINS)
    bins = np.clip(scaled.astype(np.int64), 0, STATE_BINS - 1)
    return np.where(np.isnan(state), STATE_BINS, bins)


def mean_agreement(p: torch.Tensor, q: torch.Tensor) -> float:
    """The mean over rows of sum_y min(p, q) for laws ``p``, ``q`` [k, V] (NaN for k = 0: no evidence)."""
    if p.shape[0] == 0:
        return float("nan")
    return float(torch.minimum(p, q).sum(-1).mean())


@dataclass
class Prior:
    """Per-position rank rates of a recorded pair, with each position's agreement and each prompt's kind.

    ``rates.sequence[t]`` is the recorded prompt of position t; ``agreement[t]`` its sum min(p, q);
    ``kinds[j]`` the category of recorded prompt j ("" where unknown); ``prompt_agreement[j]`` the mean
    agreement on the last positions of its prompt (module docstring; empty where not recorded).
    """

    rates: RankRates
    agreement: list[float]  # [P]
    kinds: list[str]  # [prompts]
    source: str = ""  # what it was built from
    pair: dict = field(default_factory=dict)  # which models it describes (:func:`pair_key`)
    stops: dict = field(default_factory=dict)  # per position, the confidence-stop rates (:func:`stop_rates`)
    prompt_agreement: list[float] = field(default_factory=list)  # [prompts] g_j, or empty

    def __post_init__(self):
        if self.rates.sequence is None or len(self.rates.sequence) != len(self.agreement):
            raise ValueError("a prior needs per-position rates with a prompt index per position and one agreement each")
        if self.stops and any(len(row) != len(self.agreement) for row in self.stops["accept"] + self.stops["continue"]):
            raise ValueError("a prior's stop rates need one value per recorded position")
        if self.prompt_agreement and len(self.prompt_agreement) != int(self.prompts.max()) + 1:
            raise ValueError("a prior's prompt agreements need one value per recorded prompt")

    @property
    def prompts(self) -> np.ndarray:
        """[P] the recorded prompt of each position."""
        return np.asarray(self.rates.sequence)

    @functools.cached_property
    def states(self) -> np.ndarray:
        """[P] each position's state: the mean of :func:`agreement_scale` over the up to :data:`STATE_POSITIONS`
        agreements before it in its text (NaN where it opens a text)."""
        prompts, scale = self.prompts, agreement_scale(self.agreement)
        total, count = np.zeros(scale.size), np.zeros(scale.size)
        for back in range(1, STATE_POSITIONS + 1):
            same = np.zeros(scale.size, dtype=bool)
            same[back:] = prompts[back:] == prompts[:-back]
            total[back:] += np.where(same[back:], scale[:-back], 0.0)
            count += same
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    @functools.cached_property
    def cells(self) -> np.ndarray:
        """[P] each position's cell, prompt * :data:`STATE_CELLS` + its state's bin (:func:`state_bin`)."""
        return self.prompts * STATE_CELLS + state_bin(self.states)

    def cell_posterior(self, observed: Sequence[float], prompt: float | None = None) -> np.ndarray:
        """[prompts, STATE_CELLS] the joint posterior of (recorded prompt, its cell) given the observed agreements
        and the prompt's mean agreement, summing to 1 (module docstring: the local state)."""
        log_weight = self._log_posterior(observed, prompt)  # [J]
        count, prompts = log_weight.size, self.prompts
        log_position = log_weight[prompts] - np.log(np.bincount(prompts, minlength=count))[prompts]  # [P]
        if len(observed):
            here = float(agreement_scale(observed[-STATE_POSITIONS:]).mean())
            near = -0.5 * ((self.states - here) / BANDWIDTH) ** 2
            if not np.isnan(near).all():  # else every recorded text is one position long: no state to match
                log_position = np.where(np.isnan(near), -np.inf, log_position + near)
        weight = np.exp(log_position - log_position.max())
        cells = np.bincount(self.cells, weights=weight, minlength=count * STATE_CELLS)
        return (cells / cells.sum()).reshape(count, STATE_CELLS)

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, path: Path) -> Prior:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: dict) -> Prior:
        return cls(
            RankRates(**data["rates"]),
            data["agreement"],
            data["kinds"],
            data.get("source", ""),
            data.get("pair", {}),
            data.get("stops", {}),
            data.get("prompt_agreement", []),
        )

    @classmethod
    def from_recording(cls, recording, source: str = "", draws: int = 32, pair: dict | None = None) -> Prior:
        """The prior of a :class:`multidraft.bench.recording.Recording` (its prompts' kinds from its header)."""
        p = np.concatenate([recording.p, recording.p_tail[:, None]], axis=1)  # [P, N + 1]
        q = np.concatenate([recording.q, recording.q_tail[:, None]], axis=1)
        agreement = np.minimum(p, q).sum(1)  # [P]
        prompts = int(recording.prompt_index.max()) + 1
        kinds = [""] * prompts
        try:
            for j, kind in zip(recording.prompt_index, recording.categories()):
                kinds[int(j)] = str(kind)
        except ValueError:  # a recording that names no categories
            pass
        recorded = recording.prompt_agreement
        return cls(
            rates_from_recording(recording, draws=draws),
            [float(a) for a in agreement],
            kinds,
            source,
            pair or {},
            stop_rates(torch.from_numpy(p), torch.from_numpy(q)),
            [] if recorded is None or np.isnan(recorded).any() else [float(g) for g in recorded],
        )

    def posterior(self, observed: Sequence[float], prompt: float | None = None) -> np.ndarray:
        """Weights [prompts] of the recorded prompts given the observed agreements and the ``prompt``'s mean
        agreement g (None or NaN: not seen; module docstring)."""
        log_weight = self._log_posterior(observed, prompt)
        weight = np.exp(log_weight - log_weight.max())
        return weight / weight.sum()

    def _log_posterior(self, observed: Sequence[float], prompt: float | None) -> np.ndarray:
        """log w_j [prompts] up to a constant (:meth:`posterior`)."""
        prompts, agreement = self.prompts, agreement_scale(self.agreement)
        count = int(prompts.max()) + 1
        log_weight = np.zeros(count)
        if prompt is not None and not math.isnan(prompt) and self.prompt_agreement:
            log_weight -= 0.5 * ((prompt - np.asarray(self.prompt_agreement)) / PROMPT_BANDWIDTH) ** 2
        if len(observed):
            y = agreement_scale(observed)
            kernel = np.exp(-0.5 * ((y[None, :] - agreement[:, None]) / BANDWIDTH) ** 2)  # [P, n]
            kernel /= BANDWIDTH * math.sqrt(2 * math.pi)
            density = np.zeros((count, y.size))
            np.add.at(density, prompts, kernel)
            density /= np.bincount(prompts, minlength=count)[:, None]  # f_j(y_i)
            log_weight += TEMPERING * np.log(density + FLOOR).sum(1)
        return log_weight

    def rates_given(self, observed: Sequence[float]) -> RankRates:
        """The rank rates of the recorded positions weighted by the posterior of their prompts."""
        weight = self.posterior(observed)
        prompts = self.prompts
        per_position = weight[prompts] / np.bincount(prompts, minlength=weight.size)[prompts]
        return self.rates.weighted(per_position)

    def kind_weights(self, observed: Sequence[float]) -> dict[str, float]:
        """The posterior mass of each kind of prompt (for reports)."""
        weight = self.posterior(observed)
        out: dict[str, float] = {}
        for j, kind in enumerate(self.kinds[: weight.size]):
            out[kind] = out.get(kind, 0.0) + float(weight[j])
        return out


def pair_key(description: dict) -> dict:
    """What a prior must match of :func:`multidraft.planning.model_description`: the model files' names and
    how the draft was made cheaper (dtypes and the machine do not change acceptance beyond rounding); for
    another engine than torch, the engine and the model files' names (its rounding and kernels are its own)."""
    if "engine" in description:
        return {
            "engine": description["engine"],
            "target": Path(description["target"]).name,
            "draft": Path(description["draft"]).name,
        }
    return {
        "target": Path(description["target"]).name,
        "draft": Path(description["draft"]).name,
        "draft_quantized": bool(description["draft_quantized_layers"]),
        "draft_vocabulary": description["draft_vocabulary"],
    }
