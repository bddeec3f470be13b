import plyra_trace


def test_agent_and_tool_spans(exporter):
    @plyra_trace.tool(name="web-search")
    def web_search(query: str) -> list:
        return [{"title": "Result 1"}]

    @plyra_trace.agent(name="researcher")
    def research(query: str) -> dict:
        return {"docs": web_search(query)}

    with plyra_trace.session("s-1"):
        research("ev companies")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["web-search"].parent.span_id == spans["researcher"].context.span_id
    assert spans["researcher"].attributes["plyra.span.kind"] == "AGENT"
    assert spans["web-search"].attributes["session.id"] == "s-1"


def test_export_to_real_receiver(receiver):
    handle = plyra_trace.init("recv", endpoint=receiver.url)

    @plyra_trace.agent
    def planner(goal: str) -> str:
        return "plan"

    planner("x")
    assert handle.force_flush(5)
    spans = receiver.wait_for(lambda s: any(x.name == "planner" for x in s))
    assert spans[0].attributes["agent.name"] == "planner"
    assert spans[0].service == "recv"
    handle.shutdown()
