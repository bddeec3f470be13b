"""A single agent with a tool, traced to the console (no collector needed).

Run: python examples/basic_agent.py
"""

import plyra_trace

pt = plyra_trace.init(project="my-agent")


@plyra_trace.agent(name="researcher")
def research_agent(query: str) -> dict:
    docs = web_search(query)
    return {"docs": docs}


@plyra_trace.tool(name="web-search")
def web_search(query: str) -> list:
    return [{"title": "Result 1", "snippet": "..."}]


if __name__ == "__main__":
    with plyra_trace.session("session-abc"), plyra_trace.user("user-123"):
        result = research_agent("What are the top EV companies?")
    print(result)
    pt.shutdown()
