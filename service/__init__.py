"""pprl's service tier: HTTP API, settings, persistence, auth, sealing, the enclave
worker, the audit log, the DPO pages and the `pprl` command line."""

__version__ = "0.1.0"
