"""Sending a delivery: an email over SMTP, or a signed JSON POST to a webhook (Slack or Teams shaped)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from .models import Channel, Delivery, Notification, Webhook, WebhookFormat

UNSUBSCRIBE_SALT = "steward.notifications.unsubscribe"
ALL = "*"


class DeliveryFailed(Exception):
    """The receiver did not take the message (it is retried with backoff)."""


def absolute(path: str) -> str:
    return settings.STEWARD_BASE_URL.rstrip("/") + path if path.startswith("/") else path


def unsubscribe_token(user_id: int, kind: str) -> str:
    """A signed token that turns off email for ``kind`` (or every kind: ``*``) for one person, without signing in."""
    return signing.dumps({"user": user_id, "kind": kind}, salt=UNSUBSCRIBE_SALT)


def read_unsubscribe_token(token: str) -> tuple[int, str]:
    """The person and kind a token names; ``signing.BadSignature`` when it was not made by Steward."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    return int(data["user"]), str(data["kind"])


def unsubscribe_url(user_id: int, kind: str) -> str:
    return absolute(reverse("notifications:unsubscribe", args=[unsubscribe_token(user_id, kind)]))


def _title(delivery: Delivery, notifications: list[Notification]) -> str:
    if delivery.is_digest:
        return f"{len(notifications)} notification{'s' if len(notifications) != 1 else ''} from Steward"
    return notifications[0].subject


def send(delivery: Delivery) -> None:
    """Send ``delivery`` once; raises DeliveryFailed when the receiver refuses or cannot be reached."""
    notifications = list(delivery.notifications.order_by("created_at", "pk"))
    if delivery.channel == Channel.EMAIL:
        send_email(delivery, notifications)
    else:
        post_webhook(delivery, notifications)


def send_email(delivery: Delivery, notifications: list[Notification]) -> None:
    kind = notifications[0].kind if not delivery.is_digest else ALL
    unsubscribe = unsubscribe_url(delivery.user_id, kind)
    lines = []
    for notification in notifications:
        lines.append(notification.subject)
        if notification.body:
            lines.append(notification.body)
        if notification.link:
            lines.append(absolute(notification.link))
        lines.append("")
    what = "these emails" if kind == ALL else "emails like this one"
    lines += [
        "--",
        f"Stop {what}: {unsubscribe}",
        f"Choose what Steward sends you: {absolute(reverse('profile'))}#notifications",
    ]
    message = EmailMultiAlternatives(
        subject=f"[Steward] {_title(delivery, notifications)}",
        body="\n".join(lines),
        to=[delivery.user.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Steward-Kind": kind,
        },
    )
    try:
        message.send()
    except OSError as error:  # smtplib's errors are OSErrors, as are refused connections and timeouts
        raise DeliveryFailed(f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: {error}") from error


def payload(webhook: Webhook, delivery: Delivery, notifications: list[Notification]) -> dict:
    """The JSON a webhook gets: Slack's ``text`` (mrkdwn links) or a Teams MessageCard."""
    title = _title(delivery, notifications)
    if webhook.format == WebhookFormat.TEAMS:
        sections = [
            {
                "activityTitle": n.subject,
                "text": n.body,
                **({"potentialAction": _open_action(n.link)} if n.link else {}),
            }
            for n in notifications
        ]
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "title": title,
            "text": "\n\n".join(n.subject for n in notifications),
            "sections": sections,
        }
    lines = [f"*{title}*"] if delivery.is_digest else []
    for n in notifications:
        subject = f"<{absolute(n.link)}|{_slack_escape(n.subject)}>" if n.link else _slack_escape(n.subject)
        lines.append(f"• {subject}" if delivery.is_digest else f"*{subject}*")
        if n.body:
            lines.append(_slack_escape(n.body))
    return {"text": "\n".join(lines)}


def _open_action(link: str) -> list[dict]:
    return [{"@type": "OpenUri", "name": "Open in Steward", "targets": [{"os": "default", "uri": absolute(link)}]}]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answers for itself; a redirect would send the signed body somewhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_webhook(delivery: Delivery, notifications: list[Notification]) -> None:
    webhook = delivery.webhook
    if webhook is None or webhook.removed_at is not None:
        return  # removed since: nothing to send to
    body = json.dumps(payload(webhook, delivery, notifications), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Steward-Notifications/1",
            "X-Steward-Delivery": str(delivery.pk),
            "X-Steward-Kind": ALL if delivery.is_digest else notifications[0].kind,
            "X-Steward-Timestamp": timestamp,
            "X-Steward-Signature": webhook.signature(timestamp, body),
        },
    )
    try:
        with _opener.open(request, timeout=settings.STEWARD_WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryFailed(f"{webhook.url} answered {error.code}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DeliveryFailed(f"{webhook.url}: {getattr(error, 'reason', error)}") from error
    if not 200 <= status < 300:
        raise DeliveryFailed(f"{webhook.url} answered {status}")
