"""protocol/events.py: each outgoing kind carries its wire shape and delivery policy (§3, §5)."""

from __future__ import annotations

import pytest

from cidadao_trio.protocol import events as ev


def test_the_durable_kinds_are_the_ones_protocol_section_3_marks_durable() -> None:
    assert {
        "chat", "chat_complete", "subscribed", "unsubscribed", "investigation_progress",
        "anomaly_detected", "agent_finding", "report_ready", "investigation_failed",
    } == ev.DURABLE_TYPES
    assert {"typing"} == ev.DROPPABLE_TYPES
    assert {"connection", "pong", "auth_ok", "error", "batch", "presence"} <= ev.ALL_TYPES - ev.DURABLE_TYPES


def test_data_is_the_fields_in_wire_order_and_optional_members_are_left_out() -> None:
    done = ev.ChatComplete(status="completed", agent_id="zumbi", agent_name="Zumbi dos Palmares", content="ok")
    assert list(done.data()) == ["status", "agent_id", "agent_name", "content", "suggested_actions", "reply_to"]
    assert done.data()["suggested_actions"] == [] and done.data()["reply_to"] is None  # §3: always present
    started = ev.ChatComplete(status="completed", agent_id="zumbi", agent_name="Zumbi dos Palmares", content="ok",
                              investigation_id="INV-2026-001")
    assert started.data()["investigation_id"] == "INV-2026-001"
    assert ev.Pong().data() == {} and ev.Pong(reply_to="p1").data() == {"reply_to": "p1"}
    assert ev.Error(code="RATE_LIMIT", message="m", retry_after=1.5).data() == {
        "code": "RATE_LIMIT", "message": "m", "retry_after": 1.5,
    }


@pytest.mark.parametrize(("event", "wire"), [
    (ev.AgentTyping(agent="processing", agent_id="drummond", is_typing=True),
     {"agent": "processing", "agent_id": "drummond", "isTyping": True}),
    (ev.UserTyping(is_typing=False), {"role": "user", "isTyping": False}),
    (ev.Connected(identity={"session_id": "s1"}, resumed=True, heartbeat_s=30, idle_timeout_s=300,
                  max_message_bytes=65536),
     {"status": "connected", "session_id": "s1", "message": ev.CONNECTED_MESSAGE, "resumed": True,
      "heartbeat_s": 30, "idle_timeout_s": 300, "max_message_bytes": 65536}),
])
def test_kinds_whose_members_are_spelled_otherwise_on_the_wire(event: ev.Event, wire: dict[str, object]) -> None:
    assert event.data() == wire and list(event.data()) == list(wire)


def test_only_progress_coalesces_and_by_investigation() -> None:
    progress = ev.InvestigationProgress(investigation_id="INV-1", progress=10, status="data_retrieval", message="m",
                                        records_processed=0, anomalies_detected=0)
    assert progress.coalesce_key() == "progress:INV-1"
    assert ev.InvestigationFailed(investigation_id="INV-1", reason="r").coalesce_key() is None
    assert ev.UserMessage(content="oi").coalesce_key() is None
