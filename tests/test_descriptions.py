"""Typed descriptions: configs, keys (the same as stores written before descriptions
existed), labels, validation, and reading a stored config back."""

import pytest

from rtstudy.core.descriptions import ImpRoundDesc, TicketDesc
from rtstudy.core.patterns import NM, PATTERNS, make_pattern, pattern_from_config
from rtstudy.core.schemes import SCHEMES, Scheme
from rtstudy.profiles import get_profile
from rtstudy.vision.track import VisionSource, VisionTrack


@pytest.fixture(scope="module")
def smoke():
    P = get_profile("smoke", precision="fp32")
    return P, P.source_model(0.0), P.source_model(P.eps_star)


def test_keys_match_stores_written_by_earlier_versions(smoke):
    # keys an artifact store written before the descriptions existed holds for the smoke
    # profile; those stores were trained in fp32, and an fp32 recipe keeps its key
    P, natural, robust = smoke
    assert natural.key == "44c71315cecf2c19"
    assert robust.key == "62ebad49e8946a8a"
    assert P.ticket(natural, "omp", "nm", 0.5, seed=1).key == "325bfa96bb739d99"
    assert P.ticket(robust, "random", "nm", 0.5, seed=1).key == "32652679398e52bc"
    assert P.ticket(natural, "random", "channel", 0.8).key == "a933f0ca36ebd010"
    assert P.ticket(natural, "imp_target", "unstructured", 0.8, target="mnist5k").key == "a8ce0f065fe3fca6"
    assert P.transfer(natural, None, "mnist5k", regime="probe", seed=0).key == "46ea4973ee008ef6"


def test_precision_is_part_of_every_key(smoke):
    # bf16 and fp32 artifacts never share a key: sources, tickets drawn from them, transfers
    P32, natural32, _ = smoke
    P16 = get_profile("smoke", precision="bf16")
    natural16 = P16.source_model(0.0)
    assert P16.precision == "bf16" and P32.precision == "fp32"
    assert natural16.config()["train"]["precision"] == "bf16"
    assert "precision" not in natural32.config()["train"]
    assert natural16.key != natural32.key
    assert P16.ticket(natural16, "omp", "nm", 0.5).key != P32.ticket(natural32, "omp", "nm", 0.5).key
    assert (P16.transfer(natural16, None, "mnist5k", regime="probe").key
            != P32.transfer(natural32, None, "mnist5k", regime="probe").key)
    # a stored config reads back with its precision; one without it is fp32
    assert VisionSource.from_config(natural16.config()) == natural16
    assert VisionSource.from_config(natural32.config()).train.precision == "fp32"


def test_labels(smoke):
    P, natural, robust = smoke
    assert natural.label == "natural" and natural.role == "natural"
    assert robust.label == "FGSM-RS ℓ∞ 2/255" and robust.role == "robust"
    assert P.source_model(P.eps_star, kind="pgd").label == f"PGD-{P.robust_steps} ℓ∞ 2/255"
    assert P.ticket(natural, "omp", "unstructured", 0.8).label == "omp unstructured 80%"
    assert P.ticket(natural, "random", "nm", 0.0, n=1, m=4).label == "random 1:4 75%"
    assert P.ticket(natural, "omp", "unstructured", 0.0).label == "dense"
    assert P.ticket(natural, "omp", "unstructured", 0.0).key == "dense"


def test_configs_read_back(smoke):
    P, natural, robust = smoke
    assert VisionSource.from_config(robust.config()) == robust
    assert VisionTrack().source_from_config(natural.config()) == natural
    for t in (P.ticket(robust, "omp", "nm", 0.5, n=2, m=4),
              P.ticket(robust, "imp_target", "channel", 0.8, target="digits"),
              P.ticket(natural, "imp_source", "unstructured_layerwise", 0.9, seed=2)):
        back = TicketDesc.from_config(t.config(), robust if t.source == robust else natural,
                                      recipe=VisionTrack.recipe)
        assert back == t and back.key == t.key
    r = ImpRoundDesc(P.ticket(natural, "imp_source", "unstructured", 0.9), 2)
    assert r.config()["round"] == 2 and r.key != r.ticket.key


def test_patterns_are_objects_in_a_registry():
    assert set(PATTERNS) == {"unstructured", "unstructured_layerwise", "channel", "nm"}
    assert make_pattern("nm", n=1, m=4).implied_sparsity == 0.75
    assert make_pattern("unstructured").implied_sparsity is None
    assert pattern_from_config({"pattern": "nm", "n": 2, "m": 8}) == NM(2, 8)
    assert NM(2, 4).imp_schedule(0.5, 0.2) == [0.5]
    assert make_pattern("unstructured").imp_schedule(0.75, 0.5) == [0.5, 0.75]
    assert NM(2, 4).is_dense(0.0) is False and make_pattern("channel").is_dense(0.0) is True
    with pytest.raises(ValueError, match="diagonal"):
        make_pattern("diagonal")
    with pytest.raises(ValueError, match="N < M"):
        NM(4, 4)


def test_schemes_are_a_registry():
    assert {"omp", "imp_source", "imp_target", "random"} <= set(SCHEMES)  # tracks may add more
    assert SCHEMES.get("imp_target").needs_target and SCHEMES.get("imp_source").trains
    assert not SCHEMES.get("omp").trains and not SCHEMES.get("random").trains
    with pytest.raises(ValueError, match="'magic'.*allowed: 'omp'"):
        SCHEMES.get("magic")


@pytest.mark.parametrize("kwargs, match", [
    (dict(scheme="magic"), "magic"),
    (dict(pattern="diagonal"), "diagonal"),
    (dict(sparsity=1.0), "1.0"),
    (dict(pattern="nm", sparsity=0.3), "1 - N/M"),
    (dict(scheme="imp_target"), "target"),
    (dict(scheme="imp_source"), "rate and epochs"),
    (dict(scheme="omp", rate=0.2, epochs=1), "does not retrain"),
    (dict(scheme="omp", target="digits"), "draws on the source"),
])
def test_bad_ticket_descriptions(smoke, kwargs, match):
    _, natural, _ = smoke
    args = dict(scheme="omp", pattern="unstructured", sparsity=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        TicketDesc(natural, **args)


def test_bad_transfer_descriptions(smoke):
    P, natural, robust = smoke
    with pytest.raises(ValueError, match="regime"):
        P.transfer(natural, None, "mnist5k", regime="distill")
    with pytest.raises(ValueError, match="another source"):
        P.transfer(natural, P.ticket(robust, "omp", "unstructured", 0.5), "mnist5k")
    with pytest.raises(ValueError, match="eps must be in"):
        P.source_model(-0.1)


class _WithOptions(Scheme):
    """A scheme with options of its own (steps >= 1), for the tests."""

    name = "test_with_options"
    options = {"steps": 10, "temperature": 0.5}

    def check_options(self, options):
        if options["steps"] < 1:
            raise ValueError(f"steps must be >= 1, got {options['steps']}")


def test_scheme_options_are_part_of_the_key_and_checked(smoke, monkeypatch):
    monkeypatch.setitem(SCHEMES._items, _WithOptions.name, _WithOptions())  # this test's only
    src = smoke[1]
    plain = TicketDesc(src, _WithOptions.name, sparsity=0.5)
    tuned = TicketDesc(src, _WithOptions.name, sparsity=0.5, options={"steps": 20})
    assert plain.option("steps") == 10 and tuned.option("steps") == 20
    assert "options" not in plain.config() and tuned.config()["options"] == {"steps": 20}
    assert plain.key != tuned.key
    assert TicketDesc.from_config(tuned.config(), src) == tuned
    with pytest.raises(ValueError, match=r"no option\(s\) \['stepz'\]; allowed: steps, temperature"):
        TicketDesc(src, _WithOptions.name, sparsity=0.5, options={"stepz": 1})
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        TicketDesc(src, _WithOptions.name, sparsity=0.5, options={"steps": 0})
    with pytest.raises(ValueError, match="allowed: none"):
        TicketDesc(src, "omp", sparsity=0.5, options={"steps": 1})
