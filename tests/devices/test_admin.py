"""The devices admin: SIMs found by ICCID."""
from django.urls import reverse

from tests import factories


def test_device_changelist_searches_by_iccid(root_client, provider_a):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000042")
    factories.DeviceFactory(provider=provider_a, iccid="8901269999999999999")
    url = reverse("admin:devices_device_changelist")
    body = root_client.get(url, {"q": "8901260000000000042"}).content.decode()
    assert "8901260000000000042" in body and "8901269999999999999" not in body

