"""The per-host sequence (host.py, its steps beside it), the host's guardian (guardian/) and the fleet around it (fleet.py)."""
