import argparse

import pytest

from mivis.params import FLOAT_LIST, Param, ParamError, ParamSet

PS = ParamSet([
    Param("lr", float, 0.1, "learning rate", min=0.0, max=1.0),
    Param("epochs", int, 3, "epochs", min=1, max=10),
    Param("opt", str, "adam", "optimiser", choices=("adam", "sgd")),
    Param("flag", bool, False, "a switch"),
    Param("scales", FLOAT_LIST, [1.0, 1.0], "scales", min=0.0, max=1.0),
])


def test_defaults_and_coercion_from_strings():
    assert PS.validate({}) == {"lr": 0.1, "epochs": 3, "opt": "adam", "flag": False, "scales": [1.0, 1.0]}
    v = PS.validate({"lr": "0.5", "epochs": "4", "flag": "yes", "scales": "1,0.2"})
    assert v["lr"] == 0.5 and v["epochs"] == 4 and v["flag"] is True and v["scales"] == [1.0, 0.2]


@pytest.mark.parametrize("bad, words", [
    ({"lr": 2.0}, "[0, 1]"), ({"epochs": "2.5"}, "an integer"), ({"opt": "rmsprop"}, "adam, sgd"),
    ({"scales": "1,1.5"}, "[0, 1]"), ({"lr": "nan"}, "a number"), ({"nope": 1}, "unknown parameter"),
    ({"flag": "maybe"}, "true/false"),
])
def test_refusals_name_the_allowed_values(bad, words):
    with pytest.raises(ParamError, match=words.replace("[", r"\[").replace("]", r"\]")):
        PS.validate(bad)


def test_argparse_round_trip():
    parser = argparse.ArgumentParser()
    PS.add_arguments(parser)
    ns = parser.parse_args(["--lr", "0.25", "--scales", "1,1,0"])
    assert PS.from_namespace(ns)["scales"] == [1.0, 1.0, 0.0]
    assert PS.from_namespace(ns)["lr"] == 0.25


def test_none_is_a_real_choice_when_declared():
    p = Param("augment", str, "standard", "augmentation", choices=("none", "light", "standard"))
    assert p.coerce("none") == "none"
    q = Param("data_dir", str, None, "folder", optional=True)
    assert q.coerce("none") is None


def test_int_list_ranges():
    from mivis.params import INT_LIST, Param, ParamError
    p = Param("identities", INT_LIST, None, "target classes", optional=True, min=0)
    assert p.coerce("0-4,7") == [0, 1, 2, 3, 4, 7]
    assert len(p.coerce("0-299")) == 300
    for bad in ("5-2", "0-99999999", "a-b", "-3-2"):  # reversed, absurd, not numbers, below min
        with pytest.raises(ParamError, match="identities"):
            p.coerce(bad)
