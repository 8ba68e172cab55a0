"""vllm.platforms.current_platform, as on a GPU machine."""

from types import SimpleNamespace

current_platform = SimpleNamespace(is_cpu=lambda: False)
