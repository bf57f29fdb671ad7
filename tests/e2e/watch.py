"""What every browser test watches for: script errors, CSP violations and failed responses."""

from __future__ import annotations

from playwright.sync_api import Page


def watch(page: Page, errors: list[str]) -> None:
    """Collect script errors, CSP violations and failed responses into ``errors``."""
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
