"""gRPC interceptors over a real server on 127.0.0.1: one trace, one span per side, the handoff."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import grpc.aio
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import plyra_trace
from plyra_trace.integrations.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    instrument_channel,
    server_interceptor,
)

SERVICE = "agents.Researcher"


def _search(query: str) -> str:
    @plyra_trace.tool(name="search")
    def search(q: str) -> str:
        return f"sources for {q}"

    return search(query)


def ask(request: bytes, context: grpc.ServicerContext) -> bytes:
    return _search(request.decode()).encode()


def stream(request: bytes, context: grpc.ServicerContext):
    for word in request.decode().split():
        yield _search(word).encode()


def slow(request: bytes, context: grpc.ServicerContext):
    for index in range(50):
        yield str(index).encode()
        time.sleep(0.05)


def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("index unavailable")


def missing(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such topic")
    return b""


def _handlers(aio: bool) -> grpc.GenericRpcHandler:
    def unary(fn):
        if not aio:
            return grpc.unary_unary_rpc_method_handler(fn)

        async def call(request, context):
            if fn is missing:
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such topic")
            return fn(request, context)

        return grpc.unary_unary_rpc_method_handler(call)

    if aio:

        async def streaming(request, context):
            for item in stream(request, context):
                yield item

        stream_handler = grpc.unary_stream_rpc_method_handler(streaming)
    else:
        stream_handler = grpc.unary_stream_rpc_method_handler(stream)
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Slow": grpc.unary_stream_rpc_method_handler(slow),
            "Ask": unary(ask),
            "Stream": stream_handler,
            "Fail": unary(fail),
            "Missing": unary(missing),
        },
    )


@pytest.fixture
def sync_server():
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[server_interceptor(agent_name="researcher")],
    )
    server.add_generic_rpc_handlers((_handlers(aio=False),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _by_name(exporter, name: str, kind: SpanKind):
    return [s for s in exporter.get_finished_spans() if s.name == name and s.kind is kind]


def test_sync_call_is_one_trace_with_the_handoff(exporter, sync_server):
    channel = instrument_channel(grpc.insecure_channel(sync_server))
    ask_rpc = channel.unary_unary(f"/{SERVICE}/Ask")

    @plyra_trace.agent(name="planner")
    def planner() -> bytes:
        with plyra_trace.session("s-1"), plyra_trace.user("ada"):
            with plyra_trace.handoff(reason="needs sources"):
                return ask_rpc(b"ev batteries", metadata=[("x-tenant", "acme")])

    assert planner() == b"sources for ev batteries"
    channel.close()
    (client,) = _by_name(exporter, f"{SERVICE}/Ask", SpanKind.CLIENT)
    (server,) = _by_name(exporter, f"{SERVICE}/Ask", SpanKind.SERVER)
    (tool,) = _by_name(exporter, "search", SpanKind.INTERNAL)
    (agent,) = _by_name(exporter, "planner", SpanKind.INTERNAL)
    assert len({s.context.trace_id for s in (agent, client, server, tool)}) == 1
    assert client.parent.span_id == agent.context.span_id
    assert server.parent.span_id == client.context.span_id
    assert tool.parent.span_id == server.context.span_id
    assert server.attributes["agent.handoff.from"] == "planner"
    assert server.attributes["agent.handoff.to"] == "researcher"
    assert server.attributes["agent.handoff.reason"] == "needs sources"
    assert server.attributes["agent.handoff.protocol"] == "grpc"
    assert server.attributes["rpc.system"] == "grpc"
    assert server.attributes["rpc.method"] == "Ask"
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert server.attributes["agent.name"] == "researcher"
    assert client.attributes["rpc.grpc.status_code"] == 0
    # the caller's session and user reach the handler's own spans; the handler runs as researcher
    assert server.attributes["session.id"] == "s-1" and tool.attributes["user.id"] == "ada"
    assert tool.attributes["session.id"] == "s-1"
    assert server.status.status_code is StatusCode.UNSET


def test_sync_streaming_and_failures(exporter, sync_server):
    channel = instrument_channel(grpc.insecure_channel(sync_server))
    assert list(channel.unary_stream(f"/{SERVICE}/Stream")(b"a b c")) == [
        b"sources for a",
        b"sources for b",
        b"sources for c",
    ]
    with pytest.raises(grpc.RpcError) as failed:
        channel.unary_unary(f"/{SERVICE}/Fail")(b"x")
    assert failed.value.code() is grpc.StatusCode.UNKNOWN  # gRPC's own answer, unchanged
    with pytest.raises(grpc.RpcError) as missing_topic:
        channel.unary_unary(f"/{SERVICE}/Missing")(b"x")
    assert missing_topic.value.code() is grpc.StatusCode.NOT_FOUND
    channel.close()

    (stream_server,) = _by_name(exporter, f"{SERVICE}/Stream", SpanKind.SERVER)
    tools = [s for s in exporter.get_finished_spans() if s.name == "search"]
    assert len(tools) == 3
    assert all(t.parent.span_id == stream_server.context.span_id for t in tools)

    (fail_server,) = _by_name(exporter, f"{SERVICE}/Fail", SpanKind.SERVER)
    (fail_client,) = _by_name(exporter, f"{SERVICE}/Fail", SpanKind.CLIENT)
    assert fail_server.status.status_code is StatusCode.ERROR
    assert "index unavailable" in fail_server.status.description
    assert fail_server.events[0].name == "exception"
    assert fail_client.status.status_code is StatusCode.ERROR
    assert fail_client.attributes["rpc.grpc.status_code"] == 2

    # NOT_FOUND is the caller's problem: an error on the client span, not on the server's
    (missing_server,) = _by_name(exporter, f"{SERVICE}/Missing", SpanKind.SERVER)
    (missing_client,) = _by_name(exporter, f"{SERVICE}/Missing", SpanKind.CLIENT)
    assert missing_server.attributes["rpc.grpc.status_code"] == 5
    assert missing_server.status.status_code is StatusCode.UNSET
    assert missing_client.status.status_code is StatusCode.ERROR
    assert missing_client.status.description == "no such topic"


def test_uninstrumented_caller_and_hostile_metadata(exporter, sync_server):
    with grpc.insecure_channel(sync_server) as channel:
        ask_rpc = channel.unary_unary(f"/{SERVICE}/Ask")
        assert ask_rpc(b"plain") == b"sources for plain"
        hostile = [("traceparent", "00-zzzz-not-a-trace"), ("baggage", "=;;," * 500)]
        assert ask_rpc(b"odd", metadata=hostile) == b"sources for odd"
    servers = _by_name(exporter, f"{SERVICE}/Ask", SpanKind.SERVER)
    assert len(servers) == 2
    assert all(s.parent is None for s in servers)  # new roots, nothing raised
    assert all("agent.handoff.from" not in s.attributes for s in servers)


async def test_aio_server_and_client(exporter):
    server = grpc.aio.server(interceptors=[aio_server_interceptor(agent_name="researcher")])
    server.add_generic_rpc_handlers((_handlers(aio=True),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=aio_client_interceptors()
        ) as channel:

            @plyra_trace.agent(name="planner")
            async def planner():
                with plyra_trace.session("s-2"), plyra_trace.handoff(reason="dig"):
                    answer = await channel.unary_unary(f"/{SERVICE}/Ask")(b"solid state")
                    streamed = [m async for m in channel.unary_stream(f"/{SERVICE}/Stream")(b"x y")]
                    with pytest.raises(grpc.aio.AioRpcError) as missing_topic:
                        await channel.unary_unary(f"/{SERVICE}/Missing")(b"q")
                    return answer, streamed, missing_topic.value.code()

            answer, streamed, code = await planner()
    finally:
        await server.stop(None)
    assert answer == b"sources for solid state"
    assert streamed == [b"sources for x", b"sources for y"]
    assert code is grpc.StatusCode.NOT_FOUND

    (agent,) = _by_name(exporter, "planner", SpanKind.INTERNAL)
    for method in ("Ask", "Stream", "Missing"):
        (client,) = _by_name(exporter, f"{SERVICE}/{method}", SpanKind.CLIENT)
        (server_span,) = _by_name(exporter, f"{SERVICE}/{method}", SpanKind.SERVER)
        assert client.parent.span_id == agent.context.span_id
        assert server_span.parent.span_id == client.context.span_id
        assert server_span.context.trace_id == agent.context.trace_id
        assert server_span.attributes["agent.handoff.from"] == "planner"
        assert server_span.attributes["agent.handoff.protocol"] == "grpc"
        assert server_span.attributes["session.id"] == "s-2"
    (missing_client,) = _by_name(exporter, f"{SERVICE}/Missing", SpanKind.CLIENT)
    (missing_server,) = _by_name(exporter, f"{SERVICE}/Missing", SpanKind.SERVER)
    assert missing_client.status.status_code is StatusCode.ERROR
    assert missing_client.attributes["rpc.grpc.status_code"] == 5
    assert missing_server.attributes["rpc.grpc.status_code"] == 5
    assert missing_server.status.status_code is StatusCode.UNSET
    tools = [s for s in exporter.get_finished_spans() if s.name == "search"]
    assert len(tools) == 3 and all(t.attributes["session.id"] == "s-2" for t in tools)


def test_a_client_that_goes_away_is_cancelled_not_a_server_fault(exporter, sync_server):
    channel = instrument_channel(grpc.insecure_channel(sync_server))
    responses = channel.unary_stream(f"/{SERVICE}/Slow")(b"")
    assert next(responses) == b"0"
    responses.cancel()
    deadline = time.monotonic() + 10
    while not _by_name(exporter, f"{SERVICE}/Slow", SpanKind.SERVER):
        assert time.monotonic() < deadline, "the server span never ended"
        time.sleep(0.05)
    channel.close()
    (server,) = _by_name(exporter, f"{SERVICE}/Slow", SpanKind.SERVER)
    assert server.attributes["rpc.grpc.status_code"] == 1  # CANCELLED
    assert server.status.status_code is StatusCode.UNSET
    (client,) = _by_name(exporter, f"{SERVICE}/Slow", SpanKind.CLIENT)
    assert client.attributes["rpc.grpc.status_code"] == 1
