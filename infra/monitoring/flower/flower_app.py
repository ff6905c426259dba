"""The Celery app Flower monitors (``celery --app flower_app flower``).

Flower consumes from the broker, and any consumer of the Redis transport may restore unacked
messages with its own visibility timeout; building the app from the fleet's settings gives
Flower exactly the transport options of the workers.
"""

from __future__ import annotations

from scriptorium.queueing import create_celery
from scriptorium.settings import load_settings

app = create_celery(load_settings(env_file=None), main="scriptorium-flower")
