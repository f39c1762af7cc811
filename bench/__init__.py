"""tasktide against Celery 5 on one Redis server: `python -m bench [--quick]` (see bench/README.md)."""
