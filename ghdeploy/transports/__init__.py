"""How commands reach a host: one interface (base.Remote), several implementations."""
