"""trytry-reid: person re-identification toolkit (training, verified metrics, figures, export, search)."""

__version__ = "0.1.0"
