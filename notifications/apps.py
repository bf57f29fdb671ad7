from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """The floor above audits: it reacts to what the floors below announce and tells people."""

    name = "notifications"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from audits.models import AuditEvent
        from compliance.models import ComplianceAlert
        from portfolio.signals import policy_published
        from steward.views import PROFILE_SECTIONS

        from . import reactions
        from .views import profile_section

        post_save.connect(reactions.on_audit_event, sender=AuditEvent, dispatch_uid="notifications-audit-event")
        post_save.connect(reactions.on_compliance_alert, sender=ComplianceAlert, dispatch_uid="notifications-alert")
        policy_published.connect(reactions.on_policy_published, dispatch_uid="notifications-policy-published")
        if profile_section not in PROFILE_SECTIONS:
            PROFILE_SECTIONS.append(profile_section)
