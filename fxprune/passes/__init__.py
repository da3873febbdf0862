"""GraphModule -> GraphModule rewrites. Each pass is a plain function with a docstring saying
what it preserves; passes never reach into a policy."""
from .prune_channels import Sizes, prune_channels, pruned_model

__all__ = ["prune_channels", "pruned_model", "Sizes"]
