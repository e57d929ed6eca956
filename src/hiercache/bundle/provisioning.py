"""Grafana provisioning files: the stack's data sources and the dashboards folder."""

from __future__ import annotations

from typing import Any

from hiercache.bundle.config import BundleConfig

__all__ = ["dashboard_provider", "datasources"]

Json = dict[str, Any]


def datasources(config: BundleConfig) -> Json:
    """Data source provisioning: the stack's Prometheus (default) and Tempo."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": config.prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": "5s"},
            },
            {
                "name": "Tempo",
                "uid": "tempo",
                "type": "tempo",
                "access": "proxy",
                "url": config.tempo_url,
                "editable": False,
                "jsonData": {"serviceMap": {"datasourceUid": "prometheus"}},
            },
        ],
    }


def dashboard_provider(config: BundleConfig) -> Json:
    """Dashboard provisioning: the JSON files in ``grafana_dashboards_dir``, folder "hiercache"."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "hiercache",
                "folder": "hiercache",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {
                    "path": config.grafana_dashboards_dir,
                    "foldersFromFilesStructure": False,
                },
            }
        ],
    }
