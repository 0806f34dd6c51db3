"""Greenhouse data: MQTT ingester, readings, rollups, alerts, dashboards."""
