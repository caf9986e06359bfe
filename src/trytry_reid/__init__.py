"""trytry-reid: person re-identification toolkit (training, verified metrics, figures, export, search).

``trytry_reid.Embedder`` (embed crops from your own code) is imported on first use, so ``import trytry_reid``
stays light (no torch until then).
"""

__version__ = "0.1.0"
__all__ = ["Embedder", "__version__"]


def __getattr__(name: str):
    if name == "Embedder":
        from trytry_reid.serving.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'trytry_reid' has no attribute {name!r}")
