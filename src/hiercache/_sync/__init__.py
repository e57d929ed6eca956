"""The blocking front (``manager.sync``), generated from ``_async/`` by ``scripts/unasync.py``.

Do not edit these modules: edit the async source and run ``make unasync``. The class
chain mirrors the async one::

    SyncLifecycle -> SyncReadPath -> SyncWritePath -> SyncLoader -> SyncWarmer -> SyncCache
"""
