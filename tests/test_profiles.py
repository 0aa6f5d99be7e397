"""Profiles resolve against the notebooks; bad profiles, keys and values are rejected."""

from __future__ import annotations

import pytest

from geoloc_lib.errors import ConfigError
from geoloc_lib.profiles import (
    list_notebooks,
    load_profiles,
    notebook_parameters,
    parse_override,
    resolve_profile,
)


def test_every_profile_resolves_for_every_notebook():
    for profile in ("smoke", "default", "paper"):
        runs = resolve_profile(profile)
        assert [r.notebook for r in runs] == list_notebooks()


def test_notebook_defaults_equal_smoke_profile():
    # nbval executes notebooks/ as committed: their defaults must be the smoke profile.
    for run in resolve_profile("smoke"):
        assert notebook_parameters(run.notebook) == run.parameters, run.notebook.name


def test_unknown_profile_lists_choices():
    with pytest.raises(ConfigError, match="valid choices: default, paper, smoke"):
        resolve_profile("fast")


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown parameter 'sed'.*valid choices: .*seed"):
        resolve_profile("smoke", overrides=["sed=3"])


def test_override_applies_and_parses_yaml():
    runs = resolve_profile("smoke", only=["00"], overrides=["seed=7", "00.street_format=cvusa"])
    assert runs[0].parameters["seed"] == 7
    assert runs[0].parameters["street_format"] == "cvusa"
    assert parse_override("a=[1, 2]") == (None, "a", [1, 2])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("seed")


def test_unknown_notebook_selection():
    with pytest.raises(ConfigError, match="unknown notebook '99'"):
        resolve_profile("smoke", only=["99"])


def test_profile_with_unknown_or_missing_key_is_rejected():
    profiles = load_profiles()
    bad = {
        "x": {
            "notebooks": {
                "00_data_prep": {**profiles["smoke"]["notebooks"]["00_data_prep"], "oops": 1}
            }
        }
    }
    with pytest.raises(ConfigError, match="unknown parameter 'oops'"):
        resolve_profile("x", only=["00"], profiles=bad)
    params = dict(profiles["smoke"]["notebooks"]["00_data_prep"])
    params.pop("seed")
    with pytest.raises(ConfigError, match=r"missing parameters \['seed'\]"):
        resolve_profile("x", only=["00"], profiles={"x": {"notebooks": {"00_data_prep": params}}})


def test_papermill_parses_every_parameter():
    # papermill's own parser (used for injection warnings and `papermill --help-notebook`)
    # chokes on some comments, e.g. an '=' after '#'; keep the parameters cells parseable.
    import nbformat
    from papermill.translators import PythonTranslator

    for notebook in list_notebooks():
        nb = nbformat.read(notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        assert parsed == set(notebook_parameters(notebook)), notebook.name
