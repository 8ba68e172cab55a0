"""Entry point of a grading child process (see workers.py): JSON lines in, JSON lines out."""

from __future__ import annotations

import json
import resource
import sys

MEMORY_LIMIT_BYTES = 4 << 30


def main() -> None:
    # A runaway SymPy computation must fail inside the child, not exhaust the machine.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    import sympy  # noqa: F401  (imported before announcing readiness, so timeouts measure work only)

    from deepscaler.reward.grade import grade_in_process

    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            value = grade_in_process(request)
            reply = {"id": request.get("id"), "value": value}
        except MemoryError:
            reply = {"id": request.get("id"), "value": 0.0, "error": "memory"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
