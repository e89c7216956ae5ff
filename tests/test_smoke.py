from conftest import query_db


def test_daemon_ingest_is_stored_as_event(daemon):
    assert daemon.ingest("claude", {"session_id": "s1", "hook_event_name": "Stop"}) == {
        "stored": True
    }
    rows = query_db(daemon.config.db_path, "SELECT source, kind, session_id FROM events")
    assert rows == [{"source": "claude", "kind": "Stop", "session_id": "s1"}]
