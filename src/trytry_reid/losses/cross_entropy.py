"""Identity classification loss: cross-entropy with label smoothing, plus the batch accuracy."""

from __future__ import annotations

from torch import Tensor, nn


class CrossEntropyLoss(nn.Module):
    """``nn.CrossEntropyLoss(label_smoothing=...)`` returning ``(loss, {"accuracy": float})``.

    Accuracy is the fraction of rows whose argmax (first maximum on ties) equals the label.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if logits.dim() != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(
                f"CrossEntropyLoss expects logits [B, C] and labels [B], got {tuple(logits.shape)} and "
                f"{tuple(labels.shape)}"
            )
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean().item()
        return self.loss(logits, labels), {"accuracy": accuracy}
