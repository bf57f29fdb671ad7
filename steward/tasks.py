from celery import shared_task


@shared_task(name="steward.ping")
def ping() -> str:
    """Answered by any live worker; the health page waits for it."""
    return "pong"
