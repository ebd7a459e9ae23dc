"""Planning a run from the folder, the hardware and the time budget (``--time-budget``)."""

from contrastive.planning.folder_stats import FolderStats
from contrastive.planning.planner import Candidate, Decision, Plan, plan_recipe

__all__ = ["Candidate", "Decision", "FolderStats", "Plan", "plan_recipe"]
