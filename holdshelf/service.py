"""The hold-shelf workflow: the one place where the domain rules meet storage.

Every operation is one transaction: it happens completely or not at all. Card numbers enter
here and leave as pseudonyms; what comes out (:class:`ShelfEntry`, :class:`PatronView`) carries
no patron data.
"""

from __future__ import annotations

from holdshelf.workflow.ending import Ending
from holdshelf.workflow.lookups import Lookups
from holdshelf.workflow.making_ready import MakingReady
from holdshelf.workflow.patrons import Patrons
from holdshelf.workflow.reconciling import Reconciling
from holdshelf.workflow.retention import Retention
from holdshelf.workflow.views import (  # noqa: F401
    CROWDED_SHARE,
    BatchOutcome,
    BranchUsage,
    DayCounts,
    HoldRequest,
    PatronView,
    PurgeReport,
    Reconciliation,
    SlipState,
    SlipStatus,
)


class HoldService(MakingReady, Reconciling, Ending, Lookups, Patrons, Retention):
    """The whole workflow, one use case per module (holdshelf/workflow/): what the composition
    root builds and the CLI, the web app and the tests call."""
