from django.apps import AppConfig


class PortfolioConfig(AppConfig):
    name = "portfolio"

    def ready(self) -> None:
        from compliance.views.cells import CELL_USES
        from registry.evaluation.suites import register_suite_link
        from registry.evaluation.views import SUITE_LIST_PANELS
        from registry.models import register_tier_source
        from registry.signals import evaluation_run_finished

        from .cell_uses import routes_using
        from .charts import task_standings_panel
        from .gates import suspend_cells_on_failed_schedule
        from .tasks_link import TASK_LINK

        evaluation_run_finished.connect(suspend_cells_on_failed_schedule, dispatch_uid="portfolio-failed-schedule")
        register_suite_link(TASK_LINK)
        register_tier_source(self.get_model("CostTier").slugs_by_rank)
        if routes_using not in CELL_USES:
            CELL_USES.append(routes_using)
        if task_standings_panel not in SUITE_LIST_PANELS:
            SUITE_LIST_PANELS.append(task_standings_panel)
