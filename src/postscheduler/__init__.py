"""postscheduler: schedule campaign posts from YAML files; publish each exactly once."""

__version__ = "0.1.0"
