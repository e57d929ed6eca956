"""The asyncio front: the one hand-written source of the cache's orchestration.

``_sync/`` is generated from this package by ``scripts/unasync.py``; edit here, then
run ``make unasync``. Each module adds one job to the class chain::

    AsyncLifecycle -> AsyncReadPath -> AsyncWritePath -> AsyncLoader -> AsyncWarmer -> AsyncCache
"""
