"""The per-host sequence (host.py) and the fleet around it (fleet.py)."""
