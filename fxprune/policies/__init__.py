"""Policies decide what to remove under a budget. One file each, one interface, one registry."""
from . import global_rank, mcq, ppo, random_search, sac, uniform  # noqa: F401 - register the built-in policies
from ..importance import CRITERIA, class_importance, group_importance
from .base import (Policy, PolicyContext, PolicyResult, available_policies, get_policy, make_context,
                   register_policy)

__all__ = ["Policy", "PolicyContext", "PolicyResult", "available_policies", "get_policy", "register_policy",
           "make_context", "CRITERIA", "class_importance", "group_importance"]
