"""The Celery side of the fleet: preparation, routing, OCR, webhooks and the sweeper."""
