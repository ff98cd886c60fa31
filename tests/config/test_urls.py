"""The schema and its docs page: public, and served without any outside host."""
import re


def test_docs_page_loads_its_assets_from_our_own_static_files(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.content.decode())
    assert sources and all(not s.startswith(("http://", "https://", "//")) for s in sources), sources


def test_schema_is_public_and_lists_the_session_operations(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/sessions/", "/api/sessions/{guid}/", "/api/sessions/{guid}/events/"} <= set(paths)
