"""The `network` section: what mode `existing` asks of the user."""

import pytest

from mlops_cfn.config import load_data
from mlops_cfn.errors import UserError
from tests.helpers import FOUNDATION_ONLY

EXISTING = {"mode": "existing", "vpc_id": "vpc-0123abcd",
            "subnet_ids": ["subnet-0123abcd", "subnet-4567ef01"]}


def test_existing_mode_with_its_range_stated_is_accepted():
    loaded = load_data({"project": "pp", "network": {**EXISTING, "cidr": "10.9.0.0/24"},
                        **FOUNDATION_ONLY}, "p.yaml")
    # Subnet sizing is about created VPCs: a /24 with the default /20 subnets is fine here.
    assert loaded.config.network.cidr == "10.9.0.0/24"


def test_existing_mode_chosen_per_environment_needs_the_range_there_too():
    data = {"project": "pp", "environments": {"dev": {}, "prod": {"network": EXISTING}}}
    with pytest.raises(UserError) as caught:
        load_data(data, "p.yaml")
    [line] = str(caught.value).splitlines()
    assert line.startswith("p.yaml: environments.prod.network: mode 'existing' needs cidr")
