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


def test_the_network_address_pattern_is_what_ipaddress_calls_a_network():
    # The VpcCidr parameter and the schema use it; ipaddress (strict) is the reference.
    import ipaddress
    import random
    import re

    from mlops_cfn.config.network import network_address_pattern

    rng = random.Random(12)
    for first, last in ((8, 32), (16, 24), (0, 32), (17, 20)):
        pattern = network_address_pattern(first, last)
        for _ in range(2000):
            prefix, address = rng.randint(0, 32), rng.getrandbits(32)
            if rng.random() < 0.5:
                address &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            text = f"{ipaddress.IPv4Address(address)}/{prefix}"
            try:
                ipaddress.ip_network(text, strict=True)
                network = first <= prefix <= last
            except ValueError:
                network = False
            assert bool(re.fullmatch(pattern, text)) == network, (first, last, text)


@pytest.mark.parametrize("subnet_prefix_length, largest", [(20, 18), (24, 22), (26, 24)])
def test_a_created_vpcs_range_parameter_describes_the_ranges_its_pattern_admits(
        subnet_prefix_length, largest):
    # A console or Service Catalog user reads the Description, CloudFormation enforces the
    # AllowedPattern: the sizes one states are the sizes the other admits.
    import re

    from mlops_cfn.stages import network
    from tests.helpers import config_with, template_dict

    loaded = config_with({"network": {"subnet_prefix_length": subnet_prefix_length}})
    parameter = template_dict(network.build(loaded.config))["Parameters"]["VpcCidr"]
    admitted = [prefix for prefix in range(8, 33)
                if re.fullmatch(parameter["AllowedPattern"], f"10.0.0.0/{prefix}")]
    assert (admitted[0], admitted[-1]) == (16, largest)
    stated = re.findall(r"/(\d+)", parameter["Description"].split("(", 1)[1])
    assert stated[:2] == ["16", str(largest)]
