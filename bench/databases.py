"""The Redis database each system uses on the Redis server a benchmark run shares between them."""

TASKTIDE_DB = 0
CELERY_DB = 1
