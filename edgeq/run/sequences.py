"""A stateful model run as an app runs it: the samples in order as sequences, each step's outputs
fed back as the next step's inputs (--feedback OUT=IN, parsed by edgeq.scoring.roles.parse_feedback),
for validate and for convert's budget."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeq.core.errors import UsageError


def feedback_pairs(outputs: list[str], inputs: list[str], feedback: dict[str, str]) -> list[tuple[int, int]]:
    """(output position, input position) for each OUT=IN by the models' keys; a key the model
    does not have is one UsageError line naming the keys it has."""
    bad = [f"{o}={i}" for o, i in feedback.items() if o not in outputs or i not in inputs]
    if bad:
        raise UsageError(f"--feedback {bad[0]}: the model's outputs are {', '.join(outputs)} and its inputs {', '.join(inputs)}")
    return [(outputs.index(o), inputs.index(i)) for o, i in feedback.items()]


def fed_back(
    run: Callable[[list[np.ndarray]], list[np.ndarray]],
    samples: list[list[np.ndarray]],
    pairs: list[tuple[int, int]],
    starts: set[int],
) -> list[list[np.ndarray]]:
    """Each sample's outputs, the samples run in order as sequences (a new one at each of `starts`):
    at every step but a sequence's first, output m is fed back as input k for each (m, k) in
    `pairs`, as an app runs a stateful model in a loop."""
    outputs: list[list[np.ndarray]] = []
    for n, sample in enumerate(samples):
        feeds = list(sample)
        if n > 0 and n not in starts:
            for m, k in pairs:
                feeds[k] = outputs[-1][m].reshape(sample[k].shape)
        outputs.append(run(feeds))
    return outputs
