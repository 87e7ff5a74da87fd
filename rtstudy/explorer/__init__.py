"""E10 mask anatomy: the interactive mask explorer and the numbers behind it.

A teacher picks a source model (natural, or robust at any stored eps), a pruning scheme, a
sparsity pattern, a sparsity and a layer, and sees the natural and the chosen ticket side by
side, their disagreement, per-layer sparsity and overlap (against two random masks), channel
survival and, where stored, downstream accuracy. Nothing is trained or written: source models
and tickets are read from a ``Store``; OMP and random tickets it lacks are drawn in memory.

Modules, one layer each (all testable without a browser):

``analytics``  mask analytics and the E10 numbers (``anatomy``, ``anatomy_finding``).
``data``       store indexing (``ExplorerData``) and the view (``View``).
``figures``    the plotly figures and how a view updates them.
``widgets``    the ipywidgets controller ``MaskExplorer`` and its FigureWidget class.
``server``     the explorer as a standalone Voilà page (``python -m rtstudy.explorer.server``).
``tickets``    any stored ticket of any track (text, image prior, ...) layer by layer:
               ``stored_tickets``, ``ticket_view``, its figures and ``TicketBrowser``.
"""

from rtstudy.explorer.analytics import (
    anatomy,
    anatomy_finding,
    expected_random_iou,
    filter_iou,
    random_iou,
    short_name,
    summary_table,
)
from rtstudy.explorer.data import (
    BOTH_KEPT,
    BOTH_PRUNED,
    MAX_CELLS,
    NATURAL_ONLY,
    PATTERNS,
    ROBUST_ONLY,
    SCHEMES,
    STORED_ONLY_SCHEMES,
    ExplorerData,
    ExplorerState,
    Side,
    SourceEntry,
    TicketMask,
    View,
    draw_in_memory,
)
from rtstudy.explorer.figures import (
    CODE_NAMES,
    FIGURES,
    ExplorerFigures,
    default_view_figures,
)
from rtstudy.explorer.widgets import (
    PLOTLY_WIDGET_URL_ENV,
    MaskExplorer,
    describe_environment,
    figure_widgets_available,
    plotly_widget_bundle,
    plotly_widget_key,
)

__all__ = [
    "BOTH_KEPT", "BOTH_PRUNED", "CODE_NAMES", "FIGURES", "MAX_CELLS", "NATURAL_ONLY", "PATTERNS",
    "PLOTLY_WIDGET_URL_ENV", "ROBUST_ONLY", "SCHEMES", "STORED_ONLY_SCHEMES", "ExplorerData",
    "ExplorerFigures", "ExplorerState", "MaskExplorer", "Side", "SourceEntry", "TicketMask", "View",
    "anatomy", "anatomy_finding", "default_view_figures", "describe_environment", "draw_in_memory",
    "expected_random_iou", "figure_widgets_available", "filter_iou", "plotly_widget_bundle",
    "plotly_widget_key", "random_iou", "short_name", "summary_table",
]
