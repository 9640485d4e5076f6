"""No input, however malformed, gets anything but a validated config or a UserError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_cfn.config import load_data
from mlops_cfn.config.yaml_source import parse_yaml
from mlops_cfn.errors import UserError

from .helpers import default_data

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10)

KNOWN_PATHS = [
    ("project",), ("log_retention_days",), ("tags",), ("network", "mode"), ("network", "cidr"),
    ("network", "availability_zones"), ("network", "interface_endpoints"),
    ("network", "subnet_ids"), ("stages", "ingestion", "shards"),
    ("stages", "ingestion", "consumer"), ("stages", "storage", "archive_after_days"),
    ("stages", "storage"), ("environments",), ("environments", "prod"),
    ("environments", "prod", "stages"),
]


def accepted_or_user_error(data):
    try:
        load_data(data, "pipeline.yaml")
    except UserError as error:
        assert error.problems
        assert all(p.startswith("pipeline.yaml") and "\n" not in p for p in error.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(KNOWN_PATHS), value=values)
def test_any_value_at_a_known_path_is_accepted_or_refused_cleanly(path, value):
    data = default_data()
    target = data
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    accepted_or_user_error(data)


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_document_is_accepted_or_refused_cleanly(document):
    accepted_or_user_error(document)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_fails_with_a_located_syntax_error(text):
    try:
        parse_yaml(text, "p.yaml")
    except UserError as error:
        assert error.problems[0].startswith("p.yaml")
