"""Figures people judge a ReID model by: ranking grids, t-SNE maps and training curves (Agg, no pyplot state)."""

from trytry_reid.visualization.curves import draw_curves
from trytry_reid.visualization.query_choice import QUERY_STRATEGIES, choose_queries
from trytry_reid.visualization.ranking import RankingRow, draw_ranking_grid, ranking_grid_array, ranking_rows
from trytry_reid.visualization.tsne import draw_tsne, sample_identities, tsne_embed

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
