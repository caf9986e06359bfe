"""Web page + HTTP API over a gallery index (FastAPI); every asset is served from this package, no CDN.

Routes: ``GET /`` search page; ``GET /eval`` evaluation-run browser; ``POST /api/search`` (multipart: ``image``
file or ``gallery_id``, optional ``k`` and ``threshold``: 'auto' = the model file's calibrated one (read again
when `calibrate` rewrites the file; 409/503 when the file no longer holds the served model), 'none', or a distance)
-> ``{"threshold": {...}, "unknown": bool | null, "results": [{"rank", "id", "path", "name", "distance",
"within", "url"}, ...]}`` nearest first, distance = 1 - cosine similarity, path relative to the indexed
folder, ``within`` = distance <= threshold, ``unknown`` = no result within it (null without a threshold);
``GET /gallery/{id}`` one gallery image by index id; ``GET /api/eval`` rows sorted by AP;
``GET /eval/image/{row}/{col}`` (col 0 = the query, col r = rank r); ``GET /api/health``.

Safe by default: ``serve`` binds 127.0.0.1; uploads are capped at ``max_upload_bytes`` (413) and must decode
as an image (415), decoded reduced and a few at a time so memory stays bounded (``uploads.py``); only files
listed in the index or the evaluation run are ever served, addressed by number, so a request cannot name a
path; evaluation images only from the run's dataset roots (``eval_run.py``); ids are ASCII digits (anything
else is a 404/422); nothing from a request is unpickled.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from trytry_reid.data.images import common_folder
from trytry_reid.errors import UsageError
from trytry_reid.evaluation.operating_point import Threshold, parse_threshold, resolve_threshold
from trytry_reid.serving.answer import search_answer, stale_copy_note
from trytry_reid.serving.embedder import Embedder
from trytry_reid.serving.eval_run import EvalRow, load_eval_run
from trytry_reid.serving.index import GalleryIndex, check_index_model, read_index_info
from trytry_reid.serving.live_calibration import LiveCalibration, ModelFileChanged
from trytry_reid.serving.runtimes import as_inference_model, open_model, recorded_model
from trytry_reid.serving.uploads import MAX_IMAGE_PIXELS, UploadGate, decode_upload  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024
_FORM_OVERHEAD = 64 * 1024             # multipart boundaries and small fields on top of the file


ASCII_INT = re.compile(r"[0-9]{1,18}")    # what ids and k may look like: no sign, space, '_', '²' or 5000 digits


def parse_int(raw: str) -> int | None:
    """``raw`` as a non-negative integer when it is 1-18 ASCII digits, else None (int() would accept more)."""
    return int(raw) if ASCII_INT.fullmatch(raw) else None


def parse_k(raw: str | None, default: int, limit: int) -> int:
    """The ``k`` form field: an integer in [1, limit]; 422 with a message otherwise."""
    if raw is None or raw == "":
        return default
    k = parse_int(raw)
    if k is None or not 1 <= k <= limit:
        raise HTTPException(422, f"k must be an integer in [1, {limit}], got {raw[:40]!r}")
    return k


def parse_id(raw: str, size: int, what: str) -> int:
    """A numeric id in [0, size) taken from the URL; 404 naming the valid range otherwise."""
    number = parse_int(raw)
    if number is None or number >= size:
        raise HTTPException(404, f"no {what} {raw[:40]!r}: ids are integers 0..{size - 1}")
    return number


def _file_or_404(path: Path) -> FileResponse:
    if not path.is_file():
        raise HTTPException(404, f"image file '{path.name}' is missing on disk")
    return FileResponse(path)


def _checked_file_or_404(path: Path) -> FileResponse:
    """An evaluation-run image: its path was resolved and checked at load; it must still resolve to itself
    (a folder on the way swapped for a symlink since then is refused)."""
    if path.resolve() != path:
        raise HTTPException(404, f"image file '{path.name}' now resolves outside the checked path; not served")
    return _file_or_404(path)


def paths_for_clients(paths: list[str]) -> list[str]:
    """Gallery paths as responses show them: relative to the indexed folder (the folder holding them all), so
    no absolute server path leaves the server; just the file names when there is no such folder."""
    try:
        folder = common_folder(paths)
    except ValueError:      # no paths, or absolute and relative ones mixed
        return [Path(p).name for p in paths]
    return [Path(os.path.relpath(p, folder)).as_posix() for p in paths]


def parse_threshold_field(raw: str | None, calibration_of: Callable[[], dict | None]) -> Threshold:
    """The ``threshold`` form field ('auto' when absent); 422 with the reason otherwise. The operating point
    (``calibration_of()``) is read only when the answer uses it: not for 'none' (ranking only)."""
    try:
        spec = parse_threshold(raw or "auto")
        return resolve_threshold(spec, None if spec == "none" else calibration_of())
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


class SearchService:
    """Embeds a query image with the model and ranks the index's gallery against a threshold."""

    def __init__(self, index: GalleryIndex, loaded_model, max_concurrent: int = 2) -> None:
        model = as_inference_model(loaded_model)
        self.index = index
        self.embedder = Embedder.from_model(model)
        self.operating_point = LiveCalibration(model)  # calibrate may rewrite the file while serving
        self.fit = (2 * model.contract.width, 2 * model.contract.height)   # uploads are decoded to about this
        self.gate = UploadGate(max_concurrent)
        self.shown_paths = paths_for_clients(index.paths)

    @property
    def calibration(self) -> dict | None:
        """The model file's current operating point (live_calibration.py); raises ModelFileChanged."""
        return self.operating_point.current()

    def embed_upload(self, upload: UploadFile, max_bytes: int) -> np.ndarray:
        """Read, decode (reduced, see uploads.py) and embed an upload; a few at a time (``self.gate``)."""
        with self.gate.slot():
            return self.embed(decode_upload(upload.file.read(max_bytes + 1), max_bytes, self.fit))

    def embed(self, image: Image.Image) -> np.ndarray:
        return self.embedder.embed(image)

    def answer(self, query: np.ndarray, k: int, threshold: Threshold) -> dict:
        """``search_answer`` with paths shown relative to the indexed folder and each image's URL."""
        answer = search_answer(self.index, query, k, threshold)
        for item in answer["results"]:
            item.update(path=self.shown_paths[item["id"]], url=f"/gallery/{item['id']}")
        return answer


def eval_payload(rows: list[EvalRow], descending: bool) -> list[dict]:
    """Rows for the page, sorted by AP (ties by file order); image URLs point at /eval/image."""
    order = sorted(range(len(rows)), key=lambda r: (-rows[r].ap if descending else rows[r].ap, r))
    return [{"row": r, "query_name": rows[r].query_path.name, "query_pid": rows[r].query_pid,
             "query_url": f"/eval/image/{r}/0", "ap": rows[r].ap, "ap_source": rows[r].ap_source,
             "items": [{"rank": c, "name": p.name, "distance": d, "match": m, "url": f"/eval/image/{r}/{c}"}
                       for c, (p, d, m) in enumerate(zip(rows[r].gallery_paths, rows[r].distances,
                                                         rows[r].matches), start=1)]}
            for r in order]


def _add_upload_cap(app: FastAPI, max_upload_bytes: int) -> None:
    """Reject a declared-too-large request before its body is read."""

    @app.middleware("http")
    async def cap_request_size(request: Request, call_next):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes + _FORM_OVERHEAD:
            return JSONResponse({"detail": f"upload is larger than the {max_upload_bytes} byte limit"},
                                status_code=413)
        return await call_next(request)


def _add_search_routes(app: FastAPI, service: SearchService, max_upload_bytes: int, max_k: int) -> None:
    @app.post("/api/search")
    def api_search(image: UploadFile | None = None, gallery_id: str | None = Form(None),
                   k: str | None = Form(None), threshold: str | None = Form(None)) -> dict:
        top_k = parse_k(k, 10, max_k)
        decision = parse_threshold_field(threshold, lambda: service.calibration)
        if image is not None:
            query = service.embed_upload(image, max_upload_bytes)
        elif gallery_id is not None:
            query = service.index.features[parse_id(gallery_id, len(service.index), "gallery id")][None]
        else:
            raise HTTPException(422, "send a query as the multipart file field 'image' (or 'gallery_id')")
        return service.answer(query, top_k, decision)

    @app.get("/gallery/{item_id}")
    def gallery_image(item_id: str) -> FileResponse:
        return _file_or_404(Path(service.index.paths[parse_id(item_id, len(service.index), "gallery id")]))


def _add_eval_routes(app: FastAPI, rows: list[EvalRow] | None) -> None:
    def require_rows() -> list[EvalRow]:
        if rows is None:
            raise HTTPException(404, "no evaluation run loaded: start the server with an eval_run file")
        return rows

    @app.get("/api/eval")
    def api_eval(order: str = "ascending") -> list[dict]:
        if order not in ("ascending", "descending"):
            raise HTTPException(422, f"order must be 'ascending' or 'descending', got {order!r}")
        return eval_payload(require_rows(), descending=order == "descending")

    @app.get("/eval/image/{row}/{col}")
    def eval_image(row: str, col: str) -> FileResponse:
        chosen = require_rows()[parse_id(row, len(require_rows()), "evaluation row")]
        column = parse_id(col, len(chosen.gallery_paths) + 1, "column")
        return _checked_file_or_404(chosen.query_path if column == 0 else chosen.gallery_paths[column - 1])


def create_app(index_dir: str | Path, loaded_model, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               eval_run: Path | None = None, max_k: int = 100, max_concurrent_uploads: int = 2) -> FastAPI:
    """The app over the index saved in ``index_dir``, embedding queries with ``loaded_model``
    (a ``trytry_reid.serving.inference.LoadedModel``, or any engine's ``runtimes.InferenceModel``);
    ``eval_run`` is a ranking JSON (see ``eval_run.py``); at most ``max_concurrent_uploads`` uploads are
    decoded and embedded at once (see ``uploads.py``)."""
    index = GalleryIndex.load(index_dir)
    if len(index) == 0:
        raise UsageError(f"index '{index_dir}' is empty; build it from a folder of images first")
    rows = load_eval_run(eval_run) if eval_run is not None else None
    app = FastAPI(title="trytry-reid search", docs_url=None, redoc_url=None, openapi_url=None)
    _add_upload_cap(app, max_upload_bytes)

    @app.exception_handler(ModelFileChanged)
    async def model_file_changed(request: Request, error: ModelFileChanged) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    service = SearchService(index, loaded_model, max_concurrent_uploads)
    _add_search_routes(app, service, max_upload_bytes, max_k)
    _add_eval_routes(app, rows)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC_DIR / "index.html").read_text()

    @app.get("/eval", response_class=HTMLResponse)
    def eval_page() -> str:
        return (STATIC_DIR / "eval.html").read_text()

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "gallery_size": len(index), "dim": index.dim, "backend": index.backend_name,
                "eval_rows": None if rows is None else len(rows), "max_k": max_k,
                "max_upload_bytes": max_upload_bytes,
                "threshold": resolve_threshold("auto", service.calibration).to_json()}

    return app


def serve(index_dir: str | Path, checkpoint: str | Path | None = None, host: str = "127.0.0.1",
          port: int = 8000, *, eval_run: Path | None = None, device: str = "cpu", engine: str = "torch") -> None:
    """Run the app with uvicorn. ``checkpoint`` is the model file for ``engine`` (a name in
    ``runtimes.ENGINES``: a checkpoint for torch, an exported file for onnx / openvino); by default the model
    recorded in the index's ``info``, with its engine."""
    import uvicorn

    if checkpoint is None and engine != "torch":
        raise UsageError(f"--engine {engine} needs --model: the file `trytry-reid export --format {engine}` wrote")
    if checkpoint is None:
        recorded = recorded_model(read_index_info(index_dir))
        if recorded is None:
            raise UsageError(f"index '{index_dir}' records no checkpoint; pass one explicitly")
        engine, checkpoint = recorded
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: the page is reachable from other machines", host)
    model = open_model(engine, checkpoint, device=device)
    index = GalleryIndex.load(index_dir)
    check_index_model(index, index_dir, checkpoint, model)
    note = stale_copy_note(index, model, checkpoint)
    if note is not None:
        log.warning(note)
    app = create_app(index_dir, model, eval_run=eval_run)
    uvicorn.run(app, host=host, port=port, log_level="info")
