"""Figures people judge a ReID model by: ranking grids, t-SNE maps and training curves (Agg, no pyplot state)."""

from .curves import draw_curves
from .query_choice import QUERY_STRATEGIES, choose_queries
from .ranking import RankingRow, draw_ranking_grid, ranking_grid_array, ranking_rows
from .tsne import draw_tsne, sample_identities, tsne_embed

__all__ = [
    "QUERY_STRATEGIES",
    "RankingRow",
    "choose_queries",
    "draw_curves",
    "draw_ranking_grid",
    "draw_tsne",
    "ranking_grid_array",
    "ranking_rows",
    "sample_identities",
    "tsne_embed",
]
