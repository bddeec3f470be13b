"""Guards as first-class GUARD spans: an input-safety policy that blocks dangerous commands.

Run: python examples/with_guard.py
"""

import plyra_trace
from plyra_trace import GuardResult

pt = plyra_trace.init(project="guarded-agent")


@plyra_trace.guard(name="input-safety", policy="content-safety")
def check_input(text: str) -> GuardResult:
    triggered = "dangerous" in text.lower()
    return GuardResult(
        policy="content-safety",
        action="block" if triggered else "allow",
        triggered=triggered,
        confidence=0.95,
        details={"reason": "unsafe keyword detected"} if triggered else {},
    )


@plyra_trace.tool(name="shell")
def execute(command: str) -> str:
    return f"ran: {command}"


@plyra_trace.agent(name="executor")
def executor(command: str) -> str:
    result = check_input(command)
    if result.triggered:
        return f"Blocked: {result.policy}"
    return execute(command)


if __name__ == "__main__":
    print(executor("list the files"))
    print(executor("run something dangerous"))
    pt.shutdown()
