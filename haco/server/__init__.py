"""The aiohttp application every replica serves: REST API, worker websocket, dashboard."""
