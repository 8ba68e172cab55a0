"""What vLLM's shutdown ends with, and VLLMEngine.close swaps for a harmless call when the state is not its own."""


def cleanup_dist_env_and_memory(shutdown_ray: bool = False) -> None:
    raise AssertionError("the engine let vLLM tear down the launcher's process group")
