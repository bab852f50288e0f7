"""Work spread over more than one process or machine: batch embedding on Ray Data into Parquet shards.

:mod:`modalens.distributed.shards` is the shard format (pyarrow only);
:mod:`modalens.distributed.ray_embed` the Ray job (``modalens[ray]``), imported on use.
"""
