"""`modalens serve`: the search API and web page on an index (the embedded SQLite default, or ``--store milvus:URI``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (
    ID_COL_OPTION,
    IMAGE_COL_OPTION,
    INDEX_OPTION,
    INDEX_MODEL_OPTION,
    PROGRESS_OPTION,
    STORE_OPTION,
    TITLE_COL_OPTION,
    column_names,
    user_errors,
)


@user_errors
def serve(
    catalogue: Optional[str] = typer.Argument(None, help="Catalogue to index first (kagl:test, a .csv/.jsonl, a folder); omit to serve the index as it is."),
    index_dir: Optional[Path] = INDEX_OPTION,
    store: Optional[str] = STORE_OPTION,
    model: Optional[str] = INDEX_MODEL_OPTION,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: list[str] = typer.Option([], "--api-key", help="Key accepted for writes (X-API-Key); also MODALENS_API_KEYS."),
    ingest_root: list[Path] = typer.Option(
        [], "--ingest-root", help="A folder POST /api/ingest may read catalogues and photos from (repeat for more); also MODALENS_INGEST_ROOTS. None: ingest is refused."
    ),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in a browser once serving."),
    onnx: Optional[Path] = typer.Option(
        None, "--onnx", help="An export folder (`modalens export`): answer queries from it without PyTorch; also MODALENS_ONNX_DIR."
    ),
    upload_dir: Optional[Path] = typer.Option(
        None, "--upload-dir", help="Where PUT /api/products keeps uploaded photos (default: INDEX/uploads); with replicas on one "
        "Milvus store, a folder all of them mount at the same path. Also MODALENS_UPLOAD_DIR.",
    ),
    id_col: Optional[str] = ID_COL_OPTION,
    image_col: Optional[str] = IMAGE_COL_OPTION,
    title_col: Optional[str] = TITLE_COL_OPTION,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Serve search by words and photos, tagging and product management, with a web page at /."""
    import uvicorn

    from ..catalog import read_catalog
    from ..models import load
    from ..search import SearchEngine, default_index_dir, index_model
    from ..serving import ServeSettings, create_app

    check_port_free(host, port)  # before minutes of indexing, and never "serving at ..." then a traceback
    index_dir = index_dir or default_index_dir()
    settings = ServeSettings.from_env(index_dir, model or index_model(index_dir, store), onnx_dir=onnx, store=store, upload_dir=upload_dir)
    handle = load(settings.model, settings.onnx_dir)  # one model for the indexing step and the server
    engine = SearchEngine(index_dir, handle, progress=progress, store=store)
    if catalogue:
        typer.echo(f"indexing {catalogue}: {engine.build(read_catalog(catalogue, columns=column_names(id_col, image_col, title_col)))}")
    where = engine.ensure_index().path  # a wrong --store, a store of another model, no pymilvus: one line now, not at start-up
    engine.close()
    if api_key:
        settings.api_keys = settings.api_keys | frozenset(api_key)
    if ingest_root:
        settings.ingest_roots = (*settings.ingest_roots, *ingest_root)
    url = f"http://{host}:{port}/"
    queries = f"; queries from the ONNX export {settings.onnx_dir}" if settings.onnx_dir else ""
    typer.echo(f"serving {where} at {url} (API docs at {url}docs){queries}")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(2.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(settings, handle), host=host, port=port, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    """A port another process listens on is a one-line error naming it, with the way out."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"cannot listen on {host}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is already in use; try another with --port (e.g. --port {port + 1})") from None
            raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
