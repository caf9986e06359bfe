"""Using a trained model: folder extraction, gallery index + search, ONNX export, web page.

``app`` (FastAPI) and the faiss / onnx backends are optional extras and are imported only where used.
"""

from trytry_reid.serving.export import check_onnx, export_onnx
from trytry_reid.serving.folder_images import extract_folder
from trytry_reid.serving.index import GalleryIndex, read_index_info
from trytry_reid.serving.search import BACKENDS, recall_at_k

__all__ = ["BACKENDS", "GalleryIndex", "check_onnx", "export_onnx", "extract_folder", "read_index_info",
           "recall_at_k"]
