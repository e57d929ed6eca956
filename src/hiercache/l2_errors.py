"""L2 error taxonomy: every failure gets one low-cardinality ``error.type``, and a policy.

========================  ==============================================================
``error.type``            what raised it
========================  ==============================================================
``timeout``               a socket or operation timeout; waiting for a pooled connection
``connection``            refused, reset or closed connections, protocol desync, "max
                          number of clients reached"
``topology``              the primary moved or the cluster is re-sharding: READONLY,
                          MASTERDOWN, CLUSTERDOWN, TRYAGAIN, MOVED/ASK that reached us
                          (outside Cluster mode; in it redis-py follows them), cluster
                          client errors (``RedisClusterException``, which is not a
                          ``RedisError``: slot not covered, no reachable node)
``busy``                  BUSY (a long script or function), LOADING (dataset loading)
``write_refused``         OOM (maxmemory with noeviction), NOREPLICAS, MISCONF (failed
                          persistence): Redis is up but refuses writes
``auth``                  NOAUTH, WRONGPASS, NOPERM, other authentication failures
``wrong_type``            WRONGTYPE: the key holds another data type
``corrupt``               a stored payload that cannot be trusted (``CorruptValueError``)
``incompatible``          a payload from a newer version or an unknown signing key
                          (``IncompatibleValueError``): a clean miss, not corruption
``serialization``         a value that cannot be encoded (``SerializationError``)
``other``                 anything else
========================  ==============================================================

``opens_breaker(kind)``: outage-class failures (timeout, connection) count towards the
circuit breaker. ``needs_rediscovery(kind)``: drop the connections and rediscover the
primary (until that succeeds, treat it as an outage). write_refused opens nothing: L2 is up.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal, get_args

from redis import exceptions as rx

from hiercache.errors import (
    CorruptValueError,
    IncompatibleValueError,
    SerializationError,
)

ErrorType = Literal[
    "timeout",
    "connection",
    "topology",
    "busy",
    "write_refused",
    "auth",
    "wrong_type",
    "corrupt",
    "incompatible",
    "serialization",
    "other",
]
#: Every value ``error_type`` returns, in a fixed order (metric label values).
ERROR_TYPES: Final[tuple[ErrorType, ...]] = get_args(ErrorType)

#: Redis error codes (the reply's first word) and their type.
_CODES: Final[dict[str, ErrorType]] = {
    "READONLY": "topology",
    "MASTERDOWN": "topology",
    "CLUSTERDOWN": "topology",
    "TRYAGAIN": "topology",
    "MOVED": "topology",
    "ASK": "topology",
    "BUSY": "busy",
    "LOADING": "busy",
    "OOM": "write_refused",
    "NOREPLICAS": "write_refused",
    "MISCONF": "write_refused",
    "NOAUTH": "auth",
    "WRONGPASS": "auth",
    "NOPERM": "auth",
    "WRONGTYPE": "wrong_type",
}
#: Checked in order: subclasses before their bases (BusyLoadingError is a ConnectionError).
_CLASSES: Final[
    tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], ErrorType], ...]
] = (
    (CorruptValueError, "corrupt"),
    (IncompatibleValueError, "incompatible"),
    (SerializationError, "serialization"),
    ((rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError), "auth"),
    (rx.AuthenticationWrongNumberOfArgsError, "auth"),
    (rx.BusyLoadingError, "busy"),
    (rx.OutOfMemoryError, "write_refused"),
    ((rx.ReadOnlyError, rx.ClusterDownError, rx.TryAgainError, rx.AskError), "topology"),
    ((rx.CrossSlotTransactionError, rx.InvalidPipelineStack), "other"),
    ((rx.RedisClusterException, rx.ClusterError), "topology"),
    ((rx.TimeoutError, TimeoutError, asyncio.TimeoutError), "timeout"),
    (rx.MaxConnectionsError, "timeout"),
)
_PIPELINE_MARK: Final = "caused error: "


def _code(exc: BaseException) -> str:
    """The Redis error code of a reply error, also when a pipeline annotated its message."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, str) and status:
        return status
    message = str(exc.args[0]) if exc.args else ""
    mark = message.find(_PIPELINE_MARK)
    if mark >= 0:  # "Command # 1 (GET k) of pipeline caused error: WRONGTYPE ..."
        message = message[mark + len(_PIPELINE_MARK) :].lstrip("('\" ")
    return message.split(" ", 1)[0]


def error_type(exc: BaseException) -> ErrorType:
    """The ``error.type`` of a failed L2 operation (see the module docstring)."""
    for classes, kind in _CLASSES:
        if isinstance(exc, classes):
            return kind
    if isinstance(exc, rx.ConnectionError) and "No connection available" in str(exc):
        return "timeout"  # waited the operation timeout for a pooled connection
    if isinstance(exc, rx.ResponseError):
        return _CODES.get(_code(exc), "other")
    if isinstance(exc, (rx.ConnectionError, rx.InvalidResponse, ConnectionError, OSError)):
        return "connection"
    return "other"


def opens_breaker(kind: str) -> bool:
    """Whether a failure of this type counts towards opening the circuit breaker."""
    return kind in ("timeout", "connection")


def needs_rediscovery(kind: str) -> bool:
    """Whether a failure of this type means the primary moved: reconnect and rediscover."""
    return kind == "topology"
