"""Segment evaluation: a catalog applied to a profile at an instant (pure: no I/O, no clock).

* :mod:`.signals` - the profile projected into one time-sorted series per signal;
* :mod:`.windows` - window maths: counts at an instant, the next instant a count flips;
* :mod:`.conditions` - one evaluator per condition kind (registry ``EVALUATORS``), and what each reads;
* :mod:`.traits` - one function per computed-trait kind (registry ``TRAITS``);
* :mod:`.evaluator` - :class:`CatalogEvaluator`: memberships, traits, ``next_due_at``, explanations.
"""

from .conditions import EVALUATORS, ConditionEvaluator, Context, Read, compile_condition, reads
from .evaluator import MAX_STEPS, SUPPRESSED, CatalogEvaluator, default_evaluator
from .signals import Series, Signals
from .traits import TRAITS

__all__ = [
    "EVALUATORS", "MAX_STEPS", "SUPPRESSED", "TRAITS", "CatalogEvaluator", "ConditionEvaluator", "Context", "Read",
    "Series", "Signals", "compile_condition", "default_evaluator", "reads",
]
