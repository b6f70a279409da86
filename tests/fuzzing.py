"""Shared hypothesis settings and JSON strategies for the fuzz suites (``-m fuzz``).

Reproducible by default: every run draws the same examples
(``derandomize=True``: the random seed comes from the test itself), so a
failure in CI is the same failure on a laptop, and a change that makes the
suite red is the change under test, never the luck of the draw. Exploring is
opt-in: ``ARCANA_FUZZ=explore`` draws fresh random examples, ten times as
many, and keeps failing ones in ``.cache/hypothesis`` so the next run replays
them first. Either way a failure prints a ``@reproduce_failure`` blob, and
hypothesis keeps its files under ``.cache/``, never in the repository root.
"""

from __future__ import annotations

import math
import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from conftest import ROOT

HYPOTHESIS_HOME = ROOT / ".cache" / "hypothesis"
EXPLORE = os.environ.get("ARCANA_FUZZ", "") == "explore"
set_hypothesis_home_dir(HYPOTHESIS_HOME)


def fuzz_settings(max_examples: int) -> settings:
    """``max_examples`` derandomized examples, or ten times as many random ones when exploring."""
    return settings(
        max_examples=max_examples * 10 if EXPLORE else max_examples,
        derandomize=not EXPLORE,
        database=DirectoryBasedExampleDatabase(HYPOTHESIS_HOME / "examples") if EXPLORE else None,
        deadline=None,
        print_blob=True,
        # Not the explain phase: it reruns a failing example hundreds of times to say which lines it ran.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        # Inputs are big on purpose, and each example is a real call: neither is a problem here.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# Any Python text: st.text() leaves out lone surrogates, and draws NUL and direction marks seldom.
ODD_CHARACTERS = "\ud800\udfff\x00\x7f\u202e\ufeff\U0010ffff"
ANY_TEXT = st.text(st.one_of(st.characters(), st.sampled_from(ODD_CHARACTERS)), max_size=40)
# JSON scalars, big integers and the float edge cases (-0.0, subnormals, 1.7e308) included.
FINITE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
# ...and what a careless writer sends as JSON: json.dumps writes NaN and Infinity, which are not JSON.
SCALARS = st.one_of(FINITE_SCALARS, st.sampled_from([math.nan, math.inf, -math.inf]))


def json_values(scalars: st.SearchStrategy[Any] = SCALARS, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Nested lists and objects of ``scalars`` (NaN and infinities included: they are not JSON, on purpose)."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
        max_leaves=max_leaves,
    )
