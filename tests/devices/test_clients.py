"""devices.clients.client_for: an account's integration and limits become a carrier client."""

import pytest

from carriers import (
    IntegrationNotSupported,
    JasperClient,
)
from devices.clients import client_for


def test_client_for_refuses_integrations_without_a_client(provider_a):
    for integration in ("Telegence", "ThingSpace"):
        provider_a.integration = integration
        with pytest.raises(IntegrationNotSupported, match=f"integration '{integration}' is not supported yet") as exc:
            client_for(provider_a)
        assert exc.value.field == "integration"



@pytest.mark.parametrize("integration", ["Jasper", "POD19", "TMobileJasper", "Rogers"])
def test_client_for_builds_the_jasper_client_with_the_account_limits(provider_a, integration):
    provider_a.integration = integration
    provider_a.max_concurrency = 3
    with client_for(provider_a) as c:
        assert isinstance(c, JasperClient)
        assert c.api_root == "http://127.0.0.1:8765/rws/api/v1"
        assert c.limiter.rate == 5.0 and c.limiter.max_concurrency == 3
        assert c.max_pages == provider_a.max_pages

