"""The API's routers, one per area; ``serving.app`` includes them with the key policy of ``serving.dependencies``.

    search.py     POST /api/search, /api/search/image, /api/search/look (shop the look), /api/tag; GET /api/facets
    scenes.py     POST /api/scenes/search, /api/scenes/search/image (the scene photos that hold a product), GET its photo
    products.py   GET/PUT/DELETE /api/products/{id} (ids may contain "/"), its photos, "more like this"
    ingest.py     POST /api/ingest, GET /api/jobs/{id}
    review.py     the match-review page (/review/) and its API (/review/api/...)
    embeddings.py POST /v1/embeddings, GET /v1/models: the OpenAI embeddings API (texts, and photos as data URLs)
"""
