"""GraphModule -> GraphModule rewrites. Each pass is a plain function with a docstring saying
what it preserves; passes never reach into a policy."""
from .prune_channels import Sizes, prune_channels

__all__ = ["prune_channels", "Sizes"]
