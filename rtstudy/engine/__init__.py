"""Plan a report as one task graph, execute it on Dask distributed, report progress.

``plan`` (what to build, deduplicated, with what is stored marked done), ``execute``
(the plan on a ``LocalCluster`` or an existing scheduler), ``progress`` (one bar).
"""

from rtstudy.engine.execute import TaskFailed, execute, open_client, submit_plan
from rtstudy.engine.plan import STAGES, Plan, Task, plan_report, plan_transfers

__all__ = ["STAGES", "Plan", "Task", "TaskFailed", "execute", "open_client", "plan_report",
           "plan_transfers", "submit_plan"]
