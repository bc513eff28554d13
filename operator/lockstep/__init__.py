"""lockstep: release an application and its PostgreSQL schema change together."""

__version__ = "0.1.0"
GROUP = "lockstep.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
