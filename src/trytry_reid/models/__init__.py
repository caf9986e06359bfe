"""Models: torchvision backbone trunks and the ReID model (pooling, embedding, BNNeck, classifier)."""

from trytry_reid.models.backbones import BACKBONES, build_backbone, load_pretrained
from trytry_reid.models.pooling import POOLINGS, GeM
from trytry_reid.models.reid_model import ReidModel, ReidOutput, build_reid_model

__all__ = ["BACKBONES", "POOLINGS", "GeM", "ReidModel", "ReidOutput", "build_backbone", "build_reid_model",
           "load_pretrained"]
